//! The report's files: `index.html` (self-contained: inline CSS and SVG, no
//! script, no external URL), `summary.md`, `summary.json` and the CSVs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use super::charts::{self, Bars};
use super::{Report, SignInRow};

/// HTML-escapes text.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn pct(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".into(), |r| format!("{:.1} %", r * 100.0))
}

fn share(part: u64, whole: u64) -> String {
    if whole == 0 { "n/a".into() } else { format!("{:.1} %", part as f64 * 100.0 / whole as f64) }
}

/// The change against the period before, in points — or why there is none.
fn change(r: &Report) -> String {
    let now = r.coverage.coverage_ratio;
    let before = r.previous.as_ref().and_then(|p| p.coverage_ratio);
    let period = r.window.period();
    match (&r.previous_period, now, before) {
        (Some(p), Some(n), Some(b)) if p.compared => {
            format!("{:+.1} points against the {period} before ({})", (n - b) * 100.0, pct(Some(b)))
        }
        (Some(p), ..) if !p.compared && p.hours_of_data > 0.0 => format!(
            "the {period} before ({} to {}): {:.0} h of data of {}, not compared",
            p.window.from,
            p.window.to,
            p.hours_of_data,
            p.window.days() * 24
        ),
        _ => format!("no {period} before to compare with"),
    }
}

/// The machine-readable summary (`summary.json`).
#[derive(Serialize)]
pub struct Summary<'a> {
    pub window: super::Window,
    pub label: &'a str,
    pub generated_at: &'a str,
    pub sign_ins: u64,
    pub duplicates_removed: u64,
    pub users: u64,
    pub states: States,
    pub coverage_ratio: Option<f64>,
    pub previous_coverage_ratio: Option<f64>,
    /// The period of the same length before, how much of it the history covers, and whether it was compared.
    pub previous: Option<&'a super::Previous>,
    pub registration_pending: u64,
    pub registration_overdue: u64,
    pub legacy: Vec<LegacySummary<'a>>,
    pub legacy_sign_ins: usize,
    pub risky_without_mfa: usize,
    pub uncovered_users: usize,
    pub report_only_results: usize,
    /// Security defaults or Conditional Access (or contradictory, or no evidence): `in_force.verdict`.
    pub protections_in_force: InForce,
    /// The verdict, what each source says, and where the audit log and the sign-ins disagree.
    pub in_force: Verdict,
    /// The protections at the end of the range as the audit log left them, and the changes during it.
    pub protections_timeline: PostureSummary,
    /// Identity Protection's risky users (the counts; risky-users.csv lists them).
    pub risky_users: RiskySummary<'a>,
    /// Admins and their MFA (the counts; admins.csv lists them).
    pub admins: AdminsSummary,
    /// MFA registration: registered / capable / pending / overdue / unknown.
    pub registration: &'a super::directory::RegistrationSummary,
    /// How MFA is enforced (the counts; mfa-enforcement.csv lists the users).
    pub enforcement: EnforcementSummary<'a>,
    /// How strong the MFA is (the method mix; mfa-strength.csv lists the privileged accounts).
    pub mfa_strength: StrengthSummary<'a>,
    pub damaged_files: Vec<&'a str>,
}

/// [`super::strength::MethodStrength`] without the user lists.
#[derive(Serialize)]
pub struct StrengthSummary<'a> {
    pub periods: &'a [super::strength::PeriodMix],
    pub privileged_with_mfa: u64,
    pub privileged_on_telephony: u64,
    pub privileged_phishing_resistant: u64,
}

/// [`super::enforcement::Enforcement`] without the user lists.
#[derive(Serialize)]
pub struct EnforcementSummary<'a> {
    pub mfa_sign_ins: u64,
    pub not_completed: u64,
    pub unknown: u64,
    pub mechanisms: &'a [super::enforcement::MechanismShare],
    pub per_user_mfa_users: u64,
    pub risk_only_users: u64,
    pub mixed_tenants: &'a [super::enforcement::MixedTenant],
}

/// [`super::posture::Timeline`] without the lists.
#[derive(Serialize)]
pub struct PostureSummary {
    /// The audit log holds some record of a protection up to the range's end.
    pub any_record: bool,
    /// MFA-requiring Conditional Access policies (not deleted) by state at the range's end.
    pub mfa_policies: crate::directory::posture::MfaPolicies,
    /// As last switched by the range's end; null when no record says.
    pub security_defaults: Option<bool>,
    /// Changes during the range, and how many weakened MFA enforcement.
    pub changes: u64,
    pub weakening: u64,
}

/// [`super::risk::RiskyUsers`] without the lists.
#[derive(Serialize)]
pub struct RiskySummary<'a> {
    /// High risk, neither remediated nor dismissed, at the range's end.
    pub high_open: u64,
    pub open: u64,
    pub remediated: u64,
    pub dismissed: u64,
    pub endings: &'a [super::risk::Ending],
}

/// [`super::directory::Admins`] without the list.
#[derive(Serialize)]
pub struct AdminsSummary {
    pub total: u64,
    pub from_roles: u64,
    pub from_list_only: u64,
    pub covered: u64,
    pub uncovered: u64,
    pub inactive: u64,
    pub excluded: u64,
    pub not_registered: u64,
    pub registration_unknown: u64,
    pub phishing_resistant: u64,
}

#[derive(Serialize)]
pub struct States {
    pub covered: u64,
    pub uncovered: u64,
    pub never_mfa: u64,
    pub inactive: u64,
    pub excluded: u64,
}

#[derive(Serialize)]
pub struct LegacySummary<'a> {
    pub protocol: &'a str,
    pub succeeded: u64,
    pub blocked: u64,
    pub users: u64,
}

pub fn summary(r: &Report) -> Summary<'_> {
    let c = &r.coverage;
    Summary {
        window: r.window,
        label: &r.label,
        generated_at: &r.generated_at,
        sign_ins: r.sign_ins,
        duplicates_removed: r.duplicates,
        users: c.users,
        states: States {
            covered: c.covered,
            uncovered: c.uncovered,
            never_mfa: c.never_mfa,
            inactive: c.inactive,
            excluded: c.excluded,
        },
        coverage_ratio: c.coverage_ratio,
        previous_coverage_ratio: r.previous.as_ref().and_then(|p| p.coverage_ratio),
        previous: r.previous_period.as_ref(),
        registration_pending: c.registration_pending,
        registration_overdue: c.registration_overdue,
        legacy: r
            .legacy
            .iter()
            .map(|p| LegacySummary {
                protocol: &p.protocol,
                succeeded: p.succeeded,
                blocked: p.blocked,
                users: p.user_count,
            })
            .collect(),
        legacy_sign_ins: r.legacy_sign_ins.len(),
        risky_without_mfa: r.risky_without_mfa.len(),
        uncovered_users: r.uncovered.len(),
        report_only_results: r.report_only.len(),
        protections_in_force: in_force(&r.protections, &r.audit).verdict,
        in_force: in_force(&r.protections, &r.audit),
        protections_timeline: {
            let t = &r.protections_timeline;
            PostureSummary {
                any_record: t.any_record,
                mfa_policies: t.mfa_policies,
                security_defaults: t.security_defaults.as_ref().map(|s| s.enabled),
                changes: t.changes.len() as u64,
                weakening: t.weakening,
            }
        },
        risky_users: {
            let u = &r.risky_users;
            RiskySummary {
                high_open: u.high_open,
                open: u.open,
                remediated: u.remediated,
                dismissed: u.dismissed,
                endings: &u.endings,
            }
        },
        admins: {
            let a = &r.admins;
            AdminsSummary {
                total: a.total,
                from_roles: a.from_roles,
                from_list_only: a.from_list_only,
                covered: a.covered,
                uncovered: a.uncovered,
                inactive: a.inactive,
                excluded: a.excluded,
                not_registered: a.not_registered,
                registration_unknown: a.registration_unknown,
                phishing_resistant: a.phishing_resistant,
            }
        },
        registration: &r.registration_summary,
        enforcement: {
            let e = &r.enforcement;
            EnforcementSummary {
                mfa_sign_ins: e.mfa_sign_ins,
                not_completed: e.not_completed,
                unknown: e.unknown,
                mechanisms: &e.mechanisms,
                per_user_mfa_users: e.per_user_mfa_users.len() as u64,
                risk_only_users: e.risk_only_users.len() as u64,
                mixed_tenants: &e.mixed_tenants,
            }
        },
        mfa_strength: StrengthSummary {
            periods: &r.strength.periods,
            privileged_with_mfa: r.strength.privileged_with_mfa,
            privileged_on_telephony: r.strength.privileged_on_telephony.len() as u64,
            privileged_phishing_resistant: r.strength.privileged_phishing_resistant.len() as u64,
        },
        damaged_files: r.damaged.iter().map(|d| d.file.as_str()).collect(),
    }
}

