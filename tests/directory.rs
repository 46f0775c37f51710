//! Directory records: every public AuditLogs / RiskyUsers / UserRiskEvents /
//! Graph sample and every fixture of tests/fixtures/directory decodes to the
//! role, method, registration and risk facts it holds (not only "it parses"),
//! and the directory state built from them does not depend on the order the
//! records come in or on how often each is read.

mod common;

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use mfawatch::decode::directory::{DirectoryRecord, Fact, Holding, MethodChangeKind};
use mfawatch::decode::{Item, decode_message_received};
use mfawatch::directory::{Directory, PrivilegedRoles, Registration};
use mfawatch::source::files;

/// When the test says the files were read (a seed without a time of its own is as of then).
fn read_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap()
}

/// One record of a file in words, or what else it became.
fn describe(item: &Item<'_>) -> String {
    match item {
        Item::Directory(r) => fact(r),
        Item::SignIn(s) => format!("sign-in {}", s.category),
        Item::Skipped { category } => format!("skipped {category}"),
        Item::Malformed(m) => format!("malformed {}", m.error.reason()),
    }
}

fn fact(r: &DirectoryRecord) -> String {
    let who = |p: &mfawatch::decode::directory::Principal| {
        format!("{:?} id={} upn={}", p.kind, p.id.as_deref().unwrap_or("-"), p.upn.as_deref().unwrap_or("-"))
    };
    let t = |t: &Option<DateTime<Utc>>| t.map_or("-".into(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let body = match &r.fact {
        Fact::Role(c) => format!(
            "role {} {} {:?}{} {} role={}/{} since={} until={}",
            if c.added { "add" } else { "remove" },
            who(&c.principal),
            c.holding,
            if c.activation { " activation" } else { "" },
            r.operation,
            c.role.template_id.as_deref().unwrap_or("-"),
            c.role.name.as_deref().unwrap_or("-"),
            t(&c.since),
            t(&c.until),
        ),
        Fact::Methods(m) => format!(
            "methods {:?} {} [{}]{}",
            m.change,
            who(&m.user),
            m.methods.iter().map(|m| m.0.as_str()).collect::<Vec<_>>().join(","),
            if m.by_admin { " by admin" } else { "" }
        ),
        Fact::Registration(d) => format!(
            "registration {} mfa_registered={:?} capable={:?} [{}] default={}",
            who(&d.user),
            d.mfa_registered,
            d.mfa_capable,
            d.methods.iter().map(|m| m.0.as_str()).collect::<Vec<_>>().join(","),
            d.default_method.as_deref().unwrap_or("-")
        ),
        Fact::RiskyUser(u) => format!(
            "risky user {} level={} state={} detail={} deleted={}",
            who(&u.user),
            u.level.as_deref().unwrap_or("-"),
            u.state.as_deref().unwrap_or("-"),
            u.detail.as_deref().unwrap_or("-"),
            u.deleted
        ),
        Fact::Risk(d) => format!(
            "risk {} {} level={} state={} timing={} ip={}",
            who(&d.user),
            d.event_type.as_deref().unwrap_or("-"),
            d.level.as_deref().unwrap_or("-"),
            d.state.as_deref().unwrap_or("-"),
            d.timing.as_deref().unwrap_or("-"),
            d.ip.as_deref().unwrap_or("-")
        ),
        Fact::Policy(p) => {
            use mfawatch::decode::directory::{CaPolicy, Protection};
            let side = |p: &Option<Box<CaPolicy>>| match p {
                None => "-".to_owned(),
                Some(p) => format!(
                    "{}/grant={}/mfa={}/include={}/exclude={}",
                    p.state.map_or("-", |s| s.as_str()),
                    p.grant.join(","),
                    p.requires_mfa(),
                    [p.include_users.clone(), p.include_groups.clone(), p.include_roles.clone()].concat().join(","),
                    p.exclusions().join(","),
                ),
            };
            let what = match &p.protection {
                Protection::ConditionalAccess { op, before, after } => {
                    format!("{op:?} before={} after={}", side(before), side(after))
                }
                Protection::SecurityDefaults { before, enabled } => {
                    format!("security defaults {before:?} -> {enabled}")
                }
            };
            format!(
                "policy {} id={} name={} by={} {what}",
                r.operation,
                p.policy_id.as_deref().unwrap_or("-"),
                p.policy_name.as_deref().unwrap_or("-"),
                r.initiated_by.as_deref().unwrap_or("-"),
            )
        }
        Fact::PerUserMfa(m) => format!(
            "per-user mfa {} {} {} -> {} by={}",
            r.operation,
            who(&m.user),
            m.before.as_deref().unwrap_or("-"),
            m.after,
            r.initiated_by.as_deref().unwrap_or("-"),
        ),
        Fact::Other { family, failed } => {
            format!("other {} {}{}", family.as_str(), r.operation, if *failed { " (failed)" } else { "" })
        }
    };
    format!(
        "{} {:?} {} | {body}",
        r.category.as_str(),
        r.shape,
        r.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// Every record of a file, decoded as the pipeline decodes it.
fn records_of(path: &Path) -> Vec<String> {
    let mut out = Vec::new();
    files::read_messages(&path.to_string_lossy(), |bytes, _, _| {
        out.extend(decode_message_received(bytes, Some(read_at())).iter().map(describe));
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    out
}

fn sample(name: &str) -> PathBuf {
    common::root().join("../shared/samples/public/directory").join(name)
}

fn fixture(name: &str) -> PathBuf {
    common::root().join("tests/fixtures/directory").join(name)
}

fn assert_records(path: PathBuf, expected: &[&str]) {
    let got = records_of(&path);
    assert_eq!(got, expected, "{}:\n{}", path.display(), got.join("\n"));
}

#[test]
fn every_public_directory_sample_is_checked_here() {
    let checked = [
        "datadog-integrations-core/azure.activedirectory_tests.sample-add-member-to-role.json",
        "demisto-content/AzureADIdentityProtection_risk_detections_response.json",
        "demisto-content/AzureADIdentityProtection_risky_users_response.json",
        "demisto-content/AzureRiskyUsers_get_risky_user.json",
        "demisto-content/AzureRiskyUsers_list_risky_users.json",
        "elastic-integrations/test-rickyusers-raw.log",
        "elastic-integrations/test-userriskevents-raw.log",
        "microsoft-graph-docs-contrib/beta.authenticationmethodsroot-list-userregistrationdetails.json",
        "microsoft-graph-docs-contrib/beta.directoryaudit-list.ex1.update-user-strongauthenticationmethod.json",
        "microsoft-graph-docs-contrib/v1.0.authenticationmethodsroot-list-userregistrationdetails.json",
        "microsoft-graph-docs-contrib/v1.0.rbacapplication-list-roleassignments.ex1.expand-principal.INVALID-trailing-commas.json",
        "microsoft-graph-docs-contrib/v1.0.rbacapplication-list-roleassignments.ex2.filter-principalId.json",
        "microsoft-graph-docs-contrib/v1.0.rbacapplication-list-roleassignments.ex3.entitlementmanagement-catalog.json",
        "microsoft-graph-docs-contrib/v1.0.riskdetection-list.json",
        "microsoft-graph-docs-contrib/v1.0.unifiedroleassignment-get.ex1.json",
        "microsoft-graph-docs-contrib/v1.0.unifiedroleassignment-get.ex2.expand-roleDefinition.INVALID-trailing-commas.json",
        "microsoftdocs-azure-docs/reference-azure-monitor-audit-log-schema.ex2.update-service-principal.legacy.json",
        "microsoftdocs-azure-docs/reference-azure-monitor-audit-log-schema.ex3.update-policy.json",
        "panther-analysis/azure_mfa_disabled.tests.ndjson",
        "panther-analysis/azure_policy_changed.tests.ndjson",
        "panther-analysis/azure_role_changed_pim.tests.ndjson",
    ];
    let all: Vec<String> = common::directory_samples()
        .iter()
        .map(|p| p.strip_prefix(sample("")).unwrap().to_string_lossy().into_owned())
        .filter(|p| !p.ends_with("SOURCES.md"))
        .collect();
    assert_eq!(all, checked, "a new sample needs its facts checked below");
}

#[test]
fn audit_role_samples_give_the_principal_and_the_role() {
    assert_records(
        sample("datadog-integrations-core/azure.activedirectory_tests.sample-add-member-to-role.json"),
        &[
            "AuditLogs Diagnostic 2020-04-08T07:40:53Z | role add ServicePrincipal id=febf6383-8bed-4efb-8244-c9a456a1f172 upn=- Active Add member to role role=194ae4cb-b126-40b2-bd5b-6091b380977d/Security Administrator since=- until=-",
        ],
    );
    assert_records(
        sample("panther-analysis/azure_role_changed_pim.tests.ndjson"),
        &[
            "AuditLogs Diagnostic 2024-12-16T16:32:16Z | role add User id=12345 upn=- Active Add member to role in PIM completed (permanent) role=12345/Application Administrator since=2024-12-16T16:32:15Z until=-",
        ],
    );
}

#[test]
fn audit_policy_samples_give_the_policy_before_and_after() {
    // The MFA grant control taken off an enabled policy that includes all users
    // (the legacy "Update policy" beside it is counted, not read).
    assert_records(
        sample("panther-analysis/azure_mfa_disabled.tests.ndjson"),
        &[
            "AuditLogs Diagnostic 2024-11-27T03:31:26Z | policy Update conditional access policy id=123456789 name=MFA by=denethor@lotr.com Updated before=enabled/grant=mfa/mfa=true/include=all/exclude= after=enabled/grant=/mfa=false/include=all/exclude=",
            "AuditLogs Diagnostic 2024-11-27T03:31:26Z | other policy Update policy",
        ],
    );
    let deleted = records_of(&sample("panther-analysis/azure_policy_changed.tests.ndjson"));
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert!(
        deleted[0]
            .starts_with("AuditLogs Diagnostic 2024-11-27T02:22:58Z | policy Delete conditional access policy id=")
            && deleted[0].contains(" Deleted before=")
            && deleted[0].ends_with(" after=-"),
        "the deleted policy is the old value: {deleted:?}"
    );
    assert_records(
        sample("microsoftdocs-azure-docs/reference-azure-monitor-audit-log-schema.ex3.update-policy.json"),
        &["AuditLogs Diagnostic 2018-12-10T00:03:46Z | other policy Update policy"],
    );
    assert_records(
        sample(
            "microsoftdocs-azure-docs/reference-azure-monitor-audit-log-schema.ex2.update-service-principal.legacy.json",
        ),
        &["AuditLogs Diagnostic 2018-03-18T19:47:43Z | other other Update service principal."],
    );
}

#[test]
fn per_user_mfa_methods_in_a_graph_directory_audit_are_the_new_set() {
    assert_records(
        sample("microsoft-graph-docs-contrib/beta.directoryaudit-list.ex1.update-user-strongauthenticationmethod.json"),
        &[
            "AuditLogs Graph 2022-06-21T23:25:00Z | methods Replaced User id=2c940657-1026-4386-bcfd-3176637ba01f upn=tuser@contoso.com [microsoftAuthenticatorPush,mobilePhone,softwareOneTimePasscode] by admin",
        ],
    );
}

#[test]
fn registration_details_give_each_users_methods() {
    let v1 = [
        "UserRegistrationDetails Graph 2023-03-13T19:15:41Z | registration User id=86462606-fde0-4fc4-9e0c-a20eb73e54c6 upn=AlexW@Contoso.com mfa_registered=Some(true) capable=Some(true) [microsoftAuthenticatorPush,softwareOneTimePasscode] default=-",
        "UserRegistrationDetails Graph 2023-03-13T19:15:41Z | registration User id=c6ad1942-4afa-47f8-8d48-afb5d8d69d2f upn=AllanD@Contoso.com mfa_registered=Some(false) capable=Some(false) [] default=-",
        "UserRegistrationDetails Graph 2023-03-13T19:15:41Z | registration User id=c8096958-797c-44fa-8fde-a6fb62567cf0 upn=BiancaP@Contoso.com mfa_registered=Some(true) capable=Some(true) [mobilePhone,microsoftAuthenticatorPush,softwareOneTimePasscode] default=-",
    ];
    assert_records(
        sample("microsoft-graph-docs-contrib/v1.0.authenticationmethodsroot-list-userregistrationdetails.json"),
        &v1,
    );
    let beta = records_of(&sample(
        "microsoft-graph-docs-contrib/beta.authenticationmethodsroot-list-userregistrationdetails.json",
    ));
    assert_eq!(beta.len(), 3, "{beta:?}");
    assert!(beta[0].ends_with("default=microsoftAuthenticatorPush"), "{}", beta[0]);
    assert!(beta[1].ends_with("[] default=-"), "a guest's empty default is none: {}", beta[1]);
}

#[test]
fn graph_role_assignments_are_seeds_as_of_when_they_were_read() {
    assert_records(
        sample("microsoft-graph-docs-contrib/v1.0.rbacapplication-list-roleassignments.ex2.filter-principalId.json"),
        &[
            "RoleAssignments Graph 2026-11-20T00:00:00Z | role add User id=f1847572-48aa-47aa-96a3-2ec61904f41f upn=- Active Role assignment role=62e90394-69f5-4237-9190-012177145e10/- since=- until=-",
            "RoleAssignments Graph 2026-11-20T00:00:00Z | role add User id=f1847572-48aa-47aa-96a3-2ec61904f41f upn=- Active Role assignment role=f2ef992c-3afb-46b9-b7cf-a126ee74c451/- since=- until=-",
        ],
    );
    assert_records(
        sample("microsoft-graph-docs-contrib/v1.0.unifiedroleassignment-get.ex1.json"),
        &[
            "RoleAssignments Graph 2026-11-20T00:00:00Z | role add User id=089a6bb8-e8cb-492c-aa41-c078aa0b5120 upn=- Active Role assignment role=62e90394-69f5-4237-9190-012177145e10/- since=- until=-",
        ],
    );
    assert_records(
        sample(
            "microsoft-graph-docs-contrib/v1.0.rbacapplication-list-roleassignments.ex3.entitlementmanagement-catalog.json",
        ),
        &[
            "RoleAssignments Graph 2026-11-20T00:00:00Z | role add User id=39228473-522e-4533-88cc-a9553180cb99 upn=- Active Role assignment role=ae79f266-94d4-4dab-b730-feca7e132178/- since=- until=-",
        ],
    );
}

#[test]
fn documents_that_are_not_json_are_malformed_whole() {
    for name in [
        "microsoft-graph-docs-contrib/v1.0.rbacapplication-list-roleassignments.ex1.expand-principal.INVALID-trailing-commas.json",
        "microsoft-graph-docs-contrib/v1.0.unifiedroleassignment-get.ex2.expand-roleDefinition.INVALID-trailing-commas.json",
    ] {
        assert_records(sample(name), &["malformed syntax"]);
    }
}

#[test]
fn risky_users_in_every_shape_and_state() {
    assert_records(
        sample("elastic-integrations/test-rickyusers-raw.log"),
        &[
            "RiskyUsers Diagnostic 2022-08-22T18:11:52Z | risky user User id=51e26eae-d07b-44e5-bb0b-249f49569a8c upn=joe.danger@mauriziobrancaoutlook.onmicrosoft.com level=medium state=atRisk detail=none deleted=false",
            // riskLastUpdatedDateTime "2022-09-09T9:59:27.958Z" (an hour of one digit) is read as written.
            "RiskyUsers Diagnostic 2022-09-09T09:59:27Z | risky user User id=e3b2b242-4ccb-4cf1-9b8b-004cf034a458 upn=joel.miller@mauriziobrancaoutlook.onmicrosoft.com level=high state=atRisk detail=none deleted=true",
        ],
    );
    assert_records(
        sample("demisto-content/AzureRiskyUsers_list_risky_users.json"),
        &[
            "RiskyUsers Graph 2021-08-09T11:47:58Z | risky user User id=111 upn=itayi@test.com level=none state=dismissed detail=adminDismissedAllRiskForUser deleted=false",
            "RiskyUsers Graph 2020-11-05T18:35:39Z | risky user User id=222 upn=avrahami@test.com level=none state=remediated detail=userPerformedSecuredPasswordReset deleted=false",
            "RiskyUsers Graph 2021-02-08T15:21:43Z | risky user User id=333 upn=shauli@test.com level=none state=dismissed detail=adminDismissedAllRiskForUser deleted=false",
        ],
    );
    assert_records(
        sample("demisto-content/AzureRiskyUsers_get_risky_user.json"),
        &[
            "RiskyUsers Graph 2021-03-02T12:22:54Z | risky user User id=1 upn=shalomi@hello.co level=none state=remediated detail=userPerformedSecuredPasswordReset deleted=false",
        ],
    );
    assert_records(
        sample("demisto-content/AzureADIdentityProtection_risky_users_response.json"),
        &[
            // isDeleted is the text "False" here.
            "RiskyUsers Graph 2021-07-14T10:36:43Z | risky user User id=dummy_id upn=foo1@demisto.com level=none state=remediated detail=adminGeneratedTemporaryPassword deleted=false",
            "RiskyUsers Graph 2020-06-23T18:53:57Z | risky user User id=dummy_id2 upn=foo2@demisto.com level=medium state=atRisk detail=none deleted=false",
        ],
    );
}

#[test]
fn risk_detections_in_every_shape() {
    assert_records(
        sample("elastic-integrations/test-userriskevents-raw.log"),
        &[
            "UserRiskEvents Diagnostic 2022-08-22T18:05:06Z | risk User id=51e26eae-d07b-44e5-bb0b-249f49569a8c upn=joe.danger@mauriziobrancaoutlook.onmicrosoft.com anonymizedIPAddress level=high state=atRisk timing=realtime ip=67.43.156.42",
            // detectedDateTime "2022-09-09T8:48:50.361Z": an hour of one digit, read as written.
            "UserRiskEvents Diagnostic 2022-09-09T08:48:50Z | risk User id=e3b2b242-4ccb-4cf1-9b8b-004cf034a458 upn=joel.miller@mauriziobrancaoutlook.onmicrosoft.com passwordSpray level=high state=atRisk timing=offline ip=67.43.156.42",
        ],
    );
    assert_records(
        sample("microsoft-graph-docs-contrib/v1.0.riskdetection-list.json"),
        &[
            "UserRiskEvents Graph 2018-09-05T00:11:27Z | risk User id=abcdefab-af90-4edf-ac4c-742ff06735d0 upn=olack@adatum.com unfamiliarFeatures level=medium state=remediated timing=realtime ip=123.456.7.89",
        ],
    );
    assert_records(
        sample("demisto-content/AzureADIdentityProtection_risk_detections_response.json"),
        &[
            "UserRiskEvents Graph 2021-03-30T21:15:41Z | risk User id=3fa9f28b-eb0e-463a-ba7b-8089fe9991e2 upn=example@demisto.com unfamiliarFeatures level=high state=remediated timing=realtime ip=1.1.1.1",
        ],
    );
}

#[test]
fn role_fixtures_follow_the_audit_activity_reference() {
    let got = records_of(&fixture("auditlogs-roles.ndjson"));
    let ann = "User id=7c5b3a5e-0000-4000-8000-000000000001 upn=ann@contoso.example";
    let bob = "User id=7c5b3a5e-0000-4000-8000-000000000002 upn=bob@contoso.example";
    let dan = "User id=7c5b3a5e-0000-4000-8000-000000000004 upn=dan@contoso.example";
    let ga = "62e90394-69f5-4237-9190-012177145e10/Global Administrator";
    let sa = "194ae4cb-b126-40b2-bd5b-6091b380977d/Security Administrator";
    let expected = [
        format!(
            "AuditLogs Diagnostic 2026-11-02T09:00:00Z | role add {ann} Active Add member to role role={ga} since=- until=-"
        ),
        format!(
            "AuditLogs Diagnostic 2026-11-03T10:00:00Z | role add {bob} Eligible Add eligible member to role in PIM completed (timebound) role={sa} since=2026-11-03T10:00:00Z until=2027-05-03T10:00:00Z"
        ),
        format!(
            "AuditLogs Diagnostic 2026-11-05T08:00:00Z | role add {bob} Active activation Add member to role completed (PIM activation) role={sa} since=2026-11-05T08:00:00Z until=2026-11-05T12:00:00Z"
        ),
        format!(
            "AuditLogs Diagnostic 2026-11-05T12:00:05Z | role remove {bob} Active activation Remove member from role (PIM activation expired) role={sa} since=- until=-"
        ),
        format!(
            "AuditLogs Diagnostic 2026-11-06T15:30:00Z | role remove {dan} Active Remove member from role role={ga} since=- until=-"
        ),
        "AuditLogs Diagnostic 2026-11-05T07:59:00Z | other role Add member to role requested (PIM activation)"
            .to_owned(),
        "AuditLogs Diagnostic 2026-11-06T16:00:00Z | other role Add member to role (failed)".to_owned(),
        "AuditLogs Diagnostic 2026-11-07T11:00:00Z | policy Update security defaults id=00000000-0000-0000-0000-000000000000 name=Security Defaults by=eve@contoso.example security defaults Some(true) -> false".to_owned(),
    ];
    assert_eq!(got, expected, "\n{}", got.join("\n"));
}

#[test]
fn security_info_fixtures_name_the_method_from_the_reason() {
    let got = records_of(&fixture("auditlogs-security-info.ndjson"));
    let expected = [
        "AuditLogs Diagnostic 2026-11-04T09:10:00Z | methods Registered User id=7c5b3a5e-0000-4000-8000-000000000003 upn=cat@contoso.example [microsoftAuthenticatorPush]",
        "AuditLogs Diagnostic 2026-11-04T09:11:00Z | methods AllRequired User id=7c5b3a5e-0000-4000-8000-000000000003 upn=cat@contoso.example []",
        "AuditLogs Diagnostic 2026-11-04T10:00:00Z | methods Registered User id=7c5b3a5e-0000-4000-8000-000000000004 upn=dan@contoso.example [mobilePhone]",
        "AuditLogs Diagnostic 2026-11-08T10:00:00Z | methods Deleted User id=7c5b3a5e-0000-4000-8000-000000000004 upn=dan@contoso.example [mobilePhone]",
        "AuditLogs Diagnostic 2026-11-09T08:00:00Z | methods Registered User id=7c5b3a5e-0000-4000-8000-000000000001 upn=ann@contoso.example [temporaryAccessPass] by admin",
        "AuditLogs Diagnostic 2026-11-09T08:30:00Z | methods Registered User id=7c5b3a5e-0000-4000-8000-000000000001 upn=ann@contoso.example [fido2SecurityKey]",
        "AuditLogs Diagnostic 2026-11-09T09:00:00Z | other security_info User registered security info (failed)",
    ];
    assert_eq!(got, expected, "\n{}", got.join("\n"));
}

#[test]
fn log_analytics_rows_read_their_json_text_columns() {
    assert_records(
        fixture("la-directory.json"),
        &[
            "AuditLogs LogAnalytics 2026-11-10T09:00:00Z | role add User id=7c5b3a5e-0000-4000-8000-000000000003 upn=cat@contoso.example Active Add member to role role=29232cdf-9323-42fd-ade2-1d097af3e4de/Exchange Administrator since=- until=-",
            "RiskyUsers LogAnalytics 2026-11-10T09:59:00Z | risky user User id=7c5b3a5e-0000-4000-8000-000000000004 upn=dan@contoso.example level=high state=atRisk detail=none deleted=false",
            "UserRiskEvents LogAnalytics 2026-11-10T09:56:00Z | risk User id=7c5b3a5e-0000-4000-8000-000000000004 upn=dan@contoso.example unfamiliarFeatures level=medium state=atRisk timing=realtime ip=192.0.2.44",
        ],
    );
}

#[test]
fn the_two_csv_downloads_become_seeds() {
    let portal = records_of(&fixture("registration-details.csv"));
    assert_eq!(
        portal,
        [
            "UserRegistrationDetails Graph 2026-11-01T06:00:00Z | registration User id=- upn=ann@contoso.example mfa_registered=None capable=Some(true) [microsoftAuthenticatorPush,fido2SecurityKey] default=-",
            "UserRegistrationDetails Graph 2026-11-01T06:00:00Z | registration User id=- upn=bob@contoso.example mfa_registered=None capable=Some(false) [] default=-",
            "UserRegistrationDetails Graph 2026-11-01T06:00:00Z | registration User id=- upn=eve@contoso.example mfa_registered=None capable=Some(true) [mobilePhone] default=-",
        ],
        "\n{}",
        portal.join("\n")
    );
    let powershell = records_of(&fixture("registration-details-powershell.csv"));
    assert_eq!(powershell.len(), 3, "{powershell:?}");
    assert!(
        powershell[0].contains("id=7c5b3a5e-0000-4000-8000-000000000001 upn=ann@contoso.example mfa_registered=Some(true) capable=Some(true) [microsoftAuthenticatorPush,fido2]"),
        "{}",
        powershell[0]
    );
    let roles = records_of(&fixture("role-assignments.csv"));
    let ga = "62e90394-69f5-4237-9190-012177145e10/Global Administrator";
    assert_eq!(
        roles,
        [
            format!("RoleAssignments Graph 2026-11-20T00:00:00Z | role add User id=7c5b3a5e-0000-4000-8000-000000000004 upn=dan@contoso.example Active Role assignment role={ga} since=- until=-"),
            format!("RoleAssignments Graph 2026-11-20T00:00:00Z | role add User id=7c5b3a5e-0000-4000-8000-000000000005 upn=eve@contoso.example Active Role assignment role={ga} since=- until=-"),
            "RoleAssignments Graph 2026-11-20T00:00:00Z | role add User id=7c5b3a5e-0000-4000-8000-000000000002 upn=bob@contoso.example Eligible Eligible role assignment role=194ae4cb-b126-40b2-bd5b-6091b380977d/Security Administrator since=2026-11-03T10:00:00Z until=2027-05-03T10:00:00Z".to_owned(),
            "RoleAssignments Graph 2026-11-20T00:00:00Z | role add User id=7c5b3a5e-0000-4000-8000-000000000003 upn=cat@contoso.example Active Role assignment role=f2ef992c-3afb-46b9-b7cf-a126ee74c451/Global Reader since=- until=-".to_owned(),
            "RoleAssignments Graph 2026-11-20T00:00:00Z | role add ServicePrincipal id=a1b2c3d4-0000-4000-8000-0000000000bb upn=- Active Role assignment role=9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3/Application Administrator since=- until=-".to_owned(),
        ],
        "\n{}",
        roles.join("\n")
    );
}

/// Every directory record of the fixtures, decoded, seeds first (as a SOC
/// would replay them: the downloads, taken on 2026-11-01, then the audit log).
fn fixture_records() -> Vec<DirectoryRecord> {
    let seeds_taken = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let mut out = Vec::new();
    for (name, read) in [
        ("role-assignments.csv", seeds_taken),
        ("registration-details.csv", seeds_taken),
        ("auditlogs-roles.ndjson", read_at()),
        ("auditlogs-security-info.ndjson", read_at()),
        ("la-directory.json", read_at()),
    ] {
        files::read_messages(&fixture(name).to_string_lossy(), |bytes, _, _| {
            for item in decode_message_received(bytes, Some(read)) {
                if let Item::Directory(r) = item {
                    out.push(*r);
                }
            }
            Ok(())
        })
        .unwrap();
    }
    out
}

fn state_of(records: &[DirectoryRecord]) -> Directory {
    let mut d = Directory::new(PrivilegedRoles::default());
    for r in records {
        d.apply(r);
    }
    d
}

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

const ANN: &str = "7c5b3a5e-0000-4000-8000-000000000001";
const BOB: &str = "7c5b3a5e-0000-4000-8000-000000000002";
const CAT: &str = "7c5b3a5e-0000-4000-8000-000000000003";
const DAN: &str = "7c5b3a5e-0000-4000-8000-000000000004";
const EVE: &str = "7c5b3a5e-0000-4000-8000-000000000005";

#[test]
fn the_fixture_tenant_has_the_privileged_set_and_registrations_its_notes_say() {
    let d = state_of(&fixture_records());
    let privileged = |key: &str, at: &str| d.privileged_at(key, "", t(at)).is_some();
    // ann: Global Administrator from 2026-11-02 09:00.
    assert!(!privileged(ANN, "2026-11-01T00:00:00Z"));
    assert!(privileged(ANN, "2026-11-02T09:00:00Z"));
    // bob: eligible from 2026-11-03 10:00 (seed and audit agree).
    assert!(!privileged(BOB, "2026-10-15T00:00:00Z"));
    assert!(privileged(BOB, "2026-11-04T00:00:00Z"));
    let activated = d.user(BOB, "", t("2026-11-05T09:00:00Z")).unwrap();
    assert!(activated.roles.iter().any(|r| r.holding == "activated"), "{activated:?}");
    let after = d.user(BOB, "", t("2026-11-05T13:00:00Z")).unwrap();
    assert!(after.roles.iter().all(|r| r.holding == "eligible"), "{after:?}");
    // cat: Global Reader only (not privileged by default) until Exchange Administrator on 11-10.
    assert!(!privileged(CAT, "2026-11-09T00:00:00Z"));
    assert!(privileged(CAT, "2026-11-10T09:00:00Z"));
    // dan: Global Administrator from the seed, until the removal at 2026-11-06 15:30.
    assert!(privileged(DAN, "2026-11-06T15:29:59Z"));
    assert!(!privileged(DAN, "2026-11-06T15:30:00Z"));
    // eve: Global Administrator from the seed; found by UPN too.
    assert!(d.privileged_at("", "Eve@Contoso.example", t("2026-11-20T00:00:00Z")).is_some());
    // The service principal's role is not a user's.
    assert!(d.privileged_at("a1b2c3d4-0000-4000-8000-0000000000bb", "", t("2026-11-20T00:00:00Z")).is_none());

    let mut holders = d.holders(t("2026-11-20T00:00:00Z"));
    holders.sort();
    let expected = [
        ANN,
        BOB,
        CAT,
        EVE,
        "ann@contoso.example",
        "bob@contoso.example",
        "cat@contoso.example",
        "eve@contoso.example",
    ];
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(holders, expected);

    assert_eq!(d.registration(ANN, ""), Registration::Registered);
    assert!(d.user(ANN, "", t("2026-11-20T00:00:00Z")).unwrap().phishing_resistant);
    assert_eq!(d.registration(BOB, ""), Registration::NotRegistered, "nothing in the seed, a failed registration");
    assert_eq!(d.registration(CAT, ""), Registration::Registered);
    assert_eq!(d.registration(DAN, ""), Registration::NotRegistered, "the phone was deleted");
    assert_eq!(d.registration("", "eve@contoso.example"), Registration::Registered);
    assert_eq!(d.registration("0f0f0f0f-0000-4000-8000-000000000000", ""), Registration::Unknown);
    let dan = d.user(DAN, "", t("2026-11-20T00:00:00Z")).unwrap();
    assert_eq!(dan.risk.as_ref().and_then(|r| r.level.as_deref()), Some("high"));
}

#[test]
fn the_state_does_not_depend_on_order_or_on_records_read_twice() {
    let records = fixture_records();
    let forward = state_of(&records).to_snapshot();
    let mut reversed = records.clone();
    reversed.reverse();
    assert_eq!(state_of(&reversed).to_snapshot(), forward, "reversed");
    // Read twice, interleaved (a re-read after kill -9 of a partition, or two partitions).
    let mut twice: Vec<DirectoryRecord> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        twice.push(r.clone());
        if i % 3 == 0 {
            twice.extend(records[..i].iter().rev().take(2).cloned());
        }
    }
    twice.extend(records.iter().cloned());
    assert_eq!(state_of(&twice).to_snapshot(), forward, "read twice");
    // A permutation by a fixed stride.
    let n = records.len();
    let stride = (1..n).find(|s| gcd(*s, n) == 1 && *s > n / 3).unwrap_or(1);
    let permuted: Vec<DirectoryRecord> = (0..n).map(|i| records[(i * stride) % n].clone()).collect();
    assert_eq!(state_of(&permuted).to_snapshot(), forward, "permuted by {stride}");
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[test]
fn a_role_change_on_the_same_instant_as_another_resolves_the_same_way_every_time() {
    let records = fixture_records();
    let add = records
        .iter()
        .find(|r| matches!(&r.fact, Fact::Role(c) if c.added && c.holding == Holding::Active && r.operation == "Add member to role"))
        .unwrap()
        .clone();
    let mut remove = add.clone();
    if let Fact::Role(c) = &mut remove.fact {
        c.added = false;
    }
    let a = state_of(&[add.clone(), remove.clone()]).to_snapshot();
    let b = state_of(&[remove, add]).to_snapshot();
    assert_eq!(a, b);
    let _ = MethodChangeKind::Registered;
}

/// The fixture tenant's sign-ins: a generated tenant's interactive sign-ins,
/// some of them made ann's, bob's, cat's, dan's and eve's; one record per
/// message. Ann and cat (registered, made admins by the audit log) only get
/// sign-ins with MFA, so whether they are covered when their role arrives
/// does not depend on how the hubs interleave: covered, or not seen yet and
/// registered — never an alert (privileged_not_covered).
fn fixture_sign_ins() -> Vec<Vec<u8>> {
    use mfawatch::classify::{Labels, Rules, classify};
    use mfawatch::generate::{Format, Generator, TenantSpec};
    let spec = TenantSpec {
        users: 30,
        records: 150,
        end: Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap(),
        format: Format::Envelope,
        records_per_message: 1,
        ..TenantSpec::default()
    };
    let rules = Rules::default();
    let with_mfa = |message: &[u8]| {
        decode_message_received(message, None).iter().all(|item| match item {
            Item::SignIn(record) => classify(record, &rules).labels.contains(Labels::MFA_SATISFIED),
            _ => true,
        })
    };
    let users = [(ANN, "ann"), (BOB, "bob"), (CAT, "cat"), (DAN, "dan"), (EVE, "eve")];
    let without_mfa = [(BOB, "bob"), (DAN, "dan"), (EVE, "eve")];
    let (mut n, mut m) = (0, 0);
    Generator::new(spec)
        .map(|message| {
            let mfa = with_mfa(&message);
            let mut v: serde_json::Value = serde_json::from_slice(&message).unwrap();
            let record = &mut v["records"][0];
            if record["category"] == "SignInLogs" {
                let (id, name) = if mfa {
                    n += 1;
                    users[(n - 1) % users.len()]
                } else {
                    m += 1;
                    without_mfa[(m - 1) % without_mfa.len()]
                };
                record["properties"]["userId"] = id.into();
                record["properties"]["userPrincipalName"] = format!("{name}@contoso.example").into();
                record["properties"]["userDisplayName"] = name.into();
            }
            serde_json::to_vec(&v).unwrap()
        })
        .collect()
}

/// The directory rules' (rule, user) alerts an Alertmanager holds.
fn directory_alerts(am: &common::Alertmanager) -> std::collections::BTreeSet<(String, String)> {
    let rules = ["privileged_not_covered", "privileged_methods_changed", "break_glass_role_change"];
    am.rule_users().into_iter().filter(|(rule, _)| rules.contains(&rule.as_str())).collect()
}

/// The audit fixtures, one record per message, in file order.
fn audit_messages() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for name in ["auditlogs-roles.ndjson", "auditlogs-security-info.ndjson"] {
        let text = std::fs::read_to_string(fixture(name)).unwrap();
        out.extend(text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.as_bytes().to_vec()));
    }
    // Log Analytics rows, a JSON array in one message (cat becomes Exchange Administrator).
    out.push(std::fs::read(fixture("la-directory.json")).unwrap());
    out
}

/// What a daemon's API says of the five users: why privileged, registration, roles.
fn directory_views(daemon: &common::Daemon) -> Vec<serde_json::Value> {
    [ANN, BOB, CAT, DAN, EVE]
        .iter()
        .map(|id| {
            let v = daemon.json(&format!("/api/v1/users/{id}"));
            serde_json::json!({
                "privileged": v["privileged"],
                "privileged_because": v["privileged_because"],
                "registration": v["registration"],
                "roles": v["directory"]["roles"],
                "methods": v["directory"]["methods"],
            })
        })
        .collect()
}

#[test]
fn a_mixed_stream_of_sign_ins_and_audit_events_gives_the_privileged_set_also_after_kill_9() {
    use common::{Daemon, Tansu, free_port, wait_for, write_config};
    use std::time::Duration;
    const SIGN_INS: &str = "insights-logs-signinlogs";
    const AUDIT: &str = "insights-logs-auditlogs";
    let tansu = Tansu::start();
    tansu.create_topic(SIGN_INS, 2);
    tansu.create_topic(AUDIT, 1);
    let sign_ins = fixture_sign_ins();
    let audit = audit_messages();
    tansu.produce(SIGN_INS, 2, &sign_ins);
    tansu.produce(AUDIT, 1, &audit);
    let total = (sign_ins.len() + audit.len()) as f64;

    // The downloads, as taken on 2026-11-01 (their file time is when they are as of).
    let seeds = tempfile::tempdir().unwrap();
    let taken = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_491_200); // 2026-11-01T00:00:00Z
    let mut seed_files = Vec::new();
    for name in ["role-assignments.csv", "registration-details.csv"] {
        let path = seeds.path().join(name);
        std::fs::copy(fixture(name), &path).unwrap();
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(taken).unwrap();
        seed_files.push(path);
    }

    let (am_whole, am_killed) = (common::Alertmanager::start(), common::Alertmanager::start());
    let start = |name: &str, hooks: &[(&str, &str)], am: &common::Alertmanager| {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        // The fixtures are of November 2026: no alert of theirs is stale here.
        let extra = format!(
            "[alerts]\nmax_age = \"100000d\"\nrate_limit_per_minute = 1000000\n[alerts.alertmanager]\nurls = [{:?}]\n",
            am.url
        );
        let config = write_config(dir.path(), &tansu.bootstrap(), SIGN_INS, name, port, &extra);
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(
            &config,
            text.replace(&format!("topics = [\"{SIGN_INS}\"]"), &format!("topics = [\"{SIGN_INS}\", \"{AUDIT}\"]")),
        )
        .unwrap();
        let seeds: Vec<&Path> = seed_files.iter().map(PathBuf::as_path).collect();
        common::replay(&config, &seeds, &[]);
        let daemon = Daemon::start(&config, port, &dir.path().join("daemon.log"), hooks);
        (dir, config, port, daemon)
    };
    let read_all = |daemon: &Daemon| {
        wait_for("every record read", Duration::from_secs(120), || {
            daemon.get("/healthz").is_some() && daemon.metric("mfawatch_records_total") >= total
        })
    };

    // Uninterrupted.
    let (a_dir, a_config, _, whole) = start("whole", &[], &am_whole);
    read_all(&whole);
    let expected = directory_views(&whole);

    // The same backlog, slowed down, killed after its first checkpoints, restarted.
    let (b_dir, b_config, b_port, mut killed) =
        start("killed", &[("MFAWATCH_TEST_HOOKS", "pause=pipeline:25")], &am_killed);
    wait_for("a checkpoint", Duration::from_secs(60), || {
        b_dir.path().join("state/state.snapshot").exists() && killed.metric("mfawatch_records_total") > 40.0
    });
    killed.kill();
    let again = Daemon::start(&b_config, b_port, &b_dir.path().join("daemon2.log"), &[]);
    wait_for("the group to commit everything", Duration::from_secs(120), || {
        let progress = [tansu.group_progress("killed", SIGN_INS, 2), tansu.group_progress("killed", AUDIT, 1)];
        progress.iter().flatten().all(|(committed, end)| committed == end)
    });
    wait_for("the API", Duration::from_secs(30), || again.get("/healthz").is_some());
    assert_eq!(directory_views(&again), expected, "after kill -9 and a re-read");

    // The directory rules' alerts, in a real Alertmanager: bob made an admin
    // (PIM-eligible) with nothing registered; the methods of two admins
    // changed while they were admins (dan's phone on 11-04, before his
    // removal on 11-06; ann's TAP and FIDO2 key on 11-09). Cat's and ann's
    // roles alert nothing (registered, signed in with MFA only); dan's
    // deletion on 11-08 came after he stopped being an admin.
    let expected_alerts: std::collections::BTreeSet<(String, String)> =
        [("privileged_not_covered", BOB), ("privileged_methods_changed", DAN), ("privileged_methods_changed", ANN)]
            .iter()
            .map(|(r, u)| (r.to_string(), u.to_string()))
            .collect();
    for (am, daemon, run) in [(&am_whole, &whole, "uninterrupted"), (&am_killed, &again, "after kill -9")] {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut got = directory_alerts(am);
        while (got != expected_alerts || daemon.metric("mfawatch_alert_outbox ") > 0.0)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(500));
            got = directory_alerts(am);
        }
        assert_eq!(got, expected_alerts, "{run}");
    }

    // The report's admins and registration sections, from the history's directory table.
    let out = a_dir.path().join("report");
    let report = std::process::Command::new(env!("CARGO_BIN_EXE_mfawatch"))
        .args(["report", "--config", a_config.to_str().unwrap(), "--from", "2026-11-14", "--to", "2026-11-20"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(report.status.success(), "report: {}", String::from_utf8_lossy(&report.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    // Admins at 2026-11-20: ann (Global), bob (Security, eligible), cat (Exchange), eve (Global); dan removed.
    assert_eq!(summary["admins"]["from_roles"], 4, "{}", summary["admins"]);
    assert_eq!(summary["admins"]["not_registered"], 1, "bob: {}", summary["admins"]);
    let admins = std::fs::read_to_string(out.join("admins.csv")).unwrap();
    for who in ["ann@", "bob@", "cat@", "eve@"] {
        assert!(admins.contains(who), "{who} in admins.csv:\n{admins}");
    }
    assert!(!admins.lines().any(|l| l.contains("dan@") && l.contains(",roles,")), "{admins}");
    let r = &summary["registration"];
    assert_eq!(r["registered"], 3, "ann, cat, eve: {r}");
    assert_eq!(r["phishing_resistant"], 1, "ann's FIDO2 key: {r}");
    // Every directory record the daemon read, and the seeds replayed before it, each once.
    let read = whole.metric("mfawatch_directory_records_total");
    // In a real browser: both sections are there, with bob the exposed admin listed first.
    let dom = common::chromium(&["--dump-dom"], &out.join("index.html"));
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let dumped = String::from_utf8_lossy(&dom.stdout);
    let section = |id: &str| {
        let at = dumped.find(&format!("<section id=\"{id}\"")).unwrap_or_else(|| panic!("section {id} missing"));
        dumped[at..at + dumped[at..].find("</section>").unwrap()].to_owned()
    };
    let admins_html = section("admins");
    assert!(
        admins_html.contains("Admins and their MFA") && admins_html.contains("4 by directory role"),
        "{admins_html}"
    );
    let first_row = admins_html.split("<tbody><tr>").nth(1).unwrap();
    assert!(first_row.starts_with("<td>bob@contoso.example</td>"), "{first_row}");
    let registration_html = section("registration");
    assert!(registration_html.contains("<b>3</b>registered"), "{registration_html}");
    // The seeds: five role assignments and three registration reports.
    assert_eq!(r["directory_records"].as_f64().unwrap(), read + 8.0, "{r}");

    // What the views say, against the fixture notes.
    let by_id: Vec<(&str, &serde_json::Value)> = [ANN, BOB, CAT, DAN, EVE].into_iter().zip(expected.iter()).collect();
    for (id, view) in &by_id {
        let privileged = *id != DAN;
        assert_eq!(view["privileged"], privileged, "{id}: {view}");
        let because = view["privileged_because"].as_array().unwrap();
        assert_eq!(!because.is_empty(), privileged, "{id}: {view}");
    }
    assert!(
        by_id[0].1["privileged_because"][0]
            .as_str()
            .unwrap()
            .starts_with("Global Administrator (active) since 2026-11-02T09:00:00Z, from the audit log"),
        "{}",
        by_id[0].1
    );
    assert!(
        by_id[1].1["privileged_because"][0].as_str().unwrap().starts_with("Security Administrator (eligible)"),
        "{}",
        by_id[1].1
    );
    assert_eq!(by_id[0].1["registration"]["state"], "registered");
    // Nothing registered: not_registered, or pending/overdue when their sign-ins hit "registration required".
    for i in [1, 3] {
        let state = by_id[i].1["registration"]["state"].as_str().unwrap();
        assert!(["not_registered", "pending", "overdue"].contains(&state), "{}", by_id[i].1);
        assert_eq!(by_id[i].1["registration"]["gap"], "user", "{}", by_id[i].1);
    }
    assert_eq!(whole.metric("mfawatch_privileged_accounts{source=\"roles\"}"), 4.0);
    assert_eq!(again.metric("mfawatch_privileged_accounts{source=\"roles\"}"), 4.0);
    // An admin in the directory who never signed in is answered too.
    let (status, body) = whole.get("/api/v1/users/a1b2c3d4-0000-4000-8000-0000000000bb").unwrap();
    assert_eq!(status, 404, "a service principal's role is no user's: {body}");
    drop(killed);
}

#[test]
fn protection_fixtures_give_each_policy_change_with_its_actor_before_and_after() {
    let got = records_of(&common::root().join("tests/fixtures/directory/auditlogs-protections.ndjson"));
    assert_eq!(got.len(), 15, "{}", got.join("\n"));
    let has = |needles: &[&str]| {
        assert!(got.iter().any(|r| needles.iter().all(|n| r.contains(n))), "{needles:?} in\n{}", got.join("\n"))
    };
    let admins = "include=194ae4cb-b126-40b2-bd5b-6091b380977d,62e90394-69f5-4237-9190-012177145e10";
    let zed = "exclude=user:7c5b3a5e-0000-4000-8000-000000000026";
    // Added: MFA for admins, break-glass excluded; a block policy does not ask for MFA.
    has(&["Add conditional access policy", "name=Require MFA for admins", "by=ann@contoso.example", "before=-"]);
    has(&["name=Require MFA for admins", &format!("after=enabled/grant=mfa/mfa=true/{admins}/{zed}")]);
    has(&["name=Block legacy authentication", "after=enabled/grant=block/mfa=false/include=all"]);
    // Switched to report-only, then excluded users and a group, then deleted, then disabled.
    has(&["2026-11-12T10:00:00Z", "by=eve@contoso.example", "before=enabled/", "after=report_only/"]);
    has(&[
        "2026-11-13T08:00:00Z",
        "before=enabled/grant=mfa/mfa=true/include=all/exclude= ",
        "exclude=user:7c5b3a5e-0000-4000-8000-000000000002,group:bbbbbbbb-0000-4000-8000-000000000009",
    ]);
    has(&["2026-11-13T08:30:00Z", zed, "/exclude="]);
    has(&["Delete conditional access policy", "name=Require MFA for all users", "Deleted before=enabled/", "after=-"]);
    has(&["2026-11-14T11:30:00Z", "before=enabled/", "after=disabled/"]);
    has(&["Update security defaults", "by=eve@contoso.example", "Some(true) -> false"]);
    // Per-user MFA disabled: by its own activity, and by Update user's StrongAuthenticationRequirement.
    has(&[
        "per-user mfa Disable Strong Authentication",
        "upn=dan@contoso.example",
        "-> disabled",
        "by=eve@contoso.example",
    ]);
    has(&["per-user mfa Update user", "upn=cat@contoso.example", "enabled -> disabled"]);
    // Not read yet: counted by family; a failed change is not a change.
    has(&["other policy Authentication Methods Policy Update"]);
    has(&["other conditional_access Update conditional access policy (failed)"]);
    let risk = records_of(&common::root().join("tests/fixtures/directory/riskyusers-protections.ndjson"));
    assert_eq!(risk.len(), 7, "{}", risk.join("\n"));
    for (who, level, state, detail) in [
        ("dan", "high", "atRisk", "none"),
        ("cat", "none", "remediated", "userPerformedSecuredPasswordChange"),
        ("bob", "high", "confirmedCompromised", "adminConfirmedUserCompromised"),
        ("eve", "none", "dismissed", "adminDismissedAllRiskForUser"),
    ] {
        let line = format!("upn={who}@contoso.example level={level} state={state} detail={detail}");
        assert!(risk.iter().any(|r| r.contains("risky user") && r.contains(&line)), "{line} in\n{}", risk.join("\n"));
    }
    assert!(
        risk.iter()
            .any(|r| r.contains("risk User") && r.contains("leakedCredentials level=high state=atRisk timing=offline"))
    );
}

/// The protections fixture's records, decoded, in file order.
fn protection_records() -> Vec<DirectoryRecord> {
    let mut out = Vec::new();
    files::read_messages(&fixture("auditlogs-protections.ndjson").to_string_lossy(), |bytes, _, _| {
        for item in decode_message_received(bytes, Some(read_at())) {
            if let Item::Directory(r) = item {
                out.push(*r);
            }
        }
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn the_posture_is_each_policy_as_last_written_with_a_timeline_of_who_changed_what() {
    let records = protection_records();
    let d = state_of(&records);
    let mut reversed = records.clone();
    reversed.reverse();
    reversed.extend(records.iter().take(4).cloned());
    assert_eq!(state_of(&reversed).to_snapshot(), d.to_snapshot(), "the same in any order, read twice");
    let p = d.posture();
    let timeline: Vec<String> = p
        .timeline()
        .iter()
        .map(|c| {
            format!(
                "{} {} {} by {}: {}{}",
                DateTime::from_timestamp_millis(c.at).unwrap().format("%m-%d %H:%M"),
                c.kind.as_str(),
                c.subject(),
                c.actor.as_deref().unwrap_or("-"),
                c.what().join("; "),
                if c.weakens() { " [weakens]" } else { "" }
            )
        })
        .collect();
    let (bob, zed, group) = (BOB, "7c5b3a5e-0000-4000-8000-000000000026", "bbbbbbbb-0000-4000-8000-000000000009");
    let expected = [
        "11-11 09:00 conditional_access Require MFA for admins by ann@contoso.example: added, enabled, requires MFA".to_owned(),
        "11-11 09:05 conditional_access Require MFA for all users by ann@contoso.example: added, enabled, requires MFA".into(),
        "11-11 09:10 conditional_access Block legacy authentication by ann@contoso.example: added, enabled".into(),
        "11-12 10:00 conditional_access Require MFA for admins by eve@contoso.example: state enabled → report_only [weakens]".into(),
        "11-12 10:30 conditional_access Require MFA for admins by eve@contoso.example: state report_only → enabled".into(),
        format!("11-13 08:00 conditional_access Require MFA for all users by eve@contoso.example: excluded user:{bob}, group:{group} [weakens]"),
        format!("11-13 08:30 conditional_access Require MFA for admins by eve@contoso.example: no longer excluded user:{zed}"),
        "11-14 11:00 conditional_access Require MFA for all users by eve@contoso.example: deleted [weakens]".into(),
        "11-14 11:30 conditional_access Require MFA for admins by eve@contoso.example: state enabled → disabled [weakens]".into(),
        "11-15 07:00 security_defaults Security Defaults by eve@contoso.example: security defaults disabled [weakens]".into(),
        "11-16 09:00 per_user_mfa dan@contoso.example by eve@contoso.example: per-user MFA of dan@contoso.example disabled [weakens]".into(),
        "11-16 09:05 per_user_mfa cat@contoso.example by eve@contoso.example: per-user MFA of cat@contoso.example enabled → disabled [weakens]".into(),
        "11-16 10:00 authentication_methods_policy Authentication Methods Policy Update by eve@contoso.example: Authentication Methods Policy Update".into(),
        "11-17 08:00 conditional_access Require MFA for admins by eve@contoso.example: state disabled → enabled".into(),
    ];
    assert_eq!(timeline, expected, "every change but the failed one:\n{}", timeline.join("\n"));
    let current: Vec<String> = p
        .policies()
        .map(|now| {
            format!(
                "{} {} mfa={} deleted={}",
                now.policy.name.as_deref().unwrap_or("-"),
                now.policy.state.map_or("-", |s| s.as_str()),
                now.policy.requires_mfa(),
                now.deleted
            )
        })
        .collect();
    assert_eq!(
        current,
        [
            "Require MFA for admins enabled mfa=true deleted=false",
            "Require MFA for all users enabled mfa=true deleted=true",
            "Block legacy authentication enabled mfa=false deleted=false",
        ],
        "\n{}",
        timeline.join("\n")
    );
    let m = p.mfa_policies();
    assert_eq!((m.enabled, m.report_only, m.disabled), (1, 0, 0));
    assert_eq!(p.security_defaults().map(|s| s.enabled), Some(false));
    let at = |s: &str| t(s).timestamp_millis();
    assert_eq!(p.mfa_enforced_at(at("2026-11-11T10:00:00Z")), ["Require MFA for admins", "Require MFA for all users"]);
    assert_eq!(p.mfa_enforced_at(at("2026-11-15T07:00:00Z")), Vec::<String>::new(), "when security defaults went off");
    assert_eq!(p.mfa_enforced_at(at("2026-11-18T00:00:00Z")), ["Require MFA for admins"]);
    let s = d.summary(t("2026-11-18T00:00:00Z"));
    assert_eq!((s.mfa_policies.enabled, s.security_defaults), (1, Some(false)));
}

/// A successful interactive sign-in with MFA of a fixture user (Event Hubs shape).
fn planted_sign_in(id: &str, upn: &str, at: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"records": [{
        "time": at,
        "category": "SignInLogs",
        "operationName": "Sign-in activity",
        "tenantId": "11111111-2222-4333-8444-555555555555",
        "properties": {
            "id": format!("planted-{id}-{at}"),
            "createdDateTime": at,
            "userId": id,
            "userPrincipalName": upn,
            "userType": "Member",
            "appDisplayName": "Office 365 Exchange Online",
            "clientAppUsed": "Browser",
            "ipAddress": "203.0.113.44",
            "status": {"errorCode": 0},
            "authenticationRequirement": "multiFactorAuthentication",
            "isInteractive": true
        }
    }]}))
    .unwrap()
}

/// The protections rules' alerts an Alertmanager holds: (rule, user, else policy) → distinct alert ids.
fn protection_alerts(am: &common::Alertmanager) -> std::collections::BTreeMap<(String, String), usize> {
    let rules = [
        "per_user_mfa_disabled",
        "mfa_policy_weakened",
        "mfa_enforcement_lost",
        "break_glass_protection_change",
        "risky_user_unremediated",
    ];
    let mut ids = std::collections::BTreeMap::<(String, String), std::collections::BTreeSet<String>>::new();
    for a in am.alerts() {
        let label = |k: &str| a["labels"][k].as_str().unwrap_or("").to_string();
        if rules.contains(&label("rule").as_str()) {
            let subject = if label("user").is_empty() { label("policy") } else { label("user") };
            ids.entry((label("rule"), subject)).or_default().insert(label("alert_id"));
        }
    }
    ids.into_iter().map(|(k, v)| (k, v.len())).collect()
}

#[test]
fn seven_hubs_give_the_posture_timeline_risky_users_and_the_protection_pages_also_after_kill_9() {
    use common::{Daemon, Tansu, free_port, wait_for, write_config};
    use mfawatch::generate::{Format, PerHub, TenantSpec};
    use std::time::Duration;
    const SIGN_INS: &str = "insights-logs-signinlogs";
    const AUDIT: &str = "insights-logs-auditlogs";
    const RISKY: &str = "insights-logs-riskyusers";
    const DETECTIONS: &str = "insights-logs-userriskevents";
    const ZED: &str = "7c5b3a5e-0000-4000-8000-000000000026";
    let hubs = [
        SIGN_INS,
        "insights-logs-noninteractiveusersigninlogs",
        "insights-logs-serviceprincipalsigninlogs",
        "insights-logs-managedidentitysigninlogs",
        AUDIT,
        RISKY,
        DETECTIONS,
    ];
    let tansu = Tansu::start();
    for hub in hubs {
        tansu.create_topic(hub, if hub == SIGN_INS { 2 } else { 1 });
    }
    // A generated tenant's sign-ins of early November, each category to its hub.
    let spec = TenantSpec {
        users: 150,
        records: 1_500,
        days: 5,
        seed: 23,
        end: Utc.with_ymd_and_hms(2026, 11, 9, 0, 0, 0).unwrap(),
        format: Format::Envelope,
        records_per_message: 20,
        malformed_per_10k: 0,
        fatigue_per_10k: 0,
        redeliveries_per_10k: 0,
    };
    let mut per_hub = PerHub::new(spec);
    let mut by_hub = std::collections::BTreeMap::<String, Vec<Vec<u8>>>::new();
    while let Some((hub, message)) = per_hub.next_message() {
        by_hub.entry(hub).or_default().push(message);
    }
    let lines = |name: &str, category: &str| -> Vec<Vec<u8>> {
        std::fs::read_to_string(fixture(name))
            .unwrap()
            .lines()
            .filter(|l| l.contains(&format!("\"category\": \"{category}\"")) || category.is_empty())
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.as_bytes().to_vec())
            .collect()
    };
    by_hub.insert(AUDIT.into(), lines("auditlogs-protections.ndjson", ""));
    by_hub.insert(RISKY.into(), lines("riskyusers-protections.ndjson", "RiskyUsers"));
    by_hub.insert(DETECTIONS.into(), lines("riskyusers-protections.ndjson", "UserRiskEvents"));
    assert_eq!((by_hub[AUDIT].len(), by_hub[RISKY].len(), by_hub[DETECTIONS].len()), (15, 6, 1));
    for hub in hubs {
        assert!(by_hub.get(hub).is_some_and(|m| !m.is_empty()), "{hub} has messages");
        tansu.produce(hub, if hub == SIGN_INS { 2 } else { 1 }, &by_hub[hub]);
    }
    let records: usize = 1_500 + 15 + 6 + 1;

    let (am_whole, am_killed) = (common::Alertmanager::start(), common::Alertmanager::start());
    let start = |name: &str, hooks: &[(&str, &str)], am: &common::Alertmanager| {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let extra = format!(
            "[alerts]\nmax_age = \"100000d\"\nrate_limit_per_minute = 1000000\n[alerts.alertmanager]\nurls = [{:?}]\n\
             [coverage]\nexcluded = [\"{ZED}\"]\n",
            am.url
        );
        let config = write_config(dir.path(), &tansu.bootstrap(), SIGN_INS, name, port, &extra);
        let text = std::fs::read_to_string(&config).unwrap();
        let topics: Vec<String> = hubs.iter().map(|h| format!("{h:?}")).collect();
        std::fs::write(
            &config,
            text.replace(&format!("topics = [\"{SIGN_INS}\"]"), &format!("topics = [{}]", topics.join(", "))),
        )
        .unwrap();
        let daemon = Daemon::start(&config, port, &dir.path().join("daemon.log"), hooks);
        (dir, config, port, daemon)
    };
    let committed = |group: &str| {
        hubs.iter().all(|hub| {
            let partitions = if *hub == SIGN_INS { 2 } else { 1 };
            tansu.group_progress(group, hub, partitions).iter().all(|(done, end)| done == end)
        })
    };
    let (_a_dir, _, _, whole) = start("whole", &[], &am_whole);
    let (b_dir, b_config, b_port, mut killed) =
        start("killed", &[("MFAWATCH_TEST_HOOKS", "pause=pipeline:40")], &am_killed);
    wait_for("a checkpoint mid-stream", Duration::from_secs(90), || {
        b_dir.path().join("state/state.snapshot").exists() && killed.metric("mfawatch_records_total") > 200.0
    });
    assert!(killed.metric("mfawatch_records_total") < records as f64, "killed before the end");
    killed.kill();
    let again = Daemon::start(&b_config, b_port, &b_dir.path().join("daemon2.log"), &[]);
    for (group, daemon) in [("whole", &whole), ("killed", &again)] {
        wait_for("every hub committed", Duration::from_secs(120), || committed(group));
        wait_for("the API", Duration::from_secs(30), || daemon.get("/healthz").is_some());
    }

    // Then sign-ins of the users Identity Protection knows, each after their risk record.
    let planted = [
        planted_sign_in(DAN, "dan@contoso.example", "2026-11-12T09:00:00Z"), // high, at risk 45 h: pages
        planted_sign_in(BOB, "bob@contoso.example", "2026-11-13T12:00:00Z"), // high, compromised 2 h: not yet
        planted_sign_in(CAT, "cat@contoso.example", "2026-11-12T10:00:00Z"), // remediated
        planted_sign_in(EVE, "eve@contoso.example", "2026-11-15T10:00:00Z"), // dismissed
    ];
    tansu.produce(SIGN_INS, 2, &planted);
    for group in ["whole", "killed"] {
        wait_for("the planted sign-ins committed", Duration::from_secs(60), || committed(group));
    }

    // The posture, the same for both.
    let posture = whole.json("/api/v1/protections?limit=2000");
    assert_eq!(again.json("/api/v1/protections?limit=2000"), posture, "after kill -9 and a re-read");
    assert_eq!(posture["timeline"]["total"], 14, "{}", posture["timeline"]);
    assert_eq!(posture["timeline"]["weakening"], 7, "{}", posture["timeline"]);
    assert_eq!(posture["mfa_policies"], serde_json::json!({"enabled": 1, "report_only": 0, "disabled": 0}));
    assert_eq!(posture["enforcing_mfa"], serde_json::json!(["Require MFA for admins"]));
    assert_eq!(posture["security_defaults"]["enabled"], false);
    assert_eq!(posture["security_defaults"]["by"], "eve@contoso.example");
    let newest = &posture["timeline"]["changes"][0];
    assert_eq!(
        (newest["subject"].as_str(), newest["actor"].as_str()),
        (Some("Require MFA for admins"), Some("eve@contoso.example"))
    );
    assert_eq!(newest["what"], serde_json::json!(["state disabled → enabled"]));
    assert_eq!(newest["before"]["state"], "disabled");
    let per_user: Vec<&str> =
        posture["per_user_mfa"].as_array().unwrap().iter().map(|u| u["state"].as_str().unwrap()).collect();
    assert_eq!(per_user, ["disabled", "disabled"], "{}", posture["per_user_mfa"]);
    let risky = &posture["risky_users"];
    assert_eq!(risky["high_open"], 2, "dan and bob: {risky}");
    let risk_of = |id: &str| risky["users"].as_array().unwrap().iter().find(|u| u["user"] == id).unwrap().clone();
    assert_eq!(risk_of(DAN)["since"], "2026-11-10T12:00:00Z", "riskLastUpdatedDateTime");
    assert_eq!(risk_of(BOB)["state"], "confirmedCompromised");
    assert_eq!(
        (risk_of(CAT)["state"].as_str(), risk_of(CAT)["detail"].as_str()),
        (Some("remediated"), Some("userPerformedSecuredPasswordChange"))
    );
    assert_eq!(risk_of(EVE)["detail"], "adminDismissedAllRiskForUser");
    for daemon in [&whole, &again] {
        assert_eq!(daemon.metric("mfawatch_mfa_policies{state=\"enabled\"}"), 1.0);
        assert_eq!(daemon.metric("mfawatch_security_defaults{state=\"disabled\"}"), 1.0);
        assert_eq!(daemon.metric("mfawatch_risky_users{level=\"high\",state=\"at_risk\"}"), 1.0);
        assert_eq!(daemon.metric("mfawatch_risky_users{level=\"none\",state=\"remediated\"}"), 1.0);
        let dan = daemon.json(&format!("/api/v1/users/{DAN}"));
        assert_eq!(dan["directory"]["risk"]["high_open"], true, "{dan}");
        assert_eq!(dan["directory"]["per_user_mfa"]["state"], "disabled", "{dan}");
    }

    // The pages, in real Alertmanagers: each weakening once, nothing else of these rules.
    let expected: std::collections::BTreeMap<(String, String), usize> = [
        (("mfa_policy_weakened", "aaaaaaaa-0000-4000-8000-000000000001"), 2),
        (("mfa_policy_weakened", "aaaaaaaa-0000-4000-8000-000000000002"), 2),
        (("break_glass_protection_change", ZED), 1),
        (("mfa_enforcement_lost", "00000000-0000-0000-0000-000000000005"), 1), // the security defaults policy
        (("per_user_mfa_disabled", DAN), 1),
        (("per_user_mfa_disabled", CAT), 1),
        (("risky_user_unremediated", DAN), 1),
    ]
    .into_iter()
    .map(|((r, u), n)| ((r.to_owned(), u.to_owned()), n))
    .collect();
    for (am, daemon, run) in [(&am_whole, &whole, "uninterrupted"), (&am_killed, &again, "after kill -9")] {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut got = protection_alerts(am);
        while (got != expected || daemon.metric("mfawatch_alert_outbox ") > 0.0) && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(500));
            got = protection_alerts(am);
        }
        assert_eq!(got, expected, "{run}");
    }
    // What a page says: who made the change, to what, both sides.
    let weakened = am_killed
        .alerts()
        .into_iter()
        .find(|a| {
            a["labels"]["rule"] == "mfa_policy_weakened"
                && a["annotations"]["after"].as_str().is_some_and(|s| s.starts_with("report_only"))
        })
        .expect("the report-only switch paged");
    assert_eq!(weakened["annotations"]["actor"], "eve@contoso.example");
    assert_eq!(weakened["annotations"]["target"], "Require MFA for admins");
    assert!(weakened["annotations"]["before"].as_str().unwrap().starts_with("enabled, grant mfa"), "{weakened}");
    drop(killed);
}
