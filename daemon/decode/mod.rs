//! decode: bytes of one message → sign-in records (SIGNIN-SEMANTICS §1).
//!
//! Owns the four input shapes and their quirks, and the rule of what a record
//! needs to be classified (category, time, outcome). It returns borrowed
//! records; it never allocates for a string without escapes and never panics
//! on input. A record it cannot use becomes a [`Malformed`] item carrying its
//! raw bytes and the reason; the rest of the message is unaffected.
//!
//! Speed: a message is parsed once, straight into [`fields::Fields`], by the
//! hand-written reader of [`scan`]; what it does not handle itself goes to the
//! serde reader of [`fields`], which gives the same fields. Only when that fails is the message split into raw records and each
//! parsed alone, so that one bad record costs only itself.

pub mod directory;
pub mod fields;
mod keys;
mod position;
pub mod requirement;
pub mod scan;
pub mod time;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use fields::RawMessage;
pub use fields::{AuthStep, EventTypes, Fields, ReportOnlyResult, Status, Str};
pub use position::{Position, RecordAt};
pub use requirement::Mechanisms;

/// The sign-in log categories of Entra diagnostic settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Category {
    #[serde(rename = "SignInLogs")]
    SignIn,
    #[serde(rename = "NonInteractiveUserSignInLogs")]
    NonInteractiveUser,
    #[serde(rename = "ServicePrincipalSignInLogs")]
    ServicePrincipal,
    #[serde(rename = "MicrosoftServicePrincipalSignInLogs")]
    MicrosoftServicePrincipal,
    #[serde(rename = "ManagedIdentitySignInLogs")]
    ManagedIdentity,
    #[serde(rename = "ADFSSignInLogs")]
    AdfsSignIn,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::SignIn,
        Category::NonInteractiveUser,
        Category::ServicePrincipal,
        Category::MicrosoftServicePrincipal,
        Category::ManagedIdentity,
        Category::AdfsSignIn,
    ];

    /// The diagnostic-setting category name.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::SignIn => "SignInLogs",
            Category::NonInteractiveUser => "NonInteractiveUserSignInLogs",
            Category::ServicePrincipal => "ServicePrincipalSignInLogs",
            Category::MicrosoftServicePrincipal => "MicrosoftServicePrincipalSignInLogs",
            Category::ManagedIdentity => "ManagedIdentitySignInLogs",
            Category::AdfsSignIn => "ADFSSignInLogs",
        }
    }

    /// The Log Analytics table holding this category.
    pub fn log_analytics_table(self) -> &'static str {
        match self {
            Category::SignIn => "SigninLogs",
            Category::NonInteractiveUser => "AADNonInteractiveUserSignInLogs",
            Category::ServicePrincipal => "AADServicePrincipalSignInLogs",
            Category::MicrosoftServicePrincipal => "MicrosoftServicePrincipalSignInLogs",
            Category::ManagedIdentity => "AADManagedIdentitySignInLogs",
            Category::AdfsSignIn => "ADFSSignInLogs",
        }
    }

    fn from_diagnostic(name: &str) -> Option<Category> {
        let name = name.trim();
        Category::ALL.into_iter().find(|c| c.as_str().eq_ignore_ascii_case(name))
    }

    fn is_log_analytics_table(name: &str) -> bool {
        const OTHER_TABLES: [&str; 6] = [
            "AuditLogs",
            "AADProvisioningLogs",
            "AADRiskyUsers",
            "AADUserRiskEvents",
            "AADRiskyServicePrincipals",
            "AADServicePrincipalRiskEvents",
        ];
        Category::from_log_analytics_type(name).is_some()
            || OTHER_TABLES.iter().any(|t| t.eq_ignore_ascii_case(name.trim()))
    }

    fn from_log_analytics_type(name: &str) -> Option<Category> {
        let name = name.trim();
        Category::ALL.into_iter().find(|c| c.log_analytics_table().eq_ignore_ascii_case(name))
    }

    /// Category of a Graph `signIn`, from `signInEventTypes`, else `isInteractive`
    /// (default interactive: the Graph list returns interactive sign-ins unless filtered).
    fn from_graph(types: Option<EventTypes>, is_interactive: Option<bool>) -> Category {
        match types {
            Some(t) if t.contains(EventTypes::INTERACTIVE_USER) => Category::SignIn,
            Some(t) if t.contains(EventTypes::NON_INTERACTIVE_USER) => Category::NonInteractiveUser,
            Some(t) if t.contains(EventTypes::SERVICE_PRINCIPAL) => Category::ServicePrincipal,
            Some(t) if t.contains(EventTypes::MANAGED_IDENTITY) => Category::ManagedIdentity,
            _ if is_interactive == Some(false) => Category::NonInteractiveUser,
            _ => Category::SignIn,
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of the four input shapes a record came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// Azure Monitor diagnostic-setting record (Event Hubs, exports): `properties{...}`.
    Diagnostic,
    /// Microsoft Graph `signIn`.
    Graph,
    /// Log Analytics row (`SigninLogs`, ...), PascalCase columns.
    LogAnalytics,
}

/// A sign-in record ready to classify: shape resolved, required fields checked.
#[derive(Debug, Clone)]
pub struct SignIn<'a> {
    pub shape: Shape,
    pub category: Category,
    pub time: DateTime<Utc>,
    /// `status.errorCode`, else the numeric `resultType`. 0 is success.
    pub outcome_code: i64,
    /// The record's fields, `properties` merged with the top level.
    pub fields: Fields<'a>,
}

