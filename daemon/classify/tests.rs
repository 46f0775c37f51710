//! One test per row of the tables in SIGNIN-SEMANTICS §2–§4.

use super::*;
use crate::decode::{Item, decode_message};

/// Classifies one record given as JSON, with the default rules.
fn verdict_of(json: &str, check: impl FnOnce(&Verdict<'_>)) {
    verdict_with(json, &Rules::default(), check)
}

fn verdict_with(json: &str, rules: &Rules, check: impl FnOnce(&Verdict<'_>)) {
    let items = decode_message(json.as_bytes());
    let Some(Item::SignIn(record)) = items.first() else { panic!("not a sign-in: {items:?}") };
    check(&classify(record, rules));
}

/// A diagnostic record of `category` with outcome `code` and extra `properties` members.
fn diag(category: &str, code: i64, props: &str) -> String {
    let sep = if props.is_empty() { "" } else { "," };
    format!(
        r#"{{"time":"2025-01-15T09:30:25Z","category":"{category}","resultType":"{code}","properties":{{"userId":"u1","userPrincipalName":"u@contoso.example","status":{{"errorCode":{code}}}{sep}{props}}}}}"#
    )
}

fn user(props: &str) -> String {
    diag("SignInLogs", 0, props)
}

fn labels(v: &Verdict<'_>) -> Vec<&'static str> {
    v.labels.names().collect()
}

// §2 Subject and interactivity ------------------------------------------------

#[test]
fn sign_in_logs_are_interactive_user_sign_ins() {
    verdict_of(&diag("SignInLogs", 0, ""), |v| assert_eq!((v.subject, v.interactive), (Subject::User, true)));
}

#[test]
fn non_interactive_user_sign_in_logs_are_non_interactive_user_sign_ins() {
    verdict_of(&diag("NonInteractiveUserSignInLogs", 0, ""), |v| {
        assert_eq!((v.subject, v.interactive), (Subject::User, false))
    });
}

#[test]
fn the_user_key_is_the_object_id_else_the_lower_cased_upn() {
    verdict_of(&user(""), |v| assert_eq!(v.subject_key.as_deref(), Some("u1")));
    for missing in [r#""userId":"""#, r#""userId":null"#, r#""userId":"  ""#] {
        let json =
            user("").replace(r#""userId":"u1""#, missing).replace("u@contoso.example", " Ann.Lee@Contoso.Example ");
        verdict_of(&json, |v| assert_eq!(v.subject_key.as_deref(), Some("ann.lee@contoso.example"), "{missing}"));
    }
    let neither = user("").replace(r#""userId":"u1","userPrincipalName":"u@contoso.example","#, "");
    verdict_of(&neither, |v| assert_eq!(v.subject_key, None));
}

#[test]
fn service_principal_categories_are_service_principal_subjects() {
    for category in ["ServicePrincipalSignInLogs", "MicrosoftServicePrincipalSignInLogs"] {
        verdict_of(&diag(category, 0, ""), |v| {
            assert_eq!((v.subject, v.interactive), (Subject::ServicePrincipal, false))
        });
    }
}

#[test]
fn managed_identity_sign_in_logs_are_managed_identity_subjects() {
    verdict_of(&diag("ManagedIdentitySignInLogs", 0, ""), |v| {
        assert_eq!((v.subject, v.interactive), (Subject::ManagedIdentity, false))
    });
}

#[test]
fn adfs_sign_in_logs_are_interactive_user_sign_ins() {
    verdict_of(&diag("ADFSSignInLogs", 0, ""), |v| assert_eq!((v.subject, v.interactive), (Subject::User, true)));
}

#[test]
fn graph_sign_in_event_types_name_the_subject() {
    for (types, subject, interactive) in [
        ("interactiveUser", Subject::User, true),
        ("nonInteractiveUser", Subject::User, false),
        ("servicePrincipal", Subject::ServicePrincipal, false),
        ("managedIdentity", Subject::ManagedIdentity, false),
    ] {
        let json = format!(
            r#"{{"id":"g","createdDateTime":"2025-03-01T10:00:00Z","status":{{"errorCode":0}},"signInEventTypes":["{types}"]}}"#
        );
        verdict_of(&json, |v| assert_eq!((v.subject, v.interactive), (subject, interactive), "{types}"));
    }
}

#[test]
fn graph_record_without_event_types_is_a_user_and_interactive_unless_it_says_otherwise() {
    let plain = r#"{"id":"g","createdDateTime":"2025-03-01T10:00:00Z","status":{"errorCode":0}}"#;
    verdict_of(plain, |v| assert_eq!((v.subject, v.interactive), (Subject::User, true)));
    let non_interactive =
        r#"{"id":"g","createdDateTime":"2025-03-01T10:00:00Z","status":{"errorCode":0},"isInteractive":false}"#;
    verdict_of(non_interactive, |v| assert_eq!((v.subject, v.interactive), (Subject::User, false)));
}

#[test]
fn log_analytics_types_map_like_the_categories() {
    for (table, subject, interactive) in [
        ("SigninLogs", Subject::User, true),
        ("AADNonInteractiveUserSignInLogs", Subject::User, false),
        ("AADServicePrincipalSignInLogs", Subject::ServicePrincipal, false),
        ("AADManagedIdentitySignInLogs", Subject::ManagedIdentity, false),
    ] {
        let json = format!(r#"{{"Type":"{table}","TimeGenerated":"2025-03-04T10:15:30Z","ResultType":"0"}}"#);
        verdict_of(&json, |v| assert_eq!((v.subject, v.interactive), (subject, interactive), "{table}"));
    }
}

// §3 Outcome ------------------------------------------------------------------

#[test]
fn error_code_zero_is_success_and_any_other_is_failed() {
    verdict_of(&diag("SignInLogs", 0, ""), |v| assert!(v.success && !v.labels.contains(Labels::FAILED)));
    verdict_of(&diag("SignInLogs", 50126, ""), |v| assert_eq!(labels(v), ["failed"]));
}

#[test]
fn mfa_denied_by_500121() {
    verdict_of(&diag("SignInLogs", 500121, ""), |v| assert_eq!(v.mfa_failure, Some(MfaFailure::Denied)));
}

#[test]
fn mfa_denied_by_additional_details_on_another_code() {
    let json = diag("SignInLogs", 50140, "").replace(
        r#""errorCode":50140"#,
        r#""errorCode":50140,"additionalDetails":"MFA denied; user declined the authentication""#,
    );
    verdict_of(&json, |v| assert_eq!(v.mfa_failure, Some(MfaFailure::Denied)));
}

#[test]
fn mfa_required_by_50074_and_50076() {
    for code in [50074, 50076] {
        verdict_of(&diag("SignInLogs", code, ""), |v| assert_eq!(v.mfa_failure, Some(MfaFailure::Required), "{code}"));
    }
}

#[test]
fn mfa_registration_required_by_50072_and_50079() {
    for code in [50072, 50079] {
        verdict_of(&diag("SignInLogs", code, ""), |v| {
            assert_eq!(v.mfa_failure, Some(MfaFailure::RegistrationRequired), "{code}")
        });
    }
}

#[test]
fn external_challenge_failed_by_50158() {
    verdict_of(&diag("SignInLogs", 50158, ""), |v| {
        assert_eq!(v.mfa_failure, Some(MfaFailure::ExternalChallengeFailed))
    });
}

#[test]
fn mfa_expired_by_50078() {
    verdict_of(&diag("SignInLogs", 50078, ""), |v| assert_eq!(v.mfa_failure, Some(MfaFailure::Expired)));
}

#[test]
fn other_failure_codes_and_successes_carry_no_mfa_failure() {
    for code in [0, 50126, 50053, 53003] {
        verdict_of(&diag("SignInLogs", code, ""), |v| assert_eq!(v.mfa_failure, None, "{code}"));
    }
}

#[test]
fn block_codes_report_what_blocked() {
    verdict_of(&diag("SignInLogs", 53003, ""), |v| assert_eq!(v.blocked_by, Some(BlockedBy::ConditionalAccess)));
    verdict_of(&diag("SignInLogs", 530035, ""), |v| assert_eq!(v.blocked_by, Some(BlockedBy::SecurityDefaults)));
    verdict_of(&diag("SignInLogs", 50126, ""), |v| assert_eq!(v.blocked_by, None));
}

// §4 Labels: MFA evidence -----------------------------------------------------

#[test]
fn multi_factor_requirement_is_mfa_satisfied() {
    verdict_of(&user(r#""authenticationRequirement":"multiFactorAuthentication""#), |v| {
        assert_eq!(labels(v), ["mfa_satisfied"]);
        assert_eq!(v.mfa_method, Some(MfaMethod::Unknown));
    });
}

#[test]
fn succeeded_multifactor_step_is_mfa_satisfied_with_its_method() {
    for spelling in ["Multifactor authentication", "Multi-factor authentication", "multifactor AUTHENTICATION"] {
        let steps = format!(
            r#""authenticationRequirement":"singleFactorAuthentication","authenticationDetails":[{{"authenticationMethod":"Password","succeeded":true,"authenticationStepRequirement":"Primary authentication"}},{{"authenticationMethod":"Mobile app notification","succeeded":true,"authenticationStepRequirement":"{spelling}"}}]"#
        );
        verdict_of(&user(&steps), |v| {
            assert_eq!(labels(v), ["mfa_satisfied"], "{spelling}");
            assert_eq!(v.mfa_method, Some(MfaMethod::Method("Mobile app notification")));
        });
    }
}

#[test]
fn failed_multifactor_step_alone_is_not_mfa() {
    let steps = r#""authenticationDetails":[{"authenticationMethod":"Mobile app notification","succeeded":false,"authenticationStepRequirement":"Multifactor authentication"}]"#;
    verdict_of(&user(steps), |v| assert_eq!(labels(v), ["single_factor"]));
}

#[test]
fn mfa_claim_in_the_token_is_mfa_satisfied_as_previously_satisfied() {
    let json = user("").replace(
        r#""errorCode":0"#,
        r#""errorCode":0,"additionalDetails":"MFA requirement satisfied by claim in the token""#,
    );
    verdict_of(&json, |v| {
        assert_eq!(labels(v), ["mfa_satisfied"]);
        assert_eq!(v.mfa_method, Some(MfaMethod::PreviouslySatisfied));
    });
}

#[test]
fn every_mfa_completion_phrase_is_evidence_in_details_or_step_result() {
    for phrase in [
        "MFA requirement satisfied by claim in the token",
        "MFA completed in Azure AD",
        "MFA successfully completed",
        "MFA requirement satisfied by strong authentication",
        "MFA requirement satisfied by claim provided by external provider",
    ] {
        let in_details =
            user("").replace(r#""errorCode":0"#, &format!(r#""errorCode":0,"additionalDetails":"{phrase}""#));
        verdict_of(&in_details, |v| assert_eq!(labels(v), ["mfa_satisfied"], "details: {phrase}"));
        let in_step = user(&format!(
            r#""authenticationDetails":[{{"authenticationMethod":"Phone call","succeeded":true,"authenticationStepResultDetail":"{phrase}"}}]"#
        ));
        verdict_of(&in_step, |v| assert_eq!(labels(v), ["mfa_satisfied"], "step: {phrase}"));
    }
}

#[test]
fn first_factor_satisfied_by_claim_is_single_factor() {
    // The Elastic "Previously satisfied" records.
    let steps = r#""authenticationRequirement":"singleFactorAuthentication","authenticationDetails":[{"authenticationMethod":"Previously satisfied","succeeded":true,"authenticationStepResultDetail":"First factor requirement satisfied by claim in the token","authenticationStepRequirement":"Primary authentication"}]"#;
    verdict_of(&user(steps), |v| {
        assert_eq!(labels(v), ["single_factor"]);
        assert_eq!(v.mfa_method, None);
    });
}

#[test]
fn single_factor_requirement_empty_or_missing_is_single_factor() {
    for props in
        [r#""authenticationRequirement":"singleFactorAuthentication""#, r#""authenticationRequirement":"""#, ""]
    {
        verdict_of(&user(props), |v| assert_eq!(labels(v), ["single_factor"], "{props}"));
    }
}

#[test]
fn mfa_skipped_by_trusted_ip_is_single_factor_despite_the_requirement() {
    let json = user(r#""authenticationRequirement":"multiFactorAuthentication""#).replace(
        r#""errorCode":0"#,
        r#""errorCode":0,"additionalDetails":"MFA requirement skipped due to IP address""#,
    );
    verdict_of(&json, |v| assert_eq!(labels(v), ["single_factor"]));
}

#[test]
fn mfa_skipped_by_named_location_is_single_factor() {
    let json = user(r#""authenticationRequirement":"multiFactorAuthentication""#)
        .replace(r#""errorCode":0"#, r#""errorCode":0,"additionalDetails":"MFA requirement skipped due to location""#);
    verdict_of(&json, |v| assert_eq!(labels(v), ["single_factor"]));
}

#[test]
fn mfa_skipped_by_trusted_ip_in_a_step_is_single_factor_too() {
    let json = user(
        r#""authenticationRequirement":"multiFactorAuthentication","authenticationDetails":[
            {"authenticationMethod":"Password","succeeded":true,"authenticationStepRequirement":"Primary authentication"},
            {"authenticationMethod":"Previously satisfied","succeeded":true,"authenticationStepRequirement":"Multifactor authentication",
             "authenticationStepResultDetail":"MFA requirement skipped due to IP address"}]"#,
    );
    verdict_of(&json, |v| {
        assert_eq!(labels(v), ["single_factor"]);
        assert_eq!(v.mfa_method, None);
    });
}

#[test]
fn mfa_skipped_by_remembered_device_is_previously_satisfied() {
    let json = user(r#""authenticationRequirement":"multiFactorAuthentication""#).replace(
        r#""errorCode":0"#,
        r#""errorCode":0,"additionalDetails":"MFA requirement skipped due to remembered device""#,
    );
    verdict_of(&json, |v| {
        assert_eq!(labels(v), ["mfa_satisfied"]);
        assert_eq!(v.mfa_method, Some(MfaMethod::PreviouslySatisfied));
    });
}

#[test]
fn failed_user_sign_in_gets_neither_mfa_nor_single_factor() {
    let json = diag("SignInLogs", 50126, r#""authenticationRequirement":"multiFactorAuthentication""#);
    verdict_of(&json, |v| assert_eq!(labels(v), ["failed"]));
}

#[test]
fn service_principal_and_managed_identity_are_not_applicable_whatever_the_outcome() {
    for category in ["ServicePrincipalSignInLogs", "MicrosoftServicePrincipalSignInLogs", "ManagedIdentitySignInLogs"] {
        verdict_of(&diag(category, 0, ""), |v| assert_eq!(labels(v), ["not_applicable"], "{category}"));
        verdict_of(&diag(category, 7000215, ""), |v| assert_eq!(labels(v), ["not_applicable", "failed"], "{category}"));
    }
}

// §4 Labels: legacy auth and client class ---------------------------------------

#[test]
fn every_default_legacy_client_is_legacy_auth() {
    for client in DEFAULT_LEGACY_CLIENTS {
        verdict_of(&user(&format!(r#""clientAppUsed":"{client}""#)), |v| {
            assert!(v.labels.contains(Labels::LEGACY_AUTH), "{client}");
            assert_eq!(v.client_class, ClientClass::Legacy);
        });
    }
}

#[test]
fn legacy_client_names_match_case_insensitively_after_trimming() {
    for client in ["  imap4 ", "EXCHANGE ACTIVESYNC", "authenticated smtp\\t", " Other Clients"] {
        verdict_of(&user(&format!(r#""clientAppUsed":"{client}""#)), |v| {
            assert!(v.labels.contains(Labels::LEGACY_AUTH), "{client:?}")
        });
    }
}

#[test]
fn a_failed_legacy_attempt_is_still_legacy_auth() {
    verdict_of(&diag("SignInLogs", 50126, r#""clientAppUsed":"IMAP4""#), |v| {
        assert_eq!(labels(v), ["legacy_auth", "failed"])
    });
    verdict_of(&diag("SignInLogs", 53003, r#""clientAppUsed":"POP3""#), |v| {
        assert_eq!(labels(v), ["legacy_auth", "failed"]);
        assert_eq!(v.blocked_by, Some(BlockedBy::ConditionalAccess));
    });
}

#[test]
fn the_legacy_list_comes_from_configuration() {
    let rules = Rules { legacy_clients: vec!["Custom Old Protocol".into()], ..Rules::default() };
    verdict_with(&user(r#""clientAppUsed":"custom old protocol""#), &rules, |v| {
        assert!(v.labels.contains(Labels::LEGACY_AUTH))
    });
    verdict_with(&user(r#""clientAppUsed":"IMAP4""#), &rules, |v| assert!(!v.labels.contains(Labels::LEGACY_AUTH)));
}

#[test]
fn client_classes_follow_client_app_used() {
    for (client, class) in [
        (r#""clientAppUsed":"Browser""#, ClientClass::Browser),
        (r#""clientAppUsed":"Mobile Apps and Desktop clients""#, ClientClass::MobileDesktop),
        (r#""clientAppUsed":"Exchange Web Services""#, ClientClass::Legacy),
        (r#""clientAppUsed":"""#, ClientClass::Unknown),
        (r#""clientAppUsed":"Unknown""#, ClientClass::Unknown),
        (r#""clientAppUsed":"Something New""#, ClientClass::Unknown),
        ("", ClientClass::Unknown),
    ] {
        verdict_of(&user(client), |v| assert_eq!(v.client_class, class, "{client}"));
    }
}

#[test]
fn ropc_is_the_authentication_protocol_ropc() {
    verdict_of(&user(r#""authenticationProtocol":"ropc""#), |v| assert!(v.ropc));
    verdict_of(&user(r#""authenticationProtocol":"rpoc""#), |v| assert!(!v.ropc));
    verdict_of(&user(r#""authenticationProtocol":"oAuth2""#), |v| assert!(!v.ropc));
}

// §4 Labels: risk ---------------------------------------------------------------

fn risk(during: &str, aggregated: &str, state: &str) -> String {
    user(&format!(r#""riskLevelDuringSignIn":"{during}","riskLevelAggregated":"{aggregated}","riskState":"{state}""#))
}

#[test]
fn medium_or_high_risk_is_risky_and_low_is_not() {
    verdict_of(&risk("medium", "none", "none"), |v| assert!(v.labels.contains(Labels::RISKY)));
    verdict_of(&risk("none", "high", "none"), |v| assert!(v.labels.contains(Labels::RISKY)));
    verdict_of(&risk("low", "low", "none"), |v| assert!(!v.labels.contains(Labels::RISKY)));
}

#[test]
fn the_higher_of_the_two_levels_is_the_risk_level() {
    verdict_of(&risk("low", "high", "none"), |v| assert_eq!(v.risk_level, RiskLevel::High));
    verdict_of(&risk("medium", "low", "none"), |v| assert_eq!(v.risk_level, RiskLevel::Medium));
}

#[test]
fn hidden_risk_is_not_risky_and_counts_as_hidden() {
    verdict_of(&risk("hidden", "hidden", "none"), |v| {
        assert_eq!(v.risk_level, RiskLevel::Hidden);
        assert!(!v.labels.contains(Labels::RISKY));
    });
}

#[test]
fn a_level_shown_in_one_field_wins_over_hidden_in_the_other() {
    verdict_of(&risk("hidden", "high", "none"), |v| {
        assert_eq!(v.risk_level, RiskLevel::High);
        assert!(v.labels.contains(Labels::RISKY));
    });
    verdict_of(&risk("none", "hidden", "none"), |v| {
        assert_eq!(v.risk_level, RiskLevel::None);
        assert!(!v.labels.contains(Labels::RISKY));
    });
}

#[test]
fn at_risk_or_confirmed_compromised_state_is_risky_at_any_level() {
    verdict_of(&risk("none", "none", "atRisk"), |v| assert!(v.labels.contains(Labels::RISKY)));
    verdict_of(&risk("low", "none", "confirmedCompromised"), |v| assert!(v.labels.contains(Labels::RISKY)));
}

#[test]
fn dismissed_or_confirmed_safe_risk_is_not_raised_again() {
    for state in ["dismissed", "confirmedSafe"] {
        verdict_of(&risk("high", "high", state), |v| {
            assert!(!v.labels.contains(Labels::RISKY), "{state}");
            assert_eq!(v.risk_level, RiskLevel::High);
        });
    }
}

#[test]
fn remediated_risk_was_real_and_stays_risky() {
    verdict_of(&risk("high", "none", "remediated"), |v| assert!(v.labels.contains(Labels::RISKY)));
}

#[test]
fn the_risk_threshold_comes_from_configuration() {
    let rules = Rules { risk_threshold: RiskLevel::Low, ..Rules::default() };
    verdict_with(&risk("low", "none", "none"), &rules, |v| assert!(v.labels.contains(Labels::RISKY)));
    let rules = Rules { risk_threshold: RiskLevel::High, ..Rules::default() };
    verdict_with(&risk("medium", "none", "none"), &rules, |v| assert!(!v.labels.contains(Labels::RISKY)));
}

#[test]
fn risky_is_independent_of_subject_and_outcome() {
    let json = diag("ServicePrincipalSignInLogs", 7000215, r#""riskLevelDuringSignIn":"high""#);
    verdict_of(&json, |v| assert_eq!(labels(v), ["not_applicable", "risky", "failed"]));
}

// §4 Conditional Access ------------------------------------------------------------

#[test]
fn conditional_access_status_is_kept() {
    for (status, expected) in [
        ("success", CaStatus::Success),
        ("failure", CaStatus::Failure),
        ("notApplied", CaStatus::NotApplied),
        ("", CaStatus::Unknown),
    ] {
        verdict_of(&user(&format!(r#""conditionalAccessStatus":"{status}""#)), |v| assert_eq!(v.ca_status, expected));
    }
}

#[test]
fn report_only_policy_results_are_kept_with_their_names() {
    let json = user(
        r#""appliedConditionalAccessPolicies":[{"displayName":"Require MFA","result":"success"},{"displayName":"Block legacy (pilot)","result":"reportOnlyFailure"}]"#,
    );
    verdict_of(&json, |v| {
        assert_eq!(v.report_only.len(), 1);
        assert_eq!(v.report_only[0].policy, "Block legacy (pilot)");
        assert_eq!(v.report_only[0].result, "reportOnlyFailure");
    });
}

// Contract v2 (§4): step evidence only from succeeded steps; the method from the evidence step.

#[test]
fn a_failed_step_saying_mfa_completed_is_no_evidence() {
    let steps = r#""authenticationDetails":[{"authenticationMethod":"Password","succeeded":true,"authenticationStepRequirement":"Primary authentication"},{"authenticationMethod":"Mobile app notification","succeeded":false,"authenticationStepResultDetail":"MFA successfully completed"}]"#;
    verdict_of(&user(steps), |v| {
        assert_eq!(labels(v), ["single_factor"]);
        assert_eq!(v.mfa_method, None);
    });
    // ...and so is a failed step whose requirement is multi-factor, whatever its detail.
    let steps = r#""authenticationDetails":[{"authenticationMethod":"Phone call","succeeded":false,"authenticationStepRequirement":"Multifactor authentication","authenticationStepResultDetail":"MFA completed in Azure AD"}]"#;
    verdict_of(&user(steps), |v| assert_eq!(labels(v), ["single_factor"]));
}

#[test]
fn the_method_is_that_of_the_step_carrying_the_evidence() {
    // SEKOIA-style: "MFA successfully completed" on a step whose requirement says Primary authentication.
    let steps = r#""authenticationDetails":[{"authenticationMethod":"Password","succeeded":true,"authenticationStepRequirement":"Primary authentication","authenticationStepResultDetail":"Correct password"},{"authenticationMethod":"OATH verification code","succeeded":true,"authenticationStepRequirement":"Primary authentication","authenticationStepResultDetail":"MFA successfully completed"}]"#;
    verdict_of(&user(steps), |v| {
        assert_eq!(labels(v), ["mfa_satisfied"]);
        assert_eq!(v.mfa_method, Some(MfaMethod::Method("OATH verification code")));
    });
    // Not the first succeeded step, not the last one: the evidence step.
    let steps = r#""authenticationDetails":[{"authenticationMethod":"Password","succeeded":true},{"authenticationMethod":"FIDO2 security key","succeeded":true,"authenticationStepRequirement":"Multifactor authentication"},{"authenticationMethod":"Previously satisfied","succeeded":true,"authenticationStepResultDetail":"First factor requirement satisfied by claim in the token"}]"#;
    verdict_of(&user(steps), |v| assert_eq!(v.mfa_method, Some(MfaMethod::Method("FIDO2 security key"))));
}

#[test]
fn a_remembered_device_is_previously_satisfied_mfa_and_a_trusted_ip_is_not_mfa() {
    let remembered = r#""authenticationDetails":[{"authenticationMethod":"Previously satisfied","succeeded":true,"authenticationStepResultDetail":"MFA requirement skipped due to remembered device"}]"#;
    verdict_of(&user(remembered), |v| {
        assert_eq!(labels(v), ["mfa_satisfied"]);
        assert_eq!(v.mfa_method, Some(MfaMethod::PreviouslySatisfied));
    });
    for waived in ["MFA requirement skipped due to IP address", "MFA requirement skipped due to location"] {
        let json = user(r#""authenticationRequirement":"multiFactorAuthentication""#)
            .replace(r#""errorCode":0"#, &format!(r#""errorCode":0,"additionalDetails":"{waived}""#));
        verdict_of(&json, |v| assert_eq!(labels(v), ["single_factor"], "{waived}"));
    }
}

#[test]
fn why_a_sign_in_is_risky_is_said_in_words_never_none_risk() {
    use crate::classify::{RiskLevel as L, risk_reason};
    let cases: [(L, Option<&str>, &str); 7] = [
        (L::High, Some("atRisk"), "high risk"),
        (L::Medium, None, "medium risk"),
        (L::None, Some("atRisk"), "risk state: at risk, level none"),
        (L::Hidden, Some("atRisk"), "risk state: at risk, level hidden by licence"),
        (L::Low, Some("confirmedCompromised"), "risk state: confirmed compromised, level low"),
        (L::None, Some("confirmedCompromised"), "risk state: confirmed compromised, level none"),
        (L::High, Some("remediated"), "high risk, remediated"),
    ];
    for (level, state, words) in cases {
        assert_eq!(risk_reason(level, state), words, "{level:?} {state:?}");
        assert!(!risk_reason(level, state).contains("none risk") && !risk_reason(level, state).contains("hidden risk"));
    }
}
