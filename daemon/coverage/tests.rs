//! SIGNIN-SEMANTICS §6, rule by rule.

use super::*;
use crate::decode::parse_guid;
use chrono::TimeZone;

const ANN: &str = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
const BOB: &str = "1f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, day, hour, 0, 0).unwrap()
}

#[derive(Clone, Copy)]
enum Kind {
    Mfa,
    SingleFactor,
    Legacy,
    LegacyWithMfa,
    Failed,
    RegistrationRequired,
    /// A successful non-interactive sign-in with MFA: not counted by default.
    NonInteractiveMfa,
}

fn obs(key: &'static str, time: DateTime<Utc>, kind: Kind) -> Observation<'static> {
    let (counted, mfa, sf, legacy) = match kind {
        Kind::Mfa => (true, true, false, false),
        Kind::SingleFactor => (true, false, true, false),
        Kind::Legacy => (true, false, true, true),
        Kind::LegacyWithMfa => (true, true, false, true),
        Kind::Failed | Kind::RegistrationRequired | Kind::NonInteractiveMfa => (false, false, false, false),
    };
    Observation {
        key,
        upn: Some(if key == ANN { "Ann@Contoso.example" } else { "bob@contoso.example" }),
        display_name: Some("Someone"),
        user_type: Some("Member"),
        time,
        counted,
        mfa,
        single_factor: sf,
        legacy,
        registration_required: matches!(kind, Kind::RegistrationRequired),
        any_mfa: matches!(kind, Kind::Mfa | Kind::LegacyWithMfa | Kind::NonInteractiveMfa),
        app: Some("Office 365"),
        client_app: if legacy { "IMAP4" } else { "Browser" },
        risky: false,
        identity: 0,
        carried: crate::classify::Carried {
            mfa: matches!(kind, Kind::Mfa | Kind::LegacyWithMfa | Kind::NonInteractiveMfa),
            ..Default::default()
        },
        strength: None,
    }
}

fn state(c: &Coverage, key: &str) -> (State, bool) {
    let v = c.user(&Accounts::default(), key).expect("user known");
    (v.state, v.never_mfa)
}

#[test]
fn all_counted_sign_ins_with_mfa_is_covered() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(10, 9), Kind::Mfa));
    c.observe(&obs(ANN, at(11, 9), Kind::Mfa));
    assert_eq!(state(&c, ANN), (State::Covered, false));
}

#[test]
fn one_single_factor_sign_in_makes_a_user_uncovered() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(10, 9), Kind::Mfa));
    c.observe(&obs(ANN, at(11, 9), Kind::SingleFactor));
    assert_eq!(state(&c, ANN), (State::Uncovered, false));
}

#[test]
fn uncovered_without_any_mfa_is_never_mfa() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(11, 9), Kind::SingleFactor));
    assert_eq!(state(&c, ANN), (State::Uncovered, true));
}

#[test]
fn an_mfa_sign_in_that_is_not_counted_still_rules_out_never_mfa() {
    // "never_mfa: no mfa_satisfied sign-in at all in W", counted or not.
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(11, 9), Kind::SingleFactor));
    c.observe(&obs(ANN, at(11, 10), Kind::NonInteractiveMfa));
    assert_eq!(state(&c, ANN), (State::Uncovered, false));
    // One before the window does not count.
    c.observe(&obs(BOB, at(1, 9), Kind::NonInteractiveMfa));
    c.observe(&obs(BOB, at(11, 9), Kind::SingleFactor));
    assert_eq!(state(&c, BOB), (State::Uncovered, true));
}

#[test]
fn only_sign_ins_that_are_not_counted_leave_a_user_inactive() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(11, 9), Kind::NonInteractiveMfa));
    assert_eq!(state(&c, ANN), (State::Inactive, false));
}