/// Writes every file of the report into `out`; returns their paths.
pub fn write(r: &Report, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut written = Vec::new();
    let mut put = |name: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let path = out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
        Ok(())
    };
    put("index.html", html(r).as_bytes())?;
    put("summary.md", markdown(r).as_bytes())?;
    put("summary.json", (serde_json::to_string_pretty(&summary(r))? + "\n").as_bytes())?;
    put("uncovered-users.csv", &csv_of(&r.uncovered)?)?;
    put("legacy-auth.csv", &csv_of(&r.legacy_sign_ins)?)?;
    put("risky-without-mfa.csv", &csv_of(&r.risky_without_mfa)?)?;
    put("report-only-impact.csv", &csv_of(&r.report_only)?)?;
    put("admins.csv", &csv_of(&r.admins.users)?)?;
    let risky: Vec<&super::risk::RiskyUser> = r.risky_users.users.iter().chain(&r.risky_users.ended).collect();
    put("risky-users.csv", &csv_of(&risky)?)?;
    put("protections-timeline.csv", &csv_of(&r.protections_timeline.changes)?)?;
    put("mfa-enforcement.csv", &csv_of(&r.enforcement.users())?)?;
    put("mfa-strength.csv", &csv_of(&r.strength.users())?)?;
    Ok(written)
}

/// The rows as CSV, each text cell made safe for a spreadsheet (see [`cell`]).
fn csv_of<T: Serialize>(rows: &[T]) -> anyhow::Result<Vec<u8>> {
    use serde_json::Value;
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut headers = false;
    for row in rows {
        let Value::Object(fields) = serde_json::to_value(row)? else { anyhow::bail!("a CSV row is not a record") };
        if !headers {
            w.write_record(fields.keys())?;
            headers = true;
        }
        w.write_record(fields.values().map(|v| match v {
            Value::String(text) => cell(text),
            Value::Null => String::new(),
            other => other.to_string(),
        }))?;
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

/// A text cell as a spreadsheet may take it (OWASP "CSV injection"):
/// control characters removed, and one that would start a formula (`=`,
/// `+`, `-`, `@`, tab, carriage return) starts with a quote instead. App,
/// policy and user names come from the sign-ins, which anyone can type.
pub fn cell(text: &str) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control() || *c == '\t' || *c == '\r').collect();
    match clean.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => {
            format!("'{}", clean.replace(['\t', '\r'], " "))
        }
        _ => clean.replace(['\t', '\r'], " "),
    }
}

/// `summary.md`: the headline numbers for a ticket or a mail.
pub fn markdown(r: &Report) -> String {
    let c = &r.coverage;
    let mut md = format!("# MFA coverage, {} ({} to {})\n\n", r.label, r.window.from, r.window.to);
    let _ = writeln!(
        md,
        "- **Coverage: {}** of active users ({} covered, {} uncovered); {}",
        pct(c.coverage_ratio),
        c.covered,
        c.uncovered,
        change(r)
    );
    let _ = writeln!(md, "- Never MFA in the {}: {} user(s)", r.window.period(), c.never_mfa);
    let privileged = r.uncovered.iter().filter(|u| u.privileged).count();
    let _ = writeln!(md, "- Privileged users outside coverage: {privileged}");
    let a = &r.admins;
    let _ = writeln!(
        md,
        "- Admins: {} ({} by directory role); {} covered by MFA, {} uncovered, {} without sign-ins, {} with no MFA method registered",
        a.total, a.from_roles, a.covered, a.uncovered, a.inactive, a.not_registered
    );
    let _ = writeln!(md, "- Registration pending: {} ({} overdue)", c.registration_pending, c.registration_overdue);
    let g = &r.registration_summary;
    let _ = writeln!(
        md,
        "- MFA registration (directory): {} registered, {} capable, {} not registered, {} unknown of {} users; phishing-resistant: {} ({})",
        g.registered,
        g.capable,
        g.not_registered,
        g.unknown,
        g.users,
        g.phishing_resistant,
        pct(g.phishing_resistant_share)
    );
    let t = &r.protections_timeline;
    let _ = writeln!(
        md,
        "- Protections (audit log, end of the {}): {} MFA policy(ies) enabled, {} report-only, {} disabled; security defaults {}; {} change(s) in the {}, **{} weakening MFA**",
        r.window.period(),
        t.mfa_policies.enabled,
        t.mfa_policies.report_only,
        t.mfa_policies.disabled,
        defaults_words(t.security_defaults.as_ref()),
        t.changes.len(),
        r.window.period(),
        t.weakening
    );
    let verdict = in_force(&r.protections, &r.audit);
    let _ = writeln!(md, "- In force: {}", verdict.explanation);
    for d in &verdict.disagreements {
        let _ = writeln!(md, "  - **Disagreement:** {d}");
    }
    let e = &r.enforcement;
    let _ = writeln!(
        md,
        "- How MFA is enforced: {}; **{} user(s) still on per-user MFA**, {} whose MFA came only from a risk policy{}",
        mechanism_words(e),
        e.per_user_mfa_users.len(),
        e.risk_only_users.len(),
        if e.mixed_tenants.is_empty() {
            String::new()
        } else {
            format!("; {} tenant(s) show security defaults and Conditional Access both", e.mixed_tenants.len())
        }
    );
    let st = &r.strength;
    if let Some(now) = st.periods.last() {
        let _ = writeln!(
            md,
            "- How strong the MFA is: {}; **{} privileged account(s) still on telephony** (SMS, voice), {} of {} on phishing-resistant MFA only",
            strength_words(now),
            st.privileged_on_telephony.len(),
            st.privileged_phishing_resistant.len(),
            st.privileged_with_mfa
        );
    }
    let u = &r.risky_users;
    let _ = writeln!(
        md,
        "- Risky users: **{} high-risk user(s) not remediated**; {} open at any level; {} remediated, {} dismissed in the {}",
        u.high_open,
        u.open,
        u.remediated,
        u.dismissed,
        r.window.period()
    );
    let legacy_ok: u64 = r.legacy.iter().map(|p| p.succeeded).sum();
    let legacy_blocked: u64 = r.legacy.iter().map(|p| p.blocked).sum();
    let _ = writeln!(md, "- Legacy authentication: {legacy_ok} sign-in(s) got in, {legacy_blocked} blocked");
    let _ = writeln!(md, "- Risky sign-ins without MFA: {}", r.risky_without_mfa.len());
    let _ = writeln!(
        md,
        "- Sign-ins in the {}: {} ({} delivered twice, counted once)",
        r.window.period(),
        r.sign_ins,
        r.duplicates
    );
    if !r.damaged.is_empty() {
        let _ = writeln!(
            md,
            "- **{} damaged history file(s) were skipped**: the numbers miss their sign-ins",
            r.damaged.len()
        );
    }
    md
}

/// "on (switched on … by …)", "off (…)", or "no record".
fn defaults_words(s: Option<&super::posture::Switch>) -> String {
    s.map_or_else(|| "no record".to_owned(), |s| format!("{} ({})", if s.enabled { "on" } else { "off" }, s.words()))
}

fn table(head: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    classed_table(head, rows.into_iter().map(|row| ("", row)))
}

