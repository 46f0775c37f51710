//! clock: the time mfawatch goes by.
//!
//! Decisions that compare an event's time with "now" — is an alert stale
//! (`alerts.max_age`), which history is past retention — must not follow a
//! host clock that is wrong: a clock a day fast would mark every live
//! sign-in stale, and one years ahead would make every date folder look
//! expired. So "now" is the brokers' time where it is known: the Kafka
//! timestamp of the newest message read at the head of its partition (set
//! by Event Hubs or the producer when it arrived), advanced by the monotonic
//! time since. Before any partition has been read to its head (a backlog
//! just started, or files being replayed) it is the host's clock. The two
//! are compared: a difference past [`SKEW_WARN_SECS`] is logged once a
//! minute and shown as `mfawatch_clock_skew_seconds`, which a Prometheus rule
//! alerts on.
//!
//! This module knows no stage; it is read by the alerts and the history and
//! told by the Kafka source.

use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};

/// The host's clock (with the test hooks' offset, when a test sets one).
pub fn wall() -> DateTime<Utc> {
    Utc::now() + chrono::TimeDelta::seconds(crate::testhooks::clock_offset())
}

/// A host clock this far from the brokers' is reported.
pub const SKEW_WARN_SECS: i64 = 300;

/// The brokers' time, as told by messages read at the head of their partition.
#[derive(Default)]
pub struct Clock {
    /// The newest such message's timestamp (Unix ms), and when it was heard.
    head: Mutex<Option<(i64, Instant)>>,
}

impl Clock {
    /// A message stamped `timestamp_ms` by the broker (or its producer) was
    /// read at the head of its partition: it arrived just now.
    pub fn heard_at_head(&self, timestamp_ms: i64) {
        let mut head = crate::locks::lock(&self.head);
        let now = Instant::now();
        let estimate = |(ts, at): (i64, Instant)| ts + now.duration_since(at).as_millis() as i64;
        if head.is_none_or(|h| timestamp_ms > estimate(h)) {
            *head = Some((timestamp_ms, now));
        }
    }

    /// The brokers' time now, if any message has been read at its partition's head.
    pub fn brokers(&self) -> Option<DateTime<Utc>> {
        let head = *crate::locks::lock(&self.head);
        head.and_then(|(ts, at)| DateTime::from_timestamp_millis(ts + at.elapsed().as_millis() as i64))
    }

    /// Now: the brokers' time where known, else the host's.
    pub fn now(&self) -> DateTime<Utc> {
        self.brokers().unwrap_or_else(wall)
    }

    /// How far the host's clock is ahead of the brokers' (seconds; negative:
    /// behind), once the brokers' time is known.
    pub fn skew_secs(&self) -> Option<i64> {
        self.brokers().map(|brokers| (wall() - brokers).num_seconds())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_the_host_clock_until_a_message_at_the_head_tells_the_brokers_time() {
        let clock = Clock::default();
        assert!(clock.brokers().is_none() && clock.skew_secs().is_none());
        assert!((clock.now() - wall()).num_seconds().abs() <= 1);
        // The brokers are a day behind this host (the host clock is a day fast).
        let day_ago = (wall() - chrono::TimeDelta::days(1)).timestamp_millis();
        clock.heard_at_head(day_ago);
        assert!((clock.now().timestamp_millis() - day_ago).abs() < 1_000);
        assert!((clock.skew_secs().unwrap() - 86_400).abs() <= 1);
        // An older timestamp (another partition, a little behind) does not move it back.
        clock.heard_at_head(day_ago - 60_000);
        assert!((clock.now().timestamp_millis() - day_ago).abs() < 1_000);
    }
}
