//! posture: the tenant's protections as the audit log changed them — the
//! Conditional Access policies as last written (by id, last writer by event
//! time), security defaults as last switched, and a timeline of every
//! change (Conditional Access, security defaults, per-user MFA, the
//! authentication-methods policy) with who made it and both sides
//! (docs/labels.md §8, "Protections").
//!
//! Like the rest of the directory, the state after a set of records does
//! not depend on their order or on repeats: the current policy is the one of
//! the newest record (ties by record identity), and the timeline is kept in
//! event-time order, one entry per record identity, the oldest dropped past
//! [`TIMELINE`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decode::directory::{
    CaPolicy, DirectoryRecord, PerUserMfa, PolicyChange, PolicyOp, PolicyState, Protection,
};

/// At most this many changes are kept in the timeline (the oldest go first).
pub const TIMELINE: usize = 2_000;

/// One Conditional Access policy as the newest record about it left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyNow {
    /// The record's event time (Unix ms) and identity: the newest wins.
    pub at: i64,
    pub identity: String,
    pub actor: Option<String>,
    /// The policy after the change; for a deleted one, the last side known.
    pub policy: CaPolicy,
    pub deleted: bool,
}

/// Security defaults as the newest record switched them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultsNow {
    pub at: i64,
    pub identity: String,
    pub enabled: bool,
    pub actor: Option<String>,
}

/// What kind of protection a timeline entry changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    ConditionalAccess,
    SecurityDefaults,
    PerUserMfa,
    AuthenticationMethodsPolicy,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::ConditionalAccess => "conditional_access",
            ChangeKind::SecurityDefaults => "security_defaults",
            ChangeKind::PerUserMfa => "per_user_mfa",
            ChangeKind::AuthenticationMethodsPolicy => "authentication_methods_policy",
        }
    }
}

/// What one record changed, with both sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detail {
    Policy(PolicyChange),
    PerUserMfa(PerUserMfa),
    /// A change the record names but this release does not read the sides of.
    Named,
}

/// One change in the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Event time (Unix ms).
    pub at: i64,
    pub identity: String,
    pub kind: ChangeKind,
    /// The audit activity ("Update conditional access policy").
    pub operation: String,
    /// Who made it (`initiatedBy`).
    pub actor: Option<String>,
    pub detail: Detail,
}

impl Change {
    /// The policy's name (or id) for a Conditional Access change, the protection's otherwise.
    pub fn subject(&self) -> String {
        match &self.detail {
            Detail::Policy(p) => p.policy_name.clone().or_else(|| p.policy_id.clone()).unwrap_or_default(),
            Detail::PerUserMfa(m) => m.user.upn.clone().or_else(|| m.user.id.clone()).unwrap_or_default(),
            Detail::Named => self.operation.clone(),
        }
    }

    /// What changed, in words, one item per difference: "state enabled → report_only",
    /// "excluded group:…", "MFA no longer required".
    pub fn what(&self) -> Vec<String> {
        match &self.detail {
            Detail::Policy(p) => match &p.protection {
                Protection::ConditionalAccess { op, before, after } => {
                    policy_diff(*op, before.as_deref(), after.as_deref())
                }
                Protection::SecurityDefaults { enabled, .. } => {
                    vec![if *enabled { "security defaults enabled" } else { "security defaults disabled" }.to_owned()]
                }
            },
            Detail::PerUserMfa(m) => {
                let user = m.user.upn.as_deref().or(m.user.id.as_deref()).unwrap_or("a user");
                vec![match &m.before {
                    Some(before) => format!("per-user MFA of {user} {before} → {}", m.after),
                    None => format!("per-user MFA of {user} {}", m.after),
                }]
            }
            Detail::Named => vec![self.operation.clone()],
        }
    }

    /// Whether the change weakens MFA enforcement: an MFA-requiring policy
    /// no longer enforced (deleted, disabled, report-only, MFA grant gone)
    /// or excluding more; security defaults switched off; per-user MFA
    /// disabled.
    pub fn weakens(&self) -> bool {
        match &self.detail {
            Detail::Policy(p) => match &p.protection {
                Protection::ConditionalAccess { before, after, .. } => {
                    weakened(before.as_deref(), after.as_deref()).is_some()
                }
                Protection::SecurityDefaults { enabled, .. } => !enabled,
            },
            Detail::PerUserMfa(m) => m.after == "disabled",
            Detail::Named => false,
        }
    }
}

