//! Kafka and Azure Event Hubs (Kafka endpoint): messages with their position.
//!
//! One consumer in a consumer group, polled on the pipeline thread; every
//! librdkafka callback (rebalance, statistics, errors) runs inside that poll,
//! on that thread. Offsets are never committed by librdkafka: the checkpoint
//! commits them after the snapshot holding them is durable, and a partition
//! assigned to us starts from the snapshot's offset when it has one.
//!
//! Secrets (the Event Hubs connection string, SASL passwords) come from a
//! systemd credential or the environment, go straight into librdkafka's
//! configuration and are never logged, printed or put in an error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use super::Position;
use crate::checkpoint::{CheckpointError, Checkpointer, Committed, Partition, SourceIdentity};
use crate::config::{Auth, Config, StartPosition};
use crate::logging::Throttle;
use crate::pipeline::Shared;
use crate::secrets::{Secret, read_credential};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "no Event Hubs connection string: systemd credential {name:?} is not available ({reason}) and environment variable {env} is not set (run under systemd with LoadCredential=, or export {env})"
    )]
    Credential { name: String, reason: String, env: String },
    #[error("environment variable {0} is not set: it must hold the Event Hubs connection string")]
    MissingEnv(String),
    #[error(
        "the Event Hubs connection string from {0} does not look like one (expected \"Endpoint=sb://...;SharedAccessKeyName=...;SharedAccessKey=...\")"
    )]
    NotAConnectionString(String),
    #[error(
        "the Event Hubs connection string from {0} is scoped to one hub (it has an EntityPath): it cannot read the other hubs; use a shared access policy of the namespace (Listen) instead"
    )]
    HubScoped(String),
    #[error(
        "the Event Hubs connection string from {from} is for namespace {endpoint:?}, but kafka.eventhubs_namespace is {configured:?}"
    )]
    OtherNamespace { from: String, endpoint: String, configured: String },
    #[error("no SASL password: {0}")]
    MissingPassword(String),
    #[error("cannot create the Kafka client: {}", redacted(.0))]
    Client(KafkaError),
    #[error("cannot subscribe to {topics:?}: {source}")]
    Subscribe { topics: Vec<String>, source: KafkaError },
}

/// The Event Hubs connection string, from the systemd credential or the environment.
pub fn eventhubs_connection_string(config: &Config) -> Result<Secret, SourceError> {
    connection_string_from(config, read_credential, |name| std::env::var(name).ok())
}

/// [`eventhubs_connection_string`] with where credentials and variables come from.
fn connection_string_from(
    config: &Config,
    read_credential: impl Fn(&str) -> Result<String, String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Secret, SourceError> {
    let k = &config.kafka;
    let from_env = || {
        env(&k.connection_string_env).map(|text| (text, format!("environment variable {}", k.connection_string_env)))
    };
    // The systemd credential first; failing that, the environment variable.
    let (value, from) = match &k.connection_string_credential {
        Some(name) => match read_credential(name) {
            Ok(text) => (text, format!("systemd credential {name:?}")),
            Err(reason) => from_env().ok_or_else(|| SourceError::Credential {
                name: name.clone(),
                reason,
                env: k.connection_string_env.clone(),
            })?,
        },
        None => from_env().ok_or_else(|| SourceError::MissingEnv(k.connection_string_env.clone()))?,
    };
    let value = value.trim().to_owned();
    check_connection_string(&value, k.eventhubs_namespace.as_deref(), &from)?;
    Ok(Secret::new(value))
}

/// A connection string mfawatch can use: the three parts a shared access
/// policy gives, for the configured namespace, and namespace-wide (a key
/// scoped to one hub cannot read the other three). Errors never quote it.
fn check_connection_string(value: &str, namespace: Option<&str>, from: &str) -> Result<(), SourceError> {
    let parts: Vec<(&str, &str)> = value
        .split(';')
        .filter(|p| !p.trim().is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let get = |key: &str| parts.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| *v);
    let (Some(endpoint), Some(_), Some(_)) = (get("Endpoint"), get("SharedAccessKeyName"), get("SharedAccessKey"))
    else {
        return Err(SourceError::NotAConnectionString(from.to_owned()));
    };
    if get("EntityPath").is_some() {
        return Err(SourceError::HubScoped(from.to_owned()));
    }
    let host = endpoint.trim_start_matches("sb://").split(['/', ':']).next().unwrap_or("");
    let endpoint_namespace = host.split('.').next().unwrap_or("");
    if let Some(ns) = namespace
        && !endpoint_namespace.eq_ignore_ascii_case(ns.trim())
    {
        return Err(SourceError::OtherNamespace {
            from: from.to_owned(),
            endpoint: endpoint_namespace.to_owned(),
            configured: ns.to_owned(),
        });
    }
    Ok(())
}

/// A librdkafka error as text, without the value of a setting it names
/// (librdkafka puts values in its configuration errors, and a value can be
/// a secret).
pub fn redacted(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, _, key, _) => format!("librdkafka refuses the setting {key:?}"),
        e => e.to_string(),
    }
}

