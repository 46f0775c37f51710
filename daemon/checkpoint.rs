//! checkpoint: the one place where progress becomes durable.
//!
//! A checkpoint runs in this order (DESIGN.md, "Delivery guarantee"):
//! 1. dead letters are synced;
//! 2. each stateful sink makes its part durable for checkpoint number `seq`
//!    (history finishes its Parquet parts; alerts hand over their outbox and
//!    rule state) and returns the state it keeps in the snapshot;
//! 3. the snapshot — coverage, the next offset of every partition, the sinks'
//!    states, `seq` — is written to a temporary file, fsynced, renamed over
//!    `state.snapshot`, and the directory fsynced;
//! 4. the sinks hear that `seq` is durable;
//! 5. only then does the source commit the offsets (a closure it passes in).
//!
//! On start the snapshot is loaded, each sink discards what a checkpoint
//! numbered above the snapshot's `seq` left behind, and each partition resumes
//! from the snapshot's offset; so a crash at any instant loses nothing and
//! counts nothing twice. Sources only say *when* (interval, revoke, stop) and
//! *which offsets*; nothing else commits.
//!
//! File format: 8-byte magic, u32 format version, u32 CRC-32 of the payload,
//! u64 payload length, then the payload (postcard). A snapshot that fails any
//! check is refused with a message naming the file; it is never half-read.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::coverage::{CoverageSnapshot, CoverageSnapshotRef, CoverageSnapshotV3};
use crate::durable::{create_dir_durable, create_private, rename_durable, tmp_name};
use crate::pipeline::Pipeline;

const MAGIC: &[u8; 8] = b"MFAWATCH";
const VERSION: u32 = 4;
const FILE_NAME: &str = "state.snapshot";

/// A partition of a topic.
pub type Partition = (String, i32);

/// Everything a restart needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// Next offset to read, per partition.
    pub offsets: BTreeMap<Partition, i64>,
    pub coverage: CoverageSnapshot,
    /// When it was written (Unix seconds), for operators.
    pub written_at: i64,
    /// Files `replay` has read into this state: the file offsets of a backfill.
    pub replayed: Vec<Replayed>,
    /// The number of the checkpoint that wrote it (0: none yet).
    pub seq: u64,
    /// The Kafka cluster the offsets belong to, once known.
    pub source: Option<SourceIdentity>,
    /// Each stateful sink's own state, by sink name (opaque here).
    pub sinks: BTreeMap<String, Vec<u8>>,
}

/// Which cluster (Event Hubs namespace) and topics a state was built from:
/// its offsets mean nothing anywhere else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceIdentity {
    /// The cluster id the brokers report, when they report one.
    pub cluster_id: Option<String>,
    /// The bootstrap servers as configured (the namespace's host for Event Hubs).
    pub brokers: String,
}

/// A file `replay` read into the state, as it was then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    /// Its canonical path.
    pub path: String,
    pub bytes: u64,
    /// Last modified, Unix seconds.
    pub modified: i64,
    /// When it was replayed, Unix seconds.
    pub at: i64,
}

impl Replayed {
    /// Whether this is the same file, unchanged.
    pub fn same_file(&self, other: &Replayed) -> bool {
        (&self.path, self.bytes, self.modified) == (&other.path, other.bytes, other.modified)
    }
}

/// Format version 1: before `replayed`.
#[derive(Deserialize)]
struct SnapshotV1 {
    offsets: BTreeMap<Partition, i64>,
    coverage: CoverageSnapshotV3,
    written_at: i64,
}

/// Formats 2 and 3 (3 keeps registration failures as days, in the same
/// bytes): before the checkpoint number, source and sink states, and the
/// coverage's risky sign-ins and counted identities.
#[derive(Deserialize)]
struct SnapshotV3 {
    offsets: BTreeMap<Partition, i64>,
    coverage: CoverageSnapshotV3,
    written_at: i64,
    replayed: Vec<Replayed>,
}

