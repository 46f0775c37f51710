//! The history's files: names, what a crash leaves behind, compaction,
//! retention. Every change is a temporary file, fsync, rename, directory
//! fsync — never a file half there.
//!
//! ```text
//! <dir>/date=2026-11-23/part-<epoch>-<seq>-<k>.parquet   rows of checkpoint <seq>
//! <dir>/date=2026-11-23/day-<epoch>-<seq>.parquet        a day merged (compacted)
//! <dir>/date=2026-11-23/day-<epoch>-<seq>.merged         the files it merged, until they are gone
//! <dir>/_committed                                       the last checkpoint of every epoch
//! <dir>/_state.lock                                      held by the one state that writes here
//! <dir>/_files.lock, _turnstile.lock                     readers share it; replacing files takes it alone
//! ```
//!
//! A part belongs to a checkpoint: it counts only once the snapshot of that
//! checkpoint is durable. The *epoch* is a random number kept in the
//! snapshot, new for every state started from nothing: parts of the state in
//! use are kept up to the snapshot's checkpoint; parts of earlier states
//! (a snapshot moved away, `--reset-state`) are kept up to the checkpoint
//! `_committed` says that state reached. Anything beyond was written by a
//! checkpoint that did not complete, and is removed on start.
//!
//! Every row also carries the epoch and checkpoint that wrote it
//! (`checkpoint_epoch`, `checkpoint_seq`), because a merged day file holds
//! rows of many checkpoints under the name of the newest: when an older
//! snapshot is restored, recovery keeps exactly the rows up to it and removes
//! the rest, which the restored offsets read again ([`recover`]). Rows of
//! files written before these columns existed are kept as they are.
//!
//! Two locks: `_state.lock` is taken by the state that writes the folder, for
//! as long as it runs, so that a second state (a replay with another
//! `checkpoint.dir`) cannot remove what the first has not committed yet
//! ([`StateLock`]); `_files.lock` is shared by every reader (the report, the
//! API's user detail) from listing the files to the end of reading them, and
//! taken alone by whatever removes or replaces files (a merge's swap,
//! retention, recovery), so a reader sees one consistent set ([`read_lock`]).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;

use crate::classify::Carried;
use crate::durable::{rename_durable, sync_dir, tmp_name, write_atomic};
use crate::history::rows::col as c;

/// A history file, by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    Part { epoch: u64, seq: u64, k: u32 },
    Day { epoch: u64, seq: u64 },
}

impl Name {
    pub fn file(&self) -> String {
        match self {
            Name::Part { epoch, seq, k } => format!("part-{epoch:016x}-{seq:012}-{k:04}.parquet"),
            Name::Day { epoch, seq } => format!("day-{epoch:016x}-{seq:012}.parquet"),
        }
    }

    pub fn parse(file: &str) -> Option<Name> {
        let stem = file.strip_suffix(".parquet")?;
        let mut words = stem.split('-');
        let kind = words.next()?;
        let epoch = u64::from_str_radix(words.next()?, 16).ok()?;
        let seq = words.next()?.parse().ok()?;
        let name = match kind {
            "part" => Name::Part { epoch, seq, k: words.next()?.parse().ok()? },
            "day" => Name::Day { epoch, seq },
            _ => return None,
        };
        words.next().is_none().then_some(name)
    }

    pub fn epoch_seq(&self) -> (u64, u64) {
        match self {
            Name::Part { epoch, seq, .. } | Name::Day { epoch, seq } => (*epoch, *seq),
        }
    }
}

/// `date=YYYY-MM-DD`
pub fn date_dir(dir: &Path, date: NaiveDate) -> PathBuf {
    dir.join(format!("date={}", date.format("%Y-%m-%d")))
}

/// The date folders, oldest first.
pub fn dates(dir: &Path) -> io::Result<Vec<(NaiveDate, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(date) = name.strip_prefix("date=").and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()) {
            out.push((date, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The Parquet files of one date folder, by name.
pub fn files(date_dir: &Path) -> io::Result<Vec<(Name, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(date_dir)? {
        let entry = entry?;
        if let Some(name) = Name::parse(&entry.file_name().to_string_lossy()) {
            out.push((name, entry.path()));
        }
    }
    out.sort_by_key(|(n, _)| n.file());
    Ok(out)
}

/// The last checkpoint of every epoch that reached one. A `_committed` that
/// cannot be read is an error, not an empty list: recovery would otherwise
/// take every earlier state's rows for uncommitted ones and remove them.
pub fn read_committed(dir: &Path) -> io::Result<BTreeMap<u64, u64>> {
    let path = dir.join("_committed");
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    let mut all = BTreeMap::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let parsed =
            line.split_once(' ').and_then(|(e, s)| Some((u64::from_str_radix(e, 16).ok()?, s.trim().parse().ok()?)));
        let Some((epoch, seq)) = parsed else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} line {}: not \"<epoch> <checkpoint>\" ({line:?}); restore it from a backup or remove it \
                     (the parts of earlier states it vouched for are then removed as uncommitted)",
                    path.display(),
                    n + 1
                ),
            ));
        };
        all.insert(epoch, seq);
    }
    Ok(all)
}

