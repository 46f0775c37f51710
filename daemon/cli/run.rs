//! `mfawatch run`, `replay` and `check-config`: the daemon and its backfill.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{Replayed, SnapshotFile};
use crate::config::{Config, LogFormat};
use crate::coverage::{Accounts, Coverage, Policy};
use crate::deadletter::{DeadLetterFile, DeadLetterTopic, DeadLetters};
use crate::pipeline::{Pipeline, Shared};
use crate::source::kafka::{self, Progress};
use crate::source::{Position, files};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file (TOML); see config/ for annotated examples.
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
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
}

/// Starts logging as the configuration asks; `RUST_LOG` overrides the level.
pub fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    // Colours only for a person at a terminal: not in the journal or a file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Privileged and excluded accounts from the configuration (and the privileged file).
pub fn load_accounts(config: &Config) -> anyhow::Result<Accounts> {
    let mut privileged: Vec<String> = config.coverage.privileged.clone();
    if let Some(path) = &config.coverage.privileged_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read coverage.privileged_file {}", path.display()))?;
        privileged.extend(
            text.lines().map(|l| l.split('#').next().unwrap_or("").trim().to_owned()).filter(|l| !l.is_empty()),
        );
    }
    Ok(Accounts::new(privileged.iter().map(String::as_str), config.coverage.excluded.iter().map(String::as_str)))
}

/// The state a run starts from: the snapshot's coverage, offsets and
/// replayed files, or empty.
pub struct LoadedState {
    pub coverage: Coverage,
    pub offsets: std::collections::BTreeMap<crate::checkpoint::Partition, i64>,
    pub replayed: Vec<Replayed>,
}

pub fn load_state(config: &Config) -> anyhow::Result<LoadedState> {
    let policy = Policy::from_config(&config.coverage);
    let file = SnapshotFile::new(&config.checkpoint.dir);
    match file.read()? {
        None => {
            tracing::info!(dir = %config.checkpoint.dir.display(), "no snapshot yet: starting from an empty state");
            Ok(LoadedState { coverage: Coverage::new(policy), offsets: Default::default(), replayed: Vec::new() })
        }
        Some(snapshot) => {
            let coverage = Coverage::from_snapshot(policy, snapshot.coverage).map_err(|e| {
                anyhow::anyhow!(
                    "{}: {e}; move it away to start afresh with the new coverage.window",
                    file.path().display()
                )
            })?;
            tracing::info!(users = coverage.len(), partitions = snapshot.offsets.len(), "state loaded from snapshot");
            Ok(LoadedState { coverage, offsets: snapshot.offsets, replayed: snapshot.replayed })
        }
    }
}

fn dead_letters(config: &Config) -> anyhow::Result<DeadLetters> {
    let mut sinks = DeadLetters::default();
    if let Some(path) = &config.dead_letter.file {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        sinks.file = Some(
            DeadLetterFile::open(path).with_context(|| format!("cannot open dead_letter.file {}", path.display()))?,
        );
    }
    if let Some(topic) = &config.dead_letter.topic {
        let producer = kafka::producer_config(config)?
            .create_with_context(crate::deadletter::Deliveries::default())
            .map_err(|e| anyhow::anyhow!("cannot create the dead-letter producer: {}", kafka::redacted(&e)))?;
        sinks.topic = Some(DeadLetterTopic::new(producer, topic));
    }
    Ok(sinks)
}

/// Everything a pipeline needs, built from the configuration.
pub struct Prepared {
    pub shared: Arc<Shared>,
    pub progress: Arc<Mutex<Progress>>,
}

