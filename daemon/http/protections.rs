//! `/api/v1/protections`: the tenant's protections as the audit log set
//! them — each Conditional Access policy now, security defaults as last
//! switched, the MFA-requiring policies enforced — their timeline with who
//! changed what (newest first), the users on per-user MFA, and where
//! Identity Protection has its risky users (docs/labels.md §8).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::decode::directory::{PolicyChange, Protection};
use crate::directory::Directory;
use crate::directory::posture::{Change, Detail, grant};

fn at(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// One change of the timeline, both sides whole.
fn change(c: &Change) -> Value {
    let (policy_id, before, after) = match &c.detail {
        Detail::Policy(PolicyChange { policy_id, protection, .. }) => match protection {
            Protection::ConditionalAccess { before, after, .. } => (policy_id.clone(), json!(before), json!(after)),
            Protection::SecurityDefaults { before, enabled } => (policy_id.clone(), json!(before), json!(enabled)),
        },
        Detail::PerUserMfa(m) => (None, json!(m.before), json!(m.after)),
        Detail::Named => (None, Value::Null, Value::Null),
    };
    json!({
        "at": at(c.at),
        "kind": c.kind.as_str(),
        "subject": c.subject(),
        "policy_id": policy_id,
        "operation": c.operation,
        "actor": c.actor,
        "what": c.what(),
        "weakens": c.weakens(),
        "before": before,
        "after": after,
    })
}

/// The body of `/api/v1/protections` (`limit`: changes shown, newest first).
pub fn body(directory: &Directory, limit: usize) -> Value {
    let posture = directory.posture();
    let policies: Vec<Value> = posture
        .policies()
        .map(|now| {
            let p = &now.policy;
            json!({
                "id": p.id,
                "name": p.name,
                "state": if now.deleted { "deleted" } else { p.state.map_or("unknown", |s| s.as_str()) },
                "requires_mfa": p.requires_mfa(),
                "grant": grant(p),
                "include_users": p.include_users,
                "include_groups": p.include_groups,
                "include_roles": p.include_roles,
                "exclusions": p.exclusions(),
                "changed_at": at(now.at),
                "changed_by": now.actor,
            })
        })
        .collect();
    let defaults = posture.security_defaults().map(|d| json!({"enabled": d.enabled, "at": at(d.at), "by": d.actor}));
    let now = directory.newest().map_or(i64::MAX, |t| t.timestamp_millis());
    let timeline = posture.timeline();
    let changes: Vec<Value> = timeline.iter().rev().take(limit).map(change).collect();
    let risky: Vec<Value> = directory
        .risky_users()
        .into_iter()
        .map(|(key, upn, r)| {
            json!({
                "user": key,
                "upn": Some(upn).filter(|u| !u.is_empty()),
                "level": r.level,
                "state": r.state,
                "detail": r.detail,
                "at": at(r.at),
                "since": r.since.and_then(at),
                "high_open": r.high_open(),
            })
        })
        .collect();
    let high_open = risky.iter().filter(|r| r["high_open"] == true).count();
    let per_user: Vec<Value> = directory
        .per_user_mfa_users()
        .into_iter()
        .map(|(key, upn, state, t)| json!({"user": key, "upn": Some(upn).filter(|u| !u.is_empty()), "state": state, "at": at(t)}))
        .collect();
    let m = posture.mfa_policies();
    json!({
        "as_of": directory.newest().map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
        "security_defaults": defaults,
        "mfa_policies": {"enabled": m.enabled, "report_only": m.report_only, "disabled": m.disabled},
        "enforcing_mfa": posture.mfa_enforced_at(now),
        "policies": policies,
        "timeline": {"total": timeline.len(), "weakening": timeline.iter().filter(|c| c.weakens()).count(), "changes": changes},
        "per_user_mfa": per_user,
        "risky_users": {"high_open": high_open, "users": risky},
    })
}