/// A table whose rows may carry a class (`weakens` highlights one).
fn classed_table(head: &[&str], rows: impl IntoIterator<Item = (&'static str, Vec<String>)>) -> String {
    let mut t = String::from("<table><thead><tr>");
    for h in head {
        let _ = write!(t, "<th>{}</th>", escape(h));
    }
    t.push_str("</tr></thead><tbody>");
    let mut any = false;
    for (class, row) in rows {
        any = true;
        if class.is_empty() {
            t.push_str("<tr>");
        } else {
            let _ = write!(t, "<tr class=\"{}\">", escape(class));
        }
        for cell in row {
            let _ = write!(t, "<td>{}</td>", escape(&cell));
        }
        t.push_str("</tr>");
    }
    if !any {
        let _ = write!(t, "<tr><td colspan=\"{}\" class=\"none\">none</td></tr>", head.len());
    }
    t.push_str("</tbody></table>\n");
    t
}

/// Users listed in the page; the CSVs have them all.
const INLINE_USERS: usize = 25;

/// "…and N more in FILE" when a list was cut at `shown`.
fn more(total: usize, shown: usize, file: &str) -> String {
    if total > shown { format!("<p>…and {} more in {file}.</p>", total - shown) } else { String::new() }
}

fn sign_in_table(rows: &[SignInRow], limit: usize, file: &str) -> String {
    let mut t = table(
        &["time (UTC)", "user", "app", "client", "outcome", "risk", "IP", "country", "record id", "correlation id"],
        rows.iter().take(limit).map(|s| {
            vec![
                s.time.clone(),
                if s.upn.is_empty() { s.user_key.clone() } else { s.upn.clone() },
                s.app.clone(),
                s.client_app.clone(),
                s.outcome_code.to_string(),
                if s.risk.is_empty() { s.risk_level.clone() } else { s.risk.clone() },
                s.ip.clone(),
                s.country.clone(),
                s.record_id.clone(),
                s.correlation_id.clone(),
            ]
        }),
    );
    t.push_str(&more(rows.len(), limit, file));
    t
}

const CSS: &str = "body{font-family:sans-serif;margin:2em auto;max-width:1100px;color:#222}h1{margin-bottom:0}\
.sub{color:#666}.headline{font-size:3em;font-weight:bold;margin:.2em 0}.kpis{display:flex;gap:1em;flex-wrap:wrap}\
.kpi{border:1px solid #ddd;border-radius:6px;padding:.6em 1em}.kpi b{display:block;font-size:1.6em}.kpi.urgent{border-color:#c62828;color:#c62828}\
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left}\
th{background:#f4f4f4}td.none{color:#888}figure{margin:1em 0}figcaption{color:#555;font-size:.9em}\
.warn{background:#fff3e0;border:1px solid #ef6c00;padding:.6em 1em}.path{border-left:4px solid #1565c0;padding-left:1em;margin:1em 0}\
tr.weakens td{background:#ffebee;color:#b71c1c}.verdict{font-weight:bold}";

/// Which of the two tenant-wide ways to require MFA is in force. Entra
/// allows security defaults or Conditional Access, never both at once:
/// evidence of both is said to be contradictory, not claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InForce {
    SecurityDefaults,
    ConditionalAccess,
    Contradictory,
    NoEvidence,
}

impl InForce {
    /// What the sign-ins alone say.
    fn words(self) -> &'static str {
        match self {
            InForce::SecurityDefaults => {
                "Security defaults look on (530035 blocks, and no Conditional Access enforcing MFA)."
            }
            InForce::ConditionalAccess => "No sign of security defaults: Conditional Access enforces MFA.",
            InForce::Contradictory => {
                "Contradictory evidence: security defaults blocked sign-ins (530035) and Conditional Access enforced MFA in the same period, \
                 which Entra does not allow at once — one was switched for the other during it, or the records come from two tenants. Check the tenant's settings."
            }
            InForce::NoEvidence => "No sign of security defaults, nor of Conditional Access enforcing MFA.",
        }
    }
}

/// What the verdict rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestsOn {
    /// The audit log holds nothing that decides it.
    SignIns,
    /// The audit log's configuration at the range's end; the sign-ins say otherwise.
    AuditLog,
    /// Both say the same.
    AuditLogAndSignIns,
}

/// The verdict of "which protections are in force", and where its two sources disagree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub verdict: InForce,
    pub from_sign_ins: InForce,
    /// What the audit log's configuration at the range's end says; None when it holds no record of either.
    pub from_audit_log: Option<InForce>,
    pub rests_on: RestsOn,
    /// The verdict in words.
    pub explanation: String,
    /// Each a sentence: what the audit log says, and what the sign-ins did against it.
    pub disagreements: Vec<String>,
}

/// What the sign-ins say. Registration prompts (50072/50079) come from
/// either, so they point to neither; a 530035 block is security defaults'
/// own, an MFA grant or a 53003 block Conditional Access's.
fn from_sign_ins(p: &super::Protections) -> InForce {
    let defaults = p.security_defaults_blocks > 0;
    let conditional_access = p.ca_mfa_sign_ins > 0 || p.legacy_blocked_by_ca > 0;
    match (defaults, conditional_access) {
        (true, true) => InForce::Contradictory,
        (true, false) => InForce::SecurityDefaults,
        (false, true) => InForce::ConditionalAccess,
        (false, false) => InForce::NoEvidence,
    }
}

/// What the audit log's configuration at the range's end says: security
/// defaults as last switched, MFA-requiring policies enforced then.
/// `NoEvidence` when its records show neither on (a policy made before its
/// records would not show); None when it has no record of either.
fn from_audit_log(a: &super::posture::AuditEvidence) -> Option<InForce> {
    let defaults = a.security_defaults.as_ref().map(|s| s.enabled);
    let enforced = !a.mfa_enforced_at_end.is_empty();
    match (defaults, enforced) {
        (Some(true), true) => Some(InForce::Contradictory),
        (Some(true), false) => Some(InForce::SecurityDefaults),
        (_, true) => Some(InForce::ConditionalAccess),
        (None, false) if a.policies_known == 0 => None,
        _ => Some(InForce::NoEvidence),
    }
}

/// The verdict: the audit log's configuration at the range's end when it
/// says security defaults or Conditional Access (it records the switch; the
/// sign-ins only show its effects, and a switch during the range makes them
/// look contradictory), else the sign-ins'. Where the two disagree in time —
/// a 530035 block after the audit log switched security defaults off, a
/// policy enforced while no sign-in passed one — it is said, not hidden.
pub fn in_force(p: &super::Protections, a: &super::posture::AuditEvidence) -> Verdict {
    let signs = from_sign_ins(p);
    let audit = from_audit_log(a);
    let (verdict, rests_on) = match audit {
        Some(v) if v != InForce::NoEvidence => {
            (v, if v == signs { RestsOn::AuditLogAndSignIns } else { RestsOn::AuditLog })
        }
        Some(_) if signs == InForce::NoEvidence => (signs, RestsOn::AuditLogAndSignIns),
        _ => (signs, RestsOn::SignIns),
    };
    let explanation = match (audit, rests_on) {
        (None, _) if !a.any_record => format!(
            "{} The audit log holds no record of security defaults or Conditional Access up to the end of the period: this rests on the sign-ins alone.",
            signs.words()
        ),
        (None, _) => format!(
            "{} The audit log's records say nothing of security defaults or Conditional Access policies: this rests on the sign-ins.",
            signs.words()
        ),
        (Some(InForce::NoEvidence), _) => format!(
            "{} At the end of the period the audit log shows neither security defaults on nor a policy requiring MFA enforced (a policy made before its records would not show).",
            signs.words()
        ),
        (Some(v), rests) => format!(
            "At the end of the period the audit log has {}. {}",
            audit_words(v, a),
            if rests == RestsOn::AuditLogAndSignIns {
                "The sign-ins agree.".to_owned()
            } else {
                format!("The sign-ins alone would say: {}", signs.words())
            }
        ),
    };
    Verdict {
        verdict,
        from_sign_ins: signs,
        from_audit_log: audit,
        rests_on,
        explanation,
        disagreements: disagreements(p, a),
    }
}

fn audit_words(v: InForce, a: &super::posture::AuditEvidence) -> String {
    let defaults = a.security_defaults.as_ref().map_or_else(String::new, |s| s.words());
    let enforced = a.mfa_enforced_at_end.join(", ");
    match v {
        InForce::SecurityDefaults => format!("security defaults on ({defaults})"),
        InForce::ConditionalAccess => format!("Conditional Access enforcing MFA ({enforced})"),
        _ => format!(
            "both security defaults on ({defaults}) and Conditional Access enforcing MFA ({enforced}), which Entra does not allow at once"
        ),
    }
}

