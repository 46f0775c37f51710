//! pipeline: one message through decode → classify → the sinks.
//!
//! The same code runs for Kafka, files (`replay`), the demo and the
//! benchmarks. A message is processed in one go: its records are decoded and
//! classified, its sign-ins update the coverage state (locked once per
//! message) and the metrics, then go to every other sink (alerts, history) in
//! a fixed order; its malformed records are counted and dead-lettered.
//! Nothing here knows about offsets or durability: the source and the
//! checkpoint own those; the checkpoint asks the pipeline to make its sinks
//! durable ([`Pipeline::prepare_sinks`]).

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::classify::{Carried, Rules, Subject, Verdict, classify};
use crate::coverage::{Accounts, Observation, Observed, Policy};
use crate::deadletter::DeadLetters;
use crate::decode::directory::{DirectoryRecord, Fact, Holding, PolicyChange, PolicyOp, Principal, Protection};
use crate::decode::{Item, Position, RecordAt, SignIn, decode_message_received};
use crate::directory::Applied;
use crate::events::{Events, MalformedRecord, UserRefused};
use crate::metrics::Metrics;
use crate::sinks::{DirectoryEvent, Durable, Prepared, SignInEvent, Sink};

pub struct Pipeline {
    rules: Rules,
    policy: Policy,
    coverage: Arc<crate::coverage::Handle>,
    directory: Arc<crate::directory::Handle>,
    metrics: Arc<Metrics>,
    dead_letters: DeadLetters,
    sinks: Vec<Box<dyn Sink>>,
    pseudonyms: Option<crate::privacy::Pseudonyms>,
    events: Events,
}

impl Pipeline {
    pub fn new(
        rules: Rules,
        policy: Policy,
        coverage: Arc<crate::coverage::Handle>,
        metrics: Arc<Metrics>,
        dead_letters: DeadLetters,
    ) -> Pipeline {
        Pipeline {
            events: Events::new(metrics.clone()),
            rules,
            policy,
            coverage,
            directory: crate::directory::Handle::new(Default::default()),
            metrics,
            dead_letters,
            sinks: Vec::new(),
            pseudonyms: None,
        }
    }

    /// Pseudonymise every record as it is decoded (`privacy.pseudonymise`).
    pub fn set_pseudonyms(&mut self, pseudonyms: Option<crate::privacy::Pseudonyms>) {
        self.pseudonyms = pseudonyms;
    }

    /// The directory state records of the audit and Identity Protection hubs go to.
    pub fn set_directory(&mut self, directory: Arc<crate::directory::Handle>) {
        self.directory = directory;
    }

    pub fn directory(&self) -> &Arc<crate::directory::Handle> {
        &self.directory
    }

