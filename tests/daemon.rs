//! `mfawatch run` as an operator sees it: the API, the metrics, SIGHUP, a
//! broker outage, secrets, configuration errors.

mod common;

use std::process::Command;
use std::time::Duration;

use chrono::TimeZone;
use common::{Daemon, Prometheus, Tansu, free_port, wait_for, write_config};
use mfawatch::generate::{Format, Generator, Tenant, TenantSpec};

const TOPIC: &str = "insights-logs-signinlogs";
const DEAD_LETTER_TOPIC: &str = "mfawatch-dead-letters";

fn spec() -> TenantSpec {
    TenantSpec {
        users: 200,
        records: 3_000,
        days: 7,
        seed: 5,
        end: chrono::Utc.with_ymd_and_hms(2025, 6, 30, 0, 0, 0).unwrap(),
        format: Format::Envelope,
        records_per_message: 20,
        malformed_per_10k: 20,
        fatigue_per_10k: 0,
        redeliveries_per_10k: 0,
    }
}

/// A broker with the generated tenant on it, and a daemon that has read it all.
fn consumed(extra_config: &str, dir: &std::path::Path) -> (Tansu, Daemon) {
    let messages: Vec<Vec<u8>> = Generator::new(spec()).collect();
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 2);
    tansu.create_topic(DEAD_LETTER_TOPIC, 1);
    tansu.produce(TOPIC, 2, &messages);
    let port = free_port();
    let config = write_config(dir, &tansu.bootstrap(), TOPIC, "api-test", port, extra_config);
    let daemon = Daemon::start(&config, port, &dir.join("daemon.log"), &[]);
    daemon.wait_ready(Duration::from_secs(30));
    let ends = [messages.len() as i64 / 2, messages.len() as i64 - messages.len() as i64 / 2];
    wait_for("the tenant to be consumed", Duration::from_secs(120), || {
        tansu.group_progress("api-test", TOPIC, 2).iter().map(|(c, _)| *c).collect::<Vec<_>>() == ends
    });
    (tansu, daemon)
}

fn toml_list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", "))
}

