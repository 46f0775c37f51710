//! Kafka and Azure Event Hubs (Kafka endpoint): messages with their position.
//!
//! One consumer in a consumer group, polled on the pipeline thread; every
//! librdkafka callback (rebalance, statistics, errors) runs inside that poll,
//! on that thread. Offsets are never committed by librdkafka: the checkpoint
//! commits them after the snapshot holding them is durable, and a partition
//! assigned to us starts from the snapshot's offset when it has one.
//!
//! The client settings, secrets and tokens are [`crate::kafka`]'s. Where a
//! newly assigned partition starts is the checkpoint's rule
//! ([`crate::checkpoint::resume_at`]); this module asks the brokers for the
//! watermarks and does what it says. The rebalance callback calls the
//! checkpointer's small API directly rather than sending it an event: it
//! runs inside `poll` on the pipeline thread, which also owns the
//! checkpointer, and a revoke must be durable before the callback returns
//! (an event with an acknowledgement would wait for this very thread).
//!
//! `context.rs` holds the callbacks; this file the consumer loop. Neither
//! touches the checkpointer's state but through its API, nor any sink.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use crate::checkpoint::{CheckpointError, Checkpointer, Partition, Wait};
use crate::clock::Clock;
use crate::config::{Auth, Config};
use crate::decode::Position;
use crate::events::{Events, SourceProblem};
use crate::health::Health;
use crate::kafka::{ClientError, consumer_config};
use crate::metrics::Metrics;
use crate::sinks::Assignment;

mod context;

use context::{Context, commit_assigned, lock_checkpointer, refusal_problem};

/// What the source tells the rest of the daemon: readiness, metrics, the
/// partitions it holds, the brokers' clock.
#[derive(Clone)]
pub struct SourceContext {
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    pub assignment: Assignment,
    pub clock: Arc<Clock>,
}

/// How often the source looks at the brokers' metadata: are the topics
/// there, do we hold all their partitions?
const TOPIC_CHECK_EVERY: Duration = Duration::from_secs(30);

