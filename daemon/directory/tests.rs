use super::*;

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn role_record(time: &str, id: Option<&str>, upn: Option<&str>, added: bool, category: DirCategory) -> DirectoryRecord {
    DirectoryRecord {
        category,
        shape: crate::decode::Shape::Diagnostic,
        time: t(time),
        id: None,
        operation: if added { "Add member to role" } else { "Remove member from role" }.into(),
        tenant_id: None,
        initiated_by: None,
        fact: Fact::Role(RoleChange {
            principal: Principal {
                id: id.map(str::to_owned),
                upn: upn.map(str::to_owned),
                display_name: None,
                kind: PrincipalKind::User,
            },
            role: Role { template_id: Some("62e90394-69f5-4237-9190-012177145e10".into()), name: None },
            holding: Holding::Active,
            added,
            activation: false,
            until: None,
            since: None,
        }),
    }
}

const ANN: &str = "7c5b3a5e-0000-4000-8000-000000000001";

#[test]
fn a_role_is_held_from_its_addition_to_its_removal() {
    let mut d = Directory::default();
    d.apply(&role_record("2026-11-02T09:00:00Z", Some(ANN), None, true, DirCategory::AuditLogs));
    d.apply(&role_record("2026-11-06T09:00:00Z", Some(ANN), None, false, DirCategory::AuditLogs));
    assert!(d.privileged_at(ANN, "", t("2026-11-01T00:00:00Z")).is_none());
    assert!(d.privileged_at(ANN, "", t("2026-11-03T00:00:00Z")).is_some());
    assert!(d.privileged_at(ANN, "", t("2026-11-06T09:00:00Z")).is_none());
    assert!(d.holders(t("2026-11-07T00:00:00Z")).is_empty());
    // An older addition read afterwards (another partition, a re-read) changes nothing.
    assert_eq!(
        d.apply(&role_record("2026-11-02T09:00:00Z", Some(ANN), None, true, DirCategory::AuditLogs)),
        Applied::Stale
    );
}

#[test]
fn a_seed_holds_since_before_itself_and_yields_to_a_later_change_only() {
    let mut d = Directory::default();
    d.apply(&role_record("2026-11-01T00:00:00Z", Some(ANN), None, true, DirCategory::RoleAssignments));
    assert!(d.privileged_at(ANN, "", t("2020-01-01T00:00:00Z")).is_some(), "held since before the seed");
    // A removal from before the seed was taken does not undo it.
    d.apply(&role_record("2026-10-30T00:00:00Z", Some(ANN), None, false, DirCategory::AuditLogs));
    assert!(d.privileged_at(ANN, "", t("2026-11-02T00:00:00Z")).is_some());
    d.apply(&role_record("2026-11-03T00:00:00Z", Some(ANN), None, false, DirCategory::AuditLogs));
    assert!(d.privileged_at(ANN, "", t("2026-11-04T00:00:00Z")).is_none());
}

#[test]
fn a_user_first_named_by_upn_is_the_same_once_the_id_is_known() {
    let mut d = Directory::default();
    d.apply(&role_record("2026-11-02T09:00:00Z", None, Some("Ann@Contoso.example"), true, DirCategory::AuditLogs));
    d.apply(&role_record("2026-11-03T09:00:00Z", Some(ANN), Some("ann@contoso.example"), true, DirCategory::AuditLogs));
    assert_eq!(d.len(), 1);
    assert!(d.privileged_at(ANN, "", t("2026-11-04T00:00:00Z")).is_some());
    assert!(d.privileged_at("", "ANN@contoso.example", t("2026-11-04T00:00:00Z")).is_some());
    let holders = d.holders(t("2026-11-04T00:00:00Z"));
    assert_eq!(holders, [ANN.to_owned(), "ann@contoso.example".to_owned()]);
    // A later record by UPN alone finds the same user.
    d.apply(&role_record("2026-11-05T09:00:00Z", None, Some("ann@contoso.example"), false, DirCategory::AuditLogs));
    assert_eq!(d.len(), 1);
    assert!(d.privileged_at(ANN, "", t("2026-11-06T00:00:00Z")).is_none());
}