/// Where the audit log and the sign-ins disagree.
fn disagreements(p: &super::Protections, a: &super::posture::AuditEvidence) -> Vec<String> {
    let x = &a.against;
    let mut out = Vec::new();
    if x.blocks_while_defaults_off > 0 {
        out.push(format!(
            "The audit log says security defaults were {}, yet {} sign-in(s) were blocked by security defaults (530035) after that.",
            x.defaults_off.as_ref().map_or_else(|| "off".to_owned(), |s| s.words()),
            x.blocks_while_defaults_off
        ));
    }
    if x.ca_mfa_while_defaults_on > 0 {
        out.push(format!(
            "The audit log says security defaults were {}, yet {} sign-in(s) passed a Conditional Access policy with MFA while they were on, which Entra does not allow.",
            x.defaults_on.as_ref().map_or_else(|| "on".to_owned(), |s| s.words()),
            x.ca_mfa_while_defaults_on
        ));
    }
    let enforced = a.mfa_enforced_in_range.join(", ");
    if x.blocks_while_mfa_enforced > 0 {
        out.push(format!(
            "The audit log says {enforced} required MFA and was enforced, yet {} sign-in(s) were blocked by security defaults (530035) meanwhile, which Entra does not allow at once.",
            x.blocks_while_mfa_enforced
        ));
    }
    if !a.mfa_enforced_in_range.is_empty() && x.interactive_while_mfa_enforced > 0 && x.ca_mfa_while_mfa_enforced == 0 {
        out.push(format!(
            "The audit log says {enforced} required MFA and was enforced, yet none of the {} successful interactive user sign-in(s) meanwhile passed an enforced policy with MFA (scoped to no one who signed in, or not the tenant the sign-ins come from?).",
            x.interactive_while_mfa_enforced
        ));
    }
    if a.any_record && a.mfa_enforced_in_range.is_empty() && p.ca_mfa_sign_ins > 0 {
        out.push(format!(
            "{} sign-in(s) passed an enforced Conditional Access policy with MFA, yet the audit log holds no policy requiring MFA enforced in the period: most likely one made before the audit records the history holds.",
            p.ca_mfa_sign_ins
        ));
    }
    out
}

/// `index.html`.
pub fn html(r: &Report) -> String {
    let c = &r.coverage;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>MFA coverage {label}</title><style>{CSS}</style></head><body>\n\
         <h1>MFA coverage, {label}</h1><p class=\"sub\">{from} to {to} (UTC) · {n} sign-ins · generated {at} by mfawatch</p>\n",
        label = escape(&r.label),
        from = r.window.from,
        to = r.window.to,
        n = r.sign_ins,
        at = escape(&r.generated_at),
    );
    if !r.damaged.is_empty() {
        let _ = write!(
            h,
            "<div class=\"warn\"><b>{} damaged history file(s) were skipped</b>; the numbers miss their sign-ins:{}</div>",
            r.damaged.len(),
            table(&["file", "error"], r.damaged.iter().map(|d| vec![d.file.clone(), d.error.clone()]))
        );
    }
    let _ = write!(
        h,
        "<section id=\"headline\"><div class=\"headline\">{}</div><p>of the users who signed in did so with MFA every time; {}.</p><div class=\"kpis\">",
        pct(c.coverage_ratio),
        change(r)
    );
    let privileged = r.uncovered.iter().filter(|u| u.privileged).count();
    for (name, value) in [
        ("covered", c.covered.to_string()),
        ("uncovered", c.uncovered.to_string()),
        ("never MFA", c.never_mfa.to_string()),
        ("privileged uncovered", privileged.to_string()),
        ("inactive", c.inactive.to_string()),
        ("break-glass (excluded)", c.excluded.to_string()),
        ("registration pending", c.registration_pending.to_string()),
        ("registration overdue", c.registration_overdue.to_string()),
    ] {
        // The privileged number is the one a CISO acts on first: red when not zero.
        let urgent = name == "privileged uncovered" && privileged > 0;
        let class = if urgent { "kpi urgent" } else { "kpi" };
        let _ = write!(h, "<div class=\"{class}\"><b>{}</b>{}</div>", escape(&value), escape(name));
    }
    h.push_str("</div></section>\n");

    let labels: Vec<String> = r.trend.iter().map(|(l, _)| l.clone()).collect();
    let ratios: Vec<Option<f64>> = r.trend.iter().map(|(_, v)| *v).collect();
    h.push_str("<section id=\"trend\"><h2>MFA rollout: coverage by week</h2>");
    h.push_str(&charts::ratio_line(
        "trend",
        &format!(
            "Coverage ratio, {} by {} (a {} the history covers less than 90 % of is left out)",
            r.window.period(),
            r.window.period(),
            r.window.period()
        ),
        &labels,
        &ratios,
    ));
    h.push_str("</section>\n");

    h.push_str("<section id=\"breakdown\"><h2>Coverage by user type and privilege</h2>");
    let cells: Vec<String> = r
        .breakdown
        .iter()
        .map(|b| format!("{}{}", b.user_type, if b.privileged { ", privileged" } else { "" }))
        .collect();
    // Shares, not counts: a dozen admins next to a thousand members stay visible.
    let share_of = |part: u64, b: &super::Cell| {
        let whole = b.covered + b.uncovered;
        if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 }
    };
    h.push_str(&charts::bars(
        "breakdown",
        "Covered and uncovered users, % of each group (the table has the numbers)",
        &cells,
        &[
            Bars {
                name: "covered %",
                color: charts::MFA,
                values: r.breakdown.iter().map(|b| share_of(b.covered, b)).collect(),
            },
            Bars {
                name: "uncovered %",
                color: charts::SINGLE_FACTOR,
                values: r.breakdown.iter().map(|b| share_of(b.uncovered, b)).collect(),
            },
        ],
        true,
    ));
    h.push_str(&table(
        &["user type", "privileged", "covered", "uncovered", "never MFA", "coverage"],
        r.breakdown.iter().map(|b| {
            vec![
                b.user_type.clone(),
                b.privileged.to_string(),
                b.covered.to_string(),
                b.uncovered.to_string(),
                b.never_mfa.to_string(),
                pct(b.coverage_ratio),
            ]
        }),
    ));
    h.push_str("</section>\n");

    h.push_str("<section id=\"daily\"><h2>User sign-ins by day and authentication</h2>");
    let days: Vec<String> = r.daily.iter().map(|d| d.date.format("%a %d").to_string()).collect();
    h.push_str(&charts::bars(
        "daily",
        "MFA, single factor, legacy (got in) and failed user sign-ins per day",
        &days,
        &[
            Bars { name: "MFA", color: charts::MFA, values: r.daily.iter().map(|d| d.mfa as f64).collect() },
            Bars {
                name: "single factor",
                color: charts::SINGLE_FACTOR,
                values: r.daily.iter().map(|d| d.single_factor as f64).collect(),
            },
            Bars { name: "legacy", color: charts::LEGACY, values: r.daily.iter().map(|d| d.legacy as f64).collect() },
            Bars { name: "failed", color: charts::FAILED, values: r.daily.iter().map(|d| d.failed as f64).collect() },
        ],
        true,
    ));
    h.push_str("</section>\n");

    h.push_str(&protections_section(r));
    h.push_str(&enforcement_section(r));
    h.push_str(&strength_section(r));
    h.push_str(&timeline_section(r));
    h.push_str("<section id=\"legacy\"><h2>Legacy authentication by protocol</h2>\
        <p>Legacy protocols cannot do MFA; a block (53003 Conditional Access, 530035 security defaults) proves it works.</p>");
    let protocols: Vec<String> = r.legacy.iter().map(|p| p.protocol.clone()).collect();
    h.push_str(&charts::bars(
        "legacy",
        "Legacy sign-ins that got in and that were blocked",
        &protocols,
        &[
            Bars {
                name: "got in",
                color: charts::LEGACY,
                values: r.legacy.iter().map(|p| p.succeeded as f64).collect(),
            },
            Bars { name: "blocked", color: charts::MFA, values: r.legacy.iter().map(|p| p.blocked as f64).collect() },
        ],
        false,
    ));
    h.push_str(&table(
        &["protocol", "got in", "blocked", "failed otherwise", "users still using it"],
        r.legacy.iter().map(|p| {
            let mut users = p.users.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
            if p.users.len() > 10 {
                let _ = write!(users, " and {} more", p.users.len() - 10);
            }
            vec![
                p.protocol.clone(),
                p.succeeded.to_string(),
                p.blocked.to_string(),
                p.failed_otherwise.to_string(),
                users,
            ]
        }),
    ));
    h.push_str("</section>\n");

    h.push_str("<section id=\"single-factor\"><h2>Where single-factor sign-ins happen</h2><h3>Top applications</h3>");
    h.push_str(&table(
        &["application", "single-factor sign-ins"],
        r.top_single_factor_apps.iter().map(|c| vec![c.name.clone(), c.count.to_string()]),
    ));
    h.push_str("<h3>Top users</h3>");
    h.push_str(&table(
        &["user", "single-factor sign-ins"],
        r.top_single_factor_users.iter().map(|c| vec![c.name.clone(), c.count.to_string()]),
    ));
    h.push_str("</section>\n");

    let uncovered_table = |privileged_only: bool, never_only: bool| {
        table(
            &["user", "type", "privileged", "single factor", "legacy", "last single-factor sign-in", "app", "client"],
            r.uncovered
                .iter()
                .filter(|u| (!privileged_only || u.privileged) && (!never_only || u.never_mfa))
                .take(INLINE_USERS)
                .map(|u| {
                    vec![
                        if u.upn.is_empty() { u.user_key.clone() } else { u.upn.clone() },
                        u.user_type.clone(),
                        u.privileged.to_string(),
                        u.single_factor_sign_ins.to_string(),
                        u.legacy_sign_ins.to_string(),
                        u.last_single_factor.clone().unwrap_or_default(),
                        u.last_single_factor_app.clone().unwrap_or_default(),
                        u.last_single_factor_client.clone().unwrap_or_default(),
                    ]
                }),
        )
    };
    let _ = writeln!(
        h,
        "<section id=\"privileged\"><h2>Privileged users outside MFA coverage</h2><p>Admins first: the accounts an attacker wants most.</p>{}{}</section>",
        uncovered_table(true, false),
        more(privileged, INLINE_USERS, "uncovered-users.csv")
    );
    let _ = writeln!(
        h,
        "<section id=\"never-mfa\"><h2>Users who never did MFA in the {} ({})</h2>{}{}</section>",
        r.window.period(),
        c.never_mfa,
        uncovered_table(false, true),
        more(r.uncovered.iter().filter(|u| u.never_mfa).count(), INLINE_USERS, "uncovered-users.csv")
    );
    let a = &r.admins;
    let _ = writeln!(
        h,
        "<section id=\"admins\"><h2>Admins and their MFA</h2><p>Privileged accounts: holders of a privileged directory role at the end of the {period} (as the audit log and the seeds tell) and accounts whose sign-ins were marked privileged. {total} admin(s), {roles} by directory role: {covered} covered by MFA, {uncovered} uncovered, {inactive} without a counted sign-in, {excluded} break-glass; {unregistered} with no MFA method registered, {unknown} with no registration evidence, {pr} with a phishing-resistant method.</p>{table}{more}</section>",
        period = r.window.period(),
        total = a.total,
        roles = a.from_roles,
        covered = a.covered,
        uncovered = a.uncovered,
        inactive = a.inactive,
        excluded = a.excluded,
        unregistered = a.not_registered,
        unknown = a.registration_unknown,
        pr = a.phishing_resistant,
        table = table(
            &["user", "roles", "from", "coverage", "registration", "methods"],
            a.users.iter().take(INLINE_USERS * 2).map(|u| vec![
                if u.upn.is_empty() { u.user_key.clone() } else { u.upn.clone() },
                u.roles.clone(),
                u.source.to_owned(),
                u.coverage.to_owned(),
                u.registration.replace('_', " "),
                u.methods.clone(),
            ])
        ),
        more = more(a.users.len(), INLINE_USERS * 2, "admins.csv")
    );
    let g = &r.registration_summary;
    let _ = writeln!(
        h,
        "<section id=\"registration\"><h2>MFA registration</h2><div class=\"kpis\">{kpis}</div><p>Of {users} users (signed in, or known to the directory): registered and not registered as the directory says (security-info events, per-user MFA, registration reports; {records} directory record(s), the newest {as_of}); unknown where there is no such evidence — never guessed. Pending and overdue come from the sign-ins: asked to register MFA and not done MFA since; overdue past the grace period (security defaults gave 14 days). Phishing-resistant: FIDO2, Windows Hello for Business, certificates, of those registered.</p>{table}</section>",
        kpis = [
            ("registered", g.registered.to_string()),
            ("capable", g.capable.to_string()),
            ("not registered", g.not_registered.to_string()),
            ("unknown", g.unknown.to_string()),
            ("pending", g.pending.to_string()),
            ("overdue", g.overdue.to_string()),
            ("phishing-resistant", format!("{} ({})", g.phishing_resistant, pct(g.phishing_resistant_share))),
        ]
        .iter()
        .map(|(name, value)| format!("<div class=\"kpi\"><b>{}</b>{}</div>", escape(value), escape(name)))
        .collect::<String>(),
        users = g.users,
        records = g.directory_records,
        as_of = g.directory_as_of.as_deref().unwrap_or("none"),
        table = table(
            &["user", "pending since", "overdue"],
            r.registration.iter().map(|p| vec![
                if p.upn.is_empty() { p.user_key.clone() } else { p.upn.clone() },
                p.since.to_string(),
                p.overdue.to_string()
            ])
        )
    );
    h.push_str(&risky_users_section(r));
    let _ = writeln!(
        h,
        "<section id=\"risky\"><h2>Risky sign-ins without MFA ({})</h2>{}</section>",
        r.risky_without_mfa.len(),
        sign_in_table(&r.risky_without_mfa, 50, "risky-without-mfa.csv")
    );

    h.push_str("<section id=\"mfa-failures\"><h2>MFA failures by reason</h2>");
    let reasons: Vec<String> = r.mfa_failures.iter().map(|c| c.name.clone()).collect();
    h.push_str(&charts::bars(
        "mfa-failures",
        "Failed sign-ins with an MFA meaning",
        &reasons,
        &[Bars {
            name: "sign-ins",
            color: charts::BLUE,
            values: r.mfa_failures.iter().map(|c| c.count as f64).collect(),
        }],
        false,
    ));
    h.push_str(&table(
        &["reason", "sign-ins"],
        r.mfa_failures.iter().map(|c| vec![c.name.clone(), c.count.to_string()]),
    ));
    h.push_str("</section>\n");

    h.push_str("<section id=\"report-only\"><h2>Report-only Conditional Access: what switching on would do</h2>");
    let mut would: Vec<(String, u64, u64)> = Vec::new();
    for i in &r.report_only {
        if i.result.eq_ignore_ascii_case("reportOnlyFailure") || i.result.eq_ignore_ascii_case("reportOnlyInterrupted")
        {
            would.push((i.policy.clone(), i.sign_ins, i.users));
        }
    }
    for (policy, sign_ins, users) in &would {
        let _ = write!(
            h,
            "<p>If <b>{}</b> were switched on, {sign_ins} sign-in(s) of {users} user(s) would have been blocked or interrupted.</p>",
            escape(policy)
        );
    }
    let names: Vec<String> = would.iter().map(|w| w.0.clone()).collect();
    h.push_str(&charts::bars(
        "report-only",
        "Sign-ins report-only policies would have blocked or interrupted",
        &names,
        &[Bars { name: "sign-ins", color: charts::SINGLE_FACTOR, values: would.iter().map(|w| w.1 as f64).collect() }],
        false,
    ));
    h.push_str(&table(
        &["policy", "result", "sign-ins", "users"],
        r.report_only
            .iter()
            .map(|i| vec![i.policy.clone(), i.result.clone(), i.sign_ins.to_string(), i.users.to_string()]),
    ));
    h.push_str("</section>\n");
    let _ = writeln!(
        h,
        "<section id=\"legacy-sign-ins\"><h2>Legacy sign-ins ({})</h2>{}</section>",
        r.legacy_sign_ins.len(),
        sign_in_table(&r.legacy_sign_ins, 25, "legacy-auth.csv")
    );
    h.push_str("<footer class=\"sub\"><p>Coverage: successful interactive user sign-ins and every successful legacy one are counted; a user with one single-factor or legacy counted sign-in in the week is uncovered (see docs/labels.md). A record delivered twice counts once.</p></footer></body></html>\n");
    h
}

