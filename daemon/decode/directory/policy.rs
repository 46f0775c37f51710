//! The protections an audit record changes: Conditional Access policies
//! (added, updated, deleted; their state, grant controls and who they
//! include and exclude), security defaults switched on or off, and per-user
//! MFA disabled for a user (docs/labels.md, "Directory records": protections).
//!
//! A Conditional Access change carries the whole policy before and after as
//! JSON inside the `ConditionalAccessPolicy` modified property (`oldValue`
//! empty when added, `newValue` empty when deleted); both sides are kept, so
//! what changed is read from the record itself.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Principal, flag, get, modified, principal_from, text};

/// A Conditional Access policy's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyState {
    Enabled,
    /// `enabledForReportingButNotEnforced`: evaluated and logged, never enforced.
    ReportOnly,
    Disabled,
    /// A state this release does not know (kept as not enforcing).
    Other,
}

impl PolicyState {
    fn of(text: &str) -> PolicyState {
        match text.trim().to_ascii_lowercase().as_str() {
            "enabled" | "on" => PolicyState::Enabled,
            "enabledforreportingbutnotenforced" | "reportonly" | "report-only" => PolicyState::ReportOnly,
            "disabled" | "off" => PolicyState::Disabled,
            _ => PolicyState::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyState::Enabled => "enabled",
            PolicyState::ReportOnly => "report_only",
            PolicyState::Disabled => "disabled",
            PolicyState::Other => "other",
        }
    }
}

/// A Conditional Access policy as one side of a change shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaPolicy {
    pub id: Option<String>,
    pub name: Option<String>,
    pub state: Option<PolicyState>,
    /// `grantControls.builtInControls`, lower case (`mfa`, `block`, `compliantdevice`, …).
    pub grant: Vec<String>,
    /// The authentication strength required, by name (or id).
    pub authentication_strength: Option<String>,
    pub include_users: Vec<String>,
    pub exclude_users: Vec<String>,
    pub include_groups: Vec<String>,
    pub exclude_groups: Vec<String>,
    pub include_roles: Vec<String>,
    pub exclude_roles: Vec<String>,
    pub include_applications: Vec<String>,
    pub exclude_applications: Vec<String>,
}

impl CaPolicy {
    /// Read from a policy object (Graph's `conditionalAccessPolicy` names).
    pub fn of(value: &Value) -> Option<CaPolicy> {
        if !value.is_object() {
            return None;
        }
        let list = |path: &[&str]| -> Vec<String> {
            let mut v = Some(value);
            for key in path {
                v = v.and_then(|x| get(x, key));
            }
            let mut out: Vec<String> = v
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(text).map(|s| s.to_lowercase()).collect())
                .unwrap_or_default();
            out.sort();
            out.dedup();
            out
        };
        let grant = get(value, "grantControls");
        let strength = grant.and_then(|g| get(g, "authenticationStrength")).and_then(|s| {
            get(s, "displayName").and_then(text).or_else(|| get(s, "id").and_then(text)).or_else(|| text(s))
        });
        Some(CaPolicy {
            id: get(value, "id").and_then(text).map(|id| id.to_lowercase()),
            name: get(value, "displayName").and_then(text),
            state: get(value, "state").and_then(text).map(|s| PolicyState::of(&s)),
            grant: list(&["grantControls", "builtInControls"]),
            authentication_strength: strength,
            include_users: list(&["conditions", "users", "includeUsers"]),
            exclude_users: list(&["conditions", "users", "excludeUsers"]),
            include_groups: list(&["conditions", "users", "includeGroups"]),
            exclude_groups: list(&["conditions", "users", "excludeGroups"]),
            include_roles: list(&["conditions", "users", "includeRoles"]),
            exclude_roles: list(&["conditions", "users", "excludeRoles"]),
            include_applications: list(&["conditions", "applications", "includeApplications"]),
            exclude_applications: list(&["conditions", "applications", "excludeApplications"]),
        })
    }

    /// Whether it asks for MFA when it applies: the `mfa` grant control or an
    /// authentication strength (which always includes a second factor).
    pub fn requires_mfa(&self) -> bool {
        self.grant.iter().any(|g| g == "mfa") || self.authentication_strength.is_some()
    }

    /// Whether it is enforced (enabled); report-only and disabled are not.
    pub fn enforced(&self) -> bool {
        self.state == Some(PolicyState::Enabled)
    }

    /// Users, groups and roles it excludes, as `user:ID`, `group:ID`, `role:ID`.
    pub fn exclusions(&self) -> Vec<String> {
        let tagged = |tag: &str, ids: &[String]| ids.iter().map(|i| format!("{tag}:{i}")).collect::<Vec<_>>();
        [
            tagged("user", &self.exclude_users),
            tagged("group", &self.exclude_groups),
            tagged("role", &self.exclude_roles),
        ]
        .concat()
    }
}

/// What happened to a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyOp {
    Added,
    Updated,
    Deleted,
}