#[test]
fn which_roles_count_is_configurable() {
    let roles = PrivilegedRoles::new(["Exchange Administrator", "Contoso Tier 0"], false);
    assert!(roles.counts("29232cdf-9323-42fd-ade2-1d097af3e4de", None, Holding::Active), "a built-in name is its id");
    assert!(roles.counts("0000", Some("contoso tier 0"), Holding::Active), "a custom role by name");
    assert!(!roles.counts("62e90394-69f5-4237-9190-012177145e10", None, Holding::Active));
    assert!(!roles.counts("29232cdf-9323-42fd-ade2-1d097af3e4de", None, Holding::Eligible), "eligible not counted");
    let default = PrivilegedRoles::default();
    assert!(default.counts("x", Some("Global Administrator"), Holding::Eligible), "a sanitised id, a built-in name");
    assert!(!default.counts("f2ef992c-3afb-46b9-b7cf-a126ee74c451", Some("Global Reader"), Holding::Active));
}

#[test]
fn the_snapshot_gives_back_the_same_state() {
    let mut d = Directory::default();
    d.apply(&role_record("2026-11-02T09:00:00Z", Some(ANN), Some("ann@contoso.example"), true, DirCategory::AuditLogs));
    let bytes = postcard::to_allocvec(&d.snapshot_ref()).unwrap();
    let back: DirectorySnapshot = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, d.to_snapshot());
    let again = Directory::from_snapshot(PrivilegedRoles::default(), back);
    assert!(
        again.privileged_at("", "ann@contoso.example", t("2026-11-03T00:00:00Z")).is_some(),
        "the UPN index is rebuilt"
    );
}

const BOB: &str = "7c5b3a5e-0000-4000-8000-000000000002";

/// Applies what a complete listing ends; how many assignments it ended.
fn complete(d: &mut Directory, holding: Holding, at: DateTime<Utc>, operation: &str) -> usize {
    let ended = d.ended_by_listing(holding, at, operation);
    ended.iter().filter(|r| d.apply(r) == Applied::Changed).count()
}

#[test]
fn a_complete_listing_ends_what_it_no_longer_lists_and_only_that() {
    let seed = |time: &str, id: &str| role_record(time, Some(id), None, true, DirCategory::RoleAssignments);
    let mut d = Directory::default();
    // The first listing (Nov 1) holds ann and bob; an audit event makes ann's a day later.
    d.apply(&seed("2026-11-01T00:00:00Z", ANN));
    d.apply(&seed("2026-11-01T00:00:00Z", BOB));
    assert_eq!(complete(&mut d, Holding::Active, t("2026-11-01T00:00:00Z"), "not listed"), 0, "it lists both");
    // The second (Nov 10) lists ann only: bob's ends then, not before.
    d.apply(&seed("2026-11-10T00:00:00Z", ANN));
    assert_eq!(complete(&mut d, Holding::Eligible, t("2026-11-10T00:00:00Z"), "not listed"), 0, "another holding");
    assert_eq!(complete(&mut d, Holding::Active, t("2026-11-10T00:00:00Z"), "not listed"), 1);
    assert!(d.privileged_at(BOB, "", t("2026-11-09T00:00:00Z")).is_some());
    assert!(d.privileged_at(BOB, "", t("2026-11-10T00:00:00Z")).is_none());
    assert!(d.privileged_at(ANN, "", t("2026-11-11T00:00:00Z")).is_some());
    // The same listing again, or an older one, changes nothing.
    let before = d.holders(t("2026-11-11T00:00:00Z"));
    assert_eq!(complete(&mut d, Holding::Active, t("2026-11-10T00:00:00Z"), "not listed"), 0);
    assert_eq!(complete(&mut d, Holding::Active, t("2026-11-05T00:00:00Z"), "not listed"), 0);
    assert_eq!(d.holders(t("2026-11-11T00:00:00Z")), before);
    assert!(d.privileged_at(BOB, "", t("2026-11-09T00:00:00Z")).is_some(), "an older listing takes nothing back");
    // An audit addition newer than a listing survives it.
    d.apply(&role_record("2026-11-12T00:00:00Z", Some(BOB), None, true, DirCategory::AuditLogs));
    d.apply(&seed("2026-11-11T00:00:00Z", ANN));
    assert_eq!(complete(&mut d, Holding::Active, t("2026-11-11T00:00:00Z"), "not listed"), 0);
    assert!(d.privileged_at(BOB, "", t("2026-11-13T00:00:00Z")).is_some());
}

