//! daemon: the assembly of the stages. Loads the state, builds the pipeline
//! and its sinks, serves HTTP, handles signals and runs a source — for
//! `run`, `replay` and `demo` alike. `cli/` only parses arguments and prints.
//!
//! It owns no logic of its own beyond the order things start and stop in:
//! state loaded and HTTP listening before anything is consumed (readiness,
//! READY=1); on SIGTERM the source checkpoints and leaves its group before
//! the HTTP server stops.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::alerts::Recent;
use crate::checkpoint::{Checkpointer, Partition, Replayed, Resumed, SnapshotFile, SourceIdentity};
use crate::clock::Clock;
use crate::config::Config;
use crate::coverage::{Accounts, Coverage, Policy};
use crate::deadletter::{DeadLetterFile, DeadLetterTopic, DeadLetters};
use crate::decode::Position;
use crate::directory::PrivilegedRoles;
use crate::events::Events;
use crate::health::Health;
use crate::kafka;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::sinks::{Assignment, SinkContext};
use crate::source::files;
use crate::source::kafka::SourceContext;

/// The parts of a running daemon that more than one thread uses, each with
/// its lock inside: the pipeline, the source, the HTTP server and the signal
/// handler are each handed the ones they need, never all of them.
#[derive(Clone)]
pub struct Handles {
    pub coverage: Arc<crate::coverage::Handle>,
    pub directory: Arc<crate::directory::Handle>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// The recent alerts the API lists (the alerts sink adds to them).
    pub recent: Arc<Recent>,
    pub assignment: Assignment,
    pub clock: Arc<Clock>,
}

impl Handles {
    /// What a sink is handed.
    pub fn sink(&self) -> SinkContext {
        SinkContext { metrics: self.metrics.clone(), assignment: self.assignment.clone(), clock: self.clock.clone() }
    }

    /// What a source is handed.
    pub fn source(&self) -> SourceContext {
        SourceContext {
            health: self.health.clone(),
            metrics: self.metrics.clone(),
            assignment: self.assignment.clone(),
            clock: self.clock.clone(),
        }
    }

    fn served(&self) -> crate::http::Served {
        crate::http::Served {
            coverage: self.coverage.clone(),
            directory: self.directory.clone(),
            metrics: self.metrics.clone(),
            health: self.health.clone(),
            recent: self.recent.clone(),
        }
    }
}

/// Privileged and excluded accounts from the configuration (and the
/// privileged file); pseudonymised like the records when privacy asks.
pub fn load_accounts(config: &Config) -> anyhow::Result<Accounts> {
    let mut privileged: Vec<String> = config.coverage.privileged.clone();
    if let Some(path) = &config.coverage.privileged_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read coverage.privileged_file {}", path.display()))?;
        privileged.extend(
            text.lines().map(|l| l.split('#').next().unwrap_or("").trim().to_owned()).filter(|l| !l.is_empty()),
        );
    }
    let mut excluded = config.coverage.excluded.clone();
    if let Some(p) = crate::privacy::Pseudonyms::from_config(&config.privacy)? {
        for name in privileged.iter_mut().chain(excluded.iter_mut()) {
            *name = p.account(name);
        }
    }
    Ok(Accounts::new(privileged.iter().map(String::as_str), excluded.iter().map(String::as_str)))
}

/// Says what is wrong with the privileged list: empty, or naming accounts
/// that have never signed in (a typo'd UPN stays silent otherwise).
pub fn check_privileged(handle: &crate::coverage::Handle, metrics: &Metrics) {
    let accounts = handle.accounts();
    metrics.set_privileged_configured(accounts.privileged_count());
    if !accounts.any_privileged() {
        tracing::warn!("{}", crate::coverage::NO_PRIVILEGED);
        return;
    }
    let coverage = handle.read();
    if coverage.is_empty() {
        return; // nothing read yet: everyone is unseen
    }
    let unseen: Vec<String> =
        accounts.privileged_names().into_iter().filter(|name| coverage.user(&accounts, name).is_none()).collect();
    if !unseen.is_empty() {
        tracing::warn!(
            listed = accounts.privileged_count(),
            never_seen = unseen.len(),
            examples = %unseen.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
            "privileged accounts that have never signed in (a typo, an account that does not exist, or one not used yet)"
        );
    }
}

