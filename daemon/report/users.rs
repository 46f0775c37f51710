//! users: each user's coverage state over the report's range, worked out
//! as the daemon does over its window (SIGNIN-SEMANTICS §6, whole UTC days)
//! — partial counts per day folder folded into one frame per user, then the
//! states. Pure polars over frames `scan` gives; no file access.

use super::*;

/// Per user over the week, and what the daemon would call their state.
pub(super) struct UserStates {
    pub(super) df: DataFrame,
}

/// The per-user columns coverage needs: sums over the window's days, and
/// values as of the window's end.
pub(super) mod part {
    pub const ORDER: &str = "order";
    pub const COUNTED: &str = "counted";
    pub const SINGLE_FACTOR: &str = "single_factor";
    pub const LEGACY: &str = "legacy";
    pub const MFA_IN_WINDOW: &str = "mfa_in_window";
    pub const UPN: &str = "upn";
    pub const USER_TYPE: &str = "user_type";
    pub const PRIVILEGED: &str = "privileged";
    pub const EXCLUDED: &str = "excluded";
    pub const LAST_MFA: &str = "last_mfa";
    pub const LAST_SF: &str = "last_sf";
    pub const LAST_SF_APP: &str = "last_sf_app";
    pub const LAST_SF_CLIENT: &str = "last_sf_client";
    pub const REGISTRATION_FAILURES: &str = "registration_failures";
    /// The sums: of the window's days only.
    pub const SUMS: [&str; 4] = [COUNTED, SINGLE_FACTOR, LEGACY, MFA_IN_WINDOW];
}

/// What [`user_states`] folds, oldest first.
pub(super) enum Piece {
    /// A date folder's readable files, read.
    Day(NaiveDate, Vec<PathBuf>),
    /// An ISO week of the rollup, made from exactly the files its folders hold.
    Week(Box<rollup::Week>),
    /// An ISO week to make from its date folders (by Monday), for the rollup.
    Make(NaiveDate, Vec<(NaiveDate, Vec<PathBuf>)>),
}

impl Piece {
    fn first_day(&self) -> NaiveDate {
        match self {
            Piece::Day(date, _) => *date,
            Piece::Week(week) => week.made_from.first().map_or(week.monday, |(date, _)| *date),
            Piece::Make(monday, days) => days.first().map_or(*monday, |(date, _)| *date),
        }
    }
}

/// What a period's users are worked out to.
pub(super) enum PeriodUsers {
    /// A past period without sign-ins: not worked out.
    Empty,
    /// An earlier point of the trend: only how many users were covered and
    /// uncovered in it (the ratio), as [`coverage_of`] would count them.
    Counted { covered: u64, uncovered: u64 },
    /// Every user's state: the report's period and the one before it, which
    /// the report compares with.
    States(UserStates),
}

impl PeriodUsers {
    /// Its coverage ratio, for the trend (`full`: the coverage of its
    /// states, when it has them).
    pub(super) fn ratio(&self, full: Option<&Covered>) -> Option<f64> {
        match self {
            PeriodUsers::Empty => None,
            PeriodUsers::Counted { covered, uncovered } => ratio(*covered, *uncovered),
            PeriodUsers::States(_) => full.and_then(|(c, ..)| c.coverage_ratio),
        }
    }
}

/// Each period's users, what the history holds of each period, and the
/// weeks made for the rollup.
pub(super) struct Folded {
    pub(super) states: Vec<PeriodUsers>,
    pub(super) spans: Vec<Span>,
    pub(super) made: Vec<(NaiveDate, rollup::Summed)>,
    /// Each period's counted MFA sign-ins by strength.
    pub(super) mixes: Vec<super::strength::Mix>,
}

