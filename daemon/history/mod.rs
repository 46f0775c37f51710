//! history: the sink that keeps one Parquet row per classified sign-in, in
//! `date=YYYY-MM-DD/` folders (Hive partitions by event date, UTC), so that
//! the weekly report — and DuckDB, Spark or Trino — can read months of
//! sign-ins as they are.
//!
//! Exactly once: rows are buffered per date and written as parts of the
//! coming checkpoint (`part-<epoch>-<seq>-<k>`: temporary file, fsync,
//! rename) when the checkpoint asks ([`Sink::prepare`]), before the snapshot
//! is renamed and before offsets are committed — or earlier, when the buffer
//! grows large, still as parts of that checkpoint. A thread of its own
//! encodes and writes the parts; the checkpoint waits for all of them. A part counts once the
//! snapshot of its checkpoint is durable; on start, parts of checkpoints that
//! did not complete are removed ([`files::recover`]). So after a crash at any
//! instant the history holds each consumed record once.
//!
//! Small files: a checkpoint every 10 s would leave 8,640 parts a day. A
//! thread of its own merges a day's parts into one file once every
//! partition being read has moved `history.compact_after` past the day's end,
//! atomically and with the same guarantee, and removes folders past
//! `history.retention_days`. Both go by event time: retention counts back
//! from the newest sign-in the history holds (and never from later than the
//! host's today), so a host clock that jumps ahead deletes nothing.
//!
//! One state writes a history folder at a time ([`files::StateLock`]), and
//! readers (the report, the user detail) never see a file replaced under
//! them ([`files::read_lock`]).

pub mod directory;
pub mod files;
pub mod rows;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use chrono::{DateTime, NaiveDate};
use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use crate::classify::{Labels, Subject};
use crate::config::Config;
use crate::coverage::Policy;
use crate::durable::create_dir_durable;
use std::sync::Arc;

use crate::events::{CompactionFailed, Events, Problem};
use crate::metrics::Metrics;
use crate::sinks::{DirectoryEvent, Durable, Prepared, SignInEvent, Sink, SinkContext, SourceClock};
use rows::Rows;

/// The sink's name: the key of its state in the snapshot.
pub const NAME: &str = "history";

/// Buffered rows past this many go to the writer thread as a part of the
/// coming checkpoint, without waiting for it: a backlog read at full speed
/// is encoded beside the pipeline rather than in it, and a replay of a large
/// export does not hold everything in memory.
const SPILL_ROWS: usize = 50_000;

/// While the writer is idle, this many buffered rows already go to it: under
/// load the parts then follow the writer's pace, and a checkpoint waits only
/// for the few rows it has not yet taken rather than for a whole
/// [`SPILL_ROWS`] part (a backlog read at full speed spent a third of its
/// time waiting at checkpoints). At an ordinary pace a checkpoint's rows
/// stay below this and make one part.
const EAGER_ROWS: usize = 4_096;

/// Rows handed to the writer and not yet on disk past this many, the
/// pipeline waits (back-pressure) rather than buffering without bound.
const QUEUED_ROWS: usize = 2 * SPILL_ROWS;

/// What the sink keeps in the snapshot.
#[derive(Serialize, Deserialize)]
struct Saved {
    /// The state's epoch: part names carry it (see [`files`]).
    epoch: u64,
    /// The newest event time the history has had (Unix seconds): where
    /// retention counts back from.
    newest: i64,
}

/// The state as the first version kept it.
#[derive(Deserialize)]
struct SavedV1 {
    epoch: u64,
}

impl Saved {
    fn read(bytes: &[u8]) -> anyhow::Result<Saved> {
        postcard::from_bytes::<Saved>(bytes)
            .or_else(|_| postcard::from_bytes::<SavedV1>(bytes).map(|v| Saved { epoch: v.epoch, newest: 0 }))
            .map_err(|e| anyhow::anyhow!("the history's state in the snapshot cannot be read: {e}"))
    }
}

/// What the maintenance thread hears at each checkpoint.
struct Round {
    /// The checkpoint that is durable now.
    upto: u64,
    /// The event time every source has passed, less `compact_after`: days
    /// ending before it are merged.
    settled: i64,
    /// The first day retention keeps.
    keep_from: NaiveDate,
    /// The first day it would keep by the host's clock alone.
    wall_keep_from: NaiveDate,
}

