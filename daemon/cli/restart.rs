//! `mfawatch bench restart`: restart to ready. A daemon (`mfawatch run`, a
//! process of its own) reads one sign-in of each of `--users` users from a
//! topic of librdkafka's in-process mock cluster and checkpoints; then it
//! is killed with SIGKILL and started again on the same state. Printed: the
//! snapshot's size, the seconds from the start until `/readyz` answers 200,
//! and until the alert for a sign-in produced at the start (a legacy-auth
//! success of a new user) is at the webhook; the restarted process's peak RSS.

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::latency::{Heard, TOPIC, create_topic, envelope, now_ms, sign_in, webhook};

#[derive(Debug, clap::Args)]
pub struct RestartArgs {
    /// Users in the state (one MFA sign-in each).
    #[arg(long, default_value_t = 1_000_000)]
    pub users: u64,
    /// Bootstrap servers of a scratch broker (e.g. tansu); default:
    /// librdkafka's in-process mock cluster.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Let the restarted daemon log at `info` (to see where its start goes).
    #[arg(long)]
    pub log: bool,
}

/// Records per message while the state is filled; the mock cluster keeps
/// only a few MB of a partition, so the producer stays at most
/// [`AHEAD`] messages ahead of the daemon.
const PER_MESSAGE: u64 = 200;
const AHEAD: u64 = 12;

pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A number the daemon's `/metrics` shows (first sample of `name`), or 0.
fn metric(agent: &ureq::Agent, base: &str, name: &str) -> f64 {
    let Ok(mut answer) = agent.get(format!("{base}/metrics")).call() else { return 0.0 };
    let text = answer.body_mut().with_config().limit(64 << 20).read_to_string().unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The peak resident set size of process `pid` (`VmHWM`), in bytes; 0 if unknown.
pub(super) fn peak_rss_bytes(pid: u32) -> u64 {
    status_bytes(pid, "VmHWM:")
}

/// A size line of `/proc/<pid>/status` (`VmHWM:`, `VmRSS:`), in bytes; 0 if unknown.
pub(super) fn status_bytes(pid: u32, field: &str) -> u64 {
    let mut text = String::new();
    let _ = std::fs::File::open(format!("/proc/{pid}/status")).and_then(|mut f| f.read_to_string(&mut text));
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `mfawatch run --config <config>`, this binary, as a child process.
pub(super) fn start(config: &std::path::Path) -> anyhow::Result<Child> {
    Ok(Command::new(std::env::current_exe()?)
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?)
}

/// The mock cluster (kept while it is held) when there are no brokers.
pub(super) type Mock = Option<rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>>;

/// `topic` made with `partitions` on `brokers`, or on a mock cluster made
/// for it when there are none; and the bootstrap servers to reach it.
pub(super) fn scratch_topic(brokers: Option<&str>, topic: &str, partitions: i32) -> anyhow::Result<(Mock, String)> {
    match brokers {
        Some(brokers) => {
            create_topic(brokers, topic, partitions)?;
            Ok((None, brokers.to_owned()))
        }
        None => {
            let mock = rdkafka::mocking::MockCluster::new(1)?;
            mock.create_topic(topic, partitions, 1)?;
            let bootstrap = mock.bootstrap_servers();
            Ok((Some(mock), bootstrap))
        }
    }
}

pub fn run(args: RestartArgs) -> anyhow::Result<()> {
    let topic = format!("{TOPIC}-restart-{}", std::process::id());
    let (mock, bootstrap) = scratch_topic(args.brokers.as_deref(), &topic, 2)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let heard: Heard = Default::default();
    let hook = webhook(&runtime, heard.clone(), Arc::new(AtomicBool::new(false)))?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("mfawatch.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{bootstrap}\"\ntopics = [\"{topic}\"]\ngroup_id = \"mfawatch-bench-restart-{pid}\"\n\n\
             [checkpoint]\ndir = \"{state}\"\ninterval = \"5s\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [alerts.webhook]\nurl = \"{hook}\"\nplain_http_loopback = true\n\n[log]\nlevel = \"warn,librdkafka=error\"\n",
            state = dir.path().join("state").display(),
            pid = std::process::id(),
        ),
    )?;
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).http_status_as_error(false).build(),
    );
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "1")
        .set("message.max.bytes", "10000000")
        .create()?;
    let send = |payload: &[u8], n: u64| {
        let key = n.to_string();
        let mut record = BaseRecord::to(&topic).payload(payload).key(&key).partition((n % 2) as i32);
        while let Err((_, r)) = producer.send(record) {
            record = r;
            producer.poll(Duration::from_millis(5));
        }
        producer.poll(Duration::ZERO);
    };

    let mut daemon = start(&config)?;
    eprintln!("filling the state with {} users...", args.users);
    let filled = Instant::now();
    let messages = args.users.div_ceil(PER_MESSAGE);
    let read = || metric(&agent, &base, "mfawatch_messages_total") as u64;
    let ms = now_ms() - 3_600_000;
    for m in 0..messages {
        while m >= read() + AHEAD {
            anyhow::ensure!(daemon.try_wait()?.is_none(), "the daemon stopped while the state was filled");
            std::thread::sleep(Duration::from_millis(5));
        }
        let records: Vec<serde_json::Value> = (m * PER_MESSAGE..((m + 1) * PER_MESSAGE).min(args.users))
            .map(|u| sign_in(&format!("fill-{u}"), &format!("user-{u}@contoso.example"), ms, "Browser", 0, true))
            .collect();
        send(&envelope(&records), m);
    }
    producer.flush(Duration::from_secs(10))?;
    while read() < messages {
        std::thread::sleep(Duration::from_millis(20));
    }
    // A checkpoint after the last message: the snapshot holds every user.
    let checkpoints = metric(&agent, &base, "mfawatch_checkpoint_duration_seconds_count");
    while metric(&agent, &base, "mfawatch_checkpoint_duration_seconds_count") < checkpoints + 1.0 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let users = metric(&agent, &base, "mfawatch_users_tracked");
    let fill_seconds = filled.elapsed().as_secs_f64();
    let snapshot_bytes = super::bench::dir_bytes(&dir.path().join("state"));
    daemon.kill()?; // SIGKILL
    daemon.wait()?;

    if args.log {
        let text = std::fs::read_to_string(&config)?;
        std::fs::write(&config, text.replace("level = \"warn,", "level = \"info,"))?;
    }
    let started = Instant::now();
    let mut daemon = start(&config)?;
    let upn = "restart-legacy@contoso.example";
    let planted_ms = now_ms();
    send(&envelope(&[sign_in("restart-plant", upn, planted_ms, "IMAP4", 0, false)]), messages);
    producer.flush(Duration::from_secs(10))?;
    let mut ready = None;
    let mut alerted = None;
    while (ready.is_none() || alerted.is_none()) && started.elapsed() < Duration::from_secs(120) {
        if ready.is_none() && agent.get(format!("{base}/readyz")).call().is_ok_and(|a| a.status() == 200) {
            ready = Some(started.elapsed());
        }
        if alerted.is_none()
            && heard.lock().expect("not poisoned").contains_key(&(upn.to_owned(), "legacy_auth_success".to_owned()))
        {
            alerted = Some(started.elapsed());
        }
        anyhow::ensure!(daemon.try_wait()?.is_none(), "the restarted daemon stopped");
        std::thread::sleep(Duration::from_millis(10));
    }
    let rss = peak_rss_bytes(daemon.id());
    daemon.kill()?;
    daemon.wait()?;
    drop(producer);
    drop(mock);
    let seconds =
        |d: Option<Duration>| d.map_or("not within 120 s".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
    println!(
        "restart to ready on {}: {} users in the state ({users:.0} tracked; filled in {fill_seconds:.0} s), snapshot {:.1} MB ({:.0} bytes/user), killed with SIGKILL, started again",
        args.brokers.as_deref().map_or("librdkafka's mock cluster".to_owned(), |b| format!("brokers {b}")),
        args.users,
        snapshot_bytes as f64 / 1e6,
        snapshot_bytes as f64 / args.users.max(1) as f64
    );
    println!("| from the start of the process | |");
    println!("|---|---|");
    println!("| until /readyz answers 200 | {} |", seconds(ready));
    println!("| until the alert for a sign-in produced at the start is at the webhook | {} |", seconds(alerted));
    println!("| peak RSS of the restarted daemon | {:.0} MB |", rss as f64 / 1e6);
    Ok(())
}