/// Settings shared by the consumer and the dead-letter producer.
pub fn client_config(config: &Config) -> Result<ClientConfig, SourceError> {
    let k = &config.kafka;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", config.brokers());
    c.set("client.id", concat!("mfawatch/", env!("CARGO_PKG_VERSION")));
    c.set("socket.keepalive.enable", "true");
    match k.auth {
        Auth::None => {}
        Auth::Eventhubs | Auth::Entra => {
            c.set("security.protocol", "SASL_SSL");
            if k.auth == Auth::Eventhubs {
                let secret = eventhubs_connection_string(config)?;
                c.set("sasl.mechanisms", "PLAIN");
                c.set("sasl.username", "$ConnectionString");
                c.set("sasl.password", secret.expose());
            } else {
                // The token comes from the client context (`generate_oauth_token`).
                c.set("sasl.mechanisms", "OAUTHBEARER");
            }
            // Microsoft's recommended client settings for Event Hubs: the
            // service closes connections idle for 240 s.
            c.set("metadata.max.age.ms", "180000");
            c.set("connections.max.idle.ms", "180000");
            c.set("socket.timeout.ms", "60000");
        }
        Auth::Sasl => {
            let password = crate::secrets::read(k.sasl_password_credential.as_deref(), k.sasl_password_env.as_deref())
                .map_err(SourceError::MissingPassword)?;
            let password = password.expose().to_owned();
            c.set("security.protocol", if k.tls { "SASL_SSL" } else { "SASL_PLAINTEXT" });
            c.set("sasl.mechanisms", k.sasl_mechanism.clone().unwrap_or_default());
            c.set("sasl.username", k.sasl_username.clone().unwrap_or_default());
            c.set("sasl.password", password);
        }
    }
    if let Some(ca) = &k.ca_file {
        c.set("ssl.ca.location", ca.to_string_lossy());
    }
    Ok(c)
}

fn apply_overrides(c: &mut ClientConfig, config: &Config) {
    for (key, value) in &config.kafka.librdkafka {
        c.set(key, value);
    }
}

/// The consumer's settings: manual offsets, bounded prefetch, statistics.
pub fn consumer_config(config: &Config) -> Result<ClientConfig, SourceError> {
    let k = &config.kafka;
    let mut c = client_config(config)?;
    c.set("group.id", &k.group_id);
    if let Some(id) = config.group_instance_id() {
        c.set("group.instance.id", id);
    }
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    // Never jump silently: a fetch at an offset that is gone (retention ran
    // out during a backlog) is an error the loop handles — it counts the
    // messages lost and resumes at the log start (see `resume_after_reset`).
    // Where a partition starts when it is new is decided in `place`.
    c.set("auto.offset.reset", "error");
    c.set("session.timeout.ms", "30000");
    c.set("heartbeat.interval.ms", "3000");
    c.set("max.poll.interval.ms", "300000");
    // Prefetch: bounded so that a group 7 days behind does not fill memory.
    c.set("queued.max.messages.kbytes", k.prefetch_kbytes.to_string());
    c.set("queued.min.messages", "1000");
    c.set("fetch.max.bytes", (k.prefetch_kbytes.min(64 * 1024) as u64 * 1024 / 4).max(1 << 20).to_string());
    c.set("statistics.interval.ms", "5000");
    c.set_log_level(RDKafkaLogLevel::Info);
    apply_overrides(&mut c, config);
    Ok(c)
}