/// Consumes until `stop` is set, checkpointing every `checkpoint.interval`
/// and once more on the way out. The Graph listings of `seeds`, when given,
/// go through the checkpointer between two polls, like messages. Returns an error (without a checkpoint) when
/// a message's effects could not be kept, or librdkafka reports a fatal
/// error: the offsets then stay where the last durable snapshot put them.
pub fn consume(
    config: &Config,
    checkpointer: Arc<Mutex<Checkpointer>>,
    ctx: SourceContext,
    seeds: Option<crate::source::graph::Seeds>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let context = Context {
        checkpointer: checkpointer.clone(),
        ctx: ctx.clone(),
        events: Events::new(ctx.metrics.clone()),
        start: config.kafka.start,
        eventhubs: config.kafka.auth == Auth::Eventhubs,
        partitions: Mutex::default(),
        brokers: config.brokers(),
        tokens: crate::kafka::token_source(config)?,
        unanswered: Mutex::default(),
    };
    let consumer: BaseConsumer<Context> =
        consumer_config(config)?.create_with_context(context).map_err(ClientError::Client)?;
    let topics: Vec<&str> = config.kafka.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|source| ClientError::Subscribe { topics: config.kafka.topics.clone(), source })?;
    tracing::info!(brokers = %config.brokers(), topics = ?config.kafka.topics, group = %config.kafka.group_id, "consuming");
    // Ready as soon as a broker answers, not at librdkafka's first statistics
    // (`statistics.interval.ms`, 5 s: most of a restart's time to ready; see
    // README "restart to ready"). Entra's OAUTHBEARER token is only fetched
    // inside `poll`, so there the statistics tell.
    ctx.health.beat();
    if config.kafka.auth != Auth::Entra && consumer.fetch_metadata(None, Duration::from_secs(2)).is_ok() {
        ctx.health.source_connected.store(true, Ordering::Relaxed);
        tracing::info!("connected to the brokers");
    }

    let interval = config.checkpoint.interval;
    let topics_by_name: BTreeMap<String, Arc<str>> =
        config.kafka.topics.iter().map(|t| (t.clone(), Arc::from(t.as_str()))).collect();
    // librdkafka's own names for the topics, for asking it where a partition ends.
    let topic_names: HashMap<String, std::ffi::CString> = config
        .kafka
        .topics
        .iter()
        .filter_map(|t| Some((t.clone(), std::ffi::CString::new(t.as_str()).ok()?)))
        .collect();
    let mut messages = 0u64;
    let mut last_fatal_check = Instant::now();
    let mut next_topic_check = Instant::now() + Duration::from_secs(5);
    let mut unassigned_checks = 0u32;
    let commit = |offsets: &BTreeMap<Partition, i64>| {
        let refused = consumer.context().partitions().refused.clone();
        commit_assigned(&consumer, offsets, &refused, CommitMode::Async)
    };
    let mut watchdog = crate::notify::Watchdog::from_env();
    let result = loop {
        ctx.health.beat();
        watchdog.pet();
        if stop.load(Ordering::Relaxed) {
            break lock_checkpointer(&checkpointer).checkpoint(Some(&commit)).map_err(Into::into);
        }
        if let Some(reason) = consumer.context().partitions().stop.clone() {
            break Err(anyhow::anyhow!("{reason}"));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let topic = topics_by_name.get(message.topic()).cloned().unwrap_or_else(|| Arc::from(message.topic()));
                let (partition, offset) = (message.partition(), message.offset());
                let key = (message.topic().to_owned(), partition);
                let timestamp = message.timestamp().to_millis();
                if let Some(ts) = timestamp
                    && topic_names.get(&*topic).is_some_and(|name| at_head(&consumer, name, partition, offset))
                {
                    ctx.clock.heard_at_head(ts);
                }
                let position = Position::Kafka { topic: topic.clone(), partition, offset };
                let received = timestamp.and_then(chrono::DateTime::from_timestamp_millis);
                let inflated = gunzipped(&message);
                let payload = inflated.as_deref().or(message.payload());
                let mut cp = lock_checkpointer(&checkpointer);
                // Every message is the one after the last: a higher offset
                // means the ones between were gone before they were read.
                if let Some(expected) = cp.next_offset(&key)
                    && offset > expected
                {
                    lost_between(&ctx.metrics, &topic, partition, expected, offset);
                }
                if let Some(payload) = payload
                    && let Err(e) = cp.process(payload, &position, received)
                {
                    break Err(anyhow::anyhow!(
                        "cannot keep the effects of {position}: {e}; stopping without committing it"
                    ));
                }
                cp.record(key, offset + 1);
                drop(cp);
                ctx.health.source_connected.store(true, Ordering::Relaxed);
                messages += 1;
                if crate::testhooks::fatal_due(messages) {
                    inject_fatal_error(&consumer);
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                // A partition's next offset is gone (auto.offset.reset = error).
                resume_after_reset(&consumer, &checkpointer, &ctx.metrics);
            }
            Some(Err(e)) => {
                // Errors also reach Context::error; librdkafka retries by itself,
                // except after a fatal error (checked below).
                tracing::debug!(error = %e, "poll error");
                last_fatal_check -= Duration::from_secs(1);
            }
            None => {}
        }
        if let Some(seeds) = &seeds {
            let mut kept = Ok(());
            while let (Ok(()), Ok(fetched)) = (&kept, seeds.try_recv()) {
                let mut cp = lock_checkpointer(&checkpointer);
                kept = crate::source::graph::apply(&mut cp, &fetched, &ctx.metrics);
            }
            if let Err(e) = kept {
                break Err(anyhow::anyhow!(
                    "cannot keep the effects of a Microsoft Graph listing: {e}; stopping without committing it"
                ));
            }
        }
        if last_fatal_check.elapsed() >= Duration::from_secs(1) {
            last_fatal_check = Instant::now();
            if let Some((code, reason)) = consumer.client().fatal_error() {
                break Err(anyhow::anyhow!(
                    "the Kafka client hit a fatal error and cannot go on: {code:?}: {reason}{hint}; stopping without committing (systemd restarts it)",
                    hint = if code == RDKafkaErrorCode::FencedInstanceId {
                        " (another consumer uses the same kafka.group_instance_id: give each daemon its own, e.g. after cloning a VM)"
                    } else {
                        ""
                    }
                ));
            }
        }
        if Instant::now() >= next_topic_check {
            // While something is wrong, look again sooner.
            let fine = check_topics(&consumer, config, &ctx, &mut unassigned_checks);
            next_topic_check = Instant::now() + if fine { TOPIC_CHECK_EVERY } else { Duration::from_secs(5) };
        }
        let mut cp = lock_checkpointer(&checkpointer);
        if cp.poisoned() {
            // A checkpoint inside a rebalance callback could not keep its dead letters.
            break Err(anyhow::anyhow!("dead letters could not be kept; stopping without committing"));
        }
        // The snapshot is written on a thread of its own while messages go
        // on; it is finished (sinks told, offsets committed) once durable.
        // A failed commit or checkpoint was said and counted where it
        // happened (events); only a fatal one stops the source.
        let mut checkpointed = cp.finish_checkpoint(Some(&commit), Wait::No);
        if checkpointed.is_ok() && cp.due(interval) {
            checkpointed = cp.start_checkpoint();
        }
        if let Err(e @ CheckpointError::Fatal(_)) = checkpointed {
            break Err(e.into());
        }
    };
    ctx.health.stopping.store(true, Ordering::Relaxed);
    if result.is_ok() {
        // Leave the group cleanly; a final revoke checkpoints again (cheap).
        consumer.unsubscribe();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && consumer.assignment().map(|a| a.count() > 0).unwrap_or(false) {
            consumer.poll(Duration::from_millis(100));
        }
    }
    result
}