#[test]
fn the_api_answers_who_is_outside_mfa_coverage() {
    let tenant = Tenant::new(&spec());
    let admins: Vec<String> = tenant.users.iter().filter(|u| u.admin).map(|u| u.upn.clone()).collect();
    let break_glass: Vec<String> = tenant.users.iter().filter(|u| u.break_glass).map(|u| u.upn.clone()).collect();
    let dir = tempfile::tempdir().unwrap();
    let privileged_file = dir.path().join("privileged.txt");
    std::fs::write(&privileged_file, format!("# admins\n{}\n", admins.join("\n"))).unwrap();
    let extra = format!(
        "\n[coverage]\nprivileged_file = {:?}\nexcluded = {}\n",
        privileged_file.display().to_string(),
        toml_list(&break_glass)
    );
    let (_tansu, daemon) = consumed(&extra, dir.path());

    let summary = daemon.json("/api/v1/coverage");
    let states = summary["states"].as_object().unwrap();
    let total: u64 = states.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, summary["users"].as_u64().unwrap());
    assert!(summary["users"].as_u64().unwrap() > 150, "{summary}");
    assert_eq!(summary["window_days"], 7);
    assert_eq!(summary["window_end"], "2025-06-29T23:59:59Z");
    let (covered, uncovered) = (states["covered"].as_f64().unwrap(), states["uncovered"].as_f64().unwrap());
    assert!((summary["coverage_ratio"].as_f64().unwrap() - covered / (covered + uncovered)).abs() < 1e-9);
    assert!(states["excluded"].as_u64().unwrap() >= 1, "break-glass accounts are excluded: {summary}");
    // The list and the summary say the same, state by state.
    for (state, n) in states {
        assert_eq!(&daemon.json(&format!("/api/v1/users?state={state}&limit=1"))["total"], n, "{state}");
    }
    assert_eq!(
        daemon.json("/api/v1/users?registration_pending=true&limit=1")["total"],
        summary["registration_pending"]
    );
    assert_eq!(daemon.json("/api/v1/users?state=never_mfa&limit=1")["total"], summary["never_mfa"]);

    // Privileged users outside coverage, the SOC's first question.
    let check_page = |page: &serde_json::Value, privileged: &[String]| {
        for u in page["users"].as_array().unwrap() {
            assert_eq!(u["state"], "uncovered");
            assert_eq!(u["privileged"], true);
            assert!(privileged.contains(&u["upn"].as_str().unwrap().to_string()), "{u}");
            let why = u["last_single_factor"].as_object().or(u["last_legacy"].as_object()).expect("why uncovered");
            assert!(why["time"].as_str().unwrap().starts_with("2025-06-"));
        }
    };
    let page = daemon.json("/api/v1/users?state=uncovered&privileged=true&limit=3");
    check_page(&page, &admins);
    let before = page["total"].as_u64().unwrap();
    // SIGHUP re-reads the privileged file: one more uncovered admin.
    let newcomer = daemon.json("/api/v1/users?state=uncovered&privileged=false&limit=1")["users"][0]["upn"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(&privileged_file, format!("{}\n{newcomer}  # new admin\n", admins.join("\n"))).unwrap();
    Command::new("kill").args(["-HUP", &daemon.pid().to_string()]).status().unwrap();
    wait_for("SIGHUP to add a privileged user", Duration::from_secs(10), || {
        daemon.json("/api/v1/users?state=uncovered&privileged=true&limit=3")["total"].as_u64().unwrap() == before + 1
    });
    let mut privileged = admins.clone();
    privileged.push(newcomer.clone());
    let page = daemon.json("/api/v1/users?state=uncovered&privileged=true&limit=10000");
    check_page(&page, &privileged);
    assert!(page["users"].as_array().unwrap().iter().any(|u| u["upn"] == newcomer.as_str()));
    let limited = daemon.json("/api/v1/users?state=uncovered&limit=2");
    assert_eq!(limited["users"].as_array().unwrap().len(), 2);

    let never = daemon.json("/api/v1/users?state=never_mfa&limit=10000");
    for u in never["users"].as_array().unwrap() {
        assert_eq!((u["state"].as_str(), u["never_mfa"].as_bool()), (Some("uncovered"), Some(true)));
        assert_eq!(u["counts"]["mfa"], 0);
    }

    // One user, by UPN in any case and by object id.
    let someone = &daemon.json("/api/v1/users?limit=1")["users"][0];
    let upn = someone["upn"].as_str().unwrap().to_uppercase();
    let by_upn = daemon.json(&format!("/api/v1/users/{upn}"));
    let by_id = daemon.json(&format!("/api/v1/users/{}", someone["key"].as_str().unwrap()));
    assert_eq!(by_upn, by_id);
    let (status, body) = daemon.get("/api/v1/users/nobody@contoso.example").unwrap();
    assert_eq!(status, 404, "{body}");
    let (status, body) = daemon.get("/api/v1/users?state=sideways").unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("state") && body.contains("uncovered"), "{body}");
    let (status, body) = daemon.get("/api/v1/users?state=uncovered&state=covered").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("more than once"), "{body}");
    let (status, body) = daemon.get("/api/v1/nothing-here").unwrap();
    assert_eq!(status, 404);
    assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"].is_string(), "{body}");
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    let post = agent.post(&format!("{}/api/v1/coverage", daemon.http)).send_empty().unwrap();
    assert_eq!(post.status().as_u16(), 405);

    assert_eq!(daemon.get("/healthz").unwrap().0, 200);
    assert_eq!(daemon.get("/readyz").unwrap().0, 200);
}