/// Which protection a policy change is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// A Conditional Access policy, both sides as the record shows them.
    ConditionalAccess { op: PolicyOp, before: Option<Box<CaPolicy>>, after: Option<Box<CaPolicy>> },
    /// Security defaults switched on (true) or off (false); `before` when the record says.
    SecurityDefaults { before: Option<bool>, enabled: bool },
}

/// A change to a protection, with the policy's id and name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyChange {
    /// The policy's object id (Conditional Access), lower case.
    pub policy_id: Option<String>,
    pub policy_name: Option<String>,
    pub protection: Protection,
}

/// Per-user MFA (the legacy per-user state) changed for a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerUserMfa {
    pub user: Principal,
    /// The state before and after: `disabled`, `enabled` or `enforced`
    /// (`None` when the record does not say).
    pub before: Option<String>,
    pub after: String,
}

/// The protection a Conditional Access or security-defaults audit record
/// changes; `None` for any other record.
pub(super) fn policy_change(op: &str, targets: &[&Value]) -> Option<PolicyChange> {
    if !(op.contains("conditional access policy") || op.contains("security defaults") || op == "update policy") {
        return None;
    }
    let target = targets
        .iter()
        .find(|t| get(t, "type").and_then(text).is_some_and(|k| k.eq_ignore_ascii_case("policy")))
        .or(targets.first())
        .copied();
    let target_id = target.and_then(|t| get(t, "id")).and_then(text).map(|i| i.to_lowercase());
    let target_name = target.and_then(|t| get(t, "displayName")).and_then(text);
    if op.contains("conditional access policy") {
        let change = match op.split_whitespace().next()? {
            "add" => PolicyOp::Added,
            "update" => PolicyOp::Updated,
            "delete" => PolicyOp::Deleted,
            _ => return None,
        };
        let (old, new) = target.and_then(|t| modified(t, "ConditionalAccessPolicy")).unwrap_or_default();
        let before = CaPolicy::of(&old).map(Box::new);
        let after = if change == PolicyOp::Deleted { None } else { CaPolicy::of(&new).map(Box::new) };
        let newest = after.as_ref().or(before.as_ref());
        return Some(PolicyChange {
            policy_id: newest.and_then(|p| p.id.clone()).or(target_id),
            policy_name: newest.and_then(|p| p.name.clone()).or(target_name),
            protection: Protection::ConditionalAccess { op: change, before, after },
        });
    }
    // "Update security defaults", or "Update policy" on the security defaults policy.
    let named_defaults = target_name.as_deref().is_some_and(|n| n.to_ascii_lowercase().contains("security defaults"));
    if op.contains("security defaults") || (op == "update policy" && named_defaults) {
        let (before, after) = targets.iter().find_map(|t| {
            ["IsEnabled", "SecurityDefaultsEnabled", "Enabled", "isEnabled"].iter().find_map(|p| {
                let (old, new) = modified(t, p)?;
                Some((enabled(&old), enabled(&new)?))
            })
        })?;
        return Some(PolicyChange {
            policy_id: target_id,
            policy_name: target_name.or_else(|| Some("Security defaults".into())),
            protection: Protection::SecurityDefaults { before, enabled: after },
        });
    }
    None
}

/// Per-user MFA changed by a record: "Disable Strong Authentication" (and
/// its "Enable"), or "Update user" whose `StrongAuthenticationRequirement`
/// changed (`[]` is disabled; a `State` 1 enabled, 2 enforced).
pub(super) fn per_user_mfa(op: &str, targets: &[&Value]) -> Option<PerUserMfa> {
    let user_target = || {
        targets
            .iter()
            .filter(|t| get(t, "type").and_then(text).is_none_or(|k| k.eq_ignore_ascii_case("user")))
            .find_map(|t| principal_from(t))
    };
    match op {
        "disable strong authentication" => {
            Some(PerUserMfa { user: user_target()?, before: None, after: "disabled".into() })
        }
        "enable strong authentication" => {
            Some(PerUserMfa { user: user_target()?, before: None, after: "enabled".into() })
        }
        "update user" => targets.iter().find_map(|t| {
            let (old, new) = modified(t, "StrongAuthenticationRequirement")?;
            let user = principal_from(t)?;
            Some(PerUserMfa { user, before: Some(requirement(&old)), after: requirement(&new) })
        }),
        _ => None,
    }
}

/// A `StrongAuthenticationRequirement` value as a state.
fn requirement(value: &Value) -> String {
    let Some(items) = value.as_array().filter(|a| !a.is_empty()) else { return "disabled".into() };
    let state = |r: &Value| get(r, "State").and_then(|s| s.as_i64().or_else(|| text(s)?.parse().ok()));
    if items.iter().filter_map(state).any(|s| s >= 2) { "enforced" } else { "enabled" }.into()
}

/// On or off: a flag as the other directory fields write it, the first of
/// an array, or the words a policy switch uses.
fn enabled(value: &Value) -> Option<bool> {
    match value {
        Value::Array(a) => a.first().and_then(enabled),
        other => flag(other).or_else(|| match text(other)?.to_ascii_lowercase().as_str() {
            "on" => Some(true),
            "off" | "disabled" => Some(false),
            _ => None,
        }),
    }
}
