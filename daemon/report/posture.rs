//! posture: the report's "protections timeline" — the tenant's protections
//! at the range's end as the audit log left them (each MFA-requiring
//! Conditional Access policy, security defaults as last switched) and the
//! changes made during the range — and the audit log's side of "which
//! protections are in force": when, by its records, security defaults were
//! on or off and an MFA-requiring policy was enforced, and what the range's
//! sign-ins did in those spans.
//!
//! Reads the directory the report rebuilt as of the range's end
//! ([`super::directory::rebuild`]); the verdict itself is
//! [`super::render::in_force`], a pure function of the counts here.

use super::*;
use crate::decode::directory::{CaPolicy, PolicyChange, PolicyState, Protection};
use crate::directory::posture::{Change, ChangeKind, Detail, MfaPolicies, Posture};

/// Security defaults switched on or off by one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Switch {
    #[serde(skip)]
    pub at_ms: i64,
    /// RFC 3339.
    pub at: String,
    pub enabled: bool,
    pub actor: Option<String>,
}

impl Switch {
    fn new(at_ms: i64, enabled: bool, actor: Option<&str>) -> Switch {
        Switch { at_ms, at: ms_text(at_ms), enabled, actor: actor.map(str::to_owned) }
    }

    /// "switched off on 2026-11-15T07:00:00Z by eve@contoso.example".
    pub fn words(&self) -> String {
        format!(
            "switched {} on {} by {}",
            if self.enabled { "on" } else { "off" },
            self.at,
            self.actor.as_deref().unwrap_or("an unnamed actor")
        )
    }
}

/// An MFA-requiring Conditional Access policy as the audit log left it at the range's end.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyAtEnd {
    pub name: String,
    /// enabled, report-only, disabled, deleted (or unknown: a state this release does not read).
    pub state: &'static str,
    /// Users, groups and roles it excludes.
    pub exclusions: usize,
    pub grant: String,
    /// Its newest change (RFC 3339) and who made it.
    pub changed: String,
    pub actor: String,
}

/// One change of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeRow {
    pub time: String,
    /// conditional_access, security_defaults, per_user_mfa, authentication_methods_policy.
    pub kind: &'static str,
    /// The policy's name, or the user whose per-user MFA changed.
    pub subject: String,
    pub actor: String,
    /// What changed, `; `-separated.
    pub what: String,
    /// It weakened MFA enforcement (see [`Change::weakens`]).
    pub weakens: bool,
    pub operation: String,
}

/// The "protections timeline" section.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    /// The audit log holds some record of a protection up to the range's end.
    pub any_record: bool,
    /// MFA-requiring policies (not deleted) by state at the range's end.
    pub mfa_policies: MfaPolicies,
    /// Every MFA-requiring policy the audit log knows, deleted ones included, by name.
    pub policies: Vec<PolicyAtEnd>,
    /// As last switched by the range's end; None when no record says.
    pub security_defaults: Option<Switch>,
    /// The changes made during the range, newest first.
    pub changes: Vec<ChangeRow>,
    /// How many of them weakened MFA enforcement.
    pub weakening: u64,
}

/// The section, from the posture as of the range's end.
pub(super) fn timeline(posture: &Posture, w: Window) -> Timeline {
    let (start, end) = w.millis();
    let mut policies: Vec<PolicyAtEnd> = posture
        .policies()
        .filter(|p| p.policy.requires_mfa())
        .map(|p| PolicyAtEnd {
            name: policy_name(&p.policy),
            state: if p.deleted { "deleted" } else { state_words(p.policy.state) },
            exclusions: p.policy.exclusions().len(),
            grant: crate::directory::posture::grant(&p.policy),
            changed: ms_text(p.at),
            actor: p.actor.clone().unwrap_or_default(),
        })
        .collect();
    policies.sort_by(|a, b| (a.state == "deleted", &a.name).cmp(&(b.state == "deleted", &b.name)));
    let changes: Vec<ChangeRow> =
        posture.timeline().iter().rev().filter(|c| c.at >= start && c.at < end).map(change_row).collect();
    Timeline {
        any_record: !posture.is_empty(),
        mfa_policies: posture.mfa_policies(),
        policies,
        security_defaults: posture.security_defaults().map(|d| Switch::new(d.at, d.enabled, d.actor.as_deref())),
        weakening: changes.iter().filter(|c| c.weakens).count() as u64,
        changes,
    }
}

fn policy_name(p: &CaPolicy) -> String {
    p.name.clone().or_else(|| p.id.clone()).unwrap_or_else(|| "(unnamed policy)".into())
}

