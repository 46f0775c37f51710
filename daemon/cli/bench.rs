//! `mfawatch bench`: throughput and memory benchmarks that print figures.
//!
//! Each benchmark measures a baseline over the same bytes in the same run, so
//! the ratio holds across machines. Run them from a release build.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::de::IgnoredAny;

use crate::classify::{Rules, classify};
use crate::decode::{Item, decode_message};
use crate::generate::{Format, Generator, TenantSpec};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub which: Bench,
}

#[derive(Debug, clap::Subcommand)]
pub enum Bench {
    /// The whole pipeline (decode → classify → coverage → metrics) on one thread:
    /// over messages in memory beside a bare loop over the same bytes, and
    /// through a Kafka consumer (in-process mock cluster) beside a bare consume loop.
    Pipeline {
        #[arg(long, default_value_t = 100_000)]
        records: u64,
        #[arg(long, default_value_t = 20_000)]
        users: u32,
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
    /// Coverage state memory with many users: bytes per user and RSS.
    Coverage {
        #[arg(long, default_value_t = 1_000_000)]
        users: u32,
    },
    /// RSS while the daemon's consumer works through a backlog on a real broker
    /// (e.g. tansu on 127.0.0.1:9092): prefetch keeps it bounded.
    Backlog {
        /// Bootstrap servers of a scratch broker (a topic is created and filled).
        #[arg(long)]
        brokers: String,
        #[arg(long, default_value_t = 200_000)]
        records: u64,
        #[arg(long, default_value_t = 32 * 1024)]
        prefetch_kbytes: u32,
    },
    /// decode + classify on one thread, beside serde_json's parse-only (IgnoredAny) over the same bytes.
    Decode {
        /// Records to generate (realistic sizes, Event Hubs envelopes of 40).
        #[arg(long, default_value_t = 100_000)]
        records: u64,
        #[arg(long, default_value_t = 5_000)]
        users: u32,
        /// Passes over the data; the best pass counts.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
    },
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.which {
        Bench::Decode { records, users, rounds } => decode(records, users, rounds),
        Bench::Pipeline { records, users, rounds } => pipeline(records, users, rounds),
        Bench::Coverage { users } => coverage(users),
        Bench::Backlog { brokers, records, prefetch_kbytes } => backlog(&brokers, records, prefetch_kbytes),
    }
}

/// Generates `records` records of a tenant in envelope messages, kept in memory.
pub fn generated_messages(records: u64, users: u32) -> Vec<Vec<u8>> {
    let spec = TenantSpec { users, records, format: Format::Envelope, ..TenantSpec::default() };
    Generator::new(spec).collect()
}

/// A named measurement: runs once per round and returns a count.
pub type Pass<'a> = (&'static str, Box<dyn FnMut() -> u64 + 'a>);

/// Runs every pass once per round, interleaved so that a slow moment of the
/// machine hits all of them alike, and keeps each pass's fastest round.
pub fn best_of_interleaved(rounds: u32, passes: &mut [Pass<'_>]) -> Vec<(Duration, u64)> {
    let mut best = vec![(Duration::MAX, 0); passes.len()];
    for _ in 0..rounds.max(1) {
        for (slot, (_, pass)) in best.iter_mut().zip(passes.iter_mut()) {
            let start = Instant::now();
            let n = black_box(pass());
            let elapsed = start.elapsed();
            if elapsed < slot.0 {
                *slot = (elapsed, n);
            }
        }
    }
    best
}

pub struct Figure {
    pub name: &'static str,
    pub elapsed: Duration,
    pub records: u64,
    pub bytes: u64,
}

impl Figure {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
}

pub fn print_table(title: &str, figures: &[Figure]) {
    let baseline = figures[0].mb_per_s();
    println!("{title}");
    println!("{:<44} {:>10} {:>12} {:>14} {:>8}", "", "seconds", "MB/s", "records/s", "ratio");
    for f in figures {
        println!(
            "{:<44} {:>10.3} {:>12.1} {:>14.0} {:>7.0}%",
            f.name,
            f.elapsed.as_secs_f64(),
            f.mb_per_s(),
            f.records_per_s(),
            100.0 * f.mb_per_s() / baseline
        );
    }
}

fn decode(records: u64, users: u32, rounds: u32) -> anyhow::Result<()> {
    eprintln!("generating {records} records for {users} users...");
    let messages = generated_messages(records, users);
    let bytes: u64 = messages.iter().map(|m| m.len() as u64).sum();
    let rules = Rules::default();
    println!(
        "input: {} messages, {} records, {:.1} MB, {:.0} bytes/record on average, {} pass(es), best counts",
        messages.len(),
        records,
        bytes as f64 / 1e6,
        bytes as f64 / records as f64,
        rounds
    );

    let passes: Vec<Pass> = vec![
        (
            "serde_json::from_slice::<IgnoredAny> (baseline)",
            Box::new(|| messages.iter().map(|m| serde_json::from_slice::<IgnoredAny>(m).map_or(0, |_| 1u64)).sum()),
        ),
        ("decode", Box::new(|| messages.iter().map(|m| decode_message(m).len() as u64).sum())),
        (
            "decode + classify",
            Box::new(|| {
                let mut n = 0u64;
                for m in &messages {
                    for item in decode_message(m) {
                        if let Item::SignIn(record) = item {
                            black_box(classify(&record, &rules));
                        }
                        n += 1;
                    }
                }
                n
            }),
        ),
    ];
    let counts = measure("decode + classify, one thread", rounds, records, bytes, passes);
    let (decoded, classified) = (counts[1], counts[2]);
    anyhow::ensure!(
        decoded == records && classified == records,
        "decoded {decoded}, classified {classified} of {records}"
    );
    Ok(())
}

/// Runs the passes interleaved, prints their table (the first pass is the
/// baseline), and returns what each pass counted.
fn measure(title: &str, rounds: u32, records: u64, bytes: u64, mut passes: Vec<Pass<'_>>) -> Vec<u64> {
    let best = best_of_interleaved(rounds, &mut passes);
    let figures: Vec<Figure> = passes
        .iter()
        .zip(&best)
        .map(|((name, _), (elapsed, _))| Figure { name, elapsed: *elapsed, records, bytes })
        .collect();
    print_table(title, &figures);
    best.into_iter().map(|(_, n)| n).collect()
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(str::trim).map(str::to_owned)))
        .and_then(|v| v.trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn new_pipeline() -> crate::pipeline::Pipeline {
    use crate::coverage::{Accounts, Coverage, Policy};
    let rules = Rules::default();
    let shared = crate::pipeline::Shared::new(Coverage::new(Policy::default()), Accounts::default(), &rules);
    crate::pipeline::Pipeline::new(rules, Policy::default(), shared, crate::deadletter::DeadLetters::default())
}

fn pipeline(records: u64, users: u32, rounds: u32) -> anyhow::Result<()> {
    eprintln!("generating {records} records for {users} users...");
    let messages = generated_messages(records, users);
    let bytes: u64 = messages.iter().map(|m| m.len() as u64).sum();
    println!(
        "input: {} messages, {records} records, {:.1} MB, {:.0} bytes/record; one thread",
        messages.len(),
        bytes as f64 / 1e6,
        bytes as f64 / records as f64
    );
    let position = crate::source::Position::Kafka { topic: "bench".into(), partition: 0, offset: 0 };
    let mut pipe = new_pipeline();
    let passes: Vec<Pass> = vec![
        (
            "bare loop over the messages (sum of bytes)",
            Box::new(|| messages.iter().map(|m| m.iter().map(|&b| b as u64).sum::<u64>()).sum()),
        ),
        (
            "serde_json::from_slice::<IgnoredAny>",
            Box::new(|| messages.iter().map(|m| serde_json::from_slice::<IgnoredAny>(m).map_or(0, |_| 1u64)).sum()),
        ),
        (
            "pipeline: decode, classify, coverage, metrics",
            Box::new(|| {
                for m in &messages {
                    pipe.process(m, &position, None).expect("no dead-letter sink to fail");
                }
                records
            }),
        ),
    ];
    measure("in memory", rounds, records, bytes, passes);

    println!();
    let kafka = kafka_passes(&messages)?;
    let figures: Vec<Figure> =
        kafka.iter().map(|(name, elapsed)| Figure { name, elapsed: *elapsed, records, bytes }).collect();
    print_table("through a Kafka consumer (librdkafka mock cluster, producer on the other core)", &figures);
    Ok(())
}

/// Consumes `messages` from an in-process mock cluster twice: touching each
/// payload only, then running the pipeline on it. The producer runs on another
/// thread and stays a few MB ahead (the mock cluster keeps little history).
fn kafka_passes(messages: &[Vec<u8>]) -> anyhow::Result<Vec<(&'static str, Duration)>> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use std::sync::atomic::{AtomicU64, Ordering};

    const PARTITIONS: i32 = 4;
    let mock = rdkafka::mocking::MockCluster::new(1)?;
    let bootstrap = mock.bootstrap_servers();
    let mut out = Vec::new();
    let position = crate::source::Position::Kafka { topic: "bench".into(), partition: 0, offset: 0 };
    for (pass, name) in [(0, "bare consume loop (touch each payload)"), (1, "consume + pipeline")] {
        let topic = format!("bench-{pass}");
        mock.create_topic(&topic, PARTITIONS, 1)?;
        let consumed = std::sync::Arc::new(AtomicU64::new(0));
        let total = messages.len() as u64;
        let elapsed = std::thread::scope(|scope| -> anyhow::Result<Duration> {
            let producer_consumed = consumed.clone();
            let (producer_topic, producer_bootstrap) = (topic.clone(), bootstrap.clone());
            scope.spawn(move || {
                let producer: BaseProducer = ClientConfig::new()
                    .set("bootstrap.servers", &producer_bootstrap)
                    .set("linger.ms", "1")
                    .set("message.max.bytes", "10000000")
                    .create()
                    .expect("producer");
                for (i, m) in messages.iter().enumerate() {
                    while i as u64 > producer_consumed.load(Ordering::Relaxed) + 40 {
                        producer.poll(Duration::from_micros(200));
                    }
                    let mut record =
                        BaseRecord::<(), [u8]>::to(&producer_topic).payload(m).partition(i as i32 % PARTITIONS);
                    while let Err((_, r)) = producer.send(record) {
                        record = r;
                        producer.poll(Duration::from_millis(1));
                    }
                    producer.poll(Duration::ZERO);
                }
                let _ = producer.flush(Duration::from_secs(30));
            });
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", format!("bench-{pass}"))
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "10")
                .create()?;
            consumer.subscribe(&[&topic])?;
            let mut pipe = new_pipeline();
            let mut started = None;
            let mut n = 0u64;
            let mut sum = 0u64;
            let deadline = Instant::now() + Duration::from_secs(600);
            while n < total && Instant::now() < deadline {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    started.get_or_insert_with(Instant::now);
                    let payload = m.payload().unwrap_or_default();
                    if pass == 0 {
                        sum += payload.iter().map(|&b| b as u64).sum::<u64>();
                    } else {
                        pipe.process(payload, &position, None)?;
                    }
                    n += 1;
                    consumed.store(n, Ordering::Relaxed);
                }
            }
            black_box(sum);
            anyhow::ensure!(n == total, "consumed {n} of {total} messages");
            Ok(started.map_or(Duration::ZERO, |s| s.elapsed()))
        })?;
        out.push((name, elapsed));
    }
    Ok(out)
}

