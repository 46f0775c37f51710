//! Hostile input, by name: each is counted and dead-lettered with a reason
//! (or, where the JSON is sound and unambiguous, read), the run goes on,
//! nothing panics. Files go through `mfawatch replay`; what only Kafka can
//! carry (a message header) goes through the daemon and a real broker.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::{Daemon, Tansu, free_port, wait_for, write_config};

/// One well-formed interactive sign-in with MFA, as Event Hubs sends it.
fn record() -> serde_json::Value {
    serde_json::json!({
        "time": "2025-06-20T10:00:00Z",
        "category": "SignInLogs",
        "operationName": "Sign-in activity",
        "resultType": "0",
        "callerIpAddress": "203.0.113.7",
        "properties": {
            "id": "11111111-2222-3333-4444-555555555555",
            "createdDateTime": "2025-06-20T10:00:00Z",
            "userPrincipalName": "ann@contoso.example",
            "userId": "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
            "userType": "Member",
            "appDisplayName": "Office 365 Exchange Online",
            "clientAppUsed": "Browser",
            "isInteractive": true,
            "status": {"errorCode": 0},
            "authenticationRequirement": "multiFactorAuthentication",
            "authenticationDetails": [
                {"authenticationMethod": "Password", "succeeded": true},
                {"authenticationMethod": "Mobile app notification", "succeeded": true}
            ],
            "riskLevelDuringSignIn": "none",
            "riskState": "none",
            "conditionalAccessStatus": "success",
            "location": {"city": "Utrecht", "countryOrRegion": "NL"}
        }
    })
}

fn envelope(records: &[serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "records": records })).unwrap()
}

/// `envelope(&[record()])` with `from` replaced by `to` in its bytes.
fn edited(from: &str, to: &[u8]) -> Vec<u8> {
    let text = envelope(&[record()]);
    let at = text.windows(from.len()).position(|w| w == from.as_bytes()).unwrap_or_else(|| panic!("{from}"));
    [&text[..at], to, &text[at + from.len()..]].concat()
}

struct Outcome {
    /// Records the replay read (`records` of its last line).
    records: u64,
    /// (where, reason, error) of each dead letter.
    dead: Vec<(String, String, String)>,
    users: u64,
    stderr: String,
}

