//! checkpoint: the one place where progress becomes durable.
//!
//! A checkpoint runs in this order (docs/design.md, "Delivery guarantee"):
//! 1. dead letters are synced;
//! 2. each stateful sink starts making its part durable for checkpoint
//!    number `seq` (history hands its rows to its writer thread; alerts hand
//!    over their outbox and rule state) and returns the state it keeps in the
//!    snapshot with the wait for its writes;
//! 3. the snapshot — coverage, the next offset of every partition, the sinks'
//!    states, `seq` — is encoded in memory;
//! 4. on a thread of its own, the sinks' writes are waited for, then the
//!    snapshot is written to a temporary file, fsynced, renamed over
//!    `state.snapshot`, and the directory fsynced;
//! 5. back on the pipeline thread, the sinks hear that `seq` is durable;
//! 6. only then does the source commit the offsets the snapshot holds (a
//!    closure it passes in).
//!
//! Steps 1–3 need the state and run on the pipeline thread
//! ([`Checkpointer::start_checkpoint`]); while step 4 runs, messages go on
//! being processed, their effects the next checkpoint's; the source finishes
//! it on a later turn of its loop ([`Checkpointer::finish_checkpoint`]).
//! [`Checkpointer::checkpoint`] does it all before returning (revoke, stop).
//!
//! On start the snapshot is loaded, each sink discards what a checkpoint
//! numbered above the snapshot's `seq` left behind, and each partition resumes
//! from the snapshot's offset; so a crash at any instant loses nothing and
//! counts nothing twice. Sources only say *when* (interval, revoke, stop) and
//! *which offsets*; nothing else commits.
//!
//! The checkpointer keeps its state to itself: a source tells it what it
//! has read ([`Checkpointer::process`], [`Checkpointer::record`]), asks where
//! a newly assigned partition resumes ([`Checkpointer::resume`], the pure
//! rules of [`resume`]), and when to checkpoint ([`Checkpointer::due`],
//! [`Checkpointer::checkpoint`] with the way it commits). The file format is
//! [`snapshot`]'s.
mod resume;
mod snapshot;

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::config::StartPosition;
use crate::decode::Position;
use crate::events::{CheckpointFailed, CommitFailed, Events};
use crate::health::Health;
use crate::pipeline::Pipeline;
pub use resume::{Cluster, Resume, resume_at, same_source};
pub use snapshot::{Partition, Replayed, Snapshot, SnapshotError, SnapshotFile, SnapshotRef, SourceIdentity};

/// How a checkpoint ended.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Nothing was made durable; the next checkpoint tries again.
    #[error("{0:#}")]
    Failed(anyhow::Error),
    /// The snapshot is durable but the broker did not take the offsets; the
    /// snapshot is authoritative, the next checkpoint commits again.
    #[error("the snapshot is written but the offset commit failed: {0}")]
    Commit(String),
    /// Effects may have been lost (a dead letter not kept, a message half
    /// processed): the process must stop so that a restart reads them again.
    #[error("{0:#}")]
    Fatal(anyhow::Error),
}

/// What the pipeline thread has done and not yet made durable, and the
/// routine that makes it so.
pub struct Checkpointer {
    pipeline: Pipeline,
    /// Next offset to read, per partition: from the snapshot, then advanced.
    offsets: BTreeMap<Partition, i64>,
    /// The files `replay` has read into the state (kept across runs).
    replayed: Vec<Replayed>,
    /// The cluster the offsets belong to.
    source: Option<SourceIdentity>,
    /// The sinks' states as last snapshotted; a sink not running now (alerts
    /// during a `replay` without `--alerts`) keeps its state from before.
    sink_states: BTreeMap<String, Vec<u8>>,
    snapshots: SnapshotFile,
    /// The number of the last durable checkpoint.
    seq: u64,
    /// The number the next checkpoint takes: past `seq`, and past every
    /// checkpoint whose sinks were prepared even if its snapshot failed.
    next_seq: u64,
    /// The checkpoint whose snapshot is being written, if one is.
    in_flight: Option<InFlight>,
    last_checkpoint: Instant,
    /// Commit failures in a row (readiness fails past a few).
    failed_commits: u32,
    /// Set when a message was only partly processed: the in-memory state is
    /// then ahead of any offset, and must never be checkpointed.
    poisoned: bool,
    /// Why this run must not checkpoint at all (the brokers are another
    /// cluster than the state's): nothing written, nothing committed.
    refused: Option<String>,
    health: Arc<Health>,
    events: Events,
    /// Held while this process owns the state directory.
    _state_lock: File,
}