fn state_words(state: Option<PolicyState>) -> &'static str {
    match state {
        Some(PolicyState::Enabled) => "enabled",
        Some(PolicyState::ReportOnly) => "report-only",
        Some(PolicyState::Disabled) => "disabled",
        Some(PolicyState::Other) | None => "unknown",
    }
}

fn change_row(c: &Change) -> ChangeRow {
    ChangeRow {
        time: ms_text(c.at),
        kind: c.kind.as_str(),
        subject: c.subject(),
        actor: c.actor.clone().unwrap_or_default(),
        what: c.what().join("; "),
        weakens: c.weakens(),
        operation: c.operation.clone(),
    }
}

/// Spans of the range, [from, to) in Unix ms, in which the audit log says
/// something held: security defaults on or off (from each switch to the
/// next; before the first switch nothing is said), an MFA-requiring policy
/// enforced (as [`Posture::mfa_enforced_at`] has it between changes).
#[derive(Debug, Clone, Default)]
pub(super) struct Spans {
    /// Each with the switch that began it.
    pub(super) defaults: Vec<(i64, i64, Switch)>,
    pub(super) enforced: Vec<(i64, i64)>,
    /// The policies enforced in some part of the range, by name.
    pub(super) enforced_names: Vec<String>,
}

impl Spans {
    pub(super) fn of(posture: &Posture, w: Window) -> Spans {
        let (start, end) = w.millis();
        let switches: Vec<Switch> = posture
            .timeline()
            .iter()
            .filter(|c| c.kind == ChangeKind::SecurityDefaults)
            .filter_map(|c| match &c.detail {
                Detail::Policy(PolicyChange { protection: Protection::SecurityDefaults { enabled, .. }, .. }) => {
                    Some(Switch::new(c.at, *enabled, c.actor.as_deref()))
                }
                _ => None,
            })
            .collect();
        let mut defaults = Vec::new();
        for (i, s) in switches.iter().enumerate() {
            let until = switches.get(i + 1).map_or(end, |next| next.at_ms).min(end);
            let from = s.at_ms.max(start);
            if from < until {
                defaults.push((from, until, s.clone()));
            }
        }
        // Enforcement changes only at a Conditional Access change: look at
        // the range's start and at each change within it.
        let mut points = vec![start];
        points.extend(
            posture
                .timeline()
                .iter()
                .filter(|c| c.kind == ChangeKind::ConditionalAccess && c.at > start && c.at < end)
                .map(|c| c.at),
        );
        points.dedup();
        let mut enforced: Vec<(i64, i64)> = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (i, &from) in points.iter().enumerate() {
            let now = posture.mfa_enforced_at(from);
            if now.is_empty() {
                continue;
            }
            let until = points.get(i + 1).copied().unwrap_or(end);
            match enforced.last_mut() {
                Some(last) if last.1 == from => last.1 = until,
                _ => enforced.push((from, until)),
            }
            names.extend(now);
        }
        Spans { defaults, enforced, enforced_names: names.into_iter().collect() }
    }

    fn defaults_are(&self, on: bool) -> impl Iterator<Item = &(i64, i64, Switch)> {
        self.defaults.iter().filter(move |(_, _, s)| s.enabled == on)
    }

    /// The switch that began the span holding `t`.
    fn switch_at(&self, t: i64) -> Option<&Switch> {
        self.defaults.iter().find(|(from, until, _)| *from <= t && t < *until).map(|(_, _, s)| s)
    }
}

/// The range's sign-ins counted in the spans the audit log gives.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Against {
    /// Blocked by security defaults (530035) while the audit log says they were off…
    pub blocks_while_defaults_off: u64,
    /// …and the switch-off before the last such block.
    pub defaults_off: Option<Switch>,
    /// Passed a Conditional Access policy with MFA while the audit log says security defaults were on…
    pub ca_mfa_while_defaults_on: u64,
    /// …and the switch-on before the last such sign-in.
    pub defaults_on: Option<Switch>,
    /// Blocked by security defaults while an MFA-requiring policy was enforced.
    pub blocks_while_mfa_enforced: u64,
    /// Of the successful interactive user sign-ins while an MFA-requiring policy was enforced, and how many passed one with MFA.
    pub interactive_while_mfa_enforced: u64,
    pub ca_mfa_while_mfa_enforced: u64,
}

