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

fn tenant() -> Vec<Vec<u8>> {
    let spec = TenantSpec {
        users: 400,
        records: 16_000,
        days: 7,
        seed: 11,
        end: chrono::Utc.with_ymd_and_hms(2025, 6, 30, 0, 0, 0).unwrap(),
        format: Format::Envelope,
        records_per_message: 20,
        malformed_per_10k: 10,
        fatigue_per_10k: 0,
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

#[test]
fn kill_9_at_random_points_loses_nothing_and_counts_nothing_twice() {
    let messages = tenant();
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, PARTITIONS);
    tansu.produce(TOPIC, PARTITIONS, &messages);
    // Messages go round-robin to the partitions: the end offset of each.
    // (tansu's own watermark answer lags behind, so it is not asked.)
    let ends: Vec<i64> = (0..PARTITIONS)
        .map(|p| messages.iter().enumerate().filter(|(i, _)| *i as i32 % PARTITIONS == p).count() as i64)
        .collect();
    let committed = |tansu: &Tansu| -> Vec<i64> {
        tansu.group_progress(GROUP, TOPIC, PARTITIONS).iter().map(|(c, _)| *c).collect()
    };

    // The uninterrupted run: the same messages replayed from a file.
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

    // The daemon, killed with SIGKILL at random points while it consumes.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, GROUP, port, "");
    let log = dir.path().join("daemon.log");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut killed_midway = 0;
    for round in 0..4 {
        let mut daemon = Daemon::start(&config, port, &log, &[]);
        daemon.wait_ready(Duration::from_secs(30));
        wait_for("the daemon to consume", Duration::from_secs(30), || messages_read(&daemon) > 0);
        std::thread::sleep(Duration::from_millis(rng.random_range(300..900)));
        let progress = committed(&tansu);
        daemon.kill();
        if progress != ends && progress.iter().any(|&c| c > 0) {
            killed_midway += 1;
        }
        eprintln!("round {round}: killed at {progress:?}");
    }
    assert!(
        killed_midway >= 2,
        "at least two kills must land after a checkpoint and before the end ({killed_midway} did)"
    );

    // Restart once more and let it finish.
    let mut daemon = Daemon::start(&config, port, &log, &[]);
    daemon.wait_ready(Duration::from_secs(30));
    wait_for("every message to be consumed and committed", Duration::from_secs(180), || committed(&tansu) == ends);
    assert_eq!(daemon.terminate(), Some(0), "a clean exit on SIGTERM:\n{}", daemon.log_text());

    let got = users_of(dir.path());
    assert_eq!(got.len(), expected.len(), "same users");
    for (key, want) in &expected {
        assert_eq!(got.get(key), Some(want), "user {key}");
    }

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
}
