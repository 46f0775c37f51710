//! coverage: per-user MFA coverage over a rolling window (SIGNIN-SEMANTICS §6).
//!
//! Owns one compact entry per user key and answers, at any moment, who is
//! covered, uncovered, never_mfa or inactive, who is registration_pending or
//! overdue. It is fed `(record, verdict)` pairs and never does I/O; snapshots
//! are plain data that the checkpoint stage writes.
//!
//! Event time, not arrival time, decides the window. Counts are kept per UTC
//! day in a ring of `window_days` buckets per user; the window is the
//! `window_days` whole days ending with the day of the newest event seen (the
//! watermark), so replaying the same records in any order gives the same state.
//! Records older than the window still update the "last seen" times but not
//! the counts.
//!
//! Memory: entries live in flat vectors (struct of arrays), names in one string
//! arena, apps and clients interned, and the index is a table of u32 entry
//! numbers. About 133 bytes per user plus the strings (see `bench coverage`).

use std::collections::HashSet;
use std::hash::BuildHasher;

use chrono::{DateTime, Utc};
use hashbrown::HashTable;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::classify::{Carried, Labels, MfaFailure, Strength, Subject, Verdict};
use crate::decode::SignIn;

const DAY: i64 = 86_400;

/// What the coverage stage is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub window_days: u16,
    pub count_non_interactive: bool,
    pub registration_grace_secs: i64,
    /// New users past this many are not tracked (a last line of defence
    /// against a state grown from outside).
    pub max_users: usize,
}

impl Policy {
    pub fn from_config(c: &crate::config::CoverageConfig) -> Policy {
        Policy {
            window_days: (c.window.as_secs() / DAY as u64).clamp(1, 90) as u16,
            count_non_interactive: c.count_non_interactive,
            registration_grace_secs: c.registration_grace.as_secs() as i64,
            max_users: c.max_users as usize,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::from_config(&crate::config::CoverageConfig::default())
    }
}

/// Coverage state of a user over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Counted sign-ins in the window, all with MFA.
    Covered,
    /// At least one counted single-factor or legacy sign-in in the window.
    Uncovered,
    /// No counted sign-in in the window.
    Inactive,
    /// A configured break-glass account: never counted as uncovered.
    Excluded,
}

impl State {
    pub const ALL: [State; 4] = [State::Covered, State::Uncovered, State::Inactive, State::Excluded];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Covered => "covered",
            State::Uncovered => "uncovered",
            State::Inactive => "inactive",
            State::Excluded => "excluded",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str().eq_ignore_ascii_case(text))
    }
}

/// `userType`, as far as the records tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum UserType {
    Member,
    Guest,
    Unknown,
}

impl UserType {
    pub const ALL: [UserType; 3] = [UserType::Member, UserType::Guest, UserType::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            UserType::Member => "member",
            UserType::Guest => "guest",
            UserType::Unknown => "unknown",
        }
    }

    pub fn parse(text: Option<&str>) -> UserType {
        match text.map(str::trim) {
            Some(t) if t.eq_ignore_ascii_case("member") => UserType::Member,
            Some(t) if t.eq_ignore_ascii_case("guest") => UserType::Guest,
            _ => UserType::Unknown,
        }
    }

    fn bits(self) -> u8 {
        self as u8
    }

    fn from_bits(bits: u8) -> UserType {
        match bits & 3 {
            0 => UserType::Member,
            1 => UserType::Guest,
            _ => UserType::Unknown,
        }
    }
}

/// Counted sign-ins of one day (saturating). A counted sign-in is a
/// successful user sign-in, so it is either MFA or single factor: the day's
/// count is `mfa + single_factor`. Legacy ones are in one of the two as well.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCounts {
    pub mfa: u16,
    pub single_factor: u16,
    pub legacy: u16,
}

/// Counts over the window, as reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub counted: u32,
    pub mfa: u32,
    pub single_factor: u32,
    pub legacy: u32,
}

/// A reference into the string arena.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct StrRef {
    offset: u32,
    len: u32,
}

/// A user's UPN and display name, back to back in the arena.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Names {
    offset: u32,
    upn_len: u16,
    display_len: u16,
}

/// One user's compact entry (80 bytes). Times are Unix seconds (u32 lasts
/// until 2106), 0 meaning never; `head_day` is the newest day (days since
/// 1970) in the ring.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The object id when the key is a GUID (the usual case); otherwise where
    /// the key text is in the arena (offset and length, little-endian u32s).
    id: [u8; 16],
    names: Names,
    last_seen: u32,
    last_mfa: u32,
    last_single_factor: u32,
    last_legacy: u32,
    /// The newest successful risky sign-in.
    last_risky: u32,
    /// The newest counted sign-in with phishing-resistant MFA, and with MFA
    /// by a weaker method named (push, a code, telephony, other): "on
    /// phishing-resistant MFA" is the one in the window and not the other.
    last_phishing_resistant: u32,
    last_weaker_mfa: u32,
    /// Interned app and client names (0: none, also past 65,535 names).
    single_factor_app: u16,
    legacy_app: u16,
    single_factor_client: u16,
    legacy_client: u16,
    /// Days with a registration_required failure: bit i is the UTC day i days
    /// before that of `registration_last`, the latest failure (32 days kept).
    /// A set, so the answer does not depend on the order records arrive in.
    registration_days: u32,
    registration_last: u32,
    /// Event time of the record the UPN and display name were taken from,
    /// and of the one the user type was.
    names_time: u32,
    type_time: u32,
    head_day: u16,
    /// Bits 0-1 user type; bit 2 the key is a GUID.
    flags: u8,
}

