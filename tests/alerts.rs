//! Alerts that name the user, with the real receivers: Debian's Alertmanager
//! and a webhook receiver, the daemon consuming a generated tenant from a
//! real broker (tansu). The generator says which (rule, user) pairs should
//! alert; the receivers must end up with exactly those — through a receiver
//! outage and a kill -9 of the daemon.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Alertmanager, Daemon, Tansu, Webhook, free_port, wait_for, write_config};
use mfawatch::generate::{Generator, Tenant, TenantSpec};
use rand::{Rng, SeedableRng};

const TOPIC: &str = "insights-logs-signinlogs";
const PARTITIONS: i32 = 4;

/// A day of a 300-user tenant, dense enough that a message spans about a
/// minute of sign-ins, with MFA fatigue attacks planted.
fn spec(seed: u64) -> TenantSpec {
    common::alerting_tenant(seed, 6_000)
}

struct Scenario {
    messages: Vec<Vec<u8>>,
    expected: BTreeSet<(String, String)>,
    dir: tempfile::TempDir,
}

/// The tenant's messages, the alerts the generator expects, and a config
/// directory with the privileged (admins) file.
fn scenario(seed: u64) -> Scenario {
    let spec = spec(seed);
    let mut generator = Generator::new(spec.clone());
    let messages: Vec<Vec<u8>> = generator.by_ref().collect();
    let expected = generator.expected_alerts();
    let dir = tempfile::tempdir().unwrap();
    let tenant = Tenant::new(&spec);
    let admins: Vec<String> = tenant.users.iter().filter(|u| u.admin).map(|u| u.upn.clone()).collect();
    std::fs::write(dir.path().join("privileged.txt"), admins.join("\n")).unwrap();
    Scenario { messages, expected, dir }
}

/// The daemon's extra configuration: admins privileged, break-glass
/// accounts excluded, no alert too old or too many for the test, `receivers`.
fn alerts_config(dir: &std::path::Path, seed: u64, receivers: &str) -> String {
    let break_glass: Vec<String> =
        Tenant::new(&spec(seed)).users.iter().filter(|u| u.break_glass).map(|u| format!("{:?}", u.upn)).collect();
    format!(
        "\n[coverage]\nprivileged_file = {:?}\nexcluded = [{}]\n\n[alerts]\nmax_age = \"30d\"\nrate_limit_per_minute = 1000000\n{receivers}\n",
        dir.join("privileged.txt").display().to_string(),
        break_glass.join(", ")
    )
}

/// Whether `group` has committed every partition to its end (what the broker
/// holds: at least `messages`, more if a producer retry stored one twice).
fn consumed(tansu: &Tansu, group: &str, messages: usize) -> bool {
    let progress = tansu.group_progress(group, TOPIC, PARTITIONS);
    progress.iter().all(|(committed, end)| committed == end)
        && progress.iter().map(|(_, end)| end).sum::<i64>() >= messages as i64
}

fn delivered(daemon: &Daemon) -> bool {
    daemon.metric("mfawatch_alerts_total") > 0.0 && daemon.metric("mfawatch_alert_outbox ") == 0.0
}

fn kinds(expected: &BTreeSet<(String, String)>) -> BTreeSet<&str> {
    expected.iter().map(|(r, _)| r.as_str()).collect()
}

