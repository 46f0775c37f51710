//! The rules on directory records (README "Alerts", docs/labels.md §8):
//!
//! - `privileged_not_covered`: an audit event made a user privileged (a
//!   privileged role given, active or PIM-eligible) while they are not
//!   covered by MFA — their sign-ins in the coverage window went without it,
//!   or they have none and no MFA method is known to be registered — or
//!   while the directory says no MFA method is registered.
//! - `privileged_methods_changed`: a privileged account's authentication
//!   methods were registered, deleted or replaced (warning); critical when a
//!   successful sign-in from an address the account was not seen using
//!   before the change follows within `new_ip_within`.
//! - `break_glass_role_change`: any role given to or taken from a
//!   break-glass account.
//! - `per_user_mfa_disabled`: per-user MFA disabled for a user (critical
//!   when they are privileged).
//! - `mfa_policy_weakened`: an MFA-requiring Conditional Access policy
//!   deleted, disabled, switched to report-only, its MFA grant removed, or
//!   users, groups or roles excluded from it — read from the record's own
//!   before and after, so it does not depend on what else was read.
//! - `mfa_enforcement_lost`: security defaults disabled while no
//!   MFA-requiring Conditional Access policy is enforced (as the posture
//!   has them at the record's time).
//! - `break_glass_protection_change`: a break-glass account excluded from,
//!   or no longer excluded from, a Conditional Access policy, or its
//!   authentication methods changed.
//! - `risky_user_unremediated` (on sign-ins, [`Alerts::unremediated`]): a
//!   user at high risk, neither remediated nor dismissed, for
//!   `after` or longer signs in successfully.
//!
//! Seeds (role-assignment and registration listings) say what holds, not
//! what changed: they never alert. Each alert's id comes from the record, so
//! a record read twice (a restart, a repeated delivery) alerts once; the
//! escalation pairs a change with the sign-ins kept for the account, so it
//! fires whichever of the two is read first.

use serde::{Deserialize, Serialize};

use super::{AlertDraft, Alerts, rfc3339, who};
use crate::alerts::ChangeFacts;
use crate::alerts::{Rule, Severity, SignInFacts};
use crate::coverage::State as Coverage;
use crate::decode::directory::{CaPolicy, DirCategory, Fact, MethodChangeKind, PolicyChange, Protection};
use crate::directory::posture::{grant, weakened};
use crate::directory::{Applied, Registration, RiskAt};
use crate::sinks::{DirectoryEvent, SignInEvent};

/// At most this many sign-ins (time, address) are kept per privileged account.
const WATCH_SIGNINS: usize = 64;
/// At most this many method changes are kept per privileged account.
const WATCH_CHANGES: usize = 16;

/// What privileged_methods_changed's escalation keeps of one privileged
/// account: its recent successful sign-ins' addresses and its recent method
/// changes. Part of the snapshot (alerts/3).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(super) struct Watch {
    /// (event time, address), in time order, the oldest dropped past [`WATCH_SIGNINS`].
    signins: Vec<(i64, String)>,
    changes: Vec<Change>,
}

/// One method change of a privileged account, for the escalation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Change {
    time: i64,
    /// The record's identity: the escalation's alert id is made from it.
    identity: String,
    what: String,
    facts: SignInFacts,
}

/// The escalation's part of the state, by user key.
pub(super) type Watches = std::collections::HashMap<String, Watch>;

