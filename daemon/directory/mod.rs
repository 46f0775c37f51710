//! directory: what the directory records say about each user — the roles
//! they hold (active, PIM-eligible, activated until when) and the
//! authentication methods they have registered — built from audit events and
//! seeded from the tenant's downloads or Graph (docs/labels.md, "Directory
//! records").
//!
//! Audit events carry changes only, and a backlog may come in any order, from
//! several partitions, or twice. So every fact is kept with the event time of
//! the change that set it, and a change applies only when it is newer than
//! what is kept (last writer wins, ties broken the same way every time): the
//! state after a set of records does not depend on their order or on how
//! often each was read. That is what makes a kill -9 and a re-read of the hub
//! end with the same state, without counting identities.
//!
//! Plain data: no I/O, no stage. The pipeline applies records
//! ([`Directory::apply`]); coverage learns who holds a privileged role
//! through [`Directory::holders`]; the API reads [`Directory::user`].

pub mod posture;
pub mod roles;
mod snapshot;
mod views;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::decode::directory::{
    DirCategory, DirectoryRecord, Fact, Holding, Method, MethodChangeKind, Principal, PrincipalKind, Role, RoleChange,
    Strength,
};
pub use posture::Posture;
pub use roles::PrivilegedRoles;
pub use snapshot::{DirectorySnapshot, DirectorySnapshotRef, DirectorySnapshotV5, DirectorySnapshotV5b};
pub use views::{RegistrationState, privileged_because, registration_state};

/// A user as the directory knows them: object id, else lower-cased UPN.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum UserKey {
    Id([u8; 16]),
    Name(String),
}

impl UserKey {
    /// The key of a user named by a key as coverage writes it (object id, else lower-case UPN).
    pub fn of_text(text: &str) -> UserKey {
        match crate::decode::parse_guid(text.trim()) {
            Some(id) => UserKey::Id(id),
            None => UserKey::Name(text.trim().to_lowercase()),
        }
    }

    fn of(principal: &Principal) -> Option<UserKey> {
        let id = principal.id.as_deref().and_then(crate::decode::parse_guid);
        id.map(UserKey::Id)
            .or_else(|| principal.upn.as_deref().map(|u| UserKey::Name(u.trim().to_lowercase())))
            .or_else(|| principal.id.as_deref().map(|i| UserKey::Name(i.trim().to_lowercase())))
    }

    pub fn to_text(&self) -> String {
        match self {
            UserKey::Id(id) => crate::coverage::format_guid(id),
            UserKey::Name(name) => name.clone(),
        }
    }
}

/// Where a fact comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Evidence {
    /// An audit event (AuditLogs).
    Audit,
    /// A seed: Graph or the admin center's download, a state as of its time.
    Seed,
}

impl Evidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::Audit => "audit log",
            Evidence::Seed => "seed",
        }
    }

    fn of(record: &DirectoryRecord) -> Evidence {
        match record.category {
            DirCategory::RegistrationDetails | DirCategory::RoleAssignments => Evidence::Seed,
            _ => Evidence::Audit,
        }
    }
}

/// The order of changes to one fact: event time, then (same instant) a
/// removal after an addition.
type Stamp = (i64, bool);

/// One role of one user: its newest addition and its newest removal, each
/// kept apart (the newest of each wins, whatever order they came in), so
/// that the state does not depend on the order of the records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub role_name: Option<String>,
    added: Option<Added>,
    removed: Option<Removed>,
}

/// An addition: when, since when and until when it is held.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Added {
    at: i64,
    /// `None` when a seed says it is held without saying since when.
    since: Option<i64>,
    /// A time-bound assignment's or a PIM activation's end.
    until: Option<i64>,
    activation: bool,
    evidence: Evidence,
    operation: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Removed {
    at: i64,
    evidence: Evidence,
    operation: String,
}