const FLAG_GUID: u8 = 4;

/// A user key: an object id, or a lower-cased UPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key<'a> {
    Guid([u8; 16]),
    Text(&'a str),
}

impl<'a> Key<'a> {
    fn of(text: &'a str) -> Key<'a> {
        crate::decode::parse_guid(text).map_or(Key::Text(text), Key::Guid)
    }

    fn hash(&self, hasher: &hashbrown::DefaultHashBuilder) -> u64 {
        match self {
            Key::Guid(id) => hasher.hash_one(id),
            Key::Text(text) => hasher.hash_one(text.as_bytes()),
        }
    }
}

/// What the coverage stage takes from one classified sign-in.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub key: &'a str,
    pub upn: Option<&'a str>,
    pub display_name: Option<&'a str>,
    pub user_type: Option<&'a str>,
    pub time: DateTime<Utc>,
    /// Counted in the window (§6): successful, interactive (or
    /// non-interactive when configured), or legacy.
    pub counted: bool,
    /// A counted sign-in with MFA, and with one factor.
    pub mfa: bool,
    pub single_factor: bool,
    pub legacy: bool,
    pub registration_required: bool,
    /// An mfa_satisfied sign-in, counted or not: it ends registration_pending
    /// and a user with one in the window is not never_mfa (§6 "at all").
    pub any_mfa: bool,
    pub app: Option<&'a str>,
    pub client_app: &'a str,
    /// A successful risky sign-in (for `/api/v1/users?risky=true`).
    pub risky: bool,
    /// The record's identity ([`crate::decode::Identity`]): a counted sign-in
    /// delivered twice — by Azure Monitor, or by Kafka and then a backfill —
    /// counts once. 0: no identity.
    pub identity: u64,
    /// What this copy says that a re-delivery may complete (risk, MFA
    /// evidence, the method): a later copy of a counted sign-in that says
    /// MFA moves its count from single factor to MFA (docs/labels.md §5).
    pub carried: Carried,
    /// A counted MFA sign-in's strength, when its own method is known
    /// (`Strength::is_known`): phishing-resistant or a weaker method.
    pub strength: Option<Strength>,
}

impl<'a> Observation<'a> {
    /// The observation of a user sign-in, or `None` for workloads, records
    /// that name no user, and failed sign-ins that name no account (§2: a
    /// name no account holds is not a user).
    pub fn of(record: &'a SignIn<'a>, verdict: &'a Verdict<'a>, policy: &Policy) -> Option<Observation<'a>> {
        if verdict.subject != Subject::User || Observation::unknown_account(record, verdict) {
            return None;
        }
        let key = verdict.subject_key.as_deref()?;
        let f = &record.fields;
        let legacy = verdict.labels.contains(Labels::LEGACY_AUTH);
        let counted = verdict.success && (verdict.interactive || policy.count_non_interactive || legacy);
        Some(Observation {
            key,
            upn: f.user_principal_name.as_deref(),
            display_name: f.user_display_name.as_deref(),
            user_type: f.user_type.as_deref(),
            time: record.time,
            counted,
            mfa: counted && verdict.labels.contains(Labels::MFA_SATISFIED),
            single_factor: counted && verdict.labels.contains(Labels::SINGLE_FACTOR),
            legacy: counted && legacy,
            registration_required: verdict.mfa_failure == Some(MfaFailure::RegistrationRequired),
            any_mfa: verdict.labels.contains(Labels::MFA_SATISFIED),
            app: f.app_display_name.as_deref(),
            client_app: verdict.client_app,
            risky: verdict.success && verdict.labels.contains(Labels::RISKY),
            identity: if counted { record.identity().0 } else { 0 },
            carried: Carried::of(verdict),
            strength: verdict.strength.filter(|s| counted && s.is_known()),
        })
    }
}

impl Observation<'_> {
    /// A user sign-in that identifies no account: failed, without an object
    /// id (50034 "user account does not exist", a name that did not resolve).
    /// Counted, never a user: a password spray over made-up names must not
    /// grow the state (SIGNIN-SEMANTICS §2).
    pub fn unknown_account(record: &SignIn<'_>, verdict: &Verdict<'_>) -> bool {
        verdict.subject == Subject::User && !verdict.success && !has_object_id(record.fields.user_id.as_deref())
    }
}

/// A `userId` that names an account: not empty, not the all-zero GUID.
fn has_object_id(user_id: Option<&str>) -> bool {
    let id = user_id.map(str::trim).unwrap_or("");
    !id.is_empty() && crate::decode::parse_guid(id) != Some([0; 16])
}

/// What [`Coverage::observe`] did with a sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Counted in its day of the window.
    Counted,
    /// Folded in, not counted (not a counted sign-in, or outside the u32 time range).
    Seen,
    /// A counted sign-in whose day had already left the window: "last seen"
    /// times updated, counts not.
    Late,
    /// A new user past `max_users`: not tracked.
    Refused,
    /// A counted sign-in seen before (same record identity) that adds
    /// nothing: not counted again.
    Duplicate,
    /// A counted sign-in seen before that carries more than the copies read
    /// so far (a re-delivery Entra enriched): not counted again, but what is
    /// counted follows the merge — single factor becomes MFA.
    Enriched { before: Carried, after: Carried },
}