#[test]
fn alertmanager_gets_exactly_the_expected_alerts_even_after_an_outage() {
    const SEED: u64 = 21;
    let s = scenario(SEED);
    assert!(
        ["legacy_auth_success", "privileged_single_factor", "risky_without_mfa", "break_glass_signin", "mfa_fatigue"]
            .iter()
            .all(|k| kinds(&s.expected).contains(k)),
        "the tenant has every kind of alert: {:?}",
        kinds(&s.expected)
    );
    let mut am = Alertmanager::start();
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, PARTITIONS);
    let port = free_port();
    let receivers = format!("[alerts.alertmanager]\nurls = [{:?}]\n", am.url);
    let config = write_config(
        s.dir.path(),
        &tansu.bootstrap(),
        TOPIC,
        "am",
        port,
        &alerts_config(s.dir.path(), SEED, &receivers),
    );
    let daemon = Daemon::start(&config, port, &s.dir.path().join("daemon.log"), &[]);
    daemon.wait_ready(Duration::from_secs(30));

    // Alertmanager goes down; the tenant's sign-ins arrive meanwhile.
    am.stop();
    tansu.produce(TOPIC, PARTITIONS, &s.messages);
    wait_for("the tenant to be consumed", Duration::from_secs(180), || consumed(&tansu, "am", s.messages.len()));
    wait_for("deliveries to fail", Duration::from_secs(30), || {
        daemon.metric("mfawatch_alert_deliveries_total{result=\"error\"") > 0.0
    });
    assert!(daemon.metric("mfawatch_alert_outbox ") > 0.0, "alerts wait");
    assert_eq!(daemon.get("/readyz").unwrap().0, 200, "a receiver down does not make the daemon unready");

    // Back: everything that waited arrives.
    am.restart();
    wait_for("the outbox to empty", Duration::from_secs(120), || delivered(&daemon));
    let got = am.rule_users();
    let missing: Vec<_> = s.expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&s.expected).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}\nextra {extra:?}");

    // What an alert carries.
    let alert = am.alerts().into_iter().find(|a| a["labels"]["rule"] == "legacy_auth_success").unwrap();
    for key in ["alertname", "severity", "rule", "user", "upn", "alert_id"] {
        assert!(alert["labels"][key].is_string(), "label {key}: {alert}");
    }
    for key in ["summary", "record_id", "correlation_id", "client_app", "ip", "country", "event_time"] {
        assert!(alert["annotations"][key].is_string(), "annotation {key}: {alert}");
    }
    assert!(alert["generatorURL"].as_str().unwrap().contains("/api/v1/users/"), "{alert}");
    // And the daemon lists them too.
    let listed = daemon.json("/api/v1/alerts?rule=mfa_fatigue&limit=2000");
    let fatigued = s.expected.iter().filter(|(r, _)| r == "mfa_fatigue").count();
    assert!(listed["total"].as_u64().unwrap() as usize >= fatigued, "{listed}");
    assert!(listed["alerts"][0]["summary"].as_str().unwrap().starts_with("MFA fatigue"), "{listed}");
}

#[test]
fn kill_9_of_the_daemon_loses_no_alert() {
    const SEED: u64 = 22;
    let s = scenario(SEED);
    let am = Alertmanager::start();
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, PARTITIONS);
    tansu.produce(TOPIC, PARTITIONS, &s.messages);
    let port = free_port();
    let receivers = format!("[alerts.alertmanager]\nurls = [{:?}]\n", am.url);
    let config = write_config(
        s.dir.path(),
        &tansu.bootstrap(),
        TOPIC,
        "kill",
        port,
        &alerts_config(s.dir.path(), SEED, &receivers),
    );
    let log = s.dir.path().join("daemon.log");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for round in 0..3 {
        let mut daemon = Daemon::start(&config, port, &log, &[]);
        daemon.wait_ready(Duration::from_secs(30));
        wait_for("some alerts", Duration::from_secs(60), || {
            daemon.metric("mfawatch_alert_deliveries_total{result=\"ok\"") > 0.0
                || consumed(&tansu, "kill", s.messages.len())
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(100..1500)));
        daemon.kill();
        eprintln!("round {round}: killed with {} alerts at Alertmanager", am.alerts().len());
    }
    let daemon = Daemon::start(&config, port, &log, &[]);
    daemon.wait_ready(Duration::from_secs(30));
    wait_for("the tenant to be consumed", Duration::from_secs(180), || consumed(&tansu, "kill", s.messages.len()));
    wait_for("the outbox to empty", Duration::from_secs(60), || daemon.metric("mfawatch_alert_outbox ") == 0.0);
    let got = am.rule_users();
    let missing: Vec<_> = s.expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&s.expected).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}\nextra {extra:?}");
}

