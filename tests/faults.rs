//! Holes in the delivery guarantee, each reproduced against a real broker
//! (tansu) with the daemon binary: partitions the snapshot does not list,
//! dead letters that cannot be delivered, clocks, offsets out of range,
//! fatal consumer errors. And a password spray that must not grow the state.

mod common;

use std::time::Duration;

use chrono::TimeZone;
use common::{Daemon, Tansu, free_port, metric_sum, replay, wait_for, write_config, write_ndjson};
use mfawatch::checkpoint::SnapshotFile;
use mfawatch::generate::{Format, Generator, Spray, TenantSpec};

const TOPIC: &str = "insights-logs-signinlogs";

fn tenant(records: u64, seed: u64) -> Vec<Vec<u8>> {
    Generator::new(TenantSpec {
        users: 150,
        records,
        seed,
        end: chrono::Utc::now(),
        format: Format::Envelope,
        records_per_message: 10,
        ..TenantSpec::default()
    })
    .collect()
}

fn users(daemon: &Daemon) -> u64 {
    daemon.json("/api/v1/coverage")["users"].as_u64().unwrap()
}

#[test]
fn an_idle_partition_with_start_latest_is_read_after_a_restart() {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 2);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "idle", port, "");
    let text = std::fs::read_to_string(&config).unwrap().replace("start = \"earliest\"", "start = \"latest\"");
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("daemon.log");

    let mut daemon = Daemon::start(&config, port, &log, &[]);
    daemon.wait_ready(Duration::from_secs(30));
    wait_for("partitions assigned", Duration::from_secs(30), || daemon.log_text().contains("partitions assigned"));
    tansu.produce_to(TOPIC, 0, &tenant(100, 1), None);
    wait_for("partition 0 read", Duration::from_secs(30), || daemon.metric("mfawatch_messages_total") >= 10.0);
    assert_eq!(daemon.terminate(), Some(0));

    // Partition 1 has been idle since the group began; 30 messages arrive while the daemon is down.
    tansu.produce_to(TOPIC, 1, &tenant(300, 2), None);
    let daemon = Daemon::start(&config, port, &log, &[]);
    daemon.wait_ready(Duration::from_secs(30));
    wait_for("what arrived on the idle partition to be read", Duration::from_secs(60), || {
        daemon.metric("mfawatch_messages_total") >= 30.0
    });
}

#[test]
fn an_empty_state_rereads_what_the_hub_holds_whatever_the_group_committed() {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 1);
    tansu.produce_to(TOPIC, 0, &tenant(500, 3), None);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "moved", port, "");
    let log = dir.path().join("daemon.log");
    let mut daemon = Daemon::start(&config, port, &log, &[]);
    daemon.wait_ready(Duration::from_secs(30));
    wait_for("all 50 messages committed", Duration::from_secs(60), || {
        tansu.group_progress("moved", TOPIC, 1)[0].0 == 50
    });
    let before = users(&daemon);
    assert!(before > 50, "{before} users");
    assert_eq!(daemon.terminate(), Some(0));

    // The snapshot is moved away (as after a coverage.window change, or on a new volume).
    let snapshot = SnapshotFile::new(&dir.path().join("state")).path();
    std::fs::rename(&snapshot, dir.path().join("moved-away.snapshot")).unwrap();
    let daemon = Daemon::start(&config, port, &log, &[]);
    daemon.wait_ready(Duration::from_secs(30));
    wait_for("the hub's 50 messages to be read again", Duration::from_secs(60), || {
        daemon.metric("mfawatch_messages_total") >= 50.0
    });
    assert_eq!(users(&daemon), before, "the same coverage as before the move");
}

#[test]
fn an_oversized_malformed_message_is_dead_lettered_cut_and_consumption_goes_on() {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 1);
    tansu.create_topic("mfawatch-dead-letters", 1);
    // ~0.9 MB, not JSON, with characters JSON escapes: too large for a dead letter as it is.
    let huge = format!("{{\"records\":[{}", "\u{1}\"x".repeat(300_000)).into_bytes();
    let mut messages = vec![huge];
    messages.extend(tenant(50, 4));
    tansu.produce_to(TOPIC, 0, &messages, None);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = format!(
        "\n[dead_letter]\ntopic = \"mfawatch-dead-letters\"\nfile = {:?}\n",
        dir.path().join("dead.ndjson").display().to_string()
    );
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "oversized", port, &extra);
    let daemon = Daemon::start(&config, port, &dir.path().join("daemon.log"), &[]);
    daemon.wait_ready(Duration::from_secs(30));
    wait_for("every message committed", Duration::from_secs(60), || {
        tansu.group_progress("oversized", TOPIC, 1)[0].0 == messages.len() as i64
    });
    let letters = std::fs::read_to_string(dir.path().join("dead.ndjson")).unwrap();
    let letter: serde_json::Value = serde_json::from_str(letters.lines().next().unwrap()).unwrap();
    assert_eq!(letter["truncated"], true);
    assert_eq!(letter["raw_bytes"], messages[0].len());
    assert!(letters.lines().next().unwrap().len() <= 512 * 1024);
}

