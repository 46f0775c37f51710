//! Every public sample under ../shared/samples/public and every fixture of
//! tests/fixtures decodes; records whose meaning is clear get the labels the
//! contract gives them.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use mfawatch::classify::{MfaFailure, MfaMethod, RiskLevel, Rules, Subject, Verdict, classify};
use mfawatch::decode::{DecodeError, Item, Mechanisms, SignIn, decode_message};
use mfawatch::source::files;

fn samples_dir() -> PathBuf {
    common::root().join("../shared/samples/public")
}

fn fixture(name: &str) -> String {
    common::root().join("tests/fixtures").join(name).to_string_lossy().into_owned()
}

/// Every sample record file (not the Panther `.expect` files).
fn sample_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["elastic", "panther"] {
        for entry in std::fs::read_dir(samples_dir().join(dir)).expect("samples present") {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".expect.ndjson") && (name.ends_with(".log") || name.ends_with(".ndjson")) {
                out.push(path);
            }
        }
    }
    out.sort();
    assert!(out.len() >= 14, "expected the public samples, found {out:?}");
    out
}

/// What one record of a file turned into, in file order.
#[derive(Debug)]
enum Outcome {
    Verdict(Summary),
    Malformed(DecodeError),
    Skipped,
}

/// The parts of a verdict the tests look at, owned.
#[derive(Debug, Clone)]
struct Summary {
    id: Option<String>,
    subject: Subject,
    interactive: bool,
    labels: Vec<&'static str>,
    mfa_method: Option<String>,
    mfa_failure: Option<MfaFailure>,
    risk_level: RiskLevel,
    ropc: bool,
    user_key: Option<String>,
    report_only: Vec<(String, String)>,
    /// `authenticationRequirementPolicies` as decoded, and the verdict's mechanisms.
    requirement_policies: Option<Mechanisms>,
    mechanisms: Option<Mechanisms>,
}

impl Summary {
    fn of(record: &SignIn<'_>, v: &Verdict<'_>) -> Summary {
        Summary {
            id: record.fields.id.as_deref().map(str::to_owned),
            subject: v.subject,
            interactive: v.interactive,
            labels: v.labels.names().collect(),
            mfa_method: v.mfa_method.as_ref().map(|m| m.as_str().to_owned()),
            mfa_failure: v.mfa_failure,
            risk_level: v.risk_level,
            ropc: v.ropc,
            user_key: v.subject_key.as_deref().map(str::to_owned),
            report_only: v.report_only.iter().map(|r| (r.policy.to_string(), r.result.to_string())).collect(),
            requirement_policies: record.fields.requirement_policies,
            mechanisms: v.mechanisms,
        }
    }
}