#[test]
fn metrics_read_well_and_never_carry_a_user_ip_or_id() {
    let dir = tempfile::tempdir().unwrap();
    let (_tansu, daemon) = consumed("", dir.path());
    // Lag comes with librdkafka's statistics, every 5 s.
    wait_for("consumer lag in /metrics", Duration::from_secs(15), || {
        daemon.get("/metrics").is_some_and(|(_, m)| m.contains("mfawatch_consumer_lag_messages{"))
    });
    let (status, text) = daemon.get("/metrics").unwrap();
    assert_eq!(status, 200);
    for name in [
        "mfawatch_signins_total{",
        "mfawatch_legacy_signins_total{",
        "mfawatch_risky_signins_total{",
        "mfawatch_mfa_failures_total{",
        "mfawatch_users{",
        "mfawatch_users_never_mfa{",
        "mfawatch_mfa_coverage_ratio{",
        "mfawatch_report_only_results_total{",
        "mfawatch_decode_errors_total{",
        "mfawatch_dead_letters_total",
        "mfawatch_consumer_lag_messages{",
        "mfawatch_event_time_lag_seconds_bucket",
        "mfawatch_last_checkpoint_timestamp_seconds",
        "mfawatch_checkpoint_duration_seconds_bucket",
        "mfawatch_records_total",
        "mfawatch_bytes_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    let guid = regex_like_guid();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(labels) = line.split_once('{').and_then(|(_, rest)| rest.split_once('}')).map(|(l, _)| l) else {
            continue;
        };
        assert!(!labels.contains('@'), "a UPN in a label: {line}");
        assert!(!guid(labels), "an id in a label: {line}");
        assert!(!labels.split('"').any(is_ipv4), "an IP in a label: {line}");
    }
    // The numbers add up: every record read is a sign-in, a directory record, skipped or malformed.
    let value = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    let records = value("mfawatch_records_total");
    let parts = value("mfawatch_signins_total{")
        + value("mfawatch_directory_records_total{")
        + value("mfawatch_skipped_records_total{")
        + value("mfawatch_decode_errors_total{");
    assert_eq!(records, parts);
    assert_eq!(records, 3_000.0);
    assert_eq!(value("mfawatch_dead_letters_total"), value("mfawatch_decode_errors_total{"));
    assert!(
        value("mfawatch_directory_records_total{category=\"AuditLogs\",family=\"other\",result=\"skipped\"}") > 0.0,
        "the generator's AuditLogs records (\"Update user\") are read as directory records and skipped"
    );
    assert_eq!(value("mfawatch_skipped_records_total{category=\"other\"}"), 0.0);
    assert!(value("mfawatch_decode_errors_total{") > 0.0);
}

#[test]
fn prometheus_scrapes_the_daemon_and_the_numbers_agree_with_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let (tansu, daemon) = consumed("", dir.path());
    let rules = common::root().join("dashboards/alerts.yml");
    let prometheus = Prometheus::start(daemon.http.trim_start_matches("http://"), &[&rules]);
    wait_for("a successful scrape", Duration::from_secs(30), || prometheus.value("up{job=\"mfawatch\"}") == Some(1.0));
    let summary = daemon.json("/api/v1/coverage");
    wait_for("coverage series", Duration::from_secs(15), || prometheus.value("sum(mfawatch_users)").is_some());
    assert_eq!(prometheus.value("sum(mfawatch_users)"), summary["users"].as_f64());
    assert_eq!(prometheus.value("sum(mfawatch_users{state=\"uncovered\"})"), summary["states"]["uncovered"].as_f64());
    let ratio = prometheus.value("mfawatch_mfa_coverage_ratio{user_type=\"all\"}").unwrap();
    assert!((ratio - summary["coverage_ratio"].as_f64().unwrap()).abs() < 1e-9);
    assert_eq!(
        prometheus.value(
            "sum(mfawatch_signins_total) + sum(mfawatch_directory_records_total) + sum(mfawatch_skipped_records_total) + sum(mfawatch_decode_errors_total)"
        ),
        Some(3000.0)
    );
    // Every panel of the Grafana dashboard is a valid query on real data.
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::root().join("dashboards/mfawatch.json")).unwrap())
            .unwrap();
    std::thread::sleep(Duration::from_secs(3)); // a few scrapes, so that rate() has points
    // The dashboard's daemon variable lists this daemon; its panels show it.
    let instance = daemon.http.trim_start_matches("http://").to_owned();
    assert_eq!(prometheus.query(&format!("mfawatch_build_info{{instance=\"{instance}\"}}")).len(), 1);
    // Links start where people reach the API (alerts.api_url; here http.listen).
    let info = prometheus.query(&format!("mfawatch_api_info{{instance=\"{instance}\"}}"));
    assert_eq!(info.len(), 1, "{info:?}");
    let api_url = info[0]["metric"]["url"].as_str().unwrap().to_owned();
    assert_eq!(api_url, daemon.http);
    let mut answered = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        // A row has no query.
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap().replace("$instance", &instance);
            let result = prometheus.query(&expr);
            answered += usize::from(!result.is_empty());
            if panel["type"] == "stat" {
                // A stat with a "no value" text (privileged: "not configured") may be empty.
                let most = 1;
                let least = usize::from(panel["fieldConfig"]["defaults"]["noValue"].is_null());
                assert!((least..=most).contains(&result.len()), "{}: {expr} gives one number", panel["title"]);
            }
            // Links lead to this daemon's API.
            for link in panel["links"].as_array().into_iter().flatten() {
                let url = link["url"].as_str().unwrap().replace("${api_url}", &api_url);
                assert!(url.starts_with(&api_url), "{}: {url}", panel["title"]);
                let path = url.trim_start_matches(&api_url);
                assert!(daemon.get(path).is_some_and(|(s, _)| s == 200), "{}: {url}", panel["title"]);
            }
        }
    }
    assert!(answered >= 25, "most panels show data ({answered})");
    // The alert rules load and evaluate on the daemon's metrics.
    wait_for("the alert rules to be evaluated", Duration::from_secs(15), || {
        prometheus.api("/api/v1/rules")["groups"].as_array().unwrap().iter().all(|g| {
            g["rules"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["health"] == "ok" && r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001")))
        })
    });
    // New sign-ins while Prometheus watches: the legacy ones raise the alert.
    let more: Vec<Vec<u8>> = Generator::new(TenantSpec { seed: 6, records: 2_000, ..spec() }).collect();
    tansu.produce(TOPIC, 2, &more);
    wait_for("TenantLegacyAuthSucceeding to fire", Duration::from_secs(30), || {
        prometheus.api("/api/v1/alerts")["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["labels"]["alertname"] == "TenantLegacyAuthSucceeding" && a["state"] == "firing")
    });
    // Its link is the investigation's next step: who, newest first.
    let alerts = prometheus.api("/api/v1/alerts");
    let firing = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "TenantLegacyAuthSucceeding")
        .unwrap();
    let api = firing["annotations"]["api"].as_str().unwrap();
    assert!(api.starts_with(&format!("{api_url}/")), "{api}");
    let users = daemon.json(api.trim_start_matches(&api_url));
    let users = users["users"].as_array().unwrap();
    assert!(!users.is_empty() && users.iter().all(|u| u["last_legacy"].is_object()), "{users:?}");
}