type Maintenance = (mpsc::Sender<Round>, JoinHandle<()>);

/// The history sink.
pub struct History {
    dir: PathBuf,
    epoch: u64,
    /// The checkpoint the buffered rows will belong to.
    next_seq: u64,
    /// The next part number within `next_seq`.
    k: u32,
    days: BTreeMap<NaiveDate, Rows>,
    /// The directory table's rows, by date ([`directory`]).
    directory_days: BTreeMap<NaiveDate, directory::DirRows>,
    buffered: usize,
    writer: Writer,
    /// Parts whose writing failed: written again, under the same names,
    /// by the next attempt at the checkpoint.
    unwritten: Vec<Part>,
    /// The first error of the writer since the last time it was asked.
    failed: Option<anyhow::Error>,
    count_non_interactive: bool,
    /// The newest event time seen (Unix seconds), kept in the snapshot.
    newest: i64,
    oldest_kept: NaiveDate,
    retention_days: u32,
    compact_after: i64,
    clock: SourceClock,
    ctx: SinkContext,
    events: Events,
    maintenance: Option<Maintenance>,
    _lock: files::StateLock,
}

impl History {
    /// Opens the history for a state whose snapshot is checkpoint `seq`
    /// (0: none), removing what checkpoints that did not complete left behind.
    pub fn start(config: &Config, ctx: SinkContext, saved: Option<&Vec<u8>>, seq: u64) -> anyhow::Result<History> {
        let dir = config.history.dir(&config.checkpoint);
        create_dir_durable(&dir).map_err(|e| anyhow::anyhow!("cannot create history.dir {}: {e}", dir.display()))?;
        let lock = files::StateLock::take(&dir, &config.checkpoint.dir)?;
        let saved = saved.map(|bytes| Saved::read(bytes)).transpose()?;
        let (epoch, newest) = saved.map_or_else(|| (new_epoch(), 0), |s| (s.epoch, s.newest));
        let directory_dir = directory::root(&dir);
        create_dir_durable(&directory_dir)
            .map_err(|e| anyhow::anyhow!("cannot create the directory table {}: {e}", directory_dir.display()))?;
        let recovered =
            files::recover(&dir, epoch, seq).and_then(|r| Ok((r, files::recover(&directory_dir, epoch, seq)?)));
        let (recovered, directory_recovered) = recovered.map_err(|e| {
            anyhow::anyhow!("cannot bring the history in {} back to the snapshot: {e:#}", dir.display())
        })?;
        if directory_recovered != files::Recovered::default() {
            tracing::info!(
                dir = %directory_dir.display(),
                uncommitted_parts = directory_recovered.uncommitted,
                rows_past_snapshot = directory_recovered.rows_past_snapshot,
                "the history's directory table brought back to the snapshot"
            );
        }
        if recovered != files::Recovered::default() {
            tracing::info!(
                dir = %dir.display(),
                uncommitted_parts = recovered.uncommitted,
                merged_files = recovered.merged,
                temporary = recovered.temporary,
                rows_past_snapshot = recovered.rows_past_snapshot,
                kept_whole = recovered.kept_whole,
                "history brought back to the snapshot: what checkpoints after it wrote is removed (the hub is read again from the snapshot's offsets)"
            );
        }
        let retention_days = config.history.retention_days;
        let (tx, rx) = mpsc::channel();
        let thread = {
            let (dirs, metrics) = ([dir.clone(), directory_dir], ctx.metrics.clone());
            std::thread::Builder::new().name("history".into()).spawn(move || maintain(&dirs, epoch, &metrics, rx))?
        };
        Ok(History {
            writer: Writer::start()?,
            dir,
            epoch,
            next_seq: seq + 1,
            k: 0,
            days: BTreeMap::new(),
            directory_days: BTreeMap::new(),
            buffered: 0,
            unwritten: Vec::new(),
            failed: None,
            count_non_interactive: Policy::from_config(&config.coverage).count_non_interactive,
            newest,
            oldest_kept: keep_from(retention_days, newest),
            retention_days,
            compact_after: config.history.compact_after.as_secs() as i64,
            clock: SourceClock::default(),
            events: Events::new(ctx.metrics.clone()),
            ctx,
            maintenance: Some((tx, thread)),
            _lock: lock,
        })
    }

