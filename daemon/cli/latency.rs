//! `mfawatch bench latency`: how long from a sign-in reaching the hub to the
//! on-call's receiver having its alert.
//!
//! The real consumer (the daemon's Kafka source, pipeline, alert rules,
//! history and checkpoints at their defaults) reads a topic of two
//! partitions on a Kafka cluster — librdkafka's in-process mock cluster, or
//! `--brokers` — while a producer keeps a steady background of ordinary
//! sign-ins (MFA-satisfied, none of which alerts) at `--rate` MB/s and
//! plants an alert-worthy sign-in every second: a legacy-auth success, a
//! privileged single-factor sign-in, or an MFA fatigue attack completing,
//! each of a user never seen before. Each planted message carries its own
//! Kafka timestamp; the latency is from it to the alert being in hand: at
//! the in-process webhook receiver, and with `--alertmanager` in a real
//! Alertmanager (its API polled). A bare librdkafka consumer in another
//! group reads the same topic in the same run, so what mfawatch adds to
//! what the broker costs is printed beside it. With `--outage`, the webhook
//! answers 503 for that long in the middle of the run: the outbox's drain
//! time after its return is printed too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Value, json};

use crate::classify::{Labels, Rules, Subject, classify};
use crate::decode::{Item, decode_message};
use crate::generate::{Format, Generator, TenantSpec};

#[derive(Debug, clap::Args)]
pub struct LatencyArgs {
    /// Bootstrap servers of a scratch broker (a topic is created); default:
    /// librdkafka's in-process mock cluster.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Background sign-ins, MB/s of JSON.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Seconds of planted alerts (one a second), after a warm-up (at least 5 s, until both consumers read).
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Also deliver to this Alertmanager (`http://127.0.0.1:9093`) and time
    /// the alerts' arrival there.
    #[arg(long)]
    pub alertmanager: Option<String>,
    /// Take the webhook receiver down (503) for this many seconds, ten
    /// seconds into the planted alerts (give `--seconds` past its end).
    #[arg(long, default_value_t = 0)]
    pub outage: u64,
    /// librdkafka settings for mfawatch's consumer, `key=value` (as `kafka.librdkafka`), to compare.
    #[arg(long = "set", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    let (k, v) = text.split_once('=').ok_or_else(|| format!("{text:?} is not key=value"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

pub(super) const TOPIC: &str = "insights-logs-signinlogs";
const TENANT: &str = "7e3a0d5c-1c2b-4f8e-9a6d-5b4c3d2e1f00";
const WARM_UP: Duration = Duration::from_secs(5);

/// The kinds of planted sign-in, one a second in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Plant {
    Legacy,
    PrivilegedSingleFactor,
    FatigueCompleting,
}

impl Plant {
    const ALL: [Plant; 3] = [Plant::Legacy, Plant::PrivilegedSingleFactor, Plant::FatigueCompleting];

    fn rule(self) -> &'static str {
        match self {
            Plant::Legacy => "legacy_auth_success",
            Plant::PrivilegedSingleFactor => "privileged_single_factor",
            Plant::FatigueCompleting => "mfa_fatigue",
        }
    }

    fn upn(self, n: u64) -> String {
        let kind = match self {
            Plant::Legacy => "legacy",
            Plant::PrivilegedSingleFactor => "admin",
            Plant::FatigueCompleting => "fatigue",
        };
        format!("lat-{kind}-{n}@contoso.example")
    }
}