/// Looks at the brokers' metadata: a subscribed topic that does not exist
/// makes the daemon not ready (naming it); so does holding only some of the
/// topics' partitions, unless the configuration says the group is shared on
/// purpose (coverage is per instance: a partial view is a wrong one).
///
/// Holding no partition at all while the topics have some is a problem too
/// once it lasts (`unassigned_checks` in a row; a rebalance takes seconds).
/// Returns whether all is well.
fn check_topics(
    consumer: &BaseConsumer<Context>,
    config: &Config,
    ctx: &SourceContext,
    unassigned_checks: &mut u32,
) -> bool {
    if !ctx.health.source_connected.load(Ordering::Relaxed) {
        return false;
    }
    let metadata = match consumer.fetch_metadata(None, Duration::from_secs(5)) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the brokers' metadata");
            return false;
        }
    };
    let mut missing = Vec::new();
    let mut total = 0usize;
    for topic in &config.kafka.topics {
        match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() => total += t.partitions().len(),
            _ => missing.push(topic.clone()),
        }
    }
    let assigned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
    ctx.metrics.partitions(assigned, total);
    let refusal = refusal_problem(&consumer.context().partitions().refused);
    let problem = if !missing.is_empty() {
        let problem = format!(
            "subscribed topic(s) {} do not exist on the brokers (check kafka.topics and the Entra diagnostic setting)",
            missing.join(", ")
        );
        consumer.context().events.emit(SourceProblem { kind: "missing topic", problem: &problem });
        Some(problem)
    } else if assigned == 0 && total > 0 && {
        *unassigned_checks += 1;
        *unassigned_checks >= 3
    } {
        let problem = format!(
            "holding none of the {total} partitions of the subscribed topics: consumer group {:?} has not assigned any to this daemon (a rebalance that does not end, or other members hold them all)",
            config.kafka.group_id
        );
        consumer.context().events.emit(SourceProblem { kind: "unassigned", problem: &problem });
        Some(problem)
    } else if assigned > 0 && assigned < total && !config.kafka.shared_group {
        let problem = format!(
            "holding {assigned} of the {total} partitions of the subscribed topics: another member of consumer group {:?} holds the others, so this daemon's coverage is partial. Give each daemon its own kafka.group_id (each reads everything), or set kafka.shared_group = true if that is intended",
            config.kafka.group_id
        );
        consumer.context().events.emit(SourceProblem { kind: "partial assignment", problem: &problem });
        Some(problem)
    } else {
        None
    };
    if assigned > 0 {
        *unassigned_checks = 0;
    }
    let fine = problem.is_none() && assigned > 0;
    ctx.health.set_source_problem(problem.or(refusal));
    fine
}

/// A message this close to its partition's end (as librdkafka last heard
/// it from the broker) was read as it arrived: its timestamp tells the
/// brokers' time (see [`crate::clock`]).
const HEAD_SLACK: i64 = 100;

/// Whether `offset` is at the head of its partition, by the end offset
/// librdkafka has cached from its last fetch (no request to the broker).
fn at_head(consumer: &BaseConsumer<Context>, topic: &std::ffi::CStr, partition: i32, offset: i64) -> bool {
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid for the consumer's lifetime and the
    // topic a NUL-terminated string; librdkafka only reads its cached
    // watermarks into the two integers.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0 && offset + 1 + HEAD_SLACK >= high
}