#[test]
fn per_user_mfa_is_the_newest_state_in_any_order_and_security_defaults_are_the_posture() {
    use crate::decode::directory::{PerUserMfa, PolicyChange, Protection};
    let record = |time: &str, after: &str| DirectoryRecord {
        category: DirCategory::AuditLogs,
        shape: crate::decode::Shape::Diagnostic,
        time: t(time),
        id: Some(format!("Directory_{time}")),
        operation: "Update user".into(),
        tenant_id: None,
        initiated_by: Some("eve@contoso.example".into()),
        fact: Fact::PerUserMfa(PerUserMfa {
            user: Principal { id: Some(ANN.into()), upn: Some("ann@contoso.example".into()), ..Principal::default() },
            before: None,
            after: after.into(),
        }),
    };
    let (on, off) = (record("2026-11-10T09:00:00Z", "enabled"), record("2026-11-16T09:00:00Z", "disabled"));
    for order in [[&on, &off], [&off, &on]] {
        let mut d = Directory::new(PrivilegedRoles::default());
        let applied: Vec<Applied> = order.iter().map(|r| d.apply(r)).collect();
        assert_eq!(d.apply(order[1]), Applied::Stale, "read twice");
        let view = d.user(ANN, "ann@contoso.example", t("2026-11-20T00:00:00Z")).unwrap();
        let state = view.per_user_mfa.unwrap();
        assert_eq!((state.state.as_str(), state.at.as_str()), ("disabled", "2026-11-16T09:00:00Z"), "{applied:?}");
    }
    let mut policy = record("2026-11-15T07:00:00Z", "-");
    policy.fact = Fact::Policy(PolicyChange {
        policy_id: None,
        policy_name: Some("Security Defaults".into()),
        protection: Protection::SecurityDefaults { before: Some(true), enabled: false },
    });
    let mut d = Directory::default();
    assert_eq!(d.apply(&policy), Applied::Changed);
    assert_eq!(d.apply(&policy), Applied::Stale, "read twice");
    assert_eq!(d.posture().security_defaults().map(|s| s.enabled), Some(false));
    assert_eq!(d.posture().timeline().len(), 1);
    assert!(d.posture().timeline()[0].weakens());
}

#[test]
fn a_users_risk_episode_starts_at_its_first_open_record_whatever_the_order() {
    use crate::decode::directory::RiskyUser;
    let record = |time: &str, level: &str, state: &str, detail: &str| DirectoryRecord {
        category: DirCategory::RiskyUsers,
        shape: crate::decode::Shape::Diagnostic,
        time: t(time),
        id: None,
        operation: "Risky user".into(),
        tenant_id: None,
        initiated_by: None,
        fact: Fact::RiskyUser(RiskyUser {
            user: Principal { id: Some(ANN.into()), ..Principal::default() },
            level: Some(level.into()),
            state: Some(state.into()),
            detail: Some(detail.into()),
            deleted: false,
        }),
    };
    let records = [
        record("2026-11-01T09:00:00Z", "medium", "atRisk", "none"),
        record("2026-11-02T09:00:00Z", "none", "remediated", "userPerformedSecuredPasswordChange"),
        record("2026-11-05T09:00:00Z", "medium", "atRisk", "none"),
        record("2026-11-06T09:00:00Z", "high", "atRisk", "none"),
    ];
    for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]] {
        let mut d = Directory::default();
        for i in order {
            d.apply(&records[i]);
        }
        d.apply(&records[order[0]]);
        let now = d.risk_at(ANN, "", t("2026-11-07T00:00:00Z")).unwrap();
        assert!(now.high_open());
        assert_eq!(now.since, Some(t("2026-11-05T09:00:00Z").timestamp_millis()), "{order:?}");
        let then = d.risk_at(ANN, "", t("2026-11-03T00:00:00Z")).unwrap();
        assert_eq!((then.state.as_deref(), then.since), (Some("remediated"), None));
        assert!(d.risk_at(ANN, "", t("2026-10-01T00:00:00Z")).is_none());
        let view = d.user(ANN, "", t("2026-11-07T00:00:00Z")).unwrap().risk.unwrap();
        assert_eq!(view.since.as_deref(), Some("2026-11-05T09:00:00Z"));
        assert!(view.high_open);
        assert_eq!(d.summary(t("2026-11-07T00:00:00Z")).risky[&("high", "at_risk")], 1);
    }
}