fn outcomes(path: &str) -> Vec<Outcome> {
    let rules = Rules::default();
    let mut out = Vec::new();
    files::read_messages(path, |bytes, _, _| {
        for item in decode_message(bytes) {
            out.push(match item {
                Item::SignIn(record) => Outcome::Verdict(Summary::of(&record, &classify(&record, &rules))),
                Item::Malformed(m) => Outcome::Malformed(m.error),
                Item::Skipped { .. } | Item::Directory(_) => Outcome::Skipped,
            });
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{path}: {e}"));
    out
}

fn verdicts(path: &str) -> Vec<Summary> {
    outcomes(path)
        .into_iter()
        .map(|o| match o {
            Outcome::Verdict(v) => v,
            other => panic!("{path}: expected every record to classify, got {other:?}"),
        })
        .collect()
}

fn sample(name: &str) -> String {
    samples_dir().join(name).to_string_lossy().into_owned()
}

#[test]
fn every_public_sample_file_decodes_without_fatal_errors() {
    let mut totals = BTreeMap::new();
    for path in sample_files() {
        let path = path.to_string_lossy().into_owned();
        let all = outcomes(&path);
        assert!(!all.is_empty(), "{path}: nothing decoded");
        for o in all {
            let key = match o {
                Outcome::Verdict(_) => "classified",
                Outcome::Malformed(_) => "malformed",
                Outcome::Skipped => "skipped",
            };
            *totals.entry(key).or_insert(0) += 1;
        }
    }
    // 45 records in all (19 Elastic, 26 Panther). The 11 Elastic time-format
    // records and 3 Panther records with `resultType: "Success"` and no
    // `status` have no outcome; everything else classifies.
    assert_eq!(totals.get("classified"), Some(&31), "{totals:?}");
    assert_eq!(totals.get("malformed"), Some(&14), "{totals:?}");
}

#[test]
fn elastic_previously_satisfied_records_are_single_factor() {
    for v in verdicts(&sample("elastic/test-signinlogs-sample.log")) {
        assert_eq!(v.labels, ["single_factor"], "{v:?}");
        assert_eq!((v.subject, v.interactive), (Subject::User, true));
        assert_eq!(v.user_key.as_deref(), Some("2ce85a15-8640-465d-b916-d2eac620a717"));
    }
}

#[test]
fn elastic_adfs_record_is_an_interactive_single_factor_user_with_hidden_risk() {
    let v = verdicts(&sample("elastic/test-adfs-signin.log"));
    assert_eq!(v.len(), 1);
    assert_eq!((v[0].subject, v[0].interactive), (Subject::User, true));
    assert_eq!(v[0].labels, ["single_factor"]);
    assert_eq!(v[0].risk_level, RiskLevel::Hidden);
}

#[test]
fn elastic_raw_records_cover_five_categories() {
    let v = verdicts(&sample("elastic/test-signinlogs-raw.log"));
    let seen: Vec<_> = v.iter().map(|v| (v.subject, v.interactive, v.labels.clone())).collect();
    assert_eq!(
        seen,
        [
            (Subject::User, true, vec!["failed"]),
            (Subject::User, false, vec!["failed"]),
            (Subject::ServicePrincipal, false, vec!["not_applicable", "failed"]),
            (Subject::ServicePrincipal, false, vec!["not_applicable", "failed"]),
            (Subject::ManagedIdentity, false, vec!["not_applicable", "failed"]),
        ]
    );
}

#[test]
fn elastic_time_format_records_parse_their_time_but_lack_an_outcome() {
    let all = outcomes(&sample("elastic/test-time-formats-corner-cases.log"));
    assert_eq!(all.len(), 11);
    for o in all {
        // MissingOutcome is checked after the time: every format parsed.
        assert!(matches!(o, Outcome::Malformed(DecodeError::MissingOutcome)), "{o:?}");
    }
}

#[test]
fn panther_legacy_auth_records_are_legacy_auth() {
    let v = verdicts(&sample("panther/azure_legacyauth.ndjson"));
    assert_eq!(v[0].labels, ["not_applicable", "failed"]);
    for user in &v[1..] {
        // "Authenticated SMTP", success, MFA claimed by the token: still legacy.
        assert_eq!(user.labels, ["mfa_satisfied", "legacy_auth"]);
        assert_eq!(user.mfa_method.as_deref(), Some(MfaMethod::PreviouslySatisfied.as_str()));
        assert!(!user.ropc, "authenticationProtocol is \"rpoc\" in this record");
    }
}

#[test]
fn panther_risk_records_follow_risk_level_and_state() {
    let high = verdicts(&sample("panther/azure_high_risk_signin.ndjson"));
    assert!(high[0].labels.contains(&"risky"), "high + atRisk");
    assert!(!high[1].labels.contains(&"risky"), "high but dismissed by an admin");
    assert_eq!(high[1].risk_level, RiskLevel::High);
    let confirmed = verdicts(&sample("panther/azure_multiple_protection_alerts.ndjson"));
    assert!(confirmed[0].labels.contains(&"risky"));
    assert!(!confirmed[1].labels.contains(&"risky"));
    let passthrough = verdicts(&sample("panther/azure_risklevel_passthrough.ndjson"));
    let risky: Vec<bool> = passthrough.iter().map(|v| v.labels.contains(&"risky")).collect();
    // none/none, low aggregated, high during, high dismissed, no state.
    assert_eq!(risky, [false, false, true, false, false]);
}

#[test]
fn panther_ropc_records_are_ropc_legacy_single_factor() {
    let v = verdicts(&sample("panther/azure_ropc_login_no_mfa.ndjson"));
    assert!(v[0].ropc && v[1].ropc);
    assert_eq!(v[0].labels, ["single_factor", "legacy_auth"]);
    assert_eq!(v[1].labels, ["legacy_auth", "failed"]);
}

#[test]
fn panther_success_words_are_dead_lettered_with_the_reason() {
    let all = outcomes(&sample("panther/azure_graph_session_multiple_ips.ndjson"));
    assert!(matches!(&all[0], Outcome::Malformed(DecodeError::BadOutcome(w)) if w == "Success"));
    assert!(matches!(&all[1], Outcome::Verdict(v) if v.labels == ["single_factor"] && !v.interactive));
    assert!(matches!(&all[2], Outcome::Malformed(DecodeError::BadOutcome(_))));
}

#[test]
fn panther_expectations_agree_where_the_rule_and_a_label_mean_the_same() {
    // Rule → the verdict that makes it fire, for rules that are one label.
    type Fires = fn(&Summary) -> bool;
    let rules: [(&str, Fires); 3] = [
        ("azure_high_risk_signin", |v| v.labels.contains(&"risky")),
        ("azure_legacyauth", |v| v.labels.contains(&"legacy_auth") && !v.labels.contains(&"failed")),
        ("azure_ropc_login_no_mfa", |v| v.ropc && v.labels.contains(&"single_factor")),
    ];
    for (name, fires) in rules {
        let expect = std::fs::read_to_string(samples_dir().join(format!("panther/{name}.expect.ndjson"))).unwrap();
        let records = verdicts(&sample(&format!("panther/{name}.ndjson")));
        for (line, v) in expect.lines().zip(&records) {
            let e: serde_json::Value = serde_json::from_str(line).unwrap();
            let test = e["name"].as_str().unwrap();
            if test.contains("KNOWN_EXCEPTION") {
                continue; // an allow-list of the rule's own, not a property of the record
            }
            assert_eq!(fires(v), e["expected"].as_bool().unwrap(), "{name}: {test}");
        }
    }
}

#[test]
fn graph_beta_fixture_labels_match_fixtures_md() {
    let v = verdicts(&fixture("graph-signins.json"));
    let labels: Vec<Vec<&str>> = v.iter().map(|v| v.labels.clone()).collect();
    assert_eq!(
        labels,
        [
            vec!["mfa_satisfied"],
            vec!["single_factor"],
            vec!["mfa_satisfied"],
            vec!["not_applicable"],
            vec!["single_factor", "legacy_auth", "risky"],
            vec!["failed"],
            vec!["failed"],
            vec!["single_factor", "risky"],
            vec!["failed"],
            vec!["mfa_satisfied"],
        ]
    );
    assert_eq!(v[0].mfa_method.as_deref(), Some("Mobile app notification"));
    assert_eq!(v[2].mfa_method.as_deref(), Some("previously_satisfied"));
    assert!(!v[2].interactive);
    assert_eq!(v[3].subject, Subject::ServicePrincipal);
    assert!(v[4].ropc);
    assert_eq!(v[5].mfa_failure, Some(MfaFailure::Denied));
    assert_eq!(v[6].mfa_failure, Some(MfaFailure::RegistrationRequired));
    assert_eq!(
        v[8].report_only.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>(),
        ["reportOnlyFailure", "reportOnlySuccess"]
    );
    assert!(v[9].interactive, "no signInEventTypes: isInteractive decides");
    assert_eq!(v[1].risk_level, RiskLevel::Hidden);
}

#[test]
fn graph_v1_fixture_labels_match_fixtures_md() {
    let v = verdicts(&fixture("graph-signins-v1.json"));
    let labels: Vec<Vec<&str>> = v.iter().map(|v| v.labels.clone()).collect();
    assert_eq!(labels, [vec!["mfa_satisfied"], vec!["single_factor"], vec!["legacy_auth", "failed"]]);
    assert_eq!(v[0].mfa_method.as_deref(), Some("unknown"));
}

#[test]
fn log_analytics_fixtures_label_like_the_other_shapes() {
    let v = verdicts(&fixture("la-signinlogs.json"));
    let labels: Vec<Vec<&str>> = v.iter().map(|v| v.labels.clone()).collect();
    assert_eq!(
        labels,
        [
            vec!["mfa_satisfied"],
            vec!["single_factor"],
            vec!["legacy_auth", "failed"],
            vec!["failed"],
            vec!["not_applicable"],
            vec!["mfa_satisfied", "risky"],
        ]
    );
    assert_eq!(
        v[0].report_only,
        [("CA020: Require compliant device (report-only)".to_string(), "reportOnlyFailure".to_string())]
    );
    assert!(!v[1].interactive);
    assert!(v[2].ropc);
    assert_eq!(v[3].mfa_failure, Some(MfaFailure::Required));
    assert_eq!(v[5].mfa_method.as_deref(), Some("Text message"));
    // Liam's interactive and non-interactive rows share one user key.
    assert_eq!(v[0].user_key, v[1].user_key);

    let n = verdicts(&fixture("la-signinlogs.ndjson"));
    let labels: Vec<Vec<&str>> = n.iter().map(|v| v.labels.clone()).collect();
    assert_eq!(labels, [vec!["mfa_satisfied"], vec!["failed"], vec!["not_applicable"]]);
    assert_eq!(n[0].mfa_method.as_deref(), Some("OATH verification code"));
    assert_eq!(n[2].subject, Subject::ManagedIdentity);
}

#[test]
fn public_samples_carrying_authentication_requirement_policies_decode_them() {
    // All three carry the list empty (`[]`): present, naming no mechanism.
    for name in
        ["panther/azure_legacyauth.ndjson", "elastic/test-adfs-signin.log", "elastic/test-signinlogs-sample.log"]
    {
        let v = verdicts(&sample(name));
        let users: Vec<&Summary> = v.iter().filter(|v| v.subject == Subject::User).collect();
        assert!(!users.is_empty(), "{name}");
        for u in users {
            assert_eq!(u.requirement_policies, Some(Mechanisms::default()), "{name}: {u:?}");
            // MFA asked (the Panther SMTP sign-ins, satisfied by a claim) and not named: unknown;
            // single factor: no mechanism at all.
            let expected = u.labels.contains(&"mfa_satisfied").then_some(Mechanisms::UNKNOWN);
            assert_eq!(u.mechanisms, expected, "{name}: {u:?}");
        }
    }
    let legacy = verdicts(&sample("panther/azure_legacyauth.ndjson"));
    assert_eq!(legacy.iter().filter(|v| v.mechanisms == Some(Mechanisms::UNKNOWN)).count(), legacy.len() - 1);
    // Every other sample without the field decodes it as absent.
    for path in sample_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.to_ascii_lowercase().contains("authenticationrequirementpolicies") {
            let path = path.to_string_lossy().into_owned();
            for o in outcomes(&path) {
                if let Outcome::Verdict(v) = o {
                    assert_eq!(v.requirement_policies, None, "{path}: {v:?}");
                }
            }
        }
    }
}

#[test]
fn fixtures_name_the_mechanism_that_asked_for_mfa_in_every_shape() {
    let ca = Some(Mechanisms::CONDITIONAL_ACCESS);
    let unknown = Some(Mechanisms::UNKNOWN);
    let mechanisms = |name: &str| verdicts(&fixture(name)).iter().map(|v| v.mechanisms).collect::<Vec<_>>();
    // Graph beta: G1, G3 MFA by Conditional Access, G6 denied, G7 registration
    // (mfaRegistrationRequiredByMultiConditionalAccess); G10 has no list: unknown.
    assert_eq!(mechanisms("graph-signins.json"), [ca, None, ca, None, None, ca, ca, None, None, unknown]);
    // Graph v1.0 has no such property: MFA satisfied, mechanism unknown.
    assert_eq!(mechanisms("graph-signins-v1.json"), [unknown, None, None]);
    // Log Analytics: the list as JSON text inside a string.
    assert_eq!(mechanisms("la-signinlogs.json"), [ca, None, None, ca, None, ca]);
    // N1's text is "[]": MFA satisfied, nothing named; N2 50076 required by Conditional Access.
    assert_eq!(mechanisms("la-signinlogs.ndjson"), [unknown, ca, None]);
}

#[test]
fn every_fixture_record_has_an_id() {
    for name in ["graph-signins.json", "graph-signins-v1.json", "la-signinlogs.json", "la-signinlogs.ndjson"] {
        for v in verdicts(&fixture(name)) {
            assert!(v.id.as_deref().is_some_and(|id| id.len() == 36), "{name}: {v:?}");
        }
    }
}