/// Adds a registration_required failure at `t` to the entry's failure days.
fn note_registration_failure(e: &mut Entry, t: u32) {
    let day = t / DAY as u32;
    if e.registration_last == 0 {
        (e.registration_days, e.registration_last) = (1, t);
        return;
    }
    let last_day = e.registration_last / DAY as u32;
    if day > last_day {
        let shift = day - last_day;
        e.registration_days = if shift >= 32 { 0 } else { e.registration_days << shift };
        e.registration_days |= 1;
    } else if last_day - day < 32 {
        e.registration_days |= 1 << (last_day - day);
    }
    e.registration_last = e.registration_last.max(t);
}

/// Interns small repeated strings (app names, client names) as numbers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Interner {
    names: Vec<String>,
    #[serde(skip)]
    index: std::collections::HashMap<String, u16>,
}

impl Interner {
    /// Id of `name`; 0 is "none" (also once 65,535 names are known).
    fn id(&mut self, name: Option<&str>) -> u16 {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return 0;
        };
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        if self.names.len() >= u16::MAX as usize {
            return 0;
        }
        self.names.push(name.to_owned());
        let id = self.names.len() as u16;
        self.index.insert(name.to_owned(), id);
        id
    }

    fn name(&self, id: u16) -> Option<&str> {
        (id as usize).checked_sub(1).and_then(|i| self.names.get(i)).map(String::as_str)
    }

    fn rebuild_index(&mut self) {
        self.index = self.names.iter().enumerate().map(|(i, n)| (n.clone(), i as u16 + 1)).collect();
    }
}

/// The coverage of every user seen.
#[derive(Debug, Clone)]
pub struct Coverage {
    policy: Policy,
    entries: Vec<Entry>,
    /// `window_days` buckets per entry, entry-major.
    days: Vec<DayCounts>,
    arena: String,
    apps: Interner,
    clients: Interner,
    index: HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    /// Newest event time seen (Unix seconds): the end of the window.
    watermark: i64,
    /// Records that fell before the window when they arrived.
    late_records: u64,
    /// The identities of the counted sign-ins of each day in the window
    /// (slot `day % window_days`, with the day it holds), each with what its
    /// copies carried, merged ([`Carried::bits`]): 16 bytes per counted
    /// sign-in, dropped as its day leaves the window.
    seen: Vec<(i64, hashbrown::HashMap<u64, u8>)>,
}

/// The coverage state and the accounts it is judged against, each behind
/// its own lock: the pipeline writes the state, the HTTP server and the sinks
/// read it, SIGHUP replaces the accounts.
///
/// Lock discipline: the accounts' lock is only ever held long enough to
/// clone the `Arc` inside, and never while waiting for the state's; so the
/// pipeline, the HTTP handlers and SIGHUP cannot wait on each other in a
/// circle. Nothing holds the state's lock while writing to a socket.
pub struct Handle {
    coverage: RwLock<Coverage>,
    accounts: RwLock<Arc<Accounts>>,
}

