//! rollup: what the report keeps of the history's past weeks, so that what
//! a report costs follows its range and not the history's length.
//!
//! ```text
//! <history.dir>/_rollup/week-2026-11-16.rollup   the ISO week from Monday 16 November 2026
//! ```
//!
//! One file per ISO week of the history: each user's sums and values over
//! the week's days (the fold of `users::day_partial`s, [`Summed`]), the
//! registration_required failures of the week that can still matter (the
//! newest of each day, when it is after the user's last MFA of the week:
//! `users::coverage_of` never looks at an earlier one again), the first and
//! last sign-in of the week, the files of the week skipped as damaged, and
//! what it was made from: every date folder of the week with its files by
//! name, size and modification time ([`Listing`]).
//!
//! A week is used only while its folders hold exactly those files; when
//! they do not (a late record's new part, a merge, retention) it is made
//! again from its days, and a file that cannot be read (another magic, a
//! digest that does not match, a frame that does not parse) is named and
//! made again — never an error. Each week stands alone, so a change to
//! one old day costs a week of reading, and retention only ends the oldest
//! week's file. The report writes these files (the history's writer does
//! not know the reader); a file is written aside, fsynced and renamed
//! (`durable`), its content a pure function of the files it lists, so two
//! reports writing one week at once write the same thing. Deleting the
//! folder is always safe: the next report reads the history again.
//!
//! File: 8-byte magic, u32 format, u64 XXH3 of what follows it, u32 length
//! of the header (JSON: the week, what it was made from, its span), the
//! header, u64 length of the users' frame, the users' frame, the failures'
//! frame (both Parquet).

use std::io::{Cursor, Write as _};
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::Damaged;
use crate::history::rows::col as c;

/// The rollup's folder in the history.
pub const FOLDER: &str = "_rollup";
const MAGIC: &[u8; 8] = b"MFAWROLL";
const FORMAT: u32 = 1;

/// How a report uses the rollup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Use {
    /// The weeks it holds for the files there are; the others made and kept.
    #[default]
    Keep,
    /// Every week made again from the history and kept (`--rebuild-rollup`).
    Rebuild,
    /// Neither read nor written: the whole history is read (`--no-rollup`).
    Off,
}

/// One file of a date folder as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub name: String,
    pub bytes: u64,
    /// Modification time: seconds and nanoseconds since the Unix epoch.
    pub modified: (i64, u32),
}

/// A week's date folders, oldest first, each with its files by name.
pub type Listing = Vec<(NaiveDate, Vec<Stamp>)>;

/// The stamp of each of `files` (one date folder's, by name).
pub fn stamps(files: &[PathBuf]) -> anyhow::Result<Vec<Stamp>> {
    files
        .iter()
        .map(|path| {
            let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or((0, 0), |d| (d.as_secs() as i64, d.subsec_nanos()));
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            Ok(Stamp { name, bytes: meta.len(), modified })
        })
        .collect()
}

/// The Monday of `date`'s ISO week.
pub fn monday(date: NaiveDate) -> NaiveDate {
    date - chrono::Days::new(u64::from(date.weekday().num_days_from_monday()))
}

/// What days of users' sign-ins sum up to (a day, or a week of the rollup).
#[derive(Debug, Clone)]
pub struct Summed {
    /// Per user: `users::part`'s columns.
    pub users: DataFrame,
    /// `user_key`, `ms`: registration_required failures.
    pub failures: DataFrame,
    /// The first and last sign-in (of any subject), Unix ms.
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
    /// Users' counted MFA sign-ins by strength (`report::strength`).
    pub strengths: super::strength::Mix,
}

/// A week of the rollup.
#[derive(Debug, Clone)]
pub struct Week {
    pub monday: NaiveDate,
    pub made_from: Listing,
    /// The week's files that could not be read when it was made.
    pub damaged: Vec<Damaged>,
    pub summed: Summed,
}

#[derive(Serialize, Deserialize)]
struct Header {
    monday: NaiveDate,
    made_from: Listing,
    damaged: Vec<Damaged>,
    first_ms: Option<i64>,
    last_ms: Option<i64>,
    strengths: super::strength::Mix,
}

/// What looking for a week found.
pub enum Found {
    /// Made from exactly the files listed now.
    Valid(Week),
    /// None, or one made from other files.
    Missing,
    /// A file that cannot be read, and why.
    Damaged(PathBuf, String),
}

pub fn path(history: &Path, monday: NaiveDate) -> PathBuf {
    history.join(FOLDER).join(format!("week-{}.rollup", monday.format("%Y-%m-%d")))
}

/// The week from `monday`, if the rollup holds it for the files `listed` now.
pub fn find(history: &Path, monday: NaiveDate, listed: &Listing) -> Found {
    let path = path(history, monday);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Found::Missing,
        Err(e) => return Found::Damaged(path, e.to_string()),
    };
    match decode(&bytes) {
        Ok(week) if week.monday != monday => Found::Damaged(path, format!("it holds the week of {}", week.monday)),
        Ok(week) if week.made_from == *listed => Found::Valid(week),
        Ok(_) => Found::Missing,
        Err(why) => Found::Damaged(path, why),
    }
}

