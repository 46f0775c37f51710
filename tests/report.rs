//! The weekly report as a SOC lead gets it: from the history a backfill
//! wrote, the same coverage as the daemon's API, CSVs that add up, and an
//! HTML page that a real browser (Debian's Chromium, headless) renders with
//! every chart drawn and no console error.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{Datelike, TimeZone};
use common::{free_port, replay, write_config, write_ndjson};
use mfawatch::generate::{Format, Generator, Tenant, TenantSpec};

/// Three weeks of a tenant, the last one being 2025-W26 (Monday 23 to
/// Sunday 29 June 2025): its newest sign-in falls on that Sunday, so the
/// daemon's 7-day window is that week.
fn spec() -> TenantSpec {
    TenantSpec {
        users: 300,
        records: 15_000,
        days: 21,
        seed: 3,
        end: chrono::Utc.with_ymd_and_hms(2025, 6, 29, 23, 50, 0).unwrap(),
        format: Format::Envelope,
        records_per_message: 50,
        malformed_per_10k: 0,
        fatigue_per_10k: 5,
        redeliveries_per_10k: 0,
    }
}

/// A state built by `replay` (history on), its coverage as the daemon says it.
fn backfilled(dir: &Path) -> serde_json::Value {
    backfilled_with(dir, "")
}

