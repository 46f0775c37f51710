//! report: the weekly MFA-coverage report from the history (polars).
//!
//! Reads only the Parquet files of its range and of the days before it that
//! the rollup does not stand for (`rollup`: the past ISO weeks, summed up per
//! user, kept beside the history and checked against its files), counts a
//! record delivered twice once (same category and record id, §5), works out
//! coverage over the week exactly as the daemon does over its window
//! (SIGNIN-SEMANTICS §6, whole UTC days), and writes `index.html` (inline
//! SVG charts, no script, no external URL), `summary.md`, `summary.json` and
//! CSVs. A damaged file is named, skipped and listed in the report; a missing
//! history or an empty week is an error that says so.

pub mod charts;
mod directory;
pub mod enforcement;
pub mod posture;
pub mod render;
pub mod risk;
pub mod rollup;
mod scan;
pub mod strength;
mod users;

use scan::*;
use users::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use polars::prelude::*;
use serde::Serialize;

use crate::history::files;
use crate::history::rows::col as c;

/// The period before the report's, as the report compares with it.
#[derive(Debug, Clone, Serialize)]
pub struct Previous {
    pub window: Window,
    /// From its first sign-in to its last.
    pub hours_of_data: f64,
    /// Whether its data cover it well enough (90 %) to compare with.
    pub compared: bool,
}

/// The days a report covers, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Window {
    /// ISO week `2026-W47`.
    pub fn iso_week(text: &str) -> anyhow::Result<Window> {
        let bad = || anyhow::anyhow!("--week {text:?}: write an ISO week like 2026-W47");
        let (year, week) = text.trim().split_once("-W").or_else(|| text.trim().split_once("-w")).ok_or_else(bad)?;
        let (year, week): (i32, u32) = (year.parse().map_err(|_| bad())?, week.parse().map_err(|_| bad())?);
        let from = NaiveDate::from_isoywd_opt(year, week, chrono::Weekday::Mon).ok_or_else(bad)?;
        Ok(Window { from, to: from + chrono::Days::new(6) })
    }

    /// The last complete ISO week before `today`.
    pub fn last_complete_week(today: NaiveDate) -> Window {
        let this_monday = today - chrono::Days::new(today.weekday().num_days_from_monday() as u64);
        let from = this_monday - chrono::Days::new(7);
        Window { from, to: from + chrono::Days::new(6) }
    }

    pub fn days(&self) -> i64 {
        (self.to - self.from).num_days() + 1
    }

    /// Whether it is an ISO week (Monday to Sunday).
    fn is_iso_week(&self) -> bool {
        self.from.weekday() == chrono::Weekday::Mon && self.days() == 7
    }

    /// Its name: `2026-W47` for an ISO week, else `from_to`.
    pub fn label(&self) -> String {
        let w = self.from.iso_week();
        if self.is_iso_week() { format!("{}-W{:02}", w.year(), w.week()) } else { format!("{}_{}", self.from, self.to) }
    }

    /// For a chart's axis: `2026-W47`, else `10-07–10-21`.
    pub fn short_label(&self) -> String {
        if self.is_iso_week() {
            self.label()
        } else {
            format!("{}–{}", self.from.format("%m-%d"), self.to.format("%m-%d"))
        }
    }

    /// Start of the first day and end of the last, Unix milliseconds [start, end).
    fn millis(&self) -> (i64, i64) {
        (midnight_ms(self.from), midnight_ms(self.to) + 86_400_000)
    }

    /// The window `periods` of its own length later (earlier when negative):
    /// the period before a 15-day window is the 15 days before it, disjoint.
    fn shifted(&self, periods: i64) -> Window {
        let d = chrono::Duration::days(self.days() * periods);
        Window { from: self.from + d, to: self.to + d }
    }

    /// "week" for a week, else "15 days".
    pub fn period(&self) -> String {
        if self.days() == 7 { "week".into() } else { format!("{} days", self.days()) }
    }
}

fn midnight_ms(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0).map_or(0, |t| t.and_utc().timestamp_millis())
}

/// How the report is asked for.
pub struct Request {
    pub history: PathBuf,
    pub window: Window,
    /// Weeks of MFA-rollout trend (the report's week and those before).
    pub trend_weeks: i64,
    /// Days a user may stay registration_pending before being overdue.
    pub registration_grace_days: i64,
    /// Which roles make their holders privileged (`directory.privileged_roles`).
    pub privileged_roles: crate::directory::PrivilegedRoles,
    /// Whether the rollup of past weeks is used, made again, or left alone.
    pub rollup: rollup::Use,
}

/// A file of the history that could not be read.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Damaged {
    pub file: String,
    pub error: String,
}

/// Users per coverage state, as /api/v1/coverage counts them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Coverage {
    pub users: u64,
    pub covered: u64,
    pub uncovered: u64,
    pub never_mfa: u64,
    pub inactive: u64,
    pub excluded: u64,
    pub registration_pending: u64,
    pub registration_overdue: u64,
    pub coverage_ratio: Option<f64>,
}

/// One (user type, privileged) cell of the coverage.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub user_type: String,
    pub privileged: bool,
    pub covered: u64,
    pub uncovered: u64,
    pub never_mfa: u64,
    pub coverage_ratio: Option<f64>,
}

/// An uncovered user, for the list and `uncovered-users.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct UncoveredUser {
    pub user_key: String,
    pub upn: String,
    pub user_type: String,
    pub privileged: bool,
    pub never_mfa: bool,
    pub single_factor_sign_ins: u64,
    pub legacy_sign_ins: u64,
    pub last_single_factor: Option<String>,
    pub last_single_factor_app: Option<String>,
    pub last_single_factor_client: Option<String>,
}