/// The state a run starts from: the snapshot's, or empty.
pub struct LoadedState {
    pub coverage: Coverage,
    pub directory: crate::directory::Directory,
    pub offsets: BTreeMap<Partition, i64>,
    pub replayed: Vec<Replayed>,
    pub seq: u64,
    pub source: Option<SourceIdentity>,
    pub sinks: BTreeMap<String, Vec<u8>>,
}

pub fn load_state(config: &Config) -> anyhow::Result<LoadedState> {
    let policy = Policy::from_config(&config.coverage);
    let file = SnapshotFile::new(&config.checkpoint.dir);
    match file.read()? {
        None => {
            tracing::info!(
                dir = %config.checkpoint.dir.display(),
                start = config.kafka.start.as_str(),
                "no snapshot yet: starting from an empty state; every partition starts at kafka.start"
            );
            Ok(LoadedState {
                coverage: Coverage::new(policy),
                directory: crate::directory::Directory::new(PrivilegedRoles::from_config(&config.directory)),
                offsets: BTreeMap::new(),
                replayed: Vec::new(),
                seq: 0,
                source: None,
                sinks: BTreeMap::new(),
            })
        }
        Some(snapshot) => {
            let coverage = Coverage::from_snapshot(policy, snapshot.coverage).map_err(|e| {
                anyhow::anyhow!(
                    "{}: {e}; start afresh with the new coverage.window (`mfawatch run --reset-state`)",
                    file.path().display()
                )
            })?;
            let directory = crate::directory::Directory::from_snapshot(
                PrivilegedRoles::from_config(&config.directory),
                snapshot.directory,
            );
            tracing::info!(
                users = coverage.len(),
                directory_users = directory.len(),
                partitions = snapshot.offsets.len(),
                "state loaded from snapshot"
            );
            Ok(LoadedState {
                coverage,
                directory,
                offsets: snapshot.offsets,
                replayed: snapshot.replayed,
                seq: snapshot.seq,
                source: snapshot.source,
                sinks: snapshot.sinks,
            })
        }
    }
}

/// `privacy.pseudonymise` switched on (or off) over a state that was built
/// otherwise: says what still holds real names (or mixes them with
/// pseudonyms), once, and notes the setting in `<checkpoint.dir>/privacy`.
fn note_privacy_change(config: &Config, existing_state: bool) -> anyhow::Result<()> {
    let marker = config.checkpoint.dir.join("privacy");
    let was = marker.exists();
    let on = config.privacy.pseudonymise;
    if on && !was {
        if existing_state {
            tracing::warn!(
                state = %config.checkpoint.dir.display(),
                history = %config.history.dir(&config.checkpoint).display(),
                dead_letters = config.dead_letter.file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                alert_log = config.alerts.log_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                "privacy.pseudonymise is on now, over a state built without it: what was written before still holds real names — the coverage state (until those users sign in again or leave the window), the history's files from before today, the dead letters and the alert log written so far, and alerts already sent. For a clean start: `mfawatch run --reset-state`, and move the old history and files aside"
            );
        }
        crate::durable::write_atomic(
            &marker,
            format!("pseudonymised since {}\n", chrono::Utc::now().to_rfc3339()).as_bytes(),
        )
        .with_context(|| format!("cannot write {}", marker.display()))?;
    } else if !on && was {
        tracing::warn!(
            state = %config.checkpoint.dir.display(),
            "privacy.pseudonymise is off now, over a state built with it: the state and history hold pseudonyms for what came before and real names from now on"
        );
        std::fs::remove_file(&marker).with_context(|| format!("cannot remove {}", marker.display()))?;
    }
    Ok(())
}