    /// Hands every buffered row to the writer as parts of checkpoint
    /// `next_seq`, and parts that failed before again under their names.
    fn send_parts(&mut self) -> anyhow::Result<()> {
        let mut parts = Vec::with_capacity(self.days.len() + self.unwritten.len());
        for (date, rows) in std::mem::take(&mut self.days) {
            let name = files::Name::Part { epoch: self.epoch, seq: self.next_seq, k: self.k };
            self.k += 1;
            let folder = files::date_dir(&self.dir, date);
            parts.push(Part { folder, name, rows: rows.len(), data: Data::Rows(Box::new(rows)) });
        }
        self.buffered = 0;
        let directory_dir = directory::root(&self.dir);
        for (date, mut rows) in std::mem::take(&mut self.directory_days) {
            let name = files::Name::Part { epoch: self.epoch, seq: self.next_seq, k: self.k };
            self.k += 1;
            let (folder, n) = (files::date_dir(&directory_dir, date), rows.len());
            let frame = rows.take(name.epoch_seq())?;
            parts.push(Part { folder, name, rows: n, data: Data::Frame(frame) });
        }
        parts.append(&mut self.unwritten);
        for part in parts {
            self.absorb(QUEUED_ROWS.saturating_sub(part.rows));
            self.writer.send(part)?;
        }
        Ok(())
    }

    /// Takes in what the writer has finished, waiting until no more than
    /// `queued` rows are on their way. Parts it could not write are kept for
    /// the next attempt, and the first error for [`History::failed`].
    fn absorb(&mut self, queued: usize) {
        while let Some(done) = self.writer.done(queued) {
            match done {
                Ok((rows, bytes)) => self.ctx.metrics.history_part(rows, bytes),
                Err((Some(part), e)) => {
                    let e = e.context(part.cannot_write());
                    self.unwritten.push(part);
                    self.failed.get_or_insert(e);
                }
                Err((None, e)) => {
                    self.failed.get_or_insert(e);
                }
            }
        }
    }

    /// The writer's first error since the last call.
    fn failed(&mut self) -> anyhow::Result<()> {
        self.failed.take().map_or(Ok(()), Err)
    }

    /// Whether the buffered rows go to the writer now: past [`SPILL_ROWS`],
    /// or past [`EAGER_ROWS`] with the writer done with everything it had
    /// (looked at every 1,024 rows).
    fn spill_due(&mut self) -> bool {
        if self.buffered >= SPILL_ROWS {
            return true;
        }
        if self.buffered < EAGER_ROWS || !self.buffered.is_multiple_of(1024) {
            return false;
        }
        self.absorb(usize::MAX);
        self.writer.in_flight == 0
    }

    /// Hands every buffered row to the writer as parts of checkpoint
    /// `next_seq`, with the parts that failed before; the wait it returns
    /// ends once they (and every part sent before) are durable, or names the
    /// first that is not.
    fn write_parts(&mut self) -> anyhow::Result<Durable> {
        // A part that failed was reported by the barrier after it (or the
        // spill): it goes again now, and this barrier answers for it.
        self.absorb(usize::MAX);
        self.failed = None;
        self.send_parts()?;
        self.writer.barrier()
    }
}

/// One part on its way to disk.
struct Part {
    folder: PathBuf,
    name: files::Name,
    rows: usize,
    data: Data,
}

impl Part {
    /// What an error writing it is said with.
    fn cannot_write(&self) -> String {
        format!("cannot write the history in {}", self.folder.display())
    }
}

/// A part's rows: as buffered, or (after a failed write) as a frame already.
enum Data {
    Rows(Box<Rows>),
    Frame(DataFrame),
}

/// What the writer thread hands back: rows and bytes written, or the part
/// (None: the thread is gone) with the error that kept it from disk.
type Done = Result<(usize, u64), (Option<Part>, anyhow::Error)>;

/// What the writer thread is asked: a part to write, or to say — once
/// every part sent before is done — whether every part that failed has
/// been written since (a checkpoint waits for that).
enum Job {
    Part(Part),
    Barrier(mpsc::SyncSender<Result<(), String>>),
}