/// Sign-ins of one day by how they authenticated (user sign-ins).
#[derive(Debug, Clone, Serialize)]
pub struct Daily {
    pub date: NaiveDate,
    pub mfa: u64,
    pub single_factor: u64,
    pub legacy: u64,
    pub failed: u64,
}

/// A legacy protocol: who got in, who was blocked.
#[derive(Debug, Clone, Serialize)]
pub struct Protocol {
    pub protocol: String,
    pub succeeded: u64,
    pub blocked: u64,
    pub failed_otherwise: u64,
    /// Users who got in with it, most first.
    pub users: Vec<String>,
    pub user_count: u64,
}

/// A name and how many.
#[derive(Debug, Clone, Serialize)]
pub struct Count {
    pub name: String,
    pub count: u64,
}

/// One sign-in listed in full (legacy, risky without MFA, a user's notable ones).
#[derive(Debug, Clone, Serialize)]
pub struct SignInRow {
    pub time: String,
    pub upn: String,
    pub user_key: String,
    pub app: String,
    pub client_app: String,
    pub outcome_code: i64,
    pub risk_level: String,
    /// Why it is risky, in words ("high risk", "risk state: at risk, level
    /// hidden by licence"); empty when it is not.
    pub risk: String,
    pub ip: String,
    pub country: String,
    pub record_id: String,
    pub correlation_id: String,
    /// Why it is notable: its labels and MFA failure, `;`-separated
    /// (`legacy_auth;single_factor`, `failed;mfa_failure:denied`).
    pub labels: String,
}

/// What a report-only Conditional Access policy would have done.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyImpact {
    pub policy: String,
    pub result: String,
    pub sign_ins: u64,
    pub users: u64,
}

/// A registration_pending user.
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    pub user_key: String,
    pub upn: String,
    pub since: NaiveDate,
    pub overdue: bool,
}

/// The evidence of each of the three paths of Microsoft's MFA guidance.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Protections {
    /// Security defaults: sign-ins blocked (530035) and registration prompts.
    pub security_defaults_blocks: u64,
    pub registration_prompts: u64,
    /// Conditional Access: interactive user sign-ins that passed an enforced
    /// policy with MFA, of all successful interactive user sign-ins.
    pub ca_mfa_sign_ins: u64,
    pub interactive_sign_ins: u64,
    pub legacy_blocked_by_ca: u64,
    /// Risk-based policies: risky sign-ins challenged with MFA vs let through.
    pub risky_with_mfa: u64,
    pub risky_without_mfa: u64,
}

/// Everything the report says.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub window: Window,
    pub label: String,
    pub generated_at: String,
    pub sign_ins: u64,
    pub duplicates: u64,
    pub coverage: Coverage,
    /// The period before, when its data cover it (see `previous_period`).
    pub previous: Option<Coverage>,
    /// The period of the same length before the report's, and how much of it the history covers.
    pub previous_period: Option<Previous>,
    /// (week label, ratio) oldest first.
    pub trend: Vec<(String, Option<f64>)>,
    pub breakdown: Vec<Cell>,
    pub daily: Vec<Daily>,
    pub legacy: Vec<Protocol>,
    pub top_single_factor_apps: Vec<Count>,
    pub top_single_factor_users: Vec<Count>,
    pub uncovered: Vec<UncoveredUser>,
    pub registration: Vec<Pending>,
    pub risky_without_mfa: Vec<SignInRow>,
    pub legacy_sign_ins: Vec<SignInRow>,
    pub mfa_failures: Vec<Count>,
    pub report_only: Vec<PolicyImpact>,
    pub protections: Protections,
    /// Admins and their MFA: privileged users by directory roles or as their sign-ins were marked.
    pub admins: directory::Admins,
    /// MFA registration: the directory's evidence joined with the sign-ins'.
    pub registration_summary: directory::RegistrationSummary,
    /// The protections at the range's end and their changes during it, from the audit log.
    pub protections_timeline: posture::Timeline,
    /// What the audit log says of security defaults and Conditional Access, with the sign-ins counted against it.
    pub audit: posture::AuditEvidence,
    /// Identity Protection's risky users at the range's end.
    pub risky_users: risk::RiskyUsers,
    /// How MFA is enforced: which mechanism asked the users' MFA sign-ins.
    pub enforcement: enforcement::Enforcement,
    /// How strong the MFA is: the method mix per period, privileged accounts by method.
    pub strength: strength::MethodStrength,
    pub damaged: Vec<Damaged>,
    /// How the rollup served the report: what a report read and made.
    pub rollup: RollupUse,
}

/// How the rollup served a report (not in its outputs: the figures are the
/// same with it or without it).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RollupUse {
    /// ISO weeks taken from the rollup instead of their date folders.
    pub weeks_used: u64,
    /// Weeks made from their date folders and kept.
    pub weeks_made: u64,
    /// Date folders whose files were read.
    pub days_read: u64,
    /// Rollup files that could not be read (made again), and why.
    pub ignored: Vec<Damaged>,
    /// Why weeks made were not kept, when they were not.
    pub not_kept: Vec<String>,
}

