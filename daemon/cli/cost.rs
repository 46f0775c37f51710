//! `mfawatch bench cost`: what one tenant costs to run — the daemon's CPU
//! seconds and peak memory per hour of its sign-ins, and the Parquet
//! history it writes a day.
//!
//! The tenant's volume is JSON bytes a day (by default Microsoft's estimate
//! for 100,000 users, in proportion to `--users`: [`MICROSOFT_EVENTS_PER_DAY`]
//! sign-in events of [`MICROSOFT_EVENT_BYTES`]); at the generator's
//! realistic mix that is so many records a day. The benchmark generates
//! `--minutes` of that traffic and `--live-seconds` more into memory first,
//! so the generator's cost is never counted, then runs the daemon itself
//! (`mfawatch run`, a process of its own, at its defaults: alerts to a
//! webhook in this process, history, dead letters, checkpoints every 10 s)
//! on a topic of librdkafka's in-process mock cluster (or `--brokers`). The
//! daemon's CPU (user + system, `/proc/<pid>/stat`) and peak RSS (`VmHWM`)
//! are read from outside, so the producer, the broker and the receiver are
//! never in them.
//!
//! Two stretches, each ending at the first checkpoint after the daemon read
//! its last message: the slice at `--rate` MB/s (the mock cluster keeps only
//! 5 MB of a partition, so the producer runs at a pace, not as fast as it
//! can), then the live seconds at the tenant's own pace. The live stretch
//! is the hour of wall time a tenant costs; the two together tell apart
//! what grows with the traffic (CPU per byte) from what comes with time
//! (checkpoints, fetch polls, timers: CPU per second). The `/metrics`
//! scrapes that watch the daemon are measured and taken out. Afterwards the
//! history's parts are merged into day files, as the daemon does once a day
//! has settled, in this process and timed, and the merged folder is what
//! the Parquet figures are of. A parse-only pass and a decode + classify
//! pass over the slice, in this process, are the baselines that carry the
//! figures across machines. Nothing here knows the pipeline: the daemon is
//! measured as a user runs it.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::de::IgnoredAny;

use super::latency::{Heard, TOPIC, webhook};
use super::restart::{free_port, peak_rss_bytes, scratch_topic, start};
use crate::classify::{Rules, classify};
use crate::decode::{Item, decode_message};
use crate::generate::{Format, Generator, TenantSpec};

#[derive(Debug, clap::Args)]
pub struct CostArgs {
    /// Users in the tenant.
    #[arg(long, default_value_t = 100_000)]
    pub users: u32,
    /// The tenant's sign-in JSON a day, in GB (10⁹ bytes); default:
    /// Microsoft's estimate (1.5 million events of 11.5 KB a day for
    /// 100,000 users), in proportion to --users.
    #[arg(long)]
    pub gb_per_day: Option<f64>,
    /// Minutes of the tenant's traffic sent at --rate.
    #[arg(long, default_value_t = 60)]
    pub minutes: u32,
    /// MB/s of JSON the slice is sent at (the mock cluster loses what a
    /// daemon more than 5 MB a partition behind has not read).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Seconds of the tenant's traffic at its own pace afterwards.
    #[arg(long, default_value_t = 120)]
    pub live_seconds: u64,
    /// Bootstrap servers of a scratch broker (e.g. tansu); default:
    /// librdkafka's in-process mock cluster.
    #[arg(long)]
    pub brokers: Option<String>,
}

/// Microsoft's estimate of a 100,000-user tenant's sign-in events a day
/// ("Microsoft Entra activity log integration options", cost considerations:
/// "a tenant of about 100,000 users could incur about 1.5 million events per day").
pub const MICROSOFT_EVENTS_PER_DAY: f64 = 1.5e6;
/// The same page: "sign-in log events use on average 11.5 KB".
pub const MICROSOFT_EVENT_BYTES: f64 = 11.5e3;
/// The users Microsoft's estimate is for.
pub const MICROSOFT_USERS: f64 = 100_000.0;