/// The thread that encodes parts (Parquet, zstd) and makes them durable,
/// beside the pipeline thread.
struct Writer {
    parts: Option<mpsc::Sender<Job>>,
    done: mpsc::Receiver<Done>,
    in_flight: usize,
    queued_rows: usize,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    fn start() -> anyhow::Result<Writer> {
        let (parts, rx) = mpsc::channel::<Job>();
        let (tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new().name("history-writer".into()).spawn(move || {
            // The parts that failed and have not been written since, by path.
            let mut failed: BTreeMap<PathBuf, String> = BTreeMap::new();
            for job in rx {
                let mut part = match job {
                    Job::Part(part) => part,
                    Job::Barrier(answer) => {
                        let _ = answer.send(failed.values().next().map_or(Ok(()), |e| Err(e.clone())));
                        continue;
                    }
                };
                let path = part.folder.join(part.name.file());
                let frame = match std::mem::replace(&mut part.data, Data::Frame(DataFrame::empty())) {
                    Data::Rows(mut rows) => rows.take(part.name.epoch_seq()).map_err(anyhow::Error::from),
                    Data::Frame(frame) => Ok(frame),
                };
                let result = frame.and_then(|mut frame| {
                    let written = create_dir_durable(&part.folder)
                        .map_err(anyhow::Error::from)
                        .and_then(|()| files::write_parquet(&path, &mut frame, files::Zstd::Fast));
                    part.data = Data::Frame(frame);
                    written.map(|bytes| (part.rows, bytes))
                });
                match &result {
                    Ok(_) => failed.remove(&path),
                    Err(e) => failed.insert(path, format!("{}: {e:#}", part.cannot_write())),
                };
                if tx.send(result.map_err(|e| (Some(part), e))).is_err() {
                    return;
                }
            }
        })?;
        Ok(Writer { parts: Some(parts), done, in_flight: 0, queued_rows: 0, thread: Some(thread) })
    }

    fn send(&mut self, part: Part) -> anyhow::Result<()> {
        let rows = part.rows;
        let parts = self.parts.as_ref().expect("open until dropped");
        parts.send(Job::Part(part)).map_err(|_| anyhow::anyhow!("the history writer thread has stopped"))?;
        self.in_flight += 1;
        self.queued_rows += rows;
        Ok(())
    }

    /// The wait for every part sent so far to be on disk: an error names the
    /// first that is not (it comes back through [`Writer::done`] too, and is
    /// written again by the next checkpoint).
    fn barrier(&mut self) -> anyhow::Result<Durable> {
        let (answer, rx) = mpsc::sync_channel(1);
        let parts = self.parts.as_ref().expect("open until dropped");
        parts.send(Job::Barrier(answer)).map_err(|_| anyhow::anyhow!("the history writer thread has stopped"))?;
        Ok(Box::new(move || match rx.recv() {
            Ok(written) => written.map_err(anyhow::Error::msg),
            Err(mpsc::RecvError) => {
                Err(anyhow::anyhow!("the history writer thread has stopped; parts in flight were not written"))
            }
        }))
    }

    /// The next finished part, waiting for it while more than `queued` rows
    /// are on their way; None when none is (or none is finished and there
    /// is no need to wait).
    fn done(&mut self, queued: usize) -> Option<Done> {
        if self.in_flight == 0 {
            return None;
        }
        let done = match self.done.try_recv() {
            Ok(done) => done,
            Err(mpsc::TryRecvError::Empty) if self.queued_rows <= queued => return None,
            Err(mpsc::TryRecvError::Empty) => match self.done.recv() {
                Ok(done) => done,
                Err(mpsc::RecvError) => return self.stopped(),
            },
            Err(mpsc::TryRecvError::Disconnected) => return self.stopped(),
        };
        self.in_flight -= 1;
        let rows = match &done {
            Ok((rows, _)) => *rows,
            Err((part, _)) => part.as_ref().map_or(0, |p| p.rows),
        };
        self.queued_rows -= rows;
        Some(done)
    }

    /// The writer thread is gone (it panicked): what was in flight is not on
    /// disk, so the checkpoint fails, and every one after it.
    fn stopped(&mut self) -> Option<Done> {
        self.in_flight = 0;
        self.queued_rows = 0;
        Some(Err((None, anyhow::anyhow!("the history writer thread has stopped; parts in flight were not written"))))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.parts.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A new state's epoch: unique enough across states of one history folder.
fn new_epoch() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 40)
}

/// The first day `history.retention_days` keeps: counted back from the
/// newest sign-in the history has had (`newest`, Unix seconds), and from no
/// later than the host's today. Going by the sign-ins, a host clock that
/// jumps ahead removes nothing; the host's today only ever keeps more.
fn keep_from(retention_days: u32, newest: i64) -> NaiveDate {
    let newest = DateTime::from_timestamp(newest, 0).unwrap_or_default().date_naive();
    newest.min(crate::clock::wall().date_naive()) - chrono::Days::new(u64::from(retention_days))
}

impl Sink for History {
    fn name(&self) -> &'static str {
        NAME
    }