/// Records that `epoch` reached checkpoint `seq`.
pub fn write_committed(dir: &Path, epoch: u64, seq: u64) -> io::Result<()> {
    let mut all = read_committed(dir)?;
    all.insert(epoch, seq);
    let text: String = all.iter().map(|(e, s)| format!("{e:016x} {s}\n")).collect();
    write_atomic(&dir.join("_committed"), text.as_bytes())
}

/// What starting found and removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Parts of checkpoints that did not complete.
    pub uncommitted: usize,
    /// Files a completed compaction had merged but not yet removed.
    pub merged: usize,
    /// Temporary files.
    pub temporary: usize,
    /// Rows of merged day files written by checkpoints past the snapshot
    /// (an older snapshot restored): removed, the day files rewritten.
    pub rows_past_snapshot: usize,
    /// Merged day files past the snapshot that predate the row columns
    /// naming their checkpoint: kept whole (their rows may be read again).
    pub kept_whole: usize,
}

/// Brings the history back to what the snapshot stands for: `epoch` and
/// `seq` are the state's (the snapshot's checkpoint; 0 with no snapshot).
/// A part past it is removed whole; a merged day file past it keeps the rows
/// of checkpoints up to it and loses the others (see the module's doc).
pub fn recover(dir: &Path, epoch: u64, seq: u64) -> anyhow::Result<Recovered> {
    let _alone = write_lock(dir, None)?;
    let committed = read_committed(dir)?;
    let limit = |e: u64| if e == epoch { seq } else { committed.get(&e).copied().unwrap_or(0) };
    let mut done = Recovered::default();
    for (_, date_dir) in dates(dir)? {
        let mut changed = false;
        // A compaction that completed (its day file is there) finishes
        // removing what it merged; one that did not leaves no trace.
        for entry in fs::read_dir(&date_dir)? {
            let path = entry?.path();
            let file = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if let Some(stem) = file.strip_suffix(".merged") {
                if date_dir.join(format!("{stem}.parquet")).exists() {
                    for merged in fs::read_to_string(&path)?.lines().filter(|l| !l.is_empty()) {
                        if remove_if_there(&date_dir.join(merged))? {
                            done.merged += 1;
                        }
                    }
                }
                fs::remove_file(&path)?;
                changed = true;
            } else if file.ends_with(".tmp") {
                fs::remove_file(&path)?;
                done.temporary += 1;
                changed = true;
            }
        }
        for (name, path) in files(&date_dir)? {
            let (e, s) = name.epoch_seq();
            if s <= limit(e) {
                continue;
            }
            match name {
                Name::Part { .. } => {
                    fs::remove_file(&path)?;
                    done.uncommitted += 1;
                }
                Name::Day { .. } => trim_day(&date_dir, e, &path, &limit, &mut done)?,
            }
            changed = true;
        }
        if changed {
            sync_dir(&date_dir)?;
        }
    }
    // A restored snapshot: what `_committed` said this state reached is past it now.
    if committed.get(&epoch).is_some_and(|&reached| reached > seq) {
        write_committed(dir, epoch, seq)?;
    }
    Ok(done)
}

/// A merged day file of `epoch` named past its limit: rewritten with the
/// rows whose checkpoint is within `limit` (and those that do not say),
/// under the name of the limit. A crash between the rewrite and the removal
/// of the old file leaves both; the next recovery then finds the rewrite
/// there and only removes the old one.
fn trim_day(
    date_dir: &Path,
    epoch: u64,
    path: &Path,
    limit: &dyn Fn(u64) -> u64,
    done: &mut Recovered,
) -> anyhow::Result<()> {
    let df = read_parquet(path)?;
    let (Ok(epochs), Ok(seqs)) = (df.column(c::CHECKPOINT_EPOCH), df.column(c::CHECKPOINT_SEQ)) else {
        tracing::warn!(
            file = %path.display(),
            "a merged history file written by a checkpoint past the snapshot predates the columns naming each row's checkpoint: kept whole (the restored offsets may add some of its sign-ins again; the report counts a record once)"
        );
        done.kept_whole += 1;
        return Ok(());
    };
    let (epochs, seqs) = (epochs.u64()?, seqs.u64()?);
    let keep: BooleanChunked =
        epochs.iter().zip(seqs.iter()).map(|(e, s)| Some(s.is_none_or(|s| s <= limit(e.unwrap_or(epoch))))).collect();
    let mut kept = df.filter(&keep)?;
    done.rows_past_snapshot += df.height() - kept.height();
    let target = date_dir.join(Name::Day { epoch, seq: limit(epoch) }.file());
    if target != path && !target.exists() && kept.height() > 0 {
        write_parquet(&target, &mut kept, Zstd::Default)?;
    }
    if target != path {
        fs::remove_file(path)?;
    }
    Ok(())
}