impl Handle {
    pub fn new(coverage: Coverage, accounts: Accounts) -> Arc<Handle> {
        Arc::new(Handle { coverage: RwLock::new(coverage), accounts: RwLock::new(Arc::new(accounts)) })
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Coverage> {
        crate::locks::read(&self.coverage)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Coverage> {
        crate::locks::write(&self.coverage)
    }

    /// The privileged and excluded accounts as they are now.
    pub fn accounts(&self) -> Arc<Accounts> {
        crate::locks::read(&self.accounts).clone()
    }

    /// Replaces the privileged and excluded accounts (SIGHUP); the
    /// directory's role holders stay.
    pub fn set_accounts(&self, accounts: Accounts) {
        let mut slot = crate::locks::write(&self.accounts);
        let holders = slot.holders.clone();
        *slot = Arc::new(Accounts { holders, ..accounts });
    }

    /// Replaces the directory's role holders (object ids and lower-case UPNs).
    pub fn set_role_holders<'a>(&self, holders: impl IntoIterator<Item = &'a str>) {
        let mut slot = crate::locks::write(&self.accounts);
        *slot = Arc::new(slot.with_holders(holders));
    }

    /// The summary of the state as it is now, and how many users it tracks.
    pub fn summary(&self) -> (Summary, usize) {
        let accounts = self.accounts();
        let coverage = self.read();
        (coverage.summary(&accounts), coverage.len())
    }

    /// Drops UPNs and display names no user holds any more from the names
    /// arena, when they are most of it (before a snapshot).
    pub fn compact_names(&self) {
        if self.read().names_wasteful() {
            self.write().compact_names();
        }
    }
}

impl Coverage {
    pub fn new(policy: Policy) -> Coverage {
        Coverage {
            policy,
            entries: Vec::new(),
            days: Vec::new(),
            arena: String::new(),
            apps: Interner::default(),
            clients: Interner::default(),
            index: HashTable::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            watermark: 0,
            late_records: 0,
            seen: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        (self.watermark > 0).then(|| DateTime::from_timestamp(self.watermark, 0)).flatten()
    }

    /// Records folded into the state after their day had left the window.
    pub fn late_records(&self) -> u64 {
        self.late_records
    }

    /// Folds one user sign-in into the state. The result does not depend on
    /// the order records arrive in (see the module comment), so a replay after
    /// a crash, interleaving partitions differently, ends in the same state.
    /// (Whether a time is plausible at all is decided before: decode
    /// dead-letters records dated after the message that carried them.)
    pub fn observe(&mut self, o: &Observation<'_>) -> Observed {
        let t = o.time.timestamp();
        if t <= 0 || t > u32::MAX as i64 {
            return Observed::Seen;
        }
        let t32 = t as u32;
        let Some(i) = self.entry(o.key) else {
            return Observed::Refused;
        };
        self.watermark = self.watermark.max(t);
        self.update_names(i, t32, o);
        if o.single_factor || o.legacy {
            let app = self.apps.id(o.app);
            let client = self.clients.id(Some(o.client_app));
            let (apps, clients) = (&self.apps, &self.clients);
            // Same second: keep the greater (app, client) so that order never matters.
            let newer = |t_old: u32, app_old: u16, client_old: u16| {
                t32 > t_old
                    || t32 == t_old
                        && (apps.name(app), clients.name(client)) > (apps.name(app_old), clients.name(client_old))
            };
            let e = &mut self.entries[i];
            if o.single_factor && newer(e.last_single_factor, e.single_factor_app, e.single_factor_client) {
                (e.last_single_factor, e.single_factor_app, e.single_factor_client) = (t32, app, client);
            }
            if o.legacy && newer(e.last_legacy, e.legacy_app, e.legacy_client) {
                (e.last_legacy, e.legacy_app, e.legacy_client) = (t32, app, client);
            }
        }
        let e = &mut self.entries[i];
        e.last_seen = e.last_seen.max(t32);
        if o.any_mfa {
            e.last_mfa = e.last_mfa.max(t32);
        }
        if o.risky {
            e.last_risky = e.last_risky.max(t32);
        }
        match o.strength {
            Some(Strength::PhishingResistant) => e.last_phishing_resistant = e.last_phishing_resistant.max(t32),
            Some(_) => e.last_weaker_mfa = e.last_weaker_mfa.max(t32),
            None => {}
        }
        if o.registration_required {
            note_registration_failure(e, t32);
        }
        if !o.counted {
            return Observed::Seen;
        }
        let w = self.policy.window_days as i64;
        let day = t.div_euclid(DAY);
        if day < self.watermark.div_euclid(DAY) - (w - 1) {
            self.late_records += 1;
            return Observed::Late;
        }
        let copy = if o.identity != 0 { copy_of(&mut self.seen, w, day, o.identity, o.carried) } else { CopyOf::First };
        // The entry's ring of day buckets.
        let head = e.head_day as i64;
        let ring = &mut self.days[i * w as usize..(i + 1) * w as usize];
        if let CopyOf::Again(before) = copy {
            let after = before.merge(o.carried);
            if after == before {
                return Observed::Duplicate;
            }
            // The copy counted before said single factor, this one has MFA
            // evidence: the day's count moves, the sign-in still counts once.
            // (Its day is in the window, so the ring holds it.)
            if o.mfa && !before.mfa && day <= head && day > head - w {
                let bucket = &mut ring[day.rem_euclid(w) as usize];
                if bucket.single_factor > 0 {
                    bucket.single_factor -= 1;
                    bucket.mfa = bucket.mfa.saturating_add(1);
                }
            }
            return Observed::Enriched { before, after };
        }
        if day > head {
            for d in (head + 1).max(day - w + 1)..=day {
                ring[d.rem_euclid(w) as usize] = DayCounts::default();
            }
            e.head_day = day as u16;
        } else if day <= head - w {
            self.late_records += 1;
            return Observed::Late;
        }
        let bucket = &mut ring[day.rem_euclid(w) as usize];
        bucket.mfa = bucket.mfa.saturating_add(o.mfa as u16);
        bucket.single_factor = bucket.single_factor.saturating_add(o.single_factor as u16);
        bucket.legacy = bucket.legacy.saturating_add(o.legacy as u16);
        Observed::Counted
    }

    /// Since when a user has been registration_pending, if they are: from the
    /// first registration_required failure after the last mfa_satisfied
    /// sign-in, to the UTC day (00:00) it happened on.
    fn registration_pending_since(e: &Entry) -> Option<u32> {
        if e.registration_last <= e.last_mfa {
            return None;
        }
        let last_day = e.registration_last / DAY as u32;
        let mfa_day = (e.last_mfa != 0).then_some(e.last_mfa / DAY as u32);
        // The oldest failure day after the MFA's day; else the MFA's own day,
        // the latest failure being after it that day.
        let oldest_after = (0..32u32).rev().find(|&back| {
            e.registration_days & (1 << back) != 0 && mfa_day.is_none_or(|m| last_day.checked_sub(back) > Some(m))
        });
        let day = oldest_after.map_or(last_day, |back| last_day - back);
        Some(day * DAY as u32)
    }

    /// The entry for `key`, created when new; `None` for a new key past `max_users`.
    fn entry(&mut self, key: &str) -> Option<usize> {
        let key = Key::of(key);
        let hash = key.hash(&self.hasher);
        let (entries, arena) = (&self.entries, &self.arena);
        let found = self.index.find(hash, |&i| key_matches(&entries[i as usize], arena, &key));
        if let Some(&i) = found {
            return Some(i as usize);
        }
        if self.entries.len() >= self.policy.max_users {
            return None;
        }
        let i = self.entries.len();
        let mut entry = Entry::default();
        match key {
            Key::Guid(id) => {
                entry.id = id;
                entry.flags |= FLAG_GUID;
            }
            Key::Text(text) => {
                let at = push_str(&mut self.arena, text);
                entry.id[..4].copy_from_slice(&at.offset.to_le_bytes());
                entry.id[4..8].copy_from_slice(&at.len.to_le_bytes());
            }
        }
        entry.flags |= UserType::Unknown.bits();
        self.entries.push(entry);
        self.days.extend(std::iter::repeat_n(DayCounts::default(), self.policy.window_days as usize));
        let (entries, arena, hasher) = (&self.entries, &self.arena, &self.hasher);
        self.index.insert_unique(hash, i as u32, |&j| entry_key(&entries[j as usize], arena).hash(hasher));
        Some(i)
    }

    /// The UPN and display name come from the newest record that has a UPN,
    /// the user type from the newest that states one; a tie in time goes to
    /// the greater value. So the result never depends on arrival order. The
    /// arena grows only when the names change.
    fn update_names(&mut self, i: usize, t: u32, o: &Observation<'_>) {
        let user_type = UserType::parse(o.user_type);
        let e = &mut self.entries[i];
        if user_type != UserType::Unknown && (t > e.type_time || t == e.type_time && user_type.bits() < (e.flags & 3)) {
            e.flags = (e.flags & !3) | user_type.bits();
            e.type_time = t;
        }
        let Some(upn) = o.upn.map(str::trim).filter(|u| !u.is_empty()) else { return };
        let upn = &upn[..floor_char_boundary(upn, u16::MAX as usize)];
        let name = o.display_name.unwrap_or("");
        let name = &name[..floor_char_boundary(name, u16::MAX as usize)];
        let names = self.entries[i].names;
        let current = (upn_of(&self.arena, names), display(&self.arena, names));
        let names_time = self.entries[i].names_time;
        let newer = t > names_time || t == names_time && (upn, name) > current;
        if !newer {
            return;
        }
        self.entries[i].names_time = t;
        if current != (upn, name) {
            let offset = self.arena.len() as u32;
            self.arena.push_str(upn);
            self.arena.push_str(name);
            self.entries[i].names = Names { offset, upn_len: upn.len() as u16, display_len: name.len() as u16 };
        }
    }

    /// Bytes of the names arena that some user still refers to.
    fn arena_live_bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|e| {
                let key =
                    if e.flags & FLAG_GUID == 0 { u32::from_le_bytes(e.id[4..8].try_into().expect("4")) } else { 0 };
                key as usize + e.names.upn_len as usize + e.names.display_len as usize
            })
            .sum()
    }