/// One planted sign-in: its Kafka timestamp and when each reader had it.
#[derive(Clone, Debug)]
struct Planted {
    kind: Plant,
    kafka_ms: i64,
    bare_ms: Option<i64>,
    webhook_ms: Option<i64>,
    alertmanager_ms: Option<i64>,
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A sign-in of `upn`, as the diagnostic setting sends it.
pub(super) fn sign_in(id: &str, upn: &str, ms: i64, client: &str, code: i64, mfa: bool) -> Value {
    let details = if code == 500121 { "MFA denied; user declined the authentication" } else { "" };
    let steps = if mfa {
        json!([
            {"authenticationMethod": "Password", "succeeded": true, "authenticationStepRequirement": "Primary authentication"},
            {"authenticationMethod": "Mobile app notification", "succeeded": true, "authenticationStepRequirement": "Multi-factor authentication"}
        ])
    } else {
        json!([{"authenticationMethod": "Password", "succeeded": true, "authenticationStepRequirement": "Primary authentication"}])
    };
    json!({
        "time": iso_ms(ms),
        "category": "SignInLogs",
        "tenantId": TENANT,
        "properties": {
            "id": id,
            "createdDateTime": iso_ms(ms),
            "userId": upn.split('@').next().unwrap_or(upn),
            "userPrincipalName": upn,
            "userType": "Member",
            "tenantId": TENANT,
            "appDisplayName": "Office 365 Exchange Online",
            "clientAppUsed": client,
            "ipAddress": "203.0.113.9",
            "location": {"countryOrRegion": "NL"},
            "status": {"errorCode": code, "additionalDetails": details},
            "authenticationRequirement": if mfa || code == 500121 { "multiFactorAuthentication" } else { "singleFactorAuthentication" },
            "authenticationDetails": steps,
            "isInteractive": true
        }
    })
}

pub(super) fn envelope(records: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "records": records })).expect("JSON to memory")
}

/// Ordinary sign-ins of a generated tenant that no default rule alerts on:
/// successful, interactive, MFA-satisfied, not legacy, not risky.
fn background_pool(records: u64) -> anyhow::Result<Vec<Value>> {
    let spec = TenantSpec { users: 20_000, records, format: Format::Envelope, ..TenantSpec::default() };
    let mut generator = Generator::new(spec);
    let (mut message, mut pool, rules) = (Vec::new(), Vec::new(), Rules::default());
    while generator.next_message(&mut message) {
        let Ok(parsed) = serde_json::from_slice::<Value>(&message) else { continue };
        let Some(values) = parsed.get("records").and_then(Value::as_array) else { continue };
        let items = decode_message(&message);
        if items.len() != values.len() {
            continue;
        }
        for (item, value) in items.iter().zip(values) {
            let Item::SignIn(record) = item else { continue };
            let v = classify(record, &rules);
            let quiet = v.subject == Subject::User
                && v.success
                && v.interactive
                && !v.ropc
                && v.labels.contains(Labels::MFA_SATISFIED)
                && !v.labels.contains(Labels::LEGACY_AUTH)
                && !v.labels.contains(Labels::RISKY);
            if quiet {
                pool.push(value.clone());
            }
        }
    }
    anyhow::ensure!(!pool.is_empty(), "the generator gave no ordinary sign-ins");
    Ok(pool)
}

/// What the receivers heard: planted UPN and rule → when.
pub(super) type Heard = Arc<Mutex<HashMap<(String, String), i64>>>;

/// The webhook receiver: notes the arrival of each alert by (upn, rule);
/// answers 503 while `down`.
pub(super) fn webhook(
    runtime: &tokio::runtime::Runtime,
    heard: Heard,
    down: Arc<AtomicBool>,
) -> anyhow::Result<String> {
    use axum::http::StatusCode;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let (heard, down) = (heard.clone(), down.clone());
            async move {
                if down.load(Ordering::Relaxed) {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let at = now_ms();
                let Ok(body) = serde_json::from_slice::<Value>(&body) else { return StatusCode::BAD_REQUEST };
                let mut heard = heard.lock().expect("not poisoned");
                for alert in body["alerts"].as_array().into_iter().flatten() {
                    if let (Some(upn), Some(rule)) = (alert["sign_in"]["upn"].as_str(), alert["rule"].as_str()) {
                        heard.entry((upn.to_owned(), rule.to_owned())).or_insert(at);
                    }
                }
                StatusCode::OK
            }
        }),
    );
    runtime.spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/hook"))
}

