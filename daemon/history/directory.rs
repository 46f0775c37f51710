//! The directory table: one Parquet row per directory record (audit,
//! Identity Protection, the seeds), in `<history.dir>/directory/`, with the
//! sign-ins' partitioning (`date=YYYY-MM-DD/`, by event date, UTC), file
//! names and exactly-once rules ([`super::files`]: parts of a checkpoint,
//! `_committed`, recovery, compaction, retention), so the report can rebuild
//! the directory state as of any day. `record` keeps the decoded record
//! whole (JSON), the columns before it are for queries.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::decode::RecordAt;
use crate::decode::directory::{DirectoryRecord, Fact, Holding};
use crate::sinks::DirectoryEvent;

/// The table's folder inside the history's.
pub fn root(history: &Path) -> PathBuf {
    history.join("directory")
}

/// The table's columns.
pub mod col {
    pub use crate::history::rows::col::{
        CATEGORY, CHECKPOINT_EPOCH, CHECKPOINT_SEQ, DISPLAY_NAME, IDENTITY, PRIVILEGED, RECORD_ID, SOURCE, TENANT_ID,
        TIME, UPN, USER_KEY,
    };
    pub const OPERATION: &str = "operation";
    pub const FAMILY: &str = "family";
    /// What the directory state did with it: `applied`, `stale`, `not_user`, `skipped`.
    pub const APPLIED: &str = "applied";
    pub const ROLE: &str = "role";
    pub const ROLE_ID: &str = "role_id";
    /// `active` or `eligible`.
    pub const HOLDING: &str = "holding";
    /// A role given (true) or taken (false).
    pub const ADDED: &str = "added";
    /// Methods named, `;`-separated.
    pub const METHODS: &str = "methods";
    pub const METHOD_CHANGE: &str = "method_change";
    pub const RISK_LEVEL: &str = "risk_level";
    pub const RISK_STATE: &str = "risk_state";
    pub const INITIATED_BY: &str = "initiated_by";
    /// The decoded record, JSON: what the report applies again.
    pub const RECORD: &str = "record";
}

/// The text columns, in the order of the schema.
const TEXT: [&str; 18] = [
    col::CATEGORY,
    col::OPERATION,
    col::FAMILY,
    col::APPLIED,
    col::TENANT_ID,
    col::USER_KEY,
    col::UPN,
    col::DISPLAY_NAME,
    col::ROLE,
    col::ROLE_ID,
    col::HOLDING,
    col::METHODS,
    col::METHOD_CHANGE,
    col::RISK_LEVEL,
    col::RISK_STATE,
    col::INITIATED_BY,
    col::RECORD_ID,
    col::SOURCE,
];

/// Buffered rows of one UTC date (directory records are few: kept as values).
#[derive(Default)]
pub struct DirRows {
    time: Vec<i64>,
    text: Vec<[Option<String>; TEXT.len()]>,
    privileged: Vec<bool>,
    added: Vec<Option<bool>>,
    record: Vec<String>,
    identity: Vec<u64>,
}

impl DirRows {
    pub fn len(&self) -> usize {
        self.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }

    pub fn push(&mut self, e: &DirectoryEvent<'_>) {
        let r = e.record;
        let some = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        let (mut role, mut role_id, mut holding, mut added) = (None, None, None, None);
        let (mut methods, mut method_change, mut risk_level, mut risk_state) = (None, None, None, None);
        match &r.fact {
            Fact::Role(c) => {
                role = c.role.name.clone();
                role_id = c.role.template_id.clone();
                holding = Some(if c.holding == Holding::Eligible { "eligible" } else { "active" }.to_owned());
                added = Some(c.added);
            }
            Fact::Methods(m) => {
                methods = Some(m.methods.iter().map(|m| m.0.as_str()).collect::<Vec<_>>().join(";"));
                method_change = serde_json::to_value(m.change).ok().and_then(|v| v.as_str().map(str::to_owned));
            }
            Fact::Registration(d) => {
                methods = Some(d.methods.iter().map(|m| m.0.as_str()).collect::<Vec<_>>().join(";"));
            }
            Fact::RiskyUser(u) => (risk_level, risk_state) = (u.level.clone(), u.state.clone()),
            Fact::Risk(d) => (risk_level, risk_state) = (d.level.clone(), d.state.clone()),
            // Their whole change is in the record column.
            Fact::Policy(_) | Fact::PerUserMfa(_) | Fact::Other { .. } => {}
        }
        let mut source = String::new();
        let _ = write!(source, "{}", RecordAt { position: e.position, index: Some(e.index) });
        let family = serde_json::to_value(r.family()).ok().and_then(|v| v.as_str().map(str::to_owned));
        self.text.push([
            Some(r.category.as_str().to_owned()),
            some(&r.operation),
            family,
            Some(e.applied.as_str().to_owned()),
            r.tenant_id.clone(),
            some(e.user_key),
            some(e.upn),
            r.fact.subject().and_then(|p| p.display_name.clone()),
            role,
            role_id,
            holding,
            methods,
            method_change,
            risk_level,
            risk_state,
            r.initiated_by.clone(),
            r.id.clone(),
            Some(source),
        ]);
        self.time.push(r.time.timestamp_millis());
        self.privileged.push(e.privileged);
        self.added.push(added);
        self.record.push(serde_json::to_string(r).unwrap_or_default());
        self.identity.push(r.identity().0);
    }