    fn sign_in(&mut self, event: &SignInEvent<'_, '_>) {
        let time = event.record.time;
        self.clock.heard(event.position, time.timestamp());
        if time.timestamp() > self.newest {
            self.newest = time.timestamp();
            self.oldest_kept = keep_from(self.retention_days, self.newest);
        }
        let date = time.date_naive();
        if date < self.oldest_kept {
            // Past history.retention_days: it would be removed at once.
            let retention_days = self.retention_days;
            self.events.emit(Problem {
                kind: "retention",
                log: |held_back| {
                    tracing::warn!(
                        date = %date,
                        retention_days,
                        held_back,
                        "a sign-in older than history.retention_days is not kept in the history (raise it to backfill older exports)"
                    )
                },
            });
            return;
        }
        let v = event.verdict;
        let legacy = v.labels.contains(Labels::LEGACY_AUTH);
        let counted = v.subject == Subject::User
            && v.success
            && (v.interactive || self.count_non_interactive || legacy)
            && !crate::coverage::Observation::unknown_account(event.record, v);
        self.days.entry(date).or_insert_with(|| Rows::new(1024)).push(event, counted);
        self.buffered += 1;
        if self.spill_due()
            && let Err(e) = self.send_parts().and_then(|()| {
                self.absorb(usize::MAX);
                self.failed()
            })
        {
            self.events.emit(Problem {
                kind: "spill",
                log: |held_back| tracing::error!(error = %format!("{e:#}"), held_back, "cannot write history rows ahead of the checkpoint; they stay in memory"),
            });
        }
    }

    fn directory(&mut self, event: &DirectoryEvent<'_>) {
        let date = event.record.time.date_naive();
        if date < self.oldest_kept {
            return;
        }
        self.directory_days.entry(date).or_default().push(event);
    }

    fn prepare(&mut self, seq: u64) -> anyhow::Result<Prepared> {
        anyhow::ensure!(seq == self.next_seq, "history: checkpoint {seq} where {} was expected", self.next_seq);
        let durable = self.write_parts()?;
        let state = postcard::to_allocvec(&Saved { epoch: self.epoch, newest: self.newest })?;
        // Rows from here on are the next checkpoint's.
        self.next_seq = seq + 1;
        self.k = 0;
        Ok(Prepared { state: Some(state), durable: Some(durable) })
    }

    fn committed(&mut self, seq: u64) {
        let written = files::write_committed(&self.dir, self.epoch, seq)
            .and_then(|()| files::write_committed(&directory::root(&self.dir), self.epoch, seq));
        if let Err(e) = written {
            self.events.emit(Problem {
                kind: "committed",
                log: |held_back| tracing::warn!(error = %e, held_back, "cannot note the checkpoint in the history's _committed file"),
            });
        }
        self.oldest_kept = keep_from(self.retention_days, self.newest);
        if let (Some((tx, _)), Some(low)) = (&self.maintenance, self.clock.low(&self.ctx.assignment)) {
            let wall_keep_from = crate::clock::wall().date_naive() - chrono::Days::new(u64::from(self.retention_days));
            let round =
                Round { upto: seq, settled: low - self.compact_after, keep_from: self.oldest_kept, wall_keep_from };
            let _ = tx.send(round);
        }
    }
}

impl Drop for History {
    fn drop(&mut self) {
        if let Some((tx, thread)) = self.maintenance.take() {
            drop(tx);
            let _ = thread.join();
        }
    }
}

