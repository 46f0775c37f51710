//! The delivery guarantee against a real broker (tansu): kill -9 at random
//! points while consuming, restart, and end with exactly the coverage of one
//! uninterrupted run over the same data.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::TimeZone;
use common::{Daemon, Tansu, free_port, wait_for, write_config};
use mfawatch::checkpoint::SnapshotFile;
use mfawatch::coverage::{Accounts, Coverage, Policy, UserQuery};
use mfawatch::generate::{Format, Generator, TenantSpec};
use rand::{Rng, SeedableRng};

const TOPIC: &str = "insights-logs-signinlogs";
const PARTITIONS: i32 = 4;
const GROUP: &str = "mfawatch-kill-test";

const RECORDS: u64 = 16_000;

fn tenant() -> Vec<Vec<u8>> {
    let spec = TenantSpec {
        users: 400,
        records: RECORDS,
        days: 7,
        seed: 11,
        end: chrono::Utc.with_ymd_and_hms(2025, 6, 30, 0, 0, 0).unwrap(),
        format: Format::Envelope,
        records_per_message: 20,
        malformed_per_10k: 10,
        fatigue_per_10k: 0,
        redeliveries_per_10k: 0,
    };
    Generator::new(spec).collect()
}

/// Every user's state, counts, registration and last sign-ins, in a
/// comparable form (all of it: none depends on arrival order).
fn users_of(dir: &Path) -> BTreeMap<String, serde_json::Value> {
    let snapshot = SnapshotFile::new(&dir.join("state")).read().unwrap().expect("a snapshot was written");
    let coverage = Coverage::from_snapshot(Policy::default(), snapshot.coverage).unwrap();
    let (_, users) = coverage.users(&Accounts::default(), &UserQuery { limit: usize::MAX, ..UserQuery::default() });
    users.into_iter().map(|u| (u.key.clone(), serde_json::to_value(&u).unwrap())).collect()
}

/// Messages the daemon read since it started (from its own metrics).
fn messages_read(daemon: &Daemon) -> u64 {
    let Some((_, metrics)) = daemon.get("/metrics") else { return 0 };
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("mfawatch_messages_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn dead_letter_keys(dir: &Path) -> (usize, BTreeSet<(String, Option<u64>)>) {
    let text = std::fs::read_to_string(dir.join("dead-letters.ndjson")).unwrap_or_default();
    let letters: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let raw_keys = letters.iter().map(|l| (l["raw"].to_string(), l["index"].as_u64())).collect();
    (letters.len(), raw_keys)
}

/// Every (category, record id, source position) row of a state's history,
/// and how many rows there are (a row twice would make them differ).
fn history_rows(dir: &Path) -> (usize, BTreeSet<(String, String, String)>) {
    use polars::prelude::*;
    let mut rows = 0;
    let mut set = BTreeSet::new();
    for (_, folder) in mfawatch::history::files::dates(&dir.join("state/history")).unwrap() {
        for (_, path) in mfawatch::history::files::files(&folder).unwrap() {
            let df = mfawatch::history::files::read_parquet(&path).unwrap();
            rows += df.height();
            let column = |name: &str| df.column(name).unwrap().str().unwrap().clone();
            let (category, id, source) = (column("category"), column("record_id"), column("source"));
            for i in 0..df.height() {
                let get = |c: &StringChunked| c.get(i).unwrap_or("").to_string();
                set.insert((get(&category), get(&id), get(&source)));
            }
        }
    }
    (rows, set)
}

/// Every alert a file receiver got: (id, rule, user), repeats included.
fn alerts_of(dir: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(dir.join("alerts.ndjson")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let a: serde_json::Value = serde_json::from_str(l).unwrap();
            let field = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
            (field(&a["id"]), field(&a["rule"]), field(&a["sign_in"]["user_key"]))
        })
        .collect()
}

/// The alerts and history settings of every run here: the tenant is dated
/// 2025 (no alert too old), days merge as soon as they are over.
fn extra(dir: &Path) -> String {
    format!(
        "[history]\ncompact_after = \"0s\"\n[alerts]\nmax_age = \"100000d\"\nrate_limit_per_minute = 1000000\nlog_file = {:?}\n",
        dir.join("alerts.ndjson").display().to_string()
    )
}