const DAY: f64 = 86_400.0;
const HOUR: f64 = 3_600.0;
/// Records per message, as the other benchmarks and the demo send them.
const PER_MESSAGE: u32 = 40;
/// Partitions of the topic (the mock cluster keeps 5 MB of each).
const PARTITIONS: i32 = 4;
/// Scrapes of `/metrics` timed to learn what one costs the daemon.
const SCRAPES_TIMED: u32 = 1_000;
/// Records of the tenant generated to learn its bytes per record.
const PILOT_RECORDS: u64 = 4_000;

/// A tenant's sign-in volume: its JSON a day and the generator's bytes per
/// record, and what follows from them. The one place the benchmark scales.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Volume {
    pub json_bytes_per_day: f64,
    pub bytes_per_record: f64,
}

impl Volume {
    /// Microsoft's estimate in proportion to `users`, or `gb_per_day` given.
    pub fn of_tenant(users: u32, gb_per_day: Option<f64>, bytes_per_record: f64) -> Volume {
        let json_bytes_per_day = gb_per_day
            .map_or(MICROSOFT_EVENTS_PER_DAY * MICROSOFT_EVENT_BYTES * f64::from(users) / MICROSOFT_USERS, |gb| {
                gb * 1e9
            });
        Volume { json_bytes_per_day, bytes_per_record }
    }

    pub fn records_per_day(&self) -> f64 {
        self.json_bytes_per_day / self.bytes_per_record
    }

    pub fn bytes_per_second(&self) -> f64 {
        self.json_bytes_per_day / DAY
    }

    /// Records the tenant signs in over `seconds`.
    pub fn records_in(&self, seconds: f64) -> u64 {
        (self.records_per_day() * seconds / DAY).round() as u64
    }

    /// Seconds of the tenant's traffic that `json_bytes` are.
    pub fn traffic_seconds(&self, json_bytes: u64) -> f64 {
        json_bytes as f64 / self.bytes_per_second()
    }

    /// What `measured` over `json_bytes` of the tenant's traffic comes to
    /// over `seconds` of it (CPU seconds, bytes written: whatever grows with
    /// the traffic).
    pub fn scale(&self, measured: f64, json_bytes: u64, seconds: f64) -> f64 {
        measured * seconds / self.traffic_seconds(json_bytes)
    }
}

/// CPU seconds per hour of wall time from `cpu` seconds over `wall` seconds.
pub fn per_hour_of_wall(cpu: f64, wall: f64) -> f64 {
    cpu * HOUR / wall
}

/// What one measured stretch of the daemon's work came to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stretch {
    pub json_bytes: u64,
    pub records: u64,
    /// Seconds from its first message to the checkpoint after its last.
    pub wall: f64,
    /// The daemon's CPU seconds over it, the scrapes taken out.
    pub cpu: f64,
}

/// CPU per byte of traffic and CPU per second of time, from two stretches
/// of different rates (each `cpu = per_byte × bytes + per_second × wall`);
/// `None` when the rates are too close to tell them apart or either comes
/// out below zero (too little CPU to measure).
pub fn split(a: &Stretch, b: &Stretch) -> Option<(f64, f64)> {
    let (ba, bb) = (a.json_bytes as f64, b.json_bytes as f64);
    let det = ba * b.wall - bb * a.wall;
    if det.abs() < 1e-9 * ba * b.wall {
        return None;
    }
    let per_byte = (a.cpu * b.wall - b.cpu * a.wall) / det;
    let per_second = (b.cpu * ba - a.cpu * bb) / det;
    (per_byte >= 0.0 && per_second >= 0.0).then_some((per_byte, per_second))
}

