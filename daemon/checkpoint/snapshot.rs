//! snapshot: the file a checkpoint writes, `state.snapshot` — its format,
//! its upgrades from earlier formats, and the lock that gives a state
//! directory to one process. Knows nothing of when checkpoints happen.
//!
//! File format: 8-byte magic, u32 format version, u32 CRC-32 of the payload,
//! u64 payload length, then the payload (postcard). A snapshot that fails any
//! check is refused with a message naming the file; it is never half-read.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::coverage::{
    CoverageSnapshot, CoverageSnapshotRef, CoverageSnapshotV3, CoverageSnapshotV6, CoverageSnapshotV7,
};
use crate::directory::{DirectorySnapshot, DirectorySnapshotRef, DirectorySnapshotV5, DirectorySnapshotV5b};
use crate::durable::{create_dir_durable, create_private, rename_durable, tmp_name};

const MAGIC: &[u8; 8] = b"MFAWATCH";
const VERSION: u32 = 8;
const FILE_NAME: &str = "state.snapshot";

/// A partition of a topic.
pub type Partition = (String, i32);

/// Everything a restart needs. (`C`: formats 6 and 7 had the same layout
/// with coverage in an earlier form, [`CoverageSnapshotV6`],
/// [`CoverageSnapshotV7`].)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot<C = CoverageSnapshot> {
    /// Next offset to read, per partition.
    pub offsets: BTreeMap<Partition, i64>,
    pub coverage: C,
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
    /// What the directory records said (format 5 on; empty before; the posture format 6 on).
    pub directory: DirectorySnapshot,
}

impl<C> Snapshot<C> {
    /// The current form, coverage upgraded by `coverage`.
    fn upgrade(self, coverage: impl FnOnce(C) -> CoverageSnapshot) -> Snapshot {
        Snapshot {
            offsets: self.offsets,
            coverage: coverage(self.coverage),
            written_at: self.written_at,
            replayed: self.replayed,
            seq: self.seq,
            source: self.source,
            sinks: self.sinks,
            directory: self.directory,
        }
    }
}

/// Format 5: the directory without the posture, in two layouts (per-user
/// MFA came in without a new format number): the whole payload must be read.
#[derive(Deserialize)]
struct SnapshotV5<D> {
    offsets: BTreeMap<Partition, i64>,
    coverage: CoverageSnapshotV6,
    written_at: i64,
    replayed: Vec<Replayed>,
    seq: u64,
    source: Option<SourceIdentity>,
    sinks: BTreeMap<String, Vec<u8>>,
    directory: D,
}

impl<D> SnapshotV5<D> {
    fn upgrade(self, directory: impl FnOnce(D) -> DirectorySnapshot) -> Snapshot {
        Snapshot {
            offsets: self.offsets,
            coverage: self.coverage.upgrade(),
            written_at: self.written_at,
            replayed: self.replayed,
            seq: self.seq,
            source: self.source,
            sinks: self.sinks,
            directory: directory(self.directory),
        }
    }
}

/// A format-5 payload in either layout, the one that reads it whole.
fn read_v5(payload: &[u8]) -> postcard::Result<Snapshot> {
    match postcard::take_from_bytes::<SnapshotV5<DirectorySnapshotV5b>>(payload) {
        Ok((v, [])) => Ok(v.upgrade(DirectorySnapshotV5b::upgrade)),
        _ => match postcard::take_from_bytes::<SnapshotV5<DirectorySnapshotV5>>(payload)? {
            (v, []) => Ok(v.upgrade(DirectorySnapshotV5::upgrade)),
            _ => Err(postcard::Error::DeserializeBadEncoding),
        },
    }
}

/// Format 4: before the directory state.
#[derive(Deserialize)]
struct SnapshotV4 {
    offsets: BTreeMap<Partition, i64>,
    coverage: CoverageSnapshotV6,
    written_at: i64,
    replayed: Vec<Replayed>,
    seq: u64,
    source: Option<SourceIdentity>,
    sinks: BTreeMap<String, Vec<u8>>,
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

impl SourceIdentity {
    /// For messages: the cluster id and brokers.
    pub fn describe(&self) -> String {
        match &self.cluster_id {
            Some(id) => format!("cluster id {id}, brokers {}", self.brokers),
            None => format!("brokers {}", self.brokers),
        }
    }
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
    pub directory: DirectorySnapshotRef<'a>,
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
        self.write_encoded(&self.encode(snapshot)?)
    }