impl Assignment {
    /// Whether the newest change is an addition (at the same instant a removal wins).
    fn held_now(&self) -> bool {
        match (&self.added, &self.removed) {
            (Some(a), Some(r)) => a.at > r.at,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// Whether it was held at `t` (Unix ms): from the addition's start to
    /// its end, or to the removal when that came last; before a removal of
    /// an addition never seen, since ever.
    pub fn held_at(&self, t: i64) -> bool {
        let from_added = |a: &Added| a.since.is_none_or(|s| s <= t) && a.until.is_none_or(|u| t < u);
        if self.held_now() {
            return self.added.as_ref().is_some_and(from_added);
        }
        match (&self.added, &self.removed) {
            (added, Some(r)) => t < r.at && added.as_ref().is_none_or(from_added),
            _ => false,
        }
    }

    pub fn since(&self) -> Option<i64> {
        self.added.as_ref().and_then(|a| a.since)
    }

    /// When it ends or ended.
    pub fn until(&self) -> Option<i64> {
        let end = self.added.as_ref().and_then(|a| a.until);
        if self.held_now() { end } else { self.removed.as_ref().map(|r| end.map_or(r.at, |e| e.min(r.at))) }
    }

    pub fn activation(&self) -> bool {
        self.added.as_ref().is_some_and(|a| a.activation)
    }

    /// What the newest change was, and where it came from.
    fn last(&self) -> (Evidence, &str) {
        match (&self.added, &self.removed) {
            (Some(a), _) if self.held_now() => (a.evidence, &a.operation),
            (_, Some(r)) => (r.evidence, &r.operation),
            (Some(a), None) => (a.evidence, &a.operation),
            (None, None) => (Evidence::Audit, ""),
        }
    }

    fn merge(&mut self, other: Assignment) {
        self.role_name = self.role_name.take().max(other.role_name);
        self.added = self.added.take().max(other.added);
        self.removed = self.removed.take().max(other.removed);
    }
}

/// One method of one user, as last changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MethodState {
    registered: bool,
    changed: Stamp,
    evidence: Evidence,
}

/// What a registration report said, as of its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Reported {
    mfa_registered: Option<bool>,
    mfa_capable: Option<bool>,
    default_method: Option<String>,
    at: i64,
}

/// Identity Protection's last word on a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskNow {
    pub level: Option<String>,
    pub state: Option<String>,
    pub detail: Option<String>,
    pub at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct DirUser {
    upn: Option<String>,
    display_name: Option<String>,
    /// The event time of the newest record that named the user.
    named_at: i64,
    /// By (role template id or lower-case name, holding).
    roles: BTreeMap<(String, Holding), Assignment>,
    methods: BTreeMap<String, MethodState>,
    reported: Option<Reported>,
    /// The last "registered all required security info".
    all_required: Option<i64>,
    /// The last per-user MFA method set (legacy `StrongAuthenticationMethod`), and when.
    strong_auth: Option<(i64, Vec<String>)>,
    /// The last change to the user's methods of any kind.
    methods_changed: Option<i64>,
    /// Identity Protection's records on the user (RiskyUsers), in time
    /// order, the newest [`RISK_HISTORY`]: the newest is where the user
    /// stands, the run of at-risk records before it says since when.
    risks: Vec<RiskNow>,
    detection: Option<RiskNow>,
    /// The last per-user MFA state an audit record set (`disabled`, `enabled`, `enforced`), and when.
    #[serde(default)]
    per_user_mfa: Option<(i64, String)>,
}

/// What applying a record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// It changed the state.
    Changed,
    /// It was older than what the state holds (or the same): nothing changed.
    Stale,
    /// Not about a user (a service principal's role), or no user named.
    NotUser,
    /// An operation this release does not read.
    Skipped,
}

impl Applied {
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Changed => "applied",
            Applied::Stale => "stale",
            Applied::NotUser => "not_user",
            Applied::Skipped => "skipped",
        }
    }

    pub const ALL: [Applied; 4] = [Applied::Changed, Applied::Stale, Applied::NotUser, Applied::Skipped];
}

/// A user's MFA registration, from the directory alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// An MFA method is registered.
    Registered,
    /// The evidence says no MFA method is registered.
    NotRegistered,
    /// No registration evidence for the user.
    Unknown,
}

impl Registration {
    pub fn as_str(self) -> &'static str {
        match self {
            Registration::Registered => "registered",
            Registration::NotRegistered => "not_registered",
            Registration::Unknown => "unknown",
        }
    }
}

/// Why a user is privileged: one role held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleView {
    pub role: String,
    pub template_id: Option<String>,
    /// `active`, `eligible` or `activated`.
    pub holding: &'static str,
    pub since: Option<String>,
    pub until: Option<String>,
    /// `audit log` or `seed`, and the operation.
    pub evidence: &'static str,
    pub operation: String,
    pub privileged: bool,
}