/// Each user's state at the end of each of `windows` (consecutive periods,
/// oldest first, the report's last): what the daemon's per-user entry would
/// hold, computed from every piece of the history up to the period's end.
///
/// A day at a time: each date folder is summed up per user (its counts, and
/// its newest attributes, MFA and single-factor sign-in), and the days are
/// then folded — a record and its copies share a date folder, and the days'
/// rows do not overlap in time, so the newest value of the newest day that
/// has one is the newest of all. Memory follows a day and the users, not
/// the week (the week at once took 5 GB over 10 million rows) nor the
/// history's length. The fold is associative, so a week of the rollup —
/// the fold of its days, which no period begins inside of — stands for its
/// days, and a week made here is folded the same way as one read back.
///
/// Only the last two periods get every user's state: the earlier ones are
/// points of the trend, whose ratio counts only the users with sign-ins in
/// the period (their sums and their newest `excluded` are the period's own),
/// so they are folded only for what the days after them need (who exists,
/// the last MFA), and their registration failures are left for the next
/// period's (pruning them is exact: see `rollup::prune_failures`).
///
/// `keep_last`: the last period is an ISO week to make for the rollup too.
pub(super) fn user_states(
    pieces: &[Piece],
    repeats: &Repeats,
    windows: &[Window],
    keep_last: bool,
) -> anyhow::Result<Folded> {
    let mut pieces = pieces.iter().peekable();
    let mut before: Option<DataFrame> = None;
    let mut registrations: Vec<DataFrame> = Vec::new();
    let mut newest: Option<i64> = None;
    let mut out = Folded { states: Vec::new(), spans: Vec::new(), made: Vec::new(), mixes: Vec::new() };
    for (k, w) in windows.iter().enumerate() {
        let (_, end) = w.millis();
        let mut within = Vec::new();
        let mut kept_days = Vec::new();
        let keep = keep_last && k + 1 == windows.len();
        let (mut first, mut last) = (None::<i64>, None::<i64>);
        let mut mix = super::strength::Mix::default();
        while let Some(piece) = pieces.next_if(|piece| piece.first_day() <= w.to) {
            let summed = match piece {
                Piece::Day(date, files) => day_summed(files, repeats, *date, end)?,
                Piece::Week(week) => week.summed.clone(),
                Piece::Make(monday, days) => {
                    let days = days
                        .iter()
                        .map(|(date, files)| day_summed(files, repeats, *date, end))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    let week = week_of(days)?;
                    out.made.push((*monday, week.clone()));
                    week
                }
            };
            newest = newest.max(summed.last_ms);
            if keep && piece.first_day() >= w.from {
                kept_days.push(summed.clone());
            }
            registrations.push(summed.failures);
            if piece.first_day() >= w.from {
                mix = super::strength::sum([&mix, &summed.strengths]);
                within.push(summed.users);
                first = first.into_iter().chain(summed.first_ms).min();
                last = last.max(summed.last_ms);
            } else {
                before = Some(values_only(fold(before.into_iter().chain([summed.users]).collect())?)?);
            }
        }
        if !kept_days.is_empty() {
            out.made.push((w.from, week_of(kept_days)?));
        }
        let (first, last) = (first.unwrap_or(0), last.unwrap_or(0));
        let hours = if last > first { (last - first) as f64 / 3_600_000.0 } else { 0.0 };
        let span = Span { newest_ms: newest.unwrap_or(0), hours };
        out.spans.push(span);
        out.mixes.push(mix);
        // A past period without sign-ins is not worked out.
        if k + 1 < windows.len() && span.newest_ms < midnight_ms(w.from) {
            if !within.is_empty() {
                before = Some(values_only(fold(before.into_iter().chain(within).collect())?)?);
            }
            out.states.push(PeriodUsers::Empty);
            continue;
        }
        let frames: Vec<DataFrame> = before.into_iter().chain(within).collect();
        anyhow::ensure!(!frames.is_empty(), "no sign-ins up to {}", w.to);
        let states = fold(frames)?;
        if k + 2 < windows.len() {
            let (covered, uncovered) = covered_and_uncovered(&states)?;
            before = Some(values_only(states)?);
            out.states.push(PeriodUsers::Counted { covered, uncovered });
            continue;
        }
        // What the window's days leave for the next: the values, not the sums,
        // and the failures that can still matter.
        let values = values_only(states.clone())?;
        let df = if registrations.is_empty() {
            states
        } else {
            let all = concat(registrations.drain(..).map(IntoLazy::lazy).collect::<Vec<_>>(), UnionArgs::default())?
                .filter(col("ms").lt(lit(end)))
                .collect()?;
            let failures =
                all.clone().lazy().group_by([col(c::USER_KEY)]).agg([col("ms").alias(part::REGISTRATION_FAILURES)]);
            registrations.push(rollup::prune_failures(&values, all)?);
            states
                .lazy()
                .join(failures, [col(c::USER_KEY)], [col(c::USER_KEY)], JoinArgs::new(JoinType::Left))
                .collect()?
        };
        before = Some(values);
        out.states.push(PeriodUsers::States(UserStates { df }));
    }
    Ok(out)
}