/// What makes two records the same record (SIGNIN-SEMANTICS §5): its
/// category and `id`, else — for a record without one — its category,
/// `correlationId`, time and user. Coverage, the alerts, the history, the
/// report and the user detail all go by it, as a 64-bit XXH3 hash: a fixed,
/// published algorithm, so a state kept across an upgrade of mfawatch still
/// knows the records it has counted. Never 0 (0 means "no identity" where
/// one is stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct Identity(pub u64);

impl Identity {
    /// The identity of a record with these parts: `id` (compared without
    /// letter case), else correlation id, time (Unix ms) and user key.
    pub fn of(
        category: &str,
        id: Option<&str>,
        correlation_id: Option<&str>,
        time_ms: i64,
        user: Option<&str>,
    ) -> Identity {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(category.as_bytes());
        match id.map(str::trim).filter(|id| !id.is_empty()) {
            Some(id) => {
                h.update(b"\0id\0");
                let mut lower = [0u8; 64];
                for chunk in id.as_bytes().chunks(64) {
                    let lower = &mut lower[..chunk.len()];
                    lower.copy_from_slice(chunk);
                    lower.make_ascii_lowercase();
                    h.update(lower);
                }
            }
            None => {
                h.update(b"\0correlation\0");
                h.update(correlation_id.unwrap_or("").trim().as_bytes());
                h.update(b"\0");
                h.update(&time_ms.to_le_bytes());
                h.update(b"\0");
                h.update(user.unwrap_or("").trim().as_bytes());
            }
        }
        Identity(h.digest().max(1))
    }

    /// As text (alert ids are made from it).
    pub fn hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

impl SignIn<'_> {
    /// This record's [`Identity`]. Its user, for a record without an id, is
    /// the object id, else the UPN without letter case, else the service
    /// principal or app (the key of SIGNIN-SEMANTICS §2).
    pub fn identity(&self) -> Identity {
        let f = &self.fields;
        let present = |s: &Option<Str<'_>>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        let user = || {
            present(&f.user_id)
                .or_else(|| present(&f.user_principal_name).map(|u| u.to_lowercase()))
                .or_else(|| present(&f.service_principal_id))
                .or_else(|| present(&f.app_id))
        };
        let id = f.id.as_deref().map(str::trim).filter(|id| !id.is_empty());
        let user = if id.is_some() { None } else { user() };
        Identity::of(
            self.category.as_str(),
            id,
            f.correlation_id.as_deref(),
            self.time.timestamp_millis(),
            user.as_deref(),
        )
    }
}

/// Whether `text` is a canonical GUID (an object id).
pub fn is_guid(text: &str) -> bool {
    parse_guid(text).is_some()
}