/// What a state starts from: the snapshot's, or nothing.
#[derive(Default)]
pub struct Resumed {
    pub offsets: BTreeMap<Partition, i64>,
    pub replayed: Vec<Replayed>,
    pub seq: u64,
    pub source: Option<SourceIdentity>,
    pub sinks: BTreeMap<String, Vec<u8>>,
}

/// How the source commits the offsets a checkpoint made durable:
/// `Ok(Committed::Done)` once the broker took them, `Ok(Committed::Sent)`
/// when the answer comes later (the source then reports it to
/// [`crate::health::Health`] itself), `Err` when the broker refused them.
pub type Commit<'a> = &'a dyn Fn(&BTreeMap<Partition, i64>) -> Result<Committed, String>;

/// What became of an offset commit, as far as the checkpoint can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    Done,
    Sent,
}

impl Checkpointer {
    /// The checkpointer of a state (`resumed`: what its snapshot held) whose
    /// directory this process holds (`lock`).
    pub fn new(
        pipeline: Pipeline,
        resumed: Resumed,
        snapshots: SnapshotFile,
        lock: File,
        health: Arc<Health>,
    ) -> Checkpointer {
        let events = Events::new(pipeline.metrics().clone());
        Checkpointer {
            events,
            pipeline,
            offsets: resumed.offsets,
            replayed: resumed.replayed,
            source: resumed.source,
            sink_states: resumed.sinks,
            snapshots,
            seq: resumed.seq,
            next_seq: resumed.seq + 1,
            in_flight: None,
            last_checkpoint: Instant::now(),
            failed_commits: 0,
            poisoned: false,
            refused: None,
            health,
            _state_lock: lock,
        }
    }