#[test]
fn a_legacy_sign_in_makes_a_user_uncovered_even_with_mfa() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(10, 9), Kind::Mfa));
    c.observe(&obs(ANN, at(11, 9), Kind::LegacyWithMfa));
    assert_eq!(state(&c, ANN), (State::Uncovered, false));
    let v = c.user(&Accounts::default(), ANN).unwrap();
    let last = v.last_legacy.unwrap();
    assert_eq!((last.app.as_deref(), last.client.as_deref()), (Some("Office 365"), Some("IMAP4")));
}

#[test]
fn a_user_with_only_failures_is_inactive() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(10, 9), Kind::Failed));
    assert_eq!(state(&c, ANN), (State::Inactive, false));
}

#[test]
fn sign_ins_leave_the_window_after_window_days() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(1, 9), Kind::SingleFactor));
    c.observe(&obs(BOB, at(7, 9), Kind::Mfa));
    assert_eq!(state(&c, ANN).0, State::Uncovered, "day 1 is inside a window ending on day 7");
    c.observe(&obs(BOB, at(8, 0), Kind::Mfa));
    assert_eq!(state(&c, ANN).0, State::Inactive, "day 1 left the window when day 8 began");
    assert_eq!(c.user(&Accounts::default(), BOB).unwrap().counts.counted, 2);
}

#[test]
fn late_records_inside_the_window_count_and_older_ones_do_not() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(BOB, at(20, 9), Kind::Mfa));
    c.observe(&obs(ANN, at(15, 9), Kind::SingleFactor)); // late but in the window
    c.observe(&obs(ANN, at(2, 9), Kind::SingleFactor)); // before the window
    let v = c.user(&Accounts::default(), ANN).unwrap();
    assert_eq!(v.counts.single_factor, 1);
    assert_eq!(v.state, State::Uncovered);
    assert_eq!(c.late_records(), 1);
}

#[test]
fn the_order_records_arrive_in_does_not_change_the_state() {
    let records = [
        obs(ANN, at(3, 9), Kind::SingleFactor),
        obs(ANN, at(12, 9), Kind::Mfa),
        obs(BOB, at(9, 9), Kind::RegistrationRequired),
        obs(ANN, at(13, 9), Kind::Legacy),
        obs(BOB, at(10, 9), Kind::Mfa),
        obs(BOB, at(14, 9), Kind::SingleFactor),
        obs(ANN, at(14, 9), Kind::Mfa),
    ];
    let run = |order: &[usize]| {
        let mut c = Coverage::new(Policy::default());
        for &i in order {
            c.observe(&records[i]);
        }
        let (_, users) = c.users(&Accounts::default(), &UserQuery::default());
        users
    };
    let forward = run(&[0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(forward, run(&[6, 5, 4, 3, 2, 1, 0]));
    assert_eq!(forward, run(&[3, 0, 6, 2, 5, 1, 4]));
}

#[test]
fn duplicates_cannot_change_a_state() {
    let mut once = Coverage::new(Policy::default());
    let mut twice = Coverage::new(Policy::default());
    for o in [obs(ANN, at(10, 9), Kind::Mfa), obs(BOB, at(11, 9), Kind::SingleFactor)] {
        once.observe(&o);
        twice.observe(&o);
        twice.observe(&o);
    }
    assert_eq!(once.summary(&Accounts::default()).states, twice.summary(&Accounts::default()).states);
}

#[test]
fn registration_pending_from_the_first_failure_until_mfa() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(1, 9), Kind::RegistrationRequired));
    c.observe(&obs(ANN, at(2, 9), Kind::RegistrationRequired));
    let v = c.user(&Accounts::default(), ANN).unwrap();
    assert!(v.registration_pending && !v.registration_overdue);
    assert_eq!(v.registration_pending_since.as_deref(), Some("2025-06-01T00:00:00Z"), "the day it started");
    c.observe(&obs(ANN, at(3, 9), Kind::Mfa));
    assert!(!c.user(&Accounts::default(), ANN).unwrap().registration_pending);
}