/// The dead-letter producer's settings.
pub fn producer_config(config: &Config) -> Result<ClientConfig, SourceError> {
    let mut c = client_config(config)?;
    c.set("request.timeout.ms", "60000");
    c.set("message.timeout.ms", "300000");
    c.set("compression.codec", "none");
    apply_overrides(&mut c, config);
    Ok(c)
}

/// Commits the offsets of the partitions we hold and consume (not the
/// refused ones). The snapshot is authoritative: a failed commit is retried
/// by the next checkpoint, and repeated failures make the daemon not ready.
///
/// `Async` in the consumer loop: a broker that holds the connection but does
/// not answer must not hold the loop (and the watchdog) for librdkafka's
/// request timeout; the answer arrives in [`Context::commit_callback`].
/// `Sync` where the partitions are about to be given away.
fn commit_assigned(
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
fn commit_answered_on_poll(consumer: &BaseConsumer<Context>, tpl: &TopicPartitionList) -> KafkaResult<()> {
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
struct Unanswered {
    count: u32,
    /// When the oldest of them was sent (Unix seconds), roughly: since the last answer.
    since: i64,
}

/// What the source knows about its partitions beyond their offsets.
#[derive(Default)]
struct Partitions {
    /// Partitions whose snapshot offset is past their end: not consumed.
    refused: BTreeSet<Partition>,
    /// The cluster identity was compared with the snapshot's.
    identity_checked: bool,
    /// Why the source must stop (another cluster's state).
    stop: Option<String>,
}

/// Where an OAUTHBEARER token comes from (`auth = "entra"`), for a client context.
pub fn token_source(config: &Config) -> anyhow::Result<Option<Arc<super::entra::TokenSource>>> {
    match config.kafka.auth {
        Auth::Entra => Ok(Some(Arc::new(super::entra::TokenSource::from_config(config)?))),
        _ => Ok(None),
    }
}

/// A token for librdkafka, or why there is none (logged once a minute).
pub fn oauth_token(
    tokens: Option<&super::entra::TokenSource>,
    throttle: &Throttle,
) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
    let Some(tokens) = tokens else {
        return Err("OAUTHBEARER needs kafka.auth = \"entra\"".into());
    };
    tokens.token().map_err(|e| {
        if let Some(held_back) = throttle.admit("entra token") {
            tracing::error!(error = %e, held_back, "cannot get a Microsoft Entra token for Event Hubs");
        }
        e.into()
    })
}

/// librdkafka callbacks.
pub struct Context {
    checkpointer: Arc<Mutex<Checkpointer>>,
    shared: Arc<Shared>,
    throttle: Throttle,
    start: StartPosition,
    eventhubs: bool,
    /// The bootstrap servers as configured (part of the source identity).
    brokers: String,
    partitions: Mutex<Partitions>,
    tokens: Option<Arc<super::entra::TokenSource>>,
    unanswered: Mutex<Unanswered>,
}

impl Context {
    /// The checkpointer; if a panic poisoned it, it is marked never to be checkpointed.
    fn checkpointer(&self) -> MutexGuard<'_, Checkpointer> {
        lock_checkpointer(&self.checkpointer)
    }

    fn partitions(&self) -> MutexGuard<'_, Partitions> {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unanswered(&self) -> MutexGuard<'_, Unanswered> {
        self.unanswered.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits still unanswered no longer matter (the partitions were given
    /// away, or a synchronous commit got its answer).
    fn commits_settled(&self) {
        *self.unanswered() = Unanswered::default();
        self.shared.health.set_commit_waiting_since(None);
    }

    /// An asynchronous offset commit went out.
    fn commit_sent(&self) {
        let mut u = self.unanswered();
        if u.count == 0 {
            u.since = chrono::Utc::now().timestamp();
            self.shared.health.set_commit_waiting_since(Some(u.since));
        }
        u.count += 1;
    }

    /// The snapshot's offsets belong to one cluster: refuse another's state
    /// (a state directory pointed at a new namespace would resume at offsets
    /// that mean nothing there). Checked once, at the first assignment.
    fn check_identity(&self, consumer: &BaseConsumer<Context>, cp: &mut Checkpointer) -> Result<(), String> {
        let cluster_id = consumer.client().fetch_cluster_id(Duration::from_secs(10));
        let brokers = consumer_brokers(consumer);
        let now = SourceIdentity { cluster_id, brokers };
        match &cp.source {
            Some(was) if !cp.offsets.is_empty() && !same_source(was, &now, self.eventhubs) => Err(format!(
                "the state in {dir} belongs to another cluster ({was}) than the one configured ({now}): its offsets \
                 mean nothing here. Point checkpoint.dir at this cluster's state, or start afresh with \
                 `mfawatch run --reset-state` (the coverage state is dropped and consumption starts at kafka.start)",
                dir = cp.snapshots.dir().display(),
                was = describe(was),
                now = describe(&now),
            )),
            _ => {
                cp.source = Some(now);
                Ok(())
            }
        }
    }

    /// Where each newly assigned partition starts: the snapshot's offset, or
    /// — for a partition the snapshot does not list — `kafka.start`, resolved
    /// to an absolute offset and recorded so that it is snapshotted and
    /// committed like any other (never the group's committed offset, which
    /// belongs to whatever state committed it). A snapshot offset before the
    /// log start is a gap (retention ran out while we were down: counted,
    /// logged); one past the log end refuses the partition.
    fn place(&self, consumer: &BaseConsumer<Context>, tpl: &mut TopicPartitionList) -> Vec<Partition> {
        let mut cp = self.checkpointer();
        let mut parts = self.partitions();
        if !parts.identity_checked {
            parts.identity_checked = true;
            if let Err(reason) = self.check_identity(consumer, &mut cp) {
                // Nothing is consumed, nothing checkpointed, nothing committed:
                // the offsets of this state mean nothing on these brokers.
                cp.refused = Some(reason.clone());
                parts.stop = Some(reason);
            }
        }
        if parts.stop.is_some() {
            return Vec::new();
        }
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
            let start = match (cp.offsets.get(&key).copied(), marks) {
                (Some(next), Some((_, high))) if next > high => {
                    tracing::error!(
                        topic,
                        partition,
                        snapshot_offset = next,
                        log_end = high,
                        "the snapshot's offset is past the end of this partition: the hub was recreated, or the state belongs to another namespace; not consuming it (start afresh with --reset-state if the hub was recreated)"
                    );
                    refused.push(key.clone());
                    Offset::Offset(next)
                }
                (Some(next), Some((low, _))) if next < low => {
                    let lost = (low - next) as u64;
                    tracing::error!(
                        topic,
                        partition,
                        snapshot_offset = next,
                        log_start = low,
                        lost_messages = lost,
                        "messages expired before they could be read (down longer than the hub's retention): their sign-ins are lost; resuming at the log start"
                    );
                    self.shared.metrics.offsets_skipped(topic, lost);
                    cp.offsets.insert(key.clone(), low);
                    Offset::Offset(low)
                }
                (Some(next), _) => Offset::Offset(next),
                (None, Some((low, high))) => {
                    let at = match self.start {
                        StartPosition::Earliest => low,
                        StartPosition::Latest => high,
                    };
                    tracing::info!(
                        topic,
                        partition,
                        offset = at,
                        start = self.start.as_str(),
                        "partition not in the snapshot: starting at kafka.start"
                    );
                    cp.offsets.insert(key.clone(), at);
                    Offset::Offset(at)
                }
                (None, None) => match self.start {
                    StartPosition::Earliest => Offset::Beginning,
                    StartPosition::Latest => Offset::End,
                },
            };
            let _ = tpl.set_partition_offset(topic, partition, start);
        }
        parts.refused.extend(refused.iter().cloned());
        self.shared.metrics.set_partitions_refused(parts.refused.len());
        refused
    }
}

fn describe(identity: &SourceIdentity) -> String {
    match &identity.cluster_id {
        Some(id) => format!("cluster id {id}, brokers {}", identity.brokers),
        None => format!("brokers {}", identity.brokers),
    }
}

/// Whether two identities name the same cluster: by cluster id when both
/// know one; for Event Hubs, by namespace host; otherwise assumed.
fn same_source(a: &SourceIdentity, b: &SourceIdentity, eventhubs: bool) -> bool {
    match (&a.cluster_id, &b.cluster_id) {
        (Some(x), Some(y)) => x == y,
        _ if eventhubs => a.brokers.eq_ignore_ascii_case(&b.brokers),
        _ => true,
    }
}

fn consumer_brokers(consumer: &BaseConsumer<Context>) -> String {
    consumer.context().brokers.clone()
}

fn lock_checkpointer(checkpointer: &Mutex<Checkpointer>) -> MutexGuard<'_, Checkpointer> {
    checkpointer.lock().unwrap_or_else(|e| {
        let mut cp = e.into_inner();
        cp.poisoned = true;
        cp
    })
}

