//! The systemd units are valid for systemd itself, hardened, and the daemon
//! speaks the notify protocol they ask for.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const UNITS: [&str; 3] = ["mfawatch.service", "mfawatch-report.service", "mfawatch-report.timer"];

/// The units with the binary's real path, in a temporary folder.
fn units() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for unit in UNITS {
        let text = std::fs::read_to_string(common::root().join("systemd").join(unit)).unwrap();
        std::fs::write(dir.path().join(unit), text.replace("/usr/local/bin/mfawatch", env!("CARGO_BIN_EXE_mfawatch")))
            .unwrap();
    }
    dir
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(common::root().join("systemd/mfawatch.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/mfawatch run --config /etc/mfawatch/mfawatch.toml"));
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
    assert!(unit.contains("LoadCredential=mfawatch:/etc/mfawatch/credentials"), "secrets arrive as credentials");
    assert!(unit.contains("After=network-online.target time-sync.target"));
    assert!(!unit.contains("CONNECTION_STRING="), "never in the unit");
    let dir = units();
    let paths: Vec<_> = UNITS.iter().map(|u| dir.path().join(u)).collect();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .expect("systemd-analyze (package systemd)");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{report}");
    let complaints: Vec<&str> = report.lines().filter(|l| l.contains("mfawatch")).collect();
    assert!(complaints.is_empty(), "{report}");
}

#[test]
fn the_services_are_hardened_to_an_exposure_of_two_or_less() {
    let dir = units();
    for unit in ["mfawatch.service", "mfawatch-report.service"] {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=true"])
            .arg(dir.path().join(unit))
            .output()
            .expect("systemd-analyze");
        let report = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        let line = report.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("{report}"));
        let score: f64 = line
            .split(':')
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(score <= 2.0, "{unit}: {line}\n{report}");
        // Its memory holds the secrets: never in a core dump.
        let text = std::fs::read_to_string(common::root().join("systemd").join(unit)).unwrap();
        assert!(text.lines().any(|l| l.trim() == "LimitCORE=0"), "{unit} sets LimitCORE=0");
        common::record_reliability("systemd-analyze security", &format!("{unit}: exposure {score} (≤ 2.0)"));
    }
    // The weekly report's week is a UTC week: the timer fires when it is over everywhere.
    let timer = std::fs::read_to_string(common::root().join("systemd/mfawatch-report.timer")).unwrap();
    assert!(timer.lines().any(|l| l.starts_with("OnCalendar=") && l.trim_end().ends_with(" UTC")), "{timer}");
}

/// What the daemon sends to `NOTIFY_SOCKET`, read as it arrives by a thread,
/// as systemd reads it: a socket nobody reads fills (Linux queues 10
/// datagrams by default) and then blocks the daemon's next notification,
/// which would stall the loop that pets the watchdog.
struct Notifications(mpsc::Receiver<String>);

impl Notifications {
    fn read(socket: UnixDatagram) -> Notifications {
        let (tx, rx) = mpsc::channel();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        if tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                            return; // the test is over
                        }
                    }
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                    Err(e) => panic!("notify socket: {e}"),
                }
            }
        });
        Notifications(rx)
    }

    /// Whether a message `seen` accepts arrives before `until`.
    fn listen(&self, until: Instant, mut seen: impl FnMut(&str) -> bool) -> bool {
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.0.recv_timeout(left) {
                Ok(m) if seen(&m) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// WATCHDOG=1 messages heard in the next 3 s, after what came before is thrown away.
    fn pets_in_3_s(&self) -> usize {
        while self.0.try_recv().is_ok() {}
        let mut pets = 0;
        self.listen(Instant::now() + Duration::from_secs(3), |m| {
            pets += usize::from(m.contains("WATCHDOG=1"));
            false
        });
        pets
    }
}

/// A daemon reading an empty hub on tansu, told to notify a socket the test
/// listens on, with a 1 s watchdog and `hooks` (MFAWATCH_TEST_HOOKS, if any).
/// Used whole, not destructured: the fields drop in their order, the daemon
/// (which shows its log if the test fails) before the folder that holds the log.
struct Notified {
    tansu: common::Tansu,
    notifications: Notifications,
    daemon: common::Daemon,
    _dir: tempfile::TempDir,
}

fn notified(group: &str, hooks: Option<&str>) -> Notified {
    use common::{Daemon, Tansu, free_port, write_config};
    let tansu = Tansu::start();
    tansu.create_topic("insights-logs-signinlogs", 1);
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let notifications = Notifications::read(UnixDatagram::bind(&socket_path).unwrap());
    let port = free_port();
    let config = write_config(dir.path(), &tansu.bootstrap(), "insights-logs-signinlogs", group, port, "");
    let mut env = vec![("NOTIFY_SOCKET", socket_path.to_str().unwrap()), ("WATCHDOG_USEC", "1000000")];
    env.extend(hooks.map(|h| ("MFAWATCH_TEST_HOOKS", h)));
    let daemon = Daemon::start(&config, port, &dir.path().join("daemon.log"), &env);
    Notified { tansu, notifications, daemon, _dir: dir }
}

#[test]
fn the_daemon_says_ready_pets_the_watchdog_and_says_stopping() {
    let mut n = notified("notify", None);
    let heard = &n.notifications;
    assert!(heard.listen(Instant::now() + Duration::from_secs(30), |m| m.contains("READY=1")), "READY=1");
    let mut status = String::new();
    assert!(heard.listen(Instant::now() + Duration::from_secs(15), |m| {
        if m.contains("STATUS=consuming") {
            status = m.to_string();
        }
        !status.is_empty()
    }));
    assert!(status.contains("partition") && status.contains("users"), "{status}");
    let pets = heard.pets_in_3_s();
    assert!(pets >= 3, "WATCHDOG=1 keeps coming ({pets} in 3 s)");
    let _ = Command::new("kill").args(["-TERM", &n.daemon.pid().to_string()]).status();
    assert!(
        n.notifications.listen(Instant::now() + Duration::from_secs(30), |m| m.contains("STOPPING=1")),
        "STOPPING=1"
    );
    assert_eq!(n.daemon.terminate(), Some(0));
}

#[test]
fn a_stalled_pipeline_stops_petting_the_watchdog() {
    use mfawatch::generate::{Generator, TenantSpec};
    // Every message stalls the pipeline for a minute (a test hook).
    let n = notified("stall", Some("pause=pipeline:60000"));
    let heard = &n.notifications;
    assert!(heard.listen(Instant::now() + Duration::from_secs(30), |m| m.contains("WATCHDOG=1")), "pets while idle");
    // The group's join can take a while on a loaded machine: produce once the
    // partition is the daemon's, so that the wait below is for the stall alone.
    common::wait_for("the partition to be assigned", Duration::from_secs(90), || {
        n.daemon.log_text().contains("partitions assigned")
    });
    assert!(heard.pets_in_3_s() >= 3, "pets while it holds the partition, idle");
    n.tansu.produce(
        "insights-logs-signinlogs",
        1,
        &Generator::new(TenantSpec { records: 40, ..TenantSpec::default() }).collect::<Vec<_>>(),
    );
    common::wait_for("the pipeline to stall", Duration::from_secs(30), || {
        n.daemon.log_text().contains("paused at pipeline")
    });
    // Whatever was in flight arrives; after that, silence.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(heard.pets_in_3_s(), 0, "no WATCHDOG=1 while the pipeline is stalled");
}
