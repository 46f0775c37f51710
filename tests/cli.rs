//! The `mfawatch classify` and `mfawatch generate` commands, as a user runs them.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn mfawatch(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mfawatch"))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mfawatch runs");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn sample(name: &str) -> String {
    common::root().join("../shared/samples/public").join(name).to_string_lossy().into_owned()
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect()
}

const KEYS: [&str; 16] = [
    "id",
    "category",
    "time",
    "user_key",
    "upn",
    "subject",
    "interactive",
    "labels",
    "client_class",
    "client_app",
    "risk_level",
    "mfa_method",
    "mfa_failure",
    "outcome_code",
    "ca_status",
    "report_only",
];

#[test]
fn classify_prints_one_verdict_per_record_with_the_documented_keys() {
    let out = mfawatch(&["classify", &sample("panther/azure_legacyauth.ndjson")], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let verdicts = lines(&out);
    assert_eq!(verdicts.len(), 3);
    for v in &verdicts {
        for key in KEYS {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
    }
    let homer = &verdicts[2];
    assert_eq!(homer["upn"], "homer.simpson@springfield.org");
    assert_eq!(homer["labels"], serde_json::json!(["mfa_satisfied", "legacy_auth"]));
    // The sign-in's own time (createdDateTime), not when the log record was written (time).
    assert_eq!(homer["time"], "2023-07-21T05:03:52.160562400Z");
    assert_eq!(homer["mfa_failure"], serde_json::Value::Null);
    assert_eq!(homer["client_class"], "legacy");
}

#[test]
fn classify_reads_stdin_and_gzip() {
    let text = std::fs::read(sample("elastic/test-signinlogs-sample.log")).unwrap();
    let out = mfawatch(&["classify", "-"], Some(&text));
    assert!(out.status.success());
    assert_eq!(lines(&out).len(), 2);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&text).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), gz.finish().unwrap()).unwrap();
    let out = mfawatch(&["classify", file.path().to_str().unwrap()], None);
    assert!(out.status.success());
    assert_eq!(lines(&out).len(), 2);

    // A copy cut short: the error says where and why, what came before is read.
    let compressed = std::fs::read(file.path()).unwrap();
    std::fs::write(file.path(), &compressed[..compressed.len() * 3 / 4]).unwrap();
    let out = mfawatch(&["classify", file.path().to_str().unwrap()], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("broken at line") && err.contains("truncated"), "{err}");
}

#[test]
fn summary_answers_how_many_legacy_sign_ins_are_in_an_export() {
    let out = mfawatch(
        &[
            "classify",
            "--summary",
            &sample("panther/azure_legacyauth.ndjson"),
            &sample("panther/azure_graph_session_multiple_ips.ndjson"),
        ],
        None,
    );
    assert!(out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["sign_ins"], 4);
    let all = |k: &str| summary[k]["total"].as_u64().unwrap();
    assert_eq!(
        summary["records"].as_u64().unwrap(),
        4 + all("directory") + all("skipped") + all("malformed"),
        "records as mfawatch_records_total counts them"
    );
    assert_eq!(summary["labels"]["legacy_auth"], 2);
    assert_eq!(summary["labels"]["risky"], 0, "every label is listed, zero or not");
    assert_eq!(summary["malformed"]["total"], 2);
    assert_eq!(summary["malformed"]["by"]["bad_outcome"], 2);
    assert_eq!(summary["legacy_clients"]["Authenticated SMTP"], 2);
}

#[test]
fn malformed_records_are_reported_dead_lettered_and_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.ndjson");
    let input = format!(
        "{}\n{{broken json\n",
        r#"{"records":[{"time":"2025-01-15T09:30:25Z","category":"SignInLogs","resultType":0,"properties":{"userId":"u"}},{"category":"SignInLogs","resultType":0,"properties":{}}]}"#
    );
    let out = mfawatch(&["classify", "--dead-letter", dead.to_str().unwrap(), "-"], Some(input.as_bytes()));
    assert!(out.status.success(), "malformed input is not fatal");
    assert_eq!(lines(&out).len(), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("<stdin>:1 record 1") && stderr.contains("no time"), "{stderr}");
    assert!(stderr.contains("<stdin>:2") && stderr.contains("not valid JSON"), "{stderr}");
    let letters: Vec<serde_json::Value> =
        std::fs::read_to_string(&dead).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0]["source"], "<stdin>:1");
    assert_eq!(letters[0]["index"], 1);
    assert_eq!(letters[0]["reason"], "missing_time");
    assert_eq!(letters[0]["raw"], r#"{"category":"SignInLogs","resultType":0,"properties":{}}"#);
    assert_eq!(letters[1]["reason"], "syntax");
    assert_eq!(letters[1]["raw"], "{broken json");
    assert!(letters[1].get("index").is_none());
}

