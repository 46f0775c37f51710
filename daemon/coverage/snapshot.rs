//! snapshot: coverage as the checkpoint writes it (`CoverageSnapshot`,
//! borrowed for writing as `CoverageSnapshotRef`) and the upgrades from the
//! third, the sixth and the seventh formats. Only data and its conversion: the checkpoint
//! does the I/O.

use super::*;

/// The serialisable form of [`Coverage`]. `S` is what is kept of each
/// counted identity: since format 7, the identity with what its copies
/// carried ([`crate::classify::Carried::bits`]); formats 4 to 6 kept the
/// identity bare. `E` is a user's entry: since format 8 with the times of
/// their newest phishing-resistant and weaker MFA sign-ins; formats 4 to 7
/// without ([`EntryV7`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoverageSnapshot<S = (u64, u8), E = Entry> {
    pub(super) window_days: u16,
    pub(super) entries: Vec<E>,
    pub(super) days: Vec<DayCounts>,
    pub(super) arena: String,
    pub(super) apps: Interner,
    pub(super) clients: Interner,
    pub(super) watermark: i64,
    pub(super) late_records: u64,
    /// The identities of the window's counted sign-ins, per day slot.
    pub(super) seen: Vec<(i64, Vec<S>)>,
}

/// Snapshot format 7: entries without the MFA strength times.
pub type CoverageSnapshotV7 = CoverageSnapshot<(u64, u8), EntryV7>;

/// Snapshot formats 4 to 6 also kept the counted identities without what
/// their copies carried.
pub type CoverageSnapshotV6 = CoverageSnapshot<u64, EntryV7>;

impl<S, E> CoverageSnapshot<S, E> {
    /// The same state with each counted identity's entry made by `f` and
    /// each user's entry by `g`.
    fn map<T, F>(self, f: impl Fn(S) -> T, g: impl Fn(E) -> F) -> CoverageSnapshot<T, F> {
        CoverageSnapshot {
            window_days: self.window_days,
            entries: self.entries.into_iter().map(g).collect(),
            days: self.days,
            arena: self.arena,
            apps: self.apps,
            clients: self.clients,
            watermark: self.watermark,
            late_records: self.late_records,
            seen: self.seen.into_iter().map(|(day, ids)| (day, ids.into_iter().map(&f).collect())).collect(),
        }
    }
}

impl CoverageSnapshotV7 {
    /// `s` as format 7 wrote it (for the tests that it still reads).
    #[cfg(test)]
    pub fn of(s: &CoverageSnapshot) -> CoverageSnapshotV7 {
        s.clone().map(|seen| seen, EntryV7::of)
    }

    /// The current form: nobody's MFA strength is known yet (their next
    /// sign-ins tell it).
    pub fn upgrade(self) -> CoverageSnapshot {
        self.map(|seen| seen, Entry::from)
    }
}

impl CoverageSnapshotV6 {
    /// `s` as formats 4 to 6 wrote it (for the tests that those still read).
    #[cfg(test)]
    pub fn of(s: &CoverageSnapshot) -> CoverageSnapshotV6 {
        s.clone().map(|(id, _)| id, EntryV7::of)
    }

    /// The current form. What the copies of an identity counted before
    /// carried is not known: it is taken as [`Carried::KNOWN_BEFORE`], so a
    /// copy read again stays a plain duplicate, as it was in those releases.
    pub fn upgrade(self) -> CoverageSnapshot {
        let known = Carried::KNOWN_BEFORE.bits();
        self.map(|id| (id, known), Entry::from)
    }
}

/// [`Entry`] as formats 4 to 7 had it: without `last_phishing_resistant`
/// and `last_weaker_mfa`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryV7 {
    id: [u8; 16],
    names: Names,
    last_seen: u32,
    last_mfa: u32,
    last_single_factor: u32,
    last_legacy: u32,
    last_risky: u32,
    single_factor_app: u16,
    legacy_app: u16,
    single_factor_client: u16,
    legacy_client: u16,
    registration_days: u32,
    registration_last: u32,
    names_time: u32,
    type_time: u32,
    head_day: u16,
    flags: u8,
}

impl From<EntryV7> for Entry {
    fn from(e: EntryV7) -> Entry {
        Entry {
            id: e.id,
            names: e.names,
            last_seen: e.last_seen,
            last_mfa: e.last_mfa,
            last_single_factor: e.last_single_factor,
            last_legacy: e.last_legacy,
            last_risky: e.last_risky,
            last_phishing_resistant: 0,
            last_weaker_mfa: 0,
            single_factor_app: e.single_factor_app,
            legacy_app: e.legacy_app,
            single_factor_client: e.single_factor_client,
            legacy_client: e.legacy_client,
            registration_days: e.registration_days,
            registration_last: e.registration_last,
            names_time: e.names_time,
            type_time: e.type_time,
            head_day: e.head_day,
            flags: e.flags,
        }
    }
}

