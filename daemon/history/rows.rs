//! One row per classified sign-in, buffered in columns until a part is
//! written. The column names are here, once: the writer and the report use
//! them.

use std::fmt::Write as _;

use polars::prelude::*;

use crate::classify::{Labels, Subject};
use crate::coverage::Observation;
use crate::decode::RecordAt;
use crate::sinks::SignInEvent;

/// The history's columns (and `date`, the Hive partition of the folders).
pub mod col {
    pub const TIME: &str = "time";
    pub const CATEGORY: &str = "category";
    pub const SUBJECT: &str = "subject";
    pub const INTERACTIVE: &str = "interactive";
    pub const TENANT_ID: &str = "tenant_id";
    pub const USER_KEY: &str = "user_key";
    pub const UPN: &str = "upn";
    pub const DISPLAY_NAME: &str = "display_name";
    pub const USER_TYPE: &str = "user_type";
    pub const PRIVILEGED: &str = "privileged";
    pub const EXCLUDED: &str = "excluded";
    /// A failed sign-in that names no account (50034...): not a user.
    pub const UNKNOWN_ACCOUNT: &str = "unknown_account";
    /// Counted in coverage (SIGNIN-SEMANTICS §6), as the daemon decided.
    pub const COUNTED: &str = "counted";
    pub const APP_ID: &str = "app_id";
    pub const APP: &str = "app";
    pub const RESOURCE: &str = "resource";
    pub const CLIENT_APP: &str = "client_app";
    pub const CLIENT_CLASS: &str = "client_class";
    pub const OUTCOME_CODE: &str = "outcome_code";
    pub const SUCCESS: &str = "success";
    pub const MFA_SATISFIED: &str = "mfa_satisfied";
    pub const SINGLE_FACTOR: &str = "single_factor";
    pub const LEGACY_AUTH: &str = "legacy_auth";
    pub const RISKY: &str = "risky";
    pub const FAILED: &str = "failed";
    pub const MFA_METHOD: &str = "mfa_method";
    pub const MFA_FAILURE: &str = "mfa_failure";
    pub const BLOCKED_BY: &str = "blocked_by";
    /// Which mechanisms asked for MFA, `,`-separated (`conditional_access,per_user_mfa`,
    /// `unknown`); null when MFA was not asked — and in files from before the column.
    pub const MECHANISM: &str = "mechanism";
    /// How strong the MFA was (`classify::Strength`: `phishing_resistant`,
    /// `push`, `otp`, `telephony`, …); null unless mfa_satisfied — and in
    /// files from before the column.
    pub const MFA_STRENGTH: &str = "mfa_strength";
    pub const RISK_LEVEL: &str = "risk_level";
    pub const RISK_STATE: &str = "risk_state";
    pub const ROPC: &str = "ropc";
    pub const CA_STATUS: &str = "ca_status";
    /// List of {policy, result}: what report-only Conditional Access policies would have done.
    pub const REPORT_ONLY: &str = "report_only";
    pub const POLICY: &str = "policy";
    pub const RESULT: &str = "result";
    pub const IP: &str = "ip";
    pub const COUNTRY: &str = "country";
    pub const RECORD_ID: &str = "record_id";
    pub const CORRELATION_ID: &str = "correlation_id";
    /// Where it was read: `topic[partition]@offset record i` or `file:line record i`.
    pub const SOURCE: &str = "source";
    /// The record's identity (`decode::Identity`): a record the history
    /// holds twice (a backfill of what Kafka delivered) has it twice.
    pub const IDENTITY: &str = "identity";
    /// The state (epoch) and checkpoint that wrote the row: how recovery
    /// keeps exactly the rows up to a restored snapshot (see `files`).
    pub const CHECKPOINT_EPOCH: &str = "checkpoint_epoch";
    pub const CHECKPOINT_SEQ: &str = "checkpoint_seq";
    /// The Hive partition column (`date=YYYY-MM-DD` folders).
    pub const DATE: &str = "date";
}

/// Buffered rows of one UTC date.
pub struct Rows {
    len: usize,
    time: Vec<i64>,
    text: Vec<StringChunkedBuilder>,
    /// The columns whose values are names the classifier gives (a handful
    /// each): kept as references here and made strings on the writer
    /// thread, which spares the pipeline thread a copy of each.
    names: Vec<Vec<Option<&'static str>>>,
    /// Formatting room for `source`, kept between rows.
    source: String,
    flags: Vec<Vec<bool>>,
    outcome_code: Vec<i64>,
    identity: Vec<u64>,
    policies: StringChunkedBuilder,
    results: StringChunkedBuilder,
    offsets: Vec<i64>,
}

