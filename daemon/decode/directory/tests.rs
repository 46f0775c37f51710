use super::*;

fn at() -> Context<'static> {
    Context {
        odata_context: None,
        received: Some(DateTime::parse_from_rfc3339("2026-11-20T00:00:00Z").unwrap().into()),
    }
}

fn one(json: &str) -> DirectoryRecord {
    decode_directory(json.as_bytes(), at()).expect("a directory record").expect("decodes")
}

#[test]
fn role_operations_are_the_completed_changes_only() {
    let cases = [
        ("add member to role", Some((Holding::Active, true, false))),
        ("remove member from role", Some((Holding::Active, false, false))),
        ("add scoped member to role", Some((Holding::Active, true, false))),
        ("add eligible member to role in pim completed (timebound)", Some((Holding::Eligible, true, false))),
        ("remove eligible member from role in pim completed (permanent)", Some((Holding::Eligible, false, false))),
        ("add member to role completed (pim activation)", Some((Holding::Active, true, true))),
        ("remove member from role completed (pim deactivate)", Some((Holding::Active, false, true))),
        ("remove member from role (pim activation expired)", Some((Holding::Active, false, true))),
        ("remove permanent eligible role assignment", Some((Holding::Eligible, false, false))),
        ("restore member from role", Some((Holding::Active, true, false))),
        ("add member to role requested (pim activation)", None),
        ("add member to role request approved (pim activation)", None),
        ("add member to role request denied (pim activation)", None),
        ("add eligible member to role in pim canceled (timebound)", None),
        ("update role setting in pim", None),
        ("add role definition", None),
        ("add member to group", None),
    ];
    for (op, want) in cases {
        assert_eq!(role_operation(op), want, "{op}");
    }
}

#[test]
fn log_analytics_dynamic_columns_given_as_json_text_are_read() {
    let r = one(
        r#"{"Type":"AuditLogs","TimeGenerated":"2026-11-10T09:00:01Z","ActivityDateTime":"2026-11-10T09:00:00Z","Category":"RoleManagement","Result":"success","ActivityDisplayName":"Remove member from role","TargetResources":"[{\"id\":\"7C5B3A5E-0000-4000-8000-000000000001\",\"type\":\"user\",\"userPrincipalName\":\"Ann@contoso.example\",\"modifiedProperties\":[{\"displayName\":\"Role.TemplateId\",\"oldValue\":\"\\\"62E90394-69F5-4237-9190-012177145E10\\\"\",\"newValue\":null}]}]"}"#,
    );
    let Fact::Role(c) = &r.fact else { panic!("{r:?}") };
    assert_eq!(r.shape, Shape::LogAnalytics);
    assert!(!c.added);
    assert_eq!(c.principal.id.as_deref(), Some("7c5b3a5e-0000-4000-8000-000000000001"), "ids lower-cased");
    assert_eq!(
        c.role.template_id.as_deref(),
        Some("62e90394-69f5-4237-9190-012177145e10"),
        "the old value of a removal"
    );
}

#[test]
fn a_failed_or_unknown_operation_is_counted_not_applied() {
    let failed = one(
        r#"{"category":"AuditLogs","time":"2026-11-10T09:00:00Z","properties":{"category":"RoleManagement","result":"failure","activityDisplayName":"Add member to role","activityDateTime":"2026-11-10T09:00:00Z","targetResources":[{"id":"u1","type":"User"}]}}"#,
    );
    assert_eq!(failed.fact, Fact::Other { family: Family::Role, failed: true });
    let other = one(
        r#"{"category":"AuditLogs","time":"2026-11-10T09:00:00Z","properties":{"category":"GroupManagement","result":"success","activityDisplayName":"Add member to role in PIM completed (permanent)","activityDateTime":"2026-11-10T09:00:00Z"}}"#,
    );
    assert!(
        matches!(other.fact, Fact::Other { failed: false, .. }),
        "PIM for Groups is not a directory role: {other:?}"
    );
}

#[test]
fn a_record_without_a_usable_time_is_malformed_and_a_sign_in_is_not_ours() {
    let bad = decode_directory(
        br#"{"category":"RiskyUsers","time":"soon","properties":{"userPrincipalName":"a@b.example"}}"#,
        Context::default(),
    );
    assert!(matches!(bad, Some(Err(DecodeError::BadTime(_)))), "{bad:?}");
    let none = decode_directory(br#"{"isMfaRegistered":true,"userPrincipalName":"a@b.example"}"#, Context::default());
    assert!(
        matches!(none, Some(Err(DecodeError::MissingTime))),
        "a report without a time, read from nowhere: {none:?}"
    );
    assert!(
        decode_directory(br#"{"category":"SignInLogs","time":"2026-11-10T09:00:00Z","properties":{}}"#, at()).is_none()
    );
    assert!(
        decode_directory(br#"{"userPrincipalName":"a@b.example","createdDateTime":"2026-11-10T09:00:00Z"}"#, at())
            .is_none()
    );
}

#[test]
fn methods_have_a_strength_and_the_admin_centers_words_are_graphs_names() {
    for (name, graph, strength) in [
        ("Microsoft Authenticator app", "microsoftAuthenticatorPush", Strength::Mfa),
        ("FIDO2 security key", "fido2SecurityKey", Strength::PhishingResistant),
        ("Windows Hello for Business", "windowsHelloForBusiness", Strength::PhishingResistant),
        ("Certificate-based authentication", "x509CertificateMultiFactor", Strength::PhishingResistant),
        ("Microsoft Passwordless phone sign-in", "microsoftAuthenticatorPasswordless", Strength::Mfa),
        ("Alternate Mobile Phone", "alternateMobilePhone", Strength::Mfa),
        ("Security questions", "securityQuestion", Strength::NotMfa),
        ("Email", "email", Strength::NotMfa),
        ("fido2", "fido2", Strength::PhishingResistant),
        ("passKeyDeviceBoundAuthenticator", "passKeyDeviceBoundAuthenticator", Strength::PhishingResistant),
    ] {
        let m = Method::of_name(name);
        assert_eq!((m.0.as_str(), m.strength()), (graph, strength), "{name}");
    }
}

#[test]
fn the_identity_of_a_record_is_stable_and_its_own() {
    let a = one(
        r#"{"category":"AuditLogs","time":"2026-11-10T09:00:00Z","properties":{"id":"Directory_1","category":"UserManagement","result":"success","activityDisplayName":"User deleted security info","activityDateTime":"2026-11-10T09:00:00Z","resultReason":"User deleted Fido","targetResources":[{"id":"u1","type":"User"}]}}"#,
    );
    let b = one(
        r#"{"category":"AuditLogs","time":"2026-11-10T09:00:00Z","properties":{"id":"DIRECTORY_1","category":"UserManagement","result":"success","activityDisplayName":"User deleted security info","activityDateTime":"2026-11-10T09:00:00Z","resultReason":"User deleted Fido","targetResources":[{"id":"u1","type":"User"}]}}"#,
    );
    assert_eq!(a.identity(), b.identity(), "ids compared without letter case");
    assert_ne!(a.identity(), Identity::of("AuditLogs", Some("Directory_2"), None, 0, None));
}
