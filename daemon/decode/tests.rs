//! One test per shape and per quirk of SIGNIN-SEMANTICS §1.

use super::*;
use std::borrow::Cow;

fn items(json: &str) -> Vec<Item<'_>> {
    decode_message(json.as_bytes())
}

fn sign_in(json: &str) -> SignIn<'_> {
    let mut all = items(json);
    assert_eq!(all.len(), 1, "expected one record from {json}");
    match all.remove(0) {
        Item::SignIn(s) => s,
        other => panic!("expected a sign-in, got {other:?}"),
    }
}

fn malformed(json: &str) -> DecodeError {
    match items(json).remove(0) {
        Item::Malformed(m) => m.error,
        other => panic!("expected malformed, got {other:?}"),
    }
}

const DIAGNOSTIC: &str = r#"{"time":"2025-01-15T09:30:25.1234567Z","category":"SignInLogs","resultType":"0","properties":{"id":"a1","userPrincipalName":"Ann@Contoso.example","userId":"u1","status":{"errorCode":0},"clientAppUsed":"Browser"}}"#;

#[test]
fn diagnostic_record_with_properties_decodes() {
    let s = sign_in(DIAGNOSTIC);
    assert_eq!(s.shape, Shape::Diagnostic);
    assert_eq!(s.category, Category::SignIn);
    assert_eq!(s.outcome_code, 0);
    assert_eq!(s.fields.user_principal_name.as_deref(), Some("Ann@Contoso.example"));
    assert_eq!(s.time.to_rfc3339(), "2025-01-15T09:30:25.123456700+00:00");
}

#[test]
fn event_hubs_envelope_with_many_records_yields_each() {
    let one = DIAGNOSTIC;
    let message = format!(r#"{{"records":[{one},{one},{one}]}}"#);
    let all = decode_message(message.as_bytes());
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|i| matches!(i, Item::SignIn(_))));
}

#[test]
fn strings_without_escapes_are_borrowed_from_the_input() {
    let s = sign_in(DIAGNOSTIC);
    assert!(matches!(s.fields.user_principal_name, Some(Cow::Borrowed(_))));
    let escaped = DIAGNOSTIC.replace("Ann@Contoso", r"Ann\u0040Contoso");
    let s = sign_in(&escaped);
    assert_eq!(s.fields.user_principal_name.as_deref(), Some("Ann@Contoso.example"));
}

