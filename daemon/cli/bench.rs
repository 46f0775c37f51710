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
    /// Coverage state memory with many users: bytes per user and RSS; then
    /// a password spray through the pipeline into that state: its cost.
    Coverage {
        #[arg(long, default_value_t = 1_000_000)]
        users: u32,
        /// Failed sign-ins of made-up accounts (50034) mixed in afterwards.
        #[arg(long, default_value_t = 10_000_000)]
        spray: u64,
    },
    /// The weekly report over a generated history of `rows` sign-ins a
    /// week: wall time and peak memory of `mfawatch report`, bytes per row.
    /// With `--weeks` above 1, the report over the newest week with the
    /// older weeks there (the rollup cold, then warm, then not used) beside
    /// the same week alone, and the ratio.
    Report {
        #[arg(long, default_value_t = 10_000_000)]
        rows: u64,
        #[arg(long, default_value_t = 150_000)]
        users: u32,
        /// Weeks of history, the newest being the one reported on.
        #[arg(long, default_value_t = 1)]
        weeks: u32,
        /// Use (and keep) the history here instead of a temporary folder;
        /// an existing one is reported on, not generated again.
        #[arg(long)]
        history: Option<std::path::PathBuf>,
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
    /// The legacy password-spray rule (legacy_auth_attempt) under a spray from
    /// ever new source addresses with 1 KB user agents: its memory stays
    /// bounded (`max_sources`), and its snapshot with it.
    Spray {
        /// Failed legacy sign-ins, each from a source of its own.
        #[arg(long, default_value_t = 1_000_000)]
        sources: u64,
        /// IPv6 sources (rotating through /64s) instead of IPv4.
        #[arg(long)]
        ipv6: bool,
    },
    /// Directory records (AuditLogs role changes and security-info events in
    /// Event Hubs envelopes) decoded and applied to the directory state, beside
    /// serde_json's parse-only over the same bytes; then the state's bytes per
    /// user after a registration seed of every user.
    Directory {
        #[arg(long, default_value_t = 100_000)]
        users: u32,
        #[arg(long, default_value_t = 200_000)]
        records: u64,
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
    /// Alert latency: from a planted sign-in's Kafka timestamp to the alert at
    /// a webhook (and an Alertmanager), beside a bare consumer of the same
    /// topic, under a steady background of ordinary sign-ins.
    Latency(crate::cli::latency::LatencyArgs),
    /// Restart to ready: a daemon with a state of `--users` users is killed
    /// (SIGKILL) and started again; seconds until /readyz is 200 and until
    /// the first alert after the restart is delivered.
    Restart(crate::cli::restart::RestartArgs),
    /// What a tenant costs: the daemon's CPU seconds per hour and peak RSS
    /// for `--users` users' sign-ins (by default Microsoft's estimate of
    /// their volume, at the generator's mix), beside the Parquet history it
    /// writes a day and parse-only / decode + classify over the same bytes.
    Cost(crate::cli::cost::CostArgs),
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
        Bench::Directory { users, records, rounds } => directory(users, records, rounds),
        Bench::Decode { records, users, rounds } => decode(records, users, rounds),
        Bench::Pipeline { records, users, rounds } => pipeline(records, users, rounds),
        Bench::Coverage { users, spray } => coverage(users, spray),
        Bench::Report { rows, users, weeks, history } => report(rows, users, weeks, history),
        Bench::Backlog { brokers, records, prefetch_kbytes } => backlog(&brokers, records, prefetch_kbytes),
        Bench::Spray { sources, ipv6 } => spray(sources, ipv6),
        Bench::Latency(args) => crate::cli::latency::run(args),
        Bench::Restart(args) => crate::cli::restart::run(args),
        Bench::Cost(args) => crate::cli::cost::run(args),
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

    // The same messages as one Event Hubs Capture file (Avro, no compression, as Capture writes).
    println!();
    let avro = capture_file(&messages)?;
    let classify_all = |bytes: &[u8]| -> u64 {
        let mut n = 0u64;
        for item in decode_message(bytes) {
            if let Item::SignIn(record) = item {
                black_box(classify(&record, &rules));
            }
            n += 1;
        }
        n
    };
    let passes: Vec<Pass> = vec![
        ("NDJSON messages: decode + classify", Box::new(|| messages.iter().map(|m| classify_all(m)).sum())),
        (
            "Capture Avro: read + decode + classify",
            Box::new(|| {
                let mut n = 0;
                crate::source::capture::read_messages("bench.avro", &avro, |body, _, _| {
                    n += classify_all(body);
                    Ok(())
                })
                .expect("the file just written reads");
                n
            }),
        ),
    ];
    println!("Capture file: {:.1} MB for {:.1} MB of JSON bodies", avro.len() as f64 / 1e6, bytes as f64 / 1e6);
    let counts =
        measure("MB/s of JSON bodies (goal for Capture: at least 80 % of NDJSON)", rounds, records, bytes, passes);
    anyhow::ensure!(counts[1] == records, "read {} of {records} records from the Capture file", counts[1]);
    Ok(())
}

/// Audit records of a tenant: role changes (Core Directory and PIM) and
/// security-info registrations, 40 to an Event Hubs message, as Entra writes them.
fn directory_messages(users: u32, records: u64) -> Vec<Vec<u8>> {
    use serde_json::json;
    let roles = crate::directory::roles::DEFAULT_PRIVILEGED;
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").expect("valid").timestamp();
    let mut out = Vec::new();
    let mut batch = Vec::new();
    for i in 0..records {
        let u = (i.wrapping_mul(2_654_435_761) % users as u64) as u32;
        let id = format!("7c5b3a5e-0000-4000-8000-{u:012x}");
        let upn = format!("user{u}@contoso.example");
        let time = chrono::DateTime::from_timestamp(start + i as i64 * 3, 0).expect("in range").to_rfc3339();
        let target = |mods: serde_json::Value| json!({"id": id, "displayName": format!("User {u}"), "type": "User", "userPrincipalName": upn, "modifiedProperties": mods});
        let (op, service, category, targets, reason) = match i % 4 {
            0 | 1 => {
                let (role_id, role_name) = roles[(i as usize / 4) % roles.len()];
                let op = if i % 4 == 0 { "Add member to role" } else { "Remove member from role" };
                let mods = json!([
                    {"displayName": "Role.DisplayName", "oldValue": null, "newValue": format!("\"{role_name}\"")},
                    {"displayName": "Role.TemplateId", "oldValue": null, "newValue": format!("\"{role_id}\"")},
                ]);
                (op, "Core Directory", "RoleManagement", json!([target(mods)]), "")
            }
            2 => (
                "User registered security info",
                "Authentication Methods",
                "UserManagement",
                json!([target(json!([]))]),
                "User registered Authenticator App with Notification and Code",
            ),
            _ => (
                "User deleted security info",
                "Authentication Methods",
                "UserManagement",
                json!([target(json!([]))]),
                "User deleted Mobile Phone Call and SMS",
            ),
        };
        batch.push(json!({
            "time": time, "category": "AuditLogs", "operationName": op, "tenantId": "11111111-2222-4333-8444-555555555555",
            "resultSignature": "None", "durationMs": 0, "callerIpAddress": "198.51.100.7", "Level": 4,
            "properties": {
                "id": format!("Directory_{i:016x}"), "category": category, "result": "success", "resultReason": reason,
                "activityDisplayName": op, "activityDateTime": time, "loggedByService": service, "operationType": "Assign",
                "initiatedBy": {"user": {"id": "7c5b3a5e-ffff-4000-8000-000000000000", "userPrincipalName": "admin@contoso.example", "ipAddress": "198.51.100.7"}},
                "targetResources": targets, "additionalDetails": [],
            }
        }));
        if batch.len() == 40 {
            out.push(serde_json::to_vec(&json!({ "records": std::mem::take(&mut batch) })).expect("serialises"));
        }
    }
    if !batch.is_empty() {
        out.push(serde_json::to_vec(&json!({ "records": batch })).expect("serialises"));
    }
    out
}

fn directory(users: u32, records: u64, rounds: u32) -> anyhow::Result<()> {
    use crate::decode::decode_message_received;
    use crate::directory::{Directory, PrivilegedRoles};
    eprintln!("generating {records} audit records for {users} users...");
    let messages = directory_messages(users, records);
    let bytes: u64 = messages.iter().map(|m| m.len() as u64).sum();
    println!(
        "input: {} messages, {records} audit records, {:.1} MB, {:.0} bytes/record",
        messages.len(),
        bytes as f64 / 1e6,
        bytes as f64 / records as f64
    );
    let received = Some(chrono::Utc::now());
    // Decodes one message and applies its directory records: how many there were.
    let apply = |state: &mut Directory, message: &[u8]| -> u64 {
        let mut n = 0;
        for item in decode_message_received(message, received) {
            if let Item::Directory(record) = item {
                black_box(state.apply(&record));
                n += 1;
            }
        }
        n
    };
    let passes: Vec<Pass> = vec![
        (
            "serde_json::from_slice::<IgnoredAny> (baseline)",
            Box::new(|| messages.iter().map(|m| serde_json::from_slice::<IgnoredAny>(m).map_or(0, |_| 1u64)).sum()),
        ),
        (
            "decode + apply to the directory state",
            Box::new(|| {
                let mut state = Directory::new(PrivilegedRoles::default());
                messages.iter().map(|m| apply(&mut state, m)).sum()
            }),
        ),
    ];
    let counts = measure("directory records, one thread", rounds, records, bytes, passes);
    anyhow::ensure!(counts[1] == records, "applied {} of {records} directory records", counts[1]);

    // A registration seed of every user, then the audit records: bytes per user.
    let mut state = Directory::new(PrivilegedRoles::default());
    let seed_at = chrono::Utc::now() - chrono::TimeDelta::days(30);
    for u in 0..users {
        let seed = serde_json::json!({
            "@odata.context": "bench#reports/authenticationMethods/userRegistrationDetails",
            "id": format!("7c5b3a5e-0000-4000-8000-{u:012x}"), "userPrincipalName": format!("user{u}@contoso.example"),
            "userDisplayName": format!("User {u}"), "isMfaRegistered": u % 3 != 0, "isMfaCapable": u % 3 != 0,
            "methodsRegistered": if u % 3 == 0 { serde_json::json!([]) } else { serde_json::json!(["microsoftAuthenticatorPush", "mobilePhone"]) },
            "lastUpdatedDateTime": seed_at.to_rfc3339(),
        });
        apply(&mut state, &serde_json::to_vec(&seed)?);
    }
    for m in &messages {
        apply(&mut state, m);
    }
    let summary = state.summary(chrono::Utc::now());
    let snapshot = postcard::to_allocvec(&state.snapshot_ref())?;
    println!(
        "directory state: {} users ({} privileged now, {} registered, {} not registered), {:.0} bytes/user in memory (estimate), {:.0} bytes/user in the snapshot",
        state.len(),
        summary.privileged,
        summary.registered,
        summary.not_registered,
        state.heap_bytes() as f64 / state.len().max(1) as f64,
        snapshot.len() as f64 / state.len().max(1) as f64
    );
    Ok(())
}

/// `messages` as the bodies of one Event Hubs Capture file (Capture's schema,
/// no compression).
pub fn capture_file(messages: &[Vec<u8>]) -> anyhow::Result<Vec<u8>> {
    use apache_avro::types::{Record, Value};
    const SCHEMA: &str = r#"{"type":"record","name":"EventData","namespace":"Microsoft.ServiceBus.Messaging","fields":[{"name":"SequenceNumber","type":"long"},{"name":"Offset","type":"string"},{"name":"EnqueuedTimeUtc","type":"string"},{"name":"SystemProperties","type":{"type":"map","values":["long","double","string","bytes"]}},{"name":"Properties","type":{"type":"map","values":["long","double","string","bytes","null"]}},{"name":"Body","type":["null","bytes"]}]}"#;
    let schema = apache_avro::Schema::parse_str(SCHEMA)?;
    let mut w = apache_avro::Writer::with_codec(&schema, Vec::new(), apache_avro::Codec::Null)?;
    for (i, m) in messages.iter().enumerate() {
        let mut r = Record::new(w.schema()).expect("a record schema");
        r.put("SequenceNumber", i as i64);
        r.put("Offset", (i * 4096).to_string());
        r.put("EnqueuedTimeUtc", "6/30/2025 12:00:00 AM");
        r.put("SystemProperties", Value::Map(Default::default()));
        r.put("Properties", Value::Map(Default::default()));
        r.put("Body", Value::Union(1, Box::new(Value::Bytes(m.clone()))));
        w.append_value(r)?;
    }
    Ok(w.into_inner()?)
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

/// Bytes of every file under `dir`.
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => dir_bytes(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
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
    pipeline_over(crate::coverage::Coverage::new(crate::coverage::Policy::default()))
}

/// A pipeline with no sink over `coverage`.
fn pipeline_over(coverage: crate::coverage::Coverage) -> crate::pipeline::Pipeline {
    use crate::coverage::{Accounts, Policy};
    let rules = Rules::default();
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new(&rules));
    let coverage = crate::coverage::Handle::new(coverage, Accounts::default());
    crate::pipeline::Pipeline::new(
        rules,
        Policy::default(),
        coverage,
        metrics,
        crate::deadletter::DeadLetters::default(),
    )
}

/// What a sink of `pipe` is handed (nothing assigned: no source holds partitions here).
fn sink_context(pipe: &crate::pipeline::Pipeline) -> crate::sinks::SinkContext {
    crate::sinks::SinkContext {
        metrics: pipe.metrics().clone(),
        assignment: Default::default(),
        clock: Default::default(),
    }
}

/// A pipeline with the sinks a daemon has: alerts (default rules, no
/// receiver: made and listed) and/or history (Parquet parts in `dir`).
fn pipeline_with(alerts: bool, history: Option<&std::path::Path>) -> anyhow::Result<crate::pipeline::Pipeline> {
    let mut config = crate::config::Config::default();
    config.alerts.max_age = Duration::from_secs(3650 * 86_400);
    config.alerts.rate_limit_per_minute = u32::MAX;
    if let Some(dir) = history {
        config.checkpoint.dir = dir.to_owned();
    }
    let mut pipe = new_pipeline();
    let ctx = sink_context(&pipe);
    if alerts {
        pipe.add_sink(Box::new(crate::alerts::Alerts::start(
            &config,
            ctx.clone(),
            Default::default(),
            &Default::default(),
        )?));
    }
    if history.is_some() {
        config.history.retention_days = 3650;
        pipe.add_sink(Box::new(crate::history::History::start(&config, ctx, None, 0)?));
    }
    Ok(pipe)
}

/// Records between two checkpoints in the benchmarks with sinks: a 10 s
/// checkpoint at about this rate.
const CHECKPOINT_EVERY: u64 = 100_000;

/// Runs `messages` through `pipe`, checkpointing its sinks every
/// [`CHECKPOINT_EVERY`] records (history writes its parts then), and at the end.
fn run_with_checkpoints(pipe: &mut crate::pipeline::Pipeline, messages: &[Vec<u8>], per_message: u64, seq: &mut u64) {
    let position = crate::source::Position::Kafka { topic: "bench".into(), partition: 0, offset: 0 };
    let mut since = 0;
    for m in messages {
        pipe.process(m, &position, None).expect("no dead-letter sink to fail");
        since += per_message;
        if since >= CHECKPOINT_EVERY {
            since = 0;
            *seq += 1;
            checkpoint_sinks(pipe, *seq);
        }
    }
    *seq += 1;
    checkpoint_sinks(pipe, *seq);
}

/// Checkpoint `seq` of `pipe`'s sinks, as the checkpointer does it (no snapshot).
fn checkpoint_sinks(pipe: &mut crate::pipeline::Pipeline, seq: u64) {
    let prepared = pipe.prepare_sinks(seq).expect("sinks prepared");
    crate::sinks::make_durable(prepared.durable).expect("sinks durable");
    pipe.sinks_committed(seq);
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

    // The same with the sinks a daemon runs: alerts, history, both.
    println!();
    let per_message = records / messages.len().max(1) as u64;
    let history_dir = tempfile::tempdir()?;
    let both_dir = tempfile::tempdir()?;
    let mut bare = new_pipeline();
    let mut with_alerts = pipeline_with(true, None)?;
    let mut with_history = pipeline_with(false, Some(history_dir.path()))?;
    let mut with_both = pipeline_with(true, Some(both_dir.path()))?;
    let (mut s1, mut s2, mut s3, mut s4) = (0, 0, 0, 0);
    let passes: Vec<Pass> = vec![
        (
            "pipeline, no sinks (checkpoints too)",
            Box::new(|| {
                run_with_checkpoints(&mut bare, &messages, per_message, &mut s1);
                records
            }),
        ),
        (
            "pipeline + alerts (default rules)",
            Box::new(|| {
                run_with_checkpoints(&mut with_alerts, &messages, per_message, &mut s2);
                records
            }),
        ),
        (
            "pipeline + history (Parquet, zstd)",
            Box::new(|| {
                run_with_checkpoints(&mut with_history, &messages, per_message, &mut s3);
                records
            }),
        ),
        (
            "pipeline + alerts + history",
            Box::new(|| {
                run_with_checkpoints(&mut with_both, &messages, per_message, &mut s4);
                records
            }),
        ),
    ];
    measure("the daemon's sinks, in memory (ratio: against no sinks)", rounds, records, bytes, passes);
    let text = with_alerts.metrics().render();
    let made = crate::metrics::sum(&text, "mfawatch_alerts_total");
    let repeats = crate::metrics::sum(&text, "mfawatch_alerts_suppressed_total");
    println!(
        "  alerts: {:.2} % of sign-ins alerted ({made} alerts made, {repeats} more counted on them), over {} rounds",
        100.0 * (made + repeats) / (records as f64 * rounds.max(1) as f64),
        rounds.max(1)
    );
    let history_bytes = dir_bytes(history_dir.path());
    println!(
        "  history: {:.0} bytes per sign-in on disk ({:.1} MB for {} rows), against {:.0} bytes of JSON",
        history_bytes as f64 / (records as f64 * rounds.max(1) as f64),
        history_bytes as f64 / 1e6,
        records * rounds.max(1) as u64,
        bytes as f64 / records as f64
    );

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

fn coverage(users: u32, spray: u64) -> anyhow::Result<()> {
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
                risky: false,
                identity: (day as u64) << 32 | i as u64 | 1,
                carried: crate::classify::Carried { mfa: !single_factor, ..Default::default() },
                strength: (!single_factor).then_some(if i.is_multiple_of(5) {
                    crate::classify::Strength::PhishingResistant
                } else {
                    crate::classify::Strength::Push
                }),
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
        directory: crate::directory::Directory::default().snapshot_ref(),
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
    println!(
        "  of the structures, the identities of {observations} counted sign-ins (de-duplication): {:.1} MB = {:.1} bytes/sign-in",
        c.identity_bytes() as f64 / 1e6,
        c.identity_bytes() as f64 / observations as f64
    );
    black_box(summary);
    if spray > 0 {
        spray_into(c, spray)?;
    }
    Ok(())
}

/// A password spray of `count` failed sign-ins of made-up accounts through
/// the pipeline, into a state of real users: it must cost the state nothing.
fn spray_into(coverage: crate::coverage::Coverage, count: u64) -> anyhow::Result<()> {
    let (users, (before, _)) = (coverage.len(), coverage.heap_bytes());
    let mut pipe = pipeline_over(coverage);
    let end = chrono::Utc::now();
    let mut spray = crate::generate::Spray::new(count, end, 7, 100);
    let position = crate::source::Position::Kafka { topic: "bench".into(), partition: 0, offset: 0 };
    let (mut message, mut bytes) = (Vec::new(), 0u64);
    let started = Instant::now();
    while spray.next_message(&mut message) {
        bytes += message.len() as u64;
        pipe.process(&message, &position, None).expect("no dead-letter sink to fail");
    }
    let elapsed = started.elapsed();
    let coverage = pipe.coverage().read();
    let after = coverage.heap_bytes().0;
    let unknown = crate::metrics::sum(&pipe.metrics().render(), "mfawatch_unknown_account_signins_total");
    println!(
        "password spray: {count} failed sign-ins of made-up accounts ({:.1} MB) in {:.1} s = {:.0} sign-ins/s through decode, classify, coverage, metrics",
        bytes as f64 / 1e6,
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  users {} → {} ; structures {:.1} MB → {:.1} MB ({:.1} → {:.1} bytes/user); counted as unknown accounts: {unknown}",
        users,
        coverage.len(),
        before as f64 / 1e6,
        after as f64 / 1e6,
        before as f64 / users.max(1) as f64,
        after as f64 / coverage.len().max(1) as f64
    );
    Ok(())
}

/// `sources` failed legacy sign-ins (IMAP4, 1 KB user agent), each from an
/// address of its own, through the pipeline with the spray rule on.
fn spray(sources: u64, ipv6: bool) -> anyhow::Result<()> {
    use crate::sinks::Sink as _;
    let mut config = crate::config::Config::default();
    config.alerts.max_age = Duration::from_secs(3650 * 86_400);
    config.alerts.rate_limit_per_minute = u32::MAX;
    config.alerts.rules.legacy_auth_attempt.enabled = true;
    let max_sources = config.alerts.rules.legacy_auth_attempt.max_sources;
    let pipe = new_pipeline();
    let mut alerts =
        crate::alerts::Alerts::start(&config, sink_context(&pipe), Default::default(), &Default::default())?;
    let (empty, rss_before) = (alerts.prepare(1)?.state.map_or(0, |s| s.len()), rss_bytes());
    let agent = "Mozilla/5.0 ".repeat(86);
    let time = chrono::Utc::now() - chrono::Duration::minutes(30);
    let (mut peak, mut bytes) = (rss_before, 0u64);
    let position = crate::source::Position::Kafka { topic: "bench".into(), partition: 0, offset: 0 };
    let started = Instant::now();
    for batch in 0..sources.div_ceil(20) {
        let records: Vec<serde_json::Value> = (batch * 20..((batch + 1) * 20).min(sources))
            .map(|i| {
                let ip = if ipv6 {
                    format!("2001:db8:{:x}:{:x}::1", i >> 16, i & 0xffff)
                } else {
                    std::net::Ipv4Addr::from(0x0a00_0000u32 + i as u32).to_string()
                };
                serde_json::json!({"time": time.to_rfc3339(), "category": "SignInLogs", "properties": {
                    "id": format!("spray-{i}"), "createdDateTime": time.to_rfc3339(),
                    "userPrincipalName": format!("guess{}@contoso.example", i % 5_000), "userId": format!("{:08x}-0000-4000-8000-000000000000", i % 5_000),
                    "status": {"errorCode": 50126}, "clientAppUsed": "IMAP4", "ipAddress": ip, "userAgent": agent,
                    "appDisplayName": "Office 365 Exchange Online"}})
            })
            .collect();
        let message = serde_json::to_vec(&serde_json::json!({ "records": records }))?;
        bytes += message.len() as u64;
        for (index, item) in crate::decode::decode_message(&message).into_iter().enumerate() {
            if let crate::decode::Item::SignIn(record) = item {
                let verdict = crate::classify::classify(&record, &Rules::default());
                let event = crate::sinks::SignInEvent {
                    record: &record,
                    verdict: &verdict,
                    position: &position,
                    index,
                    privileged: false,
                    excluded: false,
                    risk: None,
                    earlier: None,
                };
                alerts.sign_in(&event);
            }
        }
        if batch % 5_000 == 0 {
            peak = peak.max(rss_bytes());
        }
    }
    let elapsed = started.elapsed();
    peak = peak.max(rss_bytes());
    let snapshot = alerts.prepare(2)?.state.map_or(0, |s| s.len());
    let evicted = crate::metrics::sum(&pipe.metrics().render(), "mfawatch_spray_sources_evicted_total");
    drop(pipe);
    println!(
        "spray: {sources} failed legacy sign-ins from as many {} sources ({:.0} MB of JSON) in {:.1} s = {:.0} sign-ins/s through decode, classify and the alert rules",
        if ipv6 { "IPv6 (a /64 each)" } else { "IPv4" },
        bytes as f64 / 1e6,
        elapsed.as_secs_f64(),
        sources as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  legacy_auth_attempt.max_sources {max_sources}: sources forgotten {evicted}; RSS growth, peak {:.1} MB; alerts' snapshot state {:.1} MB (empty: {empty} bytes) = {:.0} bytes a source kept",
        peak.saturating_sub(rss_before) as f64 / 1e6,
        snapshot as f64 / 1e6,
        snapshot as f64 / f64::from(max_sources)
    );
    Ok(())
}

/// Generates a week of history (`rows` sign-ins, Parquet) unless `history`
/// holds one, then times `mfawatch report` on it in a child process, watching
/// its peak memory.
fn report(rows: u64, users: u32, weeks: u32, history: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    anyhow::ensure!(weeks >= 1, "--weeks: at least 1");
    let temporary = tempfile::tempdir()?;
    let state = history.clone().unwrap_or_else(|| temporary.path().to_owned());
    let dir = state.join("history");
    // The newest week is 2025-W26: Monday 23 to Sunday 29 June 2025.
    let end = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2025, 6, 30, 0, 0, 0).unwrap();
    if !dir.is_dir() {
        eprintln!("generating {weeks} week(s) of {rows} sign-ins for {users} users into {}...", dir.display());
        let mut pipe = pipeline_with(false, Some(&state))?;
        let spec = TenantSpec {
            users,
            records: rows * u64::from(weeks),
            days: 7 * weeks,
            end,
            format: Format::Envelope,
            records_per_message: 100,
            ..TenantSpec::default()
        };
        let mut generator = Generator::new(spec);
        let (mut message, mut batch, mut seq) = (Vec::new(), Vec::new(), 0);
        let started = Instant::now();
        while generator.next_message(&mut message) {
            batch.push(std::mem::take(&mut message));
            if batch.len() * 100 >= CHECKPOINT_EVERY as usize * 10 {
                run_with_checkpoints(&mut pipe, &batch, 100, &mut seq);
                batch.clear();
            }
        }
        run_with_checkpoints(&mut pipe, &batch, 100, &mut seq);
        drop(pipe);
        eprintln!("  generated in {:.0} s", started.elapsed().as_secs_f64());
    }
    // The daemon merges a day's parts once the day is `history.compact_after`
    // (6 h) behind everything it reads, in both tables (the sign-ins' and
    // the directory's): by the Monday morning the report runs, the week's
    // days are one file each.
    // One pass: `compact` takes every other state's committed files along.
    let started = Instant::now();
    let mut merged = 0;
    for table in [dir.clone(), crate::history::directory::root(&dir)] {
        if let Some((epoch, seq)) = crate::history::files::read_committed(&table)?.pop_last() {
            for (_, folder) in crate::history::files::dates(&table)? {
                merged += crate::history::files::compact(&folder, epoch, seq, crate::history::files::READERS_WAIT)?;
            }
        }
    }
    if merged > 0 {
        eprintln!("  {merged} parts merged into day files in {:.0} s", started.elapsed().as_secs_f64());
    }
    let bytes = dir_bytes(&dir) - dir_bytes(&dir.join(crate::report::rollup::FOLDER));
    if weeks == 1 {
        let run = timed_report(&dir, &[])?;
        println!(
            "report over {} sign-ins of one week ({} users, {:.0} MB of Parquet = {:.0} bytes/row):",
            run.summary["sign_ins"],
            run.summary["users"],
            bytes as f64 / 1e6,
            bytes as f64 / rows as f64
        );
        println!(
            "  wall time {:.1} s, peak RSS {:.0} MB (goal: ≤ 60 s, ≤ 4 GiB)",
            run.elapsed.as_secs_f64(),
            run.peak as f64 / 1e6
        );
        return Ok(());
    }
    // The newest week alone: its date folders (sign-ins and directory
    // records), linked into a history of their own.
    let alone = temporary.path().join("alone");
    let newest_monday = chrono::NaiveDate::from_ymd_opt(2025, 6, 23).expect("a date");
    for sub in ["", "directory"] {
        for (date, folder) in crate::history::files::dates(&dir.join(sub))? {
            if date < newest_monday {
                continue;
            }
            let target = alone.join(sub).join(folder.file_name().unwrap_or_default());
            std::fs::create_dir_all(&target)?;
            for entry in std::fs::read_dir(&folder)? {
                let entry = entry?;
                std::fs::hard_link(entry.path(), target.join(entry.file_name()))?;
            }
        }
    }
    let rollup = dir.join(crate::report::rollup::FOLDER);
    if rollup.exists() {
        std::fs::remove_dir_all(&rollup)?;
    }
    let alone_run = timed_report(&alone, &[])?;
    let cold = timed_report(&dir, &[])?;
    let warm = timed_report(&dir, &[])?;
    let whole = timed_report(&dir, &["--no-rollup"])?;
    let same = |a: &serde_json::Value, b: &serde_json::Value| {
        let strip = |v: &serde_json::Value| {
            let mut v = v.clone();
            if let Some(fields) = v.as_object_mut() {
                fields.remove("generated_at");
            }
            v
        };
        strip(a) == strip(b)
    };
    anyhow::ensure!(
        same(&cold.summary, &whole.summary) && same(&warm.summary, &whole.summary),
        "the report with the rollup differs from the report without it"
    );
    println!(
        "report over the newest of {weeks} weeks ({} sign-ins of {}, {} users; {:.0} MB of Parquet in all):",
        warm.summary["sign_ins"],
        rows,
        warm.summary["users"],
        bytes as f64 / 1e6
    );
    let line = |what: &str, run: &Timed| {
        println!(
            "  {what:<44} {:>6.1} s  {:>6.0} MB peak RSS  {:>4.2} × alone",
            run.elapsed.as_secs_f64(),
            run.peak as f64 / 1e6,
            run.elapsed.as_secs_f64() / alone_run.elapsed.as_secs_f64()
        );
    };
    line("the week alone", &alone_run);
    line(&format!("with {} older weeks, rollup cold (made)", weeks - 1), &cold);
    line(&format!("with {} older weeks, rollup warm", weeks - 1), &warm);
    line(&format!("with {} older weeks, --no-rollup", weeks - 1), &whole);
    println!(
        "  same figures with and without the rollup; rollup {:.1} MB (goal: warm ≤ 1.3 × alone, ≤ 60 s, ≤ 4 GiB)",
        dir_bytes(&rollup) as f64 / 1e6
    );
    Ok(())
}

/// One `mfawatch report` run: its wall time, peak RSS and summary.
struct Timed {
    elapsed: Duration,
    peak: u64,
    summary: serde_json::Value,
}

/// Runs `mfawatch report --week 2025-W26` over `history` as a child
/// process, watching its peak RSS (`VmHWM`).
fn timed_report(history: &std::path::Path, extra: &[&str]) -> anyhow::Result<Timed> {
    let out = tempfile::tempdir()?;
    let started = Instant::now();
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["report", "--week", "2025-W26", "--history"])
        .arg(history)
        .arg("--out")
        .arg(out.path())
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kb * 1024);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    anyhow::ensure!(status.success(), "mfawatch report over {} failed: {status}", history.display());
    let summary = serde_json::from_slice(&std::fs::read(out.path().join("summary.json"))?)?;
    Ok(Timed { elapsed, peak, summary })
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
    let handles = prepared.handles.clone();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let rss_start = rss_bytes();
    let started = Instant::now();
    let consumer = {
        let (config, stop, progress, source) =
            (config.clone(), stop.clone(), prepared.checkpointer.clone(), handles.source());
        std::thread::spawn(move || crate::source::kafka::consume(&config, progress, source, None, &stop))
    };
    let mut peak = rss_start;
    let messages_read = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("mfawatch_messages_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    while messages_read(&handles.metrics.render()) < count && started.elapsed() < Duration::from_secs(3600) {
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