/// Messages `expected..offset` of a partition were gone before they could be
/// read (retention ran out while they waited): counted, and logged with the range.
fn lost_between(metrics: &Metrics, topic: &str, partition: i32, expected: i64, offset: i64) {
    let lost = (offset - expected) as u64;
    tracing::error!(
        topic,
        partition,
        first_lost = expected,
        last_lost = offset - 1,
        lost_messages = lost,
        "messages expired before they could be read: their sign-ins are lost"
    );
    metrics.offsets_skipped(topic, lost);
}

/// After a fetch found a partition's next offset gone (`auto.offset.reset =
/// error`: librdkafka says so without naming the partition, and stops
/// fetching it): each held partition whose next offset is before its log
/// start has lost the messages between — counted, logged with the range —
/// and is assigned again at its log start (a seek is refused in that state).
fn resume_after_reset(consumer: &BaseConsumer<Context>, checkpointer: &Mutex<Checkpointer>, metrics: &Metrics) {
    let Ok(assignment) = consumer.assignment() else { return };
    let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
    let mut again = TopicPartitionList::new();
    let mut moved = TopicPartitionList::new();
    for e in assignment.elements() {
        let (topic, partition) = (e.topic().to_owned(), e.partition());
        let key = (topic.clone(), partition);
        let next = lock_checkpointer(checkpointer).next_offset(&key);
        let low = consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10)).ok().map(|(low, _)| low);
        let at = match (next, low) {
            (Some(next), Some(low)) if next < low => {
                lost_between(metrics, &topic, partition, next, low);
                lock_checkpointer(checkpointer).record(key, low);
                let _ = moved.add_partition_offset(&topic, partition, Offset::Offset(low));
                Offset::Offset(low)
            }
            (Some(next), _) => Offset::Offset(next),
            (None, _) => e.offset(),
        };
        let _ = again.add_partition_offset(&topic, partition, at);
    }
    if moved.count() == 0 {
        return;
    }
    let result = if cooperative {
        consumer.incremental_unassign(&moved).and_then(|()| consumer.incremental_assign(&moved))
    } else {
        consumer.assign(&again)
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "cannot resume the partitions at their log start");
    }
    // Partitions refused before stay paused.
    let refused = consumer.context().partitions().refused.clone();
    if !refused.is_empty() {
        let mut paused = TopicPartitionList::new();
        for (topic, partition) in &refused {
            paused.add_partition(topic, *partition);
        }
        let _ = consumer.pause(&paused);
    }
}

/// The largest message mfawatch inflates: Event Hubs takes 1 MB, a gzip
/// bomb must not take the memory.
const MAX_INFLATED: u64 = 64 * 1024 * 1024;

/// The payload of a message its producer marked `content-encoding: gzip`,
/// inflated (some forwarders compress; Event Hubs Capture does). `None` for
/// any other message, and for one that does not inflate (it is then decoded
/// as it is, and dead-lettered as not JSON).
fn gunzipped<M: Message>(message: &M) -> Option<Vec<u8>> {
    use rdkafka::message::Headers;
    use std::io::Read;
    let headers = message.headers()?;
    let gzip = headers.iter().any(|h| {
        h.key.eq_ignore_ascii_case("content-encoding") && h.value.is_some_and(|v| v.eq_ignore_ascii_case(b"gzip"))
    });
    if !gzip {
        return None;
    }
    let mut out = Vec::new();
    let reader = flate2::read::MultiGzDecoder::new(message.payload()?);
    match reader.take(MAX_INFLATED + 1).read_to_end(&mut out) {
        Ok(n) if (n as u64) <= MAX_INFLATED => Some(out),
        _ => None,
    }
}

/// The fatal-error test hook: what a fenced static member goes through.
fn inject_fatal_error(consumer: &BaseConsumer<Context>) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let reason = std::ffi::CString::new("injected by a test hook").expect("no NUL");
        // SAFETY: the client pointer is valid for the consumer's lifetime, the
        // reason a NUL-terminated string that librdkafka copies.
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                consumer.client().native_ptr(),
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID,
                reason.as_ptr(),
            );
        }
    });
}