#[test]
fn a_bad_record_in_an_envelope_costs_only_that_record() {
    let bad_type = DIAGNOSTIC.replace(r#""status":{"errorCode":0}"#, r#""status":[1,2]"#);
    let no_time = DIAGNOSTIC.replace(r#""time":"2025-01-15T09:30:25.1234567Z","#, "");
    let message = format!(r#"{{"records":[{DIAGNOSTIC},{bad_type},7,{no_time},{DIAGNOSTIC}]}}"#);
    let all = decode_message(message.as_bytes());
    assert_eq!(all.len(), 5);
    assert!(matches!(all[0], Item::SignIn(_)));
    match &all[1] {
        Item::Malformed(m) => {
            assert_eq!(m.error.reason(), "field_type");
            assert!(m.error.to_string().contains("properties.status"), "{}", m.error);
            assert!(!m.error.to_string().contains(" at line "), "no position inside the record: {}", m.error);
            assert_eq!(m.raw, bad_type.as_bytes());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&all[2], Item::Malformed(m) if m.raw == b"7"), "{:?}", all[2]);
    // Reached by the slow path too (the message had a type error): still its own bytes.
    assert!(
        matches!(&all[3], Item::Malformed(m) if m.error == DecodeError::MissingTime && m.raw == no_time.as_bytes())
    );
    assert!(matches!(all[4], Item::SignIn(_)));
}

#[test]
fn missing_time_falls_back_to_created_date_time() {
    let no_time = DIAGNOSTIC
        .replace(r#""time":"2025-01-15T09:30:25.1234567Z","#, "")
        .replace(r#""id":"a1","#, r#""id":"a1","createdDateTime":"2025-01-15T09:30:20Z","#);
    assert_eq!(sign_in(&no_time).time.to_rfc3339(), "2025-01-15T09:30:20+00:00");
}

#[test]
fn semantic_errors_in_a_good_envelope_keep_their_raw_bytes() {
    let no_time = DIAGNOSTIC.replace(r#""time":"2025-01-15T09:30:25.1234567Z","#, "");
    let message = format!(r#"{{"records":[{DIAGNOSTIC}, {no_time} ]}}"#);
    let all = decode_message(message.as_bytes());
    match &all[1] {
        Item::Malformed(m) => {
            assert_eq!(m.error, DecodeError::MissingTime);
            assert_eq!(m.raw, no_time.as_bytes());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn records_under_a_repeated_key_keep_their_own_raw_bytes() {
    let no_time = DIAGNOSTIC.replace(r#""time":"2025-01-15T09:30:25.1234567Z","#, "");
    let message = format!(r#"{{"records":[{DIAGNOSTIC}],"records":[{no_time}]}}"#);
    let all = decode_message(message.as_bytes());
    assert_eq!(all.len(), 2);
    match &all[1] {
        Item::Malformed(m) => assert_eq!(m.raw, no_time.as_bytes()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_json_is_one_malformed_message_with_its_bytes() {
    let text = r#"{"records":[{"category":"SignInLogs""#;
    let all = items(text);
    assert_eq!(all.len(), 1);
    match &all[0] {
        Item::Malformed(m) => {
            assert_eq!(m.error.reason(), "syntax");
            assert_eq!(m.raw, text.as_bytes());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn level_and_duration_and_result_type_as_number_or_string_are_accepted() {
    for (level, duration, result) in [("4", "0", "0"), (r#""4""#, r#""0""#, r#""0""#), (r#""Informational""#, "0", "0")]
    {
        let json = format!(
            r#"{{"time":"2025-01-15T09:30:25Z","category":"SignInLogs","Level":{level},"durationMs":{duration},"resultType":{result},"properties":{{"userId":"u"}}}}"#
        );
        assert_eq!(sign_in(&json).outcome_code, 0, "{json}");
    }
}

#[test]
fn result_type_as_number_and_string_both_give_the_outcome() {
    let number = r#"{"time":"2025-01-15T09:30:25Z","category":"SignInLogs","resultType":50126,"properties":{}}"#;
    let string = r#"{"time":"2025-01-15T09:30:25Z","category":"SignInLogs","resultType":"50126","properties":{}}"#;
    assert_eq!(sign_in(number).outcome_code, 50126);
    assert_eq!(sign_in(string).outcome_code, 50126);
}

#[test]
fn status_error_code_wins_over_result_type() {
    let json = r#"{"time":"2025-01-15T09:30:25Z","category":"SignInLogs","resultType":"Failure","properties":{"status":{"errorCode":50053}}}"#;
    assert_eq!(sign_in(json).outcome_code, 50053);
}

#[test]
fn every_time_format_of_the_contract_parses() {
    for time in [
        "2007-01-09T09:41:00Z",
        "2007-01-09T11:41:00+02:00",
        "01/09/2007 09:41:00 AM",
        "1/9/2007 10:41:00 AM +01:00",
        "2007-01-09 09:41:00",
        "2007-01-09T09:41:00",
    ] {
        let json = format!(r#"{{"time":"{time}","category":"SignInLogs","resultType":0,"properties":{{}}}}"#);
        assert_eq!(sign_in(&json).time.to_rfc3339(), "2007-01-09T09:41:00+00:00", "{time}");
    }
}

#[test]
fn an_unknown_time_format_is_reported_with_its_value() {
    let json = r#"{"time":"last tuesday","category":"SignInLogs","resultType":0,"properties":{}}"#;
    assert_eq!(malformed(json), DecodeError::BadTime("last tuesday".into()));
    assert!(malformed(json).to_string().contains("last tuesday"));
}

#[test]
fn lower_cased_top_level_keys_and_extra_fields_are_accepted() {
    let json = r#"{"calleripaddress":"12.12.12.12","Category":"SignInLogs","correlationid":"c1","operationversion":1,"p_log_type":"Azure.Audit","TIME":"2023-07-26 23:00:20.889","resulttype":0,"properties":{"id":"x"}}"#;
    let s = sign_in(json);
    assert_eq!(s.category, Category::SignIn);
    assert_eq!(s.fields.correlation_id.as_deref(), Some("c1"));
    assert_eq!(s.fields.caller_ip_address.as_deref(), Some("12.12.12.12"));
    assert_eq!(s.time.to_rfc3339(), "2023-07-26T23:00:20.889+00:00");
}

#[test]
fn properties_resource_id_does_not_collide_with_the_top_level_arm_resource_id() {
    let json = r#"{"resourceId":"/tenants/t/providers/Microsoft.aadiam","time":"2025-01-15T09:30:25Z","category":"SignInLogs","resultType":0,"properties":{"resourceId":"797f4846-ba00-4fd7-ba43-dac1f8f63013","resourceDisplayName":"Azure Management","id":"r"}}"#;
    let s = sign_in(json);
    assert_eq!(s.fields.resource_display_name.as_deref(), Some("Azure Management"));
    assert_eq!(s.fields.id.as_deref(), Some("r"));
}

#[test]
fn conditional_access_audiences_as_strings_or_objects_both_decode() {
    for audiences in
        [r#"["00000003-0000-0000-c000-000000000000"]"#, r#"[{"applicationId":"00000003-0000-0000-c000-000000000000"}]"#]
    {
        let json = format!(
            r#"{{"time":"2025-01-15T09:30:25Z","category":"SignInLogs","resultType":0,"properties":{{"conditionalAccessAudiences":{audiences},"userId":"u"}}}}"#
        );
        assert_eq!(sign_in(&json).fields.user_id.as_deref(), Some("u"));
    }
}

#[test]
fn guid_user_principal_name_and_null_user_id_decode() {
    let json = r#"{"time":"2025-01-15T09:30:25Z","category":"SignInLogs","resultType":0,"properties":{"userPrincipalName":"c3813493-bf92-5123-2717-8a8b2979c38b","userId":null}}"#;
    let s = sign_in(json);
    assert_eq!(s.fields.user_id, None);
    assert_eq!(s.fields.user_principal_name.as_deref(), Some("c3813493-bf92-5123-2717-8a8b2979c38b"));
}

#[test]
fn pascal_case_sequence_keys_beside_camel_case_steps_are_tolerated() {
    let json = r#"{"time":"2025-01-15T09:30:25Z","category":"SignInLogs","resultType":0,"properties":{"authenticationDetails":[{"authenticationMethod":"Password","succeeded":true,"StatusSequence":0,"RequestSequence":1,"authenticationStepRequirement":"Primary authentication"}]}}"#;
    let steps = sign_in(json).fields.authentication_details.unwrap();
    assert_eq!(steps[0].method.as_deref(), Some("Password"));
    assert_eq!(steps[0].succeeded, Some(true));
}

#[test]
fn non_sign_in_categories_are_directory_records_or_skipped_never_malformed() {
    for category in ["AuditLogs", "RiskyUsers", "UserRiskEvents"] {
        let json = format!(r#"{{"time":"2025-01-15T09:30:25Z","category":"{category}","properties":{{}}}}"#);
        match items(&json).remove(0) {
            Item::Directory(r) => assert_eq!(r.category.as_str(), category),
            other => panic!("{other:?}"),
        }
    }
    for category in ["ProvisioningLogs", "NetworkAccessTrafficLogs"] {
        let json = format!(r#"{{"time":"2025-01-15T09:30:25Z","category":"{category}","properties":{{}}}}"#);
        match items(&json).remove(0) {
            Item::Skipped { category: c } => assert_eq!(c, category),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn the_category_is_the_envelope_s_not_a_category_inside_properties() {
    let audit = r#"{"time":"2025-01-15T09:30:25Z","category":"AuditLogs","properties":{"category":"UserManagement","result":"success"}}"#;
    match items(audit).remove(0) {
        Item::Directory(r) => assert_eq!(r.category.as_str(), "AuditLogs"),
        other => panic!("{other:?}"),
    }
    let record = r#"{"time":"2025-01-15T09:30:25Z","category":"SignInLogs","resultType":0,"properties":{"category":"Other","time":"garbage","resultType":"x"}}"#;
    let s = sign_in(record);
    assert_eq!((s.category, s.outcome_code), (Category::SignIn, 0));
}

#[test]
fn a_record_without_category_time_or_outcome_names_what_is_missing() {
    let no_category = r#"{"time":"2025-01-15T09:30:25Z","resultType":0,"properties":{}}"#;
    let no_time = r#"{"category":"SignInLogs","resultType":0,"properties":{}}"#;
    let no_outcome = r#"{"time":"2025-01-15T09:30:25Z","category":"SignInLogs","properties":{}}"#;
    let word_outcome =
        r#"{"time":"2025-01-15T09:30:25Z","category":"SignInLogs","resultType":"Success","properties":{}}"#;
    assert_eq!(malformed(no_category), DecodeError::MissingCategory);
    assert_eq!(malformed(no_time), DecodeError::MissingTime);
    assert_eq!(malformed(no_outcome), DecodeError::MissingOutcome);
    assert_eq!(malformed(word_outcome), DecodeError::BadOutcome("Success".into()));
    assert!(malformed(word_outcome).to_string().contains("resultType"));
}

#[test]
fn a_missing_id_is_not_fatal() {
    let without = DIAGNOSTIC.replace(r#""id":"a1","#, r#""correlationId":"c9","#);
    let s = sign_in(&without);
    assert_eq!((s.fields.id.as_deref(), s.fields.correlation_id.as_deref()), (None, Some("c9")));
}

#[test]
fn graph_value_page_decodes_flat_records() {
    let json = r#"{"@odata.context":"x","value":[
        {"id":"g1","createdDateTime":"2025-03-01T10:00:00Z","userPrincipalName":"a@contoso.example","userId":"u1","status":{"errorCode":0},"signInEventTypes":["interactiveUser"]},
        {"id":"g2","createdDateTime":"2025-03-01T10:00:00Z","userId":"u1","status":{"errorCode":0},"signInEventTypes":["nonInteractiveUser"]},
        {"id":"g3","createdDateTime":"2025-03-01T10:00:00Z","status":{"errorCode":0},"signInEventTypes":["servicePrincipal"]},
        {"id":"g4","createdDateTime":"2025-03-01T10:00:00Z","status":{"errorCode":0},"signInEventTypes":["managedIdentity"]},
        {"id":"g5","createdDateTime":"2025-03-01T10:00:00Z","status":{"errorCode":0},"isInteractive":false},
        {"id":"g6","createdDateTime":"2025-03-01T10:00:00Z","status":{"errorCode":0}}
    ],"@odata.nextLink":"y"}"#;
    let categories: Vec<_> = items(json)
        .into_iter()
        .map(|i| match i {
            Item::SignIn(s) => {
                assert_eq!(s.shape, Shape::Graph);
                s.category
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        categories,
        [
            Category::SignIn,
            Category::NonInteractiveUser,
            Category::ServicePrincipal,
            Category::ManagedIdentity,
            Category::NonInteractiveUser,
            Category::SignIn
        ]
    );
}

#[test]
fn log_analytics_rows_with_json_text_columns_decode() {
    let json = r#"[{"TableName":"PrimaryResult","Type":"SigninLogs","TimeGenerated":"2025-03-04T10:15:30.1234567Z","ResultType":"0","UserId":"None","UserPrincipalName":"liam@contoso.example","IsInteractive":"True",
        "AuthenticationDetails":"[{\"authenticationMethod\":\"Mobile app notification\",\"succeeded\":true,\"authenticationStepRequirement\":\"Multifactor authentication\",\"StatusSequence\":0}]",
        "Status":"{\"errorCode\":0,\"additionalDetails\":\"MFA completed in Azure AD\"}",
        "ConditionalAccessPolicies":"[{\"displayName\":\"CA020\",\"result\":\"reportOnlyFailure\"},{\"displayName\":\"CA001\",\"result\":\"success\"}]"},
      {"Type":"AADNonInteractiveUserSignInLogs","TimeGenerated":"2025-03-04T10:15:30Z","ResultType":"50076","ConditionalAccessPolicies":[{"displayName":"CA021","result":"reportOnlyInterrupted"}]},
      {"Type":"AADManagedIdentitySignInLogs","TimeGenerated":"2025-03-04T10:15:30Z","ResultType":"0"},
      {"Type":"AuditLogs","TimeGenerated":"2025-03-04T10:15:30Z"}]"#;
    let all = items(json);
    let Item::SignIn(first) = &all[0] else { panic!("{:?}", all[0]) };
    assert_eq!(first.shape, Shape::LogAnalytics);
    assert_eq!(first.category, Category::SignIn);
    assert_eq!(first.fields.user_id, None, "a Python None cell is no user id");
    assert_eq!(first.fields.is_interactive, Some(true));
    let steps = first.fields.authentication_details.as_ref().unwrap();
    assert_eq!(steps[0].method.as_deref(), Some("Mobile app notification"));
    assert_eq!(first.fields.status.as_ref().unwrap().additional_details.as_deref(), Some("MFA completed in Azure AD"));
    let report_only = first.fields.report_only.as_ref().unwrap();
    assert_eq!(report_only.len(), 1);
    assert_eq!((report_only[0].policy.as_ref(), report_only[0].result.as_ref()), ("CA020", "reportOnlyFailure"));

    let Item::SignIn(second) = &all[1] else { panic!("{:?}", all[1]) };
    assert_eq!((second.category, second.outcome_code), (Category::NonInteractiveUser, 50076));
    assert_eq!(second.fields.report_only.as_ref().unwrap()[0].policy, "CA021");
    assert!(matches!(&all[2], Item::SignIn(s) if s.category == Category::ManagedIdentity));
    assert!(matches!(&all[3], Item::Directory(r) if r.category.as_str() == "AuditLogs"));
}

#[test]
fn report_only_policies_are_kept_and_enforced_ones_dropped() {
    let json = r#"{"time":"2025-01-15T09:30:25Z","category":"SignInLogs","resultType":0,"properties":{"appliedConditionalAccessPolicies":[
        {"id":"1","displayName":"Require MFA","result":"success","enforcedGrantControls":["Mfa"]},
        {"id":"2","displayName":"Block legacy (pilot)","result":"reportOnlyFailure"},
        {"id":"3","displayName":"Compliant device (pilot)","result":"reportOnlyNotApplied"},
        {"id":"4","displayName":"Off","result":"notEnabled"}]}}"#;
    let kept = sign_in(json).fields.report_only.unwrap();
    let names: Vec<_> = kept.iter().map(|r| (r.policy.as_ref(), r.result.as_ref())).collect();
    assert_eq!(
        names,
        [("Block legacy (pilot)", "reportOnlyFailure"), ("Compliant device (pilot)", "reportOnlyNotApplied")]
    );
}

#[test]
fn a_json_scalar_or_empty_input_is_malformed_not_a_panic() {
    for text in ["", "   ", "null", "42", "\"x\"", "[]", "{}", "[1]", "{\"records\":null}"] {
        let all = items(text);
        assert!(all.iter().all(|i| !matches!(i, Item::SignIn(_))), "{text}: {all:?}");
    }
}

// Contract v2 (SIGNIN-SEMANTICS §1): event time is the sign-in's own time.

#[test]
fn created_date_time_is_the_event_time_when_both_are_present() {
    // The Elastic ADFS sample: written at 15:03:58, signed in at 14:56:31.
    let both = DIAGNOSTIC.replace(r#""id":"a1","#, r#""id":"a1","createdDateTime":"2025-01-15T09:22:10Z","#);
    assert_eq!(sign_in(&both).time.to_rfc3339(), "2025-01-15T09:22:10+00:00");
    // An invalid createdDateTime falls back to `time`, it does not make the record malformed.
    let bad = DIAGNOSTIC.replace(r#""id":"a1","#, r#""id":"a1","createdDateTime":"yesterday","#);
    assert_eq!(sign_in(&bad).time.to_rfc3339(), "2025-01-15T09:30:25.123456700+00:00");
}