#[test]
fn the_alert_rules_pass_promtool() {
    let dir = common::root().join("dashboards");
    for args in [vec!["check", "rules", "alerts.yml"], vec!["test", "rules", "alerts_test.yml"]] {
        let out =
            Command::new("promtool").args(&args).current_dir(&dir).output().expect("promtool (package prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn malformed_records_go_to_the_dead_letter_topic_with_position_and_reason() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "\n[dead_letter]\ntopic = {DEAD_LETTER_TOPIC:?}\nfile = {:?}\n",
        dir.path().join("dead.ndjson").display().to_string()
    );
    let (tansu, daemon) = consumed(&extra, dir.path());
    drop(daemon);
    let file: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("dead.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!file.is_empty());
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", tansu.bootstrap())
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[DEAD_LETTER_TOPIC]).unwrap();
    let mut letters = Vec::new();
    let mut probes = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while letters.len() < file.len() && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let letter: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            if letter["reason"] == "probe" {
                // The start-up check that the topic takes dead letters, marked as such.
                assert_eq!(m.key(), Some(&b"mfawatch-probe"[..]));
                probes += 1;
                continue;
            }
            assert_eq!(m.key(), Some(letter["source"].as_str().unwrap().as_bytes()));
            letters.push(letter);
        }
    }
    assert_eq!(probes, 1, "one probe at start");
    assert_eq!(letters.len(), file.len(), "every dead letter is on the topic too");
    for letter in &letters {
        let source = letter["source"].as_str().unwrap();
        assert!(source.starts_with("insights-logs-signinlogs["), "{source}");
        assert!(letter["reason"].is_string() && letter["raw"].is_string() && letter["index"].is_u64(), "{letter}");
    }
}

#[test]
fn a_dead_letter_that_cannot_be_kept_stops_the_daemon_before_its_offset_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let messages: Vec<Vec<u8>> = Generator::new(spec()).collect();
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 1);
    tansu.produce(TOPIC, 1, &messages);
    let port = free_port();
    // Every write to /dev/full fails ("No space left on device"), and so does its fsync.
    let extra = "\n[dead_letter]\nfile = \"/dev/full\"\n";
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "dlq-refused", port, extra);
    let mut daemon = Daemon::start(&config, port, &dir.path().join("daemon.log"), &[]);
    wait_for("the daemon to stop", Duration::from_secs(60), || daemon.exited().is_some());
    assert_ne!(daemon.exited(), Some(0));
    let log = daemon.log_text();
    assert!(log.contains("cannot make dead letters durable") && log.contains("stopping"), "{log}");
    let committed = tansu.group_progress("dlq-refused", TOPIC, 1)[0].0;
    assert!(committed < messages.len() as i64, "not everything was committed: {committed}");
}

fn regex_like_guid() -> impl Fn(&str) -> bool {
    |s: &str| {
        s.as_bytes().windows(36).any(|w| {
            w.iter()
                .enumerate()
                .all(|(i, &b)| if [8, 13, 18, 23].contains(&i) { b == b'-' } else { b.is_ascii_hexdigit() })
        })
    }
}