/// "Which protections are in force": the verdict, where the audit log and
/// the sign-ins disagree, then each path's evidence from both.
fn protections_section(r: &Report) -> String {
    let p = &r.protections;
    let verdict = in_force(p, &r.audit);
    let disagreements = if verdict.disagreements.is_empty() {
        String::new()
    } else {
        let items: String = verdict.disagreements.iter().map(|d| format!("<li>{}</li>", escape(d))).collect();
        format!(
            "<div class=\"warn\" id=\"disagreements\"><p>Where the audit log and the sign-ins disagree:</p><ul>{items}</ul></div>"
        )
    };
    let a = &r.audit;
    let enforced = if a.mfa_enforced_at_end.is_empty() {
        "no policy requiring MFA enforced at the end of the period".to_owned()
    } else {
        format!("enforced at the end of the period: {}", a.mfa_enforced_at_end.join(", "))
    };
    format!(
        "<section id=\"protections\"><h2>Which protections are in force</h2><p class=\"verdict\">{verdict}</p>{disagreements}\
         <p>The evidence, for each of the three ways Microsoft's MFA guidance offers:</p>\
         <div class=\"path\"><h3>Security defaults</h3><p>{blocks} sign-in(s) blocked by security defaults (530035); {prompts} MFA registration prompt(s) (50072/50079). \
         Audit log: {defaults}.</p></div>\
         <div class=\"path\"><h3>Conditional Access</h3><p>{ca} of {interactive} successful interactive user sign-ins ({share}) passed an enforced policy with MFA; \
         {legacy_ca} legacy sign-in(s) blocked by Conditional Access (53003). Audit log: {enforced}.</p></div>\
         <div class=\"path\"><h3>Risk-based policies</h3><p>{risky_mfa} risky sign-in(s) were challenged with MFA, {risky_no_mfa} got in without it.</p></div></section>\n",
        verdict = escape(&verdict.explanation),
        blocks = p.security_defaults_blocks,
        prompts = p.registration_prompts,
        defaults = escape(&defaults_words(a.security_defaults.as_ref())),
        ca = p.ca_mfa_sign_ins,
        interactive = p.interactive_sign_ins,
        share = share(p.ca_mfa_sign_ins, p.interactive_sign_ins),
        legacy_ca = p.legacy_blocked_by_ca,
        enforced = escape(&enforced),
        risky_mfa = p.risky_with_mfa,
        risky_no_mfa = p.risky_without_mfa,
    )
}

