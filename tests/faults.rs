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
    daemon.wait_assigned(Duration::from_secs(30));
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

/// Checkpoints commit asynchronously (a hung broker must not hold the loop),
/// so the brokers' answers must come back to the daemon: without them every
/// commit looks unanswered, and after 30 s of steady consumption the daemon
/// would call a healthy broker hung and say it is not ready.
#[test]
fn the_brokers_answers_to_asynchronous_offset_commits_reach_the_daemon() {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 1);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "answers", port, "");
    let daemon = Daemon::start(&config, port, &dir.path().join("daemon.log"), &[]);
    daemon.wait_ready(Duration::from_secs(30));
    daemon.wait_assigned(Duration::from_secs(30));

    // Steady consumption, no rebalance: checkpoints (every 500 ms here) commit asynchronously.
    let messages = tenant(300, 4);
    for batch in messages.chunks(6) {
        tansu.produce_to(TOPIC, 0, batch, None);
        std::thread::sleep(Duration::from_millis(400));
    }
    let ok = "mfawatch_offset_commit_answers_total{result=\"ok\"}";
    wait_for("the brokers' answers to three commits", Duration::from_secs(30), || daemon.metric(ok) >= 3.0);
    assert_eq!(daemon.metric("mfawatch_offset_commit_answers_total{result=\"refused\"}"), 0.0);
    wait_for("every message read", Duration::from_secs(30), || daemon.metric("mfawatch_messages_total") >= 30.0);
    let answered = daemon.metric(ok);
    wait_for("the last commit answered", Duration::from_secs(10), || daemon.metric(ok) > answered);
    assert_eq!(daemon.get("/readyz").map(|(status, _)| status), Some(200), "{}", daemon.log_text());
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

fn replay_users(messages: &[Vec<u8>]) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    write_ndjson(&input, messages);
    let config = write_config(dir.path(), "127.0.0.1:1", TOPIC, "unused", free_port(), "");
    let out = replay(&config, &[&input], &[]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["users"].as_u64().unwrap()
}

#[test]
fn a_damaged_snapshot_stops_the_start_naming_the_file_and_reset_state_starts_afresh() {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 1);
    let messages = tenant(300, 10);
    tansu.produce_to(TOPIC, 0, &messages, None);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "damaged", port, "");
    let log = dir.path().join("daemon.log");
    let mut daemon = Daemon::start(&config, port, &log, &[]);
    daemon.wait_ready(Duration::from_secs(30));
    wait_for("everything committed", Duration::from_secs(60), || tansu.group_progress("damaged", TOPIC, 1)[0].0 == 30);
    let users_before = users(&daemon);
    assert_eq!(daemon.terminate(), Some(0));

    let snapshot = SnapshotFile::new(&dir.path().join("state")).path();
    let bytes = std::fs::read(&snapshot).unwrap();
    for (what, damaged) in [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("corrupt", {
            let mut b = bytes.clone();
            let at = b.len() - 3;
            b[at] ^= 0x55;
            b
        }),
    ] {
        std::fs::write(&snapshot, &damaged).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mfawatch"))
            .args(["run", "--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{what}: refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("state.snapshot") && err.contains("--reset-state") && err.contains("restore"),
            "{what}: {err}"
        );
    }
    // --reset-state: the damaged file is kept aside, the hub read again from kafka.start.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mfawatch"));
    command.args(["run", "--reset-state", "--config", config.to_str().unwrap()]);
    let daemon = Daemon::spawn(command, port, &log);
    daemon.wait_ready(Duration::from_secs(30));
    wait_for("the hub read again", Duration::from_secs(60), || daemon.metric("mfawatch_messages_total") >= 30.0);
    wait_for("the same users as before", Duration::from_secs(10), || users(&daemon) == users_before);
    let kept = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("state.snapshot.reset-"));
    assert!(kept, "the old snapshot is kept aside");
    common::record_reliability(
        "damaged snapshot",
        "truncated and corrupt: refused naming the file; --reset-state re-read the hub",
    );
}