impl ClientContext for Context {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        oauth_token(self.tokens.as_deref(), &self.throttle)
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // A broker without KIP-345 ignores group.instance.id (librdkafka says
        // so at notice level): membership is then dynamic, which works.
        if message.contains("KIP-345") && self.throttle.admit("KIP-345").is_some() {
            tracing::warn!(target: "librdkafka", "the brokers do not support static group membership: kafka.group_instance_id has no effect, membership is dynamic (a restart waits out session.timeout.ms)");
        }
        let serious = (level as i32) <= (RDKafkaLogLevel::Warning as i32);
        // One kind: the facility and how the message starts (which broker, which
        // complaint), so that different warnings are not held back for each other.
        let kind = || format!("{fac}:{}", message.chars().take(48).collect::<String>());
        let Some(held_back) = (if serious { self.throttle.admit(&kind()) } else { Some(0) }) else {
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
        let was_up = self.shared.health.source_connected.swap(up, Ordering::Relaxed);
        if up && !was_up {
            tracing::info!("connected to the brokers");
        }
        self.shared.metrics.set_ready(self.shared.health.not_ready().is_none());
        if let Some(skew) = self.shared.clock.skew_secs() {
            self.shared.metrics.clock_skew(skew);
            if skew.abs() > crate::clock::SKEW_WARN_SECS
                && let Some(held_back) = self.throttle.admit("clock skew")
            {
                tracing::warn!(
                    skew_seconds = skew,
                    held_back,
                    "the host's clock is {} the brokers' by {} s: mfawatch goes by the brokers' time (alerts.max_age, retention), fix the host clock (NTP)",
                    if skew > 0 { "ahead of" } else { "behind" },
                    skew.abs()
                );
            }
        }
        for (topic, t) in &statistics.topics {
            for (&partition, p) in &t.partitions {
                if partition >= 0 && p.desired && p.consumer_lag >= 0 {
                    self.shared.metrics.consumer_lag(topic, partition, p.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let kind = error.rdkafka_error_code().map_or_else(|| "other".to_string(), |c| format!("{c:?}"));
        self.shared.metrics.kafka_error(&kind);
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::AllBrokersDown)) {
            self.shared.health.source_connected.store(false, Ordering::Relaxed);
            self.shared.metrics.set_ready(false);
        }
        if let Some(held_back) = self.throttle.admit(&kind) {
            tracing::error!(error = %redacted(&error), reason, held_back, "Kafka error");
        }
    }
}

impl ConsumerContext for Context {
    /// The answer to an offset commit. Only asynchronous ones are accounted
    /// here (a synchronous commit's caller has its answer already).
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        self.shared.metrics.commit_answered(result.is_ok());
        let mut u = self.unanswered();
        if u.count == 0 {
            return;
        }
        // The brokers answer: whatever else was sent is no longer waited for
        // (librdkafka does not answer every commit it drops on a rejoin).
        u.count = 0;
        self.shared.health.set_commit_waiting_since(None);
        drop(u);
        match result {
            Ok(()) => self.shared.health.commit_answered(true),
            Err(e) => {
                self.shared.health.commit_answered(false);
                self.shared.metrics.checkpoint_result("commit_failed");
                if let Some(held_back) = self.throttle.admit("commit") {
                    tracing::error!(error = %redacted(&e), held_back, "offset commit failed; the snapshot holds the offsets, the next checkpoint commits again");
                }
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
                self.shared.set_assigned(&held, true);
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
                self.shared.health.set_source_problem(refusal_problem(&self.partitions().refused));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Make everything done so far durable before giving partitions away.
                let refused = self.partitions().refused.clone();
                let commit =
                    |offsets: &BTreeMap<Partition, i64>| commit_assigned(consumer, offsets, &refused, CommitMode::Sync);
                if let Err(e) = self.checkpointer().checkpoint(Some(&commit)) {
                    tracing::error!(error = %e, "checkpoint on partition revoke failed");
                }
                let lost: Vec<Partition> =
                    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
                self.shared.set_assigned(&lost, false);
                let mut parts = self.partitions();
                for e in tpl.elements() {
                    self.shared.metrics.forget_partition(e.topic(), e.partition());
                    let key = (e.topic().to_owned(), e.partition());
                    parts.refused.remove(&key);
                }
                self.shared.metrics.set_partitions_refused(parts.refused.len());
                self.shared.health.set_source_problem(refusal_problem(&parts.refused));
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

fn refusal_problem(refused: &BTreeSet<Partition>) -> Option<String> {
    (!refused.is_empty()).then(|| {
        let names: Vec<String> = refused.iter().map(|(t, p)| format!("{t}[{p}]")).collect();
        format!(
            "not consuming {}: the snapshot's offset is past the partition's end (hub recreated, or another namespace's state)",
            names.join(", ")
        )
    })
}

/// How often the source looks at the brokers' metadata: are the topics
/// there, do we hold all their partitions?
const TOPIC_CHECK_EVERY: Duration = Duration::from_secs(30);

/// Consumes until `stop` is set, checkpointing every `checkpoint.interval`
/// and once more on the way out. Returns an error (without a checkpoint) when
/// a message's effects could not be kept, or librdkafka reports a fatal
/// error: the offsets then stay where the last durable snapshot put them.
pub fn consume(
    config: &Config,
    checkpointer: Arc<Mutex<Checkpointer>>,
    shared: Arc<Shared>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let context = Context {
        checkpointer: checkpointer.clone(),
        shared: shared.clone(),
        throttle: Throttle::default(),
        start: config.kafka.start,
        eventhubs: config.kafka.auth == Auth::Eventhubs,
        partitions: Mutex::default(),
        brokers: config.brokers(),
        tokens: token_source(config)?,
        unanswered: Mutex::default(),
    };
    let consumer: BaseConsumer<Context> =
        consumer_config(config)?.create_with_context(context).map_err(SourceError::Client)?;
    let topics: Vec<&str> = config.kafka.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|source| SourceError::Subscribe { topics: config.kafka.topics.clone(), source })?;
    tracing::info!(brokers = %config.brokers(), topics = ?config.kafka.topics, group = %config.kafka.group_id, "consuming");

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
        shared.health.beat();
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
                    shared.clock.heard_at_head(ts);
                }
                let position = Position::Kafka { topic: topic.clone(), partition, offset };
                let received = timestamp.and_then(chrono::DateTime::from_timestamp_millis);
                let inflated = gunzipped(&message);
                let payload = inflated.as_deref().or(message.payload());
                let mut cp = lock_checkpointer(&checkpointer);
                // Every message is the one after the last: a higher offset
                // means the ones between were gone before they were read.
                if let Some(&expected) = cp.offsets.get(&key)
                    && offset > expected
                {
                    lost_between(&shared, &topic, partition, expected, offset);
                }
                if let Some(payload) = payload
                    && let Err(e) = cp.pipeline.process(payload, &position, received)
                {
                    cp.poisoned = true;
                    break Err(anyhow::anyhow!(
                        "cannot keep the effects of {position}: {e}; stopping without committing it"
                    ));
                }
                cp.offsets.insert(key, offset + 1);
                drop(cp);
                shared.health.source_connected.store(true, Ordering::Relaxed);
                messages += 1;
                if crate::testhooks::fatal_due(messages) {
                    inject_fatal_error(&consumer);
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                // A partition's next offset is gone (auto.offset.reset = error).
                resume_after_reset(&consumer, &checkpointer, &shared);
            }
            Some(Err(e)) => {
                // Errors also reach Context::error; librdkafka retries by itself,
                // except after a fatal error (checked below).
                tracing::debug!(error = %e, "poll error");
                last_fatal_check -= Duration::from_secs(1);
            }
            None => {}
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
            let fine = check_topics(&consumer, config, &shared, &mut unassigned_checks);
            next_topic_check = Instant::now() + if fine { TOPIC_CHECK_EVERY } else { Duration::from_secs(5) };
        }
        let mut cp = lock_checkpointer(&checkpointer);
        if cp.poisoned {
            // A checkpoint inside a rebalance callback could not keep its dead letters.
            break Err(anyhow::anyhow!("dead letters could not be kept; stopping without committing"));
        }
        if cp.last_checkpoint.elapsed() >= interval {
            match cp.checkpoint(Some(&commit)) {
                Ok(()) => {}
                Err(e @ CheckpointError::Fatal(_)) => break Err(e.into()),
                Err(e @ CheckpointError::Commit(_)) => {
                    if let Some(held_back) = consumer.context().throttle.admit("commit") {
                        tracing::error!(error = %e, held_back, "offset commit failed; the snapshot holds the offsets, the next checkpoint commits again");
                    }
                }
                Err(e @ CheckpointError::Failed(_)) => {
                    if let Some(held_back) = consumer.context().throttle.admit("checkpoint") {
                        tracing::error!(error = %e, held_back, "checkpoint failed; nothing committed, retrying at the next interval");
                    }
                }
            }
        }
    };
    shared.health.stopping.store(true, Ordering::Relaxed);
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
    shared: &Shared,
    unassigned_checks: &mut u32,
) -> bool {
    if !shared.health.source_connected.load(Ordering::Relaxed) {
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
    shared.metrics.partitions(assigned, total);
    let refusal = refusal_problem(&consumer.context().partitions().refused);
    let problem = if !missing.is_empty() {
        let problem = format!(
            "subscribed topic(s) {} do not exist on the brokers (check kafka.topics and the Entra diagnostic setting)",
            missing.join(", ")
        );
        if let Some(held_back) = consumer.context().throttle.admit("missing topic") {
            tracing::error!(topics = ?missing, held_back, "{problem}");
        }
        Some(problem)
    } else if assigned == 0 && total > 0 && {
        *unassigned_checks += 1;
        *unassigned_checks >= 3
    } {
        let problem = format!(
            "holding none of the {total} partitions of the subscribed topics: consumer group {:?} has not assigned any to this daemon (a rebalance that does not end, or other members hold them all)",
            config.kafka.group_id
        );
        if let Some(held_back) = consumer.context().throttle.admit("unassigned") {
            tracing::error!(total, held_back, "{problem}");
        }
        Some(problem)
    } else if assigned > 0 && assigned < total && !config.kafka.shared_group {
        let problem = format!(
            "holding {assigned} of the {total} partitions of the subscribed topics: another member of consumer group {:?} holds the others, so this daemon's coverage is partial. Give each daemon its own kafka.group_id (each reads everything), or set kafka.shared_group = true if that is intended",
            config.kafka.group_id
        );
        if let Some(held_back) = consumer.context().throttle.admit("partial assignment") {
            tracing::error!(assigned, total, held_back, "{problem}");
        }
        Some(problem)
    } else {
        None
    };
    if assigned > 0 {
        *unassigned_checks = 0;
    }
    let fine = problem.is_none() && assigned > 0;
    shared.health.set_source_problem(problem.or(refusal));
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
fn lost_between(shared: &Shared, topic: &str, partition: i32, expected: i64, offset: i64) {
    let lost = (offset - expected) as u64;
    tracing::error!(
        topic,
        partition,
        first_lost = expected,
        last_lost = offset - 1,
        lost_messages = lost,
        "messages expired before they could be read: their sign-ins are lost"
    );
    shared.metrics.offsets_skipped(topic, lost);
}

/// After a fetch found a partition's next offset gone (`auto.offset.reset =
/// error`: librdkafka says so without naming the partition, and stops
/// fetching it): each held partition whose next offset is before its log
/// start has lost the messages between — counted, logged with the range —
/// and is assigned again at its log start (a seek is refused in that state).
fn resume_after_reset(consumer: &BaseConsumer<Context>, checkpointer: &Mutex<Checkpointer>, shared: &Shared) {
    let Ok(assignment) = consumer.assignment() else { return };
    let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
    let mut again = TopicPartitionList::new();
    let mut moved = TopicPartitionList::new();
    for e in assignment.elements() {
        let (topic, partition) = (e.topic().to_owned(), e.partition());
        let key = (topic.clone(), partition);
        let next = lock_checkpointer(checkpointer).offsets.get(&key).copied();
        let low = consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10)).ok().map(|(low, _)| low);
        let at = match (next, low) {
            (Some(next), Some(low)) if next < low => {
                lost_between(shared, &topic, partition, next, low);
                lock_checkpointer(checkpointer).offsets.insert(key, low);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn eventhubs(credential: bool) -> Config {
        let credential = if credential { "connection_string_credential = \"cs\"\n" } else { "" };
        let text = format!(
            "[kafka]\nauth = \"eventhubs\"\neventhubs_namespace = \"contoso\"\n{credential}connection_string_env = \"CS\"\n"
        );
        Config::parse(&text, std::path::Path::new("test.toml")).unwrap()
    }

    const GOOD: &str =
        "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=c2VjcmV0";

    #[test]
    fn the_connection_string_comes_from_the_credential_failing_that_the_environment() {
        let credential = |text: Option<&'static str>| {
            move |_: &str| text.map(str::to_owned).ok_or("CREDENTIALS_DIRECTORY is not set".to_owned())
        };
        let env = |text: Option<&'static str>| move |_: &str| text.map(str::to_owned);
        let got = |config: &Config, c, e| {
            connection_string_from(config, credential(c), env(e)).map(|s| s.expose().to_owned())
        };
        assert_eq!(got(&eventhubs(true), Some(GOOD), Some("other")).unwrap(), GOOD);
        assert_eq!(got(&eventhubs(true), None, Some(GOOD)).unwrap(), GOOD);
        assert_eq!(got(&eventhubs(false), Some("unused"), Some(GOOD)).unwrap(), GOOD);
        let both_missing = got(&eventhubs(true), None, None).unwrap_err().to_string();
        assert!(both_missing.contains("\"cs\"") && both_missing.contains("CS"), "{both_missing}");
        let not_one = got(&eventhubs(false), None, Some("hunter2")).unwrap_err().to_string();
        assert!(not_one.contains("does not look like one") && !not_one.contains("hunter2"), "{not_one}");
    }

    #[test]
    fn a_state_belongs_to_the_cluster_it_was_built_from() {
        let id = |c: Option<&str>, b: &str| SourceIdentity { cluster_id: c.map(str::to_owned), brokers: b.into() };
        assert!(same_source(&id(Some("a"), "k1:9092"), &id(Some("a"), "k2:9092"), false));
        assert!(!same_source(&id(Some("a"), "k:9092"), &id(Some("b"), "k:9092"), false));
        // Event Hubs: the namespace names the cluster when no id is given.
        assert!(!same_source(
            &id(None, "one.servicebus.windows.net:9093"),
            &id(None, "two.servicebus.windows.net:9093"),
            true
        ));
        assert!(same_source(
            &id(None, "ONE.servicebus.windows.net:9093"),
            &id(None, "one.servicebus.windows.net:9093"),
            true
        ));
        // Plain Kafka without ids: a changed bootstrap list is not another cluster.
        assert!(same_source(&id(None, "k1:9092"), &id(None, "k1:9092,k2:9092"), false));
    }
}