    /// The file's bytes for `snapshot` (header, checksum, payload), made in
    /// memory: the part of a write that needs the state.
    pub fn encode(&self, snapshot: &SnapshotRef<'_>) -> Result<Vec<u8>, SnapshotError> {
        let payload = postcard::to_allocvec(snapshot)
            .map_err(|e| SnapshotError::Write { dir: self.dir.clone(), source: io::Error::other(e) })?;
        let mut bytes = Vec::with_capacity(payload.len() + 24);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&payload);
        Ok(bytes)
    }

    /// Writes what [`SnapshotFile::encode`] made: aside, fsynced, renamed
    /// over the snapshot, the directory fsynced. Returns the bytes written.
    pub fn write_encoded(&self, bytes: &[u8]) -> Result<u64, SnapshotError> {
        let err = |source| SnapshotError::Write { dir: self.dir.clone(), source };
        create_dir_durable(&self.dir).map_err(err)?;
        let tmp = tmp_name(&self.path());
        let write_tmp = || -> io::Result<()> {
            crate::testhooks::write_fault()?;
            let mut file = create_private(&tmp)?;
            file.write_all(bytes)?;
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
            directory: DirectorySnapshot::default(),
        };
        // Format 3 keeps registration failures as a set of days.
        let before_3 = version < 3;
        let snapshot = match version {
            1 => postcard::from_bytes::<SnapshotV1>(payload)
                .map(|v| older(v.offsets, v.coverage.upgrade(before_3), v.written_at, Vec::new())),
            2 | 3 => postcard::from_bytes::<SnapshotV3>(payload)
                .map(|v| older(v.offsets, v.coverage.upgrade(before_3), v.written_at, v.replayed)),
            4 => postcard::from_bytes::<SnapshotV4>(payload).map(|v| Snapshot {
                offsets: v.offsets,
                coverage: v.coverage.upgrade(),
                written_at: v.written_at,
                replayed: v.replayed,
                seq: v.seq,
                source: v.source,
                sinks: v.sinks,
                directory: DirectorySnapshot::default(),
            }),
            5 => read_v5(payload),
            6 => postcard::from_bytes::<Snapshot<CoverageSnapshotV6>>(payload).map(|v| v.upgrade(|c| c.upgrade())),
            7 => postcard::from_bytes::<Snapshot<CoverageSnapshotV7>>(payload).map(|v| v.upgrade(|c| c.upgrade())),
            _ => postcard::from_bytes::<Snapshot>(payload),
        };
        Ok(Some(snapshot.map_err(|e| damaged(e.to_string()))?))
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
        let directory = crate::directory::Directory::default();
        file.write(&SnapshotRef {
            offsets: &offsets,
            coverage: coverage.snapshot_ref(),
            written_at: 1,
            replayed: &replayed,
            seq: 7,
            source: Some(&source),
            sinks: &sinks,
            directory: directory.snapshot_ref(),
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

    /// Ann's counted browser sign-in (identity 42), with MFA or with one factor.
    fn counted_sign_in(mfa: bool) -> crate::coverage::Observation<'static> {
        crate::coverage::Observation {
            key: "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
            upn: Some("ann@contoso.example"),
            display_name: None,
            user_type: None,
            time: chrono::DateTime::from_timestamp(1_750_000_000, 0).unwrap(),
            counted: true,
            mfa,
            single_factor: !mfa,
            legacy: false,
            registration_required: false,
            any_mfa: mfa,
            app: None,
            client_app: "Browser",
            risky: false,
            identity: 42,
            carried: Default::default(),
            strength: None,
        }
    }

    #[test]
    fn a_version_6_snapshot_still_reads_and_its_counted_sign_ins_stay_counted_once() {
        use crate::coverage::{Observation, Observed};
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        let mut coverage = Coverage::new(Policy::default());
        let seen = counted_sign_in(false);
        assert_eq!(coverage.observe(&seen), Observed::Counted);
        let v6 = Snapshot {
            offsets: BTreeMap::from([(("insights-logs-signinlogs".to_string(), 0), 9)]),
            coverage: CoverageSnapshotV6::of(&coverage.to_snapshot()),
            written_at: 1,
            replayed: Vec::new(),
            seq: 4,
            source: None,
            sinks: BTreeMap::from([("alerts/5".to_string(), vec![0])]),
            directory: DirectorySnapshot::default(),
        };
        fs::write(file.path(), old_format(6, postcard::to_allocvec(&v6).unwrap())).unwrap();
        let back = file.read().unwrap().unwrap();
        assert_eq!((back.seq, back.offsets.len(), back.sinks.len()), (4, 1, 1));
        let mut restored = Coverage::from_snapshot(Policy::default(), back.coverage).unwrap();
        let enriched = Observation { mfa: true, single_factor: false, any_mfa: true, ..seen };
        assert_eq!(restored.observe(&enriched), Observed::Duplicate, "known before: not moved on a guess");
    }

    #[test]
    fn a_version_7_snapshot_still_reads_and_its_users_strength_is_learnt_again() {
        use crate::coverage::{Observation, Observed, UserQuery};
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        let mut coverage = Coverage::new(Policy::default());
        let signed_in =
            Observation { strength: Some(crate::classify::Strength::PhishingResistant), ..counted_sign_in(true) };
        let time = signed_in.time;
        assert_eq!(coverage.observe(&signed_in), Observed::Counted);
        let v7 = Snapshot {
            offsets: BTreeMap::from([(("insights-logs-signinlogs".to_string(), 0), 9)]),
            coverage: CoverageSnapshotV7::of(&coverage.to_snapshot()),
            written_at: 1,
            replayed: Vec::new(),
            seq: 5,
            source: None,
            sinks: BTreeMap::new(),
            directory: DirectorySnapshot::default(),
        };
        fs::write(file.path(), old_format(7, postcard::to_allocvec(&v7).unwrap())).unwrap();
        let back = file.read().unwrap().unwrap();
        assert_eq!((back.seq, back.offsets.len()), (5, 1));
        let mut restored = Coverage::from_snapshot(Policy::default(), back.coverage).unwrap();
        let accounts = crate::coverage::Accounts::default();
        let (_, users) = restored.users(&accounts, &UserQuery::default());
        assert_eq!(users[0].state, crate::coverage::State::Covered);
        assert!(!users[0].phishing_resistant, "format 7 did not keep it");
        assert_eq!(restored.observe(&signed_in), Observed::Duplicate, "its counted sign-ins are kept");
        let next = Observation { identity: 43, time: time + chrono::Duration::hours(1), ..signed_in };
        assert_eq!(restored.observe(&next), Observed::Counted);
        let (_, users) = restored.users(&accounts, &UserQuery::default());
        assert!(users[0].phishing_resistant, "the next sign-in tells it");
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
}
