//! health: liveness and readiness, as the HTTP probes, the `mfawatch_ready`
//! gauge and systemd's STATUS= report them. Set by the source, the
//! checkpoint and the pipeline loop; read by HTTP and the assembly. Knows
//! no stage.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};

use chrono::Utc;

/// Commits after this many failures in a row make the daemon not ready.
pub const COMMIT_FAILURES_NOT_READY: u32 = 3;

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
        *crate::locks::lock(&self.checkpoint_problem) = problem;
    }

    pub fn set_source_problem(&self, problem: Option<String>) {
        *crate::locks::lock(&self.source_problem) = problem;
    }

    /// Why the daemon is not ready, or `None` when it is.
    pub fn not_ready(&self) -> Option<String> {
        if self.stopping.load(Ordering::Relaxed) {
            return Some("stopping".into());
        }
        if !self.state_loaded.load(Ordering::Relaxed) {
            return Some("state not loaded yet".into());
        }
        if let Some(problem) = crate::locks::lock(&self.source_problem).clone() {
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
        if failures >= COMMIT_FAILURES_NOT_READY {
            return Some(format!("{failures} offset commits in a row failed (the broker does not take our offsets)"));
        }
        crate::locks::lock(&self.checkpoint_problem).clone()
    }

    /// Alive when the pipeline loop turned within `max_silence_secs`.
    pub fn alive(&self, max_silence_secs: i64) -> bool {
        Utc::now().timestamp() - self.heartbeat.load(Ordering::Relaxed) <= max_silence_secs
    }
}