/// Moves the snapshot aside (`--reset-state`), so that the daemon starts from
/// an empty state and every partition at `kafka.start`; the old one is kept
/// as `state.snapshot.reset-<time>` for an operator who changes their mind.
pub fn reset_state(config: &Config) -> anyhow::Result<()> {
    let file = SnapshotFile::new(&config.checkpoint.dir);
    let path = file.path();
    if !path.exists() {
        return Ok(());
    }
    let aside = path.with_file_name(format!("state.snapshot.reset-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")));
    crate::durable::rename_durable(&path, &aside)
        .with_context(|| format!("cannot move {} aside to reset the state", path.display()))?;
    tracing::warn!(
        kept = %aside.display(),
        start = config.kafka.start.as_str(),
        "state reset: starting from an empty state, every partition at kafka.start"
    );
    Ok(())
}

/// The dead-letter targets; the topic is checked (exists, takes a message).
fn dead_letters(config: &Config, check_topic: bool, metrics: &Arc<Metrics>) -> anyhow::Result<DeadLetters> {
    let mut sinks = DeadLetters {
        max_bytes: config.dead_letter.max_bytes as usize,
        pseudonyms: crate::privacy::Pseudonyms::from_config(&config.privacy)?,
        ..DeadLetters::default()
    };
    if let Some(path) = &config.dead_letter.file {
        sinks.file = Some(
            DeadLetterFile::open(path).with_context(|| format!("cannot open dead_letter.file {}", path.display()))?,
        );
    }
    if let Some(topic) = &config.dead_letter.topic {
        let deliveries = crate::deadletter::Deliveries::new(kafka::token_source(config)?, Events::new(metrics.clone()));
        let producer = kafka::producer_config(config)?
            .create_with_context(deliveries)
            .map_err(|e| anyhow::anyhow!("cannot create the dead-letter producer: {}", kafka::redacted(&e)))?;
        let mut topic = DeadLetterTopic::new(producer, topic);
        if check_topic {
            topic.check(Duration::from_secs(30)).map_err(|e| anyhow::anyhow!("dead_letter.topic: {e}"))?;
        }
        sinks.topic = Some(topic);
    }
    Ok(sinks)
}

/// What the daemon runs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Consuming Kafka / Event Hubs (`run`, `demo`).
    Consume,
    /// Reading files (`replay`); alerts are sent only when asked.
    Replay { alerts: bool },
}

/// The assembled daemon: its handles and the checkpointer that owns the pipeline.
pub struct Daemon {
    pub handles: Handles,
    pub checkpointer: Arc<Mutex<Checkpointer>>,
}

/// Builds everything a run needs from the configuration: takes the state
/// directory, loads the snapshot, builds the pipeline and its sinks.
pub fn prepare(config: &Config, mode: Mode) -> anyhow::Result<Daemon> {
    let snapshots = SnapshotFile::new(&config.checkpoint.dir);
    let state_lock = snapshots.lock()?;
    let accounts = load_accounts(config)?;
    let state = load_state(config)?;
    note_privacy_change(config, state.seq > 0)?;
    let rules = config.rules();
    let holders = state.directory.holders(state.directory.as_of());
    let handles = Handles {
        coverage: crate::coverage::Handle::new(
            state.coverage,
            accounts.with_holders(holders.iter().map(String::as_str)),
        ),
        directory: crate::directory::Handle::new(state.directory),
        metrics: Arc::new(Metrics::new(&rules)),
        health: Arc::new(Health::default()),
        recent: Arc::new(Recent::default()),
        assignment: Assignment::default(),
        clock: Arc::new(Clock::default()),
    };
    let mut pipeline = Pipeline::new(
        rules,
        Policy::from_config(&config.coverage),
        handles.coverage.clone(),
        handles.metrics.clone(),
        dead_letters(config, mode == Mode::Consume, &handles.metrics)?,
    );
    pipeline.set_pseudonyms(crate::privacy::Pseudonyms::from_config(&config.privacy)?);
    pipeline.set_directory(handles.directory.clone());
    let alerts_on = match mode {
        Mode::Consume => true,
        Mode::Replay { alerts } => alerts,
    };
    if config.alerts.enabled && alerts_on {
        let alerts = crate::alerts::Alerts::start(config, handles.sink(), handles.recent.clone(), &state.sinks)?;
        pipeline.add_sink(Box::new(alerts));
    }
    check_privileged(&handles.coverage, &handles.metrics);
    if config.history.enabled {
        let history =
            crate::history::History::start(config, handles.sink(), state.sinks.get(crate::history::NAME), state.seq)?;
        pipeline.add_sink(Box::new(history));
    }
    handles.metrics.set_api_url(&config.api_url());
    handles.health.state_loaded.store(true, Ordering::Relaxed);
    let resumed = Resumed {
        offsets: state.offsets,
        replayed: state.replayed,
        seq: state.seq,
        source: state.source,
        sinks: state.sinks,
    };
    let checkpointer = Checkpointer::new(pipeline, resumed, snapshots, state_lock, handles.health.clone());
    Ok(Daemon { handles, checkpointer: Arc::new(Mutex::new(checkpointer)) })
}

