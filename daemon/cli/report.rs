//! `mfawatch report`: the weekly MFA-coverage report from the history.

use std::path::PathBuf;

use chrono::NaiveDate;

use crate::config::Config;
use crate::report::{self, Request, Window};

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The history folder (`date=YYYY-MM-DD/` Parquet files). Default: the
    /// configuration's history.dir.
    #[arg(long, value_name = "DIR")]
    pub history: Option<PathBuf>,
    /// Configuration file: where the history is, and coverage.registration_grace.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// ISO week, e.g. 2026-W47. Default: the last complete week.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub week: Option<String>,
    /// First day (YYYY-MM-DD), with --to instead of --week.
    #[arg(long, requires = "to")]
    pub from: Option<NaiveDate>,
    /// Last day (YYYY-MM-DD), inclusive.
    #[arg(long, requires = "from")]
    pub to: Option<NaiveDate>,
    /// Where to write index.html, summary.md, summary.json and the CSVs.
    /// Default: ./mfawatch-report-<week>.
    #[arg(long, short, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Weeks of MFA-rollout trend, this one included.
    #[arg(long, default_value_t = 8)]
    pub trend_weeks: u32,
    /// Make every week of the rollup (`<history>/_rollup/`, what the report
    /// keeps of past weeks) again from the history's files, and keep it.
    #[arg(long, conflicts_with = "no_rollup")]
    pub rebuild_rollup: bool,
    /// Read the whole history and neither read nor write the rollup.
    #[arg(long)]
    pub no_rollup: bool,
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Some(Config::load(path)?),
        None => None,
    };
    let history = match (&args.history, &config) {
        (Some(dir), _) => dir.clone(),
        (None, Some(c)) => c.history.dir(&c.checkpoint),
        (None, None) => anyhow::bail!("say where the history is: --history DIR, or --config FILE"),
    };
    let window = match (&args.week, args.from, args.to) {
        (Some(week), _, _) => Window::iso_week(week)?,
        (None, Some(from), Some(to)) => {
            anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
            Window { from, to }
        }
        _ => Window::last_complete_week(chrono::Utc::now().date_naive()),
    };
    let grace = config.as_ref().map_or(14, |c| c.coverage.registration_grace.as_secs() as i64 / 86_400);
    let request = Request {
        history,
        window,
        trend_weeks: i64::from(args.trend_weeks.clamp(1, 52)),
        registration_grace_days: grace,
        privileged_roles: config
            .as_ref()
            .map_or_else(Default::default, |c| crate::directory::PrivilegedRoles::from_config(&c.directory)),
        rollup: match (args.rebuild_rollup, args.no_rollup) {
            (true, _) => report::rollup::Use::Rebuild,
            (_, true) => report::rollup::Use::Off,
            _ => report::rollup::Use::Keep,
        },
    };
    let started = std::time::Instant::now();
    let built = report::build(&request)?;
    let out = args.out.unwrap_or_else(|| PathBuf::from(format!("mfawatch-report-{}", built.label)));
    let files = report::render::write(&built, &out)?;
    let r = &built.rollup;
    eprintln!(
        "report: {} sign-ins in {:.1} s ({} date folders read; rollup: {} weeks used, {} made)",
        built.sign_ins,
        started.elapsed().as_secs_f64(),
        r.days_read,
        r.weeks_used,
        r.weeks_made
    );
    for file in files {
        println!("{}", file.display());
    }
    Ok(())
}