impl Alerts {
    /// One directory record (the [`crate::sinks::Sink::directory`] of the alerts).
    pub(super) fn directory_record(&mut self, e: &DirectoryEvent<'_>) {
        let time = e.record.time.timestamp();
        self.clock.heard(e.position, time);
        // Only what the audit log says changed alerts; seeds say what holds.
        if e.record.category != DirCategory::AuditLogs || matches!(e.applied, Applied::NotUser | Applied::Skipped) {
            return;
        }
        let identity = e.record.identity().hex();
        if let Fact::Policy(change) = &e.record.fact {
            self.policy_change(e, change, &identity);
            return;
        }
        if e.user_key.is_empty() {
            return;
        }
        match &e.record.fact {
            Fact::PerUserMfa(m) if m.after == "disabled" && self.enabled(Rule::PerUserMfaDisabled) => {
                let f = facts(e);
                let summary = format!(
                    "Per-user MFA disabled for {}{}{}",
                    who(&f),
                    if e.privileged { " (privileged)" } else { "" },
                    by(e)
                );
                let change = ChangeFacts {
                    actor: actor(e),
                    target: who(&f),
                    policy_id: None,
                    before: m.before.clone(),
                    after: Some(m.after.clone()),
                    operation: e.record.operation.clone(),
                };
                let severity = if e.privileged { Severity::Critical } else { Severity::Warning };
                let draft = AlertDraft::new(&f, summary).change(change);
                self.emit(Rule::PerUserMfaDisabled, severity, e.user_key, &identity, draft);
            }
            Fact::Methods(change)
                if e.excluded
                    && self.enabled(Rule::BreakGlassProtectionChange)
                    && matches!(
                        change.change,
                        MethodChangeKind::Registered | MethodChangeKind::Deleted | MethodChangeKind::Replaced
                    ) =>
            {
                let f = facts(e);
                let what = methods_changed(change);
                let summary = format!(
                    "Credentials of break-glass account {} changed: {what}{}: confirm it was planned",
                    who(&f),
                    by(e)
                );
                let facts_change = ChangeFacts {
                    actor: actor(e),
                    target: who(&f),
                    policy_id: None,
                    before: None,
                    after: Some(what),
                    operation: e.record.operation.clone(),
                };
                let draft = AlertDraft::new(&f, summary).change(facts_change);
                self.emit(Rule::BreakGlassProtectionChange, Severity::Critical, e.user_key, &identity, draft);
            }
            Fact::Role(change) => {
                let role = change.role.name.clone().or_else(|| change.role.template_id.clone()).unwrap_or_default();
                if e.excluded && self.enabled(Rule::BreakGlassRoleChange) {
                    let summary = format!(
                        "Role change on break-glass account {}: {role}{} {}{}: confirm it was planned",
                        who(&facts(e)),
                        if change.holding == crate::decode::directory::Holding::Eligible { " (eligible)" } else { "" },
                        if change.added { "given" } else { "taken away" },
                        by(e),
                    );
                    let f = facts(e);
                    self.emit(
                        Rule::BreakGlassRoleChange,
                        Severity::Critical,
                        e.user_key,
                        &identity,
                        AlertDraft::new(&f, summary),
                    );
                }
                if let Some(role) = &e.became_privileged
                    && !e.excluded
                    && self.enabled(Rule::PrivilegedNotCovered)
                    && let Some(why) = not_covered(e.coverage, e.registration)
                {
                    let f = facts(e);
                    let summary = format!("{} became privileged as {role}{} while {why}", who(&f), by(e));
                    self.emit(
                        Rule::PrivilegedNotCovered,
                        Severity::Critical,
                        e.user_key,
                        &identity,
                        AlertDraft::new(&f, summary),
                    );
                }
            }
            Fact::Methods(change)
                if e.privileged
                    && self.enabled(Rule::PrivilegedMethodsChanged)
                    && matches!(
                        change.change,
                        MethodChangeKind::Registered | MethodChangeKind::Deleted | MethodChangeKind::Replaced
                    ) =>
            {
                let what = methods_changed(change);
                let f = facts(e);
                let summary =
                    format!("Authentication methods of privileged account {} changed: {what}{}", who(&f), by(e));
                self.emit(
                    Rule::PrivilegedMethodsChanged,
                    Severity::Warning,
                    e.user_key,
                    &identity,
                    AlertDraft::new(&f, summary),
                );
                let watch = self.watches.entry(e.user_key.to_owned()).or_default();
                if !watch.changes.iter().any(|c| c.identity == identity) {
                    let at = watch.changes.partition_point(|c| c.time <= time);
                    watch.changes.insert(at, Change { time, identity, what, facts: f });
                    if watch.changes.len() > WATCH_CHANGES {
                        watch.changes.remove(0);
                    }
                }
                self.escalate(e.user_key);
            }
            _ => {}
        }
    }