#[test]
fn registration_pending_since_does_not_depend_on_arrival_order() {
    // Failures on days 5, 12 and 15, MFA on day 10 (say non-interactive, from
    // another topic): pending since day 12, whichever arrives first.
    let records = [
        obs(ANN, at(5, 9), Kind::RegistrationRequired),
        obs(ANN, at(10, 9), Kind::NonInteractiveMfa),
        obs(ANN, at(12, 9), Kind::RegistrationRequired),
        obs(ANN, at(15, 9), Kind::RegistrationRequired),
    ];
    for order in [[0, 1, 2, 3], [3, 2, 1, 0], [0, 2, 3, 1], [2, 0, 3, 1], [1, 3, 0, 2]] {
        let mut c = Coverage::new(Policy::default());
        for i in order {
            c.observe(&records[i]);
        }
        let v = c.user(&Accounts::default(), ANN).unwrap();
        assert_eq!(v.registration_pending_since.as_deref(), Some("2025-06-12T00:00:00Z"), "{order:?}");
    }
    // A failure later on the day of the MFA, and none after: pending since that day.
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(10, 12), Kind::RegistrationRequired));
    c.observe(&obs(ANN, at(10, 9), Kind::NonInteractiveMfa));
    c.observe(&obs(ANN, at(8, 9), Kind::RegistrationRequired));
    assert_eq!(
        c.user(&Accounts::default(), ANN).unwrap().registration_pending_since.as_deref(),
        Some("2025-06-10T00:00:00Z")
    );
}

#[test]
fn any_mfa_sign_in_ends_registration_pending_counted_or_not() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(10, 9), Kind::RegistrationRequired));
    assert!(c.user(&Accounts::default(), ANN).unwrap().registration_pending_since.is_some());
    c.observe(&obs(ANN, at(10, 10), Kind::NonInteractiveMfa));
    assert_eq!(c.user(&Accounts::default(), ANN).unwrap().registration_pending_since, None);
}

#[test]
fn registration_pending_longer_than_the_grace_is_overdue() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(1, 9), Kind::RegistrationRequired));
    c.observe(&obs(BOB, at(16, 10), Kind::Mfa)); // the watermark moves 15 days on
    let v = c.user(&Accounts::default(), ANN).unwrap();
    assert!(v.registration_pending && v.registration_overdue);
    let s = c.summary(&Accounts::default());
    assert_eq!((s.registration_pending, s.registration_overdue), (1, 1));
}

#[test]
fn excluded_accounts_are_never_uncovered() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(10, 9), Kind::SingleFactor));
    let accounts = Accounts::new([], ["ann@contoso.example"]);
    assert_eq!(c.user(&accounts, ANN).unwrap().state, State::Excluded);
    let s = c.summary(&accounts);
    assert_eq!((s.states["excluded"], s.states["uncovered"]), (1, 0));
    assert_eq!(s.coverage_ratio, None);
}

#[test]
fn privileged_accounts_match_by_upn_or_object_id() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(10, 9), Kind::SingleFactor));
    c.observe(&obs(BOB, at(10, 9), Kind::Mfa));
    let by_upn = Accounts::new(["ANN@contoso.example"], []);
    let by_id = Accounts::new([BOB.to_uppercase().as_str()], []);
    assert!(c.user(&by_upn, ANN).unwrap().privileged);
    assert!(c.user(&by_id, BOB).unwrap().privileged);
    let q = UserQuery { state: Some(State::Uncovered), privileged: Some(true), ..UserQuery::default() };
    assert_eq!(c.users(&by_upn, &q).0, 1);
}

#[test]
fn the_ratio_is_covered_over_covered_plus_uncovered_and_inactive_users_are_not_in_it() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(10, 9), Kind::SingleFactor));
    c.observe(&obs(BOB, at(10, 9), Kind::Mfa));
    c.observe(&obs("c", at(10, 9), Kind::Mfa));
    c.observe(&obs("d", at(10, 9), Kind::Failed));
    let s = c.summary(&Accounts::default());
    assert_eq!(s.coverage_ratio, Some(2.0 / 3.0));
    assert_eq!(s.states["inactive"], 1);
    let guests = s.breakdown.iter().filter(|b| b.user_type == UserType::Guest).count();
    assert_eq!(guests, 0);
}

