//! "Loses nothing, counts nothing twice" through the operations a SOC
//! performs, not only a kill -9: restoring an older snapshot, two states on
//! one history folder, reports while days are merged, receivers edited while
//! alerts wait, a stop or kill -9 inside a rate-limit minute, a host clock
//! that jumps, a foreign cluster's brokers, records that expire mid-stream.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::TimeZone;
use common::{free_port, replay, write_config, write_ndjson};
use mfawatch::generate::{Format, Generator, TenantSpec};

/// Four days of a 200-user tenant, a few hundred sign-ins a day.
fn four_days(seed: u64) -> Vec<Vec<u8>> {
    Generator::new(TenantSpec {
        users: 200,
        records: 3_000,
        days: 4,
        seed,
        end: chrono::Utc.with_ymd_and_hms(2025, 7, 4, 23, 0, 0).unwrap(),
        format: Format::Envelope,
        records_per_message: 10,
        malformed_per_10k: 0,
        fatigue_per_10k: 0,
        redeliveries_per_10k: 0,
    })
    .collect()
}

/// Per date folder of a history: its record identities, and how many rows it has.
fn days_of(history: &Path) -> BTreeMap<String, (usize, BTreeSet<u64>)> {
    let mut days = BTreeMap::new();
    for (date, folder) in mfawatch::history::files::dates(history).unwrap() {
        let mut ids = BTreeSet::new();
        let mut rows = 0;
        for (_, file) in mfawatch::history::files::files(&folder).unwrap() {
            let got = mfawatch::history::files::identities(&file).unwrap();
            rows += got.len();
            ids.extend(got);
        }
        days.insert(date.to_string(), (rows, ids));
    }
    days
}

/// A configuration whose history merges every day that is over as soon as
/// the next checkpoint (a replay's one) makes it durable.
fn merging(dir: &Path, extra: &str) -> PathBuf {
    write_config(dir, "127.0.0.1:1", "t", "unused", free_port(), &format!("[history]\ncompact_after = \"0s\"\n{extra}"))
}

#[test]
fn restoring_an_older_snapshot_and_reading_again_gives_every_row_once() {
    let messages = four_days(31);
    let dir = tempfile::tempdir().unwrap();
    // Two exports whose sign-ins interleave: every day holds rows of both.
    let (a, b) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"));
    let half = |odd: usize| messages.iter().enumerate().filter(move |(i, _)| i % 2 == odd).map(|(_, m)| m.clone());
    write_ndjson(&a, &half(0).collect::<Vec<_>>());
    write_ndjson(&b, &half(1).collect::<Vec<_>>());

    // The oracle: both read into a fresh state once.
    let calm = tempfile::tempdir().unwrap();
    replay(&merging(calm.path(), ""), &[&a, &b], &[]);
    let want = days_of(&calm.path().join("state/history"));
    assert!(want.len() >= 4, "four days and more: {:?}", want.keys());

    // A, keep the snapshot; B (its checkpoint merges the days, A's rows in
    // them); the kept snapshot restored; B read again, as the hub would be.
    let config = merging(dir.path(), "");
    let state = dir.path().join("state");
    replay(&config, &[&a], &[]);
    std::fs::copy(state.join("state.snapshot"), dir.path().join("kept.snapshot")).unwrap();
    replay(&config, &[&b], &[]);
    let merged = mfawatch::history::files::dates(&state.join("history"))
        .unwrap()
        .iter()
        .filter(|(_, folder)| {
            mfawatch::history::files::files(folder)
                .unwrap()
                .iter()
                .any(|(name, _)| matches!(name, mfawatch::history::files::Name::Day { .. }))
        })
        .count();
    assert!(merged >= 3, "the days B's checkpoint is past are merged ({merged})");
    std::fs::copy(dir.path().join("kept.snapshot"), state.join("state.snapshot")).unwrap();
    replay(&config, &[&b], &[]);

    let got = days_of(&state.join("history"));
    for (day, (rows, ids)) in &want {
        let (got_rows, got_ids) = got.get(day).unwrap_or_else(|| panic!("day {day} is gone"));
        assert_eq!((got_rows, got_ids.len()), (rows, ids.len()), "day {day}: rows, distinct records");
        assert_eq!(got_ids, ids, "day {day}: the same records");
    }
}