/// "conditional_access 80.0 %, per_user_mfa 12.5 %, …" of the MFA-satisfied
/// sign-ins, the mechanisms that asked any, most first.
fn mechanism_words(e: &super::enforcement::Enforcement) -> String {
    let mut named: Vec<&super::enforcement::MechanismShare> = e.mechanisms.iter().filter(|m| m.satisfied > 0).collect();
    named.sort_by_key(|m| std::cmp::Reverse(m.satisfied));
    if named.is_empty() {
        return "no MFA-satisfied user sign-in".to_owned();
    }
    let parts: Vec<String> = named.iter().map(|m| format!("{} {}", m.mechanism, pct(m.share))).collect();
    format!("of {} MFA-satisfied sign-ins, {}", e.mfa_sign_ins, parts.join(", "))
}

/// "How MFA is enforced": which mechanism asked the users' MFA sign-ins,
/// who is still on per-user MFA, who gets MFA only from a risk policy, and
/// tenants showing security defaults and Conditional Access both.
fn enforcement_section(r: &Report) -> String {
    let e = &r.enforcement;
    let period = r.window.period();
    let mut h = String::from("<section id=\"enforcement\"><h2>How MFA is enforced</h2>");
    h.push_str(&kpis(&[
        ("MFA-satisfied sign-ins", e.mfa_sign_ins.to_string(), false),
        ("asked, not completed", e.not_completed.to_string(), false),
        ("users still on per-user MFA", e.per_user_mfa_users.len().to_string(), !e.per_user_mfa_users.is_empty()),
        ("users with MFA only from a risk policy", e.risk_only_users.len().to_string(), !e.risk_only_users.is_empty()),
        ("tenants mixing security defaults and CA", e.mixed_tenants.len().to_string(), !e.mixed_tenants.is_empty()),
    ]));
    let _ = write!(
        h,
        "<p>Which Entra feature asked each user sign-in for MFA in the {period}, from the record's <code>authenticationRequirementPolicies</code>          (a security-defaults block, 530035, is security defaults'); <b>unknown</b> when the record does not say ({} sign-in(s)).          A sign-in two mechanisms asked counts under each, so the shares can add up to more than 100 %.</p>",
        e.unknown
    );
    let names: Vec<String> = e.mechanisms.iter().map(|m| m.mechanism.replace('_', " ")).collect();
    h.push_str(&charts::bars(
        "mfa-mechanisms",
        "User sign-ins MFA was asked of, by the mechanism that asked",
        &names,
        &[
            Bars {
                name: "MFA satisfied",
                color: charts::MFA,
                values: e.mechanisms.iter().map(|m| m.satisfied as f64).collect(),
            },
            Bars {
                name: "not completed",
                color: charts::FAILED,
                values: e.mechanisms.iter().map(|m| m.not_completed as f64).collect(),
            },
        ],
        true,
    ));
    h.push_str(&table(
        &["mechanism", "MFA satisfied", "share of MFA sign-ins", "not completed", "users"],
        e.mechanisms.iter().map(|m| {
            vec![
                m.mechanism.to_owned(),
                m.satisfied.to_string(),
                pct(m.share),
                m.not_completed.to_string(),
                m.users.to_string(),
            ]
        }),
    ));
    if !e.mixed_tenants.is_empty() {
        let items: String = e
            .mixed_tenants
            .iter()
            .map(|t| {
                format!(
                    "<li>{}: {} sign-in(s) asked by security defaults, {} by Conditional Access</li>",
                    escape(&t.tenant_id),
                    t.security_defaults_sign_ins,
                    t.conditional_access_sign_ins
                )
            })
            .collect();
        let _ = write!(
            h,
            "<div class=\"warn\" id=\"mixed-tenants\"><p>Security defaults and Conditional Access both asked for MFA in the {period}, which Entra does not allow at once: one was switched for the other during the {period} (see the protections timeline), or the evidence is contradictory.</p><ul>{items}</ul></div>"
        );
    }
    let _ = write!(
        h,
        "<h3>Still on per-user MFA ({})</h3><p>Microsoft recommends moving off per-user MFA to Conditional Access (or security defaults): these users' sign-ins were asked for MFA by their per-user setting.</p>{}{}",
        e.per_user_mfa_users.len(),
        user_rows(&e.per_user_mfa_users),
        more(e.per_user_mfa_users.len(), INLINE_USERS, "mfa-enforcement.csv")
    );
    let _ = write!(
        h,
        "<h3>MFA only from a risk policy ({})</h3><p>Every mechanism that asked these users for MFA was a risk policy: they are asked only when Identity Protection sees risk, never by a policy for every sign-in.</p>{}{}",
        e.risk_only_users.len(),
        user_rows(&e.risk_only_users),
        more(e.risk_only_users.len(), INLINE_USERS, "mfa-enforcement.csv")
    );
    h.push_str(
        "</section>
",
    );
    h
}

/// "phishing_resistant 41 %, push 30 %, …" of one period's MFA sign-ins (the classes it has).
fn strength_words(p: &super::strength::PeriodMix) -> String {
    if p.mfa_sign_ins == 0 {
        return "no MFA sign-ins".into();
    }
    let total = p.mfa_sign_ins as f64;
    let words: Vec<String> = p
        .strengths
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{} {}", name.replace('_', " "), pct(Some(*n as f64 / total))))
        .collect();
    words.join(", ")
}

fn strength_section(r: &Report) -> String {
    use crate::classify::Strength;
    let st = &r.strength;
    let period = r.window.period();
    let mut h = String::from("<section id=\"mfa-strength\"><h2>How strong the MFA is</h2>");
    let now = st.periods.last();
    let share = |s: Strength| {
        now.and_then(|p| (p.mfa_sign_ins > 0).then(|| p.strengths[s as usize].1 as f64 / p.mfa_sign_ins as f64))
    };
    h.push_str(&kpis(&[
        ("phishing-resistant share", pct(share(Strength::PhishingResistant)), false),
        ("telephony share", pct(share(Strength::Telephony)), share(Strength::Telephony).is_some_and(|s| s > 0.0)),
        (
            "privileged accounts on telephony",
            st.privileged_on_telephony.len().to_string(),
            !st.privileged_on_telephony.is_empty(),
        ),
        (
            "privileged accounts on phishing-resistant MFA only",
            format!("{} of {}", st.privileged_phishing_resistant.len(), st.privileged_with_mfa),
            false,
        ),
    ]));
    let _ = write!(
        h,
        "<p>The method of each counted user sign-in with MFA, per {period}: <b>phishing-resistant</b> (FIDO2 security key, Windows Hello for Business, passkey, certificate; also when it was the primary credential), <b>push</b> (Authenticator notification, number matching, passwordless phone sign-in), <b>otp</b> (a code from an app, a token or e-mail), <b>telephony</b> (SMS, voice), <b>other</b> methods named, <b>previously satisfied</b> (MFA met by a claim in the token: the strength was an earlier sign-in's) and <b>unknown</b> (no method named).</p>"
    );
    let labels: Vec<String> = st.periods.iter().map(|p| p.period.clone()).collect();
    let names: Vec<String> = Strength::ALL.iter().map(|s| s.as_str().replace('_', " ")).collect();
    let series: Vec<Bars<'_>> = Strength::ALL
        .iter()
        .zip(charts::STRENGTHS)
        .zip(&names)
        .map(|((s, color), name)| Bars {
            name,
            color,
            values: st.periods.iter().map(|p| p.strengths[*s as usize].1 as f64).collect(),
        })
        .collect();
    h.push_str(&charts::bars("mfa-strength-chart", "Counted MFA sign-ins by method strength", &labels, &series, true));
    let mut head = vec!["period", "MFA sign-ins"];
    head.extend(names.iter().map(String::as_str));
    h.push_str(&table(
        &head,
        st.periods.iter().map(|p| {
            let mut row = vec![p.period.clone(), p.mfa_sign_ins.to_string()];
            row.extend(p.strengths.iter().map(|(_, n)| n.to_string()));
            row
        }),
    ));
    let _ = write!(
        h,
        "<h3>Privileged accounts still on telephony ({})</h3><p>Privileged accounts that did MFA by SMS or a voice call in the {period}: the first to move to a phishing-resistant method.</p>{}{}",
        st.privileged_on_telephony.len(),
        user_rows(&st.privileged_on_telephony),
        more(st.privileged_on_telephony.len(), INLINE_USERS, "mfa-strength.csv")
    );
    let _ = write!(
        h,
        "<h3>Privileged accounts on phishing-resistant MFA only ({} of {})</h3><p>Every counted sign-in of theirs with a known method was phishing-resistant.</p>{}{}",
        st.privileged_phishing_resistant.len(),
        st.privileged_with_mfa,
        user_rows(&st.privileged_phishing_resistant),
        more(st.privileged_phishing_resistant.len(), INLINE_USERS, "mfa-strength.csv")
    );
    h.push_str("</section>\n");
    h
}

