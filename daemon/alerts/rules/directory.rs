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
//!
//! Seeds (role-assignment and registration listings) say what holds, not
//! what changed: they never alert. Each alert's id comes from the record, so
//! a record read twice (a restart, a repeated delivery) alerts once; the
//! escalation pairs a change with the sign-ins kept for the account, so it
//! fires whichever of the two is read first.

use serde::{Deserialize, Serialize};

use super::{AlertDraft, Alerts, rfc3339, who};
use crate::alerts::{Rule, Severity, SignInFacts};
use crate::coverage::State as Coverage;
use crate::decode::directory::{DirCategory, Fact, MethodChangeKind};
use crate::directory::{Applied, Registration};
use crate::sinks::DirectoryEvent;

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
        if e.user_key.is_empty() || e.record.category != DirCategory::AuditLogs {
            return;
        }
        if matches!(e.applied, Applied::NotUser | Applied::Skipped) {
            return;
        }
        let identity = e.record.identity().hex();
        match &e.record.fact {
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
                let methods: Vec<&str> = change.methods.iter().map(|m| m.0.as_str()).collect();
                let methods = if methods.is_empty() { "a method".to_owned() } else { methods.join(", ") };
                let what = match change.change {
                    MethodChangeKind::Registered => format!("registered {methods}"),
                    MethodChangeKind::Deleted => format!("deleted {methods}"),
                    _ => format!("set to {methods}"),
                };
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
