//! context: the librdkafka callbacks of the consumer — where an assigned
//! partition starts (the checkpoint's rules, with the brokers' watermarks),
//! the checkpoint on a revoke, the answers to offset commits, statistics
//! (connection, lag, the brokers' clock) and errors, each told as an event.
//! Everything here runs inside `poll`, on the pipeline thread.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use crate::checkpoint::{CheckpointError, Checkpointer, Cluster, Committed, Partition, Resume, SourceIdentity};
use crate::config::StartPosition;
use crate::events::{ClockSkewed, CommitFailed, Events, KafkaClientError};
use crate::kafka::redacted;

use super::SourceContext;

/// Commits the offsets of the partitions we hold and consume (not the
/// refused ones). The snapshot is authoritative: a failed commit is retried
/// by the next checkpoint, and repeated failures make the daemon not ready.
///
/// `Async` in the consumer loop: a broker that holds the connection but does
/// not answer must not hold the loop (and the watchdog) for librdkafka's
/// request timeout; the answer arrives in [`Context::commit_callback`].
/// `Sync` where the partitions are about to be given away.
pub(super) fn commit_assigned(
    consumer: &BaseConsumer<Context>,
    offsets: &BTreeMap<Partition, i64>,
    refused: &BTreeSet<Partition>,
    mode: CommitMode,
) -> Result<Committed, String> {
    let assignment = consumer.assignment().map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for e in assignment.elements() {
        let key = (e.topic().to_owned(), e.partition());
        if refused.contains(&key) {
            continue;
        }
        if let Some(&next) = offsets.get(&key) {
            let _ = tpl.add_partition_offset(e.topic(), e.partition(), Offset::Offset(next));
        }
    }
    if tpl.count() == 0 {
        return Ok(Committed::Done);
    }
    match mode {
        CommitMode::Sync => {
            consumer.commit(&tpl, mode).map_err(|e| e.to_string())?;
            consumer.context().commits_settled();
            Ok(Committed::Done)
        }
        CommitMode::Async => {
            commit_answered_on_poll(consumer, &tpl).map_err(|e| e.to_string())?;
            consumer.context().commit_sent();
            Ok(Committed::Sent)
        }
    }
}

/// Sends an asynchronous offset commit whose answer comes back through the
/// consumer's queue, as an OFFSET_COMMIT event the next polls hand to
/// [`Context::commit_callback`].
///
/// Not `consumer.commit(.., CommitMode::Async)`: that calls `rd_kafka_commit`
/// without a reply queue, and librdkafka then hands the answer only to a
/// configured `offset_commit_cb`, which rust-rdkafka (event API) never sets.
/// The answer was dropped, and every commit looked unanswered: after 30 s of
/// steady consumption the daemon said the brokers were hung.
pub(super) fn commit_answered_on_poll(consumer: &BaseConsumer<Context>, tpl: &TopicPartitionList) -> KafkaResult<()> {
    use rdkafka::bindings as rd;
    let rk = consumer.client().native_ptr();
    // SAFETY: `rk` is the live client `consumer` owns. `rd_kafka_queue_get_consumer`
    // returns a new reference to its consumer queue (NULL without a group);
    // `rd_kafka_commit_queue` copies the list and takes its own reference on the
    // queue for the reply, so ours is released right after.
    let err = unsafe {
        let queue = rd::rd_kafka_queue_get_consumer(rk);
        if queue.is_null() {
            return Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::UnknownGroup));
        }
        let err = rd::rd_kafka_commit_queue(rk, tpl.ptr(), queue, None, std::ptr::null_mut());
        rd::rd_kafka_queue_destroy(queue);
        err
    };
    match RDKafkaErrorCode::from(err) {
        RDKafkaErrorCode::NoError => Ok(()),
        code => Err(KafkaError::ConsumerCommit(code)),
    }
}