/// Replays `messages` (one per line) with a dead-letter file.
fn replay(messages: &[Vec<u8>]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("hostile.ndjson");
    let mut file = std::fs::File::create(&input).unwrap();
    for m in messages {
        assert!(!m.contains(&b'\n'), "one message per line");
        file.write_all(m).unwrap();
        file.write_all(b"\n").unwrap();
    }
    drop(file);
    let dead_letters = dir.path().join("dead-letters.ndjson");
    let config = dir.path().join("mfawatch.toml");
    std::fs::write(
        &config,
        format!(
            "[checkpoint]\ndir = {:?}\n[dead_letter]\nfile = {:?}\n[history]\nenabled = false\n",
            dir.path().join("state").display().to_string(),
            dead_letters.display().to_string()
        ),
    )
    .unwrap();
    let out = common::replay(&config, &[&input], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let records = stderr
        .split("input(s): ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dead = std::fs::read_to_string(&dead_letters)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            // The input's file name (the temporary folder varies), and the record's index.
            let file = v["source"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
            let source = match v["index"].as_u64() {
                Some(i) => format!("{file} record {i}"),
                None => file,
            };
            (source, v["reason"].as_str().unwrap().to_owned(), v["error"].as_str().unwrap().to_owned())
        })
        .collect();
    Outcome { records, dead, users: summary["users"].as_u64().unwrap(), stderr }
}

/// The one dead letter of a one-message replay: its reason and error.
fn dead_lettered(message: Vec<u8>) -> (String, String) {
    let out = replay(&[message]);
    assert_eq!(out.dead.len(), 1, "{}", out.stderr);
    assert_eq!(out.users, 0);
    let (_, reason, error) = out.dead.into_iter().next().unwrap();
    (reason, error)
}

#[test]
fn a_10_mb_message_that_is_one_string_is_dead_lettered_with_a_short_error() {
    let message = [b"\"".as_slice(), &vec![b'a'; 10 * 1024 * 1024], b"\""].concat();
    let out = replay(&[message, envelope(&[record()])]);
    assert_eq!(out.dead.len(), 1);
    let (source, reason, error) = &out.dead[0];
    assert_eq!((source.as_str(), reason.as_str()), ("hostile.ndjson:1 record 0", "field_type"), "{source} {reason}");
    assert!(error.len() < 1_000, "the error quotes the beginning only ({} bytes)", error.len());
    assert!(out.stderr.len() < 20_000, "and so does the log ({} bytes)", out.stderr.len());
    assert_eq!(out.users, 1, "the next message is read");
    common::record_reliability(
        "hostile: 10 MB string",
        "dead-lettered (field_type), error and log bounded, next message read",
    );
}

#[test]
fn nesting_10000_deep_is_dead_lettered_where_it_is_read_and_skipped_where_it_is_not() {
    let deep = |inner: &[u8]| [b"[".repeat(10_000).as_slice(), inner, &b"]".repeat(10_000)].concat();
    // The whole message.
    let (reason, error) = dead_lettered(deep(b"1"));
    assert!(reason == "field_type" || reason == "syntax", "{reason}: {error}");
    // In `status`, which the classifier reads.
    let (reason, error) = dead_lettered(edited("{\"errorCode\":0}", &deep(b"0")));
    assert!(reason == "field_type" || reason == "syntax", "{reason}: {error}");
    assert!(error.contains("status") || error.contains("recursion"), "{error}");
    // In a field nobody reads: skipped without recursion, the sign-in counts.
    let nested = [b"{\"a\":".repeat(10_000).as_slice(), b"1", &b"}".repeat(10_000)].concat();
    let message = edited("\"riskState\"", &[b"\"unread\":".as_slice(), &nested, b",\"riskState\""].concat());
    let out = replay(&[message]);
    assert!(out.dead.is_empty(), "{:?}", out.dead);
    assert_eq!(out.users, 1);
    common::record_reliability(
        "hostile: 10,000-deep nesting",
        "dead-lettered where read, skipped without recursion where not",
    );
}

#[test]
fn invalid_utf8_inside_a_string_is_dead_lettered() {
    let (reason, error) = dead_lettered(edited("ann@contoso", b"ann\xff\xfe@contoso"));
    assert_eq!(reason, "syntax", "{error}");
    assert!(error.contains("unicode") || error.contains("UTF-8"), "{error}");
    common::record_reliability("hostile: invalid UTF-8", "dead-lettered (syntax)");
}

#[test]
fn numbers_out_of_range_are_dead_lettered_and_minus_zero_is_zero() {
    // Without `resultType`, `status.errorCode` alone gives the outcome.
    let code = |text: &[u8]| {
        let mut r = record();
        r.as_object_mut().unwrap().remove("resultType");
        let message = envelope(&[r]);
        let from = b"\"errorCode\":0";
        let at = message.windows(from.len()).position(|w| w == from).unwrap();
        [&message[..at], b"\"errorCode\":", text, &message[at + from.len()..]].concat()
    };
    let (reason, error) = dead_lettered(code(b"1e400"));
    assert!(reason == "syntax" || reason == "field_type", "{reason}: {error}");
    assert!(error.contains("out of range") || error.contains("number"), "{error}");
    // -0 is the number zero (JSON has no other): a success.
    let out = replay(&[code(b"-0")]);
    assert!(out.dead.is_empty(), "{:?}", out.dead);
    assert_eq!(out.users, 1);
    // A fraction is no error code; -7 and 1e3 are integers (failures).
    let (reason, error) = dead_lettered(code(b"0.5"));
    assert_eq!(reason, "bad_outcome", "{error}");
    for text in [b"-7".as_slice(), b"1e3"] {
        let out = replay(&[code(text)]);
        assert!(out.dead.is_empty(), "{:?}", out.dead);
    }
    common::record_reliability("hostile: 1e400, -0, 0.5", "1e400 and 0.5 dead-lettered, -0 read as 0");
}

#[test]
fn duplicate_keys_with_conflicting_values_are_dead_lettered_naming_the_key() {
    for (from, to, key) in [
        ("\"status\":{\"errorCode\":0}", "\"status\":{\"errorCode\":0},\"status\":{\"errorCode\":50126}", "status"),
        ("\"errorCode\":0", "\"errorCode\":0,\"ErrorCode\":50126", "errorCode"),
        ("\"category\":\"SignInLogs\"", "\"category\":\"SignInLogs\",\"category\":\"AuditLogs\"", "category"),
        (
            "\"userPrincipalName\":\"ann@contoso.example\"",
            "\"userPrincipalName\":\"ann@contoso.example\",\"userPrincipalName\":\"bob@contoso.example\"",
            "userPrincipalName",
        ),
        (
            "\"authenticationMethod\":\"Password\",\"succeeded\":true",
            "\"authenticationMethod\":\"Password\",\"succeeded\":true,\"succeeded\":false",
            "succeeded",
        ),
        ("\"countryOrRegion\":\"NL\"", "\"countryOrRegion\":\"NL\",\"countryOrRegion\":\"RU\"", "countryOrRegion"),
    ] {
        let (reason, error) = dead_lettered(edited(from, to.as_bytes()));
        assert_eq!(reason, "duplicate_key", "{key}: {error}");
        assert!(error.contains(&format!("`{key}`")), "{key}: {error}");
    }
    // The same key on both layers (top level and properties) is the documented layering, not a duplicate.
    let out = replay(&[edited("\"properties\":{", b"\"userType\":\"Member\",\"properties\":{")]);
    assert!(out.dead.is_empty(), "{:?}", out.dead);
    common::record_reliability("hostile: duplicate keys", "6 cases dead-lettered (duplicate_key) naming the key");
}

#[test]
fn every_field_the_classifier_reads_given_the_wrong_type_is_dead_lettered_or_read_alike() {
    // Fields and a value of a type they never have.
    let fields = [
        "userPrincipalName",
        "userId",
        "userType",
        "appDisplayName",
        "clientAppUsed",
        "isInteractive",
        "status",
        "authenticationRequirement",
        "authenticationDetails",
        "riskLevelDuringSignIn",
        "riskState",
        "conditionalAccessStatus",
        "location",
        "createdDateTime",
        "id",
    ];
    let wrong: [serde_json::Value; 4] =
        [serde_json::json!({"x": 1}), serde_json::json!([1, 2]), serde_json::json!(3.25), serde_json::json!(-7)];
    let mut messages = Vec::new();
    for field in fields {
        for value in &wrong {
            let mut r = record();
            r["properties"][field] = value.clone();
            messages.push(envelope(&[r]));
        }
    }
    let out = replay(&messages);
    assert_eq!(out.records, messages.len() as u64, "every record accounted for: {}", out.stderr);
    for (source, reason, error) in &out.dead {
        assert!(!reason.is_empty() && !error.is_empty(), "{source}");
        assert!(
            ["field_type", "missing_time", "bad_time", "missing_outcome", "bad_outcome"].contains(&reason.as_str()),
            "{source}: {reason}: {error}"
        );
    }
    // Objects and arrays where text belongs are never read as text.
    assert!(out.dead.len() >= fields.len(), "{} of {}", out.dead.len(), messages.len());
    common::record_reliability("hostile: wrong types", "15 fields x 4 types: each accounted for, none read as text");
}

#[test]
fn an_envelope_of_100000_records_is_read_whole() {
    let mut records = Vec::with_capacity(100_000);
    for i in 0..100_000u32 {
        let mut r = record();
        r["properties"]["id"] = serde_json::json!(format!("00000000-0000-4000-8000-{i:012}"));
        r["properties"]["userPrincipalName"] = serde_json::json!(format!("user{}@contoso.example", i % 5_000));
        r["properties"]["userId"] = serde_json::json!(format!("10000000-0000-4000-8000-{:012}", i % 5_000));
        if i == 77_777 {
            r["properties"]["status"] = serde_json::json!("broken");
        }
        records.push(r);
    }
    let out = replay(&[envelope(&records)]);
    assert_eq!(out.records, 100_000, "{}", out.stderr);
    assert_eq!(out.users, 5_000, "{}", out.stderr);
    assert_eq!(out.dead.len(), 1);
    assert_eq!(out.dead[0].0, "hostile.ndjson:1 record 77777", "{:?}", out.dead);
    common::record_reliability(
        "hostile: 100,000-record envelope",
        "all read, the one bad record dead-lettered by index",
    );
}

#[test]
fn a_gzip_message_is_inflated_with_its_header_and_dead_lettered_without() {
    let gzip = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    const TOPIC: &str = "insights-logs-signinlogs";
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 1);
    let mut with_header = record();
    with_header["properties"]["userPrincipalName"] = serde_json::json!("gzip@contoso.example");
    with_header["properties"]["userId"] = serde_json::json!("20000000-0000-4000-8000-000000000001");
    tansu.produce_with_header(TOPIC, &gzip(&envelope(&[with_header])), Some(("content-encoding", "gzip")));
    tansu.produce_with_header(TOPIC, &gzip(&envelope(&[record()])), None);
    // A gzip bomb: 200 MB of zeros in a small message, marked gzip.
    let bomb = gzip(&vec![b' '; 200 * 1024 * 1024]);
    assert!(bomb.len() < 1_000_000);
    tansu.produce_with_header(TOPIC, &bomb, Some(("content-encoding", "gzip")));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "gzip", port, "");
    let daemon = Daemon::start(&config, port, &dir.path().join("daemon.log"), &[]);
    wait_for("three messages", Duration::from_secs(60), || daemon.metric("mfawatch_messages_total") == 3.0);
    wait_for("the dead letters", Duration::from_secs(15), || {
        std::fs::read_to_string(dir.path().join("dead-letters.ndjson")).is_ok_and(|t| t.lines().count() == 2)
    });
    let users = daemon.json("/api/v1/users?limit=10");
    let upns: Vec<&str> = users["users"].as_array().unwrap().iter().map(|u| u["upn"].as_str().unwrap()).collect();
    assert_eq!(upns, ["gzip@contoso.example"]);
    let dead = std::fs::read_to_string(dir.path().join("dead-letters.ndjson")).unwrap();
    let dead: Vec<serde_json::Value> = dead.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(dead[0]["error"].as_str().unwrap().contains("content-encoding"), "{}", dead[0]);
    assert_eq!(dead[1]["reason"], "syntax", "the bomb is not inflated past the bound: {}", dead[1]);
    assert!(daemon.get("/readyz").is_some_and(|(s, _)| s == 200), "and the daemon goes on");
    assert!(Path::new(&dir.path().join("state")).exists());
    common::record_reliability("hostile: gzip", "inflated with the header, dead-lettered without, 200 MB bomb refused");
}