/// What report-only Conditional Access policies would have done over the
/// week: per (policy, result), sign-ins and distinct users. A sign-in carries
/// one result per report-only policy (seven in a typical tenant), so the
/// results are counted a day at a time — a duplicate of a record is in the
/// same date folder as the record — and only (policy, result, user) counts
/// are kept between days: memory follows a day, not the week.
fn report_only_impact(week_files: &[PathBuf], repeats: &Repeats, w: Window) -> anyhow::Result<DataFrame> {
    // Sign-ins per (policy, result, user) so far, folded in after each day:
    // what is kept follows the users, not the days.
    let mut so_far: Option<DataFrame> = None;
    for files in by_folder(week_files) {
        let day = between(scan(files, repeats)?, w).select([col(c::USER_KEY), col(c::REPORT_ONLY)]).collect()?;
        let longest = day.clone().lazy().select([col(c::REPORT_ONLY).list().len().max().alias("n")]).collect()?;
        let mut counted: Vec<LazyFrame> = so_far.take().map(IntoLazy::lazy).into_iter().collect();
        // The i-th result of every sign-in at a time rather than all of them
        // unrolled at once (`explode`), which took twice the day's size again.
        for i in 0..u64_of(&longest, "n", 0) {
            let result = col(c::REPORT_ONLY).list().get(lit(i as i64), true);
            let counts = day
                .clone()
                .lazy()
                .select([
                    col(c::USER_KEY),
                    result.clone().struct_().field_by_name(c::POLICY).alias(c::POLICY),
                    result.struct_().field_by_name(c::RESULT).alias(c::RESULT),
                ])
                .filter(col(c::POLICY).is_not_null())
                .group_by([col(c::POLICY), col(c::RESULT), col(c::USER_KEY)])
                .agg([len().cast(DataType::UInt64).alias("sign_ins")])
                .collect()?;
            counted.push(counts.lazy());
        }
        drop(day);
        if !counted.is_empty() {
            so_far = Some(
                concat(counted, UnionArgs::default())?
                    .group_by([col(c::POLICY), col(c::RESULT), col(c::USER_KEY)])
                    .agg([col("sign_ins").sum().alias("sign_ins")])
                    .collect()?,
            );
        }
    }
    let Some(counts) = so_far else { return Ok(DataFrame::empty()) };
    Ok(counts
        .lazy()
        .group_by([col(c::POLICY), col(c::RESULT)])
        .agg([col("sign_ins").sum().alias("sign_ins"), col(c::USER_KEY).n_unique().alias("users")])
        .sort_by_exprs([col(c::POLICY), col(c::RESULT)], SortMultipleOptions::default())
        .collect()?)
}

/// Rows of user sign-ins that name an account (the users of §6).
/// A risky sign-in that got in, of a user (service principals and managed
/// identities cannot do MFA), with MFA (`true`) or without: the one
/// definition of "risky without MFA" (docs/labels.md) the report uses everywhere.
fn risky(with_mfa: bool) -> Expr {
    let mfa = if with_mfa { col(c::MFA_SATISFIED) } else { col(c::MFA_SATISFIED).not() };
    of_a_user().and(col(c::RISKY)).and(col(c::SUCCESS)).and(mfa)
}

fn risky_without_mfa() -> Expr {
    risky(false)
}

/// A sign-in security defaults blocked (530035): their own evidence.
fn security_defaults_block() -> Expr {
    col(c::BLOCKED_BY).eq(lit("security_defaults"))
}

/// A successful interactive user sign-in: where an MFA policy shows or does not.
fn interactive_ok() -> Expr {
    col(c::SUBJECT).eq(lit("user")).and(col(c::INTERACTIVE)).and(col(c::SUCCESS))
}

/// One that passed an enforced Conditional Access policy with MFA: Conditional Access's own evidence.
fn passed_ca_with_mfa() -> Expr {
    interactive_ok().and(col(c::CA_STATUS).eq(lit("success"))).and(col(c::MFA_SATISFIED))
}

/// A row of a user's sign-in (not a service principal's, nor one naming no account).
fn of_a_user() -> Expr {
    col(c::SUBJECT).eq(lit("user")).and(col(c::UNKNOWN_ACCOUNT).not()).and(col(c::USER_KEY).is_not_null())
}

fn users_only(lf: LazyFrame) -> LazyFrame {
    lf.filter(of_a_user())
}

fn between(lf: LazyFrame, w: Window) -> LazyFrame {
    let (start, end) = w.millis();
    lf.filter(col("ms").gt_eq(lit(start)).and(col("ms").lt(lit(end))))
}

fn u64_of(df: &DataFrame, name: &str, row: usize) -> u64 {
    df.column(name).ok().and_then(|c| c.get(row).ok()).and_then(|v| v.extract::<u64>()).unwrap_or(0)
}

