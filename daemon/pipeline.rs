//! pipeline: one message through decode → classify → the sinks.
//!
//! The same code runs for Kafka, files (`replay`), the demo and the
//! benchmarks. A message is processed in one go: its sign-ins update the
//! metrics and the coverage state (taken once per message), its malformed
//! records are counted and dead-lettered. Nothing here knows about offsets or
//! durability: the source and the checkpoint own those.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::Utc;

use crate::classify::{Rules, Subject, classify};
use crate::coverage::{Accounts, Coverage, Observation, Policy, Summary};
use crate::deadletter::{DeadLetter, DeadLetters};
use crate::decode::{Item, decode_message};
use crate::metrics::Metrics;
use crate::source::{Position, RecordAt};

/// State shared between the pipeline thread and the HTTP server.
///
/// Lock discipline: `accounts` is only ever held long enough to clone the
/// `Arc` inside, and never while waiting for `coverage`; so the pipeline
/// (which writes `coverage`), the HTTP handlers and SIGHUP (which replaces
/// the accounts) cannot wait on each other in a circle.
pub struct Shared {
    pub coverage: RwLock<Coverage>,
    accounts: RwLock<Arc<Accounts>>,
    pub metrics: Metrics,
    pub health: Health,
}

impl Shared {
    pub fn new(coverage: Coverage, accounts: Accounts, rules: &Rules) -> Arc<Shared> {
        Arc::new(Shared {
            coverage: RwLock::new(coverage),
            accounts: RwLock::new(Arc::new(accounts)),
            metrics: Metrics::new(rules),
            health: Health::default(),
        })
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
}

/// Liveness and readiness, as the HTTP probes report them.
#[derive(Default)]
pub struct Health {
    /// Unix seconds of the pipeline loop's last turn.
    pub heartbeat: AtomicI64,
    pub state_loaded: AtomicBool,
    pub source_connected: AtomicBool,
    pub stopping: AtomicBool,
}

impl Health {
    pub fn beat(&self) {
        self.heartbeat.store(Utc::now().timestamp(), Ordering::Relaxed);
    }

    /// Why the daemon is not ready, or `None` when it is.
    pub fn not_ready(&self) -> Option<&'static str> {
        if self.stopping.load(Ordering::Relaxed) {
            Some("stopping")
        } else if !self.state_loaded.load(Ordering::Relaxed) {
            Some("state not loaded yet")
        } else if !self.source_connected.load(Ordering::Relaxed) {
            Some("not connected to the Kafka / Event Hubs brokers")
        } else {
            None
        }
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
    malformed_logged: u64,
    malformed_suppressed: u64,
}

impl Pipeline {
    pub fn new(rules: Rules, policy: Policy, shared: Arc<Shared>, dead_letters: DeadLetters) -> Pipeline {
        Pipeline { rules, policy, shared, dead_letters, malformed_logged: 0, malformed_suppressed: 0 }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Processes one message. Only a dead-letter write failure is an error:
    /// then the message must not count as done.
    pub fn process(&mut self, bytes: &[u8], position: &Position) -> io::Result<()> {
        let metrics = &self.shared.metrics;
        metrics.message(bytes.len());
        let items = decode_message(bytes);
        let now = Utc::now();
        let accounts = self.shared.accounts();
        let mut malformed_items = Vec::new();
        {
            let mut coverage = self.shared.coverage.write().unwrap_or_else(|e| e.into_inner());
            for (index, item) in items.into_iter().enumerate() {
                match item {
                    Item::SignIn(record) => {
                        let verdict = classify(&record, &self.rules);
                        let lag = (now - record.time).num_milliseconds() as f64 / 1000.0;
                        metrics.sign_in(record.category, &verdict, lag);
                        if let Some(observation) = Observation::of(&record, &verdict, &self.policy) {
                            coverage.observe(&observation);
                        }
                        if verdict.subject == Subject::User {
                            note_excluded_account(&accounts, &record, &verdict);
                        }
                    }
                    Item::Skipped { category } => metrics.skipped(&category),
                    Item::Malformed(malformed) => malformed_items.push((index, malformed)),
                }
            }
        }
        // Dead letters are written without holding the coverage lock: a slow
        // dead-letter topic must not stall the API.
        for (index, malformed) in malformed_items {
            metrics.malformed(&malformed.error);
            let index = malformed.record_index(index);
            self.dead_letters.write(&DeadLetter::new(position, index, &malformed))?;
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

    /// Makes every sink durable (before a snapshot and an offset commit).
    pub fn sync(&mut self) -> io::Result<()> {
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
}

/// Every sign-in of an excluded (break-glass) account is reported.
fn note_excluded_account(
    accounts: &Accounts,
    record: &crate::decode::SignIn<'_>,
    verdict: &crate::classify::Verdict<'_>,
) {
    let key = verdict.subject_key.as_deref().unwrap_or("");
    let upn = record.fields.user_principal_name.as_deref().unwrap_or("");
    if accounts.excluded(key, upn) {
        tracing::warn!(
            upn,
            user_key = key,
            time = %record.time,
            success = verdict.success,
            app = record.fields.app_display_name.as_deref().unwrap_or(""),
            ip = record.fields.ip_address.as_deref().unwrap_or(""),
            "break-glass account signed in"
        );
    }
}