/// Parses a canonical GUID (`8-4-4-4-12` hex digits, any case).
pub fn parse_guid(text: &str) -> Option<[u8; 16]> {
    let b = text.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = b.iter().enumerate().filter(|(i, _)| ![8, 13, 18, 23].contains(i));
    if [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    for byte in &mut out {
        let hi = (*digits.next()?.1 as char).to_digit(16)?;
        let lo = (*digits.next()?.1 as char).to_digit(16)?;
        *byte = (hi << 4 | lo) as u8;
    }
    Some(out)
}

/// Why a record (or a whole message) could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not valid JSON: {0}")]
    Syntax(String),
    #[error("record has a field of the wrong type: {0}")]
    Field(String),
    #[error("record gives a key twice: {0}")]
    DuplicateKey(String),
    #[error("record has no category (diagnostic `category`, Log Analytics `Type`)")]
    MissingCategory,
    #[error("record has no time (`time`, `properties.createdDateTime`, `TimeGenerated` or Graph `createdDateTime`)")]
    MissingTime,
    #[error("time {0:?} is not a known format (ISO-8601, or US style like \"11/14/2025 1:48:53 AM\")")]
    BadTime(String),
    #[error("record has no outcome: no `status.errorCode` and no `resultType`")]
    MissingOutcome,
    #[error("outcome {0:?} is not a numeric error code (`status.errorCode` missing, `resultType` not numeric)")]
    BadOutcome(String),
    #[error(
        "time {time} is more than a day after the message carrying it was received ({received}): a clock or pipeline upstream is wrong"
    )]
    FutureTime { time: String, received: String },
}

impl DecodeError {
    /// A short, bounded reason, used as a metric label and in dead letters.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Syntax(_) => "syntax",
            DecodeError::Field(_) => "field_type",
            DecodeError::DuplicateKey(_) => "duplicate_key",
            DecodeError::MissingCategory => "missing_category",
            DecodeError::MissingTime => "missing_time",
            DecodeError::BadTime(_) => "bad_time",
            DecodeError::MissingOutcome => "missing_outcome",
            DecodeError::BadOutcome(_) => "bad_outcome",
            DecodeError::FutureTime { .. } => "future_time",
        }
    }

    pub const REASONS: [&'static str; 9] = [
        "syntax",
        "field_type",
        "duplicate_key",
        "missing_category",
        "missing_time",
        "bad_time",
        "missing_outcome",
        "bad_outcome",
        "future_time",
    ];
}

/// A record (or message) that could not be used, with its raw bytes.
#[derive(Debug, Clone)]
pub struct Malformed<'a> {
    pub raw: &'a [u8],
    pub error: DecodeError,
}

impl Malformed<'_> {
    /// The index of the bad record in its message, given its item's index;
    /// `None` when the message as a whole could not be read.
    pub fn record_index(&self, item_index: usize) -> Option<usize> {
        (!matches!(self.error, DecodeError::Syntax(_))).then_some(item_index)
    }
}

/// One entry of a decoded message. Its index in the message is its position
/// in the returned list.
#[derive(Debug, Clone)]
// A sign-in is the common case and is moved once, into the message's list;
// boxing it would cost an allocation per record.
#[allow(clippy::large_enum_variant)]
pub enum Item<'a> {
    SignIn(SignIn<'a>),
    /// A directory record (audit, Identity Protection, a registration or
    /// role-assignment seed): see [`directory`].
    Directory(Box<directory::DirectoryRecord>),
    /// A record of a category mfawatch does not read (`AADProvisioningLogs`, ...).
    Skipped {
        category: Str<'a>,
    },
    Malformed(Malformed<'a>),
}

/// Decodes one message: an Event Hubs `{"records":[...]}` envelope, a Graph
/// `{"value":[...]}` page, a JSON array of Log Analytics rows, or one record.
pub fn decode_message(bytes: &[u8]) -> Vec<Item<'_>> {
    decode_message_received(bytes, None)
}