/// Writes `week` into the rollup: aside, fsynced, renamed (under a name of
/// this process's, so that two reports never write one temporary file).
pub fn save(history: &Path, week: &Week) -> anyhow::Result<()> {
    let path = path(history, week.monday);
    let folder = history.join(FOLDER);
    crate::durable::create_dir_durable(&folder).map_err(|e| anyhow::anyhow!("{}: {e}", folder.display()))?;
    let bytes = encode(week)?;
    let tmp =
        folder.join(format!(".{}.{}.tmp", path.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut file = crate::durable::create_private(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        crate::durable::rename_durable(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        anyhow::bail!("{}: {e}", path.display());
    }
    Ok(())
}

/// Removes the weeks of the rollup that no date folder of the history is
/// in any more (retention took them), and temporary files a report that
/// stopped midway left; returns how many.
pub fn prune(history: &Path, mondays: &std::collections::BTreeSet<NaiveDate>) -> anyhow::Result<usize> {
    let folder = history.join(FOLDER);
    let entries = match std::fs::read_dir(&folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => anyhow::bail!("{}: {e}", folder.display()),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let week = name
            .strip_prefix("week-")
            .and_then(|n| n.strip_suffix(".rollup"))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        let stale_tmp = name.ends_with(".tmp")
            && std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > std::time::Duration::from_secs(86_400)));
        if week.is_some_and(|monday| !mondays.contains(&monday)) || stale_tmp {
            std::fs::remove_file(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            removed += 1;
        }
    }
    if removed > 0 {
        crate::durable::sync_dir(&folder)?;
    }
    Ok(removed)
}

/// The registration_required `failures` (`user_key`, `ms`) that can still
/// matter to `users::coverage_of`, given `users`' `last_mfa` so far: per
/// user and day the newest, only when after the user's last MFA, and only
/// within 32 days of the user's newest failure. Whatever comes later, an
/// earlier failure is never pending again, nor the first day of a pending
/// stretch (the last MFA and the newest failure only move forward), so what
/// is kept is at most 32 failures a user.
pub fn prune_failures(users: &DataFrame, failures: DataFrame) -> PolarsResult<DataFrame> {
    use super::users::part;
    let day = 86_400_000i64;
    let newest_day = col("day").max().over([col(c::USER_KEY)])?;
    failures
        .lazy()
        .group_by([col(c::USER_KEY), (col("ms") / lit(day)).alias("day")])
        .agg([col("ms").max()])
        .join(
            users.clone().lazy().select([col(c::USER_KEY), col(part::LAST_MFA)]),
            [col(c::USER_KEY)],
            [col(c::USER_KEY)],
            JoinArgs::new(JoinType::Left),
        )
        .filter(col(part::LAST_MFA).is_null().or(col("ms").gt(col(part::LAST_MFA))))
        .filter(col("day").gt(newest_day - lit(32i64)))
        .select([col(c::USER_KEY), col("ms")])
        .sort([c::USER_KEY, "ms"], SortMultipleOptions::default())
        .collect()
}

fn parquet(df: &DataFrame) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes).with_compression(ParquetCompression::Zstd(None)).finish(&mut df.clone())?;
    Ok(bytes)
}

fn encode(week: &Week) -> anyhow::Result<Vec<u8>> {
    let header = serde_json::to_vec(&Header {
        monday: week.monday,
        made_from: week.made_from.clone(),
        damaged: week.damaged.clone(),
        first_ms: week.summed.first_ms,
        last_ms: week.summed.last_ms,
        strengths: week.summed.strengths,
    })?;
    let users = parquet(&week.summed.users)?;
    let failures = parquet(&week.summed.failures)?;
    let mut rest = Vec::with_capacity(4 + header.len() + 8 + users.len() + failures.len());
    rest.extend_from_slice(&(header.len() as u32).to_le_bytes());
    rest.extend_from_slice(&header);
    rest.extend_from_slice(&(users.len() as u64).to_le_bytes());
    rest.extend_from_slice(&users);
    rest.extend_from_slice(&failures);
    let mut bytes = Vec::with_capacity(20 + rest.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT.to_le_bytes());
    bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&rest).to_le_bytes());
    bytes.extend_from_slice(&rest);
    Ok(bytes)
}

fn decode(bytes: &[u8]) -> Result<Week, String> {
    if bytes.len() < 20 || &bytes[..8] != MAGIC {
        return Err("not a rollup file (its first bytes)".into());
    }
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let format = word(8);
    if format != FORMAT {
        return Err(format!("format {format}, this release reads {FORMAT}"));
    }
    let rest = &bytes[20..];
    if xxhash_rust::xxh3::xxh3_64(rest).to_le_bytes() != bytes[12..20] {
        return Err("its digest does not match its content (damaged or cut short)".into());
    }
    let cut = |from: usize, len: usize| rest.get(from..from + len).ok_or("cut short");
    let header_len = u32::from_le_bytes(cut(0, 4)?.try_into().expect("4 bytes")) as usize;
    let header: Header = serde_json::from_slice(cut(4, header_len)?).map_err(|e| format!("its header: {e}"))?;
    let at = 4 + header_len;
    let users_len = u64::from_le_bytes(cut(at, 8)?.try_into().expect("8 bytes")) as usize;
    let users = frame(cut(at + 8, users_len)?).map_err(|e| format!("its users: {e}"))?;
    let failures = frame(&rest[at + 8 + users_len..]).map_err(|e| format!("its failures: {e}"))?;
    Ok(Week {
        monday: header.monday,
        made_from: header.made_from,
        damaged: header.damaged,
        summed: Summed {
            users,
            failures,
            first_ms: header.first_ms,
            last_ms: header.last_ms,
            strengths: header.strengths,
        },
    })
}