    /// A Conditional Access or security-defaults change: mfa_policy_weakened,
    /// break_glass_protection_change, mfa_enforcement_lost.
    fn policy_change(&mut self, e: &DirectoryEvent<'_>, change: &PolicyChange, identity: &str) {
        let name = change.policy_name.clone().or_else(|| change.policy_id.clone()).unwrap_or_else(|| "a policy".into());
        let subject = format!("policy:{}", change.policy_id.as_deref().unwrap_or(&name.to_lowercase()));
        let mut f = facts(e);
        f.user_key = None;
        f.upn = None;
        let change_facts = |before: Option<String>, after: Option<String>| ChangeFacts {
            actor: actor(e),
            target: name.clone(),
            policy_id: change.policy_id.clone(),
            before,
            after,
            operation: e.record.operation.clone(),
        };
        match &change.protection {
            Protection::ConditionalAccess { before, after, .. } => {
                if let Some(how) = weakened(before.as_deref(), after.as_deref())
                    && self.enabled(Rule::MfaPolicyWeakened)
                {
                    let summary = format!("Conditional Access policy \"{name}\", which requires MFA, {how}{}", by(e));
                    let c = change_facts(before.as_deref().map(side), after.as_deref().map(side));
                    let draft = AlertDraft::new(&f, summary).change(c);
                    self.emit(Rule::MfaPolicyWeakened, Severity::Critical, &subject, identity, draft);
                }
                if !self.enabled(Rule::BreakGlassProtectionChange) {
                    return;
                }
                for (key, upn, excluded) in &e.break_glass {
                    let who = if upn.is_empty() { key.as_str() } else { upn.as_str() };
                    let how = if *excluded { "now excluded from" } else { "no longer excluded from" };
                    let summary = format!(
                        "Break-glass account {who} {how} Conditional Access policy \"{name}\"{}: confirm it was planned{}",
                        by(e),
                        if *excluded {
                            ""
                        } else {
                            " (the policy now applies to it: an emergency sign-in may be blocked)"
                        }
                    );
                    let mut bf = facts(e);
                    bf.user_key = Some(key.clone());
                    bf.upn = Some(upn.clone()).filter(|u| !u.is_empty());
                    let mut c = change_facts(
                        Some(if *excluded { "included" } else { "excluded" }.into()),
                        Some(if *excluded { "excluded" } else { "included" }.into()),
                    );
                    c.target = format!("{who} in \"{name}\"");
                    let draft = AlertDraft::new(&bf, summary).change(c);
                    let id = format!("{identity} {key}");
                    self.emit(Rule::BreakGlassProtectionChange, Severity::Critical, key, &id, draft);
                }
            }
            Protection::SecurityDefaults { before, enabled: false } => {
                if !self.enabled(Rule::MfaEnforcementLost) || !e.mfa_enforced.is_empty() {
                    return;
                }
                let summary = format!(
                    "Security defaults disabled{} while none of the MFA-requiring Conditional Access policies the audit log has shown is enforced: the tenant has lost its MFA enforcement",
                    by(e)
                );
                let on_off = |b: bool| if b { "enabled" } else { "disabled" }.to_owned();
                let c = change_facts(before.map(on_off), Some(on_off(false)));
                let draft = AlertDraft::new(&f, summary).change(c);
                let tenant = format!("tenant:{}", e.record.tenant_id.as_deref().unwrap_or(""));
                self.emit(Rule::MfaEnforcementLost, Severity::Critical, &tenant, identity, draft);
            }
            Protection::SecurityDefaults { enabled: true, .. } => {}
        }
    }

