//! scan: how a report reads history files — each file checked before
//! polars sees it (a damaged one is named and skipped), lazy scans with a
//! row index, and the rows a record delivered twice left behind
//! ([`Repeats`]: the same category and record id, §5). Reads files only;
//! never writes the history.

use super::*;

/// Progress lines on stderr, as a scan goes.
pub(super) fn progress(what: &str) {
    eprintln!("report: {what}");
}

/// The readable files of `paths` (a date folder's); the others are named
/// in `damaged`.
pub(super) fn usable(paths: Vec<PathBuf>, damaged: &mut Vec<Damaged>) -> Vec<PathBuf> {
    let mut good = Vec::with_capacity(paths.len());
    for path in paths {
        match check(&path) {
            Ok(()) => good.push(path),
            Err(error) => {
                progress(&format!("skipping damaged file {}: {error}", path.display()));
                damaged.push(Damaged { file: path.display().to_string(), error });
            }
        }
    }
    good
}

/// Whether a Parquet file can be read (its footer and schema), without panicking on garbage.
pub(super) fn check(path: &Path) -> Result<(), String> {
    let path = path.to_owned();
    std::panic::catch_unwind(move || -> Result<(), String> {
        let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        let mut reader = ParquetReader::new(file);
        reader.schema().map_err(|e| e.to_string())?;
        reader.num_rows().map_err(|e| e.to_string())?;
        Ok(())
    })
    .unwrap_or_else(|_| Err("the Parquet reader gave up on it".into()))
}

/// The sign-ins of `files` (whole date folders, as listed for [`Repeats`]),
/// a record delivered twice counted once.
///
/// The rows to leave out are found first (see [`Repeats`]) and left out by
/// row number, so that each query of the report reads only its own columns
/// and its filters reach the Parquet reader: a `unique` over the week in
/// every query read every column it names for every row first (12 GB over
/// 10 million rows).
pub(super) fn scan(files: &[PathBuf], repeats: &Repeats) -> PolarsResult<LazyFrame> {
    let repeated = repeats.rows(files);
    let lf = scan_rows(files, true)?.with_column(col(c::TIME).cast(DataType::Int64).alias("ms"));
    if repeated.is_empty() {
        return Ok(lf);
    }
    let repeated = Series::new("repeated".into(), repeated);
    Ok(lf.filter(col(ROW).is_in(lit(repeated).implode(false), false).not()))
}

/// The row-number column of [`scan_rows`].
pub(super) const ROW: &str = "row";

pub(super) fn scan_rows(files: &[PathBuf], row_index: bool) -> PolarsResult<LazyFrame> {
    let paths: Vec<PlRefPath> = files.iter().map(|p| PlRefPath::new(p.to_string_lossy().as_ref())).collect();
    LazyFrame::scan_parquet_files(paths.into(), files::scan_args(row_index.then_some(ROW)))
}

/// Per date folder: its rows, and the row numbers within it of the copies
/// of a record left out — the same record identity (a backfill of an
/// export Kafka had delivered, one event in two hubs, a re-delivery Entra
/// enriched: see `decode::Identity`). Of a record's copies the report keeps
/// the one that says most (risky, the risk level, MFA evidence, the method
/// named: `Carried::rank`; of equals, the first), so a risk or MFA detail a
/// later copy brought is in the report (docs/labels.md §5). A record's
/// copies have its event time, so they are in one date folder: each folder
/// is read once, a few columns.
pub(super) struct Repeats(std::collections::HashMap<PathBuf, (IdxSize, Vec<IdxSize>)>);

impl Repeats {
    pub(super) fn of(files: &[PathBuf]) -> anyhow::Result<Repeats> {
        let mut folders = std::collections::HashMap::new();
        for day in by_folder(files) {
            // identity → (the row kept, its rank)
            let mut kept: std::collections::HashMap<u64, (IdxSize, u8)> = std::collections::HashMap::new();
            let mut repeated = Vec::new();
            let mut rows: IdxSize = 0;
            for file in day {
                for (identity, rank) in files::copies(file)? {
                    match kept.entry(identity) {
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            slot.insert((rows, rank));
                        }
                        std::collections::hash_map::Entry::Occupied(mut slot) => {
                            let (row, best) = *slot.get();
                            if rank > best {
                                repeated.push(row);
                                slot.insert((rows, rank));
                            } else {
                                repeated.push(rows);
                            }
                        }
                    }
                    rows += 1;
                }
            }
            repeated.sort_unstable();
            folders.insert(folder_of(&day[0]), (rows, repeated));
        }
        Ok(Repeats(folders))
    }

    /// The row numbers to leave out of a scan of `files`, in their order.
    pub(super) fn rows(&self, files: &[PathBuf]) -> Vec<IdxSize> {
        let mut rows = Vec::new();
        let mut offset: IdxSize = 0;
        for day in by_folder(files) {
            let (height, repeated) = &self.0[&folder_of(&day[0])];
            rows.extend(repeated.iter().map(|i| offset + i));
            offset += height;
        }
        rows
    }
}

/// `files` (listed folder by folder) a date folder at a time.
pub(super) fn by_folder(files: &[PathBuf]) -> impl Iterator<Item = &[PathBuf]> {
    files.chunk_by(|a, b| a.parent() == b.parent())
}

pub(super) fn folder_of(file: &Path) -> PathBuf {
    file.parent().unwrap_or(Path::new("")).to_owned()
}