/// How an MFA-requiring Conditional Access policy was weakened, in words,
/// from the two sides of one change; None when it was not (it did not
/// require MFA while enforced before, or still does for no fewer people).
pub fn weakened(before: Option<&CaPolicy>, after: Option<&CaPolicy>) -> Option<String> {
    let before = before.filter(|b| b.requires_mfa() && b.enforced())?;
    let Some(after) = after else { return Some("deleted".into()) };
    if !after.requires_mfa() {
        return Some("MFA no longer required".into());
    }
    match after.state {
        Some(PolicyState::ReportOnly) => return Some("switched to report-only".into()),
        Some(PolicyState::Enabled) => {}
        Some(PolicyState::Disabled) => return Some("disabled".into()),
        Some(PolicyState::Other) | None => return Some("no longer enabled".into()),
    }
    let old = before.exclusions();
    let added: Vec<String> = after.exclusions().into_iter().filter(|e| !old.contains(e)).collect();
    if !added.is_empty() {
        return Some(format!("excluded {}", added.join(", ")));
    }
    None
}

/// The differences between two sides of a Conditional Access policy.
fn policy_diff(op: PolicyOp, before: Option<&CaPolicy>, after: Option<&CaPolicy>) -> Vec<String> {
    let state = |p: &CaPolicy| p.state.map_or("?", PolicyState::as_str);
    let mut out = Vec::new();
    match (op, before, after) {
        (PolicyOp::Deleted, _, _) => out.push("deleted".to_owned()),
        (PolicyOp::Added, _, Some(a)) => {
            out.push(format!("added, {}{}", state(a), if a.requires_mfa() { ", requires MFA" } else { "" }))
        }
        (_, Some(b), Some(a)) => {
            if b.state != a.state {
                out.push(format!("state {} → {}", state(b), state(a)));
            }
            if b.requires_mfa() != a.requires_mfa() {
                out.push(if a.requires_mfa() { "MFA now required" } else { "MFA no longer required" }.to_owned());
            }
            let (old, new) = (b.exclusions(), a.exclusions());
            let added: Vec<&String> = new.iter().filter(|e| !old.contains(e)).collect();
            let removed: Vec<&String> = old.iter().filter(|e| !new.contains(e)).collect();
            if !added.is_empty() {
                out.push(format!("excluded {}", join(&added)));
            }
            if !removed.is_empty() {
                out.push(format!("no longer excluded {}", join(&removed)));
            }
            if b.grant != a.grant || b.authentication_strength != a.authentication_strength {
                out.push(format!("grant {} → {}", grant(b), grant(a)));
            }
            if (&b.include_users, &b.include_groups, &b.include_roles)
                != (&a.include_users, &a.include_groups, &a.include_roles)
            {
                out.push("who it includes changed".to_owned());
            }
        }
        (_, _, Some(a)) => out.push(format!("now {}", state(a))),
        (_, _, None) => {}
    }
    if out.is_empty() {
        out.push("no change to state, grant or exclusions".to_owned());
    }
    out
}

fn join(items: &[&String]) -> String {
    items.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

/// "mfa+compliantdevice", or the authentication strength's name.
pub fn grant(p: &CaPolicy) -> String {
    let mut parts = p.grant.clone();
    if let Some(s) = &p.authentication_strength {
        parts.push(format!("strength {s}"));
    }
    if parts.is_empty() { "none".to_owned() } else { parts.join("+") }
}

/// Whether an audit activity is a change to the authentication-methods
/// policy ("Authentication Methods Policy Update", "Update authentication
/// methods policy"), whose sides this release does not read.
pub fn names_methods_policy(operation: &str) -> bool {
    operation.to_ascii_lowercase().contains("authentication methods policy")
}

/// The protections and their timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Posture {
    /// By policy id (lower case), else by lower-case name.
    policies: BTreeMap<String, PolicyNow>,
    security_defaults: Option<DefaultsNow>,
    /// In (event time, identity) order.
    timeline: Vec<Change>,
}

/// MFA-requiring Conditional Access policies by state, as the posture has them now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MfaPolicies {
    pub enabled: usize,
    pub report_only: usize,
    pub disabled: usize,
}

