//! sinks: the seam where a classified sign-in leaves the pipeline, and how a
//! sink with state takes part in the checkpoint (docs/design.md, "The
//! seams").
//!
//! Coverage and metrics are the pipeline's own stages; every other sink
//! (alerts, history) implements [`Sink`] and is handed each sign-in, in the
//! order the sinks were built. A sink owns what it makes and never touches
//! offsets: at a checkpoint it is asked to make its effects durable
//! ([`Sink::prepare`]) before the snapshot is renamed, hands over the state it
//! keeps in the snapshot, and hears when that snapshot is durable
//! ([`Sink::committed`]). On start it is rebuilt from that state and the
//! snapshot's checkpoint number, and discards anything a checkpoint numbered
//! higher left behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::classify::{Carried, Verdict};
use crate::clock::Clock;
use crate::coverage::{Accounts, Coverage};
use crate::decode::directory::DirectoryRecord;
use crate::decode::{Position, SignIn};
use crate::directory::{Applied, Registration};
use crate::metrics::Metrics;

/// What a sink gets besides the sign-ins: the metrics it counts in, the
/// partitions the source holds (whom a window waits for), and the brokers'
/// clock. Never the pipeline, never the source.
#[derive(Clone)]
pub struct SinkContext {
    pub metrics: Arc<Metrics>,
    pub assignment: Assignment,
    pub clock: Arc<Clock>,
}

/// The partitions the source holds now, and since when: sinks that wait for
/// every source (alerts' reordering window, history's compaction) know whom
/// to wait for. The source sets it; one mutex, held to copy or replace.
#[derive(Clone, Default)]
pub struct Assignment(Arc<std::sync::Mutex<Vec<(String, i32, Instant)>>>);

impl Assignment {
    /// The source was given (`true`) or lost partitions.
    pub fn set(&self, partitions: &[(String, i32)], assigned: bool) {
        let mut held = crate::locks::lock(&self.0);
        held.retain(|(t, p, _)| !partitions.iter().any(|(t2, p2)| t == t2 && p == p2));
        if assigned {
            let now = Instant::now();
            held.extend(partitions.iter().map(|(t, p)| (t.clone(), *p, now)));
        }
    }

    /// The partitions held, and since when.
    pub fn held(&self) -> Vec<(String, i32, Instant)> {
        crate::locks::lock(&self.0).clone()
    }
}

/// One classified sign-in, as every sink sees it.
pub struct SignInEvent<'e, 'a> {
    pub record: &'e SignIn<'a>,
    pub verdict: &'e Verdict<'a>,
    /// Where its message came from, and its index in the message.
    pub position: &'e Position,
    pub index: usize,
    /// The user is on the privileged list / is a break-glass account.
    pub privileged: bool,
    pub excluded: bool,
    /// Where Identity Protection had the user at the sign-in's time (a
    /// successful sign-in of a user with a RiskyUsers record; else None).
    pub risk: Option<crate::directory::RiskAt>,
    /// What coverage had of this record before (docs/labels.md §5): `None`
    /// for its first copy (or a sign-in coverage does not count); for a
    /// later copy that adds something, what the copies before it carried,
    /// merged; for one that adds nothing, its own (which they already said).
    /// A copy adds something when `earlier.merge(Carried::of(verdict)) != earlier`.
    pub earlier: Option<Carried>,
}

/// One directory record (audit, Identity Protection, a seed), as every sink
/// sees it, after the directory state has taken it.
pub struct DirectoryEvent<'e> {
    pub record: &'e DirectoryRecord,
    pub applied: Applied,
    pub position: &'e Position,
    pub index: usize,
    /// The user it is about as coverage keys users (object id, else the
    /// lower-case UPN), and their UPN; empty when it names no user.
    pub user_key: &'e str,
    pub upn: &'e str,
    /// The user is privileged at the record's time (listed, or holding a
    /// privileged role then), after the record was applied.
    pub privileged: bool,
    /// A privileged role the user holds from this record's time on that
    /// they did not hold just before: the record made them privileged.
    pub became_privileged: Option<String>,
    /// A configured break-glass account.
    pub excluded: bool,
    /// The user's coverage now, when the record made them privileged
    /// (None otherwise, or when no sign-in of theirs was seen).
    pub coverage: Option<crate::coverage::State>,
    /// Their MFA registration, from the directory, after the record.
    pub registration: Registration,
    /// For a Conditional Access change: the break-glass accounts whose
    /// exclusion from the policy it changed (key, UPN, excluded after it).
    pub break_glass: Vec<(String, String, bool)>,
    /// For a security-defaults change: the MFA-requiring Conditional Access
    /// policies enforced at the record's time, by name.
    pub mfa_enforced: Vec<String>,
}

/// A stage after classify that keeps what it makes.
pub trait Sink: Send {
    /// Its name, in logs (and by default the key of its state in the snapshot).
    fn name(&self) -> &'static str;