/// A day's place in the fold: later days are newer.
fn order_of(date: NaiveDate) -> i32 {
    date.num_days_from_ce()
}

/// How many of the users of `states` (a period's fold) were covered and
/// uncovered over it: what [`coverage_of`] counts, without the rest.
fn covered_and_uncovered(states: &DataFrame) -> PolarsResult<(u64, u64)> {
    let counted = |cond: Expr, name: &str| cond.cast(DataType::UInt64).sum().alias(name);
    let included = col(part::EXCLUDED).fill_null(lit(false)).not();
    let outside = (col(part::SINGLE_FACTOR) + col(part::LEGACY)).gt(lit(0u64));
    let df = states
        .clone()
        .lazy()
        .select([
            counted(included.clone().and(outside.clone()), "uncovered"),
            counted(included.and(outside.not()).and(col(part::COUNTED).gt(lit(0u64))), "covered"),
        ])
        .collect()?;
    Ok((u64_of(&df, "covered", 0), u64_of(&df, "uncovered", 0)))
}

/// One date folder's sign-ins summed up: its users' partial (rows before
/// `end`), their registration_required failures, its first and last sign-in.
fn day_summed(files: &[PathBuf], repeats: &Repeats, date: NaiveDate, end: i64) -> anyhow::Result<rollup::Summed> {
    let lf = scan(files, repeats)?;
    let span = lf.clone().select([col("ms").min().alias("first"), col("ms").max().alias("last")]).collect()?;
    let at = |name: &str| span.column(name).ok().and_then(|c| c.get(0).ok()).and_then(|v| v.extract::<i64>());
    let users = users_only(lf).filter(col("ms").lt(lit(end)));
    let failures = users
        .clone()
        .filter(col(c::MFA_FAILURE).eq(lit("registration_required")))
        .select([col(c::USER_KEY), col("ms")])
        .collect()?;
    Ok(rollup::Summed {
        strengths: super::strength::mix_of(&users)?,
        users: day_partial(users, order_of(date))?,
        failures,
        first_ms: at("first"),
        last_ms: at("last"),
    })
}

/// A week's days (oldest first) summed up as one: what the rollup keeps.
fn week_of(days: Vec<rollup::Summed>) -> anyhow::Result<rollup::Summed> {
    let first_ms = days.iter().filter_map(|d| d.first_ms).min();
    let last_ms = days.iter().filter_map(|d| d.last_ms).max();
    let strengths = super::strength::sum(days.iter().map(|d| &d.strengths));
    let (users, failures): (Vec<DataFrame>, Vec<DataFrame>) = days.into_iter().map(|d| (d.users, d.failures)).unzip();
    anyhow::ensure!(!users.is_empty(), "a week of no days");
    let users = fold(users)?;
    let failures =
        concat(failures.into_iter().map(IntoLazy::lazy).collect::<Vec<_>>(), UnionArgs::default())?.collect()?;
    let failures = rollup::prune_failures(&users, failures)?;
    Ok(rollup::Summed { users, failures, first_ms, last_ms, strengths })
}

