//! `mfawatch demo`: the real pipeline against an in-process Kafka cluster
//! (librdkafka's mock cluster), fed by the synthetic tenant generator: seven
//! days of backfill, then live sign-ins, with metrics and the API on localhost.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::config::Config;
use crate::generate::{Format, Generator, Tenant, TenantSpec};

const TOPIC: &str = "insights-logs-signinlogs";

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where to serve /metrics and the API.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: String,
    /// Users in the synthetic tenant.
    #[arg(long, default_value_t = 2_000)]
    pub users: u32,
    /// Sign-ins of the last seven days to start with.
    #[arg(long, default_value_t = 40_000)]
    pub backfill: u64,
    /// Live sign-ins per second after the backfill.
    #[arg(long, default_value_t = 50)]
    pub rate: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<u64>,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mock = MockCluster::new(1)?;
    mock.create_topic(TOPIC, 4, 1)?;
    let state = tempfile::Builder::new().prefix("mfawatch-demo-").tempdir()?;

    let now = chrono::Utc::now();
    let backfill = TenantSpec {
        users: args.users,
        records: args.backfill,
        days: 7,
        seed: args.seed,
        end: now,
        format: Format::Envelope,
        records_per_message: 40,
        malformed_per_10k: 5,
        fatigue_per_10k: 0,
    };
    backfill.validate()?;
    let tenant = Tenant::new(&backfill);
    let mut config = Config::default();
    config.kafka.brokers = Some(mock.bootstrap_servers());
    config.kafka.topics = vec![TOPIC.to_string()];
    config.kafka.group_id = "mfawatch-demo".into();
    config.checkpoint.dir = state.path().join("state");
    config.dead_letter.file = Some(state.path().join("dead-letters.ndjson"));
    config.http.listen = args.listen.clone();
    config.coverage.privileged = tenant.users.iter().filter(|u| u.admin).map(|u| u.upn.clone()).collect();
    config.coverage.excluded = tenant.users.iter().filter(|u| u.break_glass).map(|u| u.upn.clone()).collect();
    config.log.level = "info,librdkafka=warn".into();
    config.validate(std::path::Path::new("<demo>"))?;
    crate::logging::init(&config);

    let prepared = crate::daemon::prepare(&config, crate::daemon::Mode::Consume)?;
    let bootstrap = mock.bootstrap_servers();
    let (rate, live_seed) = (args.rate.max(1), args.seed);
    let shared = prepared.shared.clone();
    let read = move || shared.metrics.messages_read();
    let feeder = std::thread::Builder::new().name("demo-feeder".into()).spawn(move || {
        if let Err(e) = feed(&bootstrap, backfill, rate, live_seed, read) {
            tracing::error!(error = %e, "demo feeder stopped");
        }
    })?;

    let result = crate::daemon::serve_and_consume(config, prepared, args.seconds.map(Duration::from_secs), |url| {
        println!(
            "mfawatch demo: a synthetic tenant of {} users through the real pipeline (Ctrl-C to stop)",
            args.users
        );
        println!("  {url}/metrics");
        println!("  {url}/api/v1/coverage");
        println!("  {url}/api/v1/users?state=uncovered&privileged=true");
        println!("  {url}/api/v1/users?state=never_mfa&limit=20");
        println!("  {url}/readyz");
    });
    drop(feeder); // detached: it ends with the process
    drop(mock);
    result
}

/// Messages the backfill may be ahead of the consumer. librdkafka's mock
/// cluster keeps only the newest few MB of a partition (its segments are not
/// a log you can fall behind on), so the backfill waits for the consumer.
const AHEAD: u64 = 24;

/// Produces the backfill, never more than [`AHEAD`] messages ahead of what the
/// pipeline has `read`, then live sign-ins at `rate` a second.
fn feed(bootstrap: &str, backfill: TenantSpec, rate: u32, seed: u64, read: impl Fn() -> u64) -> anyhow::Result<()> {
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("linger.ms", "20").create()?;
    let mut message = Vec::new();
    let send = |message: &[u8], key: u64| -> anyhow::Result<()> {
        let key = key.to_string();
        loop {
            match producer.send(BaseRecord::to(TOPIC).key(&key).payload(message)) {
                Ok(()) => return Ok(()),
                Err((e, _)) if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) => {
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    };
    let records = backfill.records;
    let mut generator = Generator::new(backfill);
    let mut n = 0u64;
    while generator.next_message(&mut message) {
        while n >= read() + AHEAD {
            producer.poll(Duration::from_millis(10));
        }
        send(&message, n)?;
        n += 1;
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10))?;
    // Nothing else is produced until the backfill has been read, so that the
    // demo says truthfully whether it all got through.
    let started = Instant::now();
    while read() < n && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if read() >= n {
        println!("  backfill: {records} sign-ins in {n} messages, all read; now live at {rate} sign-ins/s");
    } else {
        tracing::warn!(read = read(), produced = n, "the demo backfill was not all read within a minute");
    }

    let per_message = (rate / 5).max(1);
    let live = TenantSpec {
        records: u64::from(rate) * 86_400 * 365,
        days: 365,
        end: chrono::Utc::now() + chrono::Duration::days(365),
        records_per_message: per_message,
        seed,
        malformed_per_10k: 5,
        ..TenantSpec::default()
    };
    let live = TenantSpec { users: generator.tenant().users.len() as u32, ..live };
    let mut generator = Generator::new(live);
    let started = Instant::now();
    let mut sent = 0u64;
    while generator.next_message(&mut message) {
        send(&message, n + sent)?;
        sent += 1;
        producer.poll(Duration::ZERO);
        let due = Duration::from_secs_f64((sent * per_message as u64) as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    Ok(())
}