/// `_state.lock`: the state that writes a history folder holds it while it
/// runs; the file says who that is, for the refusal a second one gets.
pub struct StateLock(#[allow(dead_code)] fs::File);

impl StateLock {
    /// Takes the folder for the state in `state_dir`, or says who has it.
    pub fn take(dir: &Path, state_dir: &Path) -> anyhow::Result<StateLock> {
        use std::io::{Read as _, Seek as _, Write as _};
        let path = dir.join("_state.lock");
        let mut file = fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(crate::durable::FILE_MODE)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                anyhow::bail!(
                    "history.dir {} is written by another mfawatch state ({}): two states on one history remove each \
                     other's rows; give this one its own history.dir (the default is <checkpoint.dir>/history), or \
                     stop the other first",
                    dir.display(),
                    holder.trim()
                );
            }
            Err(fs::TryLockError::Error(e)) => anyhow::bail!("cannot lock {}: {e}", path.display()),
        }
        let holder = format!(
            "pid {}, checkpoint.dir {}, since {}\n",
            std::process::id(),
            state_dir.display(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(holder.as_bytes())?;
        Ok(StateLock(file))
    }
}

/// A hold on `_files.lock`; let go when dropped.
pub struct FilesGuard(#[allow(dead_code)] Option<fs::File>);

/// `_files.lock` or `_turnstile.lock` (see [`write_lock`]); `None` in a copy
/// of a history that cannot be written to (nothing replaces its files).
fn lock_file(dir: &Path, name: &str) -> io::Result<Option<fs::File>> {
    let path = dir.join(name);
    let opened = fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(crate::durable::FILE_MODE)
        .open(&path);
    match opened {
        Ok(file) => Ok(Some(file)),
        Err(e) if matches!(e.kind(), io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem) => {
            Ok(fs::File::open(&path).ok())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

/// For a reader: from listing the files to the end of reading them, no file
/// is removed or replaced. A reader passes the turnstile first, so that one
/// waiting to replace files is not starved by readers that follow each other.
pub fn read_lock(dir: &Path) -> io::Result<FilesGuard> {
    let turnstile = lock_file(dir, "_turnstile.lock")?;
    if let Some(t) = &turnstile {
        t.lock()?;
    }
    let file = lock_file(dir, "_files.lock")?;
    if let Some(file) = &file {
        file.lock_shared()?;
    }
    drop(turnstile);
    Ok(FilesGuard(file))
}

/// For whatever removes or replaces files: alone, once no reader holds the
/// folder; new readers wait at the turnstile meanwhile. `wait`: how long to
/// wait for the readers there are (`None`: as long as it takes); `Ok(None)`
/// when they took longer.
pub fn write_lock(dir: &Path, wait: Option<std::time::Duration>) -> io::Result<Option<FilesGuard>> {
    let deadline = wait.map(|w| std::time::Instant::now() + w);
    let take = |file: &fs::File| -> io::Result<bool> {
        let Some(deadline) = deadline else {
            file.lock()?;
            return Ok(true);
        };
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(true),
                Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(fs::TryLockError::WouldBlock) => return Ok(false),
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    };
    let turnstile = lock_file(dir, "_turnstile.lock")?;
    if let Some(t) = &turnstile
        && !take(t)?
    {
        return Ok(None);
    }
    let Some(file) = lock_file(dir, "_files.lock")? else { return Ok(Some(FilesGuard(None))) };
    Ok(take(&file)?.then_some(FilesGuard(Some(file))))
}

fn remove_if_there(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// How the history's files are scanned: by the schema the history writes
/// now, so that files from before a column was added (it reads as empty
/// there) and files from after mix in one scan.
pub fn scan_args(row_index: Option<&str>) -> ScanArgsParquet {
    ScanArgsParquet {
        hive_options: HiveOptions { enabled: Some(false), ..Default::default() },
        row_index: row_index.map(|name| RowIndex { name: name.into(), offset: 0 }),
        schema: Some(std::sync::Arc::new(crate::history::rows::schema())),
        allow_missing_columns: true,
        ..Default::default()
    }
}

/// Each row's identity and how much its copy says ([`Carried::rank`] of its
/// `risky`, `risk_level`, `mfa_satisfied`, `mfa_method`; 0 where the file has
/// none of them), for taking the most informative copy of a record
/// (docs/labels.md §5).
pub fn copies(path: &Path) -> anyhow::Result<Vec<(u64, u8)>> {
    let identities = identities(path)?;
    let open = || fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    let schema = ParquetReader::new(open()?).schema().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let columns: Vec<String> = [c::RISKY, c::RISK_LEVEL, c::MFA_SATISFIED, c::MFA_METHOD]
        .iter()
        .filter(|n| schema.contains(n))
        .map(|n| (*n).to_owned())
        .collect();
    if columns.is_empty() {
        return Ok(identities.into_iter().map(|i| (i, 0)).collect());
    }
    let df = ParquetReader::new(open()?)
        .with_columns(Some(columns))
        .finish()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let flag = |name: &str| df.column(name).ok().and_then(|c| c.bool().ok().cloned());
    let text = |name: &str| df.column(name).ok().and_then(|c| c.str().ok().cloned());
    let (risky, level, mfa, method) =
        (flag(c::RISKY), text(c::RISK_LEVEL), flag(c::MFA_SATISFIED), text(c::MFA_METHOD));
    Ok(identities
        .into_iter()
        .enumerate()
        .map(|(row, identity)| {
            let carried = Carried::of_row(
                risky.as_ref().and_then(|c| c.get(row)),
                level.as_ref().and_then(|c| c.get(row)),
                mfa.as_ref().and_then(|c| c.get(row)),
                method.as_ref().and_then(|c| c.get(row)),
            );
            (identity, carried.rank())
        })
        .collect())
}

/// The record identity (`decode::Identity`) of every row of a history file,
/// in order: its `identity` column, or — in a file from before that
/// column — worked out from the columns it has, the same way.
pub fn identities(path: &Path) -> anyhow::Result<Vec<u64>> {
    let open = || fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    let schema = ParquetReader::new(open()?).schema().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let read = |columns: &[&str]| {
        ParquetReader::new(open()?)
            .with_columns(Some(columns.iter().map(|c| (*c).to_owned()).collect()))
            .finish()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    };
    if schema.contains(c::IDENTITY) {
        let df = read(&[c::IDENTITY])?;
        return Ok(df.column(c::IDENTITY)?.u64()?.iter().map(|i| i.unwrap_or(0)).collect());
    }
    let df = read(&[c::CATEGORY, c::RECORD_ID, c::CORRELATION_ID, c::TIME, c::USER_KEY])?;
    let text = |name: &str| df.column(name).and_then(|c| c.str().cloned());
    let (category, id, correlation, user) =
        (text(c::CATEGORY)?, text(c::RECORD_ID)?, text(c::CORRELATION_ID)?, text(c::USER_KEY)?);
    let time = df.column(c::TIME)?.cast(&DataType::Int64)?;
    let time = time.i64()?;
    Ok((0..df.height())
        .map(|i| {
            crate::decode::Identity::of(
                category.get(i).unwrap_or(""),
                id.get(i),
                correlation.get(i),
                time.get(i).unwrap_or(0),
                user.get(i),
            )
            .0
        })
        .collect())
}

/// How hard a Parquet file is compressed.
#[derive(Clone, Copy)]
pub enum Zstd {
    /// Level 1, for parts: they live until their day is merged, and are
    /// written beside the pipeline, where every cycle counts under load.
    Fast,
    /// zstd's default level, for the merged day files that are kept.
    Default,
}

/// Writes `df` as a Parquet file at `path` (zstd), atomically and durably.
pub fn write_parquet(path: &Path, df: &mut DataFrame, level: Zstd) -> anyhow::Result<u64> {
    let (tmp, bytes) = write_aside(path, |file| Ok(parquet_writer(file, level)?.finish(df)?))?;
    rename_durable(&tmp, path)?;
    Ok(bytes)
}

/// Writes the file that is to be `path` with `write` (which returns its
/// size) under a temporary name beside it, fsynced; the caller renames it
/// into place.
fn write_aside(path: &Path, write: impl FnOnce(&fs::File) -> anyhow::Result<u64>) -> anyhow::Result<(PathBuf, u64)> {
    crate::testhooks::write_fault()?;
    let tmp = tmp_name(path);
    let file = crate::durable::create_private(&tmp)?;
    let written = write(&file).and_then(|bytes| Ok((bytes, file.sync_all()?)));
    drop(file);
    match written {
        Ok((bytes, ())) => Ok((tmp, bytes)),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Rows per row group of the files written here.
const ROW_GROUP_ROWS: usize = 256 * 1024;

fn parquet_writer(file: &fs::File, level: Zstd) -> anyhow::Result<ParquetWriter<&fs::File>> {
    let level = match level {
        Zstd::Fast => Some(polars::polars_utils::compression::ZstdLevel::try_new(1)?),
        Zstd::Default => None,
    };
    Ok(ParquetWriter::new(file)
        .with_compression(ParquetCompression::Zstd(level))
        .with_statistics(StatisticsOptions::default())
        .with_row_group_size(Some(ROW_GROUP_ROWS))
        .set_parallel(false))
}

/// Writes the rows of the Parquet files `parts`, in order, as the file that
/// is to be `path` (zstd's default level), under a temporary name, a row
/// group at a time: memory follows a row group, not the day (a day of a
/// large tenant is over a million rows, and the daemon runs under
/// `MemoryMax=2G`). Files from before the row-checkpoint columns get them
/// empty (see the module's doc). Returns the temporary file.
fn write_merged(path: &Path, parts: &[&PathBuf]) -> anyhow::Result<PathBuf> {
    let Some((first, rest)) = parts.split_first() else { anyhow::bail!("nothing to merge into {}", path.display()) };
    let first =
        with_checkpoint_columns(read_parquet(first)?, None).map_err(|e| anyhow::anyhow!("{}: {e}", first.display()))?;
    let schema = first.schema().clone();
    let (tmp, _) = write_aside(path, |file| {
        let mut batched = parquet_writer(file, Zstd::Default)?.batched(&schema)?;
        // Writes whole row groups of `rows` (all of it when `last`) and returns the rest.
        let mut write = |mut rows: DataFrame, last: bool| -> anyhow::Result<Option<DataFrame>> {
            rows.rechunk_mut();
            let mut offset = 0;
            while rows.height().saturating_sub(offset) >= ROW_GROUP_ROWS || (last && offset < rows.height()) {
                batched.write_batch(&rows.slice(offset as i64, ROW_GROUP_ROWS))?;
                offset += ROW_GROUP_ROWS;
            }
            Ok((offset < rows.height()).then(|| rows.slice(offset as i64, usize::MAX)))
        };
        let mut pending = Some(first);
        for part in rest {
            let df = with_checkpoint_columns(read_parquet(part)?, Some(&schema))
                .map_err(|e| anyhow::anyhow!("{}: {e}", part.display()))?;
            let rows = match pending.take() {
                Some(mut rows) => {
                    rows.vstack_mut(&df).map_err(|e| anyhow::anyhow!("{}: {e}", part.display()))?;
                    rows
                }
                None => df,
            };
            pending = if rows.height() >= ROW_GROUP_ROWS { write(rows, false)? } else { Some(rows) };
        }
        if let Some(rows) = pending {
            write(rows, true)?;
        }
        Ok(batched.finish()?)
    })?;
    Ok(tmp)
}

/// `df` with the row-checkpoint columns (empty where a file from before them
/// has none), its columns in the order of `schema` when given, which they
/// must match.
fn with_checkpoint_columns(mut df: DataFrame, schema: Option<&Schema>) -> anyhow::Result<DataFrame> {
    // So are a sign-in file's `mechanism` and `mfa_strength` (null: not
    // known then), so that a day written partly before the release that
    // added them still merges.
    let sign_ins = df.column(c::BLOCKED_BY).is_ok();
    for (name, dtype) in [
        (c::CHECKPOINT_EPOCH, DataType::UInt64),
        (c::CHECKPOINT_SEQ, DataType::UInt64),
        (c::MECHANISM, DataType::String),
        (c::MFA_STRENGTH, DataType::String),
    ] {
        let sign_in_only = name == c::MECHANISM || name == c::MFA_STRENGTH;
        if df.column(name).is_err() && (!sign_in_only || sign_ins) {
            let empty = Column::full_null(name.into(), df.height(), &dtype);
            df.with_column(empty)?;
        }
    }
    let Some(schema) = schema else { return Ok(df) };
    anyhow::ensure!(
        df.width() == schema.len() && schema.iter_names().all(|n| df.column(n).is_ok()),
        "its columns differ from the other files of its day"
    );
    let df = df.select(schema.iter_names().cloned())?;
    anyhow::ensure!(df.schema().as_ref() == schema, "its column types differ from the other files of its day");
    Ok(df)
}

/// Reads a Parquet file whole; an error names the file.
pub fn read_parquet(path: &Path) -> anyhow::Result<DataFrame> {
    let file = fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    ParquetReader::new(file).finish().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// How long a merge or retention waits for the readers of the history (a
/// report) before it leaves the files as they are until the next round.
pub const READERS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Merges every file of one date folder that checkpoint `upto` of `epoch`
/// (or an earlier state) stands for into one `day-` file, then removes them.
/// The merged file is written aside while readers go on; it replaces the
/// files it holds only with `_files.lock` taken alone, waiting `wait` for
/// readers. Returns how many files were merged (0: nothing to do, or the
/// readers took longer).
pub fn compact(date_dir: &Path, epoch: u64, upto: u64, wait: std::time::Duration) -> anyhow::Result<usize> {
    let history = date_dir.parent().unwrap_or(Path::new("."));
    let committed = read_committed(history)?;
    let eligible: Vec<(Name, PathBuf)> = files(date_dir)?
        .into_iter()
        .filter(|(name, _)| {
            let (e, s) = name.epoch_seq();
            s <= if e == epoch { upto } else { committed.get(&e).copied().unwrap_or(0) }
        })
        .collect();
    if eligible.len() <= 1 && eligible.iter().all(|(n, _)| matches!(n, Name::Day { .. })) {
        return Ok(0);
    }
    let name = Name::Day { epoch, seq: upto };
    let target = date_dir.join(name.file());
    let tmp = write_merged(&target, &eligible.iter().map(|(_, path)| path).collect::<Vec<_>>())?;
    let Some(_alone) = write_lock(history, Some(wait))? else {
        fs::remove_file(&tmp)?;
        return Ok(0);
    };
    // What it merges is written down before it counts, so that a crash
    // after the rename finishes the removal, and one before leaves no trace.
    let manifest = date_dir.join(name.file().replace(".parquet", ".merged"));
    let list: String = eligible.iter().filter(|(_, p)| *p != target).map(|(n, _)| n.file() + "\n").collect();
    write_atomic(&manifest, list.as_bytes())?;
    rename_durable(&tmp, &target)?;
    crate::testhooks::pause("compact-before-remove");
    for (_, path) in eligible.iter().filter(|(_, p)| *p != target) {
        remove_if_there(path)?;
    }
    sync_dir(date_dir)?;
    fs::remove_file(&manifest)?;
    Ok(eligible.len())
}

/// Removes the date folders older than `keep_from`, once no reader holds the
/// history (`Ok(None)`: the readers took longer than `wait`).
pub fn expire(dir: &Path, keep_from: NaiveDate, wait: std::time::Duration) -> io::Result<Option<usize>> {
    let old: Vec<PathBuf> = dates(dir)?.into_iter().filter(|(date, _)| *date < keep_from).map(|(_, p)| p).collect();
    if old.is_empty() {
        return Ok(Some(0));
    }
    let Some(_alone) = write_lock(dir, Some(wait))? else { return Ok(None) };
    for path in &old {
        fs::remove_dir_all(path)?;
    }
    sync_dir(dir)?;
    Ok(Some(old.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_not_history() {
        for name in [Name::Part { epoch: 0xabc, seq: 12, k: 3 }, Name::Day { epoch: u64::MAX, seq: 0 }] {
            assert_eq!(Name::parse(&name.file()), Some(name.clone()));
        }
        for other in
            ["part-1-2.parquet", "x.parquet", "part-00000000000000ab-000000000001-0001.parquet.tmp", "_committed"]
        {
            assert_eq!(Name::parse(other), None, "{other}");
        }
    }

    fn frame(values: &[i64]) -> DataFrame {
        DataFrame::new(values.len(), vec![Column::new("x".into(), values)]).unwrap()
    }

    fn write(dir: &Path, name: &Name, values: &[i64]) {
        fs::create_dir_all(dir).unwrap();
        write_parquet(&dir.join(name.file()), &mut frame(values), Zstd::Fast).unwrap();
    }

    fn rows(dir: &Path) -> Vec<i64> {
        let mut all: Vec<i64> = files(dir)
            .unwrap()
            .into_iter()
            .flat_map(|(_, p)| {
                read_parquet(&p).unwrap().column("x").unwrap().i64().unwrap().into_no_null_iter().collect::<Vec<_>>()
            })
            .collect();
        all.sort();
        all
    }

    #[test]
    fn recovery_removes_what_checkpoints_that_did_not_complete_wrote() {
        let root = tempfile::tempdir().unwrap();
        let day = date_dir(root.path(), NaiveDate::from_ymd_opt(2025, 6, 23).unwrap());
        let (epoch, old_epoch) = (7, 3);
        write(&day, &Name::Part { epoch, seq: 4, k: 0 }, &[1, 2]);
        write(&day, &Name::Part { epoch, seq: 5, k: 0 }, &[3]); // the checkpoint the crash interrupted
        write(&day, &Name::Part { epoch, seq: 5, k: 1 }, &[4]);
        write(&day, &Name::Part { epoch: old_epoch, seq: 9, k: 0 }, &[5]); // a previous state's, committed
        write(&day, &Name::Part { epoch: old_epoch, seq: 10, k: 0 }, &[6]); // ...and its unfinished last one
        write_committed(root.path(), old_epoch, 9).unwrap();
        fs::write(day.join("part-x.parquet.tmp"), b"half").unwrap();
        let done = recover(root.path(), epoch, 4).unwrap();
        assert_eq!(done, Recovered { uncommitted: 3, temporary: 1, ..Recovered::default() });
        assert_eq!(rows(&day), [1, 2, 5]);
        // Nothing more to do the second time.
        assert_eq!(recover(root.path(), epoch, 4).unwrap(), Recovered::default());
    }

    #[test]
    fn a_day_larger_than_a_row_group_is_merged_a_row_group_at_a_time_in_order() {
        let root = tempfile::tempdir().unwrap();
        let day = date_dir(root.path(), NaiveDate::from_ymd_opt(2025, 6, 25).unwrap());
        let epoch = 12;
        // Five parts of 120,000 rows: row groups are cut across parts.
        let n = 120_000i64;
        for seq in 0..5 {
            let values: Vec<i64> = (seq * n..(seq + 1) * n).collect();
            write(&day, &Name::Part { epoch, seq: seq as u64 + 1, k: 0 }, &values);
        }
        assert_eq!(compact(&day, epoch, 5, READERS_WAIT).unwrap(), 5);
        let (_, merged) = files(&day).unwrap().pop().unwrap();
        let mut reader = ParquetReader::new(fs::File::open(&merged).unwrap());
        let sizes: Vec<usize> = reader.get_metadata().unwrap().row_groups.iter().map(|g| g.num_rows()).collect();
        assert_eq!(sizes, [ROW_GROUP_ROWS, ROW_GROUP_ROWS, 5 * n as usize - 2 * ROW_GROUP_ROWS], "whole row groups");
        let x: Vec<i64> =
            read_parquet(&merged).unwrap().column("x").unwrap().i64().unwrap().into_no_null_iter().collect();
        assert_eq!(x, (0..5 * n).collect::<Vec<_>>(), "every row once, in the parts' order");
    }

    #[test]
    fn compaction_keeps_every_row_once_and_a_crash_inside_it_is_finished_or_undone() {
        let root = tempfile::tempdir().unwrap();
        let day = date_dir(root.path(), NaiveDate::from_ymd_opt(2025, 6, 24).unwrap());
        let epoch = 11;
        for seq in 1..=4 {
            write(&day, &Name::Part { epoch, seq, k: 0 }, &[seq as i64 * 10, seq as i64 * 10 + 1]);
        }
        // Only what checkpoint 3 stands for is merged; 4 waits.
        assert_eq!(compact(&day, epoch, 3, READERS_WAIT).unwrap(), 3);
        assert_eq!(rows(&day), [10, 11, 20, 21, 30, 31, 40, 41]);
        let names: Vec<Name> = files(&day).unwrap().into_iter().map(|(n, _)| n).collect();
        assert!(
            names.contains(&Name::Day { epoch, seq: 3 }) && names.contains(&Name::Part { epoch, seq: 4, k: 0 }),
            "{names:?}"
        );
        // Again, later: the day file and the straggler become one.
        assert_eq!(compact(&day, epoch, 4, READERS_WAIT).unwrap(), 2);
        assert_eq!(files(&day).unwrap().len(), 1);
        assert_eq!(compact(&day, epoch, 4, READERS_WAIT).unwrap(), 0, "nothing left to merge");
        // A crash after the merged file was renamed but before the parts were
        // removed: recovery finishes the removal (no row twice).
        write(&day, &Name::Part { epoch, seq: 5, k: 0 }, &[50]);
        let manifest = day.join(Name::Day { epoch, seq: 5 }.file().replace(".parquet", ".merged"));
        fs::write(
            &manifest,
            format!("{}\n{}\n", Name::Part { epoch, seq: 5, k: 0 }.file(), Name::Day { epoch, seq: 4 }.file()),
        )
        .unwrap();
        write(&day, &Name::Day { epoch, seq: 5 }, &[10, 11, 20, 21, 30, 31, 40, 41, 50]);
        assert_eq!(recover(root.path(), epoch, 5).unwrap().merged, 2);
        assert_eq!(rows(&day), [10, 11, 20, 21, 30, 31, 40, 41, 50]);
        assert!(!manifest.exists());
        // A crash before the rename: the manifest alone is dropped, the parts stay.
        write(&day, &Name::Part { epoch, seq: 6, k: 0 }, &[60]);
        let manifest = day.join(Name::Day { epoch, seq: 6 }.file().replace(".parquet", ".merged"));
        fs::write(&manifest, Name::Part { epoch, seq: 6, k: 0 }.file() + "\n").unwrap();
        assert_eq!(recover(root.path(), epoch, 6).unwrap().merged, 0);
        assert_eq!(rows(&day), [10, 11, 20, 21, 30, 31, 40, 41, 50, 60]);
    }

    #[test]
    fn a_day_written_partly_before_the_mechanism_column_still_merges() {
        let root = tempfile::tempdir().unwrap();
        let day = date_dir(root.path(), NaiveDate::from_ymd_opt(2025, 6, 26).unwrap());
        let epoch = 13;
        let part = |seq: u64, mechanism: Option<&str>| {
            let mut df = frame(&[seq as i64]);
            df.with_column(Column::new(c::BLOCKED_BY.into(), [None::<&str>])).unwrap();
            if let Some(m) = mechanism {
                df.with_column(Column::new(c::MECHANISM.into(), [m])).unwrap();
            }
            write_parquet(&day.join(Name::Part { epoch, seq, k: 0 }.file()), &mut df, Zstd::Fast).unwrap();
        };
        fs::create_dir_all(&day).unwrap();
        part(1, None);
        part(2, Some("conditional_access"));
        assert_eq!(compact(&day, epoch, 2, READERS_WAIT).unwrap(), 2);
        let (_, merged) = files(&day).unwrap().pop().unwrap();
        let df = read_parquet(&merged).unwrap();
        let mechanism: Vec<Option<&str>> = df.column(c::MECHANISM).unwrap().str().unwrap().iter().collect();
        assert_eq!(mechanism, [None, Some("conditional_access")], "the older row's is null: not known");
        let strength: Vec<Option<&str>> = df.column(c::MFA_STRENGTH).unwrap().str().unwrap().iter().collect();
        assert_eq!(strength, [None, None], "neither part had it");
    }

    #[test]
    fn retention_removes_whole_days_before_the_first_kept() {
        let root = tempfile::tempdir().unwrap();
        for d in [1, 2, 3] {
            write(
                &date_dir(root.path(), NaiveDate::from_ymd_opt(2025, 1, d).unwrap()),
                &Name::Day { epoch: 1, seq: 1 },
                &[d as i64],
            );
        }
        assert_eq!(expire(root.path(), NaiveDate::from_ymd_opt(2025, 1, 2).unwrap(), READERS_WAIT).unwrap(), Some(1));
        let kept: Vec<NaiveDate> = dates(root.path()).unwrap().into_iter().map(|(d, _)| d).collect();
        assert_eq!(kept, [NaiveDate::from_ymd_opt(2025, 1, 2).unwrap(), NaiveDate::from_ymd_opt(2025, 1, 3).unwrap()]);
    }

    /// A part as the history writes it: its rows carry its epoch and checkpoint.
    fn write_part(dir: &Path, epoch: u64, seq: u64, values: &[i64]) {
        let mut df = frame(values);
        let n = values.len();
        df.with_column(Column::new(c::CHECKPOINT_EPOCH.into(), vec![epoch; n])).unwrap();
        df.with_column(Column::new(c::CHECKPOINT_SEQ.into(), vec![seq; n])).unwrap();
        fs::create_dir_all(dir).unwrap();
        write_parquet(&dir.join(Name::Part { epoch, seq, k: 0 }.file()), &mut df, Zstd::Fast).unwrap();
    }

    #[test]
    fn restoring_an_older_snapshot_keeps_exactly_the_merged_rows_up_to_it() {
        let root = tempfile::tempdir().unwrap();
        let day = date_dir(root.path(), NaiveDate::from_ymd_opt(2025, 6, 26).unwrap());
        let (epoch, old_epoch) = (21, 20);
        // An earlier state's committed rows, then this state's checkpoints 1 to 6, all merged.
        write_part(&day, old_epoch, 4, &[1]);
        write_committed(root.path(), old_epoch, 4).unwrap();
        for seq in 1..=6 {
            write_part(&day, epoch, seq, &[seq as i64 * 10]);
        }
        write_committed(root.path(), epoch, 6).unwrap();
        assert_eq!(compact(&day, epoch, 6, READERS_WAIT).unwrap(), 7);
        // The snapshot of checkpoint 3 is restored: rows of 4 to 6 go (the hub has them again), the rest stays.
        let done = recover(root.path(), epoch, 3).unwrap();
        assert_eq!((done.rows_past_snapshot, done.kept_whole), (3, 0));
        assert_eq!(rows(&day), [1, 10, 20, 30]);
        let names: Vec<Name> = files(&day).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, [Name::Day { epoch, seq: 3 }], "renamed after the checkpoint it now stands for");
        assert_eq!(read_committed(root.path()).unwrap()[&epoch], 3, "_committed no longer claims checkpoint 6");
        assert_eq!(recover(root.path(), epoch, 3).unwrap(), Recovered::default(), "nothing more the second time");

        // A crash after the rewrite, before the old file went: the rewrite is not made twice.
        write_part(&day, epoch, 4, &[40]);
        assert_eq!(compact(&day, epoch, 4, READERS_WAIT).unwrap(), 2);
        let merged = day.join(Name::Day { epoch, seq: 4 }.file());
        let copy = day.join(Name::Day { epoch, seq: 3 }.file());
        fs::copy(&merged, &copy).unwrap();
        let mut trimmed = read_parquet(&copy).unwrap();
        let earlier_state = trimmed.column(c::CHECKPOINT_EPOCH).unwrap().u64().unwrap().equal(old_epoch);
        let keep = trimmed.column(c::CHECKPOINT_SEQ).unwrap().u64().unwrap().lt_eq(3) | earlier_state;
        trimmed = trimmed.filter(&keep).unwrap();
        write_parquet(&copy, &mut trimmed, Zstd::Default).unwrap();
        recover(root.path(), epoch, 3).unwrap();
        assert_eq!(rows(&day), [1, 10, 20, 30]);
    }

    #[test]
    fn a_merged_file_from_before_the_checkpoint_columns_is_kept_whole() {
        let root = tempfile::tempdir().unwrap();
        let day = date_dir(root.path(), NaiveDate::from_ymd_opt(2025, 6, 27).unwrap());
        write(&day, &Name::Day { epoch: 5, seq: 9 }, &[1, 2, 3]);
        let done = recover(root.path(), 5, 2).unwrap();
        assert_eq!(done.kept_whole, 1);
        assert_eq!(rows(&day), [1, 2, 3]);
        // Merged with a newer part, its rows get empty checkpoint columns and stay, the part's do not.
        let other = date_dir(root.path(), NaiveDate::from_ymd_opt(2025, 6, 28).unwrap());
        write(&other, &Name::Day { epoch: 5, seq: 1 }, &[7, 8]);
        write_part(&other, 5, 3, &[9]);
        assert_eq!(compact(&other, 5, 3, READERS_WAIT).unwrap(), 2);
        assert_eq!(recover(root.path(), 5, 2).unwrap().rows_past_snapshot, 1);
        assert_eq!(rows(&other), [7, 8]);
    }

    #[test]
    fn an_unreadable_committed_file_stops_recovery_instead_of_removing_earlier_states_rows() {
        let root = tempfile::tempdir().unwrap();
        let day = date_dir(root.path(), NaiveDate::from_ymd_opt(2025, 6, 30).unwrap());
        write(&day, &Name::Part { epoch: 3, seq: 9, k: 0 }, &[5]);
        fs::write(root.path().join("_committed"), "0000000000000003 nine\n").unwrap();
        let err = recover(root.path(), 7, 1).unwrap_err().to_string();
        assert!(err.contains("_committed line 1") && err.contains("restore it"), "{err}");
        assert_eq!(rows(&day), [5], "nothing removed");
    }

    #[test]
    fn a_second_state_cannot_take_a_history_folder_and_is_told_who_has_it() {
        let root = tempfile::tempdir().unwrap();
        let held = StateLock::take(root.path(), Path::new("/var/lib/a")).unwrap();
        let err = StateLock::take(root.path(), Path::new("/var/lib/b")).err().unwrap().to_string();
        assert!(err.contains("another mfawatch state") && err.contains("/var/lib/a"), "{err}");
        drop(held);
        StateLock::take(root.path(), Path::new("/var/lib/b")).unwrap();
    }

    #[test]
    fn a_merge_waits_for_readers_and_readers_never_see_a_day_twice_or_a_file_gone() {
        let root = tempfile::tempdir().unwrap();
        let day = date_dir(root.path(), NaiveDate::from_ymd_opt(2025, 6, 29).unwrap());
        write_part(&day, 1, 1, &[1, 2]);
        write_part(&day, 1, 2, &[3]);
        let reading = read_lock(root.path()).unwrap();
        let listed = files(&day).unwrap();
        assert_eq!(compact(&day, 1, 2, std::time::Duration::from_millis(200)).unwrap(), 0, "a reader holds the files");
        assert_eq!(files(&day).unwrap(), listed, "nothing replaced under the reader");
        assert!(!files(&day).unwrap().iter().any(|(_, p)| p.to_string_lossy().ends_with(".tmp")));
        drop(reading);
        assert_eq!(compact(&day, 1, 2, READERS_WAIT).unwrap(), 2);
        assert_eq!(rows(&day), [1, 2, 3]);
    }
}