/// What the directory knows of one user (the API's user detail).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectoryView {
    pub roles: Vec<RoleView>,
    pub registration: Registration,
    pub methods: Vec<String>,
    pub phishing_resistant: bool,
    pub mfa_capable: Option<bool>,
    pub default_method: Option<String>,
    /// When the registration evidence was last changed.
    pub registration_as_of: Option<String>,
    pub methods_changed: Option<String>,
    pub risk: Option<RiskView>,
    /// Per-user MFA as an audit record last set it (`disabled`, `enabled`, `enforced`), and when.
    pub per_user_mfa: Option<PerUserMfaView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PerUserMfaView {
    pub state: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RiskView {
    pub level: Option<String>,
    pub state: Option<String>,
    /// How it ended or why it stands (`userPerformedSecuredPasswordChange`, `adminDismissedAllRiskForUser`, …).
    pub detail: Option<String>,
    pub at: String,
    /// Since when the user has been at risk without a break (an open state only).
    pub since: Option<String>,
    /// High risk, neither remediated nor dismissed.
    pub high_open: bool,
}

/// Counts for the metrics and the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DirectorySummary {
    pub users: usize,
    /// Users holding a privileged role now (active, eligible or activated).
    pub privileged: usize,
    pub registered: usize,
    pub not_registered: usize,
    /// Users the directory knows of with no registration evidence.
    pub unknown: usize,
    pub phishing_resistant: usize,
    /// The newest directory record's time (Unix ms).
    pub newest: Option<i64>,
    /// Users by where their risk stands now: (level, state), as [`risk_level_class`] and [`risk_state_class`] name them.
    pub risky: BTreeMap<(&'static str, &'static str), usize>,
    pub mfa_policies: posture::MfaPolicies,
    /// Security defaults as last switched (None: no record said).
    pub security_defaults: Option<bool>,
}

/// A risk level as a bounded metric label value.
pub fn risk_level_class(level: Option<&str>) -> &'static str {
    match level.map(str::to_ascii_lowercase).as_deref() {
        Some("high") => "high",
        Some("medium") => "medium",
        Some("low") => "low",
        Some("hidden") => "hidden",
        Some("none") | None => "none",
        Some(_) => "other",
    }
}

/// A risk state as a bounded metric label value.
pub fn risk_state_class(state: Option<&str>) -> &'static str {
    match state.map(str::to_ascii_lowercase).as_deref() {
        Some("atrisk") => "at_risk",
        Some("confirmedcompromised") => "confirmed_compromised",
        Some("remediated") => "remediated",
        Some("dismissed") => "dismissed",
        Some("none") | None => "none",
        Some(_) => "other",
    }
}

/// The directory state.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    users: HashMap<UserKey, DirUser>,
    /// Lower-case UPN → the key the user is kept under.
    by_upn: HashMap<String, UserKey>,
    roles: PrivilegedRoles,
    newest: Option<i64>,
    /// The protections (Conditional Access, security defaults) and their timeline.
    posture: Posture,
    /// Some RiskyUsers record was read: sign-ins are worth looking up.
    any_risk: bool,
}

/// At most this many Identity Protection records are kept per user.
const RISK_HISTORY: usize = 16;

/// Keeps a user's risk record in time order (the same record twice once),
/// the oldest dropped past [`RISK_HISTORY`]; says whether it was new.
fn keep_risk(risks: &mut Vec<RiskNow>, new: RiskNow) -> bool {
    let key = |r: &RiskNow| (r.at, r.state.clone(), r.level.clone(), r.detail.clone());
    let place = risks.partition_point(|r| key(r) < key(&new));
    if risks.get(place).is_some_and(|r| *r == new) || (risks.len() >= RISK_HISTORY && place == 0) {
        return false;
    }
    risks.insert(place, new);
    if risks.len() > RISK_HISTORY {
        risks.remove(0);
    }
    true
}

/// Whether a risk state is open (`atRisk`, `confirmedCompromised`) rather
/// than ended (`remediated`, `dismissed`) or none.
pub fn risk_open(state: Option<&str>) -> bool {
    state.is_some_and(|s| s.eq_ignore_ascii_case("atRisk") || s.eq_ignore_ascii_case("confirmedCompromised"))
}

/// Where a user's risk stood at a time: the newest record then, and for an
/// open one when the run of open records it ends began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskAt {
    pub level: Option<String>,
    pub state: Option<String>,
    pub detail: Option<String>,
    /// The record's time (Unix ms).
    pub at: i64,
    /// The first record of the open run (Unix ms), for an open state.
    pub since: Option<i64>,
}

impl RiskAt {
    /// High risk, neither remediated nor dismissed.
    pub fn high_open(&self) -> bool {
        risk_open(self.state.as_deref()) && self.level.as_deref().is_some_and(|l| l.eq_ignore_ascii_case("high"))
    }
}