/// The maintenance thread: for each checkpoint it hears of, merges the days
/// that are over and removes folders past retention. Either waits for the
/// history's readers at most [`files::READERS_WAIT`], else leaves the files
/// for the next round.
fn maintain(dirs: &[PathBuf], epoch: u64, metrics: &Arc<Metrics>, rx: mpsc::Receiver<Round>) {
    let events = Events::new(metrics.clone());
    while let Ok(mut round) = rx.recv() {
        // Only the newest request matters.
        while let Ok(newer) = rx.try_recv() {
            round = newer;
        }
        for dir in dirs {
            maintain_table(dir, epoch, metrics, &events, &round);
        }
    }
}

/// One round of [`maintain`] for one table (the sign-ins', the directory's).
fn maintain_table(dir: &Path, epoch: u64, metrics: &Arc<Metrics>, events: &Events, round: &Round) {
    if round.wall_keep_from > round.keep_from
        && let Ok(dates) = files::dates(dir)
        && dates.iter().any(|(d, _)| *d >= round.keep_from && *d < round.wall_keep_from)
    {
        events.emit(Problem {
            kind: "clock ahead",
            log: |held_back| {
                tracing::warn!(
                    keep_from = %round.keep_from,
                    by_host_clock = %round.wall_keep_from,
                    held_back,
                    "the host's clock is ahead of the newest sign-in by more than history.retention_days: retention goes by the sign-ins and removes nothing the host clock alone would (check the clock)"
                )
            },
        });
    }
    match files::expire(dir, round.keep_from, files::READERS_WAIT) {
        Ok(Some(0)) => {}
        Ok(Some(n)) => tracing::info!(folders = n, keep_from = %round.keep_from, "history past retention removed"),
        Ok(None) => tracing::debug!("history retention waits for a reader of the history"),
        Err(e) => events.emit(Problem {
            kind: "expire",
            log: |held_back| tracing::error!(error = %e, held_back, "cannot remove history past retention"),
        }),
    }
    let Ok(dates) = files::dates(dir) else { return };
    for (date, folder) in dates {
        let day_end = date.and_hms_opt(0, 0, 0).map_or(0, |t| t.and_utc().timestamp()) + 86_400;
        if day_end > round.settled {
            break;
        }
        match files::compact(&folder, epoch, round.upto, files::READERS_WAIT) {
            Ok(0) => {}
            Ok(n) => {
                metrics.history_compaction("ok");
                tracing::info!(date = %date, files = n, "history day merged into one file");
            }
            Err(e) => events.emit(CompactionFailed { date, error: format!("{e:#}") }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::{Column, IntoColumn};

    fn part(folder: &Path, k: u32, values: &[i64]) -> Part {
        let frame = DataFrame::new(values.len(), vec![Column::new("x".into(), values).into_column()]).unwrap();
        let name = files::Name::Part { epoch: 7, seq: 1, k };
        Part { folder: folder.to_owned(), name, rows: values.len(), data: Data::Frame(frame) }
    }

    fn all_done(writer: &mut Writer) -> Vec<Done> {
        std::iter::from_fn(|| writer.done(0)).collect()
    }

    #[test]
    fn the_writer_hands_back_what_it_could_not_write_to_be_written_again_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("date=2025-06-23");
        let blocked = dir.path().join("date=2025-06-24");
        std::fs::write(&blocked, b"a file where the folder should be").unwrap();
        let mut writer = Writer::start().unwrap();
        writer.send(part(&good, 0, &[1, 2, 3])).unwrap();
        writer.send(part(&blocked, 1, &[4, 5])).unwrap();
        assert_eq!(writer.queued_rows, 5);
        let done = all_done(&mut writer);
        assert_eq!((writer.in_flight, writer.queued_rows), (0, 0));
        assert!(matches!(done[0], Ok((3, bytes)) if bytes > 0), "{:?}", done[0].as_ref().err().map(|e| &e.1));
        let Err((Some(failed), _)) = done.into_iter().nth(1).unwrap() else { panic!("the second part was written") };
        assert_eq!(failed.rows, 2, "the part comes back whole");

        // Space returns: the same part, under the same name, goes through.
        std::fs::remove_file(&blocked).unwrap();
        let name = failed.name.file();
        writer.send(failed).unwrap();
        assert!(matches!(all_done(&mut writer)[..], [Ok((2, _))]));
        let back = files::read_parquet(&blocked.join(name)).unwrap();
        assert_eq!(back.column("x").unwrap().i64().unwrap().into_no_null_iter().collect::<Vec<_>>(), [4, 5]);
        assert!(writer.done(0).is_none(), "nothing left in flight");
    }
}