/// Polls an Alertmanager's alerts from mfawatch until `stop`, noting when
/// each planted (upn, rule) first shows.
fn poll_alertmanager(url: &str, heard: &Heard, stop: &AtomicBool) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build(),
    );
    let url = format!("{}/api/v2/alerts?filter=source%3D%22mfawatch%22", url.trim_end_matches('/'));
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut answer) = agent.get(&url).call()
            && let Ok(text) = answer.body_mut().with_config().limit(64 << 20).read_to_string()
            && let Ok(alerts) = serde_json::from_str::<Vec<Value>>(&text)
        {
            let at = now_ms();
            let mut heard = heard.lock().expect("not poisoned");
            for alert in &alerts {
                let labels = &alert["labels"];
                if let (Some(upn), Some(rule)) = (labels["upn"].as_str(), labels["rule"].as_str()) {
                    heard.entry((upn.to_owned(), rule.to_owned())).or_insert(at);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A bare librdkafka consumer in a group of its own: when each planted
/// message (key `plant-<n>`) reached it, by its Kafka timestamp.
fn bare_consumer(
    bootstrap: &str,
    topic: &str,
    heard: Arc<Mutex<HashMap<u64, i64>>>,
    probes: Arc<Mutex<HashMap<u64, i64>>>,
    read: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("mfawatch-bench-bare-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()?;
    consumer.subscribe(&[topic])?;
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else { continue };
        read.fetch_add(1, Ordering::Relaxed);
        let key = message.key().and_then(|k| std::str::from_utf8(k).ok()).unwrap_or("");
        for (prefix, heard) in [("plant-", &heard), ("probe-", &probes)] {
            if let Some(n) = key.strip_prefix(prefix).and_then(|n| n.parse().ok()) {
                heard.lock().expect("not poisoned").insert(n, now_ms());
            }
        }
    }
    Ok(())
}

/// Checkpoints seen: (start, end) in Unix ms, from the duration histogram.
fn watch_checkpoints(metrics: &crate::metrics::Metrics, stop: &AtomicBool) -> Vec<(i64, i64)> {
    let read = |text: &str, name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    let (mut count, mut sum, mut windows) = (0.0, 0.0, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        let text = metrics.render();
        let (c, s) = (
            read(&text, "mfawatch_checkpoint_duration_seconds_count "),
            read(&text, "mfawatch_checkpoint_duration_seconds_sum "),
        );
        if c > count {
            let end = now_ms();
            windows.push((end - ((s - sum) * 1000.0) as i64 - 50, end));
            (count, sum) = (c, s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    windows
}

pub fn run(args: LatencyArgs) -> anyhow::Result<()> {
    eprintln!("preparing the background sign-ins...");
    let pool = background_pool(30_000)?;
    let cluster = match &args.brokers {
        Some(_) => None,
        None => Some(rdkafka::mocking::MockCluster::new(1)?),
    };
    let bootstrap = match (&args.brokers, &cluster) {
        (Some(brokers), _) => brokers.clone(),
        (None, Some(mock)) => mock.bootstrap_servers(),
        (None, None) => unreachable!("a mock cluster when no brokers"),
    };
    // On a real broker a topic of this run's own: nothing of an earlier run in it.
    let topic = match &cluster {
        Some(mock) => {
            mock.create_topic(TOPIC, 2, 1)?;
            TOPIC.to_owned()
        }
        None => {
            let topic = format!("{TOPIC}-bench-{}", std::process::id());
            create_topic(&bootstrap, &topic, 2)?;
            topic
        }
    };

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let (heard_webhook, heard_am): (Heard, Heard) = Default::default();
    let down = Arc::new(AtomicBool::new(false));
    let hook = webhook(&runtime, heard_webhook.clone(), down.clone())?;

    let state = tempfile::tempdir()?;
    let plants = args.seconds.max(3);
    let mut config = crate::config::Config::default();
    config.kafka.brokers = Some(bootstrap.clone());
    config.kafka.topics = vec![topic.clone()];
    config.kafka.group_id = format!("mfawatch-bench-latency-{}", std::process::id());
    for (k, v) in &args.settings {
        config.kafka.librdkafka.insert(k.clone(), v.clone());
    }
    config.checkpoint.dir = state.path().join("state");
    config.http.listen = "127.0.0.1:0".into();
    config.alerts.webhook =
        Some(crate::config::WebhookConfig { url: Some(hook), plain_http_loopback: true, ..Default::default() });
    if let Some(am) = &args.alertmanager {
        config.alerts.alertmanager = Some(crate::config::AlertmanagerConfig { urls: vec![am.clone()] });
    }
    config.coverage.privileged = (0..plants).map(|n| Plant::PrivilegedSingleFactor.upn(n)).collect();
    config.log.level = "warn,librdkafka=error".into();
    config.validate(std::path::Path::new("<bench latency>"))?;
    let prepared = crate::daemon::prepare(&config, crate::daemon::Mode::Consume)?;
    let handles = prepared.handles.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (config, stop, progress, source) =
            (config.clone(), stop.clone(), prepared.checkpointer.clone(), handles.source());
        std::thread::Builder::new()
            .name("pipeline".into())
            .spawn(move || crate::source::kafka::consume(&config, progress, source, None, &stop))?
    };
    let heard_bare: Arc<Mutex<HashMap<u64, i64>>> = Default::default();
    let probes_bare: Arc<Mutex<HashMap<u64, i64>>> = Default::default();
    let bare_read = Arc::new(AtomicU64::new(0));
    let bare = {
        let (bootstrap, topic, heard, probes, read, stop) = (
            bootstrap.clone(),
            topic.clone(),
            heard_bare.clone(),
            probes_bare.clone(),
            bare_read.clone(),
            stop.clone(),
        );
        std::thread::Builder::new()
            .name("bare-consumer".into())
            .spawn(move || bare_consumer(&bootstrap, &topic, heard, probes, read, stop))?
    };
    let am_poller = args.alertmanager.clone().map(|url| {
        let (heard, stop) = (heard_am.clone(), stop.clone());
        std::thread::spawn(move || poll_alertmanager(&url, &heard, &stop))
    });
    let checkpoints = {
        let (metrics, stop) = (handles.metrics.clone(), stop.clone());
        std::thread::spawn(move || watch_checkpoints(&metrics, &stop))
    };

    // The producer: background at `rate`, a planted sign-in every second after the warm-up.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "1")
        .set("message.max.bytes", "10000000")
        .create()?;
    let send = |payload: &[u8], key: &str, ms: i64, partition: i32| {
        let mut record = BaseRecord::to(&topic).payload(payload).key(key).timestamp(ms).partition(partition);
        while let Err((_, r)) = producer.send(record) {
            record = r;
            producer.poll(Duration::from_millis(5));
        }
        producer.poll(Duration::ZERO);
    };
    let bytes_per_s = args.rate.max(0.01) * 1e6;
    // Ten seconds of planted alerts before the outage, so both sides of it are measured.
    let outage = (args.outage > 0).then(|| {
        let start = Duration::from_secs(10.min(plants / 2));
        (start, start + Duration::from_secs(args.outage))
    });
    let mut planted: Vec<Planted> = Vec::new();
    let (started, sent_bytes, next_id) = (Instant::now(), AtomicU64::new(0), AtomicU64::new(0));
    let mut back_at_ms = None;
    let mut cursor = 0usize;
    eprintln!(
        "running: {:.0} MB/s of background sign-ins, one planted alert a second for {plants} s{}...",
        args.rate,
        if args.outage > 0 { format!(", the webhook down {} s from 10 s in", args.outage) } else { String::new() }
    );
    // The warm-up lasts until both consumers have caught up (a group join
    // on a real broker takes seconds, and each then reads what it missed):
    // a probe — a legacy-auth success of a user of its own — is sent every
    // half second, and planted sign-ins start once one has reached both the
    // bare consumer and the webhook within a second of being sent.
    let mut warm: Option<Duration> = None;
    let mut probes: Vec<i64> = Vec::new();
    let probe_upn = |k: usize| format!("lat-probe-{k}@contoso.example");
    while warm.is_none_or(|w| started.elapsed() < w + Duration::from_secs(plants)) {
        let elapsed = started.elapsed();
        if warm.is_none() {
            if probes.len() < 1 + (elapsed.as_millis() / 500) as usize {
                let (k, ms) = (probes.len(), now_ms());
                let record = sign_in(&format!("probe-{k}"), &probe_upn(k), ms, "IMAP4", 0, false);
                send(&envelope(&[record]), &format!("probe-{k}"), ms, (k % 2) as i32);
                probes.push(ms);
            }
            let (webhook, bare) =
                (heard_webhook.lock().expect("not poisoned"), probes_bare.lock().expect("not poisoned"));
            let caught_up = probes.iter().enumerate().any(|(k, &sent)| {
                let hook = webhook.get(&(probe_upn(k), Plant::Legacy.rule().to_owned()));
                hook.is_some_and(|&at| at - sent <= 1000) && bare.get(&(k as u64)).is_some_and(|&at| at - sent <= 1000)
            });
            drop((webhook, bare));
            if elapsed >= WARM_UP && caught_up {
                warm = Some(elapsed);
            } else {
                anyhow::ensure!(elapsed < Duration::from_secs(120), "the consumers had not caught up after 120 s");
            }
        }
        let since_warm = warm.map(|w| elapsed - w);
        if let (Some((from, to)), Some(elapsed)) = (outage, since_warm) {
            let is_down = elapsed >= from && elapsed < to;
            if !is_down && down.swap(false, Ordering::Relaxed) {
                back_at_ms = Some(now_ms());
            }
            if is_down {
                down.store(true, Ordering::Relaxed);
            }
        }
        // Planted: the n-th after the warm-up, once its second has come.
        let due = since_warm.map_or(0, |d| d.as_secs() + 1).min(plants);
        while (planted.len() as u64) < due {
            let n = planted.len() as u64;
            let kind = Plant::ALL[n as usize % Plant::ALL.len()];
            let upn = kind.upn(n);
            let ms = now_ms();
            if kind == Plant::FatigueCompleting {
                // The prompts denied, a second apart before it (event time).
                let denials: Vec<Value> = (1..=3)
                    .rev()
                    .map(|s| sign_in(&format!("plant-{n}-denied-{s}"), &upn, ms - s * 1000, "Browser", 500121, false))
                    .collect();
                send(&envelope(&denials), &format!("pre-{n}"), ms, (n % 2) as i32);
            }
            let record = match kind {
                Plant::Legacy => sign_in(&format!("plant-{n}"), &upn, ms, "IMAP4", 0, false),
                Plant::PrivilegedSingleFactor => sign_in(&format!("plant-{n}"), &upn, ms, "Browser", 0, false),
                Plant::FatigueCompleting => sign_in(&format!("plant-{n}"), &upn, ms, "Browser", 0, true),
            };
            let ms = now_ms();
            send(&envelope(&[record]), &format!("plant-{n}"), ms, (n % 2) as i32);
            planted.push(Planted { kind, kafka_ms: ms, bare_ms: None, webhook_ms: None, alertmanager_ms: None });
        }
        // Background: behind its rate, one message of 40.
        let wanted = (elapsed.as_secs_f64() * bytes_per_s) as u64;
        if sent_bytes.load(Ordering::Relaxed) < wanted {
            let ms = now_ms();
            let records: Vec<Value> = (0..40)
                .map(|_| {
                    let mut r = pool[cursor % pool.len()].clone();
                    cursor += 1;
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    r["time"] = json!(iso_ms(ms));
                    r["properties"]["createdDateTime"] = json!(iso_ms(ms));
                    r["properties"]["id"] = json!(format!("bg-{id}"));
                    r
                })
                .collect();
            let message = envelope(&records);
            sent_bytes.fetch_add(message.len() as u64, Ordering::Relaxed);
            send(&message, &format!("bg-{cursor}"), ms, (cursor / 40 % 2) as i32);
        } else {
            producer.poll(Duration::from_millis(1));
        }
    }
    producer.flush(Duration::from_secs(10))?;
    let produced_mb = sent_bytes.load(Ordering::Relaxed) as f64 / 1e6;
    let run_seconds = started.elapsed().as_secs_f64();
    // Time for the last alerts to arrive.
    let deadline = Instant::now() + Duration::from_secs(20);
    let arrived = |p: &Planted, n: usize, heard: &Heard| {
        heard.lock().expect("not poisoned").contains_key(&(p.kind.upn(n as u64), p.kind.rule().to_owned()))
    };
    while Instant::now() < deadline
        && !planted
            .iter()
            .enumerate()
            .all(|(n, p)| arrived(p, n, &heard_webhook) && (args.alertmanager.is_none() || arrived(p, n, &heard_am)))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    consumer.join().map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))??;
    bare.join().map_err(|_| anyhow::anyhow!("the bare consumer panicked"))??;
    if let Some(poller) = am_poller {
        let _ = poller.join();
    }
    let checkpoints = checkpoints.join().map_err(|_| anyhow::anyhow!("the checkpoint watcher panicked"))?;
    drop(prepared);
    {
        let (webhook, am, bare) = (
            heard_webhook.lock().expect("not poisoned"),
            heard_am.lock().expect("not poisoned"),
            heard_bare.lock().expect("not poisoned"),
        );
        for (n, p) in planted.iter_mut().enumerate() {
            let key = (p.kind.upn(n as u64), p.kind.rule().to_owned());
            p.webhook_ms = webhook.get(&key).copied();
            p.alertmanager_ms = am.get(&key).copied();
            p.bare_ms = bare.get(&(n as u64)).copied();
        }
    }
    report(&args, &planted, &checkpoints, outage.map(|_| back_at_ms), produced_mb, run_seconds);
    drop(cluster);
    Ok(())
}

/// Creates `topic` with `partitions` on a real broker, unless it is there.
pub(super) fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let new = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
    for r in rt.block_on(admin.create_topics(&new, &AdminOptions::new()))? {
        if let Err((t, e)) = r
            && e != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists
        {
            anyhow::bail!("create {t}: {e}");
        }
    }
    Ok(())
}

/// p50, p99 and max of `values` (ms), or `None` for none.
fn spread(mut values: Vec<i64>) -> Option<(i64, i64, i64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let at = |q: f64| values[((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1];
    Some((at(0.5), at(0.99), *values.last().expect("not empty")))
}

fn report(
    args: &LatencyArgs,
    planted: &[Planted],
    checkpoints: &[(i64, i64)],
    outage: Option<Option<i64>>,
    produced_mb: f64,
    run_seconds: f64,
) {
    // Held by the outage: produced before the receiver came back, delivered
    // after; and those produced after it came back but before the outbox
    // had drained (they queue behind what waited).
    let back = outage.flatten();
    let drained = back.and_then(|back| {
        planted.iter().filter(|p| p.kafka_ms < back).filter_map(|p| p.webhook_ms).filter(|&w| w >= back).max()
    });
    let during_outage = |p: &Planted| {
        back.zip(drained).is_some_and(|(back, drained)| {
            p.webhook_ms.is_some_and(|w| w >= back)
                && p.kafka_ms <= drained
                && p.webhook_ms.is_some_and(|w| w <= drained)
        })
    };
    let in_checkpoint = |p: &Planted, to: Option<i64>| {
        to.is_some_and(|to| checkpoints.iter().any(|&(s, e)| s <= to && e >= p.kafka_ms))
    };
    println!(
        "alert latency, Kafka timestamp → receiver, {} planted sign-ins over {:.0} MB of background ({:.1} MB/s achieved), {}; checkpoints {}, history on",
        planted.len(),
        produced_mb,
        produced_mb / run_seconds,
        args.brokers.as_deref().map_or("librdkafka mock cluster".to_owned(), |b| format!("brokers {b}")),
        checkpoints.len()
    );
    if !args.settings.is_empty() {
        let set: Vec<String> = args.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  mfawatch's consumer with {}", set.join(", "));
    }
    println!("| what | n | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    let row = |what: &str, values: Vec<i64>| match spread(values.clone()) {
        Some((p50, p99, max)) => println!("| {what} | {} | {p50} | {p99} | {max} |", values.len()),
        None => println!("| {what} | 0 | – | – | – |"),
    };
    let normal: Vec<&Planted> = planted.iter().filter(|p| !during_outage(p)).collect();
    let lat = |p: &&Planted, at: Option<i64>| at.map(|a| a - p.kafka_ms);
    row(
        "bare librdkafka consumer (fetch.wait.max.ms 100), same messages",
        normal.iter().filter_map(|p| lat(p, p.bare_ms)).collect(),
    );
    row("mfawatch → webhook, all rules", normal.iter().filter_map(|p| lat(p, p.webhook_ms)).collect());
    for kind in Plant::ALL {
        row(
            &format!("  {}", kind.rule()),
            normal.iter().filter(|p| p.kind == kind).filter_map(|p| lat(p, p.webhook_ms)).collect(),
        );
    }
    let added: Vec<i64> = normal.iter().filter_map(|p| Some(p.webhook_ms? - p.bare_ms?)).collect();
    row("mfawatch's own part (webhook − bare, per sign-in)", added);
    row(
        "  of them, outside checkpoints",
        normal
            .iter()
            .filter(|p| !in_checkpoint(p, p.webhook_ms))
            .filter_map(|p| Some(p.webhook_ms? - p.bare_ms?))
            .collect(),
    );
    row(
        "  of them, while a checkpoint was being written",
        normal
            .iter()
            .filter(|p| in_checkpoint(p, p.webhook_ms))
            .filter_map(|p| Some(p.webhook_ms? - p.bare_ms?))
            .collect(),
    );
    // Where the slowest were: the n-th planted (seconds into the planting), its rule.
    let mut slowest: Vec<(i64, usize, &Planted)> = planted
        .iter()
        .enumerate()
        .filter(|(_, p)| !during_outage(p))
        .filter_map(|(n, p)| Some((p.webhook_ms? - p.bare_ms?, n, p)))
        .collect();
    slowest.sort_unstable_by_key(|&(added, n, _)| (std::cmp::Reverse(added), n));
    let named: Vec<String> = slowest
        .iter()
        .take(3)
        .map(|(added, n, p)| {
            format!(
                "#{n} {} +{added} ms{}",
                p.kind.rule(),
                if in_checkpoint(p, p.webhook_ms) { " (checkpoint)" } else { "" }
            )
        })
        .collect();
    println!("  slowest (own part): {}", named.join(", "));
    if args.alertmanager.is_some() {
        row(
            "mfawatch → Alertmanager API (polled every 20 ms)",
            normal.iter().filter_map(|p| lat(p, p.alertmanager_ms)).collect(),
        );
    }
    let missing = planted.iter().filter(|p| p.webhook_ms.is_none()).count();
    if missing > 0 {
        println!("  {missing} planted sign-ins had no alert at the webhook within 20 s of the end");
    }
    if let Some(back) = outage {
        let held = planted.iter().filter(|p| back.is_some_and(|b| p.kafka_ms < b && p.webhook_ms >= Some(b))).count();
        match (back, drained) {
            (Some(back), Some(last)) => println!(
                "webhook down {} s: {held} alerts waited in the outbox; all delivered {:.1} s after it came back (the rows above leave out the {} planted while it was down or draining)",
                args.outage,
                (last - back) as f64 / 1000.0,
                planted.iter().filter(|p| during_outage(p)).count()
            ),
            _ => println!("webhook down {} s: no alert waited for it", args.outage),
        }
    }
}
