//! The README's first command: `mfawatch demo` feeds a synthetic tenant
//! through the real pipeline and serves metrics and the API on localhost.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, wait_for};

#[test]
fn the_demo_serves_coverage_of_a_synthetic_tenant_then_stops_cleanly() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mfawatch"))
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--users",
            "500",
            "--backfill",
            "6000",
            "--rate",
            "200",
            "--seconds",
            "20",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // What the demo prints, as it prints it: the stories name their users.
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let printing = {
        let (printed, stdout) = (printed.clone(), child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let mut out = printed.lock().unwrap();
                out.push_str(&line.unwrap());
                out.push('\n');
            }
        })
    };
    let base = format!("http://127.0.0.1:{port}");
    let get = |path: &str| -> Option<serde_json::Value> {
        let mut r = ureq::get(&format!("{base}{path}")).call().ok()?;
        serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()
    };
    // The backfill spans seven days up to now: once it is read, the window ends today.
    let ends_today = |c: &serde_json::Value| {
        c["window_end"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|end| (end.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours().abs() < 24)
    };
    wait_for("the demo to classify its backfill", Duration::from_secs(15), || {
        get("/api/v1/coverage").is_some_and(|c| c["users"].as_u64().unwrap_or(0) > 300 && ends_today(&c))
    });
    let coverage = get("/api/v1/coverage").unwrap();
    let ratio = coverage["coverage_ratio"].as_f64().unwrap();
    assert!(ratio > 0.3 && ratio < 1.0, "{coverage}");
    assert_eq!(get("/readyz").unwrap()["ready"], true);
    let uncovered_admins = get("/api/v1/users?state=uncovered&privileged=true").unwrap();
    assert!(uncovered_admins["users"].is_array());
    // The demo plants legacy-auth sign-ins and MFA fatigue: the alerts say who.
    // (The backfill's are older than alerts.max_age: only live sign-ins alert.)
    wait_for("live sign-ins to alert", Duration::from_secs(15), || {
        get("/api/v1/alerts").is_some_and(|a| a["total"].as_u64().unwrap_or(0) > 0)
    });
    let alerts = get("/api/v1/alerts").unwrap();
    let listed = alerts["alerts"].as_array().unwrap();
    assert!(alerts["total"].as_u64().unwrap() > 0 && !listed.is_empty(), "{alerts}");
    assert!(listed.iter().any(|a| a["rule"] == "legacy_auth_success"), "{alerts}");
    // Who, where from, with what: what a SOC needs to act on the alert.
    for a in listed.iter().filter(|a| a["rule"] == "legacy_auth_success") {
        let s = &a["sign_in"];
        assert!(s["upn"].is_string() && s["ip"].is_string() && s["client_app"].is_string(), "{a}");
        assert!(a["summary"].as_str().unwrap().contains(s["upn"].as_str().unwrap()), "{a}");
    }
    // The directory changes during the run (the audit hub, live): each of its
    // rules alerts, and the new admin's detail says why they are privileged.
    let directory_rules = ["privileged_not_covered", "privileged_methods_changed", "break_glass_role_change"];
    wait_for("the directory story to alert", Duration::from_secs(15), || {
        directory_rules.iter().all(|rule| {
            get(&format!("/api/v1/alerts?rule={rule}")).is_some_and(|a| a["total"].as_u64().unwrap_or(0) > 0)
        })
    });
    let escalated = get("/api/v1/alerts?rule=privileged_methods_changed").unwrap();
    assert!(escalated["alerts"].as_array().unwrap().iter().any(|a| a["severity"] == "critical"), "{escalated}");
    let made = get("/api/v1/alerts?rule=privileged_not_covered").unwrap();
    let new_admin = made["alerts"][0]["sign_in"]["user_key"].as_str().unwrap().to_owned();
    let detail = get(&format!("/api/v1/users/{new_admin}")).unwrap();
    assert!(
        detail["privileged"] == true
            && detail["privileged_because"][0].as_str().unwrap().starts_with("Global Administrator (active)"),
        "{detail}"
    );
    let metrics = || {
        let mut text = String::new();
        ureq::get(&format!("{base}/metrics")).call().unwrap().body_mut().as_reader().read_to_string(&mut text).unwrap();
        text
    };
    assert!(metrics().contains("mfawatch_signins_total{"));
    // The new admin and the break-glass account hold a role (the gauges follow every few seconds).
    wait_for("the role holders in the gauge", Duration::from_secs(15), || {
        metrics().contains("mfawatch_privileged_accounts{source=\"roles\"} 2")
    });
    // The protections story: the posture in the gauges, and the users it
    // names with their per-user MFA and risk in the user detail.
    for gauge in [
        "mfawatch_mfa_policies{state=\"enabled\"} 1",
        "mfawatch_security_defaults{state=\"disabled\"} 1",
        "mfawatch_risky_users{level=\"high\",state=\"at_risk\"} 1",
        "mfawatch_risky_users{level=\"none\",state=\"remediated\"} 1",
    ] {
        wait_for(gauge, Duration::from_secs(15), || metrics().contains(gauge));
    }
    let told = |marker: &str| -> String {
        let out = printed.lock().unwrap();
        let line = out.lines().find(|l| l.contains(marker)).unwrap_or_else(|| panic!("{marker} in {out}"));
        line.rsplit_once("/api/v1/users/").map(|(_, id)| id.trim().to_owned()).unwrap()
    };
    wait_for("the protections story to be told", Duration::from_secs(15), || {
        printed.lock().unwrap().contains("(no alert)")
    });
    assert!(printed.lock().unwrap().contains(&format!("{base}/api/v1/protections")));
    let directory_of = |marker: &str| get(&format!("/api/v1/users/{}", told(marker))).unwrap()["directory"].clone();
    let mfa_off = directory_of("(per_user_mfa_disabled)");
    assert_eq!(mfa_off["per_user_mfa"]["state"], "disabled", "{mfa_off}");
    let risky = directory_of("(risky_user_unremediated)");
    assert!(risky["risk"]["high_open"] == true && risky["risk"]["state"] == "atRisk", "{risky}");
    let since = chrono::DateTime::parse_from_rfc3339(risky["risk"]["since"].as_str().unwrap()).unwrap();
    assert_eq!((chrono::Utc::now() - since.with_timezone(&chrono::Utc)).num_hours(), 30, "{risky}");
    let remediated = directory_of("(no alert)");
    assert!(
        remediated["risk"]["high_open"] == false
            && remediated["risk"]["detail"] == "userPerformedSecuredPasswordChange",
        "{remediated}"
    );
    // Its pages: the report-only switch (by the second admin, on the policy),
    // per-user MFA disabled and the unremediated high-risk user signing in;
    // not the remediated one, and no "enforcement lost" (the policy was
    // enforced when security defaults went off).
    let alerts_of =
        |rule: &str| get(&format!("/api/v1/alerts?rule={rule}")).unwrap()["alerts"].as_array().unwrap().clone();
    wait_for("the protections story to alert", Duration::from_secs(15), || {
        ["mfa_policy_weakened", "per_user_mfa_disabled", "risky_user_unremediated"]
            .iter()
            .all(|rule| !alerts_of(rule).is_empty())
    });
    let weakened = alerts_of("mfa_policy_weakened");
    assert_eq!(weakened.len(), 1, "{weakened:?}");
    let change = &weakened[0]["change"];
    assert!(
        change["before"].as_str().unwrap().starts_with("enabled")
            && change["after"].as_str().unwrap().starts_with("report_only"),
        "{change}"
    );
    assert!(change["actor"].as_str().unwrap().starts_with("adm-"), "{change}");
    let users_of = |rule: &str| -> Vec<String> {
        alerts_of(rule).iter().map(|a| a["sign_in"]["user_key"].as_str().unwrap_or_default().to_owned()).collect()
    };
    assert_eq!(users_of("per_user_mfa_disabled"), [told("(per_user_mfa_disabled)")]);
    assert_eq!(users_of("risky_user_unremediated"), [told("(risky_user_unremediated)")]);
    assert!(alerts_of("mfa_enforcement_lost").is_empty());
    assert!(alerts_of("break_glass_protection_change").is_empty());
    let protections = get("/api/v1/protections").unwrap();
    assert_eq!(protections["timeline"]["weakening"], 3, "{}", protections["timeline"]);
    assert_eq!(protections["risky_users"]["high_open"], 1, "{}", protections["risky_users"]);

    let mut err = String::new();
    let mut stderr = child.stderr.take().unwrap();
    let reading = std::thread::spawn(move || {
        stderr.read_to_string(&mut err).unwrap();
        err
    });
    let status = child.wait().unwrap();
    assert!(status.success());
    let err = reading.join().unwrap();
    printing.join().unwrap();
    let out = printed.lock().unwrap().clone();
    // It stops without an error (the producer goes before the cluster), and
    // keeps its files: the weekly report it told of runs on its history.
    assert!(!err.lines().any(|l| l.contains("ERROR")), "{err}");
    let kept = out.lines().find_map(|l| l.split_once(" stay in ").map(|(_, dir)| dir.trim().to_owned()));
    let kept = std::path::PathBuf::from(kept.unwrap_or_else(|| panic!("where the demo's files stay: {out}")));
    let command = out.lines().find(|l| l.contains("mfawatch report") && l.contains("--week")).expect("a --week report");
    let args: Vec<&str> = command.split_whitespace().skip(2).collect();
    let report_dir = tempfile::tempdir().unwrap();
    let mut report = Command::new(env!("CARGO_BIN_EXE_mfawatch"));
    report.arg("report");
    for pair in args.chunks(2) {
        match pair {
            ["--out", _] => report.arg("--out").arg(report_dir.path()),
            [flag, value] => report.args([flag, value]),
            other => panic!("{other:?} in {command}"),
        };
    }
    let ran = report.output().unwrap();
    assert!(ran.status.success(), "{command}: {}", String::from_utf8_lossy(&ran.stderr));
    assert!(report_dir.path().join("index.html").exists());
    std::fs::remove_dir_all(&kept).unwrap();
    assert!(out.contains(&format!("{base}/metrics")) && out.contains("/api/v1/coverage"), "{out}");
    // The in-process cluster keeps only a few MB per partition: the demo paces
    // its backfill to the consumer, and every message of it is read.
    assert!(
        out.contains("backfill: 6000 records in ")
            && out.contains("on the four sign-in hubs and the audit hub, all read"),
        "{out}"
    );
    assert!(out.contains("made Global Administrator while uncovered (privileged_not_covered)"), "{out}");
}