    /// The rows as a DataFrame (the buffer is emptied), each marked as
    /// written by checkpoint `seq` of state `epoch`.
    pub fn take(&mut self, (epoch, seq): (u64, u64)) -> PolarsResult<DataFrame> {
        let rows = std::mem::take(self);
        let n = rows.len();
        let mut columns: Vec<Column> = Vec::with_capacity(TEXT.len() + 7);
        columns.push(
            Int64Chunked::from_vec(col::TIME.into(), rows.time)
                .into_datetime(TimeUnit::Milliseconds, None)
                .into_column(),
        );
        for (i, name) in TEXT.iter().enumerate() {
            let values = rows.text.iter().map(|row| row[i].as_deref());
            columns.push(StringChunked::from_iter_options((*name).into(), values).into_column());
        }
        columns.push(BooleanChunked::from_slice(col::PRIVILEGED.into(), &rows.privileged).into_column());
        columns.push(BooleanChunked::from_iter_options(col::ADDED.into(), rows.added.into_iter()).into_column());
        columns.push(
            StringChunked::from_iter_values(col::RECORD.into(), rows.record.iter().map(String::as_str)).into_column(),
        );
        columns.push(Column::new(col::IDENTITY.into(), rows.identity));
        columns.push(Column::new(col::CHECKPOINT_EPOCH.into(), vec![epoch; n]));
        columns.push(Column::new(col::CHECKPOINT_SEQ.into(), vec![seq; n]));
        DataFrame::new(n, columns)
    }
}

/// The directory records the table holds up to `until` (Unix ms, inclusive),
/// oldest first, each once (a record read twice — a restart, a backfill —
/// has its identity twice). Files that cannot be read are named in the
/// error's place: skipped and returned.
pub fn records_until(history: &Path, until: i64) -> anyhow::Result<(Vec<DirectoryRecord>, Vec<String>)> {
    let root = root(history);
    let _readers = super::files::read_lock(&root)?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut damaged = Vec::new();
    for (date, folder) in super::files::dates(&root)? {
        let day_start = date.and_hms_opt(0, 0, 0).map_or(0, |t| t.and_utc().timestamp_millis());
        if day_start > until {
            break;
        }
        for (_, path) in super::files::files(&folder)? {
            let df = match super::files::read_parquet(&path) {
                Ok(df) => df,
                Err(e) => {
                    damaged.push(format!("{e:#}"));
                    continue;
                }
            };
            let (Ok(records), Ok(ids)) = (df.column(col::RECORD), df.column(col::IDENTITY)) else {
                damaged.push(format!("{}: not a directory table file", path.display()));
                continue;
            };
            for (record, id) in records.str()?.iter().zip(ids.u64()?.iter()) {
                let (Some(record), Some(id)) = (record, id) else { continue };
                let Ok(record) = serde_json::from_str::<DirectoryRecord>(record) else {
                    damaged.push(format!("{}: a record that cannot be read", path.display()));
                    continue;
                };
                if record.time.timestamp_millis() <= until && seen.insert(id) {
                    out.push(record);
                }
            }
        }
    }
    out.sort_by_key(|r| r.time);
    Ok((out, damaged))
}
