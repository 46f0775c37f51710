//! alerts: the sink that turns sign-ins into alerts that name the user.
//!
//! Metrics must never carry a user, so the alerts a SOC acts on come from
//! here, one per event, with the identity in them (README "Alerts"). The
//! rules run on the pipeline thread, per sign-in, in event time; what they
//! make goes to an outbox that [`deliver`] drains on its own thread to
//! Alertmanager, a webhook and/or a file, with retries, so sending never
//! blocks ingestion. Recent alerts are kept for `/api/v1/alerts`.
//!
//! What survives a crash: the outbox and the rules' state (which alerts were
//! made in which cooldown window, the MFA prompts of the last minutes, the
//! users already alerted as registration overdue) are this sink's part of
//! the checkpoint snapshot. Sign-ins after the last checkpoint are read again
//! after a restart and make the same alerts again, with the same ids (an id
//! is a hash of rule, user and record id, or of the cooldown window), so a
//! receiver that de-duplicates sees each once: at-least-once, never lost.
//!
//! Order: rules look at event time only, and a cooldown window is a fixed
//! slice of event time (`floor(time / cooldown)`), so the same input in
//! another partition interleaving makes the same alerts. Only staleness
//! (event time against now, by the brokers' clock: see [`crate::clock`]) and
//! the per-minute rate limit (the host's clock) look at a clock.
//!
//! The rate limit keeps what it holds back: each rule's window (the minute,
//! what it sent, what it held back) is part of the snapshot, and when the
//! minute is over the held-back alerts go out as one summary that names
//! them, with an id made from the first of them (not from the minute), so a
//! restart — a stop inside the minute, a kill -9 — neither loses it nor sends
//! it under a second id.

pub mod deliver;
mod rules;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use rules::Alerts;

/// The sink's name: the key of its state in the snapshot.
pub const NAME: &str = "alerts";

/// The alert rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    LegacyAuthSuccess,
    PrivilegedSingleFactor,
    RiskyWithoutMfa,
    RiskyWithMfa,
    BreakGlassSignin,
    MfaFatigue,
    RegistrationOverdue,
    LegacyAuthAttempt,
    // New rules go last: the rate-limit windows in the snapshot name rules by place.
    PrivilegedNotCovered,
    PrivilegedMethodsChanged,
    BreakGlassRoleChange,
    PerUserMfaDisabled,
    MfaPolicyWeakened,
    MfaEnforcementLost,
    BreakGlassProtectionChange,
    RiskyUserUnremediated,
    MfaDenialStorm,
    RopcSignin,
}

impl Rule {
    pub const ALL: [Rule; 18] = [
        Rule::LegacyAuthSuccess,
        Rule::PrivilegedSingleFactor,
        Rule::RiskyWithoutMfa,
        Rule::RiskyWithMfa,
        Rule::BreakGlassSignin,
        Rule::MfaFatigue,
        Rule::RegistrationOverdue,
        Rule::LegacyAuthAttempt,
        Rule::PrivilegedNotCovered,
        Rule::PrivilegedMethodsChanged,
        Rule::BreakGlassRoleChange,
        Rule::PerUserMfaDisabled,
        Rule::MfaPolicyWeakened,
        Rule::MfaEnforcementLost,
        Rule::BreakGlassProtectionChange,
        Rule::RiskyUserUnremediated,
        Rule::MfaDenialStorm,
        Rule::RopcSignin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::LegacyAuthSuccess => "legacy_auth_success",
            Rule::PrivilegedSingleFactor => "privileged_single_factor",
            Rule::RiskyWithoutMfa => "risky_without_mfa",
            Rule::RiskyWithMfa => "risky_with_mfa",
            Rule::BreakGlassSignin => "break_glass_signin",
            Rule::MfaFatigue => "mfa_fatigue",
            Rule::RegistrationOverdue => "registration_overdue",
            Rule::LegacyAuthAttempt => "legacy_auth_attempt",
            Rule::PrivilegedNotCovered => "privileged_not_covered",
            Rule::PrivilegedMethodsChanged => "privileged_methods_changed",
            Rule::BreakGlassRoleChange => "break_glass_role_change",
            Rule::PerUserMfaDisabled => "per_user_mfa_disabled",
            Rule::MfaPolicyWeakened => "mfa_policy_weakened",
            Rule::MfaEnforcementLost => "mfa_enforcement_lost",
            Rule::BreakGlassProtectionChange => "break_glass_protection_change",
            Rule::RiskyUserUnremediated => "risky_user_unremediated",
            Rule::MfaDenialStorm => "mfa_denial_storm",
            Rule::RopcSignin => "ropc_signin",
        }
    }

    /// The Alertmanager `alertname` (distinct from the Prometheus rules'
    /// tenant-wide alerts, which count and never name anyone).
    pub fn alertname(self) -> &'static str {
        match self {
            Rule::LegacyAuthSuccess => "LegacyAuthSignIn",
            Rule::PrivilegedSingleFactor => "PrivilegedSingleFactorSignIn",
            Rule::RiskyWithoutMfa => "RiskySignInNoMfa",
            Rule::RiskyWithMfa => "RiskySignInWithMfa",
            Rule::BreakGlassSignin => "BreakGlassSignIn",
            Rule::MfaFatigue => "MfaFatigue",
            Rule::RegistrationOverdue => "MfaRegistrationOverdueUser",
            Rule::LegacyAuthAttempt => "LegacyAuthSpray",
            Rule::PrivilegedNotCovered => "PrivilegedNotCovered",
            Rule::PrivilegedMethodsChanged => "PrivilegedMethodsChanged",
            Rule::BreakGlassRoleChange => "BreakGlassRoleChange",
            Rule::PerUserMfaDisabled => "PerUserMfaDisabled",
            Rule::MfaPolicyWeakened => "MfaPolicyWeakened",
            Rule::MfaEnforcementLost => "MfaEnforcementLost",
            Rule::BreakGlassProtectionChange => "BreakGlassProtectionChange",
            Rule::RiskyUserUnremediated => "RiskyUserUnremediated",
            Rule::MfaDenialStorm => "MfaDenialStorm",
            Rule::RopcSignin => "RopcSignIn",
        }
    }

    pub fn parse(text: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The sign-in an alert is about, as a SOC analyst needs it: who, from
/// where, to what, and the record and correlation ids that lead into
/// Entra's own sign-in log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SignInFacts {
    /// Event time, RFC 3339.
    pub time: String,
    pub category: Option<String>,
    pub tenant_id: Option<String>,
    pub user_key: Option<String>,
    pub upn: Option<String>,
    pub display_name: Option<String>,
    pub user_type: Option<String>,
    pub privileged: bool,
    pub app: Option<String>,
    pub resource: Option<String>,
    pub client_app: Option<String>,
    pub user_agent: Option<String>,
    pub ropc: bool,
    pub ip: Option<String>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub outcome_code: Option<i64>,
    pub record_id: Option<String>,
    pub correlation_id: Option<String>,
    /// The sign-in's labels (mfa_satisfied, single_factor, legacy_auth, ...).
    pub labels: Vec<String>,
}