/// The first [`INLINE_USERS`] of a section's users: who, sign-ins, the last.
fn user_rows(users: &[super::enforcement::EnforcedUser]) -> String {
    table(
        &["user", "sign-ins", "last"],
        users.iter().take(INLINE_USERS).map(|u| {
            vec![
                if u.upn.is_empty() { u.user_key.clone() } else { u.upn.clone() },
                u.sign_ins.to_string(),
                u.last_sign_in.clone(),
            ]
        }),
    )
}

/// Changes listed in the page; protections-timeline.csv has them all.
const INLINE_CHANGES: usize = 100;

fn kpis(items: &[(&str, String, bool)]) -> String {
    let cells: String = items
        .iter()
        .map(|(name, value, urgent)| {
            format!(
                "<div class=\"kpi{}\"><b>{}</b>{}</div>",
                if *urgent { " urgent" } else { "" },
                escape(value),
                escape(name)
            )
        })
        .collect();
    format!("<div class=\"kpis\">{cells}</div>")
}

/// "Protections timeline": the posture at the range's end, then the changes during it, newest first.
fn timeline_section(r: &Report) -> String {
    let t = &r.protections_timeline;
    let period = r.window.period();
    let mut h = String::from("<section id=\"protections-timeline\"><h2>Protections timeline</h2>");
    if !t.any_record {
        let _ = writeln!(
            h,
            "<p>The audit log holds no record of a protection (Conditional Access, security defaults, per-user MFA, the authentication methods policy) up to the end of the {period}: is the AuditLogs category exported to the hubs the daemon reads?</p></section>"
        );
        return h;
    }
    let m = &t.mfa_policies;
    h.push_str(&kpis(&[
        ("MFA policies enabled", m.enabled.to_string(), m.enabled == 0),
        ("report-only", m.report_only.to_string(), false),
        ("disabled", m.disabled.to_string(), false),
        (
            "security defaults",
            defaults_words(t.security_defaults.as_ref()).split(" (").next().unwrap_or("").to_owned(),
            false,
        ),
        (&format!("changes in the {period}"), t.changes.len().to_string(), false),
        ("weakening MFA", t.weakening.to_string(), t.weakening > 0),
    ]));
    let _ = write!(
        h,
        "<p>From the audit log, as of the end of the {period}: each Conditional Access policy requiring MFA as its newest record left it, and security defaults {}. \
         Below, every change to a protection during the {period}, newest first; a change that weakens MFA enforcement (a policy no longer enforced or excluding more, security defaults off, per-user MFA disabled) is highlighted.</p>",
        escape(&defaults_words(t.security_defaults.as_ref()))
    );
    h.push_str("<h3>Policies requiring MFA</h3>");
    h.push_str(&table(
        &["policy", "state", "exclusions", "grant", "last changed", "by"],
        t.policies.iter().map(|p| {
            vec![
                p.name.clone(),
                p.state.to_owned(),
                p.exclusions.to_string(),
                p.grant.clone(),
                p.changed.clone(),
                p.actor.clone(),
            ]
        }),
    ));
    let _ = write!(h, "<h3>Changes in the {period} ({})</h3>", t.changes.len());
    h.push_str(&classed_table(
        &["time (UTC)", "kind", "policy or user", "by", "what changed", "MFA enforcement"],
        t.changes.iter().take(INLINE_CHANGES).map(|c| {
            (
                if c.weakens { "weakens" } else { "" },
                vec![
                    c.time.clone(),
                    c.kind.replace('_', " "),
                    c.subject.clone(),
                    c.actor.clone(),
                    c.what.clone(),
                    if c.weakens { "weakens".into() } else { String::new() },
                ],
            )
        }),
    ));
    h.push_str(&more(t.changes.len(), INLINE_CHANGES, "protections-timeline.csv"));
    h.push_str("</section>\n");
    h
}