/// The same, with more `[coverage]` settings (`window = "15d"`).
fn backfilled_with(dir: &Path, coverage: &str) -> serde_json::Value {
    let tenant = Tenant::new(&spec());
    let admins: Vec<String> = tenant.users.iter().filter(|u| u.admin).map(|u| format!("{:?}", u.upn)).collect();
    let input = dir.join("tenant.ndjson");
    write_ndjson(&input, &Generator::new(spec()).collect::<Vec<_>>());
    let extra = format!("\n[coverage]\nprivileged = [{}]\n{coverage}\n", admins.join(", "));
    let config = write_config(dir, "127.0.0.1:1", "t", "unused", free_port(), &extra);
    let out = replay(&config, &[&input], &[]);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn report(history: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mfawatch"))
        .args(["report", "--history", history.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap()
}

/// (policy, result) → (sign-ins, users), as the report's CSV says.
type Impact = std::collections::BTreeMap<(String, String), (u64, u64)>;

fn report_only_rows(path: &Path) -> Impact {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let at = |name: &str| headers.iter().position(|h| h == name).unwrap_or_else(|| panic!("{name} in {headers:?}"));
    let (policy, result, sign_ins, users) = (at("policy"), at("result"), at("sign_ins"), at("users"));
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            ((r[policy].to_owned(), r[result].to_owned()), (r[sign_ins].parse().unwrap(), r[users].parse().unwrap()))
        })
        .collect()
}

/// The same, counted from the generated records themselves (decode and
/// classify, no history, no polars): every sign-in of 2025-W26.
fn report_only_of_the_week() -> Impact {
    use mfawatch::decode::{Item, decode_message};
    let (from, to) = (
        chrono::Utc.with_ymd_and_hms(2025, 6, 23, 0, 0, 0).unwrap(),
        chrono::Utc.with_ymd_and_hms(2025, 6, 30, 0, 0, 0).unwrap(),
    );
    let rules = mfawatch::classify::Rules::default();
    let mut seen: std::collections::BTreeMap<(String, String), (u64, std::collections::BTreeSet<String>)> =
        Default::default();
    for message in Generator::new(spec()) {
        for item in decode_message(&message) {
            let Item::SignIn(record) = item else { continue };
            if record.time < from || record.time >= to {
                continue;
            }
            let verdict = mfawatch::classify::classify(&record, &rules);
            for r in verdict.report_only {
                let entry = seen.entry((r.policy.to_string(), r.result.to_string())).or_default();
                entry.0 += 1;
                entry.1.extend(verdict.subject_key.as_deref().map(str::to_owned));
            }
        }
    }
    seen.into_iter().map(|(k, (n, users))| (k, (n, users.len() as u64))).collect()
}

/// The counted MFA sign-ins of 2025-W26 by strength, from the generated
/// records themselves (decode and classify, no history, no polars), as the
/// summary lists them: `[[strength, sign-ins], …]` in `Strength::ALL`'s order.
fn strength_of_the_week() -> serde_json::Value {
    use mfawatch::classify::{Labels, Strength, Subject};
    use mfawatch::decode::{Item, decode_message};
    let (from, to) = (
        chrono::Utc.with_ymd_and_hms(2025, 6, 23, 0, 0, 0).unwrap(),
        chrono::Utc.with_ymd_and_hms(2025, 6, 30, 0, 0, 0).unwrap(),
    );
    let rules = mfawatch::classify::Rules::default();
    let mut counts = std::collections::BTreeMap::<Strength, u64>::new();
    for message in Generator::new(spec()) {
        for item in decode_message(&message) {
            let Item::SignIn(record) = item else { continue };
            if record.time < from || record.time >= to {
                continue;
            }
            let v = mfawatch::classify::classify(&record, &rules);
            let counted = v.success && (v.interactive || v.labels.contains(Labels::LEGACY_AUTH));
            if v.subject == Subject::User
                && counted
                && let Some(s) = v.strength
            {
                *counts.entry(s).or_default() += 1;
            }
        }
    }
    serde_json::json!(
        Strength::ALL.iter().map(|s| (s.as_str(), counts.get(s).copied().unwrap_or(0))).collect::<Vec<_>>()
    )
}

fn csv_rows(path: &Path) -> usize {
    csv::Reader::from_path(path).unwrap().records().inspect(|r| assert!(r.is_ok(), "{r:?}")).count()
}

#[test]
fn the_weekly_report_agrees_with_the_daemon_adds_up_and_renders() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = backfilled(dir.path());
    assert_eq!(daemon["window_start"], "2025-06-23T00:00:00Z", "{daemon}");
    let history = dir.path().join("state/history");
    let out = dir.path().join("report");
    let run = report(&history, &out, &["--week", "2025-W26"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stderr).contains("report: coverage"), "progress lines on stderr");
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();

    // The same week, the same numbers as /api/v1/coverage.
    assert_eq!(summary["users"], daemon["users"], "{summary}");
    for state in ["covered", "uncovered", "inactive", "excluded"] {
        assert_eq!(summary["states"][state], daemon["states"][state], "{state}: {summary}");
    }
    assert_eq!(summary["states"]["never_mfa"], daemon["never_mfa"]);
    assert_eq!(summary["registration_pending"], daemon["registration_pending"]);
    assert_eq!(summary["registration_overdue"], daemon["registration_overdue"]);
    let (a, b) = (summary["coverage_ratio"].as_f64().unwrap(), daemon["coverage_ratio"].as_f64().unwrap());
    assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    assert!(summary["previous_coverage_ratio"].is_number(), "the week before is compared with");

    // The CSVs parse and their rows are the summary's numbers.
    assert_eq!(csv_rows(&out.join("uncovered-users.csv")), summary["uncovered_users"].as_u64().unwrap() as usize);
    assert_eq!(summary["uncovered_users"], summary["states"]["uncovered"]);
    assert_eq!(csv_rows(&out.join("legacy-auth.csv")), summary["legacy_sign_ins"].as_u64().unwrap() as usize);
    assert_eq!(csv_rows(&out.join("risky-without-mfa.csv")), summary["risky_without_mfa"].as_u64().unwrap() as usize);
    assert_eq!(
        csv_rows(&out.join("report-only-impact.csv")),
        summary["report_only_results"].as_u64().unwrap() as usize
    );
    assert!(summary["legacy_sign_ins"].as_u64().unwrap() > 0 && summary["report_only_results"].as_u64().unwrap() > 0);
    assert_eq!(report_only_rows(&out.join("report-only-impact.csv")), report_only_of_the_week(), "report-only impact");
    // One "risky without MFA": users' sign-ins, in the protections section as in the list.
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    let said = html.split(" got in without it").next().unwrap().rsplit(", ").next().unwrap();
    assert_eq!(said.parse::<u64>().ok(), summary["risky_without_mfa"].as_u64(), "protections say {said}");
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("2025-W26") && md.contains("Coverage"), "{md}");
    // How MFA is enforced: the generated tenant uses every mechanism; the
    // CSV lists the users the section names.
    let e = &summary["enforcement"];
    assert!(e["mfa_sign_ins"].as_u64().unwrap() > 0, "{e}");
    assert!(e["per_user_mfa_users"].as_u64().unwrap() > 0, "{e}");
    assert_eq!(
        csv_rows(&out.join("mfa-enforcement.csv")) as u64,
        e["per_user_mfa_users"].as_u64().unwrap() + e["risk_only_users"].as_u64().unwrap(),
        "{e}"
    );
    // How strong the MFA is: the week's counted MFA sign-ins by strength,
    // as decode and classify say of the generated records; the CSV lists
    // the privileged accounts the section names.
    let st = &summary["mfa_strength"];
    let week = st["periods"].as_array().unwrap().last().unwrap();
    assert_eq!(week["strengths"], strength_of_the_week(), "{st}");
    let (telephony, strong) =
        (st["privileged_on_telephony"].as_u64().unwrap(), st["privileged_phishing_resistant"].as_u64().unwrap());
    assert!(telephony > 0 && strong > 0, "the tenant's admins use both: {st}");
    assert_eq!(csv_rows(&out.join("mfa-strength.csv")) as u64, telephony + strong);

    // A real browser: no console error, every chart drawn with data.
    let page = out.join("index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing fetched (the SVG namespace is a name, not a fetch).
    let fetched = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(
        !fetched.contains("http://") && !fetched.contains("https://") && !html.contains("<script"),
        "self-contained"
    );
    let dom = common::chromium(&["--dump-dom"], &page);
    let dumped = String::from_utf8_lossy(&dom.stdout);
    let console = String::from_utf8_lossy(&dom.stderr);
    assert!(dom.status.success(), "{console}");
    assert!(
        !console.lines().any(|l| l.contains("CONSOLE") && (l.contains("Error") || l.contains("Uncaught"))),
        "{console}"
    );
    for chart in
        ["trend", "breakdown", "daily", "legacy", "mfa-failures", "report-only", "mfa-mechanisms", "mfa-strength-chart"]
    {
        let at = dumped.find(&format!("data-chart=\"{chart}\"")).unwrap_or_else(|| panic!("chart {chart} missing"));
        let figure = &dumped[at..at + dumped[at..].find("</figure>").unwrap()];
        let points: usize = figure
            .split("data-points=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(points > 0, "chart {chart} has data");
        assert!(
            figure.contains("<svg")
                && (figure.contains("<rect") || figure.contains("<polyline") || figure.contains("<path")),
            "{chart} drawn"
        );
    }
    for section in [
        "Which protections are in force",
        "Privileged users outside MFA coverage",
        "Report-only Conditional Access",
        "How MFA is enforced",
        "How strong the MFA is",
        "Privileged accounts still on telephony",
    ] {
        assert!(dumped.contains(section), "{section}");
    }
    // A screenshot, kept with the test's output (the README's comes from here).
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join("index.png");
    let shot = common::chromium(
        &[&format!("--screenshot={}", png.display()), "--window-size=1200,2600", "--hide-scrollbars"],
        &page,
    );
    assert!(
        shot.status.success() && png.metadata().map(|m| m.len() > 10_000).unwrap_or(false),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
}

#[test]
fn a_missing_history_an_empty_week_and_a_damaged_file_are_said_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let missing = report(&dir.path().join("nowhere"), &out, &["--week", "2025-W26"]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("no history at") && err.contains("nowhere"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    backfilled(dir.path());
    let history = dir.path().join("state/history");
    let empty = report(&history, &out, &["--week", "2024-W01"]);
    assert!(!empty.status.success());
    let err = String::from_utf8_lossy(&empty.stderr);
    assert!(err.contains("no sign-ins for 2024-W01") && err.contains("2025-06"), "{err}");

    // One file of the week cut short: named, skipped, and said in the report.
    let folder = history.join("date=2025-06-25");
    let (_, part) = mfawatch::history::files::files(&folder).unwrap().into_iter().next().unwrap();
    let bytes = std::fs::read(&part).unwrap();
    std::fs::write(&part, &bytes[..bytes.len() / 2]).unwrap();
    let run = report(&history, &out, &["--week", "2025-W26"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stderr).contains(part.file_name().unwrap().to_str().unwrap()));
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["damaged_files"].as_array().unwrap().len(), 1, "{summary}");
    assert!(std::fs::read_to_string(out.join("index.html")).unwrap().contains("damaged history file"));
}

#[test]
fn a_backfill_of_sign_ins_the_history_already_has_counts_them_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("tenant.ndjson");
    write_ndjson(&input, &Generator::new(spec()).collect::<Vec<_>>());
    let config = write_config(dir.path(), "127.0.0.1:1", "t", "unused", free_port(), "");
    assert!(replay(&config, &[&input], &[]).status.success());
    let history = dir.path().join("state/history");
    let once = dir.path().join("once");
    assert!(report(&history, &once, &["--week", "2025-W26"]).status.success());
    let once: serde_json::Value = serde_json::from_slice(&std::fs::read(once.join("summary.json")).unwrap()).unwrap();
    assert_eq!(once["duplicates_removed"], 0, "{once}");

    // The same export again under another name (as an analyst downloads it
    // twice): new to the state, so read, and every row of it in the history.
    let again = dir.path().join("export-again.ndjson");
    std::fs::copy(&input, &again).unwrap();
    assert!(replay(&config, &[&again], &[]).status.success());
    let twice = dir.path().join("twice");
    let run = report(&history, &twice, &["--week", "2025-W26"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let twice: serde_json::Value = serde_json::from_slice(&std::fs::read(twice.join("summary.json")).unwrap()).unwrap();
    assert_eq!(twice["duplicates_removed"], once["sign_ins"], "every sign-in of the week came twice: {twice}");
    for key in
        ["sign_ins", "users", "states", "coverage_ratio", "legacy_sign_ins", "risky_without_mfa", "report_only_results"]
    {
        assert_eq!(twice[key], once[key], "{key}");
    }
    assert_eq!(report_only_rows(&dir.path().join("twice/report-only-impact.csv")), report_only_of_the_week());
}

#[test]
fn a_report_over_any_range_is_coverage_over_exactly_that_range_and_compares_with_the_same_span_before() {
    // The oracle: the daemon's own coverage over a 15-day window ending on
    // the history's last day (2025-06-15 to 2025-06-29).
    let dir = tempfile::tempdir().unwrap();
    let daemon = backfilled_with(dir.path(), "window = \"15d\"");
    assert_eq!(daemon["window_start"], "2025-06-15T00:00:00Z", "{daemon}");
    let history = dir.path().join("state/history");
    let out = dir.path().join("fortnight");
    let run = report(&history, &out, &["--from", "2025-06-15", "--to", "2025-06-29"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["users"], daemon["users"], "{summary}");
    for state in ["covered", "uncovered", "inactive", "excluded"] {
        assert_eq!(summary["states"][state], daemon["states"][state], "{state}: {summary}");
    }
    assert_eq!(summary["states"]["never_mfa"], daemon["never_mfa"]);
    let (a, b) = (summary["coverage_ratio"].as_f64().unwrap(), daemon["coverage_ratio"].as_f64().unwrap());
    assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    assert_eq!(csv_rows(&out.join("uncovered-users.csv")), summary["states"]["uncovered"].as_u64().unwrap() as usize);
    // The period before is the 15 days before, disjoint; the history has only
    // 6 of them (it starts 2025-06-09), so it is said, not compared with.
    let previous = &summary["previous"];
    assert_eq!(
        (previous["window"]["from"].as_str(), previous["window"]["to"].as_str()),
        (Some("2025-05-31"), Some("2025-06-14")),
        "{summary}"
    );
    assert_eq!(previous["compared"], false, "{summary}");
    let hours = previous["hours_of_data"].as_f64().unwrap();
    assert!(hours > 100.0 && hours < 150.0, "{hours}");
    assert!(summary["previous_coverage_ratio"].is_null(), "{summary}");
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("h of data of 360, not compared"), "{md}");
    // A week whose week before the history covers is compared with it.
    let week = dir.path().join("week");
    assert!(report(&history, &week, &["--week", "2025-W26"]).status.success());
    let week: serde_json::Value = serde_json::from_slice(&std::fs::read(week.join("summary.json")).unwrap()).unwrap();
    assert_eq!(week["previous"]["compared"], true, "{week}");
    assert!(week["previous_coverage_ratio"].is_number());
}

/// dan and bob of the directory fixtures (tests/fixtures/directory/FIXTURES.md).
const DAN: &str = "7c5b3a5e-0000-4000-8000-000000000004";
const BOB: &str = "7c5b3a5e-0000-4000-8000-000000000002";

/// Sets a sign-in's outcome code wherever the record says it (`resultType`,
/// lower-cased in some records, and `status`), with no policy applied.
fn set_outcome(record: &mut serde_json::Value, code: i64, reason: &str) {
    for key in ["resultType", "resulttype"] {
        if record.get(key).is_some() {
            record[key] = code.to_string().into();
        }
    }
    for key in ["resultDescription", "resultdescription"] {
        if record.get(key).is_some() {
            record[key] = reason.into();
        }
    }
    let p = &mut record["properties"];
    p["status"] = serde_json::json!({ "errorCode": code, "failureReason": reason });
    p["conditionalAccessStatus"] = "notApplied".into();
    p["appliedConditionalAccessPolicies"] = serde_json::json!([]);
}

/// Nine days of a tenant (2026-11-10 to 11-18), one sign-in a message, made
/// to say what the protections fixtures need: no 530035 block but four,
/// interactive, on 11-16 (after the audit log switched security defaults
/// off on 11-15 07:00, while no MFA policy was enforced); dan signs in once
/// with a single factor (uncovered), bob three times with MFA (covered).
fn protections_sign_ins() -> Vec<Vec<u8>> {
    use mfawatch::classify::{Labels, Rules, classify};
    use mfawatch::decode::{Item, decode_message_received};
    let spec = TenantSpec {
        users: 40,
        records: 3_000,
        days: 9,
        seed: 11,
        end: chrono::Utc.with_ymd_and_hms(2026, 11, 18, 23, 50, 0).unwrap(),
        format: Format::Envelope,
        records_per_message: 1,
        malformed_per_10k: 0,
        fatigue_per_10k: 0,
        redeliveries_per_10k: 0,
    };
    let rules = Rules::default();
    let (blocks_from, blocks_to) = (
        chrono::Utc.with_ymd_and_hms(2026, 11, 16, 0, 0, 0).unwrap(),
        chrono::Utc.with_ymd_and_hms(2026, 11, 17, 0, 0, 0).unwrap(),
    );
    let (mut blocks, mut dan, mut bob) = (0, 0, 0);
    Generator::new(spec)
        .map(|message| {
            let items = decode_message_received(&message, None);
            let Some(Item::SignIn(s)) = items.first() else { return message };
            let labels = classify(s, &rules).labels;
            let interactive = s.category == mfawatch::decode::Category::SignIn;
            let ok = !labels.contains(Labels::FAILED) && !labels.contains(Labels::LEGACY_AUTH);
            let (time, code) = (s.time, s.outcome_code);
            let mut v: serde_json::Value = serde_json::from_slice(&message).unwrap();
            let record = &mut v["records"][0];
            if code == 530035 {
                set_outcome(record, 50126, "Error validating credentials due to invalid username or password.");
            } else if interactive && blocks < 4 && time >= blocks_from && time < blocks_to {
                blocks += 1;
                set_outcome(record, 530035, "Access has been blocked by security defaults.");
            } else if interactive && ok && dan < 1 && labels.contains(Labels::SINGLE_FACTOR) {
                dan += 1;
                record["properties"]["userId"] = DAN.into();
                record["properties"]["userPrincipalName"] = "dan@contoso.example".into();
            } else if interactive && ok && bob < 3 && labels.contains(Labels::MFA_SATISFIED) {
                bob += 1;
                record["properties"]["userId"] = BOB.into();
                record["properties"]["userPrincipalName"] = "bob@contoso.example".into();
            }
            serde_json::to_vec(&v).unwrap()
        })
        .collect()
}

#[test]
fn the_protections_timeline_risky_users_and_what_is_in_force_come_from_the_audit_log_with_the_sign_ins() {
    let dir = tempfile::tempdir().unwrap();
    let sign_ins = dir.path().join("sign-ins.ndjson");
    write_ndjson(&sign_ins, &protections_sign_ins());
    let fixtures = common::root().join("tests/fixtures/directory");
    let (audit, risk) = (fixtures.join("auditlogs-protections.ndjson"), fixtures.join("riskyusers-protections.ndjson"));
    let config = write_config(dir.path(), "127.0.0.1:1", "t", "unused", free_port(), "");
    replay(&config, &[&sign_ins, &audit, &risk], &[]);
    let history = dir.path().join("state/history");
    let out = dir.path().join("report");
    let run = report(&history, &out, &["--from", "2026-11-10", "--to", "2026-11-18"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();

    // The posture at 11-18: the admins' policy enabled again, the all-users one
    // deleted, security defaults off; 14 changes, 7 of them weakening MFA.
    let t = &summary["protections_timeline"];
    assert_eq!(t["mfa_policies"], serde_json::json!({"enabled": 1, "report_only": 0, "disabled": 0}), "{t}");
    assert_eq!((t["security_defaults"].as_bool(), t["any_record"].as_bool()), (Some(false), Some(true)), "{t}");
    assert_eq!((t["changes"].as_u64(), t["weakening"].as_u64()), (Some(14), Some(7)), "{t}");
    assert_eq!(csv_rows(&out.join("protections-timeline.csv")), 14);

    // Identity Protection at 11-18: dan (at risk) and bob (confirmed compromised)
    // high and open; cat remediated, eve dismissed during the range.
    let u = &summary["risky_users"];
    let counts = ["high_open", "open", "remediated", "dismissed"].map(|k| u[k].as_u64());
    assert_eq!(counts, [Some(2), Some(2), Some(1), Some(1)], "{u}");
    assert_eq!(
        u["endings"],
        serde_json::json!([
            {"state": "dismissed", "detail": "adminDismissedAllRiskForUser", "users": 1},
            {"state": "remediated", "detail": "userPerformedSecuredPasswordChange", "users": 1},
        ]),
        "{u}"
    );
    let mut csv = csv::Reader::from_path(out.join("risky-users.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    let headers = csv.headers().unwrap().clone();
    let at = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let listed: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                &r[at("upn")],
                &r[at("level")],
                &r[at("state")],
                &r[at("since")],
                &r[at("coverage")]
            )
        })
        .collect();
    assert_eq!(
        listed[..2],
        [
            "dan@contoso.example high at_risk 2026-11-10T12:00:00Z uncovered".to_owned(),
            "bob@contoso.example high confirmed_compromised 2026-11-13T10:00:00Z covered".to_owned(),
        ],
        "open first, the longest open first: {listed:?}"
    );
    assert_eq!(rows.len(), 4, "{listed:?}");

    // In force: the audit log's Conditional Access at the end, although the
    // sign-ins alone look contradictory (530035 blocks and MFA policies);
    // the blocks after security defaults were switched off are said.
    let v = &summary["in_force"];
    assert_eq!(summary["protections_in_force"], "conditional_access", "{v}");
    assert_eq!(
        (v["from_sign_ins"].as_str(), v["rests_on"].as_str()),
        (Some("contradictory"), Some("audit_log")),
        "{v}"
    );
    let disagreements: Vec<&str> = v["disagreements"].as_array().unwrap().iter().filter_map(|d| d.as_str()).collect();
    assert_eq!(disagreements.len(), 1, "{v}");
    assert!(
        disagreements[0].contains("switched off on 2026-11-15T07:00:00Z by eve@contoso.example")
            && disagreements[0].contains("4 sign-in(s) were blocked by security defaults (530035) after that"),
        "{v}"
    );
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("**2 high-risk user(s) not remediated**") && md.contains("**7 weakening MFA**"), "{md}");

    // In a real browser.
    let dom = common::chromium(&["--dump-dom"], &out.join("index.html"));
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let dumped = String::from_utf8_lossy(&dom.stdout);
    let section = |id: &str| {
        let at = dumped.find(&format!("<section id=\"{id}\"")).unwrap_or_else(|| panic!("section {id} missing"));
        dumped[at..at + dumped[at..].find("</section>").unwrap()].to_owned()
    };
    let timeline = section("protections-timeline");
    assert!(
        timeline.contains("<b>1</b>MFA policies enabled") && timeline.contains("<b>off</b>security defaults"),
        "{timeline}"
    );
    assert!(
        timeline.contains("<tr><td>Require MFA for admins</td><td>enabled</td><td>0</td>")
            && timeline.contains("<tr><td>Require MFA for all users</td><td>deleted</td><td>2</td>"),
        "{timeline}"
    );
    assert_eq!(timeline.matches("<tr class=\"weakens\">").count(), 7, "{timeline}");
    let changes = timeline.split("Changes in the").nth(1).unwrap();
    let first = changes.split("<tbody><tr>").nth(1).unwrap();
    assert!(first.starts_with("<td>2026-11-17T08:00:00Z</td><td>conditional access</td><td>Require MFA for admins</td><td>eve@contoso.example</td><td>state disabled → enabled</td>"), "newest first: {first}");
    let risky = section("risky-users");
    assert!(risky.contains("<b>2 high-risk user(s) not remediated</b>"), "{risky}");
    assert!(risky.contains("<div class=\"kpi urgent\"><b>2</b>high-risk users not remediated</div>"), "{risky}");
    let first = risky.split("<tbody><tr>").nth(1).unwrap();
    assert!(first.starts_with("<td>dan@contoso.example</td><td>high</td><td>at risk</td>"), "{first}");
    assert!(risky.contains("1 remediated (userPerformedSecuredPasswordChange)"), "{risky}");
    let in_force = section("protections");
    assert!(
        in_force.contains(
            "At the end of the period the audit log has Conditional Access enforcing MFA (Require MFA for admins)"
        ),
        "{in_force}"
    );
    assert!(
        in_force.contains("<div class=\"warn\" id=\"disagreements\">")
            && in_force.contains("switched off on 2026-11-15T07:00:00Z"),
        "{in_force}"
    );
}

/// A successful single-factor sign-in of one user, and the copy Entra
/// publishes later with the risk an offline detection found (docs/labels.md
/// §5): the same record id and time.
fn enriched_pair() -> (String, String) {
    let record = |state: &str, level: &str| {
        format!(
            r#"{{"time":"2025-06-25T10:00:00.0000000Z","category":"SignInLogs","tenantId":"8f2a6b1e-6c3d-4e5f-9a8b-7c6d5e4f3a2b","properties":{{"id":"0c6e6f7a-1b2c-4d3e-8f9a-0b1c2d3e4f5a","createdDateTime":"2025-06-25T10:00:00Z","userId":"3a5b7c9d-1e2f-4a6b-8c0d-2e4f6a8b0c1d","userPrincipalName":"rita@contoso.example","userType":"Member","status":{{"errorCode":0}},"clientAppUsed":"Browser","isInteractive":true,"authenticationRequirement":"singleFactorAuthentication","authenticationDetails":[{{"authenticationMethod":"Password","succeeded":true,"authenticationStepRequirement":"Primary authentication"}}],"riskLevelDuringSignIn":"{level}","riskLevelAggregated":"{level}","riskState":"{state}","ipAddress":"203.0.113.9","appDisplayName":"OfficeHome"}}}}"#
        )
    };
    (record("none", "none"), record("atRisk", "high"))
}

#[test]
fn an_enriched_re_delivery_counts_once_alerts_once_and_the_report_keeps_its_risk_in_either_order() {
    let (plain, risky) = enriched_pair();
    for (order, lines) in [("plain first", [&plain, &risky]), ("risky first", [&risky, &plain])] {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("pair.ndjson");
        std::fs::write(&input, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
        let alerts = dir.path().join("alerts.ndjson");
        let extra = format!("[alerts]\nmax_age = \"100000d\"\nlog_file = {:?}\n", alerts.display().to_string());
        let config = write_config(dir.path(), "127.0.0.1:1", "t", "unused", free_port(), &extra);
        let out = replay(&config, &[&input], &["--alerts"]);
        let daemon: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // Coverage: one user, one counted sign-in, single factor.
        assert_eq!(daemon["users"], 1, "{order}: {daemon}");
        assert_eq!(daemon["states"]["uncovered"], 1, "{order}: {daemon}");
        // Alerts: the risk alerts once, whichever copy brought it.
        let sent = std::fs::read_to_string(&alerts).unwrap_or_default();
        let rules: Vec<String> = sent
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["rule"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(rules, ["risky_without_mfa"], "{order}: {sent}");
        // The report: one sign-in, the copy with the risk kept.
        let report_dir = dir.path().join("report");
        let run = report(&dir.path().join("state/history"), &report_dir, &["--week", "2025-W26"]);
        assert!(run.status.success(), "{order}: {}", String::from_utf8_lossy(&run.stderr));
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(report_dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["sign_ins"], 1, "{order}: {summary}");
        assert_eq!(summary["duplicates_removed"], 1, "{order}: {summary}");
        assert_eq!(summary["risky_without_mfa"], 1, "{order}: {summary}");
    }
}

/// Five weeks of a tenant, the last being 2025-W26 (from Monday 26 May).
fn five_weeks() -> TenantSpec {
    TenantSpec { users: 200, records: 12_000, days: 35, seed: 5, ..spec() }
}

/// A history of `spec` written by `replay`.
fn history_of(dir: &Path, spec: TenantSpec) -> PathBuf {
    let input = dir.join("tenant.ndjson");
    write_ndjson(&input, &Generator::new(spec).collect::<Vec<_>>());
    let config = write_config(dir, "127.0.0.1:1", "t", "unused", free_port(), "");
    replay(&config, &[&input], &[]);
    dir.join("state/history")
}

/// The history's date folders, and the ISO weeks before 2025-W26 they are in.
fn days_and_weeks_before(history: &Path) -> (u64, u64) {
    let dates = mfawatch::history::files::dates(history).unwrap();
    let monday = chrono::NaiveDate::from_ymd_opt(2025, 6, 23).unwrap();
    let weeks: std::collections::BTreeSet<_> =
        dates.iter().filter(|(d, _)| *d < monday).map(|(d, _)| d.iso_week().week()).collect();
    (dates.len() as u64, weeks.len() as u64)
}

fn build(history: &Path, rollup: mfawatch::report::rollup::Use) -> mfawatch::report::Report {
    build_over(history, mfawatch::report::Window::iso_week("2025-W26").unwrap(), rollup)
}

fn build_over(
    history: &Path,
    window: mfawatch::report::Window,
    rollup: mfawatch::report::rollup::Use,
) -> mfawatch::report::Report {
    mfawatch::report::build(&mfawatch::report::Request {
        history: history.to_owned(),
        window,
        trend_weeks: 8,
        registration_grace_days: 14,
        privileged_roles: Default::default(),
        rollup,
    })
    .unwrap()
}

/// What a report says: everything but when it was made and how it read the history.
fn said(report: &mfawatch::report::Report) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap();
    let object = value.as_object_mut().unwrap();
    object.remove("generated_at");
    object.remove("rollup");
    value
}

/// Asserts two reports say the same, naming the first part that differs.
fn assert_same(a: &mfawatch::report::Report, b: &mfawatch::report::Report) {
    let (a, b) = (said(a), said(b));
    for (key, value) in a.as_object().unwrap() {
        assert_eq!(Some(value), b.get(key), "{key} differs");
    }
    assert_eq!(a, b);
}

/// A sign-in of `user`, whom the history has not seen, added to `day` the
/// way a late delivery from Entra lands: a new part in that day's folder.
fn add_late_sign_in(history: &Path, day: &str, user: &str) {
    use mfawatch::history::files::{self, Name, Zstd};
    use mfawatch::history::rows::col as c;
    use polars::prelude::*;
    let folder = history.join(format!("date={day}"));
    let (_, file) = files::files(&folder).unwrap().into_iter().next().unwrap();
    let rows = files::read_parquet(&file).unwrap();
    let of_a_user = rows.column(c::SUBJECT).unwrap().str().unwrap().equal("user")
        & rows.column(c::USER_KEY).unwrap().is_not_null()
        & !rows.column(c::UNKNOWN_ACCOUNT).unwrap().bool().unwrap().clone()
        & !rows.column(c::EXCLUDED).unwrap().bool().unwrap().clone();
    let mut late = rows.filter(&of_a_user).unwrap().slice(0, 1);
    assert_eq!(late.height(), 1, "a user's sign-in on {day}");
    for (name, value) in [
        (c::USER_KEY, user.to_owned()),
        (c::UPN, format!("{user}@late.example")),
        (c::RECORD_ID, format!("late-{user}")),
    ] {
        late.with_column(Column::new(name.into(), [value])).unwrap();
    }
    late.with_column(Column::new(c::IDENTITY.into(), [0x1a7e_u64])).unwrap();
    let part = folder.join(Name::Part { epoch: 0x1a7e, seq: 1, k: 0 }.file());
    files::write_parquet(&part, &mut late, Zstd::Fast).unwrap();
}

#[test]
fn the_report_from_the_rollup_says_what_the_whole_history_says_and_reads_only_its_week() {
    use mfawatch::report::rollup::Use;
    let dir = tempfile::tempdir().unwrap();
    let history = history_of(dir.path(), five_weeks());
    let (days, weeks) = days_and_weeks_before(&history);
    assert!(days >= 35 && weeks >= 4, "{days} days, {weeks} weeks");
    let whole = build(&history, Use::Off);
    assert!(!history.join("_rollup").exists(), "--no-rollup writes nothing");
    assert_eq!((whole.rollup.days_read, whole.rollup.weeks_used), (days, 0));
    assert!(whole.trend.iter().filter(|(_, ratio)| ratio.is_some()).count() >= 5, "{:?}", whole.trend);

    let cold = build(&history, Use::Keep);
    // Cold: the four weeks before are made from their days and kept, and the report's own week.
    assert_eq!((cold.rollup.days_read, cold.rollup.weeks_made, cold.rollup.weeks_used), (days, weeks + 1, 0));
    assert_same(&cold, &whole);
    // Warm: only the report's own week is read.
    let warm = build(&history, Use::Keep);
    assert_eq!((warm.rollup.days_read, warm.rollup.weeks_made, warm.rollup.weeks_used), (7, 0, weeks));
    assert_same(&warm, &whole);

    // Periods of 15 days: the weeks no period begins inside of stand for their days.
    let fortnight = mfawatch::report::Window {
        from: chrono::NaiveDate::from_ymd_opt(2025, 6, 15).unwrap(),
        to: chrono::NaiveDate::from_ymd_opt(2025, 6, 29).unwrap(),
    };
    let (with, without) = (build_over(&history, fortnight, Use::Keep), build_over(&history, fortnight, Use::Off));
    assert!(with.rollup.weeks_used >= 1 && with.rollup.days_read < without.rollup.days_read, "{:?}", with.rollup);
    assert_same(&with, &without);

    // A late record in an old day, after the rollup was made: its week is
    // made again, and the report knows the user it names.
    add_late_sign_in(&history, "2025-06-03", "late-user");
    let late = build(&history, Use::Keep);
    assert_eq!((late.rollup.days_read, late.rollup.weeks_made, late.rollup.weeks_used), (14, 1, weeks - 1));
    assert_eq!(late.coverage.users, whole.coverage.users + 1, "the late user is one of the users");
    assert_eq!(late.coverage.inactive, whole.coverage.inactive + 1, "and did not sign in during the week");
    assert_same(&late, &build(&history, Use::Off));

    // Retention takes the oldest day: that week is made again from the days left.
    let (oldest, folder) = mfawatch::history::files::dates(&history).unwrap().remove(0);
    std::fs::remove_dir_all(folder).unwrap();
    let left = mfawatch::history::files::dates(&history)
        .unwrap()
        .iter()
        .filter(|(d, _)| d.iso_week() == oldest.iso_week())
        .count();
    let expired = build(&history, Use::Keep);
    assert_eq!((expired.rollup.days_read, expired.rollup.weeks_made), (7 + left as u64, u64::from(left > 0)));
    assert_same(&expired, &build(&history, Use::Off));

    // --rebuild-rollup makes every week again.
    let out = dir.path().join("rebuilt");
    let run = report(&history, &out, &["--week", "2025-W26", "--rebuild-rollup"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let (_, weeks) = days_and_weeks_before(&history);
    assert!(run.status.success() && stderr.contains(&format!("rollup: 0 weeks used, {} made", weeks + 1)), "{stderr}");
}

#[test]
fn a_damaged_rollup_file_is_named_ignored_and_made_again() {
    use mfawatch::report::rollup::Use;
    let dir = tempfile::tempdir().unwrap();
    let history = history_of(dir.path(), TenantSpec { days: 21, ..five_weeks() });
    let whole = build(&history, Use::Off);
    let (_, weeks) = days_and_weeks_before(&history);
    assert_eq!(build(&history, Use::Keep).rollup.weeks_made, weeks + 1);
    let file = history.join("_rollup/week-2025-06-09.rollup");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let again = build(&history, Use::Keep);
    assert_eq!(again.rollup.ignored.len(), 1, "{:?}", again.rollup);
    assert!(again.rollup.ignored[0].file.ends_with("week-2025-06-09.rollup"), "{:?}", again.rollup.ignored);
    assert!(again.rollup.ignored[0].error.contains("digest"), "{:?}", again.rollup.ignored);
    assert_eq!((again.rollup.weeks_made, again.rollup.weeks_used), (1, weeks - 1));
    assert_same(&again, &whole);
    let healed = build(&history, Use::Keep);
    assert_eq!((healed.rollup.ignored.len(), healed.rollup.weeks_used), (0, weeks));
}

#[test]
fn each_point_of_the_trend_is_the_coverage_the_report_of_that_week_says() {
    use mfawatch::report::rollup::Use;
    let dir = tempfile::tempdir().unwrap();
    let history = history_of(dir.path(), five_weeks());
    let newest = mfawatch::report::Window::iso_week("2025-W26").unwrap();
    for rollup in [Use::Off, Use::Keep, Use::Keep] {
        let report = build(&history, rollup);
        assert_eq!(report.trend.len(), 8);
        let mut compared = 0;
        for (back, (label, ratio)) in report.trend.iter().rev().enumerate() {
            let Some(ratio) = ratio else { continue };
            let week = mfawatch::report::Window::iso_week(label).unwrap();
            assert_eq!(week.from, newest.from - chrono::Days::new(7 * back as u64), "{label}");
            let alone = build_over(&history, week, Use::Off);
            assert_eq!(Some(*ratio), alone.coverage.coverage_ratio, "{label} ({rollup:?})");
            compared += 1;
        }
        assert!(compared >= 4, "{:?}", report.trend);
    }
}