fn coverage(users: u32) -> anyhow::Result<()> {
    use crate::coverage::{Accounts, Coverage, Observation, Policy};
    use chrono::TimeZone;
    let rss_before = rss_bytes();
    let mut c = Coverage::new(Policy::default());
    // Keys are made on the fly so that RSS growth is the state's own.
    let user = |i: u32| {
        let h = format!("{:032x}", (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835));
        let key = format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]);
        (key, format!("user.{i}@contoso.example"), format!("User {i}"))
    };
    let strings_input: usize =
        (0..users).map(|i| format!("user.{i}@contoso.example").len() + format!("User {i}").len()).sum();
    let base = chrono::Utc.with_ymd_and_hms(2025, 6, 20, 8, 0, 0).unwrap();
    let started = Instant::now();
    let mut observations = 0u64;
    for day in 0..3 {
        for i in 0..users {
            let (key, upn, name) = user(i);
            let i = i as usize;
            let single_factor = i % 7 == day as usize;
            let o = Observation {
                key: &key,
                upn: Some(&upn),
                display_name: Some(&name),
                user_type: Some(if i.is_multiple_of(12) { "Guest" } else { "Member" }),
                time: base + chrono::Duration::days(day) + chrono::Duration::seconds((i % 36_000) as i64),
                counted: true,
                mfa: !single_factor,
                single_factor,
                legacy: single_factor && i.is_multiple_of(3),
                registration_required: false,
                any_mfa: !single_factor,
                app: Some(["OfficeHome", "Microsoft Teams", "Azure Portal"][i % 3]),
                client_app: if single_factor && i.is_multiple_of(3) { "IMAP4" } else { "Browser" },
            };
            c.observe(&o);
            observations += 1;
        }
    }
    let observe = started.elapsed();
    let rss_after = rss_bytes();
    let (structures, strings) = c.heap_bytes();
    let t = Instant::now();
    let summary = c.summary(&Accounts::default());
    let summary_time = t.elapsed();
    let t = Instant::now();
    let query = crate::coverage::UserQuery {
        state: Some(crate::coverage::State::Uncovered),
        limit: 100,
        ..crate::coverage::UserQuery::default()
    };
    let (uncovered, page) = c.users(&Accounts::default(), &query);
    let users_time = t.elapsed();
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let offsets = Default::default();
    let size = crate::checkpoint::SnapshotFile::new(dir.path()).write(&crate::checkpoint::SnapshotRef {
        offsets: &offsets,
        coverage: c.snapshot_ref(),
        written_at: 0,
        replayed: &[],
        seq: 1,
        source: None,
        sinks: &Default::default(),
    })?;
    let snapshot_time = t.elapsed();
    let n = users as f64;
    println!(
        "coverage state with {users} users ({observations} sign-ins folded in {:.2} s incl. making the keys, {:.0} sign-ins/s)",
        observe.as_secs_f64(),
        observations as f64 / observe.as_secs_f64()
    );
    println!(
        "  structures (entries, day buckets, index): {:>8.1} MB = {:>5.1} bytes/user",
        structures as f64 / 1e6,
        structures as f64 / n
    );
    println!(
        "  strings (UPN + display name arena):       {:>8.1} MB = {:>5.1} bytes/user ({:.1} bytes/user of input text)",
        strings as f64 / 1e6,
        strings as f64 / n,
        strings_input as f64 / n
    );
    println!(
        "  RSS growth while building:                {:>8.1} MB = {:>5.1} bytes/user",
        (rss_after.saturating_sub(rss_before)) as f64 / 1e6,
        rss_after.saturating_sub(rss_before) as f64 / n
    );
    println!("  RSS now:                                  {:>8.1} MB", rss_bytes() as f64 / 1e6);
    println!(
        "  summary over all users: {:.0} ms; snapshot: {:.1} MB written (fsync) in {:.0} ms",
        summary_time.as_secs_f64() * 1e3,
        size as f64 / 1e6,
        snapshot_time.as_secs_f64() * 1e3
    );
    println!(
        "  /api/v1/users?state=uncovered&limit=100 over all users: {:.0} ms ({uncovered} match, {} returned)",
        users_time.as_secs_f64() * 1e3,
        page.len()
    );
    black_box(summary);
    Ok(())
}