/// "Risky users": who Identity Protection left open at the range's end, and whose risk ended during it.
fn risky_users_section(r: &Report) -> String {
    let u = &r.risky_users;
    let period = r.window.period();
    let mut h = String::from("<section id=\"risky-users\"><h2>Risky users</h2>");
    h.push_str(&kpis(&[
        ("high-risk users not remediated", u.high_open.to_string(), u.high_open > 0),
        ("open, any level", u.open.to_string(), false),
        (&format!("remediated in the {period}"), u.remediated.to_string(), false),
        (&format!("dismissed in the {period}"), u.dismissed.to_string(), false),
    ]));
    let _ = write!(
        h,
        "<p><b>{high} high-risk user(s) not remediated</b> at the end of the {period}. Identity Protection's state (RiskyUsers) then: the users at risk or confirmed compromised, high first, since when their risk has stood without a break, and their MFA coverage over the {period}. \
         Then the users whose risk ended during the {period}, and how.</p>",
        high = u.high_open
    );
    let name = |x: &super::risk::RiskyUser| if x.upn.is_empty() { x.user_key.clone() } else { x.upn.clone() };
    h.push_str(&table(
        &["user", "level", "state", "since", "detail", "coverage"],
        u.users.iter().take(INLINE_USERS * 2).map(|x| {
            vec![
                name(x),
                x.level.to_owned(),
                x.state.replace('_', " "),
                x.since.clone().unwrap_or_default(),
                x.detail.clone(),
                x.coverage.to_owned(),
            ]
        }),
    ));
    h.push_str(&more(u.users.len(), INLINE_USERS * 2, "risky-users.csv"));
    let endings: Vec<String> = u.endings.iter().map(|e| format!("{} {} ({})", e.users, e.state, e.detail)).collect();
    let _ = write!(
        h,
        "<h3>Ended in the {period}: {} remediated, {} dismissed</h3><p>{}</p>",
        u.remediated,
        u.dismissed,
        escape(&if endings.is_empty() { "none".to_owned() } else { endings.join("; ") })
    );
    h.push_str(&table(
        &["user", "ended", "how", "when", "coverage"],
        u.ended
            .iter()
            .take(INLINE_USERS * 2)
            .map(|x| vec![name(x), x.state.to_owned(), x.detail.clone(), x.updated.clone(), x.coverage.to_owned()]),
    ));
    h.push_str(&more(u.ended.len(), INLINE_USERS * 2, "risky-users.csv"));
    h.push_str("</section>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_that_would_start_a_formula_are_quoted_and_control_characters_removed() {
        for (text, want) in [
            ("=HYPERLINK(\"http://evil.example\",\"click\")", "'=HYPERLINK(\"http://evil.example\",\"click\")"),
            ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "' x"),
            ("\rx", "' x"),
            ("ann\u{1b}[31m@contoso.example", "ann[31m@contoso.example"),
            ("Office 365 Exchange Online", "Office 365 Exchange Online"),
        ] {
            assert_eq!(cell(text), want, "{text:?}");
        }
        #[derive(Serialize)]
        struct Row {
            app: String,
            count: i64,
        }
        let bytes = csv_of(&[Row { app: "=1+1".into(), count: -3 }]).unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), "app,count\n'=1+1,-3\n", "numbers stay numbers");
    }

    fn protections(sd_blocks: u64, ca_mfa: u64, legacy_ca: u64, prompts: u64) -> super::super::Protections {
        super::super::Protections {
            security_defaults_blocks: sd_blocks,
            registration_prompts: prompts,
            ca_mfa_sign_ins: ca_mfa,
            interactive_sign_ins: 100,
            legacy_blocked_by_ca: legacy_ca,
            risky_with_mfa: 0,
            risky_without_mfa: 0,
        }
    }

    use super::super::posture::{Against, AuditEvidence, Switch};

    /// No protection record in the audit log: the sign-ins alone.
    fn signs_only(p: &super::super::Protections) -> Verdict {
        in_force(p, &AuditEvidence::default())
    }

    #[test]
    fn security_defaults_and_conditional_access_are_never_both_claimed() {
        assert_eq!(signs_only(&protections(3, 40, 0, 0)).verdict, InForce::Contradictory);
        assert!(signs_only(&protections(3, 0, 2, 0)).explanation.starts_with("Contradictory evidence"));
        assert_eq!(signs_only(&protections(3, 0, 0, 5)).verdict, InForce::SecurityDefaults);
        assert_eq!(signs_only(&protections(0, 40, 0, 5)).verdict, InForce::ConditionalAccess);
        // Registration prompts come from either: no evidence of security defaults alone.
        assert_eq!(signs_only(&protections(0, 0, 0, 5)).verdict, InForce::NoEvidence);
        for p in [protections(3, 40, 0, 0), protections(0, 40, 1, 9)] {
            let words = signs_only(&p).explanation;
            assert!(!(words.contains("look on") && words.contains("Conditional Access enforces")), "{words}");
        }
    }

    #[test]
    fn without_an_audit_record_the_verdict_says_it_rests_on_the_sign_ins_alone() {
        let v = signs_only(&protections(0, 40, 0, 0));
        assert_eq!((v.from_audit_log, v.rests_on), (None, RestsOn::SignIns));
        assert!(v.explanation.ends_with("this rests on the sign-ins alone."), "{}", v.explanation);
        assert!(v.disagreements.is_empty(), "{:?}", v.disagreements);
        // Records of other protections only (per-user MFA): still the sign-ins, said otherwise.
        let other = AuditEvidence { any_record: true, ..AuditEvidence::default() };
        let v = in_force(&protections(0, 40, 0, 0), &other);
        assert_eq!((v.verdict, v.rests_on), (InForce::ConditionalAccess, RestsOn::SignIns));
        assert!(!v.explanation.contains("sign-ins alone"), "{}", v.explanation);
    }

    fn switch(enabled: bool) -> Switch {
        Switch {
            at_ms: 1_794_726_000_000,
            at: "2026-11-15T07:00:00Z".into(),
            enabled,
            actor: Some("eve@contoso.example".into()),
        }
    }

    /// Security defaults off since 11-15 by eve, one MFA policy enforced at the end.
    fn audit(against: Against) -> AuditEvidence {
        AuditEvidence {
            any_record: true,
            policies_known: 2,
            security_defaults: Some(switch(false)),
            mfa_enforced_at_end: vec!["Require MFA for admins".into()],
            mfa_enforced_in_range: vec!["Require MFA for admins".into()],
            against,
        }
    }

    #[test]
    fn a_switch_the_audit_log_records_explains_sign_ins_that_look_contradictory() {
        // 530035 before the switch-off, Conditional Access after: both in the sign-ins, no disagreement.
        let v = in_force(
            &protections(3, 40, 0, 0),
            &audit(Against { ca_mfa_while_mfa_enforced: 40, ..Against::default() }),
        );
        assert_eq!(v.from_sign_ins, InForce::Contradictory);
        assert_eq!((v.verdict, v.rests_on), (InForce::ConditionalAccess, RestsOn::AuditLog));
        assert!(
            v.explanation.contains("Conditional Access enforcing MFA (Require MFA for admins)"),
            "{}",
            v.explanation
        );
        assert!(v.disagreements.is_empty(), "{:?}", v.disagreements);
        let agree = in_force(&protections(0, 40, 0, 0), &audit(Against::default()));
        assert_eq!(agree.rests_on, RestsOn::AuditLogAndSignIns);
        assert!(agree.explanation.ends_with("The sign-ins agree."), "{}", agree.explanation);
    }

    #[test]
    fn blocks_after_the_audit_log_switched_security_defaults_off_are_a_disagreement() {
        let against = Against { blocks_while_defaults_off: 4, defaults_off: Some(switch(false)), ..Against::default() };
        let v = in_force(&protections(4, 0, 0, 0), &audit(against));
        assert_eq!(v.disagreements.len(), 1, "{:?}", v.disagreements);
        let d = &v.disagreements[0];
        assert!(
            d.contains("switched off on 2026-11-15T07:00:00Z by eve@contoso.example")
                && d.contains("4 sign-in(s) were blocked by security defaults (530035) after that"),
            "{d}"
        );
        // No block after the switch: nothing to say.
        assert!(in_force(&protections(4, 0, 0, 0), &audit(Against::default())).disagreements.is_empty());
    }

    #[test]
    fn conditional_access_while_the_audit_log_says_security_defaults_were_on_is_a_disagreement() {
        let mut a =
            audit(Against { ca_mfa_while_defaults_on: 7, defaults_on: Some(switch(true)), ..Against::default() });
        a.security_defaults = Some(switch(true));
        a.mfa_enforced_at_end.clear();
        a.mfa_enforced_in_range.clear();
        let v = in_force(&protections(0, 7, 0, 0), &a);
        assert_eq!((v.verdict, v.from_audit_log), (InForce::SecurityDefaults, Some(InForce::SecurityDefaults)));
        assert!(
            v.disagreements.iter().any(|d| d.contains("switched on") && d.contains("7 sign-in(s) passed")),
            "{:?}",
            v.disagreements
        );
        // And the policy behind those sign-ins is unknown to the audit log.
        assert!(
            v.disagreements
                .iter()
                .any(|d| d.starts_with("7 sign-in(s) passed an enforced") && d.contains("no policy requiring MFA")),
            "{:?}",
            v.disagreements
        );
        // Both on at the end in the audit log itself: contradictory, never both claimed.
        a.mfa_enforced_at_end = vec!["Require MFA for admins".into()];
        assert_eq!(in_force(&protections(0, 7, 0, 0), &a).verdict, InForce::Contradictory);
    }

    #[test]
    fn an_enforced_mfa_policy_no_sign_in_passed_is_a_disagreement() {
        let against =
            Against { interactive_while_mfa_enforced: 120, ca_mfa_while_mfa_enforced: 0, ..Against::default() };
        let v = in_force(&protections(0, 0, 0, 0), &audit(against.clone()));
        assert_eq!((v.verdict, v.from_sign_ins), (InForce::ConditionalAccess, InForce::NoEvidence));
        assert_eq!(v.disagreements.len(), 1, "{:?}", v.disagreements);
        assert!(
            v.disagreements[0].contains("Require MFA for admins required MFA and was enforced, yet none of the 120"),
            "{:?}",
            v.disagreements
        );
        // One sign-in passed it: no disagreement; none signed in: no evidence either way.
        let passed = Against { ca_mfa_while_mfa_enforced: 1, ..against };
        assert!(in_force(&protections(0, 1, 0, 0), &audit(passed)).disagreements.is_empty());
        assert!(in_force(&protections(0, 0, 0, 0), &audit(Against::default())).disagreements.is_empty());
        // Security defaults blocking while it was enforced.
        let blocked = Against { blocks_while_mfa_enforced: 2, ca_mfa_while_mfa_enforced: 5, ..Against::default() };
        let v = in_force(&protections(2, 5, 0, 0), &audit(blocked));
        assert!(
            v.disagreements
                .iter()
                .any(|d| d.contains("2 sign-in(s) were blocked by security defaults (530035) meanwhile")),
            "{:?}",
            v.disagreements
        );
    }

    #[test]
    fn an_audit_log_showing_neither_leaves_the_verdict_to_the_sign_ins() {
        let mut a = audit(Against::default());
        a.mfa_enforced_at_end.clear();
        a.mfa_enforced_in_range.clear();
        let v = in_force(&protections(3, 0, 0, 0), &a);
        assert_eq!(
            (v.from_audit_log, v.verdict, v.rests_on),
            (Some(InForce::NoEvidence), InForce::SecurityDefaults, RestsOn::SignIns)
        );
        assert!(v.explanation.contains("audit log shows neither"), "{}", v.explanation);
        let none = in_force(&protections(0, 0, 0, 0), &a);
        assert_eq!((none.verdict, none.rests_on), (InForce::NoEvidence, RestsOn::AuditLogAndSignIns));
    }
}