pub fn prepare(config: &Config) -> anyhow::Result<Prepared> {
    let snapshots = SnapshotFile::new(&config.checkpoint.dir);
    let state_lock = snapshots.lock()?;
    let accounts = load_accounts(config)?;
    let LoadedState { coverage, offsets, replayed } = load_state(config)?;
    let rules = config.rules();
    let shared = Shared::new(coverage, accounts, &rules);
    shared.health.state_loaded.store(true, Ordering::Relaxed);
    let pipeline = Pipeline::new(rules, Policy::from_config(&config.coverage), shared.clone(), dead_letters(config)?);
    let progress = Progress {
        pipeline,
        offsets,
        replayed,
        snapshots,
        last_checkpoint: Instant::now(),
        poisoned: false,
        _state_lock: state_lock,
    };
    Ok(Prepared { shared, progress: Arc::new(Mutex::new(progress)) })
}

/// Runs the consumer on its own thread and the HTTP server on the runtime
/// until SIGTERM/SIGINT (or the consumer stops); SIGHUP re-reads the
/// privileged accounts.
pub fn serve_and_consume(
    config: Config,
    prepared: Prepared,
    stop_after: Option<std::time::Duration>,
    before_start: impl FnOnce(&str),
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let cancel = CancellationToken::new();
    let Prepared { shared, progress } = prepared;

    let listener = runtime.block_on(crate::http::bind(&config.http.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving /metrics /healthz /readyz /api/v1");
    before_start(&format!("http://{addr}"));
    let server = runtime.spawn(crate::http::serve(listener, shared.clone(), cancel.clone()));
    runtime.spawn(signals(config.clone(), shared.clone(), stop.clone(), cancel.clone(), stop_after));

    let consumer = {
        let (config, shared, stop) = (config.clone(), shared.clone(), stop.clone());
        std::thread::Builder::new()
            .name("pipeline".into())
            .spawn(move || kafka::consume(&config, progress, shared, &stop))?
    };
    let result = consumer.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the pipeline thread panicked")));
    cancel.cancel();
    let _ = runtime.block_on(server);
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

async fn signals(
    config: Config,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    cancel: CancellationToken,
    stop_after: Option<std::time::Duration>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
    else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let deadline = async move {
        match stop_after {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = cancel.cancelled() => return,
            _ = hup.recv() => {
                let config = config.clone();
                match tokio::task::spawn_blocking(move || load_accounts(&config)).await {
                    Ok(Ok(accounts)) => {
                        tracing::info!(privileged = accounts.privileged_count(), "SIGHUP: privileged accounts re-read");
                        shared.set_accounts(accounts);
                    }
                    Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "SIGHUP: keeping the previous privileged accounts"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: keeping the previous privileged accounts"),
                }
            }
        }
    }
    tracing::info!("stopping: checkpointing and leaving the consumer group");
    shared.health.stopping.store(true, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    init_logging(&config);
    let prepared = prepare(&config)?;
    serve_and_consume(config, prepared, None, |_| {})
}

/// Backfill: the same pipeline over files, then one checkpoint.
pub fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    init_logging(&config);
    let prepared = prepare(&config)?;
    let mut progress = prepared.progress.lock().unwrap_or_else(|e| e.into_inner());
    // Decided for every input before any is read: each must open (a typo in
    // the last name should not leave the first ones replayed and unsaved),
    // and a file read into this state before is not read again, its sign-ins
    // would count twice. Stdin cannot be recognised and is always read.
    let mut plan = Vec::new();
    for input in &args.inputs {
        let file = if input == "-" {
            None
        } else {
            files::open(input).with_context(|| format!("cannot read {input}; nothing was replayed"))?;
            Some(replayed_file(input)?)
        };
        if let Some(file) = &file
            && let Some(before) = progress.replayed.iter().find(|r| r.path == file.path)
            && !args.again
        {
            let when = chrono::DateTime::from_timestamp(before.at, 0).unwrap_or_default();
            if before.same_file(file) {
                eprintln!("{input}: already replayed into this state on {when}; skipped (--again reads it again)");
                continue;
            }
            // Grown or rewritten: what it held then would count twice.
            anyhow::bail!(
                "{input} was replayed into this state on {when} and has changed since ({} bytes then, {} now): \
                 replaying it would count the sign-ins it held then a second time; replay only the new records, \
                 or use --again to read it all anyway; nothing was replayed",
                before.bytes,
                file.bytes
            );
        }
        plan.push((input, file));
    }
    let mut replayed_now = 0;
    for (input, file) in plan {
        let mut failure = None;
        let read = files::read_messages(input, |bytes, position: &Position| {
            if let Err(e) = progress.pipeline.process(bytes, position) {
                failure = Some(format!("{position}: {e}"));
                return Err(std::io::Error::other("stopped"));
            }
            Ok(())
        });
        if let Some(failure) = failure {
            anyhow::bail!("cannot keep the effects of {failure}; the state was not saved");
        }
        let stats = read.with_context(|| format!("cannot read {input}; the state was not saved"))?;
        tracing::info!(input, messages = stats.messages, bytes = stats.bytes, "replayed");
        replayed_now += 1;
        if let Some(file) = file {
            progress.replayed.retain(|r| r.path != file.path);
            progress.replayed.push(file);
        }
    }
    progress.checkpoint(None)?;
    let (records, dead_letters) = prepared.shared.metrics.records_read();
    eprintln!(
        "replayed {replayed_now} input(s): {records} records, {dead_letters} of them malformed and dead-lettered; state saved in {}",
        config.checkpoint.dir.display()
    );
    let summary = prepared.shared.coverage_summary();
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// What identifies a file to replay: where it is, its size, when it changed.
fn replayed_file(input: &str) -> anyhow::Result<Replayed> {
    let path = std::fs::canonicalize(input).with_context(|| format!("cannot read {input}"))?;
    let meta = std::fs::metadata(&path).with_context(|| format!("cannot read {input}"))?;
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    Ok(Replayed {
        path: path.to_string_lossy().into_owned(),
        bytes: meta.len(),
        modified: modified.map_or(0, |d| d.as_secs() as i64),
        at: chrono::Utc::now().timestamp(),
    })
}

pub fn check_config(args: CheckConfigArgs) -> anyhow::Result<()> {
    let path = args.file.or(args.config).expect("clap requires one");
    let config = Config::load(&path)?;
    load_accounts(&config)?;
    check_state_dir(&config.checkpoint.dir)?;
    if args.quiet {
        println!("{}: valid", path.display());
    } else {
        print!(
            "# {}: valid. Effective configuration (secrets are never in this file; only where to find them):\n{}",
            path.display(),
            config.to_toml()
        );
    }
    // What `run` needs from where it runs: said, not fatal, since this may
    // run elsewhere than the service (without its credentials).
    for warning in environment_warnings(&config) {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

/// What would stop `run` here although the file is valid: a secret that
/// cannot be found, a directory that cannot be written. Never a secret's value.
fn environment_warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    // Building the client settings is where `run` reads the secret.
    if let Err(e) = kafka::client_config(config) {
        warnings.push(e.to_string());
    }
    let dead_letter_dir = config.dead_letter.file.as_deref().and_then(Path::parent);
    for (key, dir) in [("checkpoint.dir", Some(config.checkpoint.dir.as_path())), ("dead_letter.file", dead_letter_dir)]
    {
        if let Some(problem) = dir.and_then(|d| unwritable(if d.as_os_str().is_empty() { Path::new(".") } else { d })) {
            warnings.push(format!("{key}: {problem}"));
        }
    }
    warnings
}

/// Why files cannot be created in `dir` (or in the directory it would be
/// created in), if they cannot.
fn unwritable(dir: &Path) -> Option<String> {
    let existing = dir.ancestors().find(|d| d.exists())?;
    match tempfile::tempfile_in(existing) {
        Ok(_) => None,
        Err(e) if existing == dir => Some(format!("cannot write in {}: {e}", dir.display())),
        Err(e) => Some(format!("cannot create {} in {}: {e}", dir.display(), existing.display())),
    }
}

fn check_state_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!("checkpoint.dir {} is not a directory", dir.display());
    }
    Ok(())
}