    /// One message read at `position`: through the pipeline. An error (its
    /// effects could not be kept) leaves the state ahead of any offset: it is
    /// never checkpointed after that.
    pub fn process(&mut self, bytes: &[u8], position: &Position, received: Option<DateTime<Utc>>) -> io::Result<()> {
        let result = self.pipeline.process(bytes, position, received);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// A full listing of `holding` read at `at` has been processed whole (see
    /// [`Pipeline::listing_complete`]); kept by the next checkpoint like any
    /// message's effects. Returns how many assignments ended.
    pub fn listing_complete(
        &mut self,
        holding: crate::decode::directory::Holding,
        at: DateTime<Utc>,
        operation: &str,
        position: &Position,
    ) -> usize {
        self.pipeline.listing_complete(holding, at, operation, position)
    }

    /// The next offset of `partition` to read, as far as this state knows.
    pub fn next_offset(&self, partition: &Partition) -> Option<i64> {
        self.offsets.get(partition).copied()
    }

    /// `partition` has been read up to `next` (exclusive).
    pub fn record(&mut self, partition: Partition, next: i64) {
        self.offsets.insert(partition, next);
    }

    /// Where newly assigned `partition` resumes (see [`resume::resume_at`]),
    /// noting a new or moved start so that it is snapshotted and committed.
    pub fn resume(
        &mut self,
        partition: &Partition,
        watermarks: Option<(i64, i64)>,
        start: StartPosition,
        cluster: Cluster,
    ) -> Resume {
        let resume = resume_at(self.next_offset(partition), watermarks, start, cluster);
        match resume {
            Resume::New(at) | Resume::Gap { at, .. } => self.record(partition.clone(), at),
            _ => {}
        }
        resume
    }

    /// Whether the brokers (`now`) are the cluster this state was built
    /// from; a state that has no offsets yet takes them as its own. Another
    /// cluster's brokers refuse every checkpoint of this run, with why.
    pub fn check_source(&mut self, now: SourceIdentity, eventhubs: bool) -> Cluster {
        match &self.source {
            Some(was) if !self.offsets.is_empty() && !same_source(was, &now, eventhubs) => {
                self.refused = Some(format!(
                    "the state in {dir} belongs to another cluster ({was}) than the one configured ({now}): its offsets \
                     mean nothing here. Point checkpoint.dir at this cluster's state, or start afresh with \
                     `mfawatch run --reset-state` (the coverage state is dropped and consumption starts at kafka.start)",
                    dir = self.snapshots.dir().display(),
                    was = was.describe(),
                    now = now.describe(),
                ));
                Cluster::Other
            }
            _ => {
                self.source = Some(now);
                Cluster::Same
            }
        }
    }

    /// Why this run checkpoints nothing (another cluster), if it does not.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// Whether a message was only partly processed (never checkpointed then).
    pub fn poisoned(&self) -> bool {
        self.poisoned
    }

    /// Marks the state as holding a message only partly processed.
    pub fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Whether `interval` has passed since the last checkpoint.
    pub fn due(&self, interval: std::time::Duration) -> bool {
        self.last_checkpoint.elapsed() >= interval
    }

    /// The files `replay` has read into this state.
    pub fn replayed(&self) -> &[Replayed] {
        &self.replayed
    }

    /// `file` has been read into this state (in place of an earlier look at it).
    pub fn note_replayed(&mut self, file: Replayed) {
        self.replayed.retain(|r| r.path != file.path);
        self.replayed.push(file);
    }

    /// The number of the last durable checkpoint.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The checkpoint of docs/design.md, whole: sinks durable, snapshot with
    /// offsets written atomically, then — only then — `commit` with the
    /// offsets. One still being written is finished first.
    pub fn checkpoint(&mut self, commit: Option<Commit<'_>>) -> Result<(), CheckpointError> {
        // A panic unwinding through the pipeline drops the consumer, whose
        // close runs the revoke callback: the state may hold half a message.
        if std::thread::panicking() {
            self.poisoned = true;
        }
        if !self.poisoned {
            // An error was said and counted; this checkpoint tries again.
            let _ = self.finish_checkpoint(commit, Wait::Yes);
        }
        self.start_checkpoint()?;
        self.finish_checkpoint(commit, Wait::Yes)
    }

    /// Starts a checkpoint, unless one is being written: what needs the
    /// state is done now, on the pipeline thread (dead letters synced, the
    /// sinks' parts handed to their writers, the snapshot encoded in memory
    /// with the offsets read so far); the rest — waiting for the sinks'
    /// writes, writing and fsyncing the snapshot — on a thread of its own,
    /// while messages go on being processed. [`Checkpointer::finish_checkpoint`]
    /// then tells the sinks and commits.
    pub fn start_checkpoint(&mut self) -> Result<(), CheckpointError> {
        if self.poisoned {
            return Err(CheckpointError::Fatal(anyhow::anyhow!(
                "not checkpointing: a message was only partly processed"
            )));
        }
        if let Some(why) = &self.refused {
            return Err(CheckpointError::Fatal(anyhow::anyhow!("not checkpointing: {why}")));
        }
        if self.in_flight.is_some() {
            return Ok(());
        }
        let started = Instant::now();
        self.last_checkpoint = started;
        let (seq, bytes, prepared) = match self.prepare() {
            Ok(prepared) => prepared,
            Err(e) => return Err(self.failed(e)),
        };
        let snapshots = self.snapshots.clone();
        let durable = prepared.durable;
        let writing = std::thread::Builder::new().name("checkpoint".into()).spawn(move || {
            crate::sinks::make_durable(durable).map_err(CheckpointError::Failed)?;
            snapshots.write_encoded(&bytes).map_err(|e| CheckpointError::Failed(e.into()))
        });
        let writing = match writing {
            Ok(thread) => thread,
            Err(e) => {
                return Err(
                    self.failed(CheckpointError::Failed(anyhow::anyhow!("cannot start the checkpoint's thread: {e}")))
                );
            }
        };
        self.in_flight =
            Some(InFlight { seq, offsets: self.offsets.clone(), sinks: prepared.states, started, writing });
        Ok(())
    }

    /// Finishes the checkpoint being written, once its snapshot is durable
    /// (`Wait::Yes`: waits for it; `Wait::No`: only if it is): the sinks hear
    /// it, and `commit` gets the offsets the snapshot holds. Nothing to do
    /// when none is being written.
    pub fn finish_checkpoint(&mut self, commit: Option<Commit<'_>>, wait: Wait) -> Result<(), CheckpointError> {
        match &self.in_flight {
            Some(in_flight) if wait == Wait::Yes || in_flight.writing.is_finished() => {}
            _ => return Ok(()),
        }
        let InFlight { seq, offsets, sinks, started, writing } = self.in_flight.take().expect("looked at above");
        let written = writing.join().unwrap_or_else(|_| {
            Err(CheckpointError::Failed(anyhow::anyhow!(
                "the checkpoint's thread panicked; the snapshot was not written"
            )))
        });
        let bytes = match written {
            Ok(bytes) => bytes,
            Err(e) => return Err(self.failed(e)),
        };
        self.seq = seq;
        self.sink_states = sinks;
        self.pipeline.sinks_committed(seq);
        tracing::debug!(bytes, seq, partitions = offsets.len(), "snapshot written");
        let (metrics, health) = (self.pipeline.metrics().clone(), self.health.clone());
        health.set_checkpoint_problem(None);
        crate::testhooks::pause("checkpoint-before-commit");
        match commit.map(|commit| commit(&offsets)) {
            Some(Err(e)) => {
                self.failed_commits += 1;
                self.events.emit(CommitFailed(&e));
                health.set_commit_failures(self.failed_commits);
                return Err(CheckpointError::Commit(e));
            }
            // The broker's answer is reported when it comes.
            Some(Ok(Committed::Sent)) => {}
            Some(Ok(Committed::Done)) | None => {
                self.failed_commits = 0;
                health.set_commit_failures(0);
            }
        }
        metrics.checkpoint_done(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Whether a checkpoint is being written.
    pub fn writing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// A checkpoint that failed: said, counted, and (unless fatal) shown in
    /// readiness until one succeeds.
    fn failed(&self, e: CheckpointError) -> CheckpointError {
        if let CheckpointError::Failed(e) = &e {
            self.health.set_checkpoint_problem(Some(format!("checkpoint failing: {e:#}")));
        }
        self.events.emit(CheckpointFailed { error: &e, fatal: matches!(e, CheckpointError::Fatal(_)) });
        e
    }

    /// The pipeline-thread half of a checkpoint: dead letters durable, the
    /// sinks prepared, the snapshot's bytes.
    fn prepare(&mut self) -> Result<(u64, Vec<u8>, crate::pipeline::SinkStates), CheckpointError> {
        if let Err(e) = self.pipeline.sync_dead_letters() {
            // Some dead letters may be lost: only reading their records again
            // (from the last snapshot, after a restart) recovers them.
            self.poisoned = true;
            return Err(CheckpointError::Fatal(anyhow::anyhow!(
                "cannot make dead letters durable: {e}; stopping so that a restart writes them again"
            )));
        }
        let seq = self.next_seq;
        let mut prepared = self.pipeline.prepare_sinks(seq).map_err(CheckpointError::Failed)?;
        // The next checkpoint has the next number whether or not this one
        // ends well: the sinks take what comes now as the next one's.
        self.next_seq = seq + 1;
        let mut sinks = self.sink_states.clone();
        sinks.extend(std::mem::take(&mut prepared.states));
        for key in &prepared.superseded {
            sinks.remove(*key);
        }
        let handle = self.pipeline.coverage().clone();
        handle.compact_names();
        let directory_handle = self.pipeline.directory().clone();
        let directory = directory_handle.read();
        let coverage = handle.read();
        let bytes = self
            .snapshots
            .encode(&SnapshotRef {
                offsets: &self.offsets,
                coverage: coverage.snapshot_ref(),
                written_at: chrono::Utc::now().timestamp(),
                replayed: &self.replayed,
                seq,
                source: self.source.as_ref(),
                sinks: &sinks,
                directory: directory.snapshot_ref(),
            })
            .map_err(|e| CheckpointError::Failed(e.into()));
        drop(coverage);
        drop(directory);
        prepared.states = sinks;
        Ok((seq, bytes?, prepared))
    }
}

/// Whether [`Checkpointer::finish_checkpoint`] waits for the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    Yes,
    No,
}

/// A checkpoint whose snapshot is being written.
struct InFlight {
    seq: u64,
    /// The offsets the snapshot holds (the reader has gone on since).
    offsets: BTreeMap<Partition, i64>,
    /// The sinks' states in it.
    sinks: BTreeMap<String, Vec<u8>>,
    started: Instant,
    /// Waits for the sinks' writes, then writes the snapshot: its size.
    writing: std::thread::JoinHandle<Result<u64, CheckpointError>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// What the tests look at beside the checkpointer.
    struct Shared {
        health: Arc<Health>,
        metrics: Arc<crate::metrics::Metrics>,
    }

    fn checkpointer(dir: &Path) -> (Checkpointer, Shared) {
        checkpointer_with(dir, Vec::new())
    }

    fn checkpointer_with(dir: &Path, sinks: Vec<Box<dyn crate::sinks::Sink>>) -> (Checkpointer, Shared) {
        use crate::classify::Rules;
        use crate::coverage::{Accounts, Coverage, Policy};
        let metrics = Arc::new(crate::metrics::Metrics::new(&Rules::default()));
        let health = Arc::new(Health::default());
        let coverage = crate::coverage::Handle::new(Coverage::new(Policy::default()), Accounts::default());
        let snapshots = SnapshotFile::new(dir);
        let lock = snapshots.lock().unwrap();
        let mut pipeline =
            Pipeline::new(Rules::default(), Policy::default(), coverage, metrics.clone(), Default::default());
        for sink in sinks {
            pipeline.add_sink(sink);
        }
        let resumed = Resumed { offsets: BTreeMap::from([(("t".to_string(), 0), 5)]), ..Resumed::default() };
        (Checkpointer::new(pipeline, resumed, snapshots, lock, health.clone()), Shared { health, metrics })
    }

    #[test]
    fn a_failed_commit_is_its_own_result_and_repeated_makes_the_daemon_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let (mut cp, shared) = checkpointer(dir.path());
        shared.health.state_loaded.store(true, std::sync::atomic::Ordering::Relaxed);
        shared.health.source_connected.store(true, std::sync::atomic::Ordering::Relaxed);
        let refuse = |_: &BTreeMap<Partition, i64>| Err("NOT_COORDINATOR".to_string());
        for n in 1..=crate::health::COMMIT_FAILURES_NOT_READY {
            let err = cp.checkpoint(Some(&refuse)).unwrap_err();
            assert!(matches!(err, CheckpointError::Commit(_)), "{err}");
            // The snapshot is durable all the same: it holds the offsets.
            assert_eq!(SnapshotFile::new(dir.path()).read().unwrap().unwrap().seq, n as u64);
        }
        let why = shared.health.not_ready().expect("not ready after repeated commit failures");
        assert!(why.contains("offset commits"), "{why}");
        let text = shared.metrics.render();
        assert!(text.contains("mfawatch_checkpoints_total{result=\"commit_failed\"} 3"), "{text}");
        cp.checkpoint(Some(&|_: &BTreeMap<Partition, i64>| Ok(Committed::Done))).unwrap();
        assert_eq!(shared.health.not_ready(), None);
    }

    #[test]
    fn a_snapshot_that_cannot_be_written_commits_nothing_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let (mut cp, shared) = checkpointer(dir.path());
        shared.health.state_loaded.store(true, std::sync::atomic::Ordering::Relaxed);
        shared.health.source_connected.store(true, std::sync::atomic::Ordering::Relaxed);
        // The state directory disappears under the daemon: the temporary file cannot be made.
        cp.snapshots = SnapshotFile::new(&dir.path().join("gone/and/a/file\0name"));
        let committed = std::cell::Cell::new(false);
        let commit = |_: &BTreeMap<Partition, i64>| {
            committed.set(true);
            Ok(Committed::Done)
        };
        let err = cp.checkpoint(Some(&commit)).unwrap_err();
        assert!(matches!(err, CheckpointError::Failed(_)), "{err}");
        assert!(!committed.get(), "no offset commit without a durable snapshot");
        assert!(shared.health.not_ready().unwrap().contains("checkpoint failing"));
        assert_eq!(cp.seq, 0, "the next attempt reuses the checkpoint number");
    }