#[test]
fn a_full_disk_at_checkpoint_time_commits_nothing_says_so_and_recovers_when_space_returns() {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 1);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let port = free_port();
    let history = dir.path().join("history");
    let extra = format!("\n[history]\ndir = {:?}\n", history.display().to_string());
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "full", port, &extra);
    let log = dir.path().join("daemon.log");
    // A real small filesystem for the state, in the daemon's own mount
    // namespace, where the machine allows it; else an injected write error.
    let tmpfs = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs \"$0\" && umount \"$0\"", state.to_str().unwrap()])
        .status()
        .is_ok_and(|s| s.success());
    let flag = dir.path().join("disk-full");
    let (daemon, fix): (Daemon, Box<dyn Fn(u32)>) = if tmpfs {
        let mut command = std::process::Command::new("unshare");
        command.args([
            "-m",
            "sh",
            "-c",
            "mount -t tmpfs -o size=64k tmpfs \"$0\" && exec \"$1\" run --config \"$2\"",
            state.to_str().unwrap(),
            env!("CARGO_BIN_EXE_mfawatch"),
            config.to_str().unwrap(),
        ]);
        let daemon = Daemon::spawn(command, port, &log);
        let state = state.clone();
        let fix = Box::new(move |pid: u32| {
            let ok = std::process::Command::new("nsenter")
                .args(["-t", &pid.to_string(), "-m", "mount", "-o", "remount,size=64m", state.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(ok.success());
        });
        (daemon, fix)
    } else {
        std::fs::write(&flag, b"").unwrap();
        let hook = format!("fail-writes={}", flag.display());
        let daemon = Daemon::start(&config, port, &log, &[("MFAWATCH_TEST_HOOKS", &hook)]);
        let flag = flag.clone();
        (daemon, Box::new(move |_| std::fs::remove_file(&flag).unwrap()))
    };
    daemon.wait_ready(Duration::from_secs(30));
    // Enough users that the snapshot no longer fits in 64 KiB.
    let messages: Vec<Vec<u8>> = Generator::new(TenantSpec {
        users: 3_000,
        records: 6_000,
        seed: 11,
        end: chrono::Utc::now(),
        format: Format::Envelope,
        records_per_message: 10,
        ..TenantSpec::default()
    })
    .collect();
    tansu.produce_to(TOPIC, 0, &messages, None);
    let failed =
        common::within(Duration::from_secs(60), || daemon.metric("mfawatch_checkpoints_total{result=\"error\"}") > 0.0);
    assert!(failed, "checkpoints did not fail (tmpfs: {tmpfs}): {}", daemon.log_text());
    wait_for("/readyz to say why", Duration::from_secs(30), || {
        daemon.get("/readyz").is_some_and(|(s, b)| s == 503 && b.contains("checkpoint failing"))
    });
    let committed = tansu.group_progress("full", TOPIC, 1)[0].0;
    assert!(committed < messages.len() as i64, "nothing committed past the last durable snapshot: {committed}");
    let pid = std::process::Command::new("pgrep")
        .args(["-f", &format!("mfawatch run --config {}", config.display())])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("0").trim().parse::<u32>().unwrap_or(0))
        .unwrap_or(0);
    fix(pid);
    wait_for("the next checkpoint to succeed", Duration::from_secs(60), || {
        tansu.group_progress("full", TOPIC, 1)[0].0 == messages.len() as i64
    });
    daemon.wait_ready(Duration::from_secs(30));
    assert_eq!(users(&daemon), replay_users(&messages), "nothing lost, nothing twice");
    let complaints = std::fs::read_to_string(&log).unwrap().matches("checkpoint failed").count();
    assert!((1..=2).contains(&complaints), "said once a minute, not at every checkpoint ({complaints})");
    common::record_reliability(
        "full disk at checkpoint",
        if tmpfs {
            "64 KiB tmpfs (unshare -m): not ready, nothing committed, recovered after remount"
        } else {
            "injected ENOSPC: not ready, nothing committed, recovered"
        },
    );
}