#[test]
fn members_and_guests_are_broken_down_apart() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(10, 9), Kind::SingleFactor));
    c.observe(&Observation { user_type: Some("Guest"), ..obs(BOB, at(10, 9), Kind::Mfa) });
    c.observe(&Observation { user_type: Some("guest"), ..obs("c", at(10, 9), Kind::SingleFactor) });
    let s = c.summary(&Accounts::default());
    let row = |t: UserType| s.breakdown.iter().find(|b| b.user_type == t && !b.privileged).expect("row").clone();
    let (member, guest) = (row(UserType::Member), row(UserType::Guest));
    assert_eq!((member.covered, member.uncovered, member.coverage_ratio), (0, 1, Some(0.0)));
    assert_eq!((guest.covered, guest.uncovered, guest.coverage_ratio), (1, 1, Some(0.5)));
}

#[test]
fn users_are_found_by_object_id_or_upn_in_any_case() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(10, 9), Kind::Mfa));
    let a = Accounts::default();
    assert!(c.user(&a, &ANN.to_uppercase()).is_some());
    assert!(c.user(&a, "ann@contoso.EXAMPLE").is_some());
    assert_eq!(c.user(&a, ANN).unwrap().upn, "Ann@Contoso.example");
    assert!(c.user(&a, "nobody@contoso.example").is_none());
}

#[test]
fn a_snapshot_restores_the_same_state() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(10, 9), Kind::Legacy));
    c.observe(&obs(BOB, at(11, 9), Kind::RegistrationRequired));
    c.observe(&obs("upn-only@contoso.example", at(12, 9), Kind::Mfa));
    let bytes = postcard::to_allocvec(&c.to_snapshot()).unwrap();
    let restored = Coverage::from_snapshot(Policy::default(), postcard::from_bytes(&bytes).unwrap()).unwrap();
    let a = Accounts::default();
    assert_eq!(c.users(&a, &UserQuery::default()), restored.users(&a, &UserQuery::default()));
    let mut restored = restored;
    restored.observe(&obs(ANN, at(12, 10), Kind::Mfa));
    assert_eq!(restored.len(), 3, "the index works after a restore");
}

#[test]
fn a_snapshot_with_another_window_is_refused() {
    let c = Coverage::new(Policy::default());
    let other = Policy { window_days: 30, ..Policy::default() };
    assert!(Coverage::from_snapshot(other, c.to_snapshot()).is_err());
}

#[test]
fn guids_need_dashes_exactly_where_they_belong() {
    assert_eq!(parse_guid("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0-9"), None);
    assert_eq!(parse_guid("0f1e2d3c04b5a-4978-8695-a4b3c2d1e0f9"), None);
}

/// A sign-in of `upn` with `user_id` and error code `code`, as decoded and classified.
fn unknown_account(user_id: &str, upn: &str, code: i64) -> (bool, bool) {
    let json = format!(
        r#"{{"time":"2025-06-10T09:00:00Z","category":"SignInLogs","properties":{{"userId":"{user_id}","userPrincipalName":"{upn}","status":{{"errorCode":{code}}},"clientAppUsed":"Authenticated SMTP"}}}}"#
    );
    let items = crate::decode::decode_message(json.as_bytes());
    let Some(crate::decode::Item::SignIn(record)) = items.first() else { panic!("{items:?}") };
    let verdict = crate::classify::classify(record, &crate::classify::Rules::default());
    let observed = Observation::of(record, &verdict, &Policy::default()).is_some();
    (observed, Observation::unknown_account(record, &verdict))
}

#[test]
fn a_failed_sign_in_that_names_no_account_is_counted_not_made_a_user() {
    // 50034 "user account does not exist": no object id. (observed, unknown account)
    assert_eq!(unknown_account("", "made.up.4711@contoso.example", 50034), (false, true));
    assert_eq!(unknown_account("00000000-0000-0000-0000-000000000000", "nobody@contoso.example", 50126), (false, true));
    // A real account: failures and successes are observed.
    assert_eq!(unknown_account(ANN, "ann@contoso.example", 50126), (true, false));
    // A success identifies an account even without an object id.
    assert_eq!(unknown_account("", "ann@contoso.example", 0), (true, false));
}