fn backlog(brokers: &str, records: u64, prefetch_kbytes: u32) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use std::sync::atomic::{AtomicBool, Ordering};

    let topic = format!("mfawatch-backlog-{}", std::process::id());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    for r in
        rt.block_on(admin.create_topics(&[NewTopic::new(&topic, 4, TopicReplication::Fixed(1))], &AdminOptions::new()))?
    {
        r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
    }
    eprintln!("producing a backlog of {records} records to {topic}...");
    let spec = TenantSpec { users: 20_000, records, format: Format::Envelope, ..TenantSpec::default() };
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("batch.num.messages", "1")
        .set("message.max.bytes", "10000000")
        .create()?;
    let mut generator = Generator::new(spec);
    let (mut message, mut count, mut bytes) = (Vec::new(), 0u64, 0u64);
    while generator.next_message(&mut message) {
        let mut record = BaseRecord::<(), [u8]>::to(&topic).payload(&message).partition((count % 4) as i32);
        while let Err((_, r)) = producer.send(record) {
            record = r;
            producer.poll(Duration::from_millis(10));
        }
        producer.poll(Duration::ZERO);
        count += 1;
        bytes += message.len() as u64;
    }
    producer.flush(Duration::from_secs(120))?;
    drop(producer);

    let dir = tempfile::tempdir()?;
    let mut config = crate::config::Config::default();
    config.kafka.brokers = Some(brokers.to_owned());
    config.kafka.topics = vec![topic.clone()];
    config.kafka.group_id = topic.clone();
    config.kafka.prefetch_kbytes = prefetch_kbytes;
    config.checkpoint.dir = dir.path().to_owned();
    let prepared = crate::daemon::prepare(&config, crate::daemon::Mode::Consume)?;
    let shared = prepared.shared.clone();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let rss_start = rss_bytes();
    let started = Instant::now();
    let consumer = {
        let (config, stop, progress, shared) =
            (config.clone(), stop.clone(), prepared.checkpointer.clone(), shared.clone());
        std::thread::spawn(move || crate::source::kafka::consume(&config, progress, shared, &stop))
    };
    let mut peak = rss_start;
    let messages_read = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("mfawatch_messages_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    while messages_read(&shared.metrics.render()) < count && started.elapsed() < Duration::from_secs(3600) {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(rss_bytes());
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    consumer.join().map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
    println!(
        "backlog of {count} messages ({records} records, {:.1} MB) on {brokers}, prefetch bound {} KiB",
        bytes as f64 / 1e6,
        prefetch_kbytes
    );
    println!(
        "  consumed in {:.1} s ({:.1} MB/s, broker-bound)",
        elapsed.as_secs_f64(),
        bytes as f64 / 1e6 / elapsed.as_secs_f64()
    );
    println!(
        "  RSS before consuming {:.1} MB, peak while consuming {:.1} MB",
        rss_start as f64 / 1e6,
        peak as f64 / 1e6
    );
    Ok(())
}