/// Runs the consumer on its own thread and the HTTP server on the runtime
/// until SIGTERM/SIGINT (or the consumer stops); SIGHUP re-reads the
/// privileged accounts. `before_start` hears the HTTP address once it listens.
pub fn serve_and_consume(
    config: Config,
    daemon: Daemon,
    stop_after: Option<Duration>,
    before_start: impl FnOnce(&str),
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let cancel = CancellationToken::new();
    let Daemon { handles, checkpointer } = daemon;

    let access = crate::http::Access::load(&config.http)?;
    let listener = runtime.block_on(crate::http::bind(&config.http.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if access.tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, api_tokens = access.tokens.count(), "serving /metrics /healthz /readyz /api/v1");
    before_start(&format!("{scheme}://{addr}"));
    let server = {
        let (served, access, config, cancel) = (handles.served(), access.clone(), config.clone(), cancel.clone());
        runtime.spawn(async move { crate::http::serve(listener, served, access, &config, cancel).await })
    };
    runtime.spawn(signals(config.clone(), handles.clone(), access, stop.clone(), cancel.clone(), stop_after));
    // Ready for systemd now, not once the brokers answer: a hub that cannot
    // be reached must not hang `systemctl start`; /readyz says whether the
    // feed is there.
    crate::notify::ready();
    runtime.spawn(report_status(handles.clone(), cancel.clone()));

    // The Graph seeder is no reason not to run: a credential it cannot read is said, and the rest goes on.
    let seeds = if config.directory.graph.enabled {
        match crate::source::graph::spawn(&config, handles.metrics.clone(), stop.clone()) {
            Ok(seeds) => Some(seeds),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "not reading the directory from Microsoft Graph in this run");
                None
            }
        }
    } else {
        None
    };
    let consumer = {
        let (config, source, stop) = (config.clone(), handles.source(), stop.clone());
        std::thread::Builder::new()
            .name("pipeline".into())
            .spawn(move || crate::source::kafka::consume(&config, checkpointer, source, seeds, &stop))?
    };
    let result = consumer.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the pipeline thread panicked")));
    crate::notify::stopping();
    cancel.cancel();
    let _ = runtime.block_on(server);
    runtime.shutdown_timeout(Duration::from_secs(2));
    result
}

