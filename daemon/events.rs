//! events: one type per thing that happens inside the daemon that an
//! operator must hear about (an offset commit refused, a Kafka client error,
//! a malformed record, a user `coverage.max_users` keeps out, a checkpoint
//! or a delivery that failed…), and the one place that turns it into a log
//! line and a count: [`Events::emit`].
//!
//! Each event knows its metric, its throttle kind and its words; a caller
//! builds the event and emits it, and never pairs `Throttle::admit`, a
//! `tracing` macro and a counter by hand. Counting always happens; logging
//! goes through the [`Throttle`] (a repeated complaint is one line a minute,
//! with the number held back). The model is Vector's `internal_events`.
//!
//! Each line keeps the log target of the stage it happens in
//! (`mfawatch::pipeline`, `mfawatch::source::kafka`, …), so that a
//! `log.level` or `RUST_LOG` filter per stage goes on working.
//!
//! This module sits at the bottom with `metrics` and `logging`: it knows
//! no stage, and no stage's type beyond the decoder's error.

use std::borrow::Cow;
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use crate::decode::DecodeError;
use crate::logging::Throttle;
use crate::metrics::Metrics;

/// Something that happened: what it counts, and how it is said.
pub trait Event {
    /// What the throttle tells apart: reports of one kind hold each other back.
    fn kind(&self) -> Cow<'_, str>;
    /// How many of this kind are logged in a minute before the rest are held back.
    fn burst(&self) -> u32 {
        1
    }
    /// Counted every time, logged or not.
    fn count(&self, _metrics: &Metrics) {}
    /// The log line; `held_back` reports of this kind were not logged since the last.
    fn log(&self, held_back: u64);
}

/// Where a component emits its events: the metrics, and its own throttle.
#[derive(Clone)]
pub struct Events {
    metrics: Arc<Metrics>,
    throttle: Arc<Throttle>,
}

impl Events {
    pub fn new(metrics: Arc<Metrics>) -> Events {
        Events { metrics, throttle: Arc::default() }
    }

    /// Counts `event` and logs it unless the throttle holds it back.
    pub fn emit(&self, event: impl Event) {
        event.count(&self.metrics);
        if let Some(held_back) = self.throttle.admit_n(&event.kind(), event.burst()) {
            event.log(held_back);
        }
    }

    /// For log bridges (librdkafka's own lines): whether a line of `kind` is logged now.
    pub fn admit(&self, kind: &str) -> Option<u64> {
        self.throttle.admit(kind)
    }

    /// Says how many malformed records were held back since the last line
    /// about them (the pipeline calls it at each checkpoint, so that a burst
    /// that stops is summed up; other kinds wait for their next minute).
    pub fn flush_malformed(&self) {
        if let Some(held_back) = self.throttle.take_held_of(MALFORMED) {
            tracing::warn!(
                target: "mfawatch::pipeline",
                held_back,
                "more malformed records dead-lettered (not logged one by one; the metrics count each)"
            );
        }
    }
}

/// The brokers refused the offsets (a synchronous commit's error, or the
/// answer to an asynchronous one); the snapshot holds them.
pub struct CommitFailed<E>(pub E);

impl<E: Display> Event for CommitFailed<E> {
    fn kind(&self) -> Cow<'_, str> {
        "commit".into()
    }
    fn count(&self, metrics: &Metrics) {
        metrics.checkpoint_result("commit_failed");
    }
    fn log(&self, held_back: u64) {
        tracing::error!(target: "mfawatch::source::kafka", error = %self.0, held_back, "offset commit failed; the snapshot holds the offsets, the next checkpoint commits again");
    }
}

/// A checkpoint made nothing durable. A fatal one stops the source, which
/// says why; only a retried one is logged here.
pub struct CheckpointFailed<E> {
    pub error: E,
    pub fatal: bool,
}

impl<E: Display> Event for CheckpointFailed<E> {
    fn kind(&self) -> Cow<'_, str> {
        "checkpoint".into()
    }
    fn count(&self, metrics: &Metrics) {
        metrics.checkpoint_result("error");
    }
    fn log(&self, held_back: u64) {
        if !self.fatal {
            tracing::error!(target: "mfawatch::source::kafka", error = %self.error, held_back, "checkpoint failed; nothing committed, retrying at the next interval");
        }
    }
}

/// An error librdkafka reported; `code` is its bounded error-code name.
pub struct KafkaClientError<'a, E> {
    pub code: String,
    pub error: E,
    pub reason: &'a str,
}