fn frame(bytes: &[u8]) -> Result<DataFrame, String> {
    let bytes = bytes.to_vec();
    std::panic::catch_unwind(move || ParquetReader::new(Cursor::new(bytes)).finish().map_err(|e| e.to_string()))
        .unwrap_or_else(|_| Err("the Parquet reader gave up on it".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn week() -> Week {
        let users = df!(c::USER_KEY => ["a", "b"], "last_mfa" => [Some(5i64), None]).unwrap();
        let failures = df!(c::USER_KEY => ["b"], "ms" => [7i64]).unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 17).unwrap();
        Week {
            monday: monday(day),
            made_from: vec![(day, vec![Stamp { name: "day-1.parquet".into(), bytes: 10, modified: (1, 2) }])],
            damaged: vec![Damaged { file: "x.parquet".into(), error: "bad".into() }],
            summed: Summed { users, failures, first_ms: Some(1), last_ms: Some(9), strengths: [3, 0, 0, 1, 0, 0, 0] },
        }
    }

    #[test]
    fn a_week_reads_back_as_written_and_is_valid_only_for_the_files_it_was_made_from() {
        let dir = tempfile::tempdir().unwrap();
        let w = week();
        assert_eq!(w.monday, NaiveDate::from_ymd_opt(2026, 11, 16).unwrap());
        save(dir.path(), &w).unwrap();
        let Found::Valid(back) = find(dir.path(), w.monday, &w.made_from) else { panic!("not found valid") };
        assert_eq!(back.summed.users, w.summed.users);
        assert_eq!(back.summed.failures, w.summed.failures);
        assert_eq!((back.summed.first_ms, back.summed.last_ms, back.damaged.len()), (Some(1), Some(9), 1));
        assert_eq!(back.summed.strengths, w.summed.strengths);
        let mut other = w.made_from.clone();
        other[0].1[0].bytes = 11;
        assert!(matches!(find(dir.path(), w.monday, &other), Found::Missing), "another size: made again");
        other[0].1.clear();
        assert!(matches!(find(dir.path(), w.monday, &other), Found::Missing), "a file gone: made again");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(path(dir.path(), w.monday)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_week_is_named_with_why_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let w = week();
        save(dir.path(), &w).unwrap();
        let file = path(dir.path(), w.monday);
        let good = std::fs::read(&file).unwrap();
        let mut flipped = good.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x40;
        for (bytes, why) in [
            (flipped, "digest"),
            (good[..good.len() / 2].to_vec(), "digest"),
            (b"PAR1 not a rollup at all".to_vec(), "not a rollup"),
        ] {
            std::fs::write(&file, bytes).unwrap();
            match find(dir.path(), w.monday, &w.made_from) {
                Found::Damaged(named, error) => {
                    assert_eq!(named, file);
                    assert!(error.contains(why), "{why}: {error}");
                }
                _ => panic!("{why}: not said to be damaged"),
            }
        }
    }

    #[test]
    fn weeks_retention_took_and_old_temporary_files_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let w = week();
        save(dir.path(), &w).unwrap();
        let kept = std::collections::BTreeSet::from([w.monday]);
        assert_eq!(prune(dir.path(), &kept).unwrap(), 0);
        assert_eq!(prune(dir.path(), &Default::default()).unwrap(), 1);
        assert!(!path(dir.path(), w.monday).exists());
    }

    #[test]
    fn only_the_newest_failure_of_a_day_after_the_last_mfa_and_within_32_days_is_kept() {
        let day = 86_400_000i64;
        let users = df!(c::USER_KEY => ["a", "b"], "last_mfa" => [Some(day + 100), None]).unwrap();
        let failures = df!(
            c::USER_KEY => ["a", "a", "a", "a", "b", "b", "b"],
            "ms" => [50, day + 50, day + 200, 2 * day + 1, 3, 9, 40 * day]
        )
        .unwrap();
        let kept = prune_failures(&users, failures).unwrap();
        let rows: Vec<(String, i64)> = (0..kept.height())
            .map(|r| (super::super::str_of(&kept, c::USER_KEY, r), super::super::i64_of(&kept, "ms", r)))
            .collect();
        // a: not the one before their MFA, one a day; b: not those 40 days before their newest.
        assert_eq!(rows, [("a".into(), day + 200), ("a".into(), 2 * day + 1), ("b".into(), 40 * day)]);
    }
}