    /// Whether most of the names arena is names no user holds any more (every
    /// rename adds to it; alternating names would grow it without bound).
    pub fn names_wasteful(&self) -> bool {
        self.arena.len() > 64 * 1024 && self.arena.len() > 2 * self.arena_live_bytes()
    }

    /// Rewrites the names arena with only the names users hold.
    pub fn compact_names(&mut self) {
        let mut arena = String::with_capacity(self.arena_live_bytes());
        for e in &mut self.entries {
            if e.flags & FLAG_GUID == 0 {
                let word = |at: usize| u32::from_le_bytes(e.id[at..at + 4].try_into().expect("4 bytes"));
                let key = get_str(&self.arena, StrRef { offset: word(0), len: word(4) });
                let at = push_str(&mut arena, key);
                e.id[..4].copy_from_slice(&at.offset.to_le_bytes());
                e.id[4..8].copy_from_slice(&at.len.to_le_bytes());
            }
            let offset = arena.len() as u32;
            arena.push_str(upn_of(&self.arena, e.names));
            arena.push_str(display(&self.arena, e.names));
            e.names.offset = offset;
        }
        self.arena = arena;
    }

    /// The window: the `window_days` UTC days ending with the watermark's day.
    fn window(&self) -> (i64, i64) {
        let end_day = self.watermark.div_euclid(DAY);
        (end_day - (self.policy.window_days as i64 - 1), end_day)
    }

    fn counts(&self, i: usize, (start_day, end_day): (i64, i64)) -> Counts {
        let w = self.policy.window_days as i64;
        let head = self.entries[i].head_day as i64;
        let ring = &self.days[i * w as usize..(i + 1) * w as usize];
        let mut c = Counts::default();
        for day in start_day.max(head - w + 1)..=end_day.min(head) {
            let b = ring[day.rem_euclid(w) as usize];
            c.counted += b.mfa as u32 + b.single_factor as u32;
            c.mfa += b.mfa as u32;
            c.single_factor += b.single_factor as u32;
            c.legacy += b.legacy as u32;
        }
        c
    }

    fn view_state(&self, i: usize, window: (i64, i64), accounts: &Accounts) -> (State, bool, Counts) {
        let e = &self.entries[i];
        let counts = self.counts(i, window);
        if accounts.excluded.contains(entry_key(e, &self.arena), upn_of(&self.arena, e.names)) {
            return (State::Excluded, false, counts);
        }
        let state = if counts.single_factor + counts.legacy > 0 {
            State::Uncovered
        } else if counts.counted > 0 {
            State::Covered
        } else {
            State::Inactive
        };
        // never_mfa: no mfa_satisfied sign-in at all in the window, counted or
        // not; `last_mfa` is the newest of them.
        let never_mfa = state == State::Uncovered && (e.last_mfa as i64).div_euclid(DAY) < window.0;
        (state, never_mfa, counts)
    }