impl<E: Display> Event for KafkaClientError<'_, E> {
    fn kind(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.code)
    }
    fn count(&self, metrics: &Metrics) {
        metrics.kafka_error(&self.code);
    }
    fn log(&self, held_back: u64) {
        tracing::error!(target: "mfawatch::source::kafka", error = %self.error, reason = self.reason, held_back, "Kafka error");
    }
}

/// No Microsoft Entra token for Event Hubs (librdkafka asks again).
pub struct EntraTokenFailed<E>(pub E);

impl<E: Display> Event for EntraTokenFailed<E> {
    fn kind(&self) -> Cow<'_, str> {
        "entra token".into()
    }
    fn log(&self, held_back: u64) {
        tracing::error!(target: "mfawatch::kafka", error = %self.0, held_back, "cannot get a Microsoft Entra token for Event Hubs");
    }
}

/// A Microsoft Graph listing could not be read whole (`directory.graph`):
/// what its pages said so far is applied, nothing is taken away; read again
/// at the next refresh. `error` names the listing's URL path, the answer and,
/// for a refusal, the permission; never the token.
pub struct GraphListingFailed<'a, E> {
    pub listing: &'static str,
    pub error: &'a E,
}

impl<E: Display> Event for GraphListingFailed<'_, E> {
    fn kind(&self) -> Cow<'_, str> {
        format!("graph {}", self.listing).into()
    }
    fn log(&self, held_back: u64) {
        tracing::error!(target: "mfawatch::source::graph", listing = self.listing, error = %self.error, held_back, "cannot read a Microsoft Graph listing; nothing it left out is removed, it is read again at the next refresh");
    }
}

/// A record that could not be used, now in the dead letters.
pub struct MalformedRecord<'a, S> {
    pub source: S,
    pub error: &'a DecodeError,
}

/// The throttle kind of [`MalformedRecord`].
const MALFORMED: &str = "malformed";

impl<S: Display> Event for MalformedRecord<'_, S> {
    fn kind(&self) -> Cow<'_, str> {
        MALFORMED.into()
    }
    fn burst(&self) -> u32 {
        10
    }
    fn count(&self, metrics: &Metrics) {
        metrics.malformed(self.error);
        metrics.dead_letter();
    }
    fn log(&self, held_back: u64) {
        tracing::warn!(target: "mfawatch::pipeline", source = %self.source, reason = self.error.reason(), error = %self.error, held_back, "malformed record dead-lettered");
    }
}

/// A new user `coverage.max_users` keeps out: the sign-in counts, the user is not tracked.
pub struct UserRefused {
    pub users: usize,
}

impl Event for UserRefused {
    fn kind(&self) -> Cow<'_, str> {
        "max_users".into()
    }
    fn count(&self, metrics: &Metrics) {
        metrics.user_refused();
    }
    fn log(&self, held_back: u64) {
        tracing::warn!(
            target: "mfawatch::pipeline",
            users = self.users,
            held_back,
            "coverage.max_users reached: sign-ins of new users are counted but the users are not tracked"
        );
    }
}

/// A batch of alerts a receiver did not take; they wait in the outbox.
pub struct DeliveryFailed<'a, E> {
    /// The receiver's identity (a throttle kind of its own).
    pub id: &'a str,
    pub receiver: &'a str,
    pub kind: &'static str,
    pub alerts: usize,
    pub error: E,
    pub retry_in: Duration,
}

impl<E: Display> Event for DeliveryFailed<'_, E> {
    fn kind(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.id)
    }
    fn count(&self, metrics: &Metrics) {
        metrics.alert_delivered(self.kind, "error", self.alerts);
    }
    fn log(&self, held_back: u64) {
        tracing::warn!(target: "mfawatch::alerts::deliver", receiver = self.receiver, error = %self.error, retry_in = ?self.retry_in, held_back, "alert delivery failed; the alerts wait in the outbox");
    }
}

/// A receiver refuses one alert for good (Alertmanager's 4xx on it alone):
/// it is set aside in `kept_in` for that receiver and the others go on.
pub struct AlertRejected<'a, R> {
    pub receiver: &'a str,
    pub kind: &'static str,
    pub id: &'a str,
    pub rule: &'static str,
    pub reason: R,
    pub kept_in: &'a std::path::Path,
    pub kept: bool,
}