    /// A sink whose writes a test holds back or makes fail, and that says
    /// which checkpoints it was prepared for and heard were durable.
    struct Slow {
        /// Each checkpoint's wait blocks until the test sends its answer.
        answers: Arc<std::sync::Mutex<std::sync::mpsc::Receiver<Result<(), String>>>>,
        heard: Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl crate::sinks::Sink for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn sign_in(&mut self, _: &crate::sinks::SignInEvent<'_, '_>) {}
        fn prepare(&mut self, seq: u64) -> anyhow::Result<crate::sinks::Prepared> {
            self.heard.lock().unwrap().push(format!("prepare {seq}"));
            let answers = self.answers.clone();
            Ok(crate::sinks::Prepared {
                state: Some(seq.to_le_bytes().to_vec()),
                durable: Some(Box::new(move || answers.lock().unwrap().recv()?.map_err(anyhow::Error::msg))),
            })
        }
        fn committed(&mut self, seq: u64) {
            self.heard.lock().unwrap().push(format!("committed {seq}"));
        }
    }

    #[test]
    fn reading_goes_on_while_a_snapshot_is_written_and_the_commit_is_of_the_offsets_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (answer, answers) = std::sync::mpsc::channel();
        let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Slow { answers: Arc::new(std::sync::Mutex::new(answers)), heard: heard.clone() };
        let (mut cp, _shared) = checkpointer_with(dir.path(), vec![Box::new(sink)]);
        let part = ("t".to_string(), 0);
        let committed = std::sync::Mutex::new(Vec::new());
        let commit = |offsets: &BTreeMap<Partition, i64>| {
            committed.lock().unwrap().push(offsets[&("t".to_string(), 0)]);
            Ok(Committed::Done)
        };