/// How many kills, and how each lands.
const KILLS: usize = 21;

#[test]
fn kill_9_at_random_points_and_inside_checkpoints_loses_nothing_and_counts_nothing_twice() {
    let messages = tenant();
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, PARTITIONS);
    tansu.produce(TOPIC, PARTITIONS, &messages);
    // Messages go round-robin to the partitions: the end offset of each.
    // (tansu's own watermark answer lags behind, so it is not asked.)
    let ends: Vec<i64> = (0..PARTITIONS)
        .map(|p| messages.iter().enumerate().filter(|(i, _)| *i as i32 % PARTITIONS == p).count() as i64)
        .collect();
    let committed = |tansu: &Tansu, group: &str| -> Vec<i64> {
        tansu.group_progress(group, TOPIC, PARTITIONS).iter().map(|(c, _)| *c).collect()
    };

    // The uninterrupted run of coverage: the same messages replayed from a file.
    let expected_dir = tempfile::tempdir().unwrap();
    let input = expected_dir.path().join("tenant.ndjson");
    let mut text = Vec::new();
    for m in &messages {
        text.extend_from_slice(m);
        text.push(b'\n');
    }
    std::fs::write(&input, text).unwrap();
    let expected_config = write_config(expected_dir.path(), "127.0.0.1:1", TOPIC, "unused", free_port(), "");
    let out = Command::new(env!("CARGO_BIN_EXE_mfawatch"))
        .args(["replay", "--config", expected_config.to_str().unwrap(), input.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "replay: {}", String::from_utf8_lossy(&out.stderr));
    let expected = users_of(expected_dir.path());
    assert!(expected.len() > 350, "the tenant's users are in the state: {}", expected.len());

    // The uninterrupted run of history: a daemon reading the same broker, never killed.
    let calm_dir = tempfile::tempdir().unwrap();
    let calm_port = free_port();
    let calm_config =
        write_config(calm_dir.path(), &tansu.bootstrap(), TOPIC, "calm", calm_port, &extra(calm_dir.path()));
    let mut calm = Daemon::start(&calm_config, calm_port, &calm_dir.path().join("daemon.log"), &[]);
    calm.wait_ready(Duration::from_secs(30));
    wait_for("the calm run to read everything", Duration::from_secs(180), || committed(&tansu, "calm") == ends);
    assert_eq!(calm.terminate(), Some(0));
    let (calm_rows, calm_history) = history_rows(calm_dir.path());
    assert_eq!(calm_rows, calm_history.len(), "the calm run's history has no row twice");
    assert!(calm_rows > 10_000, "the calm run wrote the history ({calm_rows} rows)");
    let calm_alerts: BTreeSet<(String, String, String)> = alerts_of(calm_dir.path()).into_iter().collect();
    assert!(calm_alerts.len() > 50, "the calm run alerted ({})", calm_alerts.len());

    // The daemon, killed with SIGKILL again and again while it consumes: at
    // random moments, and inside checkpoints (a test hook holds it between
    // writing the new snapshot and renaming it, or between the rename and
    // the offset commit, and the kill lands there).
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, GROUP, port, &extra(dir.path()));
    let log = dir.path().join("daemon.log");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let (mut midway, mut in_checkpoint, mut in_merge, mut in_delivery) = (0, 0, 0, 0);
    for round in 0..KILLS {
        // Inside a checkpoint (between writing the new snapshot and renaming
        // it, between the rename and the offset commit), inside a day's merge
        // (its file in place, the parts not yet removed), inside an alert
        // delivery (the receiver has them, the outbox still too), or at random.
        let hook = match round % 5 {
            1 => Some("snapshot-before-rename"),
            2 => Some("checkpoint-before-commit"),
            3 => Some("compact-before-remove"),
            4 => Some("deliver-before-clear"),
            _ => None,
        };
        let hooks = hook.map(|point| format!("pause={point}:1500"));
        let env: Vec<(&str, &str)> = hooks.iter().map(|h| ("MFAWATCH_TEST_HOOKS", h.as_str())).collect();
        let before = std::fs::read_to_string(&log).map_or(0, |t| t.len());
        let mut daemon = Daemon::start(&config, port, &log, &env);
        daemon.wait_ready(Duration::from_secs(30));
        match hook {
            Some(point) => {
                // A merge or a delivery only happens while there is one to do.
                let mark = format!("paused at {point}");
                let always = matches!(point, "snapshot-before-rename" | "checkpoint-before-commit");
                // Ready comes with the brokers' first answer; the group join
                // that gives the partitions back can take seconds more.
                let wait = if always { Duration::from_secs(30) } else { Duration::from_secs(12) };
                let landed = common::within(wait, || daemon.log_text()[before..].contains(&mark));
                assert!(landed || !always, "timed out waiting for {mark}");
                match (landed, point) {
                    (false, _) => {}
                    (true, "compact-before-remove") => in_merge += 1,
                    (true, "deliver-before-clear") => in_delivery += 1,
                    (true, _) => in_checkpoint += 1,
                }
            }
            None => {
                wait_for("the daemon to consume", Duration::from_secs(30), || {
                    messages_read(&daemon) > 0 || committed(&tansu, GROUP) == ends
                });
                std::thread::sleep(Duration::from_millis(rng.random_range(100..700)));
            }
        }
        let progress = committed(&tansu, GROUP);
        daemon.kill();
        if progress != ends && progress.iter().any(|&c| c > 0) {
            midway += 1;
        }
        eprintln!("round {round}: killed {} at {progress:?}", hook.unwrap_or("at random"));
    }
    assert!(midway >= 5, "at least five kills must land after a checkpoint and before the end ({midway} did)");
    assert!(in_merge >= 1 && in_delivery >= 1, "kills inside a merge ({in_merge}) and a delivery ({in_delivery})");

    // Restart once more and let it finish.
    let mut daemon = Daemon::start(&config, port, &log, &[]);
    daemon.wait_ready(Duration::from_secs(30));
    wait_for("every message to be consumed and committed", Duration::from_secs(180), || {
        committed(&tansu, GROUP) == ends
    });
    assert_eq!(daemon.terminate(), Some(0), "a clean exit on SIGTERM:\n{}", daemon.log_text());

    let got = users_of(dir.path());
    assert_eq!(got.len(), expected.len(), "same users");
    for (key, want) in &expected {
        assert_eq!(got.get(key), Some(want), "user {key}");
    }

    // The history holds each record once, exactly as the calm run's.
    let (rows, history) = history_rows(dir.path());
    let missing = calm_history.difference(&history).count();
    let extra = history.difference(&calm_history).count();
    assert_eq!((missing, extra), (0, 0), "history rows missing / not in the calm run");
    assert_eq!(rows, history.len(), "no history row twice");

    // Alerts are at-least-once: the same alerts, by id and by (rule, user), none lost.
    let got_alerts = alerts_of(dir.path());
    let got_set: BTreeSet<(String, String, String)> = got_alerts.iter().cloned().collect();
    assert_eq!(got_set, calm_alerts, "the alerts of the calm run, by id, rule and user");
    let by_id: BTreeSet<&String> = got_alerts.iter().map(|(id, _, _)| id).collect();
    assert_eq!(by_id.len(), calm_alerts.len(), "an id stands for one alert");

    // Dead letters are at-least-once: none lost, repeats only of the same records.
    let (_, want_letters) = dead_letter_keys(expected_dir.path());
    let (written, got_letters) = dead_letter_keys(dir.path());
    assert!(!want_letters.is_empty());
    assert_eq!(got_letters, want_letters);
    assert!(written >= want_letters.len());

    let snapshot = SnapshotFile::new(&dir.path().join("state")).read().unwrap().unwrap();
    for p in 0..PARTITIONS {
        assert_eq!(
            snapshot.offsets.get(&(TOPIC.to_string(), p)),
            Some(&ends[p as usize]),
            "snapshot offset of partition {p}"
        );
    }
    common::record_reliability(
        "kill -9 against tansu",
        &format!(
            "{KILLS} kills ({in_checkpoint} inside a checkpoint, {in_merge} inside a day's merge, {in_delivery} inside an alert delivery, {midway} mid-stream), {} records, {} users: lost 0, counted twice 0, history rows {rows} = calm run, alerts {} = calm run by id",
            RECORDS,
            got.len(),
            calm_alerts.len()
        ),
    );
}