fn str_of(df: &DataFrame, name: &str, row: usize) -> String {
    match df.column(name).ok().and_then(|c| c.get(row).ok()) {
        Some(AnyValue::String(s)) => s.to_owned(),
        Some(AnyValue::StringOwned(s)) => s.to_string(),
        Some(AnyValue::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn bool_of(df: &DataFrame, name: &str, row: usize) -> bool {
    matches!(df.column(name).ok().and_then(|c| c.get(row).ok()), Some(AnyValue::Boolean(true)))
}

fn ms_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn i64_of(df: &DataFrame, name: &str, row: usize) -> i64 {
    df.column(name).ok().and_then(|c| c.get(row).ok()).and_then(|v| v.extract::<i64>()).unwrap_or(0)
}

fn ratio(covered: u64, uncovered: u64) -> Option<f64> {
    (covered + uncovered > 0).then(|| covered as f64 / (covered + uncovered) as f64)
}

/// The share of a period's hours the history must cover for the period to
/// be compared with or drawn in the trend.
const COVERED: f64 = 0.9;

/// What the history holds of a period (`users::user_states` works it out).
#[derive(Debug, Clone, Copy)]
struct Span {
    /// The newest sign-in (of any subject) before the period's end, Unix ms.
    newest_ms: i64,
    /// Hours from the period's first sign-in to its last.
    hours: f64,
}

impl Span {
    /// Whether the history covers `w` well enough (see [`COVERED`]).
    fn covers(&self, w: Window) -> bool {
        self.hours >= COVERED * (w.days() * 24) as f64
    }
}

fn counts(df: &DataFrame, name_col: &str, count_col: &str) -> Vec<Count> {
    (0..df.height()).map(|r| Count { name: str_of(df, name_col, r), count: u64_of(df, count_col, r) }).collect()
}

fn sign_in_rows(df: &DataFrame) -> Vec<SignInRow> {
    (0..df.height())
        .map(|r| SignInRow {
            labels: labels_of(df, r),
            time: ms_text(i64_of(df, "ms", r)),
            upn: str_of(df, c::UPN, r),
            user_key: str_of(df, c::USER_KEY, r),
            app: str_of(df, c::APP, r),
            client_app: str_of(df, c::CLIENT_APP, r),
            outcome_code: i64_of(df, c::OUTCOME_CODE, r),
            risk_level: str_of(df, c::RISK_LEVEL, r),
            risk: if bool_of(df, c::RISKY, r) {
                let level = crate::classify::RiskLevel::parse(Some(&str_of(df, c::RISK_LEVEL, r)));
                let state = str_of(df, c::RISK_STATE, r);
                crate::classify::risk_reason(level.unwrap_or(crate::classify::RiskLevel::None), Some(&state))
            } else {
                String::new()
            },
            ip: str_of(df, c::IP, r),
            country: str_of(df, c::COUNTRY, r),
            record_id: str_of(df, c::RECORD_ID, r),
            correlation_id: str_of(df, c::CORRELATION_ID, r),
        })
        .collect()
}

const ROW_COLUMNS: [&str; 18] = [
    c::UPN,
    c::USER_KEY,
    c::APP,
    c::CLIENT_APP,
    c::OUTCOME_CODE,
    c::RISK_LEVEL,
    c::RISK_STATE,
    c::IP,
    c::COUNTRY,
    c::RECORD_ID,
    c::CORRELATION_ID,
    c::MFA_SATISFIED,
    c::SINGLE_FACTOR,
    c::LEGACY_AUTH,
    c::RISKY,
    c::FAILED,
    c::COUNTED,
    c::MFA_FAILURE,
];

/// The labels of row `r`, and its MFA failure.
fn labels_of(df: &DataFrame, r: usize) -> String {
    let mut out: Vec<String> = [c::MFA_SATISFIED, c::SINGLE_FACTOR, c::LEGACY_AUTH, c::RISKY, c::FAILED]
        .iter()
        .filter(|name| bool_of(df, name, r))
        .map(|name| name.to_string())
        .collect();
    let failure = str_of(df, c::MFA_FAILURE, r);
    if !failure.is_empty() {
        out.push(format!("mfa_failure:{failure}"));
    }
    out.join(";")
}

/// A user's notable sign-ins — legacy, single-factor, risky, MFA failures —
/// newest first, from the history's files of the last `days` days (what the
/// last checkpoint made durable). For `/api/v1/users/{user}`: the pivot into
/// Entra's own log by record and correlation id, without the coverage state
/// keeping any of it.
pub fn notable_sign_ins(dir: &Path, user_key: &str, days: u32, limit: usize) -> anyhow::Result<Vec<SignInRow>> {
    let _reading = crate::history::files::read_lock(dir)?;
    let paths = recent_files(dir, days)?;
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let notable = col(c::LEGACY_AUTH)
        .or(col(c::SINGLE_FACTOR).and(col(c::COUNTED)))
        .or(col(c::RISKY))
        .or(col(c::MFA_FAILURE).is_not_null());
    // The user's rows, one copy of each record, then the notable ones: a
    // copy that completed the MFA of a single-factor one is not notable.
    let df = LazyFrame::scan_parquet_files(paths.into(), crate::history::files::scan_args(None))?
        .filter(col(c::USER_KEY).eq(lit(user_key.to_owned())))
        .with_column(col(c::TIME).cast(DataType::Int64).alias("ms"))
        .collect()?;
    let df = df
        .filter(&best_of_each_record(&df, user_key)?)?
        .lazy()
        .filter(notable)
        .sort(["ms"], SortMultipleOptions::new().with_order_descending(true))
        .limit(limit as u32)
        .collect()?;
    Ok(sign_in_rows(&df))
}

/// Which rows of one user's sign-ins (with `ms`) stand for their record: of
/// a record the history holds twice, the copy that says most, as the report
/// keeps it (`Carried::rank`; of equals the first), by its identity (worked
/// out where a file from before it lacks one).
fn best_of_each_record(df: &DataFrame, user_key: &str) -> anyhow::Result<BooleanChunked> {
    let ids = df.column(c::IDENTITY)?.u64()?;
    let text = |name: &str| df.column(name).and_then(|c| c.str().cloned());
    let (category, record_id, correlation) = (text(c::CATEGORY)?, text(c::RECORD_ID)?, text(c::CORRELATION_ID)?);
    let (level, method) = (text(c::RISK_LEVEL)?, text(c::MFA_METHOD)?);
    let flag = |name: &str| df.column(name).and_then(|c| c.bool().cloned());
    let (risky, mfa) = (flag(c::RISKY)?, flag(c::MFA_SATISFIED)?);
    let ms = df.column("ms")?.i64()?;
    let mut best: std::collections::HashMap<u64, (usize, u8)> = std::collections::HashMap::new();
    for i in 0..df.height() {
        let identity = ids.get(i).unwrap_or_else(|| {
            let (category, time) = (category.get(i).unwrap_or(""), ms.get(i).unwrap_or(0));
            crate::decode::Identity::of(category, record_id.get(i), correlation.get(i), time, Some(user_key)).0
        });
        let rank = crate::classify::Carried::of_row(risky.get(i), level.get(i), mfa.get(i), method.get(i)).rank();
        let slot = best.entry(identity).or_insert((i, rank));
        if rank > slot.1 {
            *slot = (i, rank);
        }
    }
    let mut keep = vec![false; df.height()];
    for (row, _) in best.into_values() {
        keep[row] = true;
    }
    Ok(BooleanChunked::from_slice("best".into(), &keep))
}

/// The history's files of the last `days` days (the caller holds the read lock).
fn recent_files(dir: &Path, days: u32) -> anyhow::Result<Vec<PlRefPath>> {
    let since = crate::clock::wall().date_naive() - chrono::Days::new(u64::from(days));
    let mut paths = Vec::new();
    for (date, folder) in crate::history::files::dates(dir)? {
        if date >= since {
            paths.extend(
                crate::history::files::files(&folder)?
                    .into_iter()
                    .map(|(_, p)| PlRefPath::new(p.to_string_lossy().as_ref())),
            );
        }
    }
    Ok(paths)
}

fn row_columns() -> Vec<Expr> {
    let mut out = vec![col("ms")];
    out.extend(ROW_COLUMNS.iter().map(|n| col(*n)));
    out
}

/// Builds the report.
pub fn build(req: &Request) -> anyhow::Result<Report> {
    let dir = &req.history;
    anyhow::ensure!(
        dir.is_dir(),
        "no history at {}: is history.enabled on, and history.dir (default <checkpoint.dir>/history) this folder?",
        dir.display()
    );
    // No file of the history is replaced or removed until the report is done
    // (a day merged meanwhile would be read twice, or a part found gone).
    let _reading = files::read_lock(dir)?;
    let w = req.window;
    // The report's period and the trend's periods before it, oldest first:
    // periods of the report's own length, back to back (a 15-day report's
    // "before" is the 15 days before it).
    let weeks: Vec<Window> = (0..req.trend_weeks.max(1)).rev().map(|back| w.shifted(-back)).collect();
    // Coverage looks at every sign-in up to the period's end (who exists,
    // their last MFA, their registration): the ISO weeks before the range
    // that no period begins inside of come from the rollup, the other days
    // from their files.
    progress(&format!("{} ({} to {}): finding the history's files", w.label(), w.from, w.to));
    let found = pieces(dir, req, &weeks)?;
    let Found { pieces, mut damaged, listings, mut rollup } = found;
    let raw_files: Vec<PathBuf> = pieces
        .iter()
        .flat_map(|piece| match piece {
            Piece::Day(_, files) => files.clone(),
            Piece::Make(_, days) => days.iter().flat_map(|(_, files)| files.clone()).collect(),
            Piece::Week(_) => Vec::new(),
        })
        .collect();
    let week_files: Vec<PathBuf> = pieces
        .iter()
        .filter_map(|piece| match piece {
            Piece::Day(date, files) if *date >= w.from => Some(files.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    anyhow::ensure!(
        !week_files.is_empty(),
        "the history in {} has no sign-ins for {} ({} to {}); the days it has: {}",
        dir.display(),
        w.label(),
        w.from,
        w.to,
        describe_days(dir)
    );
    progress(&format!(
        "scanning {} files ({} of them for the {}); {} weeks from the rollup, {} to make",
        raw_files.len(),
        week_files.len(),
        w.period(),
        rollup.weeks_used,
        listings.len()
    ));
    // A record's copies share a date folder: only the folders read are looked at.
    let repeats = Repeats::of(&raw_files)?;
    let week = between(scan(&week_files, &repeats)?, w);
    let stats = week.clone().select([len().alias("sign_ins")]).collect()?;
    let sign_ins = u64_of(&stats, "sign_ins", 0);
    anyhow::ensure!(sign_ins > 0, "the history has no sign-ins for {} ({} to {})", w.label(), w.from, w.to);

    progress("coverage");
    let folded = user_states(&pieces, &repeats, &weeks, listings.contains_key(&w.from))?;
    drop(pieces);
    keep_rollup(dir, req.rollup, folded.made, listings, &mut rollup);
    let (spans, states, mixes) = (folded.spans, folded.states, folded.mixes);
    let newest: Vec<i64> = spans.iter().map(|s| s.newest_ms).collect();
    let mut covered: Vec<Option<Covered>> = states
        .iter()
        .zip(weeks.iter().zip(&newest))
        .map(|(states, (week, newest))| match states {
            PeriodUsers::States(s) => Some(coverage_of(s, *week, *newest, req.registration_grace_days)),
            PeriodUsers::Empty | PeriodUsers::Counted { .. } => None,
        })
        .collect();
    // A period the history covers only in part (its first hours) is no
    // point of the trend: a few minutes of sign-ins make 100 % or 0 %.
    // The report's own period is always shown.
    let mut trend = Vec::with_capacity(weeks.len());
    for (k, (week, (users, cov))) in weeks.iter().zip(states.iter().zip(&covered)).enumerate() {
        let ratio = users.ratio(cov.as_ref());
        let whole = k + 1 == weeks.len() || spans[k].covers(*week);
        trend.push((week.short_label(), ratio.filter(|_| whole)));
    }
    let (coverage, breakdown, uncovered, registration, each) =
        covered.pop().flatten().expect("the report's week is always worked out");
    let previous_coverage = covered.pop().flatten().map(|(c, ..)| c);
    // The period before is compared with only when its data cover it (90 %
    // of its hours from its first sign-in to its last): a history that
    // begins midweek is not a week to compare with.
    let previous_period = (weeks.len() >= 2).then(|| {
        let k = weeks.len() - 2;
        Previous { window: weeks[k], hours_of_data: spans[k].hours, compared: spans[k].covers(weeks[k]) }
    });
    let previous = previous_coverage.filter(|_| previous_period.as_ref().is_some_and(|p| p.compared));

    progress("sign-ins by day, legacy protocols, applications");
    let users_week = users_only(week.clone());
    let flag = |name: &str| col(name).cast(DataType::UInt64).sum().alias(name);
    let daily_df = week
        .clone()
        .filter(col(c::SUBJECT).eq(lit("user")))
        .with_column((col("ms") / lit(86_400_000i64)).alias("day"))
        .group_by([col("day")])
        .agg([
            col(c::MFA_SATISFIED).and(col(c::LEGACY_AUTH).not()).cast(DataType::UInt64).sum().alias("mfa"),
            col(c::SINGLE_FACTOR).and(col(c::LEGACY_AUTH).not()).cast(DataType::UInt64).sum().alias("single_factor"),
            col(c::LEGACY_AUTH).and(col(c::SUCCESS)).cast(DataType::UInt64).sum().alias("legacy"),
            flag(c::FAILED),
        ])
        .sort(["day"], SortMultipleOptions::default())
        .collect()?;
    let daily = (0..daily_df.height())
        .map(|r| Daily {
            date: chrono::DateTime::from_timestamp(i64_of(&daily_df, "day", r) * 86_400, 0)
                .unwrap_or_default()
                .date_naive(),
            mfa: u64_of(&daily_df, "mfa", r),
            single_factor: u64_of(&daily_df, "single_factor", r),
            legacy: u64_of(&daily_df, "legacy", r),
            failed: u64_of(&daily_df, c::FAILED, r),
        })
        .collect();

    let legacy_df = week
        .clone()
        .filter(col(c::LEGACY_AUTH))
        .group_by([col(c::CLIENT_APP)])
        .agg([
            col(c::SUCCESS).cast(DataType::UInt64).sum().alias("succeeded"),
            col(c::BLOCKED_BY).is_not_null().cast(DataType::UInt64).sum().alias("blocked"),
            col(c::SUCCESS)
                .not()
                .and(col(c::BLOCKED_BY).is_null())
                .cast(DataType::UInt64)
                .sum()
                .alias("failed_otherwise"),
            col(c::UPN).filter(col(c::SUCCESS)).drop_nulls().unique().sort(Default::default()).alias("users"),
        ])
        .sort_by_exprs(
            [col("succeeded"), col(c::CLIENT_APP)],
            SortMultipleOptions::new().with_order_descending_multi([true, false]),
        )
        .collect()?;
    let users_list = legacy_df.column("users").ok().and_then(|c| c.list().ok().cloned());
    let legacy = (0..legacy_df.height())
        .map(|r| {
            let users: Vec<String> = users_list
                .as_ref()
                .and_then(|l| l.get_as_series(r))
                .and_then(|s| s.str().ok().map(|ca| ca.iter().flatten().map(str::to_owned).collect()))
                .unwrap_or_default();
            Protocol {
                protocol: str_of(&legacy_df, c::CLIENT_APP, r),
                succeeded: u64_of(&legacy_df, "succeeded", r),
                blocked: u64_of(&legacy_df, "blocked", r),
                failed_otherwise: u64_of(&legacy_df, "failed_otherwise", r),
                user_count: users.len() as u64,
                users,
            }
        })
        .collect();

    let single_factor = users_week.clone().filter(col(c::COUNTED).and(col(c::SINGLE_FACTOR)));
    let top = |by: &str| -> PolarsResult<DataFrame> {
        single_factor
            .clone()
            .group_by([col(by)])
            .agg([len().alias("count")])
            .sort_by_exprs(
                [col("count"), col(by)],
                SortMultipleOptions::new().with_order_descending_multi([true, false]),
            )
            .limit(10)
            .collect()
    };
    let top_single_factor_apps = counts(&top(c::APP)?, c::APP, "count");
    let top_single_factor_users = counts(&top(c::UPN)?, c::UPN, "count");

    progress("risk, MFA failures, report-only policies, protections, how MFA is enforced");
    let risky_df = users_week
        .clone()
        .filter(risky_without_mfa())
        .select(row_columns())
        .sort(["ms", c::RECORD_ID], SortMultipleOptions::default())
        .collect()?;
    let legacy_rows_df = week
        .clone()
        .filter(col(c::LEGACY_AUTH))
        .select(row_columns())
        .sort(["ms", c::RECORD_ID], SortMultipleOptions::default())
        .collect()?;
    let failures_df = week
        .clone()
        .filter(col(c::MFA_FAILURE).is_not_null())
        .group_by([col(c::MFA_FAILURE)])
        .agg([len().alias("count")])
        .sort_by_exprs(
            [col("count"), col(c::MFA_FAILURE)],
            SortMultipleOptions::new().with_order_descending_multi([true, false]),
        )
        .collect()?;
    let impact_df = report_only_impact(&week_files, &repeats, w)?;
    let report_only = (0..impact_df.height())
        .map(|r| PolicyImpact {
            policy: str_of(&impact_df, c::POLICY, r),
            result: str_of(&impact_df, c::RESULT, r),
            sign_ins: u64_of(&impact_df, "sign_ins", r),
            users: u64_of(&impact_df, "users", r),
        })
        .collect();
    let sum_if = |cond: Expr, name: &str| cond.cast(DataType::UInt64).sum().alias(name);
    let p = week
        .clone()
        .select([
            sum_if(security_defaults_block(), "sd_blocks"),
            sum_if(col(c::MFA_FAILURE).eq(lit("registration_required")), "registration_prompts"),
            sum_if(passed_ca_with_mfa(), "ca_mfa"),
            sum_if(interactive_ok(), "interactive"),
            sum_if(col(c::LEGACY_AUTH).and(col(c::BLOCKED_BY).eq(lit("conditional_access"))), "legacy_ca"),
            sum_if(risky(true), "risky_mfa"),
            sum_if(risky_without_mfa(), "risky_no_mfa"),
        ])
        .collect()?;
    let enforcement = enforcement::enforcement(&week)?;
    let strength = strength::method_strength(&week, &weeks, &mixes, w)?;
    let protections = Protections {
        security_defaults_blocks: u64_of(&p, "sd_blocks", 0),
        registration_prompts: u64_of(&p, "registration_prompts", 0),
        ca_mfa_sign_ins: u64_of(&p, "ca_mfa", 0),
        interactive_sign_ins: u64_of(&p, "interactive", 0),
        legacy_blocked_by_ca: u64_of(&p, "legacy_ca", 0),
        risky_with_mfa: u64_of(&p, "risky_mfa", 0),
        risky_without_mfa: u64_of(&p, "risky_no_mfa", 0),
    };
    let duplicates = {
        let (start, end) = w.millis();
        let raw = scan_rows(&week_files, false)?
            .filter(
                col(c::TIME)
                    .cast(DataType::Int64)
                    .gt_eq(lit(start))
                    .and(col(c::TIME).cast(DataType::Int64).lt(lit(end))),
            )
            .select([len().alias("n")])
            .collect()?;
        u64_of(&raw, "n", 0).saturating_sub(sign_ins)
    };
    progress("directory: admins, registration, protections, risky users");
    let rebuilt = directory::rebuild(dir, &req.privileged_roles, w, &mut damaged)?;
    let (admins, registration_summary) = directory::sections(&rebuilt, &each, &registration)?;
    let posture = rebuilt.directory.posture();
    let protections_timeline = posture::timeline(posture, w);
    let audit = posture::audit_evidence(posture, w, &week)?;
    let risky_users = risk::risky_users(&rebuilt.directory, w, &each);
    progress("done");
    Ok(Report {
        window: w,
        label: w.label(),
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        sign_ins,
        duplicates,
        coverage,
        previous,
        previous_period,
        trend,
        breakdown,
        daily,
        legacy,
        top_single_factor_apps,
        top_single_factor_users,
        uncovered,
        registration,
        risky_without_mfa: sign_in_rows(&risky_df),
        legacy_sign_ins: sign_in_rows(&legacy_rows_df),
        mfa_failures: counts(&failures_df, c::MFA_FAILURE, "count"),
        report_only,
        protections,
        admins,
        registration_summary,
        protections_timeline,
        audit,
        risky_users,
        enforcement,
        strength,
        damaged,
        rollup,
    })
}

/// What [`pieces`] found.
struct Found {
    pieces: Vec<Piece>,
    /// The damaged history files, by date.
    damaged: Vec<Damaged>,
    /// The weeks to make (the report's own among them when it is an ISO
    /// week not kept yet), what each is made from and its damaged files.
    listings: BTreeMap<NaiveDate, (rollup::Listing, Vec<Damaged>)>,
    rollup: RollupUse,
}

/// The pieces the report folds, oldest first, up to its range's end: an ISO
/// week that ends before the range and that no period begins inside of is
/// the rollup's, when it holds it for the files there are, or is made; any
/// other day is read. The damaged files of each day are named as they are
/// found (those of a week of the rollup as they were when it was made).
fn pieces(dir: &Path, req: &Request, periods: &[Window]) -> anyhow::Result<Found> {
    let w = req.window;
    let summarised = |monday: NaiveDate| {
        let sunday = monday + chrono::Days::new(6);
        req.rollup != rollup::Use::Off
            && sunday < w.from
            && !periods.iter().any(|p| p.from > monday && p.from <= sunday)
    };
    let folders: Vec<(NaiveDate, PathBuf)> = files::dates(dir)?.into_iter().filter(|(date, _)| *date <= w.to).collect();
    let mut found =
        Found { pieces: Vec::new(), damaged: Vec::new(), listings: BTreeMap::new(), rollup: RollupUse::default() };
    let week_of = |date: NaiveDate| summarised(rollup::monday(date)).then(|| rollup::monday(date));
    // An ISO week's report keeps its own range too, for the next week's
    // report (made again then if a late record or a merge changed it).
    let own_week = req.rollup != rollup::Use::Off && w.is_iso_week();
    let mut own: (rollup::Listing, Vec<Damaged>) = Default::default();
    for group in folders.chunk_by(|a, b| week_of(a.0).is_some() && week_of(a.0) == week_of(b.0)) {
        let listed: Vec<(NaiveDate, Vec<PathBuf>)> = group
            .iter()
            .map(|(date, folder)| Ok((*date, files::files(folder)?.into_iter().map(|(_, path)| path).collect())))
            .collect::<std::io::Result<_>>()?;
        let Some(monday) = week_of(group[0].0) else {
            for (date, paths) in listed {
                if own_week && date >= w.from {
                    own.0.push((date, rollup::stamps(&paths)?));
                }
                let mut damaged = Vec::new();
                let good = usable(paths, &mut damaged);
                if own_week && date >= w.from {
                    own.1.extend(damaged.iter().cloned());
                }
                found.damaged.extend(damaged);
                if !good.is_empty() {
                    found.rollup.days_read += 1;
                    found.pieces.push(Piece::Day(date, good));
                }
            }
            continue;
        };
        let listing: rollup::Listing =
            listed.iter().map(|(date, paths)| Ok((*date, rollup::stamps(paths)?))).collect::<anyhow::Result<_>>()?;
        if req.rollup == rollup::Use::Keep {
            match rollup::find(dir, monday, &listing) {
                rollup::Found::Valid(week) => {
                    found.damaged.extend(week.damaged.iter().cloned());
                    found.rollup.weeks_used += 1;
                    found.pieces.push(Piece::Week(Box::new(week)));
                    continue;
                }
                rollup::Found::Missing => {}
                rollup::Found::Damaged(path, error) => {
                    progress(&format!("ignoring damaged rollup file {} ({error}): making it again", path.display()));
                    found.rollup.ignored.push(Damaged { file: path.display().to_string(), error });
                }
            }
        }
        let mut week_damaged = Vec::new();
        let days: Vec<(NaiveDate, Vec<PathBuf>)> = listed
            .into_iter()
            .map(|(date, paths)| (date, usable(paths, &mut week_damaged)))
            .filter(|(_, good)| !good.is_empty())
            .collect();
        found.damaged.extend(week_damaged.iter().cloned());
        if days.is_empty() {
            continue;
        }
        found.rollup.days_read += days.len() as u64;
        found.listings.insert(monday, (listing, week_damaged));
        found.pieces.push(Piece::Make(monday, days));
    }
    let kept = req.rollup == rollup::Use::Keep && matches!(rollup::find(dir, w.from, &own.0), rollup::Found::Valid(_));
    if own_week && !own.0.is_empty() && !kept {
        found.listings.insert(w.from, own);
    }
    Ok(found)
}

/// Writes the weeks made into the rollup and removes those retention left
/// without a day. Never an error: a week not kept is made again next time
/// (a copy of a history that cannot be written to, a full disk), and says why.
fn keep_rollup(
    dir: &Path,
    mode: rollup::Use,
    made: Vec<(NaiveDate, rollup::Summed)>,
    mut listings: BTreeMap<NaiveDate, (rollup::Listing, Vec<Damaged>)>,
    used: &mut RollupUse,
) {
    if mode == rollup::Use::Off {
        return;
    }
    let mut not_kept = |why: String| {
        progress(&format!("the rollup is not kept: {why}; the next report reads those days again"));
        used.not_kept.push(why);
    };
    for (monday, summed) in made {
        let Some((made_from, damaged)) = listings.remove(&monday) else { continue };
        let week = rollup::Week { monday, made_from, damaged, summed };
        match rollup::save(dir, &week) {
            Ok(()) => used.weeks_made += 1,
            Err(e) => not_kept(format!("{e:#}")),
        }
    }
    let mondays = match files::dates(dir) {
        Ok(dates) => dates.into_iter().map(|(date, _)| rollup::monday(date)).collect(),
        Err(e) => return not_kept(format!("{}: {e}", dir.display())),
    };
    if let Err(e) = rollup::prune(dir, &mondays) {
        not_kept(format!("{e:#}"));
    }
}

/// The days the history has, for an error message.
fn describe_days(dir: &Path) -> String {
    match files::dates(dir) {
        Ok(dates) if dates.is_empty() => "none".into(),
        Ok(dates) => format!("{} to {} ({} days)", dates[0].0, dates[dates.len() - 1].0, dates.len()),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn iso_weeks_are_monday_to_sunday_across_year_ends() {
        let w = Window::iso_week("2025-W26").unwrap();
        assert_eq!((w.from, w.to, w.days(), w.label()), (day(2025, 6, 23), day(2025, 6, 29), 7, "2025-W26".to_owned()));
        // ISO 2026-W01 starts on Monday 29 December 2025; 2020 has a W53.
        assert_eq!(Window::iso_week("2026-W01").unwrap().from, day(2025, 12, 29));
        assert_eq!(Window::iso_week("2020-W53").unwrap().to, day(2021, 1, 3));
        for bad in ["2025-26", "2025-W54", "W26", "2025-W", ""] {
            let err = Window::iso_week(bad).unwrap_err().to_string();
            assert!(err.contains("ISO week like"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_default_week_is_the_last_complete_one() {
        // Sunday 29 November 2026 is still in W48: the last complete week is W47.
        assert_eq!(Window::last_complete_week(day(2026, 11, 29)).label(), "2026-W47");
        // On Monday the week that just ended is complete.
        assert_eq!(Window::last_complete_week(day(2026, 11, 30)).label(), "2026-W48");
        assert_eq!(Window::last_complete_week(day(2026, 1, 1)).label(), "2025-W52");
    }

    #[test]
    fn a_span_that_is_not_a_week_is_named_by_its_days() {
        let w = Window { from: day(2026, 11, 3), to: day(2026, 11, 9) };
        assert_eq!(w.label(), "2026-11-03_2026-11-09");
        let (start, end) = w.millis();
        assert_eq!(end - start, 7 * 86_400_000);
        assert_eq!(w.shifted(-1).from, day(2026, 10, 27));
        let fortnight = Window { from: day(2026, 11, 1), to: day(2026, 11, 15) };
        assert_eq!((fortnight.shifted(-1).from, fortnight.shifted(-1).to), (day(2026, 10, 17), day(2026, 10, 31)));
    }
}