#[test]
fn a_dead_letter_topic_that_does_not_exist_is_refused_at_start_with_a_clear_error() {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 1);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config =
        write_config(dir.path(), &tansu.bootstrap(), TOPIC, "no-dlq", port, "\n[dead_letter]\ntopic = \"nowhere\"\n");
    let mut daemon = Daemon::start(&config, port, &dir.path().join("daemon.log"), &[]);
    wait_for("the daemon to stop", Duration::from_secs(60), || daemon.exited().is_some());
    assert_ne!(daemon.exited(), Some(0));
    let log = daemon.log_text();
    assert!(log.contains("dead_letter.topic") && log.contains("nowhere"), "{log}");
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_mfawatch"))
        .args(["check-config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stderr).contains("nowhere"));
}

#[test]
fn sign_ins_are_judged_against_their_message_time_not_the_host_clock() {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 1);
    // Two days ahead of this host: as if its clock were two days slow. The
    // messages were enqueued then too, so the sign-ins are plausible.
    let ahead = chrono::Utc::now() + chrono::Duration::days(2);
    let records = |end, seed| -> Vec<Vec<u8>> {
        Generator::new(TenantSpec {
            users: 50,
            records: 200,
            seed,
            end,
            records_per_message: 10,
            days: 1,
            ..TenantSpec::default()
        })
        .collect()
    };
    tansu.produce_to(TOPIC, 0, &records(ahead, 5), Some(ahead.timestamp_millis()));
    // Dated three days after their messages were enqueued: a clock upstream is wrong.
    let implausible = records(ahead + chrono::Duration::days(3), 6);
    tansu.produce_to(TOPIC, 0, &implausible, Some(ahead.timestamp_millis()));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "clock", port, "");
    let daemon = Daemon::start(&config, port, &dir.path().join("daemon.log"), &[]);
    daemon.wait_ready(Duration::from_secs(30));
    wait_for("every message committed", Duration::from_secs(60), || tansu.group_progress("clock", TOPIC, 1)[0].0 == 40);
    let future = daemon.metric("mfawatch_decode_errors_total{reason=\"future_time\"}");
    assert!(future >= 150.0, "{future} dead-lettered as dated after their message");
    assert!(users(&daemon) > 20, "the sign-ins ahead of the host clock count");
    let letters = std::fs::read_to_string(dir.path().join("dead-letters.ndjson")).unwrap();
    assert!(letters.contains("\"future_time\""), "dead-lettered with the reason");
}

#[test]
fn a_snapshot_offset_past_the_log_end_refuses_the_partition_naming_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("daemon.log");
    let broker_port = {
        let tansu = Tansu::start();
        tansu.create_topic(TOPIC, 1);
        tansu.produce_to(TOPIC, 0, &tenant(300, 7), None);
        let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "recreated", port, "");
        let mut daemon = Daemon::start(&config, port, &log, &[]);
        daemon.wait_ready(Duration::from_secs(30));
        wait_for("30 messages committed", Duration::from_secs(60), || {
            tansu.group_progress("recreated", TOPIC, 1)[0].0 == 30
        });
        assert_eq!(daemon.terminate(), Some(0));
        tansu.port
    };
    // The hub is recreated (the broker's memory storage starts empty) with fewer messages.
    let tansu = Tansu::start_on(broker_port);
    tansu.create_topic(TOPIC, 1);
    tansu.produce_to(TOPIC, 0, &tenant(50, 8), None);
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "recreated", port, "");
    let mut daemon = Daemon::start(&config, port, &log, &[]);
    wait_for("the refusal", Duration::from_secs(60), || {
        daemon.exited().is_some() || daemon.get("/readyz").is_some_and(|(s, b)| s == 503 && b.contains("past"))
    });
    if daemon.exited().is_none() {
        let (_, body) = daemon.get("/readyz").unwrap();
        assert!(body.contains(&format!("{TOPIC}[0]")) && body.contains("recreated"), "{body}");
        assert_eq!(daemon.metric("mfawatch_partitions_refused"), 1.0);
        assert_eq!(daemon.metric("mfawatch_messages_total"), 0.0, "nothing read from the refused partition");
    } else {
        // The broker says it is another cluster: refused as a whole, with the way out.
        let text = daemon.log_text();
        assert!(text.contains("another cluster") && text.contains("--reset-state"), "{text}");
    }
    let snapshot = SnapshotFile::new(&dir.path().join("state")).read().unwrap().unwrap();
    assert_eq!(snapshot.offsets[&(TOPIC.to_string(), 0)], 30, "the snapshot keeps its offset");
}