/// A text column: its values copied as they come (`Copied`, the index in
/// `Rows::text`) or one of the classifier's names (`Named`, the index in
/// `Rows::names`).
#[derive(Clone, Copy)]
enum Text {
    Copied(usize),
    Named(usize),
}

/// The text columns, in the order of the history's schema.
const TEXT: [(&str, Text); 25] = [
    (col::CATEGORY, Text::Named(0)),
    (col::SUBJECT, Text::Named(1)),
    (col::TENANT_ID, Text::Copied(0)),
    (col::USER_KEY, Text::Copied(1)),
    (col::UPN, Text::Copied(2)),
    (col::DISPLAY_NAME, Text::Copied(3)),
    (col::USER_TYPE, Text::Copied(4)),
    (col::APP_ID, Text::Copied(5)),
    (col::APP, Text::Copied(6)),
    (col::RESOURCE, Text::Copied(7)),
    (col::CLIENT_APP, Text::Copied(8)),
    (col::CLIENT_CLASS, Text::Named(2)),
    (col::MFA_METHOD, Text::Copied(9)),
    (col::MFA_FAILURE, Text::Named(3)),
    (col::BLOCKED_BY, Text::Named(4)),
    (col::MECHANISM, Text::Named(7)),
    (col::MFA_STRENGTH, Text::Named(8)),
    (col::RISK_LEVEL, Text::Named(5)),
    (col::RISK_STATE, Text::Copied(10)),
    (col::CA_STATUS, Text::Named(6)),
    (col::IP, Text::Copied(11)),
    (col::COUNTRY, Text::Copied(12)),
    (col::RECORD_ID, Text::Copied(13)),
    (col::CORRELATION_ID, Text::Copied(14)),
    (col::SOURCE, Text::Copied(15)),
];
const COPIED: usize = 16;
const NAMED: usize = 9;

/// Flag columns, in the order of `Rows::flags`.
const FLAGS: [&str; FLAG_COUNT] = [
    col::INTERACTIVE,
    col::PRIVILEGED,
    col::EXCLUDED,
    col::UNKNOWN_ACCOUNT,
    col::COUNTED,
    col::SUCCESS,
    col::MFA_SATISFIED,
    col::SINGLE_FACTOR,
    col::LEGACY_AUTH,
    col::RISKY,
    col::FAILED,
    col::ROPC,
];
const FLAG_COUNT: usize = 12;