/// One alert. `id` is stable: the same rule, user and sign-in (or cooldown
/// window) always give the same id, in any run, on any host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    pub rule: Rule,
    pub severity: Severity,
    /// One line for a human: "Legacy sign-in by ann@contoso.com with IMAP4 from 203.0.113.7 (NL) succeeded without MFA".
    pub summary: String,
    /// Sign-ins folded into this alert (cooldown repeats, spray attempts).
    pub count: u64,
    /// For mfa_fatigue: the prompts denied or unanswered in the burst.
    pub mfa_failures: Option<u32>,
    /// For legacy_auth_attempt: some of the accounts tried; for a rate-limit
    /// summary, the users of the alerts it holds back.
    pub users: Vec<String>,
    /// For a rate-limit summary: the users of the alerts it stands for, each
    /// with the first of their alerts held back (the first [`HELD_NAMED`]
    /// users; `count` says how many alerts in all).
    pub held_back: Vec<HeldBack>,
    /// When mfawatch made it, RFC 3339.
    pub created_at: String,
    pub sign_in: SignInFacts,
    /// For an alert on a change (a protection weakened, a break-glass
    /// account's exclusion): who made it, to what, and both sides.
    pub change: Option<Box<ChangeFacts>>,
}

/// How an mfa_fatigue alert names the mfa_denial_storm alert made for the
/// same prompts, in its summary: "… (after denial storm alert <id>)".
pub const AFTER_STORM: &str = " (after denial storm alert ";

impl Alert {
    /// For an mfa_fatigue alert after a denial storm: the storm alert's id,
    /// as its summary names it ([`AFTER_STORM`]; not a field of its own, so
    /// the outbox's format stays as it is).
    pub fn storm_alert_id(&self) -> Option<&str> {
        if self.rule != Rule::MfaFatigue {
            return None;
        }
        let (_, rest) = self.summary.rsplit_once(AFTER_STORM)?;
        let id = rest.strip_suffix(')')?;
        (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
    }
}

/// A change an alert is about, as the audit record tells it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangeFacts {
    /// Who made the change (`initiatedBy`: a UPN, else an app's name).
    pub actor: Option<String>,
    /// What was changed: a policy's name, a user's UPN.
    pub target: String,
    /// A Conditional Access policy's object id.
    pub policy_id: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    /// The audit activity ("Update conditional access policy").
    pub operation: String,
}

/// An alert the rate limit held back, as its summary names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldBack {
    pub id: String,
    pub user_key: Option<String>,
    pub upn: Option<String>,
    /// Event time, RFC 3339.
    pub time: String,
}

/// A rate-limit summary names at most this many users of the alerts it holds back.
pub const HELD_NAMED: usize = 100;

/// The alerts made since start, newest first, for `/api/v1/alerts`.
///
/// Lock discipline: one mutex, held only to push, bump or copy a page out;
/// never while anything else is held.
#[derive(Default)]
pub struct Recent(Mutex<VecDeque<Alert>>);

/// How many recent alerts the API keeps.
const RECENT: usize = 2_000;

impl Recent {
    pub fn push(&self, alert: Alert) {
        let mut recent = crate::locks::lock(&self.0);
        recent.push_front(alert);
        recent.truncate(RECENT);
    }

    /// A repeat inside a cooldown: the alert already made counts it.
    pub fn bump(&self, id: &str) {
        let mut recent = crate::locks::lock(&self.0);
        if let Some(a) = recent.iter_mut().find(|a| a.id == id) {
            a.count += 1;
        }
    }

    /// Newest first: (how many match, the page).
    pub fn list(&self, rule: Option<Rule>, user: Option<&str>, limit: usize) -> (usize, Vec<Alert>) {
        let recent = crate::locks::lock(&self.0);
        let user = user.map(str::to_lowercase);
        let matches = |a: &&Alert| {
            rule.is_none_or(|r| a.rule == r)
                && user.as_deref().is_none_or(|u| {
                    a.sign_in.user_key.as_deref().is_some_and(|k| k.eq_ignore_ascii_case(u))
                        || a.sign_in.upn.as_deref().is_some_and(|p| p.to_lowercase() == u)
                })
        };
        let total = recent.iter().filter(matches).count();
        (total, recent.iter().filter(matches).take(limit).cloned().collect())
    }
}

/// What the alert sink shares with the delivery thread.
pub type SharedOutbox = Arc<deliver::OutboxCell>;