/// A per-user summary with its window's sums cleared: what days before a
/// window tell about it (who the user is, their last MFA), not its counts.
pub(super) fn values_only(df: DataFrame) -> PolarsResult<DataFrame> {
    let mut cleared: Vec<Expr> = part::SUMS.iter().map(|name| lit(0u64).cast(DataType::UInt64).alias(*name)).collect();
    cleared.push(lit(NULL).cast(DataType::Int64).alias(part::LAST_SF));
    cleared.push(lit(NULL).cast(DataType::String).alias(part::LAST_SF_APP));
    cleared.push(lit(NULL).cast(DataType::String).alias(part::LAST_SF_CLIENT));
    df.lazy().with_columns(cleared).collect()
}

/// One day's user sign-ins summed up per user ([`part`]'s columns).
pub(super) fn day_partial(lf: LazyFrame, order: i32) -> PolarsResult<DataFrame> {
    let counted = col(c::COUNTED);
    let sum_if = |cond: Expr, name: &str| cond.cast(DataType::UInt64).sum().alias(name);
    let in_order = SortMultipleOptions::default().with_maintain_order(true);
    let by_time = |e: Expr| e.sort_by([col("ms")], in_order.clone());
    // The value of the newest row meeting `cond`.
    let last_where =
        |e: Expr, cond: Expr| e.filter(cond.clone()).sort_by([col("ms").filter(cond)], in_order.clone()).last();
    let single_factor = counted.clone().and(col(c::SINGLE_FACTOR));
    lf.group_by([col(c::USER_KEY)])
        .agg([
            sum_if(counted.clone(), part::COUNTED),
            sum_if(single_factor.clone(), part::SINGLE_FACTOR),
            sum_if(counted.and(col(c::LEGACY_AUTH)), part::LEGACY),
            sum_if(col(c::MFA_SATISFIED), part::MFA_IN_WINDOW),
            by_time(col(c::UPN)).drop_nulls().last().alias(part::UPN),
            by_time(col(c::USER_TYPE)).drop_nulls().last().alias(part::USER_TYPE),
            by_time(col(c::PRIVILEGED)).last().alias(part::PRIVILEGED),
            by_time(col(c::EXCLUDED)).last().alias(part::EXCLUDED),
            col("ms").filter(col(c::MFA_SATISFIED)).max().alias(part::LAST_MFA),
            col("ms").filter(single_factor.clone()).max().alias(part::LAST_SF),
            last_where(col(c::APP), single_factor.clone()).alias(part::LAST_SF_APP),
            last_where(col(c::CLIENT_APP), single_factor).alias(part::LAST_SF_CLIENT),
        ])
        .with_column(lit(order).cast(DataType::Int32).alias(part::ORDER))
        .collect()
}

/// Folds per-user summaries of days (oldest first) into one: sums added,
/// the newest day's values kept.
pub(super) fn fold(frames: Vec<DataFrame>) -> PolarsResult<DataFrame> {
    if frames.len() == 1 {
        return Ok(frames.into_iter().next().expect("one"));
    }
    let in_order = SortMultipleOptions::default().with_maintain_order(true);
    let newest = |e: Expr| e.sort_by([col(part::ORDER)], in_order.clone());
    let newest_where =
        |e: Expr, cond: Expr| e.filter(cond.clone()).sort_by([col(part::ORDER).filter(cond)], in_order.clone()).last();
    let with_sf = col(part::LAST_SF).is_not_null();
    let lazy: Vec<LazyFrame> = frames.into_iter().map(IntoLazy::lazy).collect();
    let mut agg: Vec<Expr> = part::SUMS.iter().map(|name| col(*name).sum().alias(*name)).collect();
    agg.extend([
        newest(col(part::UPN)).drop_nulls().last().alias(part::UPN),
        newest(col(part::USER_TYPE)).drop_nulls().last().alias(part::USER_TYPE),
        newest(col(part::PRIVILEGED)).last().alias(part::PRIVILEGED),
        newest(col(part::EXCLUDED)).last().alias(part::EXCLUDED),
        col(part::LAST_MFA).max().alias(part::LAST_MFA),
        col(part::LAST_SF).max().alias(part::LAST_SF),
        newest_where(col(part::LAST_SF_APP), with_sf.clone()).alias(part::LAST_SF_APP),
        newest_where(col(part::LAST_SF_CLIENT), with_sf).alias(part::LAST_SF_CLIENT),
        col(part::ORDER).max().alias(part::ORDER),
    ]);
    concat(lazy, UnionArgs::default())?.group_by([col(c::USER_KEY)]).agg(agg).collect()
}