/// [`Snapshot`] borrowed from the live state, for writing.
#[derive(Debug, Serialize)]
pub struct SnapshotRef<'a> {
    pub offsets: &'a BTreeMap<Partition, i64>,
    pub coverage: CoverageSnapshotRef<'a>,
    pub written_at: i64,
    pub replayed: &'a [Replayed],
    pub seq: u64,
    pub source: Option<&'a SourceIdentity>,
    pub sinks: &'a BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot write snapshot in {dir}: {source} (is the directory writable by mfawatch, and is there space?)")]
    Write { dir: PathBuf, source: io::Error },
    #[error("cannot read snapshot {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{dir} is in use by another mfawatch (run or replay); each needs its own checkpoint.dir")]
    Locked { dir: PathBuf },
    #[error(
        "snapshot {path} is damaged: {reason}; restore it from a backup, or start afresh with `mfawatch run --reset-state` (which rewinds the consumer group to kafka.start)"
    )]
    Damaged { path: PathBuf, reason: String },
}

/// The snapshot file in a state directory.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    dir: PathBuf,
}

impl SnapshotFile {
    pub fn new(dir: &Path) -> SnapshotFile {
        SnapshotFile { dir: dir.to_owned() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Takes the state directory for this process alone: a `run` and a
    /// `replay` (or two daemons) on one directory would overwrite each other's
    /// snapshots. The lock lasts as long as the returned file is open.
    pub fn lock(&self) -> Result<File, SnapshotError> {
        let err = |source| SnapshotError::Write { dir: self.dir.clone(), source };
        create_dir_durable(&self.dir).map_err(err)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(crate::durable::FILE_MODE)
            .open(self.dir.join("state.lock"))
            .map_err(err)?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(fs::TryLockError::WouldBlock) => Err(SnapshotError::Locked { dir: self.dir.clone() }),
            Err(fs::TryLockError::Error(e)) => Err(err(e)),
        }
    }

    /// Writes `snapshot` atomically and durably; returns its size in bytes.
    pub fn write(&self, snapshot: &SnapshotRef<'_>) -> Result<u64, SnapshotError> {
        let err = |source| SnapshotError::Write { dir: self.dir.clone(), source };
        create_dir_durable(&self.dir).map_err(err)?;
        let payload = postcard::to_allocvec(snapshot).map_err(|e| err(io::Error::other(e)))?;
        let mut bytes = Vec::with_capacity(payload.len() + 24);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&payload);
        let tmp = tmp_name(&self.path());
        let write_tmp = || -> io::Result<()> {
            crate::testhooks::write_fault()?;
            let mut file = create_private(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()
        };
        write_tmp().map_err(err)?;
        crate::testhooks::pause("snapshot-before-rename");
        rename_durable(&tmp, &self.path()).map_err(err)?;
        Ok(bytes.len() as u64)
    }

    /// The last snapshot, or `None` when there is none yet.
    pub fn read(&self) -> Result<Option<Snapshot>, SnapshotError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SnapshotError::Read { path, source }),
        };
        let damaged = |reason: String| SnapshotError::Damaged { path: path.clone(), reason };
        if bytes.len() < 24 || &bytes[..8] != MAGIC {
            return Err(damaged("not an mfawatch snapshot".into()));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if !(1..=VERSION).contains(&version) {
            return Err(damaged(format!("format version {version}, this mfawatch reads 1 to {VERSION}")));
        }
        let crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
        let len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes")) as usize;
        let payload = &bytes[24..];
        if payload.len() != len {
            return Err(damaged(format!("{} payload bytes, header says {len} (cut short?)", payload.len())));
        }
        if crc32fast::hash(payload) != crc {
            return Err(damaged("checksum mismatch".into()));
        }
        let older = |offsets, coverage, written_at, replayed| Snapshot {
            offsets,
            coverage,
            written_at,
            replayed,
            seq: 0,
            source: None,
            sinks: BTreeMap::new(),
        };
        // Format 3 keeps registration failures as a set of days.
        let before_3 = version < 3;
        let snapshot = match version {
            1 => postcard::from_bytes::<SnapshotV1>(payload)
                .map(|v| older(v.offsets, v.coverage.upgrade(before_3), v.written_at, Vec::new())),
            2 | 3 => postcard::from_bytes::<SnapshotV3>(payload)
                .map(|v| older(v.offsets, v.coverage.upgrade(before_3), v.written_at, v.replayed)),
            _ => postcard::from_bytes::<Snapshot>(payload),
        };
        Ok(Some(snapshot.map_err(|e| damaged(e.to_string()))?))
    }
}

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
    pub pipeline: Pipeline,
    /// Next offset to read, per partition: from the snapshot, then advanced.
    pub offsets: BTreeMap<Partition, i64>,
    /// The files `replay` has read into the state (kept across runs).
    pub replayed: Vec<Replayed>,
    /// The cluster the offsets belong to.
    pub source: Option<SourceIdentity>,
    /// The sinks' states as last snapshotted; a sink not running now (alerts
    /// during a `replay` without `--alerts`) keeps its state from before.
    pub sink_states: BTreeMap<String, Vec<u8>>,
    pub snapshots: SnapshotFile,
    /// The number of the last durable checkpoint.
    pub seq: u64,
    pub last_checkpoint: Instant,
    /// Commit failures in a row (readiness fails past a few).
    pub failed_commits: u32,
    /// Set when a message was only partly processed: the in-memory state is
    /// then ahead of any offset, and must never be checkpointed.
    pub poisoned: bool,
    /// Why this run must not checkpoint at all (the brokers are another
    /// cluster than the state's): nothing written, nothing committed.
    pub refused: Option<String>,
    /// Held while this process owns the state directory.
    pub _state_lock: File,
}