#[test]
fn a_real_users_failed_sign_in_still_counts_toward_registration() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(5, 9), Kind::RegistrationRequired));
    let v = c.user(&Accounts::default(), ANN).unwrap();
    assert!(v.registration_pending, "{v:?}");
}

#[test]
fn past_max_users_new_users_are_refused_and_known_ones_keep_updating() {
    let mut c = Coverage::new(Policy { max_users: 1, ..Policy::default() });
    assert_eq!(c.observe(&obs(ANN, at(10, 9), Kind::Mfa)), Observed::Counted);
    assert_eq!(c.observe(&obs(BOB, at(10, 9), Kind::SingleFactor)), Observed::Refused);
    assert_eq!(c.observe(&obs(ANN, at(11, 9), Kind::SingleFactor)), Observed::Counted);
    assert_eq!(c.len(), 1);
    assert!(c.user(&Accounts::default(), BOB).is_none());
    assert_eq!(state(&c, ANN), (State::Uncovered, false));
}

#[test]
fn names_that_change_back_and_forth_do_not_grow_the_state_without_bound() {
    let mut c = Coverage::new(Policy::default());
    let text_key: &'static str = "carol@contoso.example";
    for i in 0..20_000u32 {
        let upn = if i % 2 == 0 { "ann.a@contoso.example" } else { "ann.b@contoso.example" };
        let o = Observation { upn: Some(upn), ..obs(ANN, at(1, 0) + chrono::Duration::seconds(i as i64), Kind::Mfa) };
        c.observe(&o);
        let carol = Observation {
            upn: Some(text_key),
            ..obs(text_key, at(1, 0) + chrono::Duration::seconds(i as i64), Kind::Mfa)
        };
        c.observe(&carol);
    }
    assert!(c.names_wasteful(), "{} bytes of names", c.arena.len());
    let before = (c.user(&Accounts::default(), ANN).unwrap(), c.user(&Accounts::default(), text_key).unwrap());
    c.compact_names();
    assert!(!c.names_wasteful());
    assert!(c.arena.len() < 200, "{} bytes after compaction", c.arena.len());
    let after = (c.user(&Accounts::default(), ANN).unwrap(), c.user(&Accounts::default(), text_key).unwrap());
    assert_eq!(before, after);
    // The index still finds the text-keyed user after its key moved.
    c.observe(&obs(text_key, at(2, 0), Kind::SingleFactor));
    assert_eq!(c.len(), 2);
}

#[test]
fn user_type_and_names_do_not_depend_on_arrival_order() {
    let guest_early = Observation { user_type: Some("Guest"), ..obs(ANN, at(10, 10), Kind::Mfa) };
    let untyped_late = Observation { user_type: None, upn: None, ..obs(ANN, at(10, 11), Kind::Mfa) };
    let run = |first: &Observation<'static>, second: &Observation<'static>| {
        let mut c = Coverage::new(Policy::default());
        c.observe(first);
        c.observe(second);
        let v = c.user(&Accounts::default(), ANN).unwrap();
        (v.user_type, v.upn, v.display_name)
    };
    assert_eq!(run(&guest_early, &untyped_late), run(&untyped_late, &guest_early));
    assert_eq!(run(&guest_early, &untyped_late).0, UserType::Guest);
    assert_eq!(run(&guest_early, &untyped_late).1, "Ann@Contoso.example", "a record without a UPN keeps the UPN");
}

#[test]
fn guids_round_trip() {
    assert_eq!(parse_guid(ANN).map(|g| format_guid(&g)).as_deref(), Some(ANN));
    assert_eq!(parse_guid("not-a-guid"), None);
    assert_eq!(parse_guid("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0fz"), None);
}