impl Posture {
    /// Applies a record that changed a protection; false when it was known already.
    pub fn apply(&mut self, record: &DirectoryRecord, kind: ChangeKind, detail: Detail) -> bool {
        let at = record.time.timestamp_millis();
        let identity = record.identity().hex();
        let newer = |old_at: i64, old_id: &str| (old_at, old_id) < (at, identity.as_str());
        let mut changed = false;
        if let Detail::Policy(change) = &detail {
            match &change.protection {
                Protection::ConditionalAccess { op, before, after } => {
                    let side = after.as_deref().or(before.as_deref());
                    let key =
                        change.policy_id.clone().or_else(|| change.policy_name.as_ref().map(|n| n.to_lowercase()));
                    if let (Some(key), Some(side)) = (key, side) {
                        let mut policy = side.clone();
                        policy.id = policy.id.or_else(|| change.policy_id.clone());
                        policy.name = policy.name.or_else(|| change.policy_name.clone());
                        let now = PolicyNow {
                            at,
                            identity: identity.clone(),
                            actor: record.initiated_by.clone(),
                            policy,
                            deleted: *op == PolicyOp::Deleted,
                        };
                        match self.policies.get(&key) {
                            Some(old) if !newer(old.at, &old.identity) => {}
                            _ => {
                                self.policies.insert(key, now);
                                changed = true;
                            }
                        }
                    }
                }
                Protection::SecurityDefaults { enabled, .. } => {
                    if self.security_defaults.as_ref().is_none_or(|d| newer(d.at, &d.identity)) {
                        self.security_defaults = Some(DefaultsNow {
                            at,
                            identity: identity.clone(),
                            enabled: *enabled,
                            actor: record.initiated_by.clone(),
                        });
                        changed = true;
                    }
                }
            }
        }
        let place = self.timeline.partition_point(|c| (c.at, c.identity.as_str()) < (at, identity.as_str()));
        let known = self.timeline.get(place).is_some_and(|c| c.identity == identity && c.at == at);
        let dropped = self.timeline.len() >= TIMELINE && place == 0;
        if !known && !dropped {
            let change = Change {
                at,
                identity,
                kind,
                operation: record.operation.clone(),
                actor: record.initiated_by.clone(),
                detail,
            };
            self.timeline.insert(place, change);
            if self.timeline.len() > TIMELINE {
                self.timeline.remove(0);
            }
            changed = true;
        }
        changed
    }

    /// The Conditional Access policies as last written, deleted ones included.
    pub fn policies(&self) -> impl Iterator<Item = &PolicyNow> {
        self.policies.values()
    }

    pub fn security_defaults(&self) -> Option<&DefaultsNow> {
        self.security_defaults.as_ref()
    }

    /// Newest last.
    pub fn timeline(&self) -> &[Change] {
        &self.timeline
    }

    /// MFA-requiring policies (not deleted) by their state now.
    pub fn mfa_policies(&self) -> MfaPolicies {
        let mut out = MfaPolicies::default();
        for p in self.policies.values().filter(|p| !p.deleted && p.policy.requires_mfa()) {
            match p.policy.state {
                Some(PolicyState::Enabled) => out.enabled += 1,
                Some(PolicyState::ReportOnly) => out.report_only += 1,
                _ => out.disabled += 1,
            }
        }
        out
    }

    /// The MFA-requiring policies enforced at `t` (Unix ms), by name: each
    /// policy's side after its newest change at or before `t` that the
    /// timeline holds, else its current side when that is not newer than `t`.
    pub fn mfa_enforced_at(&self, t: i64) -> Vec<String> {
        let mut sides: BTreeMap<String, Option<&CaPolicy>> = BTreeMap::new();
        for c in self.timeline.iter().take_while(|c| c.at <= t) {
            if let Detail::Policy(PolicyChange {
                policy_id,
                policy_name,
                protection: Protection::ConditionalAccess { after, .. },
            }) = &c.detail
                && let Some(key) = policy_id.clone().or_else(|| policy_name.as_ref().map(|n| n.to_lowercase()))
            {
                sides.insert(key, after.as_deref());
            }
        }
        // The newest record of each policy, when it is not newer than `t`.
        for (key, now) in self.policies.iter().filter(|(_, now)| now.at <= t) {
            sides.insert(key.clone(), (!now.deleted).then_some(&now.policy));
        }
        let mut out: Vec<String> = sides
            .iter()
            .filter_map(|(key, side)| {
                let p = (*side)?;
                (p.requires_mfa() && p.enforced()).then(|| p.name.clone().unwrap_or_else(|| key.clone()))
            })
            .collect();
        out.sort();
        out
    }

    pub fn is_empty(&self) -> bool {
        self.timeline.is_empty() && self.policies.is_empty() && self.security_defaults.is_none()
    }
}