    /// Covered by phishing-resistant MFA (docs/labels.md §6): covered, and of
    /// the window's counted sign-ins whose method is known, at least one and
    /// all phishing-resistant.
    fn phishing_resistant(&self, i: usize, state: State, window: (i64, i64)) -> bool {
        let e = &self.entries[i];
        let in_window = |t: u32| t != 0 && (t as i64).div_euclid(DAY) >= window.0;
        state == State::Covered && in_window(e.last_phishing_resistant) && !in_window(e.last_weaker_mfa)
    }

    /// The coverage summary.
    pub fn summary(&self, accounts: &Accounts) -> Summary {
        let now = self.watermark;
        let window = self.window();
        let mut cells: std::collections::BTreeMap<(UserType, bool), Breakdown> = Default::default();
        let mut s =
            Summary { window_days: self.policy.window_days, users: self.entries.len() as u64, ..Summary::default() };
        for state in State::ALL {
            s.states.insert(state.as_str(), 0);
        }
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            let (state, never_mfa, _) = self.view_state(i, window, accounts);
            let privileged = accounts.privileged_key(entry_key(e, &self.arena), upn_of(&self.arena, e.names));
            if self.phishing_resistant(i, state, window) {
                s.phishing_resistant += 1;
                s.privileged_phishing_resistant += privileged as u64;
            }
            if privileged && state == State::Covered {
                s.privileged_covered += 1;
            }
            let user_type = UserType::from_bits(e.flags);
            *s.states.entry(state.as_str()).or_default() += 1;
            let cell = cells.entry((user_type, privileged)).or_insert_with(|| Breakdown {
                user_type,
                privileged,
                covered: 0,
                uncovered: 0,
                never_mfa: 0,
                inactive: 0,
                excluded: 0,
                coverage_ratio: None,
            });
            match state {
                State::Covered => cell.covered += 1,
                State::Uncovered => cell.uncovered += 1,
                State::Inactive => cell.inactive += 1,
                State::Excluded => cell.excluded += 1,
            }
            if never_mfa {
                s.never_mfa += 1;
                cell.never_mfa += 1;
            }
            if let Some(since) = Coverage::registration_pending_since(e) {
                s.registration_pending += 1;
                if now - since as i64 > self.policy.registration_grace_secs {
                    s.registration_overdue += 1;
                }
            }
        }
        s.coverage_ratio = ratio(s.states["covered"], s.states["uncovered"]);
        s.breakdown = cells
            .into_values()
            .map(|mut b| {
                b.coverage_ratio = ratio(b.covered, b.uncovered);
                b
            })
            .collect();
        if self.watermark > 0 {
            s.window_start = Some(rfc3339(window.0 * DAY));
            s.window_end = Some(rfc3339((window.1 + 1) * DAY - 1));
            s.as_of = Some(rfc3339(self.watermark));
        }
        s.privileged_accounts = accounts.privileged_count();
        if !accounts.any_privileged() {
            s.warnings.push(NO_PRIVILEGED.into());
        }
        s.late_records = self.late_records;
        s
    }

    fn view(&self, i: usize, accounts: &Accounts) -> UserView {
        let e = &self.entries[i];
        let window = self.window();
        let (state, never_mfa, counts) = self.view_state(i, window, accounts);
        let key = entry_key(e, &self.arena);
        let upn = upn_of(&self.arena, e.names);
        let pending_since = Coverage::registration_pending_since(e);
        let last = |t: u32, app: u16, client: u16| {
            (t != 0).then(|| LastSignIn {
                time: rfc3339(t as i64),
                app: self.apps.name(app).map(str::to_owned),
                client: self.clients.name(client).map(str::to_owned),
            })
        };
        UserView {
            privileged: accounts.privileged_key(key, upn),
            key: key.to_string(),
            // A user seen only in records without a UPN is shown by key.
            upn: if upn.is_empty() { key.to_string() } else { upn.to_owned() },
            display_name: Some(display(&self.arena, e.names)).filter(|s| !s.is_empty()).map(str::to_owned),
            user_type: UserType::from_bits(e.flags),
            state,
            never_mfa,
            registration_pending: pending_since.is_some(),
            registration_overdue: pending_since
                .is_some_and(|t| self.watermark - t as i64 > self.policy.registration_grace_secs),
            registration_pending_since: pending_since.map(|t| rfc3339(t as i64)),
            counts,
            last_seen: (e.last_seen != 0).then(|| rfc3339(e.last_seen as i64)),
            last_mfa: (e.last_mfa != 0).then(|| rfc3339(e.last_mfa as i64)),
            last_single_factor: last(e.last_single_factor, e.single_factor_app, e.single_factor_client),
            last_legacy: last(e.last_legacy, e.legacy_app, e.legacy_client),
            last_risky: (e.last_risky != 0).then(|| rfc3339(e.last_risky as i64)),
            phishing_resistant: self.phishing_resistant(i, state, window),
            last_phishing_resistant: (e.last_phishing_resistant != 0)
                .then(|| rfc3339(e.last_phishing_resistant as i64)),
            last_weaker_mfa: (e.last_weaker_mfa != 0).then(|| rfc3339(e.last_weaker_mfa as i64)),
        }
    }

    /// Users registration_overdue now (pending longer than the grace), with
    /// the start of their pending period.
    pub fn registration_overdue_users(&self) -> Vec<OverdueUser> {
        let mut out = Vec::new();
        for e in &self.entries {
            let Some(since) = Coverage::registration_pending_since(e) else { continue };
            if self.watermark - since as i64 <= self.policy.registration_grace_secs {
                continue;
            }
            let display = display(&self.arena, e.names);
            out.push(OverdueUser {
                key: entry_key(e, &self.arena).to_string(),
                upn: upn_of(&self.arena, e.names).to_owned(),
                display_name: (!display.is_empty()).then(|| display.to_owned()),
                user_type: UserType::from_bits(e.flags),
                pending_since: since,
            });
        }
        out
    }

    /// Users matching `query`, most recent single-factor or legacy sign-in
    /// first (or, filtering on one kind of sign-in, the most recent of that kind).
    pub fn users(&self, accounts: &Accounts, query: &UserQuery) -> (usize, Vec<UserView>) {
        // Filter and sort on the compact entries; build views for one page only.
        let window = self.window();
        let in_window = |t: u32| t != 0 && (t as i64).div_euclid(DAY) >= window.0;
        let mut matched: Vec<(u32, &str, usize)> = (0..self.entries.len())
            .filter_map(|i| {
                let e = &self.entries[i];
                let (state, never_mfa, counts) = self.view_state(i, window, accounts);
                let upn = upn_of(&self.arena, e.names);
                let keep = query.state.is_none_or(|s| state == s)
                    && query.never_mfa.is_none_or(|n| never_mfa == n)
                    && query.user_type.is_none_or(|t| UserType::from_bits(e.flags) == t)
                    && query
                        .registration_pending
                        .is_none_or(|p| Coverage::registration_pending_since(e).is_some() == p)
                    && query.privileged.is_none_or(|p| accounts.privileged_key(entry_key(e, &self.arena), upn) == p)
                    && query.legacy.is_none_or(|l| (counts.legacy > 0) == l)
                    && query.single_factor.is_none_or(|f| (counts.single_factor > 0) == f)
                    && query.risky.is_none_or(|r| in_window(e.last_risky) == r)
                    && query.phishing_resistant.is_none_or(|p| self.phishing_resistant(i, state, window) == p);
                let recent = match (query.risky, query.legacy, query.single_factor) {
                    (Some(true), _, _) => e.last_risky,
                    (_, Some(true), _) => e.last_legacy,
                    (_, _, Some(true)) => e.last_single_factor,
                    _ => e.last_single_factor.max(e.last_legacy),
                };
                keep.then_some((recent, upn, i))
            })
            .collect();
        let total = matched.len();
        matched.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)).then_with(|| a.2.cmp(&b.2)));
        let limit = if query.limit == 0 { 100 } else { query.limit };
        let page = matched.into_iter().skip(query.offset).take(limit).map(|(_, _, i)| self.view(i, accounts)).collect();
        (total, page)
    }

    /// One user by object id or UPN (case-insensitive).
    pub fn user(&self, accounts: &Accounts, id_or_upn: &str) -> Option<UserView> {
        let wanted = id_or_upn.trim().to_lowercase();
        let key = Key::of(&wanted);
        let hash = key.hash(&self.hasher);
        let by_key =
            self.index.find(hash, |&i| key_matches(&self.entries[i as usize], &self.arena, &key)).map(|&i| i as usize);
        let i = by_key.or_else(|| {
            (0..self.entries.len()).find(|&i| upn_of(&self.arena, self.entries[i].names).to_lowercase() == wanted)
        })?;
        Some(self.view(i, accounts))
    }

    /// Bytes held by the identities of the window's counted sign-ins.
    pub fn identity_bytes(&self) -> usize {
        self.seen.iter().map(|(_, set)| set.capacity() * (std::mem::size_of::<(u64, u8)>() + 1)).sum()
    }

    /// Bytes held, for the memory benchmark: (structures, strings).
    pub fn heap_bytes(&self) -> (usize, usize) {
        let structures = self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.days.capacity() * std::mem::size_of::<DayCounts>()
            + self.index.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.identity_bytes();
        let strings = self.arena.capacity()
            + self.apps.names.iter().map(|n| n.capacity() * 2).sum::<usize>()
            + self.clients.names.iter().map(|n| n.capacity() * 2).sum::<usize>();
        (structures, strings)
    }

    // ---- snapshots ----

    /// The state as it is serialised, borrowed (no copy of a large state).
    pub fn snapshot_ref(&self) -> CoverageSnapshotRef<'_> {
        CoverageSnapshotRef {
            window_days: self.policy.window_days,
            entries: &self.entries,
            days: &self.days,
            arena: &self.arena,
            apps: &self.apps,
            clients: &self.clients,
            watermark: self.watermark,
            late_records: self.late_records,
            seen: SeenRef(&self.seen),
        }
    }

    pub fn to_snapshot(&self) -> CoverageSnapshot {
        CoverageSnapshot {
            window_days: self.policy.window_days,
            entries: self.entries.clone(),
            days: self.days.clone(),
            arena: self.arena.clone(),
            apps: self.apps.clone(),
            clients: self.clients.clone(),
            watermark: self.watermark,
            late_records: self.late_records,
            seen: self.seen.iter().map(|(day, set)| (*day, set.iter().map(|(&id, &c)| (id, c)).collect())).collect(),
        }
    }

    /// Rebuilds the state from a snapshot. A different window length cannot
    /// reuse the day buckets; the caller must start afresh then.
    pub fn from_snapshot(policy: Policy, s: CoverageSnapshot) -> Result<Coverage, String> {
        if s.window_days != policy.window_days {
            return Err(format!(
                "the snapshot has a {}-day window, the configuration {} days",
                s.window_days, policy.window_days
            ));
        }
        if s.days.len() != s.entries.len() * s.window_days as usize {
            return Err("the snapshot's day buckets do not match its users".into());
        }
        let mut c = Coverage {
            policy,
            entries: s.entries,
            days: s.days,
            arena: s.arena,
            apps: s.apps,
            clients: s.clients,
            index: HashTable::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            watermark: s.watermark,
            late_records: s.late_records,
            seen: s.seen.into_iter().map(|(day, ids)| (day, ids.into_iter().collect())).collect(),
        };
        if !c.seen.is_empty() && c.seen.len() != c.policy.window_days as usize {
            return Err("the snapshot's counted sign-ins do not match its window".into());
        }
        c.apps.rebuild_index();
        c.clients.rebuild_index();
        c.index.reserve(c.entries.len(), |_| 0);
        for i in 0..c.entries.len() {
            let hash = entry_key(&c.entries[i], &c.arena).hash(&c.hasher);
            let (entries, arena, hasher) = (&c.entries, &c.arena, &c.hasher);
            c.index.insert_unique(hash, i as u32, |&j| entry_key(&entries[j as usize], arena).hash(hasher));
        }
        Ok(c)
    }
}