impl EntryV7 {
    #[cfg(test)]
    fn of(e: Entry) -> EntryV7 {
        EntryV7 {
            id: e.id,
            names: e.names,
            last_seen: e.last_seen,
            last_mfa: e.last_mfa,
            last_single_factor: e.last_single_factor,
            last_legacy: e.last_legacy,
            last_risky: e.last_risky,
            single_factor_app: e.single_factor_app,
            legacy_app: e.legacy_app,
            single_factor_client: e.single_factor_client,
            legacy_client: e.legacy_client,
            registration_days: e.registration_days,
            registration_last: e.registration_last,
            names_time: e.names_time,
            type_time: e.type_time,
            head_day: e.head_day,
            flags: e.flags,
        }
    }
}

/// [`CoverageSnapshot`] borrowed; serialises to the same bytes.
#[derive(Debug, Serialize)]
pub struct CoverageSnapshotRef<'a> {
    pub(super) window_days: u16,
    pub(super) entries: &'a [Entry],
    pub(super) days: &'a [DayCounts],
    pub(super) arena: &'a str,
    pub(super) apps: &'a Interner,
    pub(super) clients: &'a Interner,
    pub(super) watermark: i64,
    pub(super) late_records: u64,
    pub(super) seen: SeenRef<'a>,
}

/// The day slots of counted identities, written as `Vec<(i64, Vec<(u64, u8)>)>`.
#[derive(Debug)]
pub(super) struct SeenRef<'a>(pub(super) &'a [(i64, hashbrown::HashMap<u64, u8>)]);

impl Serialize for SeenRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Ids<'a>(&'a hashbrown::HashMap<u64, u8>);
        impl Serialize for Ids<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter())
            }
        }
        s.collect_seq(self.0.iter().map(|(day, ids)| (day, Ids(ids))))
    }
}

/// Snapshot formats 1 to 3 kept coverage like this: entries without
/// `last_risky`, no counted identities, a count of records set aside for
/// being ahead of the clock (decode dead-letters those now).
#[derive(Debug, Clone, Deserialize)]
pub struct CoverageSnapshotV3 {
    pub(super) window_days: u16,
    pub(super) entries: Vec<EntryV3>,
    pub(super) days: Vec<DayCounts>,
    pub(super) arena: String,
    pub(super) apps: Interner,
    pub(super) clients: Interner,
    pub(super) watermark: i64,
    pub(super) late_records: u64,
    pub(super) _future_records: u64,
}

/// [`Entry`] as formats 1 to 3 had it.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct EntryV3 {
    pub(super) id: [u8; 16],
    pub(super) names: Names,
    pub(super) last_seen: u32,
    pub(super) last_mfa: u32,
    pub(super) last_single_factor: u32,
    pub(super) last_legacy: u32,
    pub(super) single_factor_app: u16,
    pub(super) legacy_app: u16,
    pub(super) single_factor_client: u16,
    pub(super) legacy_client: u16,
    pub(super) registration_days: u32,
    pub(super) registration_last: u32,
    pub(super) names_time: u32,
    pub(super) type_time: u32,
    pub(super) head_day: u16,
    pub(super) flags: u8,
}

impl CoverageSnapshotV3 {
    /// The current form; `registration_days` is converted when the
    /// snapshot is older than format 3 (it held the first failure's time).
    pub fn upgrade(self, before_format_3: bool) -> CoverageSnapshot {
        let mut entries: Vec<Entry> = self
            .entries
            .into_iter()
            .map(|e| Entry {
                id: e.id,
                names: e.names,
                last_seen: e.last_seen,
                last_mfa: e.last_mfa,
                last_single_factor: e.last_single_factor,
                last_legacy: e.last_legacy,
                last_risky: 0,
                last_phishing_resistant: 0,
                last_weaker_mfa: 0,
                single_factor_app: e.single_factor_app,
                legacy_app: e.legacy_app,
                single_factor_client: e.single_factor_client,
                legacy_client: e.legacy_client,
                registration_days: e.registration_days,
                registration_last: e.registration_last,
                names_time: e.names_time,
                type_time: e.type_time,
                head_day: e.head_day,
                flags: e.flags,
            })
            .collect();
        if before_format_3 {
            for e in &mut entries {
                let (since, last) = (e.registration_days, e.registration_last);
                (e.registration_days, e.registration_last) = (0, 0);
                for failure in [since, last].into_iter().filter(|&t| t != 0) {
                    note_registration_failure(e, failure);
                }
            }
        }
        CoverageSnapshot {
            window_days: self.window_days,
            entries,
            days: self.days,
            arena: self.arena,
            apps: self.apps,
            clients: self.clients,
            watermark: self.watermark,
            late_records: self.late_records,
            seen: Vec::new(),
        }
    }
}