fn is_ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4 && parts.iter().all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[test]
fn a_broker_outage_is_survived_and_reported_by_readyz() {
    let dir = tempfile::tempdir().unwrap();
    let mut tansu = Tansu::start();
    tansu.create_topic(TOPIC, 1);
    let port = free_port();
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "outage-test", port, "");
    let daemon = Daemon::start(&config, port, &dir.path().join("daemon.log"), &[]);
    daemon.wait_ready(Duration::from_secs(30));

    let broker_port = tansu.port;
    tansu.stop();
    wait_for("/readyz to say not ready", Duration::from_secs(60), || {
        daemon.get("/readyz").is_some_and(|(s, _)| s == 503)
    });
    let (_, body) = daemon.get("/readyz").unwrap();
    assert!(body.contains("not connected"), "{body}");
    assert_eq!(daemon.get("/healthz").unwrap().0, 200, "alive during the outage");

    let tansu = Tansu::start_on(broker_port);
    tansu.create_topic(TOPIC, 1);
    daemon.wait_ready(Duration::from_secs(90));
    let messages: Vec<Vec<u8>> = Generator::new(TenantSpec { records: 200, ..spec() }).collect();
    tansu.produce(TOPIC, 1, &messages);
    wait_for("records after the outage", Duration::from_secs(60), || {
        daemon.json("/api/v1/coverage")["users"].as_u64().unwrap_or(0) > 0
    });
}

const SECRET: &str = "Endpoint=sb://contoso-logs.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=Zm9vYmFyU0VDUkVUVkFMVUUxMjM0NTY3ODk=";

#[test]
fn the_event_hubs_connection_string_never_appears_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("eh.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nauth = \"eventhubs\"\neventhubs_namespace = \"contoso-logs\"\n\n[checkpoint]\ndir = {:?}\ninterval = \"1s\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n[log]\nlevel = \"debug\"\n",
            dir.path().join("state").display().to_string()
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let mut daemon = Daemon::start(&config, port, &log, &[("MFAWATCH_EVENTHUBS_CONNECTION_STRING", SECRET)]);
    wait_for("the API", Duration::from_secs(30), || daemon.get("/healthz").is_some());
    std::thread::sleep(Duration::from_secs(3));
    let mut seen = String::new();
    for path in ["/metrics", "/api/v1/coverage", "/api/v1/users", "/readyz", "/"] {
        seen.push_str(&daemon.get(path).unwrap().1);
    }
    assert_eq!(daemon.get("/readyz").unwrap().0, 503, "cannot reach the brokers");
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    seen.push_str(&String::from_utf8_lossy(&ps.stdout));
    let check = Command::new(env!("CARGO_BIN_EXE_mfawatch"))
        .args(["check-config", config.to_str().unwrap()])
        .env("MFAWATCH_EVENTHUBS_CONNECTION_STRING", SECRET)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let effective = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(
        effective.contains("contoso-logs") && effective.contains("MFAWATCH_EVENTHUBS_CONNECTION_STRING"),
        "{effective}"
    );
    seen.push_str(&effective);
    assert_eq!(daemon.terminate(), Some(0));
    seen.push_str(&daemon.log_text());
    assert!(
        daemon.log_text().contains("Kafka error") || daemon.log_text().contains("librdkafka"),
        "the daemon did try"
    );
    for fragment in ["Zm9vYmFyU0VDUkVUVkFMVUUxMjM0NTY3ODk", "SharedAccessKey=Zm9v"] {
        assert!(!seen.contains(fragment), "the secret leaked");
    }
}

#[test]
fn a_missing_or_wrong_secret_is_a_clear_error_without_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("eh.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nauth = \"eventhubs\"\neventhubs_namespace = \"contoso-logs\"\n\n[checkpoint]\ndir = {:?}\n",
            dir.path().display().to_string()
        ),
    )
    .unwrap();
    let run = |env: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mfawatch"));
        cmd.args(["run", "--config", config.to_str().unwrap()]).env_remove("MFAWATCH_EVENTHUBS_CONNECTION_STRING");
        if let Some(v) = env {
            cmd.env("MFAWATCH_EVENTHUBS_CONNECTION_STRING", v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let missing = run(None);
    assert!(missing.contains("MFAWATCH_EVENTHUBS_CONNECTION_STRING") && missing.contains("not set"), "{missing}");
    let wrong = run(Some("hunter2-not-a-connection-string"));
    assert!(wrong.contains("does not look like") && !wrong.contains("hunter2"), "{wrong}");
}

#[test]
fn configuration_errors_name_the_key_and_what_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[coverage]\nwindow = \"7d\"\ncount_noninteractive = true\n").unwrap();
    for args in [vec!["run", "--config", config.to_str().unwrap()], vec!["check-config", config.to_str().unwrap()]] {
        let out = Command::new(env!("CARGO_BIN_EXE_mfawatch")).args(&args).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("count_noninteractive") && err.contains("count_non_interactive") && err.contains("bad.toml"),
            "{err}"
        );
    }
}