/// The observation the pipeline makes of one diagnostic record.
fn observed(category: &str, code: i64, client_app: &str, policy: &Policy) -> Option<(bool, bool, bool, bool, bool)> {
    let json = format!(
        r#"{{"time":"2025-06-10T09:00:00Z","category":"{category}","properties":{{"userId":"{ANN}","status":{{"errorCode":{code}}},"clientAppUsed":"{client_app}","authenticationRequirement":"multiFactorAuthentication"}}}}"#
    );
    let items = crate::decode::decode_message(json.as_bytes());
    let Some(crate::decode::Item::SignIn(record)) = items.first() else { panic!("{items:?}") };
    let verdict = crate::classify::classify(record, &crate::classify::Rules::default());
    Observation::of(record, &verdict, policy).map(|o| (o.counted, o.mfa, o.single_factor, o.legacy, o.any_mfa))
}

#[test]
fn counted_sign_ins_are_successful_interactive_user_sign_ins() {
    let p = Policy::default();
    // (counted, mfa, single_factor, legacy, any_mfa)
    assert_eq!(observed("SignInLogs", 0, "Browser", &p), Some((true, true, false, false, true)));
    assert_eq!(observed("NonInteractiveUserSignInLogs", 0, "Browser", &p), Some((false, false, false, false, true)));
    assert_eq!(observed("SignInLogs", 50126, "Browser", &p), Some((false, false, false, false, false)));
}

#[test]
fn non_interactive_sign_ins_are_counted_when_configured() {
    let p = Policy { count_non_interactive: true, ..Policy::default() };
    assert_eq!(observed("NonInteractiveUserSignInLogs", 0, "Browser", &p), Some((true, true, false, false, true)));
}

#[test]
fn every_successful_legacy_sign_in_is_counted_interactive_or_not_and_failed_ones_are_not() {
    let p = Policy::default();
    assert_eq!(observed("NonInteractiveUserSignInLogs", 0, "IMAP4", &p), Some((true, true, false, true, true)));
    assert_eq!(observed("SignInLogs", 0, "POP3", &p), Some((true, true, false, true, true)));
    assert_eq!(observed("SignInLogs", 50126, "IMAP4", &p), Some((false, false, false, false, false)));
}

#[test]
fn workloads_are_not_users() {
    for category in ["ServicePrincipalSignInLogs", "MicrosoftServicePrincipalSignInLogs", "ManagedIdentitySignInLogs"] {
        assert_eq!(observed(category, 0, "", &Policy::default()), None, "{category}");
    }
}

#[test]
fn a_renamed_user_keeps_the_newest_upn_whatever_the_order() {
    let old = Observation { upn: Some("ann.old@contoso.example"), ..obs(ANN, at(9, 9), Kind::Mfa) };
    let new = Observation { upn: Some("ann.new@contoso.example"), ..obs(ANN, at(10, 9), Kind::Mfa) };
    for order in [[&old, &new], [&new, &old]] {
        let mut c = Coverage::new(Policy::default());
        for o in order {
            c.observe(o);
        }
        let user = c.user(&Accounts::default(), ANN).unwrap();
        assert_eq!(user.upn, "ann.new@contoso.example");
        assert!(c.user(&Accounts::default(), "ann.new@contoso.example").is_some());
    }
}

#[test]
fn a_snapshot_from_before_failure_days_keeps_when_pending_began() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&obs(ANN, at(5, 9), Kind::RegistrationRequired));
    c.observe(&obs(ANN, at(7, 9), Kind::RegistrationRequired));
    let new = c.to_snapshot();
    // Format 2 kept the time of the first failure after the last MFA there.
    let e = &new.entries[0];
    let old = CoverageSnapshotV3 {
        window_days: new.window_days,
        entries: vec![EntryV3 {
            id: e.id,
            names: e.names,
            last_seen: e.last_seen,
            last_mfa: e.last_mfa,
            last_single_factor: e.last_single_factor,
            last_legacy: e.last_legacy,
            single_factor_app: e.single_factor_app,
            legacy_app: e.legacy_app,
            single_factor_client: e.single_factor_client,
            legacy_client: e.legacy_client,
            registration_days: at(5, 9).timestamp() as u32,
            registration_last: e.registration_last,
            names_time: e.names_time,
            type_time: e.type_time,
            head_day: e.head_day,
            flags: e.flags,
        }],
        days: new.days.clone(),
        arena: new.arena.clone(),
        apps: new.apps.clone(),
        clients: new.clients.clone(),
        watermark: new.watermark,
        late_records: 0,
        _future_records: 0,
    };
    let restored = Coverage::from_snapshot(Policy::default(), old.upgrade(true)).unwrap();
    let v = restored.user(&Accounts::default(), ANN).unwrap();
    assert_eq!(v.registration_pending_since.as_deref(), Some("2025-06-05T00:00:00Z"));
}