/// How the source commits the offsets a checkpoint made durable:
/// `Ok(Committed::Done)` once the broker took them, `Ok(Committed::Sent)`
/// when the answer comes later (the source then reports it to
/// [`crate::pipeline::Health`] itself), `Err` when the broker refused them.
pub type Commit<'a> = &'a dyn Fn(&BTreeMap<Partition, i64>) -> Result<Committed, String>;

/// What became of an offset commit, as far as the checkpoint can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    Done,
    Sent,
}

/// Commits after this many failures in a row make the daemon not ready.
pub const COMMIT_FAILURES_NOT_READY: u32 = 3;

impl Checkpointer {
    /// The checkpoint of DESIGN.md: sinks durable, snapshot with offsets
    /// written atomically, then — only then — `commit` with the offsets.
    pub fn checkpoint(&mut self, commit: Option<Commit<'_>>) -> Result<(), CheckpointError> {
        // A panic unwinding through the pipeline drops the consumer, whose
        // close runs the revoke callback: the state may hold half a message.
        if std::thread::panicking() {
            self.poisoned = true;
        }
        if self.poisoned {
            return Err(CheckpointError::Fatal(anyhow::anyhow!(
                "not checkpointing: a message was only partly processed"
            )));
        }
        if let Some(why) = &self.refused {
            return Err(CheckpointError::Fatal(anyhow::anyhow!("not checkpointing: {why}")));
        }
        let started = Instant::now();
        let shared = self.pipeline.shared().clone();
        let result = self.write_snapshot();
        self.last_checkpoint = Instant::now();
        if let Err(e) = result {
            shared.metrics.checkpoint_result("error");
            if let CheckpointError::Failed(e) = &e {
                shared.health.set_checkpoint_problem(Some(format!("checkpoint failing: {e:#}")));
            }
            return Err(e);
        }
        shared.health.set_checkpoint_problem(None);
        crate::testhooks::pause("checkpoint-before-commit");
        match commit.map(|commit| commit(&self.offsets)) {
            Some(Err(e)) => {
                self.failed_commits += 1;
                shared.metrics.checkpoint_result("commit_failed");
                shared.health.set_commit_failures(self.failed_commits);
                return Err(CheckpointError::Commit(e));
            }
            // The broker's answer is reported when it comes.
            Some(Ok(Committed::Sent)) => {}
            Some(Ok(Committed::Done)) | None => {
                self.failed_commits = 0;
                shared.health.set_commit_failures(0);
            }
        }
        shared.metrics.checkpoint_done(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn write_snapshot(&mut self) -> Result<(), CheckpointError> {
        if let Err(e) = self.pipeline.sync_dead_letters() {
            // Some dead letters may be lost: only reading their records again
            // (from the last snapshot, after a restart) recovers them.
            self.poisoned = true;
            return Err(CheckpointError::Fatal(anyhow::anyhow!(
                "cannot make dead letters durable: {e}; stopping so that a restart writes them again"
            )));
        }
        let seq = self.seq + 1;
        let (states, superseded) = self.pipeline.prepare_sinks(seq).map_err(CheckpointError::Failed)?;
        let mut sinks = self.sink_states.clone();
        sinks.extend(states);
        for key in superseded {
            sinks.remove(key);
        }
        let shared = self.pipeline.shared().clone();
        shared.compact_coverage_names();
        let coverage = shared.coverage.read().unwrap_or_else(|e| e.into_inner());
        let bytes = self
            .snapshots
            .write(&SnapshotRef {
                offsets: &self.offsets,
                coverage: coverage.snapshot_ref(),
                written_at: chrono::Utc::now().timestamp(),
                replayed: &self.replayed,
                seq,
                source: self.source.as_ref(),
                sinks: &sinks,
            })
            .map_err(|e| CheckpointError::Failed(e.into()))?;
        drop(coverage);
        self.seq = seq;
        self.sink_states = sinks;
        self.pipeline.sinks_committed(seq);
        tracing::debug!(bytes, seq, partitions = self.offsets.len(), "snapshot written");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::{Coverage, Policy};

    fn write(file: &SnapshotFile) {
        let mut offsets = BTreeMap::new();
        offsets.insert(("insights-logs-signinlogs".to_string(), 3), 1234);
        let coverage = Coverage::new(Policy::default());
        let replayed = [Replayed { path: "/exports/june.json.gz".into(), bytes: 10, modified: 2, at: 3 }];
        let source = SourceIdentity { cluster_id: Some("abc".into()), brokers: "k:9092".into() };
        let sinks = BTreeMap::from([("alerts".to_string(), vec![1, 2, 3])]);
        file.write(&SnapshotRef {
            offsets: &offsets,
            coverage: coverage.snapshot_ref(),
            written_at: 1,
            replayed: &replayed,
            seq: 7,
            source: Some(&source),
            sinks: &sinks,
        })
        .unwrap();
    }

    #[test]
    fn a_written_snapshot_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        assert!(file.read().unwrap().is_none(), "no snapshot yet");
        write(&file);
        let back = file.read().unwrap().unwrap();
        assert_eq!(back.offsets[&("insights-logs-signinlogs".to_string(), 3)], 1234);
        assert_eq!(back.replayed[0].path, "/exports/june.json.gz");
        assert_eq!((back.seq, back.sinks["alerts"].as_slice()), (7, &[1u8, 2, 3][..]));
        assert_eq!(back.source.unwrap().cluster_id.as_deref(), Some("abc"));
        assert!(!dir.path().join("state.snapshot.tmp").exists());
    }

    #[test]
    fn a_damaged_snapshot_is_refused_naming_the_file_and_the_choices() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        write(&file);
        let mut bytes = fs::read(file.path()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(file.path(), &bytes).unwrap();
        let err = file.read().unwrap_err().to_string();
        assert!(err.contains("state.snapshot") && err.contains("checksum") && err.contains("--reset-state"), "{err}");
        fs::write(file.path(), &bytes[..bytes.len() - 10]).unwrap();
        assert!(file.read().unwrap_err().to_string().contains("cut short"));
        fs::write(file.path(), b"hello").unwrap();
        assert!(file.read().unwrap_err().to_string().contains("not an mfawatch snapshot"));
    }

    #[test]
    fn a_state_directory_is_used_by_one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        let held = file.lock().unwrap();
        let err = file.lock().unwrap_err().to_string();
        assert!(err.contains("in use by another mfawatch"), "{err}");
        drop(held);
        file.lock().unwrap();
    }

    fn old_format(version: u32, payload: Vec<u8>) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&payload);
        bytes
    }

    #[test]
    fn version_1_and_3_snapshots_still_read() {
        #[derive(Serialize)]
        struct V1<'a> {
            offsets: BTreeMap<Partition, i64>,
            coverage: CoverageSnapshotRef<'a>,
            written_at: i64,
        }
        #[derive(Serialize)]
        struct V3<'a> {
            offsets: BTreeMap<Partition, i64>,
            coverage: CoverageSnapshotRef<'a>,
            written_at: i64,
            replayed: Vec<Replayed>,
        }
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        let coverage = Coverage::new(Policy::default());
        let offsets = BTreeMap::from([(("insights-logs-signinlogs".to_string(), 0), 7)]);
        let v1 = V1 { offsets: offsets.clone(), coverage: coverage.snapshot_ref(), written_at: 1 };
        fs::write(file.path(), old_format(1, postcard::to_allocvec(&v1).unwrap())).unwrap();
        let back = file.read().unwrap().unwrap();
        assert_eq!(back.offsets[&("insights-logs-signinlogs".to_string(), 0)], 7);
        assert!(back.replayed.is_empty());
        let replayed = vec![Replayed { path: "/x".into(), bytes: 1, modified: 2, at: 3 }];
        let v3 = V3 { offsets, coverage: coverage.snapshot_ref(), written_at: 1, replayed };
        fs::write(file.path(), old_format(3, postcard::to_allocvec(&v3).unwrap())).unwrap();
        let back = file.read().unwrap().unwrap();
        assert_eq!((back.replayed.len(), back.seq, back.source), (1, 0, None));
    }

    #[test]
    fn a_leftover_temporary_file_does_not_matter() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        write(&file);
        fs::write(dir.path().join("state.snapshot.tmp"), b"half written").unwrap();
        assert!(file.read().unwrap().is_some());
        write(&file);
    }

    fn checkpointer(dir: &Path) -> Checkpointer {
        use crate::classify::Rules;
        use crate::coverage::Accounts;
        use crate::pipeline::Shared;
        let shared = Shared::new(Coverage::new(Policy::default()), Accounts::default(), &Rules::default());
        let snapshots = SnapshotFile::new(dir);
        let lock = snapshots.lock().unwrap();
        let pipeline = Pipeline::new(Rules::default(), Policy::default(), shared, Default::default());
        Checkpointer {
            pipeline,
            offsets: BTreeMap::from([(("t".to_string(), 0), 5)]),
            replayed: Vec::new(),
            source: None,
            sink_states: BTreeMap::new(),
            snapshots,
            seq: 0,
            last_checkpoint: Instant::now(),
            failed_commits: 0,
            poisoned: false,
            refused: None,
            _state_lock: lock,
        }
    }

    #[test]
    fn a_failed_commit_is_its_own_result_and_repeated_makes_the_daemon_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let mut cp = checkpointer(dir.path());
        let shared = cp.pipeline.shared().clone();
        shared.health.state_loaded.store(true, std::sync::atomic::Ordering::Relaxed);
        shared.health.source_connected.store(true, std::sync::atomic::Ordering::Relaxed);
        let refuse = |_: &BTreeMap<Partition, i64>| Err("NOT_COORDINATOR".to_string());
        for n in 1..=COMMIT_FAILURES_NOT_READY {
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
        let mut cp = checkpointer(dir.path());
        let shared = cp.pipeline.shared().clone();
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
}