/// STATUS= lines for systemd, every few seconds.
async fn report_status(handles: Handles, cancel: CancellationToken) {
    loop {
        let users = handles.coverage.read().len();
        let text = crate::notify::describe(
            handles.assignment.held().len(),
            handles.metrics.total_lag(),
            users,
            handles.health.not_ready().as_deref(),
        );
        crate::notify::status(&text);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

async fn signals(
    config: Config,
    handles: Handles,
    access: crate::http::Access,
    stop: Arc<AtomicBool>,
    cancel: CancellationToken,
    stop_after: Option<Duration>,
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
                let reread = config.clone();
                match tokio::task::spawn_blocking(move || load_accounts(&reread)).await {
                    Ok(Ok(accounts)) => {
                        tracing::info!(privileged = accounts.privileged_count(), "SIGHUP: privileged accounts re-read");
                        handles.coverage.set_accounts(accounts);
                        let handles = handles.clone();
                        let _ = tokio::task::spawn_blocking(move || check_privileged(&handles.coverage, &handles.metrics)).await;
                    }
                    Ok(Err(e)) => {
                        handles.metrics.reload("error");
                        tracing::error!(error = %format!("{e:#}"), "SIGHUP: keeping the previous privileged accounts");
                    }
                    Err(e) => {
                        handles.metrics.reload("error");
                        tracing::error!(error = %e, "SIGHUP: keeping the previous privileged accounts");
                    }
                }
                match access.reload(&config.http) {
                    Ok(()) => {
                        handles.metrics.reload("ok");
                        tracing::info!(api_tokens = access.tokens.count(), tls = access.tls.is_some(), "SIGHUP: API tokens and TLS certificate re-read");
                    }
                    Err(e) => {
                        handles.metrics.reload("error");
                        tracing::error!(error = %format!("{e:#}"), api_tokens = access.tokens.count(), "SIGHUP: the reload failed; keeping the previous API tokens and TLS certificate");
                    }
                }
            }
        }
    }
    tracing::info!("stopping: checkpointing and leaving the consumer group");
    crate::notify::stopping();
    handles.health.stopping.store(true, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
}

/// What a replay did.
pub struct Replay {
    pub inputs: usize,
    pub records: u64,
    pub dead_letters: u64,
    pub skipped: Vec<String>,
}