fn ratio(covered: u64, uncovered: u64) -> Option<f64> {
    let total = covered + uncovered;
    (total > 0).then(|| covered as f64 / total as f64)
}

fn rfc3339(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn push_str(arena: &mut String, s: &str) -> StrRef {
    let r = StrRef { offset: arena.len() as u32, len: s.len() as u32 };
    arena.push_str(s);
    r
}

fn get_str(arena: &str, r: StrRef) -> &str {
    arena.get(r.offset as usize..(r.offset as usize + r.len as usize)).unwrap_or("")
}

fn upn_of(arena: &str, n: Names) -> &str {
    get_str(arena, StrRef { offset: n.offset, len: n.upn_len as u32 })
}

fn display(arena: &str, n: Names) -> &str {
    get_str(arena, StrRef { offset: n.offset + n.upn_len as u32, len: n.display_len as u32 })
}

/// The largest index `<= max` that is a char boundary of `s`.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    (0..=max.min(s.len())).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

fn entry_key<'a>(e: &Entry, arena: &'a str) -> Key<'a> {
    if e.flags & FLAG_GUID != 0 {
        Key::Guid(e.id)
    } else {
        let word = |at: usize| u32::from_le_bytes(e.id[at..at + 4].try_into().expect("4 bytes"));
        Key::Text(get_str(arena, StrRef { offset: word(0), len: word(4) }))
    }
}