        cp.start_checkpoint().unwrap();
        assert!(cp.writing());
        // The pipeline goes on: more is read while the sink's write is held back.
        cp.record(part.clone(), 9);
        cp.start_checkpoint().unwrap();
        cp.finish_checkpoint(Some(&commit), Wait::No).unwrap();
        assert!(cp.writing(), "not finished before the sink's write is durable");
        assert_eq!(
            SnapshotFile::new(dir.path()).read().unwrap().map(|s| s.seq),
            None,
            "no snapshot before the sink's write"
        );
        assert!(committed.lock().unwrap().is_empty());
        answer.send(Ok(())).unwrap();
        cp.finish_checkpoint(Some(&commit), Wait::Yes).unwrap();
        let snapshot = SnapshotFile::new(dir.path()).read().unwrap().unwrap();
        assert_eq!((snapshot.seq, snapshot.offsets[&part]), (1, 5), "the snapshot holds what was read when it started");
        assert_eq!(
            *committed.lock().unwrap(),
            vec![5],
            "the commit is of the snapshot's offsets, not of what was read since"
        );
        assert_eq!(cp.seq(), 1);

        // The sink's write fails: no snapshot, no commit, and the next
        // checkpoint takes the next number (the sink has moved on).
        cp.start_checkpoint().unwrap();
        answer.send(Err("disk full".into())).unwrap();
        let err = cp.finish_checkpoint(Some(&commit), Wait::Yes).unwrap_err();
        assert!(matches!(err, CheckpointError::Failed(_)) && format!("{err}").contains("disk full"), "{err}");
        assert_eq!(SnapshotFile::new(dir.path()).read().unwrap().unwrap().seq, 1);
        assert_eq!(cp.seq(), 1, "the last durable checkpoint is still 1");
        answer.send(Ok(())).unwrap();
        cp.checkpoint(Some(&commit)).unwrap();
        let snapshot = SnapshotFile::new(dir.path()).read().unwrap().unwrap();
        assert_eq!((snapshot.seq, snapshot.offsets[&part]), (3, 9));
        assert_eq!(*committed.lock().unwrap(), vec![5, 9]);
        assert_eq!(
            *heard.lock().unwrap(),
            ["prepare 1", "committed 1", "prepare 2", "prepare 3", "committed 3"],
            "a sink hears only of checkpoints whose snapshot is durable"
        );
    }
}