    /// Where Identity Protection had the user of a successful sign-in, when
    /// it makes risky_user_unremediated: high risk, open for `after` or longer.
    pub(super) fn unremediated<'e>(&self, event: &'e SignInEvent<'_, '_>) -> Option<&'e RiskAt> {
        let after = self.config.rules.risky_user_unremediated.after.as_secs() as i64 * 1000;
        let risk = event.risk.as_ref().filter(|r| r.high_open())?;
        let since = risk.since?;
        (event.record.time.timestamp_millis() - since >= after).then_some(risk)
    }

    /// A privileged account's successful sign-in from `ip`: kept for the
    /// escalation, and checked against the account's method changes.
    pub(super) fn watch_sign_in(&mut self, user: &str, time: i64, ip: &str, facts: impl FnOnce() -> SignInFacts) {
        let watch = match self.watches.get_mut(user) {
            Some(w) => w,
            None => self.watches.entry(user.to_owned()).or_default(),
        };
        let at = watch.signins.partition_point(|(t, _)| *t <= time);
        if watch.signins[..at].iter().rev().take_while(|(t, _)| *t == time).any(|(_, i)| i == ip) {
            return;
        }
        watch.signins.insert(at, (time, ip.to_owned()));
        if watch.signins.len() > WATCH_SIGNINS {
            watch.signins.remove(0);
        }
        if !watch.changes.is_empty() {
            self.escalate_with(user, Some(facts()));
        }
    }

    fn escalate(&mut self, user: &str) {
        self.escalate_with(user, None);
    }

    /// Every method change of `user` followed within `new_ip_within` by a
    /// successful sign-in from an address not seen before the change alerts
    /// critical, once per change (`sign_in`: the facts of the sign-in just
    /// read, when that is what made it happen).
    fn escalate_with(&mut self, user: &str, sign_in: Option<SignInFacts>) {
        let within = self.config.rules.privileged_methods_changed.new_ip_within.as_secs() as i64;
        let Some(watch) = self.watches.get(user) else { return };
        let mut fired = Vec::new();
        for c in &watch.changes {
            let known = |ip: &str| watch.signins.iter().take_while(|(t, _)| *t < c.time).any(|(_, i)| i == ip);
            let new = watch.signins.iter().find(|(t, ip)| *t > c.time && *t - c.time <= within && !known(ip));
            if let Some((t, ip)) = new {
                fired.push((c.clone(), *t, ip.clone()));
            }
        }
        for (change, t, ip) in fired {
            let mut f = change.facts.clone();
            if let Some(s) = sign_in.as_ref().filter(|s| s.ip.as_deref() == Some(ip.as_str())) {
                f = SignInFacts { privileged: true, ..s.clone() };
            } else {
                f.ip = Some(ip.clone());
                f.time = rfc3339(t);
            }
            let summary = format!(
                "Authentication methods of privileged account {} changed ({}), then {} minutes later a successful sign-in from {ip}, an address not seen for the account before the change: confirm the change was theirs",
                who(&change.facts),
                change.what,
                (t - change.time) / 60
            );
            let mut draft = AlertDraft::new(&f, summary);
            draft.time = change.time;
            let id = format!("{} then a new address", change.identity);
            self.emit(Rule::PrivilegedMethodsChanged, Severity::Critical, user, &id, draft);
        }
    }

    /// Forgets sign-ins older than the address history and changes past the
    /// escalation window (`low`: the low watermark).
    pub(super) fn prune_watches(&mut self, low: i64) {
        let rule = &self.config.rules.privileged_methods_changed;
        let (history, within) = (rule.ip_history.as_secs() as i64, rule.new_ip_within.as_secs() as i64);
        let tolerance = self.config.rules.mfa_fatigue.reorder_tolerance.as_secs() as i64;
        self.watches.retain(|_, w| {
            w.signins.retain(|(t, _)| *t >= low - history);
            w.changes.retain(|c| c.time >= low - within - tolerance);
            !w.signins.is_empty() || !w.changes.is_empty()
        });
    }
}

/// Why a user made privileged is not covered, or None when they are: their
/// counted sign-ins in the window went without MFA, or there are none and
/// no MFA method is known to be registered, or the directory says no MFA
/// method is registered.
fn not_covered(coverage: Option<Coverage>, registration: Registration) -> Option<String> {
    let signed_in = match coverage {
        Some(Coverage::Uncovered) => Some("they signed in without MFA in the coverage window"),
        Some(Coverage::Covered) | Some(Coverage::Excluded) => None,
        Some(Coverage::Inactive) | None if registration != Registration::Registered => {
            Some("no sign-in of theirs with MFA is known")
        }
        Some(Coverage::Inactive) | None => None,
    };
    let registered = match registration {
        Registration::NotRegistered => Some("no MFA method is registered"),
        Registration::Unknown if signed_in.is_some() => Some("their MFA registration is unknown"),
        _ => None,
    };
    match (signed_in, registered) {
        (None, None) => None,
        (a, b) => Some(a.into_iter().chain(b).collect::<Vec<_>>().join(" and ")),
    }
}