/// CPU seconds (user + system) the process `pid` has used, all its threads.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}: did the daemon stop?"))?;
    // The command name may hold spaces and parentheses: the fields that
    // follow start after its last ')', with field 3 of proc(5).
    let rest = text.rsplit_once(')').map(|(_, rest)| rest).context(format!("{path}: no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("{path}: field {n} is not a number of clock ticks"))
    };
    // SAFETY: sysconf reads a constant of the system and takes no memory.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    anyhow::ensure!(ticks > 0, "sysconf(_SC_CLK_TCK) answered {ticks}");
    Ok((field(14)? + field(15)?) as f64 / ticks as f64)
}

/// CPU seconds (user + system) of this process (`libc::RUSAGE_SELF`) or
/// of the calling thread (`libc::RUSAGE_THREAD`).
fn own_cpu_seconds(who: libc::c_int) -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one `rusage` through the pointer, which points
    // at one; on failure it writes nothing and the zeroed value is read.
    let usage = unsafe {
        libc::getrusage(who, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The least CPU time (this thread's) of `rounds` runs of `pass`.
fn thread_cpu_best(rounds: u32, mut pass: impl FnMut() -> u64) -> (f64, u64) {
    let mut best = (f64::MAX, 0);
    for _ in 0..rounds.max(1) {
        let before = own_cpu_seconds(libc::RUSAGE_THREAD);
        let n = std::hint::black_box(pass());
        best.0 = best.0.min(own_cpu_seconds(libc::RUSAGE_THREAD) - before);
        best.1 = n;
    }
    best
}

/// The daemon's `/metrics`, scraped; the scrapes are counted, since each
/// costs the daemon CPU that the tenant's traffic would not.
struct Scraper {
    agent: ureq::Agent,
    url: String,
    count: u64,
}

impl Scraper {
    fn text(&mut self) -> String {
        self.count += 1;
        let Ok(mut answer) = self.agent.get(&self.url).call() else { return String::new() };
        answer.body_mut().with_config().limit(64 << 20).read_to_string().unwrap_or_default()
    }

    /// The first sample of an unlabelled metric, or 0.
    fn value(&mut self, name: &str) -> f64 {
        self.text()
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    fn messages(&mut self) -> u64 {
        self.value("mfawatch_messages_total") as u64
    }

    fn checkpoints(&mut self) -> f64 {
        self.value("mfawatch_checkpoint_duration_seconds_count")
    }

    /// CPU seconds one scrape costs the daemon `daemon`.
    fn cost(&mut self, daemon: &Running) -> anyhow::Result<f64> {
        let before = cpu_seconds(daemon.pid())?;
        for _ in 0..SCRAPES_TIMED {
            self.text();
        }
        Ok(((cpu_seconds(daemon.pid())? - before) / f64::from(SCRAPES_TIMED)).max(0.0))
    }
}

/// Messages of the tenant, in order: `slice` records, then `live` records.
struct Traffic {
    slice: Vec<Vec<u8>>,
    live: Vec<Vec<u8>>,
    privileged: Vec<String>,
    excluded: Vec<String>,
}

fn bytes(messages: &[Vec<u8>]) -> u64 {
    messages.iter().map(|m| m.len() as u64).sum()
}

/// The tenant's sign-ins over the day ending now (the generator spreads
/// records over whole days), in messages of [`PER_MESSAGE`].
fn spec(users: u32, records: u64) -> TenantSpec {
    TenantSpec {
        users,
        records,
        days: 1,
        end: chrono::Utc::now(),
        format: Format::Envelope,
        records_per_message: PER_MESSAGE,
        ..TenantSpec::default()
    }
}

fn generate(users: u32, slice: u64, live: u64) -> Traffic {
    let mut generator = Generator::new(spec(users, slice + live));
    let tenant = generator.tenant();
    let privileged = tenant.users.iter().filter(|u| u.admin).map(|u| u.upn.clone()).collect();
    let excluded = tenant.users.iter().filter(|u| u.break_glass).map(|u| u.upn.clone()).collect();
    let slice_messages = slice.div_ceil(u64::from(PER_MESSAGE)) as usize;
    let (mut messages, mut message) = (Vec::new(), Vec::new());
    while generator.next_message(&mut message) {
        messages.push(std::mem::take(&mut message));
    }
    let live = messages.split_off(slice_messages.min(messages.len()));
    Traffic { slice: messages, live, privileged, excluded }
}

/// The daemon's configuration: its defaults, with this run's broker, state,
/// port, webhook and dead-letter file.
fn daemon_config(
    bootstrap: &str,
    topic: &str,
    state: &std::path::Path,
    port: u16,
    hook: String,
    traffic: &Traffic,
) -> anyhow::Result<String> {
    let mut config = crate::config::Config::default();
    config.kafka.brokers = Some(bootstrap.to_owned());
    config.kafka.topics = vec![topic.to_owned()];
    config.kafka.group_id = format!("mfawatch-bench-cost-{}", std::process::id());
    config.checkpoint.dir = state.join("state");
    config.http.listen = format!("127.0.0.1:{port}");
    config.alerts.webhook =
        Some(crate::config::WebhookConfig { url: Some(hook), plain_http_loopback: true, ..Default::default() });
    config.dead_letter.file = Some(state.join("dead-letters.jsonl"));
    config.coverage.privileged = traffic.privileged.clone();
    config.coverage.excluded = traffic.excluded.clone();
    // The synthetic tenant signs in with break-glass accounts on purpose: warnings of those are expected here.
    config.log.level = "error".into();
    config.validate(std::path::Path::new("<bench cost>"))?;
    Ok(toml::to_string(&config)?)
}

/// The producer of the tenant's messages, in turn to each partition.
struct Feed<'a> {
    producer: BaseProducer,
    topic: &'a str,
    sent: u64,
}

impl Feed<'_> {
    fn send(&mut self, payload: &[u8]) {
        let mut record =
            BaseRecord::<(), [u8]>::to(self.topic).payload(payload).partition((self.sent % PARTITIONS as u64) as i32);
        while let Err((_, r)) = self.producer.send(record) {
            record = r;
            self.producer.poll(Duration::from_millis(5));
        }
        self.producer.poll(Duration::ZERO);
        self.sent += 1;
    }
}

/// The daemon's process; killed if the benchmark ends before it stopped it.
struct Running(std::process::Child);

impl Running {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn alive(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.0.try_wait()?.is_none(), "the daemon stopped; its log is above");
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Sends `messages` (`records` records) at `bytes_per_second`, then waits
/// until the daemon has read them all and a checkpoint has made them
/// durable: the daemon's CPU over that stretch, its scrapes taken out.
fn measure(
    feed: &mut Feed,
    daemon: &mut Running,
    scraper: &mut Scraper,
    (messages, records): (&[Vec<u8>], u64),
    bytes_per_second: f64,
    per_scrape: f64,
) -> anyhow::Result<Stretch> {
    let (cpu0, scrapes0, started) = (cpu_seconds(daemon.pid())?, scraper.count, Instant::now());
    let mut json_bytes = 0u64;
    for m in messages {
        let at = Duration::from_secs_f64(json_bytes as f64 / bytes_per_second);
        while started.elapsed() < at {
            feed.producer.poll(Duration::from_millis(1));
        }
        feed.send(m);
        json_bytes += m.len() as u64;
    }
    feed.producer.flush(Duration::from_secs(30))?;
    let (mut read, mut moved) = (scraper.messages(), Instant::now());
    while read < feed.sent {
        daemon.alive()?;
        std::thread::sleep(Duration::from_millis(50));
        let now = scraper.messages();
        if now > read {
            (read, moved) = (now, Instant::now());
        }
        anyhow::ensure!(
            moved.elapsed() < Duration::from_secs(20),
            "the daemon read {read} of {} messages and nothing more for 20 s: a broker that keeps little (the mock \
             cluster: 5 MB a partition) drops what a daemon that far behind has not read; give a lower --rate",
            feed.sent
        );
    }
    let checkpoints = scraper.checkpoints();
    while scraper.checkpoints() < checkpoints + 1.0 {
        daemon.alive()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let (cpu, wall) = (cpu_seconds(daemon.pid())? - cpu0, started.elapsed().as_secs_f64());
    let scrapes = (scraper.count - scrapes0) as f64;
    Ok(Stretch { json_bytes, records, wall, cpu: (cpu - per_scrape * scrapes).max(0.0) })
}

pub fn run(args: CostArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.minutes >= 1, "--minutes must be at least 1");
    anyhow::ensure!(args.live_seconds >= 10, "--live-seconds must be at least 10 (a checkpoint's interval)");
    anyhow::ensure!(args.rate > 0.0, "--rate must be more than 0 MB/s");
    anyhow::ensure!(args.gb_per_day.is_none_or(|gb| gb > 0.0), "--gb-per-day must be more than 0");
    eprintln!("learning the bytes per record of a {}-user tenant...", args.users);
    let mut pilot = Generator::new(spec(args.users, PILOT_RECORDS));
    let (mut message, mut pilot_bytes) = (Vec::new(), 0u64);
    while pilot.next_message(&mut message) {
        pilot_bytes += message.len() as u64;
    }
    let pilot_volume = Volume::of_tenant(args.users, args.gb_per_day, pilot_bytes as f64 / PILOT_RECORDS as f64);
    // Whole messages, so that the slice ends where a message does; the
    // first of them waits for the group join and is not measured.
    let per_message = u64::from(PER_MESSAGE);
    let slice_records =
        pilot_volume.records_in(f64::from(args.minutes) * 60.0).div_ceil(per_message).max(2) * per_message;
    let live_records = pilot_volume.records_in(args.live_seconds as f64).max(1);
    eprintln!("generating {slice_records} + {live_records} records into memory...");
    let traffic = generate(args.users, slice_records, live_records);
    let all_bytes = bytes(&traffic.slice) + bytes(&traffic.live);
    let volume =
        Volume::of_tenant(args.users, args.gb_per_day, all_bytes as f64 / (slice_records + live_records) as f64);

    eprintln!("baselines over the slice, in this process...");
    let slice_bytes = bytes(&traffic.slice);
    let (parse_cpu, parsed) = thread_cpu_best(3, || {
        traffic.slice.iter().map(|m| serde_json::from_slice::<IgnoredAny>(m).map_or(0, |_| 1u64)).sum()
    });
    anyhow::ensure!(parsed == traffic.slice.len() as u64, "parsed {parsed} of {} messages", traffic.slice.len());
    let rules = Rules::default();
    let (classify_cpu, classified) = thread_cpu_best(3, || {
        let mut n = 0u64;
        for m in &traffic.slice {
            for item in decode_message(m) {
                if let Item::SignIn(record) = item {
                    std::hint::black_box(classify(&record, &rules));
                }
                n += 1;
            }
        }
        n
    });
    anyhow::ensure!(classified == slice_records, "decoded {classified} of {slice_records} records");

    let topic = format!("{TOPIC}-cost-{}", std::process::id());
    let (mock, bootstrap) = scratch_topic(args.brokers.as_deref(), &topic, PARTITIONS)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let heard: Heard = Default::default();
    let hook = webhook(&runtime, heard.clone(), Arc::new(AtomicBool::new(false)))?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("mfawatch.toml");
    std::fs::write(&config, daemon_config(&bootstrap, &topic, dir.path(), port, hook, &traffic)?)
        .with_context(|| format!("writing {}", config.display()))?;
    let mut scraper = Scraper {
        agent: ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(5)))
                .http_status_as_error(false)
                .build(),
        ),
        url: format!("http://127.0.0.1:{port}/metrics"),
        count: 0,
    };
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "1")
        .set("message.max.bytes", "10000000")
        .create()?;
    let mut feed = Feed { producer, topic: &topic, sent: 0 };

    let mut daemon = Running(start(&config)?);
    feed.send(&traffic.slice[0]);
    let joined = Instant::now();
    while scraper.messages() < 1 {
        daemon.alive()?;
        anyhow::ensure!(joined.elapsed() < Duration::from_secs(120), "the daemon read nothing in 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let per_scrape = scraper.cost(&daemon)?;
    eprintln!("measuring: {} minutes of the tenant's traffic at {} MB/s...", args.minutes, args.rate);
    let slice = measure(
        &mut feed,
        &mut daemon,
        &mut scraper,
        (&traffic.slice[1..], slice_records - per_message),
        args.rate * 1e6,
        per_scrape,
    )?;
    eprintln!("measuring: {} s of the tenant's traffic at its own pace...", args.live_seconds);
    let live = measure(
        &mut feed,
        &mut daemon,
        &mut scraper,
        (&traffic.live, live_records),
        volume.bytes_per_second(),
        per_scrape,
    )?;
    let text = scraper.text();
    let pid = daemon.pid();
    let peak_rss = peak_rss_bytes(pid);
    let rss_now = super::restart::status_bytes(pid, "VmRSS:");
    let history_rows = crate::metrics::sum(&text, "mfawatch_history_rows_total");
    let alerts = crate::metrics::sum(&text, "mfawatch_alerts_total");
    let users = crate::metrics::sum(&text, "mfawatch_users_tracked");
    let merged_by_daemon = crate::metrics::sum(&text, "mfawatch_history_compactions_total");
    // SIGTERM: the daemon checkpoints, commits and leaves its group.
    // SAFETY: kill sends a signal to the child this process started and has not reaped.
    let _ = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let status = daemon.0.wait()?;
    anyhow::ensure!(status.success(), "the daemon ended with {status} on SIGTERM");
    drop(feed);
    drop(mock);
    let delivered = heard.lock().expect("not poisoned").len();
    let snapshot_bytes = std::fs::metadata(dir.path().join("state").join("state.snapshot")).map_or(0, |m| m.len());

    // The parts merged into day files, as the daemon does once a day has settled.
    let history = dir.path().join("state").join("history");
    let parts_bytes = super::bench::dir_bytes(&history);
    let (merge_cpu0, merge_t0) = (own_cpu_seconds(libc::RUSAGE_SELF), Instant::now());
    let mut merged = 0;
    if let Some((epoch, seq)) = crate::history::files::read_committed(&history)
        .with_context(|| format!("reading {}", history.display()))?
        .pop_last()
    {
        for (_, folder) in crate::history::files::dates(&history)? {
            merged += crate::history::files::compact(&folder, epoch, seq, crate::history::files::READERS_WAIT)
                .with_context(|| format!("merging {}", folder.display()))?;
        }
    }
    let (merge_cpu, merge_wall) = (own_cpu_seconds(libc::RUSAGE_SELF) - merge_cpu0, merge_t0.elapsed().as_secs_f64());
    let history_bytes = super::bench::dir_bytes(&history);

    let mb = |b: f64| b / 1e6;
    let source = match args.gb_per_day {
        Some(_) => "given with --gb-per-day".to_owned(),
        None => format!(
            "Microsoft's estimate for 100,000 users, {:.1} M sign-in events a day of {:.1} KB, in proportion to {} users",
            MICROSOFT_EVENTS_PER_DAY / 1e6,
            MICROSOFT_EVENT_BYTES / 1e3,
            args.users
        ),
    };
    println!(
        "cost of a tenant: {} users, {:.2} GB of sign-in JSON a day ({source}); at the generator's mix of {:.0} bytes/record: {:.2} M sign-ins a day, {:.1} a second, {:.3} MB/s",
        args.users,
        volume.json_bytes_per_day / 1e9,
        volume.bytes_per_record,
        volume.records_per_day() / 1e6,
        volume.records_per_day() / DAY,
        mb(volume.bytes_per_second())
    );
    println!(
        "the daemon: `mfawatch run`, its own process, on {} ({PARTITIONS} partitions); alerts to a webhook, history, dead letters, checkpoints every 10 s",
        args.brokers.as_deref().map_or("librdkafka's mock cluster".to_owned(), |b| format!("brokers {b}"))
    );
    println!("| | |");
    println!("|---|---|");
    let per_core = |cpu: f64, bytes: f64| mb(bytes) / cpu;
    println!(
        "| baseline in this process, one thread: `serde_json` parse-only of the slice / decode + classify | {:.2} / {:.2} CPU s = {:.0} / {:.0} MB per CPU s |",
        parse_cpu,
        classify_cpu,
        per_core(parse_cpu, slice_bytes as f64),
        per_core(classify_cpu, slice_bytes as f64)
    );
    let slice_minutes = volume.traffic_seconds(slice.json_bytes) / 60.0;
    println!(
        "| slice: {:.0} minutes of the tenant's traffic ({} records, {:.0} MB) sent at {} MB/s; {:.1} s to the checkpoint after it | daemon {:.2} CPU s = **{:.0} records/s, {:.0} MB/s per core**; {:.1} × the parse-only CPU of the same bytes |",
        slice_minutes,
        slice.records,
        mb(slice.json_bytes as f64),
        args.rate,
        slice.wall,
        slice.cpu,
        slice.records as f64 / slice.cpu,
        per_core(slice.cpu, slice.json_bytes as f64),
        slice.cpu / (parse_cpu / slice_bytes as f64 * slice.json_bytes as f64),
    );
    let slice_hour = volume.scale(slice.cpu, slice.json_bytes, HOUR);
    println!(
        "| → the slice scaled to an hour / a day of traffic | {:.1} / {:.0} CPU s |",
        slice_hour,
        slice_hour * 24.0
    );
    let live_hour = per_hour_of_wall(live.cpu, live.wall);
    println!(
        "| live: {:.0} s at the tenant's pace ({} records, {:.1} MB) | daemon {:.2} CPU s → **{:.0} CPU s an hour, {:.0} a day = {:.4} cores on average** |",
        live.wall,
        live.records,
        mb(live.json_bytes as f64),
        live.cpu,
        live_hour,
        live_hour * 24.0,
        live_hour / HOUR
    );
    match split(&slice, &live) {
        Some((per_byte, per_second)) => println!(
            "| of an hour: what grows with the traffic / what comes with time (checkpoints, polls, timers) | {:.1} / {:.1} CPU s ({:.2} CPU ms per MB; {:.2} CPU ms per second) |",
            per_byte * volume.bytes_per_second() * HOUR,
            per_second * HOUR,
            per_byte * 1e9,
            per_second * 1e3
        ),
        None => println!("| of an hour: traffic and time apart | too little CPU in the stretches to tell them apart |"),
    }
    println!("| `/metrics` scrapes that watched the daemon, taken out | {:.2} CPU ms each |", per_scrape * 1e3);
    println!(
        "| merging the history's parts into day files (this process: {merged} parts{}) | {:.2} CPU s in {:.1} s → {:.1} CPU s a day of traffic |",
        if merged_by_daemon > 0.0 {
            format!("; {merged_by_daemon:.0} merges by the daemon, once a day had settled")
        } else {
            String::new()
        },
        merge_cpu,
        merge_wall,
        volume.scale(merge_cpu, all_bytes, DAY)
    );
    println!(
        "| peak RSS of the daemon (VmHWM) / RSS at the end | **{:.0} MB** / {:.0} MB ({users:.0} users tracked; the snapshot, written at every checkpoint, {:.1} MB) |",
        mb(peak_rss as f64),
        mb(rss_now as f64),
        mb(snapshot_bytes as f64)
    );
    let per_sign_in = history_bytes as f64 / history_rows.max(1.0);
    let microsoft_records = MICROSOFT_EVENTS_PER_DAY * f64::from(args.users) / MICROSOFT_USERS;
    println!(
        "| history: {history_rows:.0} rows, {:.1} MB of parts → {:.1} MB merged | **{:.0} bytes per sign-in**, {:.1} % of the JSON |",
        mb(parts_bytes as f64),
        mb(history_bytes as f64),
        per_sign_in,
        100.0 * history_bytes as f64 / all_bytes as f64
    );
    println!(
        "| → Parquet a day | **{:.0} MB** ({:.0} MB at Microsoft's {:.2} M events a day) |",
        mb(volume.scale(history_bytes as f64, all_bytes, DAY)),
        mb(per_sign_in * microsoft_records),
        microsoft_records / 1e6
    );
    println!("| alerts made / (user, rule) pairs at the webhook | {alerts:.0} / {delivered} |");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microsofts_estimate_is_17_gb_a_day_for_100000_users_and_scales_with_users() {
        let v = Volume::of_tenant(100_000, None, 5_000.0);
        assert!((v.json_bytes_per_day - 17.25e9).abs() < 1.0);
        assert!((Volume::of_tenant(10_000, None, 5_000.0).json_bytes_per_day - 1.725e9).abs() < 1.0);
        assert_eq!(Volume::of_tenant(100_000, Some(2.0), 5_000.0).json_bytes_per_day, 2e9);
    }

    #[test]
    fn records_follow_from_the_bytes_a_day_and_the_bytes_per_record() {
        let v = Volume::of_tenant(100_000, None, 5_000.0);
        assert!((v.records_per_day() - 3_450_000.0).abs() < 1e-6);
        assert_eq!(v.records_in(HOUR), 143_750);
        assert_eq!(v.records_in(600.0), 23_958);
        assert!((v.bytes_per_second() - 199_652.777).abs() < 0.01);
    }

    #[test]
    fn a_measure_over_ten_minutes_of_traffic_is_six_times_as_much_an_hour() {
        let v = Volume::of_tenant(100_000, None, 5_000.0);
        let ten_minutes = (v.bytes_per_second() * 600.0) as u64;
        assert!((v.traffic_seconds(ten_minutes) - 600.0).abs() < 0.01);
        let hour = v.scale(3.0, ten_minutes, HOUR);
        assert!((hour - 18.0).abs() < 1e-3, "{hour}");
        assert!((v.scale(3.0, ten_minutes, DAY) - 432.0).abs() < 1e-2);
        // Cores on average: CPU seconds an hour over the hour's seconds.
        assert!((hour / HOUR - 0.005).abs() < 1e-6);
        assert!((per_hour_of_wall(0.5, 60.0) - 30.0).abs() < 1e-9);
    }

    #[test]
    fn two_stretches_at_different_rates_tell_cpu_per_byte_from_cpu_per_second() {
        // 2 ms per MB and 1 ms per second: 720 MB in 40 s, then 24 MB in 120 s.
        let (per_byte, per_second) = (2e-9, 1e-3);
        let stretch = |json_bytes: u64, wall: f64| Stretch {
            json_bytes,
            records: 0,
            wall,
            cpu: per_byte * json_bytes as f64 + per_second * wall,
        };
        let (slice, live) = (stretch(720_000_000, 40.0), stretch(24_000_000, 120.0));
        let (b, s) = split(&slice, &live).expect("rates far apart");
        assert!((b - per_byte).abs() < 1e-15 && (s - per_second).abs() < 1e-12, "{b} {s}");
        assert_eq!(split(&slice, &slice), None, "one rate cannot be split");
        // More CPU in the live stretch than the slice's can hold: noise, not a figure.
        assert_eq!(split(&Stretch { cpu: 0.01, ..slice }, &Stretch { cpu: 1.0, ..live }), None);
    }
}
