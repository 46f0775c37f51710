//! Real components for integration tests: a tansu broker and the mfawatch
//! daemon, each on a free loopback port and stopped when dropped.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::TopicPartitionList;

/// The checkout the tests run in: cargo and nextest say so at run time. The
/// path compiled in is only a fallback, since a test binary built in another
/// checkout that shares the target directory would read that checkout's files.
pub fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// Every public directory sample (AuditLogs, RiskyUsers, UserRiskEvents,
/// Graph), sorted; `SOURCES.md` is not one.
#[allow(dead_code)]
pub fn directory_samples() -> Vec<PathBuf> {
    let base = root().join("../shared/samples/public/directory");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&base).expect("directory samples present") {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).unwrap() {
            out.push(file.unwrap().path());
        }
    }
    out.sort();
    assert!(out.len() >= 20, "expected the public directory samples, found {out:?}");
    out
}

/// A loopback port no other test process is given while this one runs.
///
/// Not `bind(0)`: the kernel hands that port out again once we let go of it,
/// to another test (nextest runs tests side by side) or as the source port of
/// an outgoing connection, and a test that restarts a daemon on its port
/// could then talk to another test's daemon. Ports here come from below the
/// kernel's ephemeral range, each held by a lock file until the process ends.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    const FIRST: u16 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let span = u32::from(ephemeral.saturating_sub(FIRST).max(1));
    let dir = std::env::temp_dir().join("mfawatch-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    let mut held = HELD.lock().unwrap();
    // Start somewhere that depends on the process, so that tests rarely probe the same ports.
    let start = std::process::id().wrapping_mul(2_654_435_761).wrapping_add(held.len() as u32 * 7);
    for i in 0..span {
        let port = FIRST + (start.wrapping_add(i) % span) as u16;
        let lock = std::fs::File::create(dir.join(port.to_string())).unwrap();
        if lock.try_lock().is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            held.push(lock);
            return port;
        }
    }
    panic!("no free loopback port between {FIRST} and {ephemeral}");
}

pub fn wait_for(what: &str, timeout: Duration, ready: impl FnMut() -> bool) {
    if !within(timeout, ready) {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// Whether `ready` comes true within `timeout` (checked every 100 ms).
pub fn within(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A tansu broker with in-memory storage.
pub struct Tansu {
    pub port: u16,
    child: Option<Child>,
}

impl Tansu {
    pub fn start() -> Tansu {
        Tansu::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Tansu {
        Tansu::start_cluster(port, "tansu_cluster")
    }

    /// A broker that says it is cluster `cluster_id` (another namespace, as far as a state can tell).
    pub fn start_cluster(port: u16, cluster_id: &str) -> Tansu {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--kafka-cluster-id",
                cluster_id,
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu is installed (tests/run installs it)");
        let tansu = Tansu { port, child: Some(child) };
        wait_for("tansu to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        tansu
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the broker is gone for its clients, its data kept.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: back, as it was.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args([which, &child.id().to_string()]).status();
        }
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", self.bootstrap()).create().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let results = rt
            .block_on(
                admin.create_topics(
                    &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                    &AdminOptions::new(),
                ),
            )
            .expect("create topic");
        for r in results {
            r.expect("topic created");
        }
    }

    /// Produces `messages` round-robin over `partitions` and waits for them all.
    /// One message per batch: tansu 0.6 serves nothing for a fetch that starts
    /// inside a multi-message batch (measured: resuming at offset 54 of a
    /// 200-message batch returns no records), which would make a resume
    /// after a checkpoint skip the rest of the batch. Kafka and Event Hubs do not.
    /// Idempotent, so that a retried send is not stored twice (the tests count
    /// what the broker holds against what they produced).
    pub fn produce(&self, topic: &str, partitions: i32, messages: &[Vec<u8>]) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("linger.ms", "5")
            .set("batch.num.messages", "1")
            .set("enable.idempotence", "true")
            .set("message.max.bytes", "4000000")
            .create()
            .unwrap();
        for (i, m) in messages.iter().enumerate() {
            let key = i.to_string();
            let mut record = BaseRecord::to(topic).key(&key).payload(m).partition(i as i32 % partitions);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(50));
                    }
                }
            }
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(60)).expect("all messages delivered");
    }

    /// Produces `messages` to one partition, with the given message timestamp
    /// (milliseconds; `None`: the producer's clock), one message per batch.
    /// Produces one message to partition 0, with a header if given.
    pub fn produce_with_header(&self, topic: &str, message: &[u8], header: Option<(&str, &str)>) {
        use rdkafka::message::{Header, OwnedHeaders};
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("message.max.bytes", "4000000")
            .create()
            .unwrap();
        let mut record = BaseRecord::<(), [u8]>::to(topic).payload(message).partition(0);
        if let Some((key, value)) = header {
            record = record.headers(OwnedHeaders::new().insert(Header { key, value: Some(value) }));
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
        producer.flush(Duration::from_secs(30)).expect("delivered");
    }

    pub fn produce_to(&self, topic: &str, partition: i32, messages: &[Vec<u8>], timestamp: Option<i64>) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("linger.ms", "5")
            .set("batch.num.messages", "1")
            .set("enable.idempotence", "true")
            .set("message.max.bytes", "4000000")
            .create()
            .unwrap();
        for m in messages {
            let mut record = BaseRecord::<(), [u8]>::to(topic).payload(m).partition(partition);
            if let Some(t) = timestamp {
                record = record.timestamp(t);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(50));
                    }
                }
            }
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(60)).expect("all messages delivered");
    }

    /// Committed offsets of `group` and the end of each partition.
    pub fn group_progress(&self, group: &str, topic: &str, partitions: i32) -> Vec<(i64, i64)> {
        let consumer: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", self.bootstrap()).set("group.id", group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        (0..partitions)
            .map(|p| {
                let c = committed.find_partition(topic, p).and_then(|e| e.offset().to_raw()).unwrap_or(-1);
                let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
                (c, high)
            })
            .collect()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tansu_binary() -> PathBuf {
    if let Ok(path) = which("tansu") {
        return path;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    Path::new(&home).join(".cargo/bin/tansu")
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()))
        .ok_or(())
}