    /// The key of its state in the snapshot: a new key for a new format,
    /// the old one listed in [`Sink::superseded`] and read once to convert.
    fn state_key(&self) -> &'static str {
        self.name()
    }

    /// Keys of its state in earlier formats, dropped from the snapshot once
    /// it has written its own.
    fn superseded(&self) -> &'static [&'static str] {
        &[]
    }

    /// One sign-in. Must not block on I/O: work that waits goes to the
    /// sink's own thread.
    fn sign_in(&mut self, event: &SignInEvent<'_, '_>);

    /// One directory record, after the sign-ins of the same message were
    /// counted in coverage (the default: nothing to do with it).
    fn directory(&mut self, _event: &DirectoryEvent<'_>) {}

    /// A look at the whole coverage state, before each checkpoint (e.g. who
    /// has become registration_overdue as the window moved).
    fn review(&mut self, _coverage: &Coverage, _accounts: &Accounts) {}

    /// Starts making durable everything that checkpoint `seq` will stand
    /// for, and returns the state to keep in its snapshot with the wait for
    /// that ([`Prepared`]). Runs on the pipeline thread, so it must not wait
    /// on I/O itself: what it sent to disk is waited for by
    /// [`Prepared::durable`], on the checkpoint's own thread, while the
    /// pipeline goes on. What the sink takes in after `prepare` belongs to
    /// the next checkpoint. An error leaves the sink able to try again with
    /// the same `seq`; after a success the next checkpoint is `seq + 1`
    /// even if this one fails later (its snapshot is never written).
    fn prepare(&mut self, seq: u64) -> anyhow::Result<Prepared>;

    /// The snapshot of checkpoint `seq` is durable.
    fn committed(&mut self, _seq: u64) {}
}

/// What a sink hands a checkpoint: the state for the snapshot (`None`:
/// nothing to keep) and what the snapshot waits for first.
#[derive(Default)]
pub struct Prepared {
    pub state: Option<Vec<u8>>,
    pub durable: Option<Durable>,
}

/// Waits until what a sink sent to disk for a checkpoint is durable; an
/// error keeps the snapshot from being written.
pub type Durable = Box<dyn FnOnce() -> anyhow::Result<()> + Send>;

/// Runs the waits of a checkpoint's sinks in turn: the first error stops.
pub fn make_durable(durable: Vec<Durable>) -> anyhow::Result<()> {
    durable.into_iter().try_for_each(|wait| wait())
}

/// How far each source (partition, file) has been read, in event time.
///
/// Partitions are read at different paces — a backlog is fetched partition by
/// partition, megabytes at a time — so a sink that keeps a window of recent
/// sign-ins (alerts' MFA prompts) or waits for a day to be over (history's
/// compaction) must go by the slowest source still sending, not by the
/// newest sign-in seen: that keeps what it does independent of the
/// interleaving.
#[derive(Default)]
pub struct SourceClock {
    /// (topic or file, partition or -1, newest event time read, last heard from).
    sources: Vec<(Arc<str>, i32, i64, Instant)>,
}

/// A source silent this long no longer holds the others back.
pub const IDLE_SOURCE: Duration = Duration::from_secs(300);

impl SourceClock {
    /// Notes that `position`'s source has been read up to event time `time` (Unix seconds).
    pub fn heard(&mut self, position: &Position, time: i64) {
        let (name, partition) = match position {
            Position::Kafka { topic, partition, .. } => (topic, *partition),
            Position::File { path, .. } | Position::Avro { path, .. } | Position::Graph { listing: path, .. } => {
                (path, -1)
            }
        };
        let now = Instant::now();
        match self.sources.iter_mut().find(|(n, p, _, _)| *p == partition && (Arc::ptr_eq(n, name) || n == name)) {
            Some(source) => (source.2, source.3) = (source.2.max(time), now),
            None => self.sources.push((name.clone(), partition, time, now)),
        }
    }

    /// The event time every source still sending has been read up to: the
    /// oldest of those heard from lately. A partition assigned but not heard
    /// from yet holds everything back (it may hold the other half of what a
    /// sink waits for) until it has been silent for [`IDLE_SOURCE`]. `None`
    /// when nothing is known (after a restart, before anything is read).
    pub fn low(&self, assignment: &Assignment) -> Option<i64> {
        let now = Instant::now();
        let mut low = i64::MAX;
        for (topic, partition, since) in assignment.held() {
            let heard = self.sources.iter().find(|s| s.1 == partition && *s.0 == topic);
            match heard {
                Some(s) if now.duration_since(s.3) < IDLE_SOURCE => low = low.min(s.2),
                Some(_) => {}
                None if now.duration_since(since) < IDLE_SOURCE => return Some(i64::MIN / 2),
                None => {}
            }
        }
        for s in self.sources.iter().filter(|s| s.1 < 0 && now.duration_since(s.3) < IDLE_SOURCE) {
            low = low.min(s.2);
        }
        (low != i64::MAX).then_some(low)
    }
}