/// What the audit log says of the two tenant-wide ways to require MFA, for the verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AuditEvidence {
    /// Some protection record up to the range's end.
    pub any_record: bool,
    /// How many Conditional Access policies (any grant) the audit log knows.
    pub policies_known: usize,
    /// Security defaults as last switched by the range's end.
    pub security_defaults: Option<Switch>,
    /// MFA-requiring policies enforced at the range's end, and in some part of it.
    pub mfa_enforced_at_end: Vec<String>,
    pub mfa_enforced_in_range: Vec<String>,
    pub against: Against,
}

/// Whether `ms` falls in one of the spans.
fn within(spans: impl Iterator<Item = (i64, i64)>) -> Expr {
    spans.fold(lit(false), |any, (from, until)| any.or(col("ms").gt_eq(lit(from)).and(col("ms").lt(lit(until)))))
}

/// The audit log's evidence, with the range's sign-ins (`week`) counted against it.
pub(super) fn audit_evidence(posture: &Posture, w: Window, week: &LazyFrame) -> PolarsResult<AuditEvidence> {
    let spans = Spans::of(posture, w);
    let off = within(spans.defaults_are(false).map(|(f, u, _)| (*f, *u)));
    let on = within(spans.defaults_are(true).map(|(f, u, _)| (*f, *u)));
    let enforced = within(spans.enforced.iter().copied());
    let sum_if = |cond: Expr, name: &str| cond.cast(DataType::UInt64).sum().alias(name);
    let df = week
        .clone()
        .select([
            sum_if(security_defaults_block().and(off.clone()), "blocks_off"),
            col("ms").filter(security_defaults_block().and(off)).max().alias("last_block_off"),
            sum_if(passed_ca_with_mfa().and(on.clone()), "ca_mfa_on"),
            col("ms").filter(passed_ca_with_mfa().and(on)).max().alias("last_ca_mfa_on"),
            sum_if(security_defaults_block().and(enforced.clone()), "blocks_enforced"),
            sum_if(interactive_ok().and(enforced.clone()), "interactive_enforced"),
            sum_if(passed_ca_with_mfa().and(enforced), "ca_mfa_enforced"),
        ])
        .collect()?;
    // A maximum over no row is null, which reads as 0.
    let last = |name: &str| Some(i64_of(&df, name, 0)).filter(|t| *t > 0);
    let against = Against {
        blocks_while_defaults_off: u64_of(&df, "blocks_off", 0),
        defaults_off: last("last_block_off").and_then(|t| spans.switch_at(t)).cloned(),
        ca_mfa_while_defaults_on: u64_of(&df, "ca_mfa_on", 0),
        defaults_on: last("last_ca_mfa_on").and_then(|t| spans.switch_at(t)).cloned(),
        blocks_while_mfa_enforced: u64_of(&df, "blocks_enforced", 0),
        interactive_while_mfa_enforced: u64_of(&df, "interactive_enforced", 0),
        ca_mfa_while_mfa_enforced: u64_of(&df, "ca_mfa_enforced", 0),
    };
    let (_, end) = w.millis();
    Ok(AuditEvidence {
        any_record: !posture.is_empty(),
        policies_known: posture.policies().count(),
        security_defaults: posture.security_defaults().map(|d| Switch::new(d.at, d.enabled, d.actor.as_deref())),
        mfa_enforced_at_end: posture.mfa_enforced_at(end - 1),
        mfa_enforced_in_range: spans.enforced_names,
        against,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_within_the_range_are_cut_at_its_edges_and_at_each_switch() {
        let w = Window {
            from: NaiveDate::from_ymd_opt(2026, 11, 10).unwrap(),
            to: NaiveDate::from_ymd_opt(2026, 11, 12).unwrap(),
        };
        let (start, end) = w.millis();
        let hour = 3_600_000;
        let spans = Spans {
            defaults: vec![
                (start, start + hour, Switch::new(start - hour, true, Some("ann"))),
                (start + hour, end, Switch::new(start + hour, false, Some("eve"))),
            ],
            ..Spans::default()
        };
        assert_eq!(spans.switch_at(start + 2 * hour).and_then(|s| s.actor.as_deref()), Some("eve"));
        assert_eq!(spans.switch_at(start).and_then(|s| s.actor.as_deref()), Some("ann"));
        assert!(spans.switch_at(end).is_none(), "the range's end is outside it");
        assert_eq!(spans.defaults_are(false).count(), 1);
        assert_eq!(
            spans.defaults[1].2.words(),
            format!("switched off on {} by eve", ms_text(start + hour)),
            "said with its time and actor"
        );
        // An empty posture says nothing of any span.
        let none = Spans::of(&Posture::default(), w);
        assert!(none.defaults.is_empty() && none.enforced.is_empty() && none.enforced_names.is_empty());
    }
}