    /// Adds a sink after the ones already there.
    pub fn add_sink(&mut self, sink: Box<dyn Sink>) {
        self.sinks.push(sink);
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn coverage(&self) -> &Arc<crate::coverage::Handle> {
        &self.coverage
    }

    /// Processes one message. `received` is when the source got it (a Kafka
    /// message's timestamp, a file's modification time): a record dated more
    /// than a day after it is implausible and dead-lettered. Only a
    /// dead-letter write failure is an error: then the message must not count
    /// as done.
    pub fn process(&mut self, bytes: &[u8], position: &Position, received: Option<DateTime<Utc>>) -> io::Result<()> {
        crate::testhooks::pause("pipeline");
        let (coverage_handle, metrics) = (self.coverage.clone(), self.metrics.clone());
        let metrics = &*metrics;
        metrics.message(bytes.len());
        let items = decode_message_received(bytes, received);
        let now = Utc::now();
        let mut records: Vec<(usize, SignIn<'_>)> = Vec::with_capacity(items.len());
        let mut directory_records = Vec::new();
        let mut malformed_items = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            match item {
                Item::SignIn(mut record) => {
                    if let Some(p) = &self.pseudonyms {
                        p.apply(&mut record.fields);
                    }
                    records.push((index, record))
                }
                Item::Directory(mut record) => {
                    if let Some(p) = &self.pseudonyms {
                        p.apply_directory(&mut record);
                    }
                    directory_records.push((index, record))
                }
                Item::Skipped { category } => metrics.skipped(&category),
                Item::Malformed(malformed) => malformed_items.push((index, malformed)),
            }
        }
        let applied = if directory_records.is_empty() { Vec::new() } else { self.apply_directory(&directory_records) };
        let accounts = coverage_handle.accounts();
        let verdicts: Vec<Verdict<'_>> = records.iter().map(|(_, r)| classify(r, &self.rules)).collect();
        if let Position::Kafka { topic, .. } = position {
            metrics.topic_read(topic, records.iter().map(|(_, r)| r.time.timestamp()).max());
        }
        // What coverage had of each record before: the sinks judge a later
        // copy by what it adds (docs/labels.md §5).
        let mut earlier: Vec<Option<Carried>> = vec![None; records.len()];
        {
            let mut coverage = coverage_handle.write();
            for (((_, record), verdict), earlier) in records.iter().zip(&verdicts).zip(&mut earlier) {
                let lag = (now - record.time).num_milliseconds() as f64 / 1000.0;
                metrics.sign_in(record.category, verdict, lag);
                match Observation::of(record, verdict, &self.policy) {
                    Some(observation) => match coverage.observe(&observation) {
                        Observed::Counted | Observed::Seen => {}
                        Observed::Duplicate => {
                            metrics.duplicate_sign_in();
                            *earlier = Some(observation.carried);
                        }
                        Observed::Enriched { before, after } => {
                            metrics.enriched_sign_in(before.added_by(after));
                            *earlier = Some(before);
                        }
                        Observed::Late => metrics.late_sign_in(),
                        Observed::Refused => self.refused_user(coverage.len()),
                    },
                    None if Observation::unknown_account(record, verdict) => {
                        metrics.unknown_account(record.category, verdict)
                    }
                    None => {}
                }
            }
        }
        let directory = self.directory.read();
        for (((index, record), verdict), &earlier) in records.iter().zip(&verdicts).zip(&earlier) {
            let excluded = verdict.subject == Subject::User && note_excluded_account(&accounts, record, verdict);
            if self.sinks.is_empty() {
                continue;
            }
            // Privileged as of the sign-in: listed, or holding a privileged role then.
            let (key, upn) = (
                verdict.subject_key.as_deref().unwrap_or(""),
                record.fields.user_principal_name.as_deref().unwrap_or(""),
            );
            let privileged = verdict.subject == Subject::User
                && (accounts.listed(key, upn) || directory.privileged_at(key, upn, record.time).is_some());
            let risk = (directory.any_risk() && verdict.success && verdict.subject == Subject::User)
                .then(|| directory.risk_at(key, upn, record.time))
                .flatten();
            let event = SignInEvent { record, verdict, position, index: *index, privileged, excluded, risk, earlier };
            for sink in &mut self.sinks {
                sink.sign_in(&event);
            }
        }
        drop(directory);
        if !self.sinks.is_empty() && !directory_records.is_empty() {
            self.directory_to_sinks(&directory_records, &applied, &accounts, position);
        }
        // Dead letters are written without holding the coverage lock: a slow
        // dead-letter topic must not stall the API.
        for (index, malformed) in malformed_items {
            let index = malformed.record_index(index);
            self.dead_letters.write(position, index, &malformed)?;
            self.events.emit(MalformedRecord { source: RecordAt { position, index }, error: &malformed.error });
        }
        Ok(())
    }

    /// Applies a message's directory records to the directory state; when a
    /// role changed, coverage learns who holds a privileged role now (as of
    /// the newest directory record).
    fn apply_directory(&self, records: &[(usize, Box<DirectoryRecord>)]) -> Vec<Applied> {
        let mut directory = self.directory.write();
        let mut roles_changed = false;
        let mut results = Vec::with_capacity(records.len());
        for (_, record) in records {
            let applied = directory.apply(record);
            self.metrics.directory_record(record, applied);
            roles_changed |= applied == Applied::Changed && matches!(record.fact, Fact::Role(_));
            results.push(applied);
        }
        if roles_changed {
            let holders = directory.holders(directory.as_of());
            drop(directory);
            self.coverage.set_role_holders(holders.iter().map(String::as_str));
        }
        results
    }

    /// Hands a message's directory records to the sinks, each with what the
    /// directory and coverage say of its user after the whole message.
    fn directory_to_sinks(
        &mut self,
        records: &[(usize, Box<DirectoryRecord>)],
        applied: &[Applied],
        accounts: &Accounts,
        position: &Position,
    ) {
        let directory = self.directory.clone();
        let directory = directory.read();
        let coverage = self.coverage.clone();
        let coverage = coverage.read();
        for ((index, record), &applied) in records.iter().zip(applied) {
            let (key, upn) = record.fact.subject().and_then(|p| directory.key_of(p)).unwrap_or_default();
            let named = !key.is_empty();
            let privileged =
                named && (accounts.listed(&key, &upn) || directory.privileged_at(&key, &upn, record.time).is_some());
            let became_privileged =
                if named && matches!(&record.fact, Fact::Role(r) if r.added) && applied != Applied::NotUser {
                    directory.became_privileged(&key, &upn, record.time)
                } else {
                    None
                };
            // Looked up only when it matters (a user not seen costs a scan).
            let state = became_privileged.as_ref().and_then(|_| coverage.user(accounts, &key)).map(|u| u.state);
            let event = DirectoryEvent {
                record,
                applied,
                position,
                index: *index,
                user_key: &key,
                upn: &upn,
                privileged,
                became_privileged,
                excluded: named && accounts.excluded(&key, &upn),
                coverage: state,
                registration: if named {
                    directory.registration(&key, &upn)
                } else {
                    crate::directory::Registration::Unknown
                },
                break_glass: break_glass_exclusions(record, &directory, accounts),
                mfa_enforced: match &record.fact {
                    Fact::Policy(PolicyChange { protection: Protection::SecurityDefaults { .. }, .. }) => {
                        directory.posture().mfa_enforced_at(record.time.timestamp_millis())
                    }
                    _ => Vec::new(),
                },
            };
            for sink in &mut self.sinks {
                sink.directory(&event);
            }
        }
    }

    /// Every page of a full listing of `holding` read at `at` has been
    /// processed: what it no longer lists ends then
    /// ([`crate::directory::Directory::ended_by_listing`]), as removal
    /// records applied and handed to the sinks like any others (at
    /// `position`). Returns how many ended.
    pub fn listing_complete(
        &mut self,
        holding: Holding,
        at: DateTime<Utc>,
        operation: &str,
        position: &Position,
    ) -> usize {
        let ended = self.directory.read().ended_by_listing(holding, at, operation);
        if ended.is_empty() {
            return 0;
        }
        let records: Vec<(usize, Box<DirectoryRecord>)> = ended.into_iter().map(Box::new).enumerate().collect();
        let applied = self.apply_directory(&records);
        if !self.sinks.is_empty() {
            let accounts = self.coverage.accounts();
            self.directory_to_sinks(&records, &applied, &accounts, position);
        }
        applied.iter().filter(|a| **a == Applied::Changed).count()
    }

    /// A new user that `coverage.max_users` keeps out: counted, said once a minute.
    fn refused_user(&self, users: usize) {
        self.events.emit(UserRefused { users });
    }

    /// Makes dead letters durable (first step of a checkpoint).
    pub fn sync_dead_letters(&mut self) -> io::Result<()> {
        self.events.flush_malformed();
        self.dead_letters.sync()
    }

    /// Asks every sink to make checkpoint `seq` durable: their snapshot
    /// states by key, the keys of earlier formats they replace, and the waits
    /// for what they sent to disk ([`crate::sinks::Sink::prepare`]).
    pub fn prepare_sinks(&mut self, seq: u64) -> anyhow::Result<SinkStates> {
        if !self.sinks.is_empty() {
            let accounts = self.coverage.accounts();
            let coverage = self.coverage.read();
            for sink in &mut self.sinks {
                sink.review(&coverage, &accounts);
            }
        }
        let mut prepared = SinkStates::default();
        for sink in &mut self.sinks {
            let name = sink.name();
            let Prepared { state, durable } = sink.prepare(seq).map_err(|e| e.context(name))?;
            if let Some(state) = state {
                prepared.states.insert(sink.state_key().to_owned(), state);
                prepared.superseded.extend_from_slice(sink.superseded());
            }
            prepared
                .durable
                .extend(durable.map(|wait| -> Durable { Box::new(move || wait().map_err(|e| e.context(name))) }));
        }
        Ok(prepared)
    }

    /// The snapshot of checkpoint `seq` is durable.
    pub fn sinks_committed(&mut self, seq: u64) {
        for sink in &mut self.sinks {
            sink.committed(seq);
        }
    }
}

/// What the sinks hand a checkpoint ([`Pipeline::prepare_sinks`]).
#[derive(Default)]
pub struct SinkStates {
    /// Their snapshot states by key.
    pub states: BTreeMap<String, Vec<u8>>,
    /// The keys of earlier formats they replace.
    pub superseded: Vec<&'static str>,
    /// What the snapshot waits for first.
    pub durable: Vec<Durable>,
}

/// Every sign-in of an excluded (break-glass) account is logged (the alert
/// is the break_glass_signin rule's). Returns whether the account is one.
fn note_excluded_account(accounts: &Accounts, record: &SignIn<'_>, verdict: &Verdict<'_>) -> bool {
    let key = verdict.subject_key.as_deref().unwrap_or("");
    let upn = record.fields.user_principal_name.as_deref().unwrap_or("");
    if !accounts.excluded(key, upn) {
        return false;
    }
    tracing::warn!(
        upn,
        user_key = key,
        time = %record.time,
        success = verdict.success,
        app = record.fields.app_display_name.as_deref().unwrap_or(""),
        ip = record.fields.ip_address.as_deref().unwrap_or(""),
        "break-glass account signed in"
    );
    true
}

/// The break-glass accounts whose exclusion from a Conditional Access
/// policy an update changed: (key, UPN, excluded after it). Policies name
/// users by object id; a break-glass account configured by UPN is found
/// through the directory. Group exclusions are not resolved (membership is
/// not read).
fn break_glass_exclusions(
    record: &DirectoryRecord,
    directory: &crate::directory::Directory,
    accounts: &Accounts,
) -> Vec<(String, String, bool)> {
    let Fact::Policy(PolicyChange {
        protection: Protection::ConditionalAccess { op: PolicyOp::Updated, before, after },
        ..
    }) = &record.fact
    else {
        return Vec::new();
    };
    let (Some(before), Some(after)) = (before, after) else { return Vec::new() };
    let mut out = Vec::new();
    let changed = after
        .exclude_users
        .iter()
        .filter(|u| !before.exclude_users.contains(u))
        .map(|u| (u, true))
        .chain(before.exclude_users.iter().filter(|u| !after.exclude_users.contains(u)).map(|u| (u, false)));
    for (id, excluded) in changed {
        let principal = Principal { id: Some(id.clone()), ..Principal::default() };
        let Some((key, upn)) = directory.key_of(&principal) else { continue };
        if accounts.excluded(&key, &upn) || accounts.excluded(id, &upn) {
            out.push((key, upn, excluded));
        }
    }
    out
}
