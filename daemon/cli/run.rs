//! `mfawatch run`, `replay` and `check-config`: the daemon and its backfill.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::daemon::{self, Mode};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file (TOML); see config/ for annotated examples.
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// Start from an empty state: the snapshot is moved aside (kept as
    /// state.snapshot.reset-<time>) and every partition starts at kafka.start.
    #[arg(long)]
    pub reset_state: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Configuration file (TOML): classification, coverage and state directory.
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// Files to replay (any input shape, gzip too); `-` is stdin.
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Replay files this state has already read (their sign-ins count again).
    #[arg(long)]
    pub again: bool,
    /// Send alerts for the replayed sign-ins (off by default: a backfill is
    /// history, and alerts older than alerts.max_age are never sent anyway).
    #[arg(long)]
    pub alerts: bool,
    /// Where the credentials (the pseudonymisation key, secrets) are when not
    /// under systemd (default: $CREDENTIALS_DIRECTORY, else
    /// /etc/mfawatch/credentials when it exists).
    #[arg(long, value_name = "DIR")]
    pub credentials_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct PseudonymArgs {
    /// Configuration file (TOML): where `privacy.pseudonymise` takes its key.
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// Where the credentials are when not under systemd (as for check-config).
    #[arg(long, value_name = "DIR")]
    pub credentials_dir: Option<PathBuf>,
    /// Pseudonymise IP addresses instead of user principal names.
    #[arg(long)]
    pub ip: bool,
    /// The UPNs (or IP addresses) to look up.
    #[arg(required = true, value_name = "UPN")]
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// Configuration file to check.
    #[arg(value_name = "FILE", required_unless_present = "config", conflicts_with = "config")]
    pub file: Option<PathBuf>,
    /// The same, as `run` and `replay` take it.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Say only whether it is valid (and the warnings), not the effective configuration.
    #[arg(long, short)]
    pub quiet: bool,
    /// Where the credentials are when not under systemd (default: systemd's
    /// $CREDENTIALS_DIRECTORY, else /etc/mfawatch/credentials).
    #[arg(long, value_name = "DIR")]
    pub credentials_dir: Option<PathBuf>,
}

/// Where `check-config` finds the credentials outside systemd.
const CREDENTIALS: &str = "/etc/mfawatch/credentials";

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    crate::logging::init(&config);
    // The secrets first: a daemon that cannot connect must not start serving.
    crate::kafka::client_config(&config)?;
    crate::kafka::token_source(&config)?;
    if args.reset_state {
        daemon::reset_state(&config)?;
    }
    let prepared = daemon::prepare(&config, Mode::Consume)?;
    daemon::serve_and_consume(config, prepared, None, |_| {})
}

/// Backfill: the same pipeline over files, then one checkpoint.
pub fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    use_credentials(args.credentials_dir.as_deref(), "replay")?;
    let config = Config::load(&args.config)?;
    crate::logging::init(&config);
    let prepared = daemon::prepare(&config, Mode::Replay { alerts: args.alerts })?;
    let done = daemon::replay(&prepared, &args.inputs, args.again)?;
    for line in &done.skipped {
        eprintln!("{line}");
    }
    eprintln!(
        "replayed {} input(s): {} records, {} of them malformed and dead-lettered; state saved in {}",
        done.inputs,
        done.records,
        done.dead_letters,
        config.checkpoint.dir.display()
    );
    let summary = prepared.handles.metrics.coverage_summary(&prepared.handles.coverage);
    if summary.late_records > 0 {
        eprintln!(
            "late_records {}: sign-ins read after their day had left the coverage window (the {} days ending with the newest sign-in seen): \
             they updated last-seen times but not the window's counts; expected when the inputs go back further than coverage.window, \
             or are read newer first (replay the oldest files first)",
            summary.late_records,
            config.coverage.window.as_secs() / 86_400
        );
    }
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// Fails (non-zero) on everything `run` would refuse here — the file, and
/// the secrets, tokens and directories it names — and warns about what would
/// only leave it short (privileged accounts, a dead-letter topic it could not ask about).
/// Outside systemd, reads the credentials from `dir` (or
/// /etc/mfawatch/credentials when it exists) as `run` reads them under
/// systemd; the folder used, if any. Call before any other thread starts.
fn use_credentials(dir: Option<&Path>, command: &str) -> anyhow::Result<Option<PathBuf>> {
    let credentials = match (dir, std::env::var_os("CREDENTIALS_DIRECTORY")) {
        (Some(dir), _) => Some(dir.to_owned()),
        (None, Some(_)) => None,
        (None, None) => Some(PathBuf::from(CREDENTIALS)).filter(|d| d.is_dir()),
    };
    if let Some(dir) = &credentials {
        anyhow::ensure!(
            std::fs::read_dir(dir).is_ok(),
            "cannot read the credentials in {}: run {command} as root (they are root's, 0700), or give --credentials-dir",
            dir.display()
        );
        // SAFETY: no other thread runs yet (the callers say so); the
        // credentials are then read as `run` reads them under systemd.
        unsafe { std::env::set_var("CREDENTIALS_DIRECTORY", dir) };
    }
    Ok(credentials)
}

/// `mfawatch pseudonym`: what the daemon calls a user (or an IP address)
/// when `privacy.pseudonymise` is on, with the daemon's own key.
pub fn pseudonym(args: PseudonymArgs) -> anyhow::Result<()> {
    use_credentials(args.credentials_dir.as_deref(), "pseudonym")?;
    let config = Config::load(&args.config)?;
    let Some(pseudonyms) = crate::privacy::Pseudonyms::from_config(&config.privacy)? else {
        anyhow::bail!("{}: privacy.pseudonymise is off: the daemon keeps names as they are", args.config.display());
    };
    for name in &args.names {
        let pseudonym = if args.ip { pseudonyms.ip(name) } else { pseudonyms.upn(name) };
        println!("{name}\t{pseudonym}");
    }
    Ok(())
}

pub fn check_config(args: CheckConfigArgs) -> anyhow::Result<()> {
    let path = args.file.or(args.config).expect("clap requires one");
    let credentials = use_credentials(args.credentials_dir.as_deref(), "check-config")?;
    let config = Config::load(&path)?;
    let accounts = daemon::load_accounts(&config)?;
    check_state_dir(&config.checkpoint.dir)?;
    let topic_warning = daemon::check_dead_letter_topic(&config)?;
    let errors = daemon::environment_errors(&config);
    if !errors.is_empty() {
        let looked = match &credentials {
            Some(dir) => format!(" (credentials looked for in {})", dir.display()),
            None => String::new(),
        };
        anyhow::bail!("{}: `run` would refuse to start{looked}:\n  {}", path.display(), errors.join("\n  "));
    }
    if args.quiet {
        println!("{}: valid", path.display());
    } else {
        print!(
            "# {}: valid. Effective configuration (secrets are never in this file; only where to find them):\n{}",
            path.display(),
            config.to_toml()
        );
    }
    if let Some(warning) = topic_warning {
        eprintln!("warning: {warning}");
    }
    if accounts.privileged_count() == 0 {
        eprintln!("warning: {}", crate::coverage::NO_PRIVILEGED);
    }
    Ok(())
}

fn check_state_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!("checkpoint.dir {} is not a directory", dir.display());
    }
    Ok(())
}