#[test]
fn the_webhook_gets_a_documented_payload_with_the_token_and_stable_ids_across_a_restart() {
    const SEED_HOOK: u64 = 23;
    let s = scenario(SEED_HOOK);
    let hook = Webhook::start();
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, PARTITIONS);
    tansu.produce(TOPIC, PARTITIONS, &s.messages);
    let receivers =
        format!("[alerts.webhook]\nurl = {:?}\ntoken_env = \"HOOK_TOKEN\"\nplain_http_loopback = true\n", hook.url);
    let env = [("HOOK_TOKEN", "s3cret-token-value")];

    // An uninterrupted run, and one killed midway, each with its own state and group.
    let run = |group: &str, kills: usize| -> BTreeSet<String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(s.dir.path().join("privileged.txt"), dir.path().join("privileged.txt")).unwrap();
        let port = free_port();
        let extra = alerts_config(dir.path(), SEED_HOOK, &receivers);
        let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, group, port, &extra);
        let log = dir.path().join("daemon.log");
        let before = hook.alerts().len();
        for _ in 0..kills {
            let mut daemon = Daemon::start(&config, port, &log, &env);
            daemon.wait_ready(Duration::from_secs(30));
            wait_for("some alerts", Duration::from_secs(60), || hook.alerts().len() > before);
            std::thread::sleep(Duration::from_millis(300));
            daemon.kill();
        }
        let daemon = Daemon::start(&config, port, &log, &env);
        daemon.wait_ready(Duration::from_secs(30));
        wait_for("the tenant to be consumed", Duration::from_secs(180), || consumed(&tansu, group, s.messages.len()));
        wait_for("the outbox to empty", Duration::from_secs(60), || delivered(&daemon));
        assert!(!daemon.log_text().contains("s3cret-token-value"), "the token is never logged");
        hook.alerts()[before..].iter().map(|a| a["id"].as_str().unwrap().to_string()).collect()
    };
    let uninterrupted = run("hook-a", 0);
    let restarted = run("hook-b", 1);
    assert_eq!(restarted, uninterrupted, "the same alerts, with the same ids, whatever the restarts");

    for (headers, body) in hook.requests.lock().unwrap().iter() {
        assert!(headers.iter().any(|(k, v)| k == "authorization" && v == "Bearer s3cret-token-value"), "{headers:?}");
        assert_eq!(body["version"], 1);
        for alert in body["alerts"].as_array().unwrap() {
            for key in ["id", "rule", "severity", "summary", "count", "created_at", "sign_in"] {
                assert!(!alert[key].is_null(), "{key} in {alert}");
            }
            assert!(alert["sign_in"]["user_key"].is_string() && alert["sign_in"]["time"].is_string(), "{alert}");
        }
    }
    let rule_users: BTreeSet<(String, String)> = hook
        .alerts()
        .iter()
        .map(|a| (a["rule"].as_str().unwrap().to_string(), a["sign_in"]["user_key"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(rule_users, s.expected);
}

#[test]
fn the_alertmanager_routing_example_is_valid_and_pages_only_critical_alerts() {
    let example = common::root().join("config/alertmanager.yml");
    let check = std::process::Command::new("amtool")
        .arg("check-config")
        .arg(&example)
        .output()
        .expect("amtool (prometheus-alertmanager)");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let route = |labels: &[&str]| {
        let out = std::process::Command::new("amtool")
            .args(["config", "routes", "test"])
            .arg(format!("--config.file={}", example.display()))
            .args(labels)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // The labels mfawatch sends (daemon/alerts/deliver.rs), per severity.
    for rule in mfawatch::alerts::Rule::ALL {
        for severity in ["critical", "warning"] {
            let labels = [
                format!("alertname={}", rule.alertname()),
                format!("severity={severity}"),
                format!("rule={}", rule.as_str()),
                "source=mfawatch".to_owned(),
                "upn=ann@contoso.example".to_owned(),
            ];
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            let expected = if severity == "critical" { "soc-pager" } else { "soc-queue" };
            assert_eq!(route(&labels), expected, "{labels:?}");
        }
    }
    // Prometheus's rules over the metrics: the daemon's health pages when
    // critical (MfawatchDown above all), the tenant's numbers too; nothing
    // goes to a receiver that sends nowhere.
    assert_eq!(route(&["alertname=MfawatchDown", "severity=critical", "instance=mfawatch1:9464"]), "soc-pager");
    assert_eq!(route(&["alertname=TenantRiskySignInsWithoutMfa", "severity=critical"]), "soc-pager");
    assert_eq!(route(&["alertname=TenantLegacyAuthSucceeding", "severity=warning"]), "soc-queue");
    assert_eq!(route(&["alertname=SomethingElse", "severity=critical"]), "soc-queue");
    // Which family an alert is from shows in its name: Prometheus's rules
    // are Tenant* (counts) or Mfawatch* (health), the daemon's per-user
    // alerts never start so; an on-call never meets two near-twins.
    let rules = std::fs::read_to_string(common::root().join("dashboards/alerts.yml")).unwrap();
    let names: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert!(names.len() > 10);
    for name in &names {
        assert!(name.starts_with("Tenant") || name.starts_with("Mfawatch"), "{name}");
        assert_ne!(route(&[&format!("alertname={name}"), "severity=warning"]), "", "{name} is routed");
    }
    for rule in mfawatch::alerts::Rule::ALL {
        let daemon = rule.alertname();
        assert!(!daemon.starts_with("Tenant") && !daemon.starts_with("Mfawatch"), "{daemon}");
    }
}

#[test]
fn the_example_routing_pages_a_privileged_imap_sign_in_once_and_holds_back_the_counts() {
    // A real Alertmanager with config/alertmanager.yml as it is (its example
    // receivers cannot be reached: what matters is what it inhibits).
    let example = std::fs::read_to_string(common::root().join("config/alertmanager.yml")).unwrap();
    let am = common::Alertmanager::start_with(&example);
    let now = chrono::Utc::now();
    let alert = |labels: serde_json::Value| {
        serde_json::json!({
            "labels": labels,
            "startsAt": now.to_rfc3339(),
            "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
        })
    };
    let upn = "admin@contoso.example";
    let sent = serde_json::json!([
        alert(
            serde_json::json!({"alertname": "LegacyAuthSignIn", "severity": "critical", "source": "mfawatch", "rule": "legacy_auth_success", "upn": upn, "alert_id": "a1"})
        ),
        alert(
            serde_json::json!({"alertname": "PrivilegedSingleFactorSignIn", "severity": "critical", "source": "mfawatch", "rule": "privileged_single_factor", "upn": upn, "alert_id": "a2"})
        ),
        alert(
            serde_json::json!({"alertname": "TenantLegacyAuthSucceeding", "severity": "warning", "instance": "mfawatch1:9464", "protocol": "IMAP4"})
        ),
        alert(serde_json::json!({"alertname": "MfawatchDown", "severity": "critical", "instance": "mfawatch2:9464"})),
    ]);
    ureq::post(&format!("{}/api/v2/alerts", am.url))
        .header("content-type", "application/json")
        .send(sent.to_string().as_bytes())
        .unwrap();
    let state = |name: &str| -> (String, usize) {
        let alerts = am.alerts();
        let a = alerts.iter().find(|a| a["labels"]["alertname"] == name).unwrap_or_else(|| panic!("{name}"));
        (
            a["status"]["state"].as_str().unwrap_or("").to_owned(),
            a["status"]["inhibitedBy"].as_array().map_or(0, Vec::len),
        )
    };
    common::wait_for("Alertmanager to apply its inhibit rules", std::time::Duration::from_secs(15), || {
        state("PrivilegedSingleFactorSignIn").0 == "suppressed"
    });
    assert_eq!(state("LegacyAuthSignIn"), ("active".to_owned(), 0), "the one page");
    assert_eq!(state("PrivilegedSingleFactorSignIn").1, 1, "held back by the legacy page");
    assert_eq!(state("TenantLegacyAuthSucceeding").0, "suppressed", "the count waits while the daemon names the user");
    assert_eq!(state("MfawatchDown"), ("active".to_owned(), 0));
}

/// The supported high-availability layout: two daemons with their own
/// consumer groups, each reading everything and complete, both sending to
/// one Alertmanager, which keeps one alert for each pair of identical ones.
#[test]
fn two_daemons_in_their_own_groups_are_each_complete_and_alertmanager_keeps_one_of_each_alert() {
    const SEED: u64 = 23;
    let s = scenario(SEED);
    let am = Alertmanager::start();
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, PARTITIONS);
    let receivers = format!("[alerts.alertmanager]\nurls = [{:?}]\n", am.url);
    let start = |name: &str| {
        let sub = s.dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let port = free_port();
        let config =
            write_config(&sub, &tansu.bootstrap(), TOPIC, name, port, &alerts_config(s.dir.path(), SEED, &receivers));
        Daemon::start(&config, port, &sub.join("daemon.log"), &[])
    };
    let (a, b) = (start("mfawatch-a"), start("mfawatch-b"));
    a.wait_ready(Duration::from_secs(30));
    b.wait_ready(Duration::from_secs(30));
    tansu.produce(TOPIC, PARTITIONS, &s.messages);
    for (name, daemon) in [("mfawatch-a", &a), ("mfawatch-b", &b)] {
        if !common::within(Duration::from_secs(180), || consumed(&tansu, name, s.messages.len())) {
            panic!(
                "timed out after 180 s waiting for {name} to consume {} messages: (committed, end) per partition {:?}",
                s.messages.len(),
                tansu.group_progress(name, TOPIC, PARTITIONS)
            );
        }
        wait_for("the outbox to empty", Duration::from_secs(60), || delivered(daemon));
        assert_eq!(daemon.get("/readyz").unwrap().0, 200, "{name}: each holds all of its group's partitions");
    }
    // Each is complete: the same coverage, the same alerts made.
    assert_eq!(a.json("/api/v1/coverage")["states"], b.json("/api/v1/coverage")["states"]);
    let made = a.metric("mfawatch_alerts_total");
    assert!(made > 0.0);
    assert_eq!(made, b.metric("mfawatch_alerts_total"));
    // Alertmanager holds each alert once (the same labels from both), and exactly the expected ones.
    let held = am.alerts();
    let ids: BTreeSet<String> = held.iter().map(|x| x["labels"]["alert_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(held.len(), ids.len(), "one per alert id");
    assert_eq!(held.len() as f64, made, "both daemons' identical alerts are one in Alertmanager");
    assert_eq!(am.rule_users(), s.expected);
    common::record_reliability("HA: two groups, one Alertmanager", "each daemon complete; identical alerts kept once");
}