#[test]
fn a_fatal_consumer_error_stops_the_daemon_without_committing_past_the_snapshot() {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 1);
    tansu.produce_to(TOPIC, 0, &tenant(400, 9), None);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "fenced", port, "");
    let mut daemon =
        Daemon::start(&config, port, &dir.path().join("daemon.log"), &[("MFAWATCH_TEST_HOOKS", "fatal-after=15")]);
    wait_for("the daemon to stop", Duration::from_secs(60), || daemon.exited().is_some());
    assert_ne!(daemon.exited(), Some(0), "a fatal error is a failure exit (systemd restarts it)");
    let text = daemon.log_text();
    assert!(text.contains("fatal error") && text.contains("group_instance_id"), "{text}");
    let committed = tansu.group_progress("fenced", TOPIC, 1)[0].0;
    let snapshot = SnapshotFile::new(&dir.path().join("state")).read().unwrap();
    let durable = snapshot.map_or(-1, |s| s.offsets.get(&(TOPIC.to_string(), 0)).copied().unwrap_or(-1));
    assert!(committed <= durable.max(0) && committed < 40, "committed {committed}, snapshot {durable}");
}

#[test]
fn a_password_spray_does_not_grow_the_state() {
    let end = chrono::Utc.with_ymd_and_hms(2025, 6, 30, 0, 0, 0).unwrap();
    let spray: Vec<Vec<u8>> = Spray::new(20_000, end, 1, 100).collect();
    let real: Vec<Vec<u8>> = Generator::new(TenantSpec {
        users: 200,
        records: 2_000,
        end,
        records_per_message: 20,
        ..TenantSpec::default()
    })
    .collect();

    // Through replay: the tenant alone, then the spray on top.
    let dir = tempfile::tempdir().unwrap();
    let (tenant_file, spray_file) = (dir.path().join("tenant.ndjson"), dir.path().join("spray.ndjson"));
    write_ndjson(&tenant_file, &real);
    write_ndjson(&spray_file, &spray);
    let config = write_config(dir.path(), "127.0.0.1:1", TOPIC, "unused", free_port(), "");
    let out = replay(&config, &[&tenant_file], &[]);
    let before: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let snapshot = SnapshotFile::new(&dir.path().join("state"));
    let size_before = std::fs::metadata(snapshot.path()).unwrap().len();
    let out = replay(&config, &[&spray_file], &[]);
    let after: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(after["users"], before["users"], "no user made of a name no account holds");
    assert_eq!(after["states"], before["states"]);
    let growth = std::fs::metadata(snapshot.path()).unwrap().len() as i64 - size_before as i64;
    assert!(growth <= 500, "the snapshot grew by {growth} bytes");

    // Through the daemon from the broker: the counter says what was tried.
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 1);
    tansu.produce_to(TOPIC, 0, &real, None);
    tansu.produce_to(TOPIC, 0, &spray, None);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "spray", port, "");
    let daemon = Daemon::start(&config, port, &dir.path().join("daemon.log"), &[]);
    daemon.wait_ready(Duration::from_secs(30));
    let total = (real.len() + spray.len()) as i64;
    wait_for("the spray to be read", Duration::from_secs(120), || {
        tansu.group_progress("spray", TOPIC, 1)[0].0 == total
    });
    let (_, text) = daemon.get("/metrics").unwrap();
    let unknown = metric_sum(&text, "mfawatch_unknown_account_signins_total{");
    let smtp = metric_sum(
        &text,
        "mfawatch_unknown_account_signins_total{category=\"SignInLogs\",client_class=\"legacy\",protocol=\"Authenticated SMTP\"}",
    );
    assert_eq!(smtp, 20_000.0, "{text}");
    assert!(unknown >= 20_000.0);
    assert_eq!(users(&daemon), before["users"].as_u64().unwrap());
}