/// Offset commits sent and not answered yet.
#[derive(Default)]
pub(super) struct Unanswered {
    pub(super) count: u32,
    /// When the oldest of them was sent (Unix seconds), roughly: since the last answer.
    pub(super) since: i64,
}

/// What the source knows about its partitions beyond their offsets.
#[derive(Default)]
pub(super) struct Partitions {
    /// Partitions whose snapshot offset is past their end: not consumed.
    pub(super) refused: BTreeSet<Partition>,
    /// The cluster identity was compared with the snapshot's.
    pub(super) identity_checked: bool,
    /// Why the source must stop (another cluster's state).
    pub(super) stop: Option<String>,
}

/// librdkafka callbacks.
pub struct Context {
    pub(super) checkpointer: Arc<Mutex<Checkpointer>>,
    pub(super) ctx: SourceContext,
    pub(super) events: Events,
    pub(super) start: StartPosition,
    pub(super) eventhubs: bool,
    /// The bootstrap servers as configured (part of the source identity).
    pub(super) brokers: String,
    pub(super) partitions: Mutex<Partitions>,
    pub(super) tokens: Option<Arc<crate::kafka::entra::TokenSource>>,
    pub(super) unanswered: Mutex<Unanswered>,
}

impl Context {
    /// The checkpointer; if a panic poisoned it, it is marked never to be checkpointed.
    pub(super) fn checkpointer(&self) -> MutexGuard<'_, Checkpointer> {
        lock_checkpointer(&self.checkpointer)
    }

    pub(super) fn partitions(&self) -> MutexGuard<'_, Partitions> {
        crate::locks::lock(&self.partitions)
    }

    pub(super) fn unanswered(&self) -> MutexGuard<'_, Unanswered> {
        crate::locks::lock(&self.unanswered)
    }

    /// Commits still unanswered no longer matter (the partitions were given
    /// away, or a synchronous commit got its answer).
    pub(super) fn commits_settled(&self) {
        *self.unanswered() = Unanswered::default();
        self.ctx.health.set_commit_waiting_since(None);
    }

    /// An asynchronous offset commit went out.
    pub(super) fn commit_sent(&self) {
        let mut u = self.unanswered();
        if u.count == 0 {
            u.since = chrono::Utc::now().timestamp();
            self.ctx.health.set_commit_waiting_since(Some(u.since));
        }
        u.count += 1;
    }

    /// Where each newly assigned partition starts: the checkpoint's rules
    /// ([`crate::checkpoint::resume_at`]) with the partition's watermarks
    /// as the brokers say them; a gap is counted and logged, a partition
    /// whose snapshot offset is past its end refused. The first assignment
    /// also compares the brokers with the state's cluster: another cluster's
    /// places nothing (and the run checkpoints nothing).
    pub(super) fn place(&self, consumer: &BaseConsumer<Context>, tpl: &mut TopicPartitionList) -> Vec<Partition> {
        let mut cp = self.checkpointer();
        let mut parts = self.partitions();
        if !parts.identity_checked {
            parts.identity_checked = true;
            let cluster_id = consumer.client().fetch_cluster_id(Duration::from_secs(10));
            let now = SourceIdentity { cluster_id, brokers: self.brokers.clone() };
            if cp.check_source(now, self.eventhubs) == Cluster::Other {
                parts.stop = cp.refused().map(str::to_owned);
            }
        }
        let cluster = if parts.stop.is_some() { Cluster::Other } else { Cluster::Same };
        let mut refused = Vec::new();
        let elements: Vec<Partition> = tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
        for key in elements {
            let (topic, partition) = (&key.0, key.1);
            let marks = match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
                Ok(marks) => Some(marks),
                Err(e) => {
                    tracing::warn!(topic, partition, error = %e, "cannot read the partition's offsets; resuming without checking them");
                    None
                }
            };
            let start = match cp.resume(&key, marks, self.start, cluster) {
                Resume::OtherCluster => return Vec::new(),
                Resume::PastEnd { next, end } => {
                    tracing::error!(
                        topic,
                        partition,
                        snapshot_offset = next,
                        log_end = end,
                        "the snapshot's offset is past the end of this partition: the hub was recreated, or the state belongs to another namespace; not consuming it (start afresh with --reset-state if the hub was recreated)"
                    );
                    refused.push(key.clone());
                    Offset::Offset(next)
                }
                Resume::Gap { at, lost } => {
                    tracing::error!(
                        topic,
                        partition,
                        snapshot_offset = at - lost as i64,
                        log_start = at,
                        lost_messages = lost,
                        "messages expired before they could be read (down longer than the hub's retention): their sign-ins are lost; resuming at the log start"
                    );
                    self.ctx.metrics.offsets_skipped(topic, lost);
                    Offset::Offset(at)
                }
                Resume::New(at) => {
                    tracing::info!(
                        topic,
                        partition,
                        offset = at,
                        start = self.start.as_str(),
                        "partition not in the snapshot: starting at kafka.start"
                    );
                    Offset::Offset(at)
                }
                Resume::Snapshot(at) | Resume::Unchecked(at) => Offset::Offset(at),
                Resume::Start(StartPosition::Earliest) => Offset::Beginning,
                Resume::Start(StartPosition::Latest) => Offset::End,
            };
            let _ = tpl.set_partition_offset(topic, partition, start);
        }
        parts.refused.extend(refused.iter().cloned());
        self.ctx.metrics.set_partitions_refused(parts.refused.len());
        refused
    }
}

