//! The history's files: names, what a crash leaves behind, compaction,
//! retention. Every change is a temporary file, fsync, rename, directory
//! fsync — never a file half there.
//!
//! ```text
//! <dir>/date=2026-11-23/part-<epoch>-<seq>-<k>.parquet   rows of checkpoint <seq>
//! <dir>/date=2026-11-23/day-<epoch>-<seq>.parquet        a day merged (compacted)
//! <dir>/date=2026-11-23/day-<epoch>-<seq>.merged         the files it merged, until they are gone
//! <dir>/_committed                                       the last checkpoint of every epoch
//! ```
//!
//! A part belongs to a checkpoint: it counts only once the snapshot of that
//! checkpoint is durable. The *epoch* is a random number kept in the
//! snapshot, new for every state started from nothing: parts of the state in
//! use are kept up to the snapshot's checkpoint; parts of earlier states
//! (a snapshot moved away, `--reset-state`) are kept up to the checkpoint
//! `_committed` says that state reached. Anything beyond was written by a
//! checkpoint that did not complete, and is removed on start.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;

use crate::checkpoint::{rename_durable, sync_dir, tmp_name, write_atomic};

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

/// The last checkpoint of every epoch that reached one.
pub fn read_committed(dir: &Path) -> BTreeMap<u64, u64> {
    fs::read_to_string(dir.join("_committed"))
        .ok()
        .map(|text| {
            text.lines()
                .filter_map(|l| l.split_once(' '))
                .filter_map(|(e, s)| Some((u64::from_str_radix(e, 16).ok()?, s.trim().parse().ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Records that `epoch` reached checkpoint `seq`.
pub fn write_committed(dir: &Path, epoch: u64, seq: u64) -> io::Result<()> {
    let mut all = read_committed(dir);
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
}

/// Brings the history back to what the snapshot stands for: `epoch` and
/// `seq` are the state's (the snapshot's checkpoint; 0 with no snapshot).
pub fn recover(dir: &Path, epoch: u64, seq: u64) -> io::Result<Recovered> {
    let committed = read_committed(dir);
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
            let last = if e == epoch { seq } else { committed.get(&e).copied().unwrap_or(0) };
            if s > last {
                fs::remove_file(&path)?;
                done.uncommitted += 1;
                changed = true;
            }
        }
        if changed {
            sync_dir(&date_dir)?;
        }
    }
    Ok(done)
}

fn remove_if_there(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
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
    write_durably(path, |file| Ok(parquet_writer(file, level)?.finish(df)?))
}

/// Writes a file at `path` with `write` (which returns its size): to a
/// temporary file, fsynced, then renamed into place durably.
fn write_durably(path: &Path, write: impl FnOnce(&fs::File) -> anyhow::Result<u64>) -> anyhow::Result<u64> {
    crate::testhooks::write_fault()?;
    let tmp = tmp_name(path);
    let file = fs::File::create(&tmp)?;
    let bytes = write(&file)?;
    file.sync_all()?;
    drop(file);
    rename_durable(&tmp, path)?;
    Ok(bytes)
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

/// Writes the rows of the Parquet files `parts`, in order, as one file at
/// `path` (zstd's default level), atomically and durably, a row group at a
/// time: memory follows a row group, not the day (a day of a large tenant
/// is over a million rows, and the daemon runs under `MemoryMax=2G`).
fn write_merged(path: &Path, parts: &[&PathBuf]) -> anyhow::Result<u64> {
    let Some((first, rest)) = parts.split_first() else { anyhow::bail!("nothing to merge into {}", path.display()) };
    let first = read_parquet(first)?;
    let schema = first.schema().clone();
    write_durably(path, |file| {
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
            let df = read_parquet(part)?;
            anyhow::ensure!(
                df.schema() == &schema,
                "{}: its columns differ from the other files of its day",
                part.display()
            );
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
    })
}

/// Reads a Parquet file whole; an error names the file.
pub fn read_parquet(path: &Path) -> anyhow::Result<DataFrame> {
    let file = fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    ParquetReader::new(file).finish().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Merges every file of one date folder that checkpoint `upto` of `epoch`
/// (or an earlier state) stands for into one `day-` file, then removes them.
/// Returns how many files were merged (0: nothing to do).
pub fn compact(date_dir: &Path, epoch: u64, upto: u64) -> anyhow::Result<usize> {
    let committed = read_committed(date_dir.parent().unwrap_or(Path::new(".")));
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
    // What it merges is written down before it counts, so that a crash
    // after the rename finishes the removal, and one before leaves no trace.
    let manifest = date_dir.join(name.file().replace(".parquet", ".merged"));
    let list: String = eligible.iter().filter(|(_, p)| *p != target).map(|(n, _)| n.file() + "\n").collect();
    write_atomic(&manifest, list.as_bytes())?;
    write_merged(&target, &eligible.iter().map(|(_, path)| path).collect::<Vec<_>>())?;
    for (_, path) in eligible.iter().filter(|(_, p)| *p != target) {
        remove_if_there(path)?;
    }
    sync_dir(date_dir)?;
    fs::remove_file(&manifest)?;
    Ok(eligible.len())
}

/// Removes the date folders older than `keep_from`.
pub fn expire(dir: &Path, keep_from: NaiveDate) -> io::Result<usize> {
    let mut removed = 0;
    for (date, path) in dates(dir)? {
        if date < keep_from {
            fs::remove_dir_all(&path)?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
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
        assert_eq!(done, Recovered { uncommitted: 3, merged: 0, temporary: 1 });
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
        assert_eq!(compact(&day, epoch, 5).unwrap(), 5);
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
        assert_eq!(compact(&day, epoch, 3).unwrap(), 3);
        assert_eq!(rows(&day), [10, 11, 20, 21, 30, 31, 40, 41]);
        let names: Vec<Name> = files(&day).unwrap().into_iter().map(|(n, _)| n).collect();
        assert!(
            names.contains(&Name::Day { epoch, seq: 3 }) && names.contains(&Name::Part { epoch, seq: 4, k: 0 }),
            "{names:?}"
        );
        // Again, later: the day file and the straggler become one.
        assert_eq!(compact(&day, epoch, 4).unwrap(), 2);
        assert_eq!(files(&day).unwrap().len(), 1);
        assert_eq!(compact(&day, epoch, 4).unwrap(), 0, "nothing left to merge");
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
    fn retention_removes_whole_days_before_the_first_kept() {
        let root = tempfile::tempdir().unwrap();
        for d in [1, 2, 3] {
            write(
                &date_dir(root.path(), NaiveDate::from_ymd_opt(2025, 1, d).unwrap()),
                &Name::Day { epoch: 1, seq: 1 },
                &[d as i64],
            );
        }
        assert_eq!(expire(root.path(), NaiveDate::from_ymd_opt(2025, 1, 2).unwrap()).unwrap(), 1);
        let kept: Vec<NaiveDate> = dates(root.path()).unwrap().into_iter().map(|(d, _)| d).collect();
        assert_eq!(kept, [NaiveDate::from_ymd_opt(2025, 1, 2).unwrap(), NaiveDate::from_ymd_opt(2025, 1, 3).unwrap()]);
    }
}