/// Coverage, its cells, the uncovered users and the registration_pending ones.
pub(super) type Covered = (Coverage, Vec<Cell>, Vec<UncoveredUser>, Vec<Pending>, Vec<UserCoverage>);

/// One user's state over the range (for the admins' section).
#[derive(Debug, Clone)]
pub(super) struct UserCoverage {
    pub(super) user_key: String,
    pub(super) upn: String,
    pub(super) state: crate::coverage::State,
    /// Marked privileged on their sign-ins (listed, or a role then).
    pub(super) privileged: bool,
}

/// What the daemon's coverage says of these users over `w` ("now" being
/// the newest sign-in of the window), with the uncovered users and the
/// registration_pending ones.
pub(super) fn coverage_of(states: &UserStates, w: Window, newest_ms: i64, grace_days: i64) -> Covered {
    let df = &states.df;
    let start_day = midnight_ms(w.from) / 86_400_000;
    let mut cov = Coverage::default();
    let mut cells: BTreeMap<(String, bool), Cell> = BTreeMap::new();
    let mut uncovered = Vec::new();
    let mut pending = Vec::new();
    let mut each = Vec::with_capacity(df.height());
    let registration = df.column("registration_failures").ok().and_then(|c| c.list().ok().cloned());
    for row in 0..df.height() {
        cov.users += 1;
        let user_type = match str_of(df, "user_type", row).to_ascii_lowercase().as_str() {
            "member" => "member",
            "guest" => "guest",
            _ => "unknown",
        }
        .to_owned();
        let privileged = bool_of(df, "privileged", row);
        let cell = cells.entry((user_type.clone(), privileged)).or_insert_with(|| Cell {
            user_type: user_type.clone(),
            privileged,
            covered: 0,
            uncovered: 0,
            never_mfa: 0,
            coverage_ratio: None,
        });
        let (counted, sf, legacy) =
            (u64_of(df, "counted", row), u64_of(df, "single_factor", row), u64_of(df, "legacy", row));
        let last_mfa = df.column("last_mfa").ok().and_then(|c| c.get(row).ok()).and_then(|v| v.extract::<i64>());
        // Registration: pending from the first failure after the last MFA's day.
        if let Some(failures) = registration.as_ref().and_then(|l| l.get_as_series(row)) {
            let failures: Vec<i64> = failures.i64().map(|ca| ca.into_no_null_iter().collect()).unwrap_or_default();
            let last_failure = failures.iter().copied().max();
            if let Some(last) = last_failure.filter(|&t| last_mfa.is_none_or(|m| t / 1000 > m / 1000)) {
                let mfa_day = last_mfa.map(|m| m / 86_400_000);
                let last_day = last / 86_400_000;
                let since_day = failures
                    .iter()
                    .map(|t| t / 86_400_000)
                    .filter(|d| mfa_day.is_none_or(|m| *d > m) && last_day - d < 32)
                    .min()
                    .unwrap_or_else(|| mfa_day.unwrap_or(last_day));
                let overdue = newest_ms / 1000 - since_day * 86_400 > grace_days * 86_400;
                cov.registration_pending += 1;
                cov.registration_overdue += u64::from(overdue);
                pending.push(Pending {
                    user_key: str_of(df, c::USER_KEY, row),
                    upn: str_of(df, "upn", row),
                    since: chrono::DateTime::from_timestamp(since_day * 86_400, 0).unwrap_or_default().date_naive(),
                    overdue,
                });
            }
        }
        let mut state = |s| {
            let (user_key, upn) = (str_of(df, c::USER_KEY, row), str_of(df, "upn", row));
            each.push(UserCoverage { user_key, upn, state: s, privileged });
        };
        if bool_of(df, "excluded", row) {
            state(crate::coverage::State::Excluded);
            cov.excluded += 1;
            continue;
        }
        if sf + legacy > 0 {
            state(crate::coverage::State::Uncovered);
            let never = last_mfa.is_none_or(|m| m / 86_400_000 < start_day) || u64_of(df, "mfa_in_window", row) == 0;
            cov.uncovered += 1;
            cell.uncovered += 1;
            if never {
                cov.never_mfa += 1;
                cell.never_mfa += 1;
            }
            let last_sf = df.column("last_sf").ok().and_then(|c| c.get(row).ok()).and_then(|v| v.extract::<i64>());
            uncovered.push(UncoveredUser {
                user_key: str_of(df, c::USER_KEY, row),
                upn: str_of(df, "upn", row),
                user_type: user_type.clone(),
                privileged,
                never_mfa: never,
                single_factor_sign_ins: sf,
                legacy_sign_ins: legacy,
                last_single_factor: last_sf.map(ms_text),
                last_single_factor_app: Some(str_of(df, "last_sf_app", row)).filter(|s| !s.is_empty()),
                last_single_factor_client: Some(str_of(df, "last_sf_client", row)).filter(|s| !s.is_empty()),
            });
        } else if counted > 0 {
            state(crate::coverage::State::Covered);
            cov.covered += 1;
            cell.covered += 1;
        } else {
            state(crate::coverage::State::Inactive);
            cov.inactive += 1;
        }
    }
    cov.coverage_ratio = ratio(cov.covered, cov.uncovered);
    let cells = cells
        .into_values()
        .map(|mut cell| {
            cell.coverage_ratio = ratio(cell.covered, cell.uncovered);
            cell
        })
        .collect();
    uncovered.sort_by(|a, b| {
        (b.privileged, b.single_factor_sign_ins + b.legacy_sign_ins, &a.upn).cmp(&(
            a.privileged,
            a.single_factor_sign_ins + a.legacy_sign_ins,
            &b.upn,
        ))
    });
    pending.sort_by(|a, b| (a.since, &a.upn).cmp(&(b.since, &b.upn)));
    (cov, cells, uncovered, pending, each)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_past_period_counts_the_covered_and_uncovered_users_as_its_full_coverage_does() {
        // Excluded (set, unset, unknown) × single-factor, legacy, counted:
        // every case of `coverage_of`, a user with none of them being one
        // the period's fold knows only from the days before it.
        let (mut keys, mut excluded_of, mut sf_of, mut legacy_of, mut counted_of) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::<u64>::new());
        for excluded in [Some(true), Some(false), None] {
            for (sf, legacy, counted) in [(0u64, 0u64, 0u64), (0, 0, 3), (1, 0, 1), (0, 2, 2), (1, 1, 2)] {
                keys.push(format!("u{}", keys.len()));
                excluded_of.push(excluded);
                sf_of.push(sf);
                legacy_of.push(legacy);
                counted_of.push(counted);
            }
        }
        let df = df!(
            c::USER_KEY => keys,
            part::EXCLUDED => excluded_of,
            part::SINGLE_FACTOR => sf_of,
            part::LEGACY => legacy_of,
            part::COUNTED => counted_of,
        )
        .unwrap();
        let week = Window::iso_week("2025-W26").unwrap();
        let (full, ..) = coverage_of(&UserStates { df: df.clone() }, week, midnight_ms(week.to), 14);
        assert_eq!((full.covered, full.uncovered), (2, 6));
        assert_eq!(covered_and_uncovered(&df).unwrap(), (full.covered, full.uncovered));
    }
}