/// The checkpointer; one a panic left locked is marked never to be checkpointed.
pub(super) fn lock_checkpointer(checkpointer: &Mutex<Checkpointer>) -> MutexGuard<'_, Checkpointer> {
    checkpointer.lock().unwrap_or_else(|e| {
        let mut cp = e.into_inner();
        cp.poison();
        cp
    })
}

impl ClientContext for Context {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        crate::kafka::oauth_token(self.tokens.as_deref(), &self.events)
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // A broker without KIP-345 ignores group.instance.id (librdkafka says
        // so at notice level): membership is then dynamic, which works.
        if message.contains("KIP-345") && self.events.admit("KIP-345").is_some() {
            tracing::warn!(target: "librdkafka", "the brokers do not support static group membership: kafka.group_instance_id has no effect, membership is dynamic (a restart waits out session.timeout.ms)");
        }
        let serious = (level as i32) <= (RDKafkaLogLevel::Warning as i32);
        // One kind: the facility and how the message starts (which broker, which
        // complaint), so that different warnings are not held back for each other.
        let kind = || format!("{fac}:{}", message.chars().take(48).collect::<String>());
        let Some(held_back) = (if serious { self.events.admit(&kind()) } else { Some(0) }) else {
            return;
        };
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, held_back, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, held_back, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, "{message}")
            }
        }
    }

    fn stats(&self, statistics: Statistics) {
        let up = statistics.brokers.values().any(|b| b.nodeid >= 0 && b.state == "UP");
        let was_up = self.ctx.health.source_connected.swap(up, Ordering::Relaxed);
        if up && !was_up {
            tracing::info!("connected to the brokers");
        }
        self.ctx.metrics.set_ready(self.ctx.health.not_ready().is_none());
        if let Some(skew) = self.ctx.clock.skew_secs() {
            self.ctx.metrics.clock_skew(skew);
            if skew.abs() > crate::clock::SKEW_WARN_SECS {
                self.events.emit(ClockSkewed { skew });
            }
        }
        for (topic, t) in &statistics.topics {
            for (&partition, p) in &t.partitions {
                if partition >= 0 && p.desired && p.consumer_lag >= 0 {
                    self.ctx.metrics.consumer_lag(topic, partition, p.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code().map_or_else(|| "other".to_string(), |c| format!("{c:?}"));
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::AllBrokersDown)) {
            self.ctx.health.source_connected.store(false, Ordering::Relaxed);
            self.ctx.metrics.set_ready(false);
        }
        self.events.emit(KafkaClientError { code, error: redacted(&error), reason });
    }
}

impl ConsumerContext for Context {
    /// The answer to an offset commit. Only asynchronous ones are accounted
    /// here (a synchronous commit's caller has its answer already).
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        self.ctx.metrics.commit_answered(result.is_ok());
        let mut u = self.unanswered();
        if u.count == 0 {
            return;
        }
        // The brokers answer: whatever else was sent is no longer waited for
        // (librdkafka does not answer every commit it drops on a rejoin).
        u.count = 0;
        self.ctx.health.set_commit_waiting_since(None);
        drop(u);
        match result {
            Ok(()) => self.ctx.health.commit_answered(true),
            Err(e) => {
                self.ctx.health.commit_answered(false);
                self.events.emit(CommitFailed(redacted(&e)));
            }
        }
    }

    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let refused = self.place(consumer, tpl);
                if self.partitions().stop.is_some() {
                    // Another cluster: take none of the partitions (an empty
                    // assignment), the loop then stops without a checkpoint.
                    if !cooperative && let Err(e) = consumer.assign(&TopicPartitionList::new()) {
                        tracing::error!(error = %e, "cannot decline the partitions");
                    }
                    return;
                }
                let held: Vec<Partition> =
                    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
                self.ctx.assignment.set(&held, true);
                tracing::info!(partitions = tpl.count(), refused = refused.len(), "partitions assigned");
                let result = if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) };
                if let Err(e) = result {
                    tracing::error!(error = %e, "cannot assign partitions");
                }
                if !refused.is_empty() {
                    let mut paused = TopicPartitionList::new();
                    for (topic, partition) in &refused {
                        paused.add_partition(topic, *partition);
                    }
                    if let Err(e) = consumer.pause(&paused) {
                        tracing::error!(error = %e, "cannot pause the refused partitions");
                    }
                }
                self.ctx.health.set_source_problem(refusal_problem(&self.partitions().refused));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Make everything done so far durable before giving partitions away.
                let refused = self.partitions().refused.clone();
                let commit =
                    |offsets: &BTreeMap<Partition, i64>| commit_assigned(consumer, offsets, &refused, CommitMode::Sync);
                if let Err(e @ CheckpointError::Fatal(_)) = self.checkpointer().checkpoint(Some(&commit)) {
                    tracing::error!(error = %e, "checkpoint on partition revoke failed");
                }
                let lost: Vec<Partition> =
                    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
                self.ctx.assignment.set(&lost, false);
                let mut parts = self.partitions();
                for e in tpl.elements() {
                    self.ctx.metrics.forget_partition(e.topic(), e.partition());
                    let key = (e.topic().to_owned(), e.partition());
                    parts.refused.remove(&key);
                }
                self.ctx.metrics.set_partitions_refused(parts.refused.len());
                self.ctx.health.set_source_problem(refusal_problem(&parts.refused));
                drop(parts);
                self.commits_settled();
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                let result = if cooperative { consumer.incremental_unassign(tpl) } else { consumer.unassign() };
                if let Err(e) = result {
                    tracing::error!(error = %e, "cannot unassign partitions");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                let _ = if cooperative { consumer.incremental_unassign(tpl) } else { consumer.unassign() };
            }
        }
    }
}

pub(super) fn refusal_problem(refused: &BTreeSet<Partition>) -> Option<String> {
    (!refused.is_empty()).then(|| {
        let names: Vec<String> = refused.iter().map(|(t, p)| format!("{t}[{p}]")).collect();
        format!(
            "not consuming {}: the snapshot's offset is past the partition's end (hub recreated, or another namespace's state)",
            names.join(", ")
        )
    })
}