#[test]
fn the_example_configs_check_and_print_the_effective_configuration() {
    let dir = common::root().join("config");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    // The credentials the examples name, as an operator puts them in /etc/mfawatch/credentials.
    let credentials = tempfile::tempdir().unwrap();
    let put = |name: &str, text: &str| std::fs::write(credentials.path().join(name), text).unwrap();
    put("eventhubs-connection-string", SECRET.replace("contoso-logs", "contoso-signin-logs").as_str());
    put("api-tokens", "0123456789abcdef0123456789abcdef\n");
    let openssl = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=mfawatch", "-days", "2"])
        .args(["-keyout", "key.pem", "-out", "cert.pem"])
        .current_dir(credentials.path())
        .output()
        .expect("openssl (tests/run installs it)");
    assert!(openssl.status.success(), "{}", String::from_utf8_lossy(&openssl.stderr));
    let pem = |f: &str| std::fs::read_to_string(credentials.path().join(f)).unwrap();
    put("entra-certificate", &format!("{}{}", pem("key.pem"), pem("cert.pem")));
    for path in &files {
        let file = path.display();
        let out = Command::new(env!("CARGO_BIN_EXE_mfawatch"))
            .args(["check-config", path.to_str().unwrap(), "--credentials-dir", credentials.path().to_str().unwrap()])
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .unwrap();
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("[coverage]") && text.contains("window = \"7days\""), "{text}");
    }
    // config/kafka.toml is the reference: every key the daemon has is in it.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mfawatch")).args(["check-config"]).arg(empty.path()).output().unwrap();
    let reference = std::fs::read_to_string(dir.join("kafka.toml")).unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim();
        if line.starts_with('[') {
            assert!(reference.contains(line), "config/kafka.toml lacks the section {line}");
        } else if let Some((key, _)) = line.split_once(" = ") {
            assert!(reference.contains(&format!("{key} =")), "config/kafka.toml lacks the key {key}");
        }
    }
}

#[test]
fn check_config_takes_config_like_run_and_says_when_the_secret_is_not_there() {
    let path = common::root().join("config/eventhubs.toml");
    let nowhere = tempfile::tempdir().unwrap();
    let check = |connection_string: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mfawatch"));
        cmd.args([
            "check-config",
            "--config",
            path.to_str().unwrap(),
            "--credentials-dir",
            nowhere.path().to_str().unwrap(),
        ])
        .env_remove("MFAWATCH_EVENTHUBS_CONNECTION_STRING")
        .env_remove("CREDENTIALS_DIRECTORY");
        if let Some(cs) = connection_string {
            cmd.env("MFAWATCH_EVENTHUBS_CONNECTION_STRING", cs);
        }
        cmd.output().unwrap()
    };
    // `run` would refuse to start without the secret: so does check-config, saying where it looked.
    let out = check(None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("would refuse to start")
            && err.contains("no Event Hubs connection string")
            && err.contains("MFAWATCH_EVENTHUBS_CONNECTION_STRING")
            && err.contains(&nowhere.path().display().to_string()),
        "{err}"
    );
    std::fs::write(nowhere.path().join("api-tokens"), "0123456789abcdef0123456789abcdef\n").unwrap();
    let out = check(Some(&SECRET.replace("contoso-logs", "contoso-signin-logs")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("connection string") && !err.contains("Zm9v"), "{err}");
    // A connection string of another namespace is refused, without its key.
    let out = check(Some(SECRET));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("\"contoso-logs\"") && err.contains("contoso-signin-logs") && !err.contains("Zm9v"), "{err}");
    // An emptied token file is refused as run refuses it (and a reload with it fails).
    std::fs::write(nowhere.path().join("api-tokens"), "\n").unwrap();
    let out = check(Some(&SECRET.replace("contoso-logs", "contoso-signin-logs")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("holds no token"), "{err}");
}