#[test]
fn a_counted_sign_in_delivered_twice_counts_once() {
    let mut c = Coverage::new(Policy::default());
    let o = Observation { identity: 42, ..obs(ANN, at(10, 9), Kind::SingleFactor) };
    assert_eq!(c.observe(&o), Observed::Counted);
    // The same record again — Azure Monitor delivered it twice, or a backfill
    // replays what Kafka delivered — is not counted again.
    assert_eq!(c.observe(&o), Observed::Duplicate);
    assert_eq!(c.observe(&Observation { identity: 43, ..o.clone() }), Observed::Counted);
    let v = c.user(&Accounts::default(), ANN).unwrap();
    assert_eq!(v.counts.single_factor, 2);
    // The identities survive a snapshot, and leave with their day.
    let mut restored = Coverage::from_snapshot(Policy::default(), c.to_snapshot()).unwrap();
    assert_eq!(restored.observe(&o), Observed::Duplicate);
    restored.observe(&obs(BOB, at(20, 9), Kind::Mfa));
    assert!(restored.identity_bytes() > 0);
    let later = Observation { identity: 42, ..obs(ANN, at(21, 9), Kind::SingleFactor) };
    assert_eq!(restored.observe(&later), Observed::Counted, "another day, another slot");
}

#[test]
fn risky_sign_ins_are_remembered_for_the_users_filter() {
    let mut c = Coverage::new(Policy::default());
    c.observe(&Observation { risky: true, ..obs(ANN, at(10, 9), Kind::Mfa) });
    c.observe(&obs(BOB, at(10, 9), Kind::Mfa));
    let q = UserQuery { risky: Some(true), limit: 10, ..UserQuery::default() };
    let (total, users) = c.users(&Accounts::default(), &q);
    assert_eq!((total, users[0].key.as_str()), (1, ANN));
    assert!(users[0].last_risky.is_some());
}

/// Two copies of one counted sign-in (identity 42): the first Entra
/// published, single factor and no risk; the re-delivery with the MFA step
/// completed (named) and a high risk found offline.
fn enriched_pair() -> (Observation<'static>, Observation<'static>) {
    use crate::classify::Carried;
    let first = Observation { identity: 42, ..obs(ANN, at(10, 9), Kind::SingleFactor) };
    let later = Observation {
        identity: 42,
        risky: true,
        carried: Carried { risk_rank: 4, risky: true, mfa: true, method_named: true },
        ..obs(ANN, at(10, 9), Kind::Mfa)
    };
    (first, later)
}

#[test]
fn an_enriched_re_delivery_moves_the_sign_in_to_mfa_once_in_either_order() {
    use crate::classify::Enriched;
    let (first, later) = enriched_pair();
    let mut in_order = Coverage::new(Policy::default());
    assert_eq!(in_order.observe(&first), Observed::Counted);
    let Observed::Enriched { before, after } = in_order.observe(&later) else { panic!("not enriched") };
    assert_eq!(before.added_by(after).collect::<Vec<_>>(), Enriched::ALL);
    // Read once more, neither copy adds anything.
    assert_eq!(in_order.observe(&later), Observed::Duplicate);
    assert_eq!(in_order.observe(&first), Observed::Duplicate);
    let mut reversed = Coverage::new(Policy::default());
    assert_eq!(reversed.observe(&later), Observed::Counted);
    assert_eq!(reversed.observe(&first), Observed::Duplicate, "the first copy says less: nothing to add");
    for c in [&in_order, &reversed] {
        let v = c.user(&Accounts::default(), ANN).unwrap();
        assert_eq!((v.state, v.counts.counted, v.counts.mfa, v.counts.single_factor), (State::Covered, 1, 1, 0));
        assert!(v.last_risky.is_some() && v.last_mfa.is_some());
    }
    assert_eq!(in_order.to_snapshot().days, reversed.to_snapshot().days);
    assert_eq!(in_order.to_snapshot().seen, reversed.to_snapshot().seen);
}