#[test]
fn a_second_state_on_the_same_history_is_refused_and_the_first_keeps_its_rows() {
    let messages = four_days(32);
    let root = tempfile::tempdir().unwrap();
    let history = root.path().join("shared-history");
    let input = root.path().join("tenant.ndjson");
    write_ndjson(&input, &messages);
    let extra = format!("dir = {:?}\n", history.display().to_string());
    let (first, second) = (root.path().join("first"), root.path().join("second"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    let first_config = merging(&first, &extra);
    let second_config = merging(&second, &extra);
    // The first replay holds between writing its parts and renaming its snapshot.
    let paused = Command::new(env!("CARGO_BIN_EXE_mfawatch"))
        .args(["replay", "--config", first_config.to_str().unwrap(), input.to_str().unwrap()])
        .env("MFAWATCH_TEST_HOOKS", "pause=snapshot-before-rename:4000")
        .stderr(std::fs::File::create(root.path().join("first.log")).unwrap())
        .spawn()
        .unwrap();
    common::wait_for("the first replay to pause before its snapshot", Duration::from_secs(30), || {
        std::fs::read_to_string(root.path().join("first.log")).unwrap_or_default().contains("paused at")
    });
    let out = Command::new(env!("CARGO_BIN_EXE_mfawatch"))
        .args(["replay", "--config", second_config.to_str().unwrap(), input.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second state is refused");
    assert!(
        err.contains("another mfawatch state") && err.contains(&first.join("state").display().to_string()),
        "{err}"
    );
    let done = paused.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", std::fs::read_to_string(root.path().join("first.log")).unwrap_or_default());
    let calm = tempfile::tempdir().unwrap();
    replay(&merging(calm.path(), ""), &[&input], &[]);
    assert_eq!(days_of(&history), days_of(&calm.path().join("state/history")), "the first state's rows are all there");
}

#[test]
fn reports_running_while_days_are_merged_see_every_sign_in_once() {
    use mfawatch::history::files;
    let messages = four_days(33);
    let dir = tempfile::tempdir().unwrap();
    // Three replays: three parts a day, no merge yet.
    let config =
        write_config(dir.path(), "127.0.0.1:1", "t", "unused", free_port(), "[history]\ncompact_after = \"3650d\"\n");
    for i in 0..3 {
        let input = dir.path().join(format!("part{i}.ndjson"));
        let third: Vec<Vec<u8>> = messages.iter().skip(i).step_by(3).cloned().collect();
        write_ndjson(&input, &third);
        replay(&config, &[&input], &[]);
    }
    let history = dir.path().join("state/history");
    let request = mfawatch::report::Request {
        history: history.clone(),
        window: mfawatch::report::Window::iso_week("2025-W27").unwrap(),
        trend_weeks: 2,
        registration_grace_days: 14,
        privileged_roles: Default::default(),
        rollup: Default::default(),
    };
    let before = mfawatch::report::build(&request).unwrap();
    assert_eq!(before.duplicates, 0);
    let (epoch, seq) = files::read_committed(&history).unwrap().pop_last().unwrap();
    let merger = {
        let history = history.clone();
        std::thread::spawn(move || {
            let mut merged = 0;
            for (_, folder) in files::dates(&history).unwrap() {
                std::thread::sleep(Duration::from_millis(150));
                merged += files::compact(&folder, epoch, seq, Duration::from_secs(30)).unwrap();
            }
            merged
        })
    };
    let mut reports = 0;
    while !merger.is_finished() || reports < 3 {
        let report = mfawatch::report::build(&request).unwrap_or_else(|e| panic!("a report during a merge: {e:#}"));
        assert_eq!((report.sign_ins, report.duplicates), (before.sign_ins, 0), "every sign-in once");
        assert_eq!(report.coverage, before.coverage);
        reports += 1;
    }
    assert!(merger.join().unwrap() >= 12, "every day's three parts merged");
    assert!(reports >= 3);
}

const TOPIC: &str = "insights-logs-signinlogs";

fn alerting(seed: u64, records: u64) -> (Vec<Vec<u8>>, BTreeSet<(String, String)>) {
    let mut generator = Generator::new(common::alerting_tenant(seed, records));
    let messages: Vec<Vec<u8>> = generator.by_ref().collect();
    let expected = generator.expected_alerts();
    (messages, expected)
}

/// The `[coverage]` lines that make the tenants' admins privileged and their
/// break-glass accounts excluded (the generator's expected alerts assume so).
fn accounts(seeds: &[u64]) -> String {
    let (mut admins, mut break_glass) = (Vec::new(), Vec::new());
    for &seed in seeds {
        let tenant = mfawatch::generate::Tenant::new(&common::alerting_tenant(seed, 0));
        admins.extend(tenant.users.iter().filter(|u| u.admin).map(|u| format!("{:?}", u.upn)));
        break_glass.extend(tenant.users.iter().filter(|u| u.break_glass).map(|u| format!("{:?}", u.upn)));
    }
    format!("[coverage]\nprivileged = [{}]\nexcluded = [{}]\n", admins.join(", "), break_glass.join(", "))
}

/// The alerts a file receiver got, one JSON object a line.
fn logged(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// (rule, user) of the alerts received, and of every alert a summary says it held back.
fn rule_users(alerts: &[serde_json::Value]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for a in alerts {
        let rule = a["rule"].as_str().unwrap_or("").to_owned();
        match a["held_back"].as_array().filter(|h| !h.is_empty()) {
            Some(held) => {
                out.extend(held.iter().map(|h| (rule.clone(), h["user_key"].as_str().unwrap_or("").to_owned())))
            }
            None => {
                out.insert((rule, a["sign_in"]["user_key"].as_str().unwrap_or("").to_owned()));
            }
        }
    }
    out
}

fn consumed(tansu: &common::Tansu, group: &str, partitions: i32) -> bool {
    tansu.group_progress(group, TOPIC, partitions).iter().all(|(c, end)| c == end && *end > 0)
}

#[test]
fn what_the_rate_limit_holds_back_survives_a_stop_and_a_kill_inside_the_minute() {
    let (first, mut expected) = alerting(41, 3_000);
    let (second, more) = alerting(42, 3_000);
    expected.extend(more);
    let tansu = common::Tansu::start();
    tansu.create_topic(TOPIC, 2);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("alerts.ndjson");
    let port = free_port();
    let extra = format!(
        "{}[alerts]\nmax_age = \"30d\"\nrate_limit_per_minute = 2\nlog_file = {:?}\n",
        accounts(&[41, 42]),
        log.display().to_string()
    );
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "rate", port, &extra);
    let daemon_log = dir.path().join("daemon.log");
    let held = |d: &common::Daemon| d.metric("mfawatch_alerts_suppressed_total{reason=\"rate_limit\"");

    // A stop inside the minute: the held-back alerts are in the snapshot.
    let mut daemon = common::Daemon::start(&config, port, &daemon_log, &[]);
    daemon.wait_ready(Duration::from_secs(30));
    tansu.produce(TOPIC, 2, &first);
    common::wait_for("the first batch consumed", Duration::from_secs(120), || consumed(&tansu, "rate", 2));
    assert!(held(&daemon) > 20.0, "the limit held alerts back");
    assert_eq!(daemon.terminate(), Some(0));

    // A kill -9 inside the minute, after a checkpoint that holds more of them.
    let mut daemon = common::Daemon::start(&config, port, &daemon_log, &[]);
    daemon.wait_ready(Duration::from_secs(30));
    tansu.produce(TOPIC, 2, &second);
    common::wait_for("the second batch consumed", Duration::from_secs(120), || consumed(&tansu, "rate", 2));
    daemon.kill();

    // After the restart every minute ends in its summary: every expected
    // (rule, user) was sent or is named in one.
    let daemon = common::Daemon::start(&config, port, &daemon_log, &[]);
    daemon.wait_ready(Duration::from_secs(30));
    let all = common::within(Duration::from_secs(150), || expected.is_subset(&rule_users(&logged(&log))));
    let got = rule_users(&logged(&log));
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(all, "every held-back alert summed up; missing {} of {}: {missing:?}", missing.len(), expected.len());
    let alerts = logged(&log);
    let summaries: Vec<&serde_json::Value> =
        alerts.iter().filter(|a| a["held_back"].as_array().is_some_and(|h| !h.is_empty())).collect();
    assert!(!summaries.is_empty());
    let mut ids = BTreeSet::new();
    for s in &summaries {
        assert!(s["summary"].as_str().unwrap().contains("held back by alerts.rate_limit_per_minute"), "{s}");
        assert!(s["count"].as_u64().unwrap() as usize >= s["held_back"].as_array().unwrap().len(), "{s}");
        ids.insert(s["id"].as_str().unwrap().to_owned());
    }
    let distinct: BTreeSet<&str> = summaries.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(distinct.len(), ids.len());
    drop(daemon);
}

#[test]
fn alerts_waiting_for_a_receiver_follow_it_by_identity_when_the_receivers_change() {
    let (messages, _) = alerting(43, 2_000);
    let tansu = common::Tansu::start();
    tansu.create_topic(TOPIC, 2);
    let hook = common::Webhook::start();
    hook.refuse.store(true, std::sync::atomic::Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("alerts.ndjson");
    let port = free_port();
    let base = format!(
        "[alerts]\nmax_age = \"30d\"\nrate_limit_per_minute = 100000\nlog_file = {:?}\n",
        log.display().to_string()
    );
    let webhook = format!("[alerts.webhook]\nurl = {:?}\n", hook.url);
    let daemon_log = dir.path().join("daemon.log");
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "receivers", port, &format!("{base}{webhook}"));
    let mut daemon = common::Daemon::start(&config, port, &daemon_log, &[]);
    daemon.wait_ready(Duration::from_secs(30));
    tansu.produce(TOPIC, 2, &messages);
    common::wait_for("everything consumed", Duration::from_secs(120), || consumed(&tansu, "receivers", 2));
    let made = daemon.metric("mfawatch_alerts_total") as usize;
    assert!(made > 20);
    common::wait_for("the file has them all", Duration::from_secs(30), || logged(&log).len() == made);
    assert_eq!(daemon.metric("mfawatch_alert_outbox "), made as f64, "all wait for the refusing webhook");
    assert_eq!(daemon.terminate(), Some(0));
    // The same state, twice: with the webhook removed, and with an Alertmanager put before it.
    let other = tempfile::tempdir().unwrap();
    for entry in ["state", "alerts.ndjson", "dead-letters.ndjson"] {
        let from = dir.path().join(entry);
        if from.is_dir() {
            Command::new("cp").args(["-a", from.to_str().unwrap(), other.path().to_str().unwrap()]).status().unwrap();
        } else if from.exists() {
            std::fs::copy(&from, other.path().join(entry)).unwrap();
        }
    }

    // Removed: its waiting alerts are dropped for it, and the file gets none twice.
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "receivers", port, &base);
    let daemon = common::Daemon::start(&config, port, &daemon_log, &[]);
    daemon.wait_ready(Duration::from_secs(30));
    common::wait_for("a checkpoint", Duration::from_secs(30), || {
        daemon.metric("mfawatch_checkpoints_total{result=\"ok\"}") >= 2.0
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(logged(&log).len(), made, "no alert twice in the file");
    assert_eq!(daemon.metric("mfawatch_alert_outbox "), 0.0);
    assert_eq!(daemon.metric("mfawatch_alerts_suppressed_total{reason=\"receiver_removed\""), made as f64);
    drop(daemon);

    // Another receiver first: the webhook gets its own backlog, the newcomer none of it.
    hook.refuse.store(false, std::sync::atomic::Ordering::Relaxed);
    let am = common::Alertmanager::start();
    let receivers = format!("{base}[alerts.alertmanager]\nurls = [{:?}]\n{webhook}", am.url);
    let other_log = other.path().join("alerts.ndjson");
    let receivers = receivers.replace(&log.display().to_string(), &other_log.display().to_string());
    let port = free_port();
    let config = write_config(other.path(), &tansu.bootstrap(), TOPIC, "receivers", port, &receivers);
    let daemon = common::Daemon::start(&config, port, &other.path().join("daemon.log"), &[]);
    daemon.wait_ready(Duration::from_secs(30));
    common::wait_for("the webhook's backlog delivered", Duration::from_secs(60), || hook.alerts().len() >= made);
    assert_eq!(hook.alerts().len(), made, "each once");
    assert!(am.alerts().is_empty(), "the new receiver gets only new alerts");
    assert_eq!(logged(&other_log).len(), made, "the file gets none twice");
}

#[test]
fn a_host_clock_that_jumps_ahead_neither_silences_alerts_nor_deletes_history() {
    let tansu = common::Tansu::start();
    tansu.create_topic(TOPIC, 1);
    let dir = tempfile::tempdir().unwrap();
    let offset = dir.path().join("clock-offset");
    // Forty days ahead: every live sign-in looks older than max_age (2 days:
    // the tenant's day of sign-ins, some delivered hours late, is younger by
    // the brokers' clock) and than history.retention_days (30) by this host's clock.
    std::fs::write(&offset, (40 * 86_400).to_string()).unwrap();
    let log = dir.path().join("alerts.ndjson");
    let port = free_port();
    let extra = format!(
        "[history]\nretention_days = 30\ncompact_after = \"0s\"\n{}[alerts]\nmax_age = \"2d\"\nrate_limit_per_minute = 100000\nlog_file = {:?}\n",
        accounts(&[44]),
        log.display().to_string()
    );
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "clock", port, &extra);
    let hooks = format!("clock-offset-file={}", offset.display());
    let daemon =
        common::Daemon::start(&config, port, &dir.path().join("daemon.log"), &[("MFAWATCH_TEST_HOOKS", &hooks)]);
    daemon.wait_ready(Duration::from_secs(30));
    daemon.wait_assigned(Duration::from_secs(30));
    // Live sign-ins, as they arrive: each message is read at the head of the partition.
    let (messages, expected) = alerting(44, 1_500);
    for chunk in messages.chunks(20) {
        tansu.produce_to(TOPIC, 0, chunk, None);
        std::thread::sleep(Duration::from_millis(50));
    }
    common::wait_for("everything consumed", Duration::from_secs(120), || consumed(&tansu, "clock", 1));
    let skew = daemon.metric("mfawatch_clock_skew_seconds");
    assert!((skew - 40.0 * 86_400.0).abs() < 120.0, "the host clock is seen 40 days ahead: {skew}");
    common::wait_for("the alerts delivered", Duration::from_secs(30), || {
        expected.is_subset(&rule_users(&logged(&log)))
    });
    assert_eq!(
        daemon.metric("mfawatch_alerts_suppressed_total{reason=\"stale\""),
        0.0,
        "nothing stale by the host clock"
    );
    common::wait_for("a few checkpoints", Duration::from_secs(30), || {
        daemon.metric("mfawatch_checkpoints_total{result=\"ok\"}") >= 4.0
    });
    let history = days_of(&dir.path().join("state/history"));
    let rows: usize = history.values().map(|(rows, _)| rows).sum();
    assert!(history.len() >= 2 && rows >= 1_400, "the history is kept: {} days, {rows} rows", history.len());
    assert!(daemon.log_text().contains("the host's clock is ahead of the brokers'"), "the skew is said");
}

#[test]
fn a_foreign_clusters_offsets_are_never_placed_checkpointed_or_committed() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("daemon.log");
    let messages = four_days(45);
    let state_offsets = {
        let tansu = common::Tansu::start();
        tansu.create_topic(TOPIC, 1);
        tansu.produce_to(TOPIC, 0, &messages, None);
        let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "foreign", port, "");
        let mut daemon = common::Daemon::start(&config, port, &log, &[]);
        daemon.wait_ready(Duration::from_secs(30));
        common::wait_for("everything committed", Duration::from_secs(60), || consumed(&tansu, "foreign", 1));
        assert_eq!(daemon.terminate(), Some(0));
        mfawatch::checkpoint::SnapshotFile::new(&dir.path().join("state")).read().unwrap().unwrap()
    };
    // Another cluster (another namespace) with the same hub name and more in it.
    let other = common::Tansu::start_cluster(free_port(), "another-namespace");
    other.create_topic(TOPIC, 1);
    other.produce_to(TOPIC, 0, &messages, None);
    other.produce_to(TOPIC, 0, &messages, None);
    let config = write_config(dir.path(), &other.bootstrap(), TOPIC, "foreign", port, "");
    let mut daemon = common::Daemon::start(&config, port, &log, &[]);
    common::wait_for("the refusal", Duration::from_secs(60), || daemon.exited().is_some());
    assert_ne!(daemon.exited(), Some(0));
    assert!(daemon.log_text().contains("another cluster"), "{}", daemon.log_text());
    assert!(other.group_progress("foreign", TOPIC, 1)[0].0 < 0, "nothing committed on the other cluster");
    let after = mfawatch::checkpoint::SnapshotFile::new(&dir.path().join("state")).read().unwrap().unwrap();
    // (Checkpoints before the brokers were asked who they are hold the state's own offsets.)
    assert_eq!(
        (&after.offsets, &after.source),
        (&state_offsets.offsets, &state_offsets.source),
        "the snapshot keeps its cluster's offsets"
    );
    assert_eq!(daemon.metric("mfawatch_messages_total"), 0.0);
}

/// Produces `messages` to partition 0 of `topic` on `bootstrap`, waiting for them all.
fn produce_plain(bootstrap: &str, topic: &str, messages: &[Vec<u8>]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.max.bytes", "4000000")
        .create()
        .unwrap();
    for m in messages {
        producer.send(BaseRecord::<(), [u8]>::to(topic).payload(m).partition(0)).map_err(|(e, _)| e).unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// tansu's in-memory storage never expires anything (and its DeleteRecords is
/// not implemented there), so records that expire mid-stream are made with
/// librdkafka's mock cluster, which keeps only the newest 5 MB of a partition.
#[test]
fn records_that_expire_while_a_backlog_is_read_are_counted_with_their_range() {
    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, 1, 1).unwrap();
    let messages: Vec<Vec<u8>> = Generator::new(TenantSpec {
        users: 100,
        records: 60 * 40,
        days: 1,
        seed: 46,
        records_per_message: 40,
        ..TenantSpec::default()
    })
    .collect();
    assert_eq!(messages.len(), 60);
    assert!(messages[0].len() > 150_000, "messages of about 200 KB: 25 fill the partition's 5 MB");
    produce_plain(&mock.bootstrap_servers(), TOPIC, &messages[..10]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config =
        write_config(dir.path(), &mock.bootstrap_servers(), TOPIC, "expiry", port, "[kafka]\nprefetch_kbytes = 1024\n");
    // A slow pipeline (300 ms a message): the backlog outgrows what the partition keeps.
    let daemon = common::Daemon::start(
        &config,
        port,
        &dir.path().join("daemon.log"),
        &[("MFAWATCH_TEST_HOOKS", "pause=pipeline:300")],
    );
    daemon.wait_ready(Duration::from_secs(30));
    common::wait_for("the daemon to read", Duration::from_secs(30), || {
        daemon.metric("mfawatch_messages_total ") >= 1.0
    });
    produce_plain(&mock.bootstrap_servers(), TOPIC, &messages[10..]);
    common::wait_for("every message read or counted as lost", Duration::from_secs(120), || {
        daemon.metric("mfawatch_messages_total ") + daemon.metric("mfawatch_offsets_skipped_total") >= 60.0
    });
    let (read, lost) = (daemon.metric("mfawatch_messages_total "), daemon.metric("mfawatch_offsets_skipped_total"));
    assert!(lost >= 20.0, "messages expired mid-stream and are counted ({lost} lost, {read} read)");
    assert_eq!(read + lost, 60.0, "each message read or counted as lost, none both");
    let log = daemon.log_text();
    assert!(log.contains("messages expired before they could be read") && log.contains("first_lost"), "{log}");
}