fn key_matches(e: &Entry, arena: &str, key: &Key<'_>) -> bool {
    entry_key(e, arena) == *key
}

impl std::fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Key::Guid(id) => write!(f, "{}", format_guid(id)),
            Key::Text(t) => f.write_str(t),
        }
    }
}

/// `text` in lower case, copied only when it has upper-case letters (the
/// per-sign-in account lookups are on the hot path).
fn lower(text: &str) -> std::borrow::Cow<'_, str> {
    if text.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
        std::borrow::Cow::Owned(text.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

pub fn format_guid(id: &[u8; 16]) -> String {
    let h: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

mod accounts;
mod snapshot;
mod views;

pub use accounts::{Accounts, NO_PRIVILEGED};
#[cfg(test)]
use snapshot::EntryV3;
use snapshot::SeenRef;
pub use snapshot::{CoverageSnapshot, CoverageSnapshotRef, CoverageSnapshotV3, CoverageSnapshotV6, CoverageSnapshotV7};
pub use views::*;

#[cfg(test)]
mod tests;

/// A counted sign-in's copy: the first read, or again (with what the copies
/// before it carried).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CopyOf {
    First,
    Again(Carried),
}

/// Whether a counted sign-in of `day` with this identity is new, and what
/// its copies carried before; remembers it with `carried` merged in. `seen`
/// holds one map per day of the window, reused as days leave it.
fn copy_of(
    seen: &mut Vec<(i64, hashbrown::HashMap<u64, u8>)>,
    window_days: i64,
    day: i64,
    identity: u64,
    carried: Carried,
) -> CopyOf {
    let w = window_days as usize;
    if seen.len() != w {
        *seen = (0..w).map(|_| (i64::MIN, hashbrown::HashMap::new())).collect();
    }
    let (held, set) = &mut seen[day.rem_euclid(window_days) as usize];
    if *held != day {
        if *held > day {
            return CopyOf::First; // older than the day the slot holds: cannot be judged, counted as the window allows
        }
        *held = day;
        set.clear();
    }
    match set.entry(identity) {
        hashbrown::hash_map::Entry::Vacant(slot) => {
            slot.insert(carried.bits());
            CopyOf::First
        }
        hashbrown::hash_map::Entry::Occupied(mut slot) => {
            let before = Carried::from_bits(*slot.get());
            slot.insert(before.merge(carried).bits());
            CopyOf::Again(before)
        }
    }
}
