//! pipeline: one message through decode → classify → the sinks.
//!
//! The same code runs for Kafka, files (`replay`), the demo and the
//! benchmarks. A message is processed in one go: its records are decoded and
//! classified, its sign-ins update the coverage state (locked once per
//! message) and the metrics, then go to every other sink (alerts, history) in
//! a fixed order; its malformed records are counted and dead-lettered.
//! Nothing here knows about offsets or durability: the source and the
//! checkpoint own those; the checkpoint asks the pipeline to make its sinks
//! durable ([`Pipeline::prepare_sinks`]).

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};

use crate::classify::{Rules, Subject, Verdict, classify};
use crate::coverage::{Accounts, Coverage, Observation, Observed, Policy, Summary};
use crate::deadletter::DeadLetters;
use crate::decode::{Item, SignIn, decode_message_received};
use crate::logging::Throttle;
use crate::metrics::Metrics;
use crate::sinks::{SignInEvent, Sink};
use crate::source::{Position, RecordAt};

/// State shared between the pipeline thread and the HTTP server.
///
/// Lock discipline: `accounts` is only ever held long enough to clone the
/// `Arc` inside, and never while waiting for `coverage`; so the pipeline
/// (which writes `coverage`), the HTTP handlers and SIGHUP (which replaces
/// the accounts) cannot wait on each other in a circle. `alerts` (the
/// recent alerts the API lists) is taken alone, never with `coverage`.
pub struct Shared {
    pub coverage: RwLock<Coverage>,
    accounts: RwLock<Arc<Accounts>>,
    pub metrics: Metrics,
    pub health: Health,
    pub alerts: crate::alerts::Recent,
    /// The brokers' time, as the source tells it (see [`crate::clock`]).
    pub clock: crate::clock::Clock,
    /// The partitions the source holds now, and since when: sinks that wait
    /// for every source (alerts' reordering window) know whom to wait for.
    assigned: std::sync::Mutex<Vec<(String, i32, std::time::Instant)>>,
}

impl Shared {
    pub fn new(coverage: Coverage, accounts: Accounts, rules: &Rules) -> Arc<Shared> {
        Arc::new(Shared {
            coverage: RwLock::new(coverage),
            accounts: RwLock::new(Arc::new(accounts)),
            metrics: Metrics::new(rules),
            health: Health::default(),
            alerts: crate::alerts::Recent::default(),
            clock: crate::clock::Clock::default(),
            assigned: Default::default(),
        })
    }

