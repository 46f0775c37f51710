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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use super::Position;
use crate::checkpoint::{Partition, Replayed, SnapshotFile, SnapshotRef};
use crate::config::{Auth, Config};
use crate::pipeline::{Pipeline, Shared};

/// A secret value: shows as `***` in every Debug and Display.
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("***")
    }
}

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
    #[error("environment variable {0} is not set: it must hold the SASL password")]
    MissingPassword(String),
    #[error("cannot create the Kafka client: {}", redacted(.0))]
    Client(KafkaError),
    #[error("cannot subscribe to {topics:?}: {source}")]
    Subscribe { topics: Vec<String>, source: KafkaError },
}

/// A systemd credential's text (`LoadCredential=`), or why there is none.
fn read_credential(name: &str) -> Result<String, String> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or("CREDENTIALS_DIRECTORY is not set")?;
    let path = PathBuf::from(dir).join(name);
    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
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
    if !value.starts_with("Endpoint=sb://") || !value.contains("SharedAccessKey") {
        return Err(SourceError::NotAConnectionString(from));
    }
    Ok(Secret(value))
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
        Auth::Eventhubs => {
            let secret = eventhubs_connection_string(config)?;
            c.set("security.protocol", "SASL_SSL");
            c.set("sasl.mechanisms", "PLAIN");
            c.set("sasl.username", "$ConnectionString");
            c.set("sasl.password", secret.0);
            // Microsoft's recommended client settings for Event Hubs: the
            // service closes connections idle for 240 s.
            c.set("metadata.max.age.ms", "180000");
            c.set("connections.max.idle.ms", "180000");
            c.set("socket.timeout.ms", "60000");
        }
        Auth::Sasl => {
            let env = k.sasl_password_env.clone().unwrap_or_default();
            let password = std::env::var(&env).map_err(|_| SourceError::MissingPassword(env.clone()))?;
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
    c.set("auto.offset.reset", k.start.as_str());
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

/// What the pipeline thread has done and not yet made durable.
pub struct Progress {
    pub pipeline: Pipeline,
    /// Next offset to read, per partition: from the snapshot, then advanced.
    pub offsets: BTreeMap<Partition, i64>,
    /// The files `replay` has read into the state (kept across runs).
    pub replayed: Vec<Replayed>,
    pub snapshots: SnapshotFile,
    pub last_checkpoint: Instant,
    /// Set when a message was only partly processed: the in-memory state is
    /// then ahead of any offset, and must never be checkpointed.
    pub poisoned: bool,
    /// Held while this process owns the state directory.
    pub _state_lock: std::fs::File,
}

impl Progress {
    /// The checkpoint of DESIGN.md: sinks durable, snapshot with offsets
    /// written atomically, then — only then — the offsets committed.
    pub fn checkpoint(&mut self, consumer: Option<&BaseConsumer<Context>>) -> anyhow::Result<()> {
        // A panic unwinding through the pipeline drops the consumer, whose
        // close runs the revoke callback: the state may hold half a message.
        if std::thread::panicking() {
            self.poisoned = true;
        }
        anyhow::ensure!(!self.poisoned, "not checkpointing: a message was only partly processed");
        let started = Instant::now();
        let shared = self.pipeline.shared().clone();
        let result = self.write_snapshot();
        self.last_checkpoint = Instant::now();
        if let Err(e) = result {
            shared.metrics.checkpoint_failed();
            return Err(e);
        }
        if let Some(consumer) = consumer {
            commit_assigned(consumer, &self.offsets, &shared);
        }
        shared.metrics.checkpoint_done(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn write_snapshot(&mut self) -> anyhow::Result<()> {
        if let Err(e) = self.pipeline.sync() {
            // Some dead letters may be lost: only reading their records again
            // (from the last snapshot, after a restart) recovers them.
            self.poisoned = true;
            anyhow::bail!("cannot make dead letters durable: {e}; stopping so that a restart writes them again");
        }
        let shared = self.pipeline.shared().clone();
        let coverage = shared.coverage.read().unwrap_or_else(|e| e.into_inner());
        let bytes = self.snapshots.write(&SnapshotRef {
            offsets: &self.offsets,
            coverage: coverage.snapshot_ref(),
            written_at: chrono::Utc::now().timestamp(),
            replayed: &self.replayed,
        })?;
        tracing::debug!(bytes, users = coverage.len(), partitions = self.offsets.len(), "snapshot written");
        Ok(())
    }
}

/// Commits the offsets of the partitions we hold. A failed commit is only
/// logged: the snapshot is authoritative and the next checkpoint retries.
fn commit_assigned(consumer: &BaseConsumer<Context>, offsets: &BTreeMap<Partition, i64>, shared: &Shared) {
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    let mut tpl = TopicPartitionList::new();
    for e in assignment.elements() {
        if let Some(&next) = offsets.get(&(e.topic().to_owned(), e.partition())) {
            let _ = tpl.add_partition_offset(e.topic(), e.partition(), Offset::Offset(next));
        }
    }
    if tpl.count() == 0 {
        return;
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
        shared.metrics.kafka_error("commit");
        tracing::warn!(error = %e, "offset commit failed; the snapshot holds the offsets, the next checkpoint retries");
    }
}

/// librdkafka callbacks.
pub struct Context {
    progress: Arc<Mutex<Progress>>,
    shared: Arc<Shared>,
    throttle: Throttle,
}

/// While a broker is down librdkafka reports it on every retry, several times
/// a second. Warnings and errors are logged once a minute per kind, saying how
/// many were held back; the metrics still count every one.
#[derive(Default)]
struct Throttle(Mutex<std::collections::HashMap<String, (Instant, u64)>>);

impl Throttle {
    const EVERY: Duration = Duration::from_secs(60);

    /// `Some(held back since the last one)` when a report of `kind` is to be logged now.
    fn admit(&self, kind: &str) -> Option<u64> {
        let mut kinds = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match kinds.get_mut(kind) {
            Some((last, held)) if now.duration_since(*last) < Self::EVERY => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                *last = now;
                Some(std::mem::take(held))
            }
            None => {
                kinds.insert(kind.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

impl Context {
    /// The progress; if a panic poisoned it, it is marked never to be checkpointed.
    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| {
            let mut progress = e.into_inner();
            progress.poisoned = true;
            progress
        })
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
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
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // Resume each partition from our own offsets, not the group's.
                let progress = self.progress();
                let mut resumed = Vec::new();
                for e in tpl.elements() {
                    if let Some(&next) = progress.offsets.get(&(e.topic().to_owned(), e.partition())) {
                        resumed.push((e.topic().to_owned(), e.partition(), next));
                    }
                }
                drop(progress);
                for (topic, partition, next) in &resumed {
                    let _ = tpl.set_partition_offset(topic, *partition, Offset::Offset(*next));
                }
                tracing::info!(partitions = tpl.count(), from_snapshot = resumed.len(), "partitions assigned");
                let result = if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) };
                if let Err(e) = result {
                    tracing::error!(error = %e, "cannot assign partitions");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Make everything done so far durable before giving partitions away.
                if let Err(e) = self.progress().checkpoint(Some(consumer)) {
                    tracing::error!(error = %e, "checkpoint on partition revoke failed");
                }
                for e in tpl.elements() {
                    self.shared.metrics.forget_partition(e.topic(), e.partition());
                }
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

/// Consumes until `stop` is set, checkpointing every `checkpoint.interval`
/// and once more on the way out. Returns an error (without a checkpoint) when
/// a message's effects could not be kept: the offsets then stay where the last
/// durable snapshot put them.
pub fn consume(
    config: &Config,
    progress: Arc<Mutex<Progress>>,
    shared: Arc<Shared>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let context = Context { progress: progress.clone(), shared: shared.clone(), throttle: Throttle::default() };
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
    let result = loop {
        shared.health.beat();
        if stop.load(Ordering::Relaxed) {
            break progress.lock().unwrap_or_else(|e| e.into_inner()).checkpoint(Some(&consumer));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let topic = topics_by_name.get(message.topic()).cloned().unwrap_or_else(|| Arc::from(message.topic()));
                let position = Position::Kafka { topic, partition: message.partition(), offset: message.offset() };
                let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(payload) = message.payload()
                    && let Err(e) = p.pipeline.process(payload, &position)
                {
                    p.poisoned = true;
                    break Err(anyhow::anyhow!(
                        "cannot keep the effects of {position}: {e}; stopping without committing it"
                    ));
                }
                p.offsets.insert((message.topic().to_owned(), message.partition()), message.offset() + 1);
                shared.health.source_connected.store(true, Ordering::Relaxed);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => {
                // Errors also reach Context::error; librdkafka retries by itself.
                tracing::debug!(error = %e, "poll error");
            }
            None => {}
        }
        let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
        if p.poisoned {
            // A checkpoint inside a rebalance callback could not keep its dead letters.
            break Err(anyhow::anyhow!("dead letters could not be kept; stopping without committing"));
        }
        if p.last_checkpoint.elapsed() >= interval
            && let Err(e) = p.checkpoint(Some(&consumer))
        {
            if p.poisoned {
                break Err(e);
            }
            tracing::error!(error = %format!("{e:#}"), "checkpoint failed; retrying at the next interval");
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
        let got = |config: &Config, c, e| connection_string_from(config, credential(c), env(e)).map(|s| s.0);
        assert_eq!(got(&eventhubs(true), Some(GOOD), Some("other")).unwrap(), GOOD);
        assert_eq!(got(&eventhubs(true), None, Some(GOOD)).unwrap(), GOOD);
        assert_eq!(got(&eventhubs(false), Some("unused"), Some(GOOD)).unwrap(), GOOD);
        let both_missing = got(&eventhubs(true), None, None).unwrap_err().to_string();
        assert!(both_missing.contains("\"cs\"") && both_missing.contains("CS"), "{both_missing}");
        let not_one = got(&eventhubs(false), None, Some("hunter2")).unwrap_err().to_string();
        assert!(not_one.contains("does not look like one") && !not_one.contains("hunter2"), "{not_one}");
    }

    #[test]
    fn repeated_reports_are_held_back_per_kind() {
        let t = Throttle::default();
        assert_eq!(t.admit("AllBrokersDown"), Some(0));
        assert_eq!(t.admit("AllBrokersDown"), None);
        assert_eq!(t.admit("AllBrokersDown"), None);
        assert_eq!(t.admit("Transport"), Some(0));
        // A minute later the next one is logged with the count held back.
        t.0.lock().unwrap().get_mut("AllBrokersDown").unwrap().0 -= Throttle::EVERY;
        assert_eq!(t.admit("AllBrokersDown"), Some(2));
        assert_eq!(t.admit("AllBrokersDown"), None);
    }
}