/// How far a record's time may be after the message that carried it was
/// received (clock skew between Entra, Event Hubs and a forwarder).
const FUTURE_TOLERANCE: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// [`decode_message`], with when the message was received (a Kafka message's
/// timestamp, which Event Hubs sets to the enqueued time; a file's
/// modification time): a record dated more than a day after it is
/// implausible — a wrong clock upstream — and comes back malformed
/// (`future_time`), so that it is dead-lettered rather than pushing every
/// user's window ahead. Judged against the message, not the local clock, so
/// the verdict does not depend on when or where it is read.
pub fn decode_message_received(bytes: &[u8], received: Option<DateTime<Utc>>) -> Vec<Item<'_>> {
    let mut items = decode_unchecked(bytes);
    lift_directory(bytes, &mut items, received);
    if let Some(received) = received {
        let limit = received + FUTURE_TOLERANCE;
        let mut future = false;
        for item in &mut items {
            let time = match item {
                Item::SignIn(record) => record.time,
                Item::Directory(record) => record.time,
                _ => continue,
            };
            if time > limit {
                let error = DecodeError::FutureTime {
                    time: time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    received: received.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                };
                *item = Item::Malformed(Malformed { raw: bytes, error });
                future = true;
            }
        }
        if future {
            attach_raw_records(bytes, &mut items);
        }
    }
    items
}

/// Records the sign-in reader set aside — another category, or a Graph
/// object without a sign-in's time — that are directory records are decoded
/// as such ([`directory`]); the rest stay as they were. A message of sign-ins
/// only costs nothing here.
fn lift_directory<'a>(bytes: &'a [u8], items: &mut [Item<'a>], received: Option<DateTime<Utc>>) {
    let candidate = |item: &Item<'_>| match item {
        Item::Skipped { .. } => true,
        Item::Malformed(m) => matches!(
            m.error,
            DecodeError::MissingTime
                | DecodeError::MissingOutcome
                | DecodeError::MissingCategory
                | DecodeError::BadTime(_)
                | DecodeError::BadOutcome(_)
                | DecodeError::Field(_)
        ),
        _ => false,
    };
    if !items.iter().any(candidate) {
        return;
    }
    #[derive(serde::Deserialize)]
    struct Envelope<'s> {
        #[serde(rename = "@odata.context", borrow)]
        context: Option<Str<'s>>,
    }
    let envelope = serde_json::from_slice::<Envelope<'_>>(bytes).ok();
    let context = directory::Context { odata_context: envelope.as_ref().and_then(|e| e.context.as_deref()), received };
    let raws: Vec<&[u8]> = match serde_json::from_slice::<RawMessage>(bytes) {
        Ok(RawMessage::Batch(raws)) => raws.into_iter().map(|r| r.get().as_bytes()).collect(),
        Ok(RawMessage::Single) => vec![bytes],
        Err(_) => return,
    };
    if raws.len() != items.len() {
        return;
    }
    for (item, raw) in items.iter_mut().zip(raws) {
        if !candidate(item) {
            continue;
        }
        match directory::decode_directory(raw, context) {
            Some(Ok(record)) => *item = Item::Directory(Box::new(record)),
            Some(Err(error)) => *item = Item::Malformed(Malformed { raw, error }),
            None => {}
        }
    }
}

fn decode_unchecked(bytes: &[u8]) -> Vec<Item<'_>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let error = DecodeError::Syntax(
            "gzip-compressed data, not JSON: a producer that compresses must set the Kafka header content-encoding: gzip".into(),
        );
        return vec![Item::Malformed(Malformed { raw: bytes, error })];
    }
    // About one record per 4 KB; a few reallocations of ~1 KB items is what this saves.
    let mut items = Vec::with_capacity(bytes.len() / 4096 + 1);
    match parse_message(bytes, &mut items) {
        Ok(None) => {
            attach_raw_records(bytes, &mut items);
            items
        }
        Ok(Some(record)) => vec![resolve_item(record).with_raw(bytes)],
        Err(_) => decode_record_by_record(bytes),
    }
}

/// Parses a message with the fast reader, or when it gives up with the serde
/// reader; records of an envelope are resolved into `items` as they are read.
fn parse_message<'a>(bytes: &'a [u8], items: &mut Vec<Item<'a>>) -> Result<Option<Fields<'a>>, ()> {
    if let Ok(single) = scan::parse_message(bytes, &mut |record| items.push(resolve_item(record))) {
        return Ok(single);
    }
    items.clear();
    fields::parse_message(bytes, &mut |record| items.push(resolve_item(record))).map_err(drop)
}