#[test]
fn unreadable_input_fails_with_a_message_naming_it() {
    let out = mfawatch(&["classify", "/nonexistent/export.json"], None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/export.json"), "{stderr}");
}

#[test]
fn an_unreadable_input_does_not_stop_the_others_from_being_read() {
    let fixture = &common::root().join("tests/fixtures/graph-signins.json").to_string_lossy().into_owned();
    let out = mfawatch(&["classify", "--summary", "/nonexistent/export.json", fixture], None);
    assert_eq!(out.status.code(), Some(1));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["sign_ins"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["unreadable"], serde_json::json!(["/nonexistent/export.json"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 2 inputs could not be read"));
}

#[test]
fn an_output_that_cannot_be_written_stops_classify_and_is_not_blamed_on_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("tenant.ndjson");
    let generated = mfawatch(&["generate", "--users", "50", "--records", "3000", "--format", "ndjson"], None);
    std::fs::write(&input, &generated.stdout).unwrap();
    let full = std::fs::File::options().write(true).open("/dev/full").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mfawatch"))
        .args(["classify", input.to_str().unwrap(), input.to_str().unwrap()])
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot write the output") && !stderr.contains("cannot read"), "{stderr}");
}

#[test]
fn replay_opens_every_input_before_it_reads_any() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mfawatch.toml");
    std::fs::write(&config, format!("[checkpoint]\ndir = {:?}\n", dir.path().join("state").display().to_string()))
        .unwrap();
    let fixture = &common::root().join("tests/fixtures/graph-signins.json").to_string_lossy().into_owned();
    let out = mfawatch(&["replay", "--config", config.to_str().unwrap(), fixture, "/nonexistent/export.json"], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/export.json") && stderr.contains("nothing was replayed"), "{stderr}");
    assert!(!dir.path().join("state").join("state.snapshot").exists());
    let replay = |extra: &[&str]| {
        let mut args = vec!["replay", "--config", config.to_str().unwrap(), fixture];
        args.extend_from_slice(extra);
        let out = mfawatch(&args, None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (
            String::from_utf8_lossy(&out.stderr).to_string(),
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        )
    };
    let (first, summary) = replay(&[]);
    assert!(first.contains("replayed 1 input(s)"), "{first}");
    // The same file again is not read twice into the same state.
    let (again, unchanged) = replay(&[]);
    assert!(again.contains("already replayed into this state") && again.contains("replayed 0 input(s)"), "{again}");
    assert_eq!(summary, unchanged);
    let (forced, _) = replay(&["--again"]);
    assert!(forced.contains("replayed 1 input(s)"), "{forced}");
    // A file that changed since is refused: what it held then would count again.
    let grown = dir.path().join("grown.json");
    std::fs::copy(fixture, &grown).unwrap();
    let args = ["replay", "--config", config.to_str().unwrap(), grown.to_str().unwrap()];
    assert!(mfawatch(&args, None).status.success());
    let mut text = std::fs::read(&grown).unwrap();
    text.extend_from_slice(b"\n");
    std::fs::write(&grown, text).unwrap();
    let out = mfawatch(&args, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has changed since"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_usage_fails_with_usage_help() {
    let out = mfawatch(&["classify", "--no-such-flag"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
}

#[test]
fn config_changes_the_legacy_list_and_risk_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mfawatch.toml");
    std::fs::write(&config, "[classify]\nlegacy_clients = [\"Browser\"]\nrisk_threshold = \"high\"\n").unwrap();
    let out = mfawatch(
        &["classify", "--config", config.to_str().unwrap(), &sample("panther/azure_multiple_protection_alerts.ndjson")],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for v in lines(&out) {
        assert!(v["labels"].as_array().unwrap().contains(&"legacy_auth".into()), "{v}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[classify]\nrisk_treshold = \"high\"\n").unwrap();
    let out = mfawatch(&["classify", "--config", bad.to_str().unwrap(), "-"], Some(b""));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("risk_treshold"));
}

#[test]
fn generate_is_deterministic_and_classify_reads_it() {
    let args = ["generate", "--users", "100", "--records", "300", "--seed", "7", "--end", "2025-06-30T00:00:00Z"];
    let a = mfawatch(&args, None);
    let b = mfawatch(&args, None);
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    let out = mfawatch(&["classify", "--summary", "-"], Some(&a.stdout));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let skipped = summary["skipped"]["total"].as_u64().unwrap() + summary["directory"]["total"].as_u64().unwrap();
    assert_eq!(summary["sign_ins"].as_u64().unwrap() + skipped, 300);
    assert_eq!(summary["malformed"]["total"], 0);
}