/// A policy side in one line: "report_only, grant mfa, excludes user:…, group:…".
fn side(p: &CaPolicy) -> String {
    let exclusions = p.exclusions();
    format!(
        "{}, grant {}{}",
        p.state.map_or("unknown state", |s| s.as_str()),
        grant(p),
        if exclusions.is_empty() { String::new() } else { format!(", excludes {}", exclusions.join(", ")) }
    )
}

/// "registered microsoftAuthenticator", "deleted a method".
fn methods_changed(change: &crate::decode::directory::MethodChange) -> String {
    let methods: Vec<&str> = change.methods.iter().map(|m| m.0.as_str()).collect();
    let methods = if methods.is_empty() { "a method".to_owned() } else { methods.join(", ") };
    match change.change {
        MethodChangeKind::Registered => format!("registered {methods}"),
        MethodChangeKind::Deleted => format!("deleted {methods}"),
        _ => format!("set to {methods}"),
    }
}

/// Who made the change, when the record says.
fn actor(e: &DirectoryEvent<'_>) -> Option<String> {
    e.record.initiated_by.as_deref().map(str::trim).filter(|b| !b.is_empty()).map(str::to_owned)
}

/// What a risky_user_unremediated alert says of the risk: since when, and the sign-in.
pub(super) fn risk_change(risk: &RiskAt, f: &SignInFacts) -> ChangeFacts {
    ChangeFacts {
        actor: None,
        target: who(f),
        policy_id: None,
        before: Some(format!(
            "{} risk, {} since {}",
            risk.level.as_deref().unwrap_or("unknown"),
            risk.state.as_deref().unwrap_or("at risk"),
            risk.since.map_or_else(String::new, |s| rfc3339(s / 1000))
        )),
        after: Some(format!("signed in at {}, not remediated", f.time)),
        operation: "Risky user".into(),
    }
}

/// " (Add member to role, by admin@contoso.com)"
fn by(e: &DirectoryEvent<'_>) -> String {
    match e.record.initiated_by.as_deref().map(str::trim).filter(|b| !b.is_empty()) {
        Some(b) => format!(" ({}, by {b})", e.record.operation),
        None => format!(" ({})", e.record.operation),
    }
}

/// The facts a directory alert carries: who, when, which record.
fn facts(e: &DirectoryEvent<'_>) -> SignInFacts {
    let r = e.record;
    let principal = r.fact.subject();
    SignInFacts {
        time: r.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        category: Some(r.category.as_str().to_owned()),
        tenant_id: r.tenant_id.clone(),
        user_key: Some(e.user_key.to_owned()),
        upn: Some(e.upn.to_owned()).filter(|u| !u.is_empty()),
        display_name: principal.and_then(|p| p.display_name.clone()),
        privileged: e.privileged,
        record_id: r.id.clone(),
        ..SignInFacts::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_covered_says_why() {
        use Registration::*;
        assert_eq!(not_covered(Some(Coverage::Covered), Registered), None);
        assert_eq!(not_covered(Some(Coverage::Covered), Unknown), None);
        assert_eq!(not_covered(None, Registered), None, "registered, not signed in yet: MFA can be asked");
        assert_eq!(not_covered(Some(Coverage::Covered), NotRegistered).as_deref(), Some("no MFA method is registered"));
        assert_eq!(
            not_covered(Some(Coverage::Uncovered), Registered).as_deref(),
            Some("they signed in without MFA in the coverage window")
        );
        assert_eq!(
            not_covered(None, Unknown).as_deref(),
            Some("no sign-in of theirs with MFA is known and their MFA registration is unknown")
        );
        assert_eq!(
            not_covered(Some(Coverage::Inactive), NotRegistered).as_deref(),
            Some("no sign-in of theirs with MFA is known and no MFA method is registered")
        );
    }
}