#[test]
fn an_enriched_re_delivery_read_after_a_restart_still_counts_once() {
    let (first, later) = enriched_pair();
    let mut c = Coverage::new(Policy::default());
    assert_eq!(c.observe(&first), Observed::Counted);
    let mut restored = Coverage::from_snapshot(Policy::default(), c.to_snapshot()).unwrap();
    assert!(matches!(restored.observe(&later), Observed::Enriched { .. }));
    let v = restored.user(&Accounts::default(), ANN).unwrap();
    assert_eq!((v.state, v.counts.counted, v.counts.mfa), (State::Covered, 1, 1));
    // And a copy that carries MFA too but a lower risk is a plain duplicate.
    let mut again = Coverage::from_snapshot(Policy::default(), restored.to_snapshot()).unwrap();
    assert_eq!(again.observe(&Observation { risky: false, ..later.clone() }), Observed::Duplicate);
}

#[test]
fn identities_kept_by_the_sixth_format_stay_plain_duplicates() {
    let (first, later) = enriched_pair();
    let mut c = Coverage::new(Policy::default());
    c.observe(&first);
    let old = super::CoverageSnapshotV6::of(&c.to_snapshot());
    let mut restored = Coverage::from_snapshot(Policy::default(), old.upgrade()).unwrap();
    // What the copy counted then carried is not known: nothing is moved on a guess.
    assert_eq!(restored.observe(&later), Observed::Duplicate);
    let v = restored.user(&Accounts::default(), ANN).unwrap();
    assert_eq!((v.counts.counted, v.counts.single_factor), (1, 1));
}

#[test]
fn a_user_is_on_phishing_resistant_mfa_while_every_counted_sign_in_with_a_known_method_is() {
    use crate::classify::Strength;
    let with = |strength: Option<Strength>, day: u32, hour: u32| Observation {
        strength,
        ..obs(ANN, at(day, hour), Kind::Mfa)
    };
    let mut c = Coverage::new(Policy::default());
    let pr = |c: &Coverage| c.user(&Accounts::default(), ANN).unwrap().phishing_resistant;
    c.observe(&with(Some(Strength::PhishingResistant), 10, 9));
    assert!(pr(&c), "a FIDO2 sign-in");
    // A claim in the token says nothing of the method: still on it.
    c.observe(&with(None, 10, 10));
    assert!(pr(&c));
    assert_eq!(c.summary(&Accounts::default()).phishing_resistant, 1);
    // An SMS sign-in in the window: not any more, until it leaves the window.
    c.observe(&with(Some(Strength::Telephony), 11, 9));
    assert!(!pr(&c));
    let q = UserQuery { phishing_resistant: Some(false), ..UserQuery::default() };
    assert_eq!(c.users(&Accounts::default(), &q).0, 1);
    c.observe(&with(Some(Strength::PhishingResistant), 20, 9));
    assert!(pr(&c), "the SMS sign-in left the 7-day window");
    // In any order: the same answer.
    let mut reversed = Coverage::new(Policy::default());
    for (s, d, h) in [
        (Some(Strength::PhishingResistant), 20, 9),
        (Some(Strength::Telephony), 11, 9),
        (None, 10, 10),
        (Some(Strength::PhishingResistant), 10, 9),
    ] {
        reversed.observe(&with(s, d, h));
    }
    assert!(pr(&reversed));
    // A single-factor sign-in makes the user uncovered, and so not on it.
    c.observe(&obs(ANN, at(20, 10), Kind::SingleFactor));
    assert!(!pr(&c));
}