/// The slow path: split the message into raw records and parse each alone.
fn decode_record_by_record(bytes: &[u8]) -> Vec<Item<'_>> {
    match serde_json::from_slice::<RawMessage>(bytes) {
        Ok(RawMessage::Batch(raws)) => raws.into_iter().map(|raw| decode_record(raw.get().as_bytes())).collect(),
        Ok(RawMessage::Single) => vec![decode_record(bytes)],
        Err(e) => vec![Item::Malformed(Malformed { raw: bytes, error: DecodeError::Syntax(bounded(e.to_string())) })],
    }
}

/// Longest error text kept: serde quotes the offending value, which may be
/// a 10 MB string; logs and dead letters get its beginning.
const MAX_ERROR_CHARS: usize = 300;

fn bounded(mut text: String) -> String {
    if text.len() > MAX_ERROR_CHARS {
        let mut end = MAX_ERROR_CHARS;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let dropped = text.len() - end;
        text.truncate(end);
        text.push_str(&format!("… ({dropped} more bytes)"));
    }
    text
}

fn decode_record(raw: &[u8]) -> Item<'_> {
    let mut de = serde_json::Deserializer::from_slice(raw);
    match fields::explaining_errors(|| serde_path_to_error::deserialize::<_, Fields>(&mut de)) {
        Ok(fields) => resolve_item(fields).with_raw(raw),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // The path names the field; serde's "at line 1 column 2372" would
            // count from the record's start, not the file's or message's.
            let what = inner.to_string();
            let what = bounded(what.rsplit_once(" at line ").map_or(what.clone(), |(what, _)| what.to_owned()));
            let place = if path == "." { "the record itself".to_owned() } else { format!("`{path}`") };
            let error = if inner.is_syntax() || inner.is_eof() {
                DecodeError::Syntax(bounded(inner.to_string()))
            } else if what.starts_with("duplicate key `") {
                DecodeError::DuplicateKey(format!("{place}: {what}"))
            } else {
                DecodeError::Field(format!("{place}: {what}"))
            };
            Item::Malformed(Malformed { raw, error })
        }
    }
}

/// A semantically malformed record in a well-formed batch needs its own raw
/// bytes for the dead letter; they are found by splitting the message once.
fn attach_raw_records<'a>(bytes: &'a [u8], items: &mut [Item<'a>]) {
    if !items.iter().any(|i| matches!(i, Item::Malformed(_))) {
        return;
    }
    if let Ok(RawMessage::Batch(raws)) = serde_json::from_slice::<RawMessage>(bytes) {
        for (item, raw) in items.iter_mut().zip(raws) {
            if let Item::Malformed(m) = item {
                m.raw = raw.get().as_bytes();
            }
        }
    }
}