/// The newest of `risks` at or before `t` (Unix ms), with its open run's start.
fn risk_at(risks: &[RiskNow], t: i64) -> Option<RiskAt> {
    let upto = risks.partition_point(|r| r.at <= t);
    let last = risks[..upto].last()?;
    let open = risk_open(last.state.as_deref());
    let since = open.then(|| {
        risks[..upto].iter().rev().take_while(|r| risk_open(r.state.as_deref())).last().map_or(last.at, |r| r.at)
    });
    Some(RiskAt {
        level: last.level.clone(),
        state: last.state.clone(),
        detail: last.detail.clone(),
        at: last.at,
        since,
    })
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn rfc3339_ms(t: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(t)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

impl Directory {
    pub fn new(roles: PrivilegedRoles) -> Directory {
        Directory { roles, ..Directory::default() }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn newest(&self) -> Option<DateTime<Utc>> {
        self.newest.and_then(DateTime::from_timestamp_millis)
    }

    /// The time the state stands at: its newest record's, else now (nothing read yet).
    pub fn as_of(&self) -> DateTime<Utc> {
        self.newest().unwrap_or_else(Utc::now)
    }

    /// The user kept under `principal`, made if new. A user named by UPN
    /// alone is the one kept under the object id that UPN came with; a UPN
    /// learnt for an id moves what was kept under the UPN to the id.
    fn user_mut(&mut self, principal: &Principal, t: i64) -> Option<&mut DirUser> {
        let upn = principal.upn.as_deref().map(|u| u.trim().to_lowercase()).filter(|u| !u.is_empty());
        let mut key = UserKey::of(principal)?;
        if let (UserKey::Name(_), Some(upn)) = (&key, &upn)
            && let Some(known) = self.by_upn.get(upn)
        {
            key = known.clone();
        }
        if let (UserKey::Id(_), Some(upn)) = (&key, &upn) {
            if let Some(old) = self.users.remove(&UserKey::Name(upn.clone())) {
                self.users.entry(key.clone()).or_default().merge(old);
            }
            self.by_upn.insert(upn.clone(), key.clone());
        }
        let user = self.users.entry(key).or_default();
        user.name(t, principal.upn.as_deref().map(str::trim), principal.display_name.as_deref());
        Some(user)
    }

    /// Applies one record.
    pub fn apply(&mut self, record: &DirectoryRecord) -> Applied {
        let t = ms(record.time);
        self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
        let evidence = Evidence::of(record);
        let operation = record.operation.clone();
        match &record.fact {
            Fact::Other { failed: false, .. } if posture::names_methods_policy(&record.operation) => {
                let kind = posture::ChangeKind::AuthenticationMethodsPolicy;
                if self.posture.apply(record, kind, posture::Detail::Named) { Applied::Changed } else { Applied::Stale }
            }
            Fact::Other { .. } => Applied::Skipped,
            Fact::Policy(change) => {
                let kind = match change.protection {
                    crate::decode::directory::Protection::ConditionalAccess { .. } => {
                        posture::ChangeKind::ConditionalAccess
                    }
                    crate::decode::directory::Protection::SecurityDefaults { .. } => {
                        posture::ChangeKind::SecurityDefaults
                    }
                };
                if self.posture.apply(record, kind, posture::Detail::Policy(change.clone())) {
                    Applied::Changed
                } else {
                    Applied::Stale
                }
            }
            Fact::PerUserMfa(change) => {
                let detail = posture::Detail::PerUserMfa(change.clone());
                let timeline = self.posture.apply(record, posture::ChangeKind::PerUserMfa, detail);
                let Some(user) = self.user_mut(&change.user, t) else { return Applied::NotUser };
                if keep_newer(&mut user.per_user_mfa, (t, change.after.clone()), |s| s.0) || timeline {
                    Applied::Changed
                } else {
                    Applied::Stale
                }
            }
            Fact::Role(change) => {
                if change.principal.kind != PrincipalKind::User {
                    return Applied::NotUser;
                }
                let Some(role_key) = change
                    .role
                    .template_id
                    .clone()
                    .or_else(|| change.role.name.as_ref().map(|n| n.trim().to_lowercase()))
                else {
                    return Applied::Skipped;
                };
                let Some(user) = self.user_mut(&change.principal, t) else { return Applied::NotUser };
                let entry = user.roles.entry((role_key, change.holding)).or_default();
                let name = entry.role_name.take().max(change.role.name.clone());
                let named = name != entry.role_name;
                entry.role_name = name;
                let changed = if change.added {
                    let since = match evidence {
                        // A seed says "held", not since when (unless it has a start).
                        Evidence::Seed => change.since.map(ms),
                        Evidence::Audit => Some(change.since.map_or(t, ms)),
                    };
                    let new = Added {
                        at: t,
                        since,
                        until: change.until.map(ms),
                        activation: change.activation,
                        evidence,
                        operation,
                    };
                    let newer = entry.added.as_ref().is_none_or(|a| *a < new);
                    if newer {
                        entry.added = Some(new);
                    }
                    newer
                } else {
                    let new = Removed { at: t, evidence, operation };
                    let newer = entry.removed.as_ref().is_none_or(|r| *r < new);
                    if newer {
                        entry.removed = Some(new);
                    }
                    newer
                };
                if changed || named { Applied::Changed } else { Applied::Stale }
            }
            Fact::Methods(change) => {
                let Some(user) = self.user_mut(&change.user, t) else { return Applied::NotUser };
                user.methods_changed = Some(user.methods_changed.map_or(t, |c| c.max(t)));
                let mut changed = false;
                match change.change {
                    MethodChangeKind::Registered | MethodChangeKind::Deleted => {
                        let registered = change.change == MethodChangeKind::Registered;
                        for method in &change.methods {
                            changed |= set_method(user, &method.0, registered, (t, !registered), evidence);
                        }
                        if change.methods.is_empty() && registered {
                            // "User registered security info" without a method named: a method is registered.
                            changed |= set_method(user, "unnamedMethod", true, (t, false), evidence);
                        }
                    }
                    MethodChangeKind::AllRequired => {
                        if user.all_required.is_none_or(|a| a < t) {
                            user.all_required = Some(t);
                            changed = true;
                        }
                    }
                    MethodChangeKind::DefaultChanged | MethodChangeKind::Updated => changed = true,
                    MethodChangeKind::Replaced => {
                        let methods = change.methods.iter().map(|m| m.0.clone()).collect();
                        changed = keep_newer(&mut user.strong_auth, (t, methods), |s| s.0);
                    }
                }
                if changed { Applied::Changed } else { Applied::Stale }
            }
            Fact::Registration(details) => {
                let Some(user) = self.user_mut(&details.user, t) else { return Applied::NotUser };
                let report = Reported {
                    mfa_registered: details.mfa_registered,
                    mfa_capable: details.mfa_capable,
                    default_method: details.default_method.clone(),
                    at: t,
                };
                if !keep_newer(&mut user.reported, report, |r| r.at) {
                    return Applied::Stale;
                }
                // The report is the whole set as of its time.
                let listed: Vec<&str> = details.methods.iter().map(|m| m.0.as_str()).collect();
                for name in &listed {
                    set_method(user, name, true, (t, false), Evidence::Seed);
                }
                let unlisted: Vec<String> =
                    user.methods.keys().filter(|m| !listed.contains(&m.as_str())).cloned().collect();
                for name in unlisted {
                    set_method(user, &name, false, (t, true), Evidence::Seed);
                }
                Applied::Changed
            }
            Fact::RiskyUser(risky) => {
                self.any_risk = true;
                let Some(user) = self.user_mut(&risky.user, t) else { return Applied::NotUser };
                let now = RiskNow {
                    level: risky.level.clone(),
                    state: risky.state.clone(),
                    detail: risky.detail.clone(),
                    at: t,
                };
                if keep_risk(&mut user.risks, now) { Applied::Changed } else { Applied::Stale }
            }
            Fact::Risk(detection) => {
                let Some(user) = self.user_mut(&detection.user, t) else { return Applied::NotUser };
                let now = RiskNow {
                    level: detection.level.clone(),
                    state: detection.state.clone(),
                    detail: detection.event_type.clone(),
                    at: t,
                };
                if keep_newer(&mut user.detection, now, |r| r.at) { Applied::Changed } else { Applied::Stale }
            }
        }
    }

    /// What a full listing of `holding` taken at `at` ends: every
    /// assignment of that holding held now from evidence older than `at`
    /// (what the listing named was applied at `at`, so it is not older), as
    /// removal records (category `RoleAssignments`, `operation`, time `at`)
    /// to apply like any other, so the sinks (the history's directory table)
    /// see the removal too. Applying them twice changes nothing; an older
    /// listing after a newer one ends nothing the newer one applied.
    pub fn ended_by_listing(&self, holding: Holding, at: DateTime<Utc>, operation: &str) -> Vec<DirectoryRecord> {
        let t = ms(at);
        let mut out = Vec::new();
        for (key, user) in &self.users {
            for ((role, h), assignment) in &user.roles {
                let before = assignment.added.as_ref().is_some_and(|a| a.at < t);
                if *h != holding || !before || !assignment.held_now() {
                    continue;
                }
                let principal = Principal {
                    id: matches!(key, UserKey::Id(_)).then(|| key.to_text()),
                    upn: user.upn.clone().or_else(|| matches!(key, UserKey::Name(_)).then(|| key.to_text())),
                    display_name: user.display_name.clone(),
                    kind: PrincipalKind::User,
                };
                let change = RoleChange {
                    principal,
                    role: Role {
                        template_id: crate::decode::is_guid(role).then(|| role.clone()),
                        name: assignment
                            .role_name
                            .clone()
                            .or_else(|| (!crate::decode::is_guid(role)).then(|| role.clone())),
                    },
                    holding,
                    added: false,
                    activation: false,
                    until: None,
                    since: None,
                };
                out.push(DirectoryRecord {
                    category: DirCategory::RoleAssignments,
                    shape: crate::decode::Shape::Graph,
                    time: at,
                    id: None,
                    operation: operation.to_owned(),
                    tenant_id: None,
                    initiated_by: None,
                    fact: Fact::Role(change),
                });
            }
        }
        out.sort_by_key(|r| r.identity().0);
        out
    }

    fn find(&self, key: &str, upn: &str) -> Option<&DirUser> {
        if self.users.is_empty() {
            return None;
        }
        if let Some(user) = self.users.get(&UserKey::of_text(key)) {
            return Some(user);
        }
        let upn = upn.trim().to_lowercase();
        if upn.is_empty() {
            return None;
        }
        self.by_upn.get(&upn).and_then(|k| self.users.get(k)).or_else(|| self.users.get(&UserKey::Name(upn)))
    }

    /// The privileged role `user` held at `t` (Unix ms), if any (the first by key).
    fn privileged_role_at<'u>(&self, user: &'u DirUser, t: i64) -> Option<&'u Assignment> {
        user.roles
            .iter()
            .find(|((role, holding), a)| self.roles.counts(role, a.role_name.as_deref(), *holding) && a.held_at(t))
            .map(|(_, a)| a)
    }

    /// The key coverage and the alerts know `principal` by (object id,
    /// else lower-case UPN) and their UPN as last named; None when the
    /// record names nobody.
    pub fn key_of(&self, principal: &Principal) -> Option<(String, String)> {
        let upn = principal.upn.as_deref().map(str::trim).filter(|u| !u.is_empty());
        let mut key = UserKey::of(principal)?;
        if let (UserKey::Name(_), Some(u)) = (&key, upn)
            && let Some(known) = self.by_upn.get(&u.to_lowercase())
        {
            key = known.clone();
        }
        let upn = upn.map(str::to_owned).or_else(|| self.users.get(&key).and_then(|u| u.upn.clone()));
        Some((key.to_text(), upn.unwrap_or_default()))
    }

    /// The privileged role a user holds from `t` on and did not hold just
    /// before (a role given at `t`), by name. The same for every order the
    /// records come in.
    pub fn became_privileged(&self, key: &str, upn: &str, t: DateTime<Utc>) -> Option<String> {
        let user = self.find(key, upn)?;
        let t = ms(t);
        if self.privileged_role_at(user, t - 1).is_some() {
            return None;
        }
        user.roles
            .iter()
            .find(|((role, holding), a)| self.roles.counts(role, a.role_name.as_deref(), *holding) && a.held_at(t))
            .map(|((role, holding), a)| {
                let name = a.role_name.clone().unwrap_or_else(|| roles::name_of(role).unwrap_or(role).to_owned());
                if *holding == Holding::Eligible { format!("{name} (eligible)") } else { name }
            })
    }

    /// The privileged role a user held at `t`, if any.
    pub fn privileged_at(&self, key: &str, upn: &str, t: DateTime<Utc>) -> Option<&Assignment> {
        self.privileged_role_at(self.find(key, upn)?, ms(t))
    }

    /// The protections and their timeline.
    pub fn posture(&self) -> &Posture {
        &self.posture
    }

    /// Whether any RiskyUsers record has been read (else no sign-in needs a risk looked up).
    pub fn any_risk(&self) -> bool {
        self.any_risk
    }

    /// Where the user's risk stood at `t`.
    pub fn risk_at(&self, key: &str, upn: &str, t: DateTime<Utc>) -> Option<RiskAt> {
        risk_at(&self.find(key, upn)?.risks, ms(t))
    }

    /// Every user with a per-user MFA state set by the audit log (key, UPN, state, when), by key.
    pub fn per_user_mfa_users(&self) -> Vec<(String, String, String, i64)> {
        let mut out: Vec<(String, String, String, i64)> = self
            .users
            .iter()
            .filter_map(|(k, u)| {
                let (at, state) = u.per_user_mfa.clone()?;
                Some((k.to_text(), u.upn.clone().unwrap_or_default(), state, at))
            })
            .collect();
        out.sort();
        out
    }

    /// Every user with a risk record (key, UPN as last named, where they stand now), by key.
    pub fn risky_users(&self) -> Vec<(String, String, RiskAt)> {
        let mut out: Vec<(String, String, RiskAt)> = self
            .users
            .iter()
            .filter_map(|(k, u)| Some((k.to_text(), u.upn.clone().unwrap_or_default(), risk_at(&u.risks, i64::MAX)?)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Everyone holding a privileged role at `t` (object ids and lower-case UPNs):
    /// what coverage counts as privileged beside the configured list.
    pub fn holders(&self, t: DateTime<Utc>) -> Vec<String> {
        let t = ms(t);
        let mut out = Vec::new();
        for (key, user) in &self.users {
            if self.privileged_role_at(user, t).is_some() {
                out.push(key.to_text());
                if let (UserKey::Id(_), Some(upn)) = (key, &user.upn) {
                    out.push(upn.to_lowercase());
                }
            }
        }
        out.sort();
        out
    }

    /// The registration of a user, from the directory alone.
    pub fn registration(&self, key: &str, upn: &str) -> Registration {
        self.find(key, upn).map_or(Registration::Unknown, |u| u.registration(&u.registered_methods()))
    }

    /// What the directory knows of one user, as of `now`.
    pub fn user(&self, key: &str, upn: &str, now: DateTime<Utc>) -> Option<DirectoryView> {
        let user = self.find(key, upn)?;
        let now = ms(now);
        let mut roles: Vec<RoleView> = user
            .roles
            .iter()
            .filter(|(_, a)| a.held_at(now))
            .map(|((role, holding), a)| RoleView {
                role: a.role_name.clone().unwrap_or_else(|| roles::name_of(role).unwrap_or(role).to_owned()),
                template_id: crate::decode::is_guid(role).then(|| role.clone()),
                holding: match (holding, a.activation()) {
                    (Holding::Eligible, _) => "eligible",
                    (Holding::Active, true) => "activated",
                    (Holding::Active, false) => "active",
                },
                since: a.since().map(rfc3339_ms),
                until: a.until().map(rfc3339_ms),
                evidence: a.last().0.as_str(),
                operation: a.last().1.to_owned(),
                privileged: self.roles.counts(role, a.role_name.as_deref(), *holding),
            })
            .collect();
        roles.sort_by(|a, b| (!a.privileged, &a.role).cmp(&(!b.privileged, &b.role)));
        let methods = user.registered_methods();
        Some(DirectoryView {
            roles,
            registration: user.registration(&methods),
            phishing_resistant: phishing_resistant(&methods),
            methods,
            mfa_capable: user.reported.as_ref().and_then(|r| r.mfa_capable),
            default_method: user.reported.as_ref().and_then(|r| r.default_method.clone()),
            registration_as_of: user.registration_as_of().map(rfc3339_ms),
            methods_changed: user.methods_changed.map(rfc3339_ms),
            per_user_mfa: user
                .per_user_mfa
                .as_ref()
                .map(|(at, state)| PerUserMfaView { state: state.clone(), at: rfc3339_ms(*at) }),
            risk: risk_at(&user.risks, i64::MAX).map(|r| RiskView {
                high_open: r.high_open(),
                level: r.level,
                state: r.state,
                detail: r.detail,
                at: rfc3339_ms(r.at),
                since: r.since.map(rfc3339_ms),
            }),
        })
    }

    /// Every user the directory knows (key, UPN as last named), with what it knows of them as of `now`.
    pub fn views(&self, now: DateTime<Utc>) -> Vec<(String, String, DirectoryView)> {
        let mut out = Vec::with_capacity(self.users.len());
        for (key, user) in &self.users {
            let (key, upn) = (key.to_text(), user.upn.clone().unwrap_or_default());
            if let Some(view) = self.user(&key, &upn, now) {
                out.push((key, upn, view));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn summary(&self, now: DateTime<Utc>) -> DirectorySummary {
        let t = ms(now);
        let mut s = DirectorySummary { users: self.users.len(), newest: self.newest, ..Default::default() };
        for user in self.users.values() {
            if self.privileged_role_at(user, t).is_some() {
                s.privileged += 1;
            }
            let methods = user.registered_methods();
            match user.registration(&methods) {
                Registration::Registered => s.registered += 1,
                Registration::NotRegistered => s.not_registered += 1,
                Registration::Unknown => s.unknown += 1,
            }
            s.phishing_resistant += usize::from(phishing_resistant(&methods));
            if let Some(r) = risk_at(&user.risks, i64::MAX) {
                let key = (risk_level_class(r.level.as_deref()), risk_state_class(r.state.as_deref()));
                *s.risky.entry(key).or_default() += 1;
            }
        }
        s.mfa_policies = self.posture.mfa_policies();
        s.security_defaults = self.posture.security_defaults().map(|d| d.enabled);
        s
    }

    /// Bytes the state takes, roughly (for the benchmark).
    pub fn heap_bytes(&self) -> usize {
        let per_user = std::mem::size_of::<(UserKey, DirUser)>() + 16;
        let mut bytes =
            self.users.len() * per_user + self.by_upn.len() * (std::mem::size_of::<(String, UserKey)>() + 40);
        for (key, user) in &self.users {
            if let UserKey::Name(n) = key {
                bytes += n.capacity();
            }
            bytes +=
                user.upn.as_ref().map_or(0, String::capacity) + user.display_name.as_ref().map_or(0, String::capacity);
            bytes += user.roles.len() * (std::mem::size_of::<((String, Holding), Assignment)>() + 80);
            bytes += user.methods.len() * (std::mem::size_of::<(String, MethodState)>() + 40);
        }
        bytes
    }
}

/// Whether any of these (registered) methods is phishing-resistant.
fn phishing_resistant(methods: &[String]) -> bool {
    methods.iter().any(|m| Method::new(m).strength() == Strength::PhishingResistant)
}

/// Keeps `new` in `slot` when it is newer (by `at`) than what is there; says whether it did.
fn keep_newer<T>(slot: &mut Option<T>, new: T, at: impl Fn(&T) -> i64) -> bool {
    let newer = slot.as_ref().is_none_or(|old| at(old) < at(&new));
    if newer {
        *slot = Some(new);
    }
    newer
}

fn set_method(user: &mut DirUser, name: &str, registered: bool, stamp: Stamp, evidence: Evidence) -> bool {
    match user.methods.get_mut(name) {
        Some(m) if (m.changed, m.evidence) >= (stamp, evidence) => false,
        Some(m) => {
            *m = MethodState { registered, changed: stamp, evidence };
            true
        }
        None => {
            user.methods.insert(name.to_owned(), MethodState { registered, changed: stamp, evidence });
            true
        }
    }
}

impl DirUser {
    /// Folds what was kept under a UPN into the user kept under the object id.
    fn merge(&mut self, other: DirUser) {
        for (k, a) in other.roles {
            self.roles.entry(k).or_default().merge(a);
        }
        for (name, m) in other.methods {
            set_method(self, &name, m.registered, m.changed, m.evidence);
        }
        if let Some(r) = other.reported {
            keep_newer(&mut self.reported, r, |r| r.at);
        }
        for r in other.risks {
            keep_risk(&mut self.risks, r);
        }
        if let Some(m) = other.per_user_mfa {
            keep_newer(&mut self.per_user_mfa, m, |m| m.0);
        }
        if let Some(r) = other.detection {
            keep_newer(&mut self.detection, r, |r| r.at);
        }
        if let Some(s) = other.strong_auth {
            keep_newer(&mut self.strong_auth, s, |s| s.0);
        }
        self.all_required = self.all_required.max(other.all_required);
        self.methods_changed = self.methods_changed.max(other.methods_changed);
        self.name(other.named_at, other.upn.as_deref(), other.display_name.as_deref());
    }

    /// The names a record of time `t` gives: the newest record's win, an
    /// older one only fills what is missing, at the same instant the greater
    /// (so that the order records come in does not matter).
    fn name(&mut self, t: i64, upn: Option<&str>, display_name: Option<&str>) {
        let set = |mine: &mut Option<String>, theirs: Option<&str>, newer: bool, same: bool| {
            let Some(theirs) = theirs else { return };
            let replace = newer || mine.is_none() || (same && mine.as_deref() < Some(theirs));
            if replace {
                *mine = Some(theirs.to_owned());
            }
        };
        let (newer, same) = (t > self.named_at, t == self.named_at);
        set(&mut self.upn, upn, newer, same);
        set(&mut self.display_name, display_name, newer, same);
        self.named_at = self.named_at.max(t);
    }

    fn registered_methods(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.methods.iter().filter(|(_, m)| m.registered).map(|(name, _)| name.clone()).collect();
        if let Some((_, legacy)) = &self.strong_auth {
            out.extend(legacy.iter().cloned());
        }
        out.sort();
        out.dedup();
        out
    }

    fn registration_as_of(&self) -> Option<i64> {
        let methods = self.methods.values().map(|m| m.changed.0).max();
        [methods, self.reported.as_ref().map(|r| r.at), self.all_required, self.strong_auth.as_ref().map(|s| s.0)]
            .into_iter()
            .flatten()
            .max()
    }

    /// The registration, given the methods registered now (`registered_methods`).
    fn registration(&self, methods: &[String]) -> Registration {
        let Some(as_of) = self.registration_as_of() else { return Registration::Unknown };
        if methods.iter().any(|m| Method::new(m).strength() >= Strength::Mfa) {
            return Registration::Registered;
        }
        // No MFA method listed: a report or an "all required" newer than every
        // deletion still says registered (it may not name the methods).
        let last_deletion =
            self.methods.values().filter(|m| !m.registered && m.evidence == Evidence::Audit).map(|m| m.changed.0).max();
        let said_yes =
            [self.reported.as_ref().filter(|r| r.mfa_registered == Some(true)).map(|r| r.at), self.all_required]
                .into_iter()
                .flatten()
                .max();
        match said_yes {
            Some(yes) if last_deletion.is_none_or(|d| d < yes) => Registration::Registered,
            _ if as_of > 0 => Registration::NotRegistered,
            _ => Registration::Unknown,
        }
    }
}

/// The directory state and its lock, shared by the pipeline, the API and the checkpoint.
#[derive(Debug, Default)]
pub struct Handle {
    state: RwLock<Directory>,
}

impl Handle {
    pub fn new(directory: Directory) -> Arc<Handle> {
        Arc::new(Handle { state: RwLock::new(directory) })
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Directory> {
        crate::locks::read(&self.state)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Directory> {
        crate::locks::write(&self.state)
    }
}

#[cfg(test)]
mod tests;