impl<R: Display> Event for AlertRejected<'_, R> {
    fn kind(&self) -> Cow<'_, str> {
        "alert rejected".into()
    }
    /// Each is worth its line (they are rare and name the alert), up to a flood.
    fn burst(&self) -> u32 {
        100
    }
    fn count(&self, metrics: &Metrics) {
        metrics.alert_delivered(self.kind, "rejected", 1);
    }
    fn log(&self, held_back: u64) {
        tracing::error!(
            target: "mfawatch::alerts::deliver",
            receiver = self.receiver,
            alert_id = self.id,
            rule = self.rule,
            reason = %self.reason,
            kept_in = %self.kept_in.display(),
            kept = self.kept,
            held_back,
            "the receiver refuses this alert; it is set aside for it and the others go on"
        );
    }
}

/// The outbox is full: a new alert of `rule` is counted, not sent.
pub struct OutboxFull {
    pub rule: &'static str,
    pub max: usize,
}

impl Event for OutboxFull {
    fn kind(&self) -> Cow<'_, str> {
        "outbox full".into()
    }
    fn count(&self, metrics: &Metrics) {
        metrics.alert_suppressed(self.rule, "outbox_full");
    }
    fn log(&self, held_back: u64) {
        tracing::error!(
            target: "mfawatch::alerts::deliver",
            max = self.max,
            held_back,
            "the alert outbox is full (receivers down for long): new alerts are counted, not sent"
        );
    }
}

/// A history day could not be merged; its parts stay as they are.
pub struct CompactionFailed<E> {
    pub date: chrono::NaiveDate,
    pub error: E,
}

impl<E: Display> Event for CompactionFailed<E> {
    fn kind(&self) -> Cow<'_, str> {
        "compact".into()
    }
    fn count(&self, metrics: &Metrics) {
        metrics.history_compaction("error");
    }
    fn log(&self, held_back: u64) {
        tracing::error!(target: "mfawatch::history", date = %self.date, error = %self.error, held_back, "cannot merge the history of a day; its parts stay as they are");
    }
}

/// Why the source cannot read everything it should (a topic missing, none
/// or only some of the partitions held): `problem` is also its readiness answer.
pub struct SourceProblem<'a> {
    pub kind: &'static str,
    pub problem: &'a str,
}

impl Event for SourceProblem<'_> {
    fn kind(&self) -> Cow<'_, str> {
        self.kind.into()
    }
    fn log(&self, held_back: u64) {
        tracing::error!(target: "mfawatch::source::kafka", held_back, "{}", self.problem);
    }
}

/// The host's clock is off the brokers' by more than `clock::SKEW_WARN_SECS`
/// (the gauge `mfawatch_clock_skew_seconds` says by how much, always).
pub struct ClockSkewed {
    pub skew: i64,
}

impl Event for ClockSkewed {
    fn kind(&self) -> Cow<'_, str> {
        "clock skew".into()
    }
    fn log(&self, held_back: u64) {
        tracing::warn!(
            target: "mfawatch::source::kafka",
            skew_seconds = self.skew,
            held_back,
            "the host's clock is {} the brokers' by {} s: mfawatch goes by the brokers' time (alerts.max_age, retention), fix the host clock (NTP)",
            if self.skew > 0 { "ahead of" } else { "behind" },
            self.skew.abs()
        );
    }
}

/// Something that went wrong and is only said (its effect is counted
/// elsewhere, or it changes nothing that is counted): a kind and the line.
pub struct Problem<'a, F: Fn(u64)> {
    pub kind: &'a str,
    pub log: F,
}

impl<F: Fn(u64)> Event for Problem<'_, F> {
    fn kind(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.kind)
    }
    fn log(&self, held_back: u64) {
        (self.log)(held_back)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_counts_every_time_and_logs_through_the_throttle() {
        let metrics = Arc::new(Metrics::new(&crate::classify::Rules::default()));
        let events = Events::new(metrics.clone());
        for _ in 0..3 {
            events.emit(CommitFailed("refused"));
        }
        let text = metrics.render();
        assert!(text.contains("mfawatch_checkpoints_total{result=\"commit_failed\"} 3"), "{text}");
        // Logged once; the other two held back and summed up at the next flush.
        assert_eq!(events.throttle.take_held(), vec![("commit".to_owned(), 2)]);
        assert!(events.throttle.take_held().is_empty());
    }

    #[test]
    fn malformed_records_are_logged_in_a_burst_then_held_back() {
        let events = Events::new(Arc::new(Metrics::new(&crate::classify::Rules::default())));
        let error = crate::decode::decode_message(b"{").into_iter().find_map(|i| match i {
            crate::decode::Item::Malformed(m) => Some(m.error),
            _ => None,
        });
        let error = error.expect("a malformed message");
        for i in 0..12 {
            events.emit(MalformedRecord { source: i, error: &error });
        }
        assert_eq!(events.throttle.take_held(), vec![("malformed".to_owned(), 2)]);
    }
}