/// Backfill: the same pipeline over files, then one checkpoint. Every input
/// is opened, and checked against what this state has read, before any is
/// read: a typo in the last name must not leave the first ones replayed and
/// unsaved, and a file read into this state before is not read again (its
/// sign-ins would count twice). Stdin cannot be recognised and is always read.
pub fn replay(daemon: &Daemon, inputs: &[String], again: bool) -> anyhow::Result<Replay> {
    let mut cp = crate::locks::lock(&daemon.checkpointer);
    let mut plan = Vec::new();
    let mut skipped = Vec::new();
    // A folder: every input file in it (an Event Hubs Capture tree's .avro
    // files in time order; exports and `generate --per-hub` files by name).
    let mut expanded = Vec::new();
    for input in inputs {
        if input != "-" && Path::new(input).is_dir() {
            let found = files::inputs_in(Path::new(input))
                .with_context(|| format!("cannot read the folder {input}; nothing was replayed"))?;
            anyhow::ensure!(
                !found.is_empty(),
                "{input} holds no input file ({}); nothing was replayed",
                files::INPUT_EXTENSIONS.join(", ")
            );
            expanded.extend(found.into_iter().map(|p| p.to_string_lossy().into_owned()));
        } else {
            expanded.push(input.clone());
        }
    }
    for input in &expanded {
        let file = if input == "-" {
            None
        } else {
            files::open(input).with_context(|| format!("cannot read {input}; nothing was replayed"))?;
            Some(replayed_file(input)?)
        };
        if let Some(file) = &file
            && let Some(before) = cp.replayed().iter().find(|r| r.path == file.path)
            && !again
        {
            let when = chrono::DateTime::from_timestamp(before.at, 0).unwrap_or_default();
            if before.same_file(file) {
                skipped.push(format!(
                    "{input}: already replayed into this state on {when}; skipped (--again reads it again)"
                ));
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
        // Records dated more than a day after the file was last written are implausible.
        let received = file
            .as_ref()
            .and_then(|f| chrono::DateTime::from_timestamp(f.modified, 0))
            .or_else(|| Some(chrono::Utc::now()));
        let mut failure = None;
        let mut processed = 0u64;
        let read = files::read_messages(input, |bytes, position: &Position, enqueued| {
            processed += 1;
            if let Err(e) = cp.process(bytes, position, enqueued.or(received)) {
                failure = Some(format!("{position}: {e}"));
                return Err(std::io::Error::other("stopped"));
            }
            Ok(())
        });
        if let Some(failure) = failure {
            anyhow::bail!("cannot keep the effects of {failure}; the state was not saved");
        }
        let stats = match read {
            // A damaged file found before any of it was read (a Capture file
            // is checked whole first) is skipped; the others are replayed.
            Err(e) if processed == 0 && e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::error!(input = input.as_str(), error = %e, "damaged input skipped");
                skipped.push(format!("{e}; skipped (it is not marked as replayed)"));
                continue;
            }
            read => read.with_context(|| format!("cannot read {input}; the state was not saved"))?,
        };
        tracing::info!(input, messages = stats.messages, bytes = stats.bytes, "replayed");
        replayed_now += 1;
        // An empty file (a Capture blob not written yet) is not marked as
        // replayed: once it holds sign-ins, the next replay reads them.
        if let Some(file) = file.filter(|f| f.bytes > 0) {
            cp.note_replayed(file);
        }
    }
    cp.checkpoint(None).map_err(|e| anyhow::anyhow!("{e}; the state was not saved"))?;
    let (records, dead_letters) = daemon.handles.metrics.records_read();
    Ok(Replay { inputs: replayed_now, records, dead_letters, skipped })
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

/// The dead-letter topic, checked when the brokers can be reached: an
/// error when it does not exist, a warning when nothing could be asked.
pub fn check_dead_letter_topic(config: &Config) -> anyhow::Result<Option<String>> {
    let Some(topic) = &config.dead_letter.topic else { return Ok(None) };
    let Ok(producer_config) = kafka::producer_config(config) else {
        return Ok(None); // the missing secret is a warning of its own
    };
    let Ok(tokens) = kafka::token_source(config) else {
        return Ok(None); // the missing credential is a warning of its own
    };
    let producer = producer_config
        // Nothing is counted for a check: its metrics are not served.
        .create_with_context(crate::deadletter::Deliveries::new(
            tokens,
            Events::new(Arc::new(Metrics::new(&config.rules()))),
        ))
        .map_err(|e| anyhow::anyhow!("cannot create the dead-letter producer: {}", kafka::redacted(&e)))?;
    match DeadLetterTopic::new(producer, topic).exists(Duration::from_secs(10)) {
        Ok(()) => Ok(None),
        Err(crate::deadletter::TopicProblem::Unreachable(e)) => Ok(Some(format!("{e}; not checked"))),
        Err(problem) => Err(anyhow::anyhow!("{problem}")),
    }
}

/// What would stop `run` here although the file is valid: a secret that
/// cannot be found or is wrong, API tokens that read empty, a directory that
/// cannot be written. Never a secret's value.
pub fn environment_errors(config: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    // Building the client settings is where `run` reads the secret.
    if let Err(e) = kafka::client_config(config) {
        errors.push(e.to_string());
    }
    if let Err(e) = kafka::token_source(config) {
        errors.push(format!("{e:#}"));
    }
    if config.directory.graph.enabled
        && let Err(e) = crate::kafka::entra::TokenSource::new(config, String::new())
    {
        errors.push(format!("directory.graph: {e:#}"));
    }
    // The other secrets and files `run` reads before it serves.
    if let Err(e) = crate::http::Access::load(&config.http) {
        errors.push(format!("{e:#}"));
    }
    if let Err(e) = crate::privacy::Pseudonyms::from_config(&config.privacy) {
        errors.push(format!("{e:#}"));
    }
    if config.alerts.enabled
        && let Err(e) = crate::alerts::deliver::targets(config)
    {
        errors.push(format!("{e:#}"));
    }
    let dead_letter_dir = config.dead_letter.file.as_deref().and_then(Path::parent);
    for (key, dir) in [("checkpoint.dir", Some(config.checkpoint.dir.as_path())), ("dead_letter.file", dead_letter_dir)]
    {
        if let Some(problem) = dir.and_then(|d| unwritable(if d.as_os_str().is_empty() { Path::new(".") } else { d })) {
            errors.push(format!("{key}: {problem}"));
        }
    }
    errors
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
