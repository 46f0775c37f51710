//! checkpoint: the one place where progress becomes durable.
//!
//! A checkpoint makes the sinks durable (dead letters synced), then writes the
//! snapshot — the coverage state together with the next offset of every
//! partition — to a temporary file, fsyncs it, renames it over the old one and
//! fsyncs the directory. Only after that may the caller commit the offsets to
//! Kafka. On start the snapshot is loaded and each partition resumes from its
//! offset in it, so a crash at any instant loses nothing and counts nothing
//! twice (DESIGN.md, "Delivery guarantee").
//!
//! File format: 8-byte magic, u32 format version, u32 CRC-32 of the payload,
//! u64 payload length, then the payload (postcard). A snapshot that fails any
//! check is refused with a message naming the file; it is never half-read.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::coverage::{CoverageSnapshot, CoverageSnapshotRef};

const MAGIC: &[u8; 8] = b"MFAWATCH";
const VERSION: u32 = 3;
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

/// Format version 1: before `replayed`. (Format 2 added it; format 3 keeps
/// registration failures as days, in the same bytes.)
#[derive(Deserialize)]
struct SnapshotV1 {
    offsets: BTreeMap<Partition, i64>,
    coverage: CoverageSnapshot,
    written_at: i64,
}

/// [`Snapshot`] borrowed from the live state, for writing.
#[derive(Debug, Serialize)]
pub struct SnapshotRef<'a> {
    pub offsets: &'a BTreeMap<Partition, i64>,
    pub coverage: CoverageSnapshotRef<'a>,
    pub written_at: i64,
    pub replayed: &'a [Replayed],
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot write snapshot in {dir}: {source} (is the directory writable by mfawatch?)")]
    Write { dir: PathBuf, source: io::Error },
    #[error("cannot read snapshot {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{dir} is in use by another mfawatch (run or replay); each needs its own checkpoint.dir")]
    Locked { dir: PathBuf },
    #[error("snapshot {path} is damaged: {reason}; move it away to start from an empty state")]
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

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Takes the state directory for this process alone: a `run` and a
    /// `replay` (or two daemons) on one directory would overwrite each other's
    /// snapshots. The lock lasts as long as the returned file is open.
    pub fn lock(&self) -> Result<File, SnapshotError> {
        let err = |source| SnapshotError::Write { dir: self.dir.clone(), source };
        fs::create_dir_all(&self.dir).map_err(err)?;
        let file =
            File::options().create(true).truncate(false).write(true).open(self.dir.join("state.lock")).map_err(err)?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(fs::TryLockError::WouldBlock) => Err(SnapshotError::Locked { dir: self.dir.clone() }),
            Err(fs::TryLockError::Error(e)) => Err(err(e)),
        }
    }

    /// Writes `snapshot` atomically and durably; returns its size in bytes.
    pub fn write(&self, snapshot: &SnapshotRef<'_>) -> Result<u64, SnapshotError> {
        let err = |source| SnapshotError::Write { dir: self.dir.clone(), source };
        fs::create_dir_all(&self.dir).map_err(err)?;
        let payload = postcard::to_allocvec(snapshot).map_err(|e| err(io::Error::other(e)))?;
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        {
            let mut file = File::create(&tmp).map_err(err)?;
            let mut header = Vec::with_capacity(24);
            header.extend_from_slice(MAGIC);
            header.extend_from_slice(&VERSION.to_le_bytes());
            header.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            file.write_all(&header).map_err(err)?;
            file.write_all(&payload).map_err(err)?;
            file.sync_all().map_err(err)?;
        }
        fs::rename(&tmp, self.path()).map_err(err)?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(err)?;
        Ok(payload.len() as u64 + 24)
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
            return Err(damaged(format!("{} payload bytes, header says {len}", payload.len())));
        }
        if crc32fast::hash(payload) != crc {
            return Err(damaged("checksum mismatch".into()));
        }
        let snapshot = if version == 1 {
            postcard::from_bytes::<SnapshotV1>(payload).map(|v1| Snapshot {
                offsets: v1.offsets,
                coverage: v1.coverage,
                written_at: v1.written_at,
                replayed: Vec::new(),
            })
        } else {
            postcard::from_bytes::<Snapshot>(payload)
        };
        let mut snapshot = snapshot.map_err(|e| damaged(e.to_string()))?;
        // Format 3 keeps registration failures as a set of days.
        if version < 3 {
            snapshot.coverage.upgrade_registration_days();
        }
        Ok(Some(snapshot))
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
        file.write(&SnapshotRef {
            offsets: &offsets,
            coverage: coverage.snapshot_ref(),
            written_at: 1,
            replayed: &replayed,
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
        assert!(!dir.path().join("state.snapshot.tmp").exists());
    }

    #[test]
    fn a_damaged_snapshot_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        write(&file);
        let mut bytes = fs::read(file.path()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(file.path(), &bytes).unwrap();
        let err = file.read().unwrap_err().to_string();
        assert!(err.contains("state.snapshot") && err.contains("checksum"), "{err}");
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

    #[test]
    fn a_version_1_snapshot_still_reads() {
        #[derive(Serialize)]
        struct V1<'a> {
            offsets: BTreeMap<Partition, i64>,
            coverage: CoverageSnapshotRef<'a>,
            written_at: i64,
        }
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        let coverage = Coverage::new(Policy::default());
        let offsets = BTreeMap::from([(("insights-logs-signinlogs".to_string(), 0), 7)]);
        let payload = postcard::to_allocvec(&V1 { offsets, coverage: coverage.snapshot_ref(), written_at: 1 }).unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&payload);
        fs::write(file.path(), bytes).unwrap();
        let back = file.read().unwrap().unwrap();
        assert_eq!(back.offsets[&("insights-logs-signinlogs".to_string(), 0)], 7);
        assert!(back.replayed.is_empty());
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