#[test]
fn a_broker_gone_longer_than_the_session_timeout_is_rejoined_without_loss_or_double_count() {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 2);
    let first = tenant(400, 12);
    let second = tenant(400, 13);
    tansu.produce(TOPIC, 2, &first);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "gone", port, "");
    let daemon = Daemon::start(&config, port, &dir.path().join("daemon.log"), &[]);
    daemon.wait_ready(Duration::from_secs(30));
    let sum = |t: &Tansu| t.group_progress("gone", TOPIC, 2).iter().map(|(c, _)| *c).sum::<i64>();
    wait_for("the first half", Duration::from_secs(60), || sum(&tansu) == first.len() as i64);
    // 40 s of silence: longer than session.timeout.ms (30 s).
    tansu.freeze();
    // The connection stays up; what gives the broker away is that it answers nothing.
    let noticed = common::within(Duration::from_secs(90), || {
        daemon.get("/readyz").is_some_and(|(s, body)| s == 503 && body.contains("have not answered an offset commit"))
    });
    assert!(noticed, "/readyz did not notice: {:?}\n{}", daemon.get("/readyz"), daemon.log_text());
    std::thread::sleep(Duration::from_secs(40));
    tansu.thaw();
    tansu.produce(TOPIC, 2, &second);
    wait_for("the second half", Duration::from_secs(120), || sum(&tansu) == (first.len() + second.len()) as i64);
    let ready = common::within(Duration::from_secs(60), || daemon.get("/readyz").is_some_and(|(s, _)| s == 200));
    assert!(ready, "not ready again: {:?}\n{}", daemon.get("/readyz"), daemon.log_text());
    let mut all = first.clone();
    all.extend(second.iter().cloned());
    assert_eq!(users(&daemon), replay_users(&all));
    assert_eq!(daemon.metric("mfawatch_messages_total"), all.len() as f64, "each message read once");
    common::record_reliability(
        "broker gone > session timeout",
        "40 s frozen: not ready meanwhile (commit unanswered), rejoined, read once each",
    );
}

#[test]
fn two_daemons_sharing_a_group_say_their_coverage_is_partial_unless_told_so() {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 4);
    tansu.produce(TOPIC, 4, &tenant(400, 14));
    let dir = tempfile::tempdir().unwrap();
    // `kafka_keys` go in the [kafka] section. (Each phase has its own group:
    // tansu keeps a killed static member's partitions past its session.)
    let start = |name: &str, group: &str, kafka_keys: &str| {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let port = free_port();
        let extra = "\n[kafka.librdkafka]\n\"partition.assignment.strategy\" = \"roundrobin\"\n";
        let config = write_config(&sub, &tansu.bootstrap(), TOPIC, group, port, extra);
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("[kafka]\n", &format!("[kafka]\ngroup_instance_id = \"{name}\"\n{kafka_keys}\n"));
        std::fs::write(&config, text).unwrap();
        Daemon::start(&config, port, &sub.join("daemon.log"), &[])
    };
    let a = start("a", "shared", "");
    let b = start("b", "shared", "");
    wait_for("both to hold half", Duration::from_secs(90), || {
        a.metric("mfawatch_partitions_assigned") == 2.0 && b.metric("mfawatch_partitions_assigned") == 2.0
    });
    wait_for("not ready, saying why", Duration::from_secs(60), || {
        a.get("/readyz").is_some_and(|(s, body)| s == 503 && body.contains("holding 2 of the 4 partitions"))
    });
    assert!(a.log_text().contains("another member of consumer group"), "the log says so too");
    drop((a, b));
    let a = start("c", "shared-on-purpose", "shared_group = true");
    let b = start("d", "shared-on-purpose", "shared_group = true");
    let halves = common::within(Duration::from_secs(90), || {
        a.metric("mfawatch_partitions_assigned") == 2.0 && b.metric("mfawatch_partitions_assigned") == 2.0
    });
    assert!(halves, "c: {}\nd: {}", a.log_text(), b.log_text());
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(a.get("/readyz").unwrap().0, 200, "a partitioned layout chosen on purpose is ready");
}