impl<'a> Item<'a> {
    fn with_raw(mut self, raw: &'a [u8]) -> Item<'a> {
        if let Item::Malformed(m) = &mut self {
            m.raw = raw;
        }
        self
    }
}

fn resolve_item(fields: Fields<'_>) -> Item<'_> {
    match resolve(fields) {
        Ok(Resolved::SignIn(s)) => Item::SignIn(s),
        Ok(Resolved::Skipped(category)) => Item::Skipped { category },
        Err(error) => Item::Malformed(Malformed { raw: &[], error }),
    }
}

#[allow(clippy::large_enum_variant)]
enum Resolved<'a> {
    SignIn(SignIn<'a>),
    Skipped(Str<'a>),
}

/// Decides the shape and checks what a record needs to be classified.
fn resolve(mut fields: Fields<'_>) -> Result<Resolved<'_>, DecodeError> {
    // A Log Analytics row names its table in `Type` or has `TimeGenerated`; a
    // `type` some pipeline added ("azure") does not make a record one.
    let la_table = fields.la_type.as_deref().is_some_and(Category::is_log_analytics_table);
    let shape = if fields.has_properties {
        Shape::Diagnostic
    } else if la_table || fields.time_generated.is_some() {
        Shape::LogAnalytics
    } else if fields.category.is_some() || fields.time.is_some() {
        Shape::Diagnostic
    } else {
        Shape::Graph
    };
    if shape == Shape::LogAnalytics {
        fields.drop_python_nones();
    }

    let category = match shape {
        Shape::Graph => Category::from_graph(fields.sign_in_event_types, fields.is_interactive),
        Shape::LogAnalytics => {
            let named = fields.la_type.as_ref().or(fields.category.as_ref());
            let Some(name) = named else {
                return Err(DecodeError::MissingCategory);
            };
            match Category::from_log_analytics_type(name).or_else(|| Category::from_diagnostic(name)) {
                Some(c) => c,
                None => return Ok(Resolved::Skipped(named.cloned().unwrap_or_default())),
            }
        }
        Shape::Diagnostic => {
            let Some(name) = fields.category.as_ref() else {
                return Err(DecodeError::MissingCategory);
            };
            match Category::from_diagnostic(name) {
                Some(c) => c,
                None => return Ok(Resolved::Skipped(name.clone())),
            }
        }
    };

    fn present<'s>(t: &'s Option<Str<'_>>) -> Option<&'s str> {
        t.as_deref().filter(|t| !t.trim().is_empty())
    }
    // The sign-in's own time when present and valid, else when the log
    // record was written (§1; the two can be minutes apart).
    let written = match shape {
        Shape::Diagnostic => present(&fields.time),
        Shape::LogAnalytics => present(&fields.time_generated),
        Shape::Graph => None,
    };
    let time = {
        let mut candidates = [present(&fields.created_date_time), written].into_iter().flatten();
        let first = candidates.next().ok_or(DecodeError::MissingTime)?;
        time::parse_event_time(first)
            .or_else(|| candidates.find_map(time::parse_event_time))
            .ok_or_else(|| DecodeError::BadTime(first.to_string()))?
    };

    let outcome_code = outcome_code(&fields)?;
    Ok(Resolved::SignIn(SignIn { shape, category, time, outcome_code, fields }))
}

/// `status.errorCode`, else a numeric `resultType` (SIGNIN-SEMANTICS §1).
fn outcome_code(fields: &Fields<'_>) -> Result<i64, DecodeError> {
    let status_code = fields.status.as_ref().and_then(|s| s.error_code.as_deref()).filter(|c| !c.trim().is_empty());
    let result_type = fields.result_type.as_deref().filter(|c| !c.trim().is_empty());
    match (status_code, result_type) {
        (None, None) => Err(DecodeError::MissingOutcome),
        (status, result) => status
            .and_then(parse_code)
            .or_else(|| result.and_then(parse_code))
            .ok_or_else(|| DecodeError::BadOutcome(status.or(result).unwrap_or_default().to_string())),
    }
}

fn parse_code(text: &str) -> Option<i64> {
    let text = text.trim();
    text.parse::<i64>().ok().or_else(|| {
        // "0.0" from pipelines that turn every number into a float.
        text.parse::<f64>().ok().filter(|f| f.fract() == 0.0 && f.abs() < 1e15).map(|f| f as i64)
    })
}

macro_rules! none_if_python_none {
    ($self:ident; $($field:ident),* $(,)?) => {
        $( if $self.$field.as_deref() == Some("None") { $self.$field = None; } )*
    };
}

impl Fields<'_> {
    /// `az monitor log-analytics query` prints a null cell as the text "None".
    fn drop_python_nones(&mut self) {
        none_if_python_none!(self;
            category, time, result_type, la_type, time_generated, id, created_date_time,
            correlation_id, user_principal_name, user_id, user_display_name, user_type,
            app_display_name, app_id, resource_display_name, ip_address, caller_ip_address,
            country, city, client_app_used, authentication_requirement, authentication_protocol,
            risk_level_during_sign_in, risk_level_aggregated, risk_state, conditional_access_status,
            service_principal_id, service_principal_name, tenant_id, user_agent,
        );
    }
}

#[cfg(test)]
mod tests;