    /// The source was given (`true`) or lost partitions.
    pub fn set_assigned(&self, partitions: &[(String, i32)], assigned: bool) {
        let mut held = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|(t, p, _)| !partitions.iter().any(|(t2, p2)| t == t2 && p == p2));
        if assigned {
            let now = std::time::Instant::now();
            held.extend(partitions.iter().map(|(t, p)| (t.clone(), *p, now)));
        }
    }

    /// The partitions the source holds, and since when.
    pub fn assigned(&self) -> Vec<(String, i32, std::time::Instant)> {
        self.assigned.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The privileged and excluded accounts as they are now.
    pub fn accounts(&self) -> Arc<Accounts> {
        self.accounts.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the privileged and excluded accounts (SIGHUP).
    pub fn set_accounts(&self, accounts: Accounts) {
        *self.accounts.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(accounts);
    }

    /// The coverage summary, with the coverage gauges brought up to date.
    pub fn coverage_summary(&self) -> Summary {
        let accounts = self.accounts();
        let coverage = self.coverage.read().unwrap_or_else(|e| e.into_inner());
        let summary = coverage.summary(&accounts);
        self.metrics.coverage(&summary, coverage.len());
        summary
    }

    /// Drops UPNs and display names no user holds any more from the names
    /// arena, when they are most of it (before a snapshot).
    pub fn compact_coverage_names(&self) {
        let wasteful = self.coverage.read().unwrap_or_else(|e| e.into_inner()).names_wasteful();
        if wasteful {
            self.coverage.write().unwrap_or_else(|e| e.into_inner()).compact_names();
        }
    }
}

/// An offset commit unanswered this long makes the daemon not ready.
pub const COMMIT_ANSWER_WITHIN_SECS: i64 = 30;

/// Liveness and readiness, as the HTTP probes report them.
#[derive(Default)]
pub struct Health {
    /// Unix seconds of the pipeline loop's last turn.
    pub heartbeat: AtomicI64,
    pub state_loaded: AtomicBool,
    pub source_connected: AtomicBool,
    pub stopping: AtomicBool,
    /// Offset commits that failed in a row.
    commit_failures: AtomicU32,
    /// Since when an offset commit sent to the brokers has waited for its
    /// answer (Unix seconds; 0: none waiting). A broker that takes the
    /// connection but answers nothing (a black-holed network) shows here
    /// long before librdkafka's request timeout.
    commit_waiting_since: AtomicI64,
    /// Why checkpoints fail, while they do.
    checkpoint_problem: Mutex<Option<String>>,
    /// Why the source cannot be trusted (a partition refused, a topic missing).
    source_problem: Mutex<Option<String>>,
}

impl Health {
    pub fn beat(&self) {
        self.heartbeat.store(Utc::now().timestamp(), Ordering::Relaxed);
    }

    pub fn set_commit_failures(&self, n: u32) {
        self.commit_failures.store(n, Ordering::Relaxed);
    }

    /// An offset commit was answered: refused (`ok` false) or taken.
    pub fn commit_answered(&self, ok: bool) {
        if ok {
            self.commit_failures.store(0, Ordering::Relaxed);
        } else {
            self.commit_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Commits are waiting for an answer since `since` (Unix seconds), or none (`None`).
    pub fn set_commit_waiting_since(&self, since: Option<i64>) {
        self.commit_waiting_since.store(since.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn set_checkpoint_problem(&self, problem: Option<String>) {
        *self.checkpoint_problem.lock().unwrap_or_else(|e| e.into_inner()) = problem;
    }

    pub fn set_source_problem(&self, problem: Option<String>) {
        *self.source_problem.lock().unwrap_or_else(|e| e.into_inner()) = problem;
    }

    /// Why the daemon is not ready, or `None` when it is.
    pub fn not_ready(&self) -> Option<String> {
        if self.stopping.load(Ordering::Relaxed) {
            return Some("stopping".into());
        }
        if !self.state_loaded.load(Ordering::Relaxed) {
            return Some("state not loaded yet".into());
        }
        if let Some(problem) = self.source_problem.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Some(problem);
        }
        if !self.source_connected.load(Ordering::Relaxed) {
            return Some("not connected to the Kafka / Event Hubs brokers".into());
        }
        let waiting_since = self.commit_waiting_since.load(Ordering::Relaxed);
        let waited = Utc::now().timestamp() - waiting_since;
        if waiting_since != 0 && waited >= COMMIT_ANSWER_WITHIN_SECS {
            return Some(format!(
                "the brokers have not answered an offset commit for {waited} s: they are unreachable or hung (connection up, no answers)"
            ));
        }
        let failures = self.commit_failures.load(Ordering::Relaxed);
        if failures >= crate::checkpoint::COMMIT_FAILURES_NOT_READY {
            return Some(format!("{failures} offset commits in a row failed (the broker does not take our offsets)"));
        }
        self.checkpoint_problem.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Alive when the pipeline loop turned within `max_silence_secs`.
    pub fn alive(&self, max_silence_secs: i64) -> bool {
        Utc::now().timestamp() - self.heartbeat.load(Ordering::Relaxed) <= max_silence_secs
    }
}

/// Malformed records are logged one by one up to this many per checkpoint interval.
const LOG_LIMIT: u64 = 10;

pub struct Pipeline {
    rules: Rules,
    policy: Policy,
    shared: Arc<Shared>,
    dead_letters: DeadLetters,
    sinks: Vec<Box<dyn Sink>>,
    pseudonyms: Option<crate::privacy::Pseudonyms>,
    malformed_logged: u64,
    malformed_suppressed: u64,
    throttle: Throttle,
}

impl Pipeline {
    pub fn new(rules: Rules, policy: Policy, shared: Arc<Shared>, dead_letters: DeadLetters) -> Pipeline {
        Pipeline {
            rules,
            policy,
            shared,
            dead_letters,
            sinks: Vec::new(),
            pseudonyms: None,
            malformed_logged: 0,
            malformed_suppressed: 0,
            throttle: Throttle::default(),
        }
    }

    /// Pseudonymise every record as it is decoded (`privacy.pseudonymise`).
    pub fn set_pseudonyms(&mut self, pseudonyms: Option<crate::privacy::Pseudonyms>) {
        self.pseudonyms = pseudonyms;
    }

    /// Adds a sink after the ones already there.
    pub fn add_sink(&mut self, sink: Box<dyn Sink>) {
        self.sinks.push(sink);
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Processes one message. `received` is when the source got it (a Kafka
    /// message's timestamp, a file's modification time): a record dated more
    /// than a day after it is implausible and dead-lettered. Only a
    /// dead-letter write failure is an error: then the message must not count
    /// as done.
    pub fn process(&mut self, bytes: &[u8], position: &Position, received: Option<DateTime<Utc>>) -> io::Result<()> {
        crate::testhooks::pause("pipeline");
        let shared = self.shared.clone();
        let metrics = &shared.metrics;
        metrics.message(bytes.len());
        let items = decode_message_received(bytes, received);
        let now = Utc::now();
        let accounts = shared.accounts();
        let mut records: Vec<(usize, SignIn<'_>)> = Vec::with_capacity(items.len());
        let mut malformed_items = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            match item {
                Item::SignIn(mut record) => {
                    if let Some(p) = &self.pseudonyms {
                        p.apply(&mut record.fields);
                    }
                    records.push((index, record))
                }
                Item::Skipped { category } => metrics.skipped(&category),
                Item::Malformed(malformed) => malformed_items.push((index, malformed)),
            }
        }
        let verdicts: Vec<Verdict<'_>> = records.iter().map(|(_, r)| classify(r, &self.rules)).collect();
        if let Position::Kafka { topic, .. } = position {
            metrics.topic_read(topic, records.iter().map(|(_, r)| r.time.timestamp()).max());
        }
        {
            let mut coverage = shared.coverage.write().unwrap_or_else(|e| e.into_inner());
            for ((_, record), verdict) in records.iter().zip(&verdicts) {
                let lag = (now - record.time).num_milliseconds() as f64 / 1000.0;
                metrics.sign_in(record.category, verdict, lag);
                match Observation::of(record, verdict, &self.policy) {
                    Some(observation) => match coverage.observe(&observation) {
                        Observed::Counted | Observed::Seen => {}
                        Observed::Duplicate => metrics.duplicate_sign_in(),
                        Observed::Late => metrics.late_sign_in(),
                        Observed::Refused => self.refused_user(coverage.len()),
                    },
                    None if Observation::unknown_account(record, verdict) => {
                        metrics.unknown_account(record.category, verdict)
                    }
                    None => {}
                }
            }
        }
        for ((index, record), verdict) in records.iter().zip(&verdicts) {
            let excluded = verdict.subject == Subject::User && note_excluded_account(&accounts, record, verdict);
            if self.sinks.is_empty() {
                continue;
            }
            let privileged = verdict.subject == Subject::User
                && accounts.privileged(
                    verdict.subject_key.as_deref().unwrap_or(""),
                    record.fields.user_principal_name.as_deref().unwrap_or(""),
                );
            let event = SignInEvent { record, verdict, position, index: *index, privileged, excluded };
            for sink in &mut self.sinks {
                sink.sign_in(&event);
            }
        }
        // Dead letters are written without holding the coverage lock: a slow
        // dead-letter topic must not stall the API.
        for (index, malformed) in malformed_items {
            metrics.malformed(&malformed.error);
            let index = malformed.record_index(index);
            self.dead_letters.write(position, index, &malformed)?;
            metrics.dead_letter();
            if self.malformed_logged < LOG_LIMIT {
                self.malformed_logged += 1;
                let at = RecordAt { position, index };
                tracing::warn!(source = %at, reason = malformed.error.reason(), error = %malformed.error, "malformed record dead-lettered");
            } else {
                self.malformed_suppressed += 1;
            }
        }
        Ok(())
    }

    /// A new user that `coverage.max_users` keeps out: counted, said once a minute.
    fn refused_user(&self, users: usize) {
        self.shared.metrics.user_refused();
        if let Some(held_back) = self.throttle.admit("max_users") {
            tracing::warn!(
                users,
                held_back,
                "coverage.max_users reached: sign-ins of new users are counted but the users are not tracked"
            );
        }
    }

    /// Makes dead letters durable (first step of a checkpoint).
    pub fn sync_dead_letters(&mut self) -> io::Result<()> {
        if self.malformed_suppressed > 0 {
            tracing::warn!(
                count = self.malformed_suppressed,
                "more malformed records dead-lettered (not logged one by one)"
            );
        }
        self.malformed_logged = 0;
        self.malformed_suppressed = 0;
        self.dead_letters.sync()
    }

    /// Asks every sink to make checkpoint `seq` durable; their snapshot
    /// states by key, and the keys of earlier formats they replace.
    pub fn prepare_sinks(&mut self, seq: u64) -> anyhow::Result<SinkStates> {
        if !self.sinks.is_empty() {
            let accounts = self.shared.accounts();
            let coverage = self.shared.coverage.read().unwrap_or_else(|e| e.into_inner());
            for sink in &mut self.sinks {
                sink.review(&coverage, &accounts);
            }
        }
        let mut states = BTreeMap::new();
        let mut superseded = Vec::new();
        for sink in &mut self.sinks {
            let name = sink.name();
            if let Some(state) = sink.prepare(seq).map_err(|e| e.context(name))? {
                states.insert(sink.state_key().to_owned(), state);
                superseded.extend_from_slice(sink.superseded());
            }
        }
        Ok((states, superseded))
    }

    /// The snapshot of checkpoint `seq` is durable.
    pub fn sinks_committed(&mut self, seq: u64) {
        for sink in &mut self.sinks {
            sink.committed(seq);
        }
    }
}

/// The sinks' states by snapshot key, and the keys of earlier formats they replace.
pub type SinkStates = (BTreeMap<String, Vec<u8>>, Vec<&'static str>);

/// Every sign-in of an excluded (break-glass) account is logged (the alert
/// is the break_glass_signin rule's). Returns whether the account is one.
fn note_excluded_account(accounts: &Accounts, record: &SignIn<'_>, verdict: &Verdict<'_>) -> bool {
    let key = verdict.subject_key.as_deref().unwrap_or("");
    let upn = record.fields.user_principal_name.as_deref().unwrap_or("");
    if !accounts.excluded(key, upn) {
        return false;
    }
    tracing::warn!(
        upn,
        user_key = key,
        time = %record.time,
        success = verdict.success,
        app = record.fields.app_display_name.as_deref().unwrap_or(""),
        ip = record.fields.ip_address.as_deref().unwrap_or(""),
        "break-glass account signed in"
    );
    true
}