/// A running `mfawatch run`.
pub struct Daemon {
    pub http: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `mfawatch run --config <config>`; `envs` are extra environment variables.
    pub fn start(config: &Path, http_port: u16, log: &Path, envs: &[(&str, &str)]) -> Daemon {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mfawatch"));
        command.args(["run", "--config", config.to_str().unwrap()]).envs(envs.iter().copied());
        Daemon::spawn(command, http_port, log)
    }

    /// Starts `command` (an `mfawatch run`, perhaps wrapped) with its stderr in `log`.
    pub fn spawn(mut command: Command, http_port: u16, log: &Path) -> Daemon {
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child =
            command.env_remove("RUST_LOG").stdout(Stdio::null()).stderr(log_file).spawn().expect("mfawatch starts");
        Daemon { http: format!("http://127.0.0.1:{http_port}"), child: Some(child), log: log.to_owned() }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        let mut response = agent.get(&format!("{}{path}", self.http)).call().ok()?;
        let status = response.status().as_u16();
        Some((status, response.body_mut().read_to_string().ok()?))
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path).unwrap_or_else(|| panic!("GET {path}"));
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Waits for `/readyz` to answer 200 from this daemon (not from whatever
    /// else might answer on its port if it has exited).
    pub fn wait_ready(&self, timeout: Duration) {
        wait_for("the daemon to be ready", timeout, || {
            assert!(self.running(), "the daemon exited; its log:\n{}", self.log_text());
            self.get("/readyz").is_some_and(|(s, _)| s == 200)
        });
    }

    /// Whether the process is still there (not ended, not a zombie).
    pub fn running(&self) -> bool {
        let Some(child) = &self.child else { return false };
        std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
            .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
    }

    /// Waits until the consumer has been given its partitions (its log says so).
    pub fn wait_assigned(&self, timeout: Duration) {
        wait_for("partitions assigned", timeout, || self.log_text().contains("partitions assigned"));
    }

    /// The exit code once the process has ended by itself (-1 for a signal).
    pub fn exited(&mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        child.try_wait().ok().flatten().map(|s| s.code().unwrap_or(-1))
    }

    /// SIGKILL: no checkpoint, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The sum of every series of a metric whose line starts with `prefix`
    /// (0 when there is none or the daemon does not answer).
    pub fn metric(&self, prefix: &str) -> f64 {
        let Some((_, text)) = self.get("/metrics") else { return 0.0 };
        metric_sum(&text, prefix)
    }
}

/// The sum of the series in exposition `text` whose lines start with `prefix`.
pub use mfawatch::metrics::sum as metric_sum;

/// `mfawatch replay --config CONFIG INPUT...`; panics with its stderr if it fails.
pub fn replay(config: &Path, inputs: &[&Path], extra: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_mfawatch"))
        .args(["replay", "--config", config.to_str().unwrap()])
        .args(extra)
        .args(inputs.iter().map(|p| p.to_str().unwrap()))
        .output()
        .unwrap();
    assert!(out.status.success(), "replay: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Messages as one NDJSON file.
pub fn write_ndjson(path: &Path, messages: &[Vec<u8>]) {
    let mut text = Vec::new();
    for m in messages {
        text.extend_from_slice(m);
        text.push(b'\n');
    }
    std::fs::write(path, text).unwrap();
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A failing test shows what the daemon said (its metrics first, while it still answers).
        if std::thread::panicking() {
            let metrics = self.get("/metrics").map(|(_, text)| text).unwrap_or_default();
            let keep = [
                "mfawatch_records_total",
                "mfawatch_checkpoints_total",
                "mfawatch_offset_commit",
                "mfawatch_ready",
                "mfawatch_partitions",
            ];
            let lines: Vec<&str> = metrics.lines().filter(|l| keep.iter().any(|k| l.starts_with(k))).collect();
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
            eprintln!(
                "--- daemon {} (log {}):\n{}\n--- its log, last {} lines:\n{}\n---",
                self.http,
                self.log.display(),
                lines.join("\n"),
                tail.len(),
                tail.join("\n")
            );
        }
        self.kill();
    }
}

/// A day of a 300-user tenant ending an hour ago, `records` sign-ins five
/// to a message (about a minute each), with MFA fatigue attacks planted:
/// alerts of every kind, recent enough to be sent.
pub fn alerting_tenant(seed: u64, records: u64) -> mfawatch::generate::TenantSpec {
    mfawatch::generate::TenantSpec {
        users: 300,
        records,
        days: 1,
        seed,
        end: chrono::Utc::now() - chrono::Duration::hours(1),
        format: mfawatch::generate::Format::Envelope,
        records_per_message: 5,
        malformed_per_10k: 0,
        fatigue_per_10k: 25,
        redeliveries_per_10k: 20,
    }
}

/// A config file for a daemon on `bootstrap`, state in `dir`, dead letters in
/// `dir/dead-letters.ndjson` unless `extra` has its own `[dead_letter]`.
/// `extra` is appended, except that keys under an `[http]` or `[history]`
/// (or `[kafka]`) header in it join those sections written here. The history keeps ten
/// years unless `extra` says otherwise: the tests' tenants are dated in 2025.
pub fn write_config(dir: &Path, bootstrap: &str, topic: &str, group: &str, http_port: u16, extra: &str) -> PathBuf {
    let path = dir.join("mfawatch.toml");
    let (mut http_keys, mut history_keys, mut kafka_keys, mut rest) =
        (String::new(), String::new(), String::new(), String::new());
    let mut section = "";
    for line in extra.lines() {
        if line.trim_start().starts_with('[') {
            section = match line.trim() {
                "[http]" => "http",
                "[history]" => "history",
                "[kafka]" => "kafka",
                _ => "",
            };
            if !section.is_empty() {
                continue;
            }
        }
        let into = match section {
            "http" => &mut http_keys,
            "history" => &mut history_keys,
            "kafka" => &mut kafka_keys,
            _ => &mut rest,
        };
        into.push_str(line);
        into.push('\n');
    }
    if !history_keys.contains("retention_days") {
        history_keys.push_str("retention_days = 3650\n");
    }
    let extra = rest;
    let dead_letter = if extra.contains("[dead_letter]") {
        String::new()
    } else {
        format!("[dead_letter]\nfile = {:?}\n", dir.join("dead-letters.ndjson").display().to_string())
    };
    let text = format!(
        r#"[kafka]
brokers = "{bootstrap}"
topics = ["{topic}"]
group_id = "{group}"
start = "earliest"
{kafka_keys}
[checkpoint]
dir = "{state}"
interval = "500ms"

{dead_letter}
[http]
listen = "127.0.0.1:{http_port}"
{http_keys}
[history]
{history_keys}
[log]
format = "json"
level = "info,librdkafka=warn"
{extra}"#,
        state = dir.join("state").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Debian's Prometheus, scraping `target` (host:port) every second.
pub struct Prometheus {
    pub url: String,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Prometheus scraping `target`, with the alert rules in `rule_files` loaded.
    pub fn start(target: &str, rule_files: &[&Path]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        let rules: String = rule_files.iter().map(|f| format!("  - {}\n", f.display())).collect();
        std::fs::write(
            &config,
            format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{rules}scrape_configs:\n  - job_name: mfawatch\n    static_configs:\n      - targets: ['{target}']\n"),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed (tests/run installs it)");
        let p = Prometheus { url: format!("http://127.0.0.1:{port}"), child: Some(child), _dir: dir };
        wait_for("prometheus to be ready", Duration::from_secs(30), || {
            ureq::get(&format!("{}/-/ready", p.url)).call().is_ok()
        });
        p
    }

    /// GET a Prometheus API path; the `data` of the answer.
    pub fn api(&self, path: &str) -> serde_json::Value {
        let mut response = ureq::get(&format!("{}{path}", self.url)).call().unwrap();
        let body: serde_json::Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(body["status"], "success", "{path}: {body}");
        body["data"].clone()
    }

    /// The instant-query result vector of `query`.
    pub fn query(&self, query: &str) -> Vec<serde_json::Value> {
        let mut response = ureq::get(&format!("{}/api/v1/query", self.url)).query("query", query).call().unwrap();
        let body: serde_json::Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(body["status"], "success", "{query}: {body}");
        body["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The single value of a query that returns one series.
    pub fn value(&self, query: &str) -> Option<f64> {
        self.query(query).first().and_then(|s| s["value"][1].as_str()).and_then(|v| v.parse().ok())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Debian's Alertmanager (`prometheus-alertmanager`) on a loopback port,
/// routing everything to a receiver that sends nothing.
pub struct Alertmanager {
    pub port: u16,
    pub url: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
    config: String,
}

impl Alertmanager {
    pub fn start() -> Alertmanager {
        Alertmanager::start_with("route:\n  receiver: silent\n  group_wait: 1h\nreceivers:\n  - name: silent\n")
    }

    /// With this configuration (YAML) instead of the silent one.
    pub fn start_with(config: &str) -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let mut am =
            Alertmanager { port: free_port(), url: String::new(), child: None, dir, config: config.to_owned() };
        am.url = format!("http://127.0.0.1:{}", am.port);
        am.restart();
        am
    }

    /// Starts it (again, on the same port; its alerts start empty).
    pub fn restart(&mut self) {
        self.stop();
        let config = self.dir.path().join("alertmanager.yml");
        std::fs::write(&config, &self.config).unwrap();
        let child = Command::new(alertmanager_binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", self.dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("alertmanager is installed (tests/run installs prometheus-alertmanager)");
        self.child = Some(child);
        let url = format!("{}/-/ready", self.url);
        wait_for("alertmanager to be ready", Duration::from_secs(30), || ureq::get(&url).call().is_ok());
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The alerts it holds (GET /api/v2/alerts).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let mut response = ureq::get(&format!("{}/api/v2/alerts", self.url)).call().unwrap();
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
    }

    /// (rule, user) of every alert it holds.
    pub fn rule_users(&self) -> std::collections::BTreeSet<(String, String)> {
        self.alerts()
            .iter()
            .map(|a| {
                let label = |k: &str| a["labels"][k].as_str().unwrap_or("").to_string();
                (label("rule"), label("user"))
            })
            .collect()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        self.stop();
    }
}

fn alertmanager_binary() -> PathBuf {
    ["prometheus-alertmanager", "alertmanager"]
        .iter()
        .find_map(|name| which(name).ok())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus-alertmanager"))
}

/// Requests a receiver got: each one's headers (lower-cased names) and JSON body.
pub type Received = std::sync::Arc<std::sync::Mutex<Vec<(Vec<(String, String)>, serde_json::Value)>>>;

/// A webhook receiver on a loopback port: records each POST's headers and
/// JSON body, answers 200 (or 503 while `refuse` is set).
pub struct Webhook {
    pub url: String,
    pub requests: Received,
    pub refuse: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Webhook {
    pub fn start() -> Webhook {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let requests: Received = Default::default();
        let refuse = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, no) = (requests.clone(), refuse.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.trim().split_once(':') {
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                }
                let len: usize =
                    headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let status = if no.load(std::sync::atomic::Ordering::Relaxed) {
                    "503 Service Unavailable"
                } else {
                    if let Ok(json) = serde_json::from_slice(&body) {
                        seen.lock().unwrap().push((headers, json));
                    }
                    "200 OK"
                };
                let _ = write!(stream, "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        Webhook { url, requests, refuse }
    }

    /// Every alert received, in order.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, body)| body["alerts"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

/// Notes a line for the reliability table `tests/run` prints at the end
/// (`<target>/reliability/<check>.txt`).
pub fn record_reliability(check: &str, result: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability");
    let _ = std::fs::create_dir_all(&dir);
    let file: String = check.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{file}.txt")))
        .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{check}\t{result}\n").as_bytes()));
}

/// Headless Chromium on a local page (`args`: `--dump-dom`, `--screenshot=…`), as tests/run installs it.
pub fn chromium(args: &[&str], page: &std::path::Path) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium (tests/run installs it)")
}