impl Rows {
    pub fn new(capacity: usize) -> Rows {
        Rows {
            len: 0,
            time: Vec::with_capacity(capacity),
            text: TEXT
                .iter()
                .filter(|(_, t)| matches!(t, Text::Copied(_)))
                .map(|(name, _)| StringChunkedBuilder::new((*name).into(), capacity))
                .collect(),
            names: (0..NAMED).map(|_| Vec::with_capacity(capacity)).collect(),
            source: String::new(),
            flags: (0..FLAG_COUNT).map(|_| Vec::with_capacity(capacity)).collect(),
            outcome_code: Vec::with_capacity(capacity),
            identity: Vec::with_capacity(capacity),
            policies: StringChunkedBuilder::new(col::POLICY.into(), 0),
            results: StringChunkedBuilder::new(col::RESULT.into(), 0),
            offsets: vec![0],
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds the row of one sign-in.
    pub fn push(&mut self, e: &SignInEvent<'_, '_>, counted: bool) {
        let (r, v) = (e.record, e.verdict);
        let f = &r.fields;
        fn opt<'a>(s: &'a Option<std::borrow::Cow<'_, str>>) -> Option<&'a str> {
            s.as_deref().map(str::trim).filter(|s| !s.is_empty())
        }
        self.source.clear();
        let _ = write!(self.source, "{}", RecordAt { position: e.position, index: Some(e.index) });
        let copied: [Option<&str>; COPIED] = [
            opt(&f.tenant_id),
            v.subject_key.as_deref(),
            opt(&f.user_principal_name),
            opt(&f.user_display_name),
            opt(&f.user_type),
            opt(&f.app_id),
            opt(&f.app_display_name),
            opt(&f.resource_display_name),
            Some(v.client_app.trim()).filter(|c| !c.is_empty()),
            v.mfa_method.as_ref().map(|m| m.as_str()),
            opt(&f.risk_state),
            opt(&f.ip_address).or_else(|| opt(&f.caller_ip_address)),
            opt(&f.country),
            opt(&f.id),
            opt(&f.correlation_id),
            Some(self.source.as_str()),
        ];
        for (builder, value) in self.text.iter_mut().zip(copied) {
            builder.append_option(value);
        }
        let named: [Option<&'static str>; NAMED] = [
            Some(r.category.as_str()),
            Some(v.subject.as_str()),
            Some(v.client_class.as_str()),
            v.mfa_failure.map(|m| m.as_str()),
            v.blocked_by.map(|b| b.as_str()),
            Some(v.risk_level.as_str()),
            Some(v.ca_status.as_str()),
            v.mechanisms.map(|m| m.joined()),
            v.strength.map(|s| s.as_str()),
        ];
        for (column, value) in self.names.iter_mut().zip(named) {
            column.push(value);
        }
        let l = v.labels;
        let flags: [bool; FLAG_COUNT] = [
            v.interactive,
            e.privileged,
            e.excluded,
            Observation::unknown_account(r, v),
            counted && v.subject == Subject::User,
            v.success,
            l.contains(Labels::MFA_SATISFIED),
            l.contains(Labels::SINGLE_FACTOR),
            l.contains(Labels::LEGACY_AUTH),
            l.contains(Labels::RISKY),
            l.contains(Labels::FAILED),
            v.ropc,
        ];
        for (column, value) in self.flags.iter_mut().zip(flags) {
            column.push(value);
        }
        self.time.push(r.time.timestamp_millis());
        self.outcome_code.push(r.outcome_code);
        self.identity.push(r.identity().0);
        for p in v.report_only {
            self.policies.append_value(p.policy.as_ref());
            self.results.append_value(p.result.as_ref());
        }
        let last = *self.offsets.last().expect("starts with 0");
        self.offsets.push(last + v.report_only.len() as i64);
        self.len += 1;
    }

    /// The rows as a DataFrame (the buffer is emptied), each marked as
    /// written by checkpoint `seq` of state `epoch`.
    pub fn take(&mut self, (epoch, seq): (u64, u64)) -> PolarsResult<DataFrame> {
        let rows = std::mem::replace(self, Rows::new(0));
        let n = rows.len;
        let mut columns: Vec<Column> = Vec::with_capacity(TEXT.len() + FLAG_COUNT + 3);
        let time = Int64Chunked::from_vec(col::TIME.into(), rows.time)
            .into_datetime(TimeUnit::Milliseconds, None)
            .into_column();
        columns.push(time);
        let mut copied: Vec<Option<StringChunkedBuilder>> = rows.text.into_iter().map(Some).collect();
        for (name, text) in TEXT {
            let column = match text {
                Text::Copied(i) => copied[i].take().expect("each copied column once").finish(),
                Text::Named(i) => StringChunked::from_iter_options(name.into(), rows.names[i].iter().copied()),
            };
            columns.push(column.into_column());
        }
        for (name, values) in FLAGS.iter().zip(rows.flags) {
            columns.push(BooleanChunked::from_slice((*name).into(), &values).into_column());
        }
        columns.push(Int64Chunked::from_vec(col::OUTCOME_CODE.into(), rows.outcome_code).into_column());
        columns.push(report_only_column(rows.policies, rows.results, rows.offsets)?);
        columns.push(Column::new(col::IDENTITY.into(), rows.identity));
        columns.push(Column::new(col::CHECKPOINT_EPOCH.into(), vec![epoch; n]));
        columns.push(Column::new(col::CHECKPOINT_SEQ.into(), vec![seq; n]));
        DataFrame::new(n, columns)
    }
}

/// `report_only`: a list of {policy, result} per row, built from the flat
/// pairs and each row's offsets in one go (not a Series per row).
fn report_only_column(
    policies: StringChunkedBuilder,
    results: StringChunkedBuilder,
    offsets: Vec<i64>,
) -> PolarsResult<Column> {
    let (policies, results) = (policies.finish().into_series(), results.finish().into_series());
    let pairs = StructChunked::from_series(col::POLICY.into(), policies.len(), [policies, results].iter())?;
    let values = pairs.rechunk().chunks()[0].clone();
    let dtype = polars_arrow::array::ListArray::<i64>::default_datatype(values.dtype().clone());
    let offsets = polars_arrow::offset::OffsetsBuffer::<i64>::try_from(offsets)?;
    let list = polars_arrow::array::ListArray::<i64>::new(dtype, offsets, values, None);
    Ok(Series::from_arrow_chunks(col::REPORT_ONLY.into(), vec![Box::new(list)])?.into_column())
}

/// The schema every part has (for scanning an empty history, and checks).
pub fn schema() -> Schema {
    let mut rows = Rows::new(0);
    rows.take((0, 0)).map(|df| df.schema().as_ref().clone()).unwrap_or_default()
}
