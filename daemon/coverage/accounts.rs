//! accounts: who is privileged and who is excluded, by object id or UPN,
//! as the configuration and `coverage.privileged_file` name them. Replaced
//! whole on SIGHUP (through [`super::Handle`]); read by coverage, alerts
//! and the report. Plain data: no I/O, no stage.

use super::*;

/// Who is privileged or excluded; changes on SIGHUP, so it is passed in.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    pub(super) privileged: AccountSet,
    pub(super) excluded: AccountSet,
}

/// Accounts named by object id or UPN (lower-cased).
#[derive(Debug, Clone, Default)]
pub(super) struct AccountSet {
    pub(super) ids: HashSet<[u8; 16]>,
    pub(super) names: HashSet<String>,
}

impl AccountSet {
    pub(super) fn new<'a>(items: impl IntoIterator<Item = &'a str>) -> AccountSet {
        let mut set = AccountSet::default();
        for item in items.into_iter().map(str::trim).filter(|s| !s.is_empty()) {
            match crate::decode::parse_guid(item) {
                Some(id) => set.ids.insert(id),
                None => set.names.insert(item.to_lowercase()),
            };
        }
        set
    }

    pub(super) fn len(&self) -> usize {
        self.ids.len() + self.names.len()
    }

    /// Like `contains`, for a key as text in any case (called per sign-in:
    /// an empty set answers without allocating).
    pub(super) fn contains_text(&self, key: &str, upn: &str) -> bool {
        // (An object id parses in any letter case; only a text key is folded.)
        self.len() != 0
            && match crate::decode::parse_guid(key) {
                Some(id) => self.contains(Key::Guid(id), upn),
                None => self.contains(Key::Text(&lower(key)), upn),
            }
    }

    pub(super) fn contains(&self, key: Key<'_>, upn: &str) -> bool {
        if self.len() == 0 {
            return false;
        }
        let by_key = match key {
            Key::Guid(id) => self.ids.contains(&id),
            Key::Text(text) => self.names.contains(text),
        };
        by_key || (!self.names.is_empty() && self.names.contains(lower(upn).as_ref()))
    }
}

impl Accounts {
    pub fn new<'a>(
        privileged: impl IntoIterator<Item = &'a str>,
        excluded: impl IntoIterator<Item = &'a str>,
    ) -> Accounts {
        Accounts { privileged: AccountSet::new(privileged), excluded: AccountSet::new(excluded) }
    }

    /// Whether the user with this key (object id or lower-cased UPN) and UPN is privileged.
    pub fn privileged(&self, key: &str, upn: &str) -> bool {
        self.privileged.contains_text(key, upn)
    }

    pub fn excluded(&self, key: &str, upn: &str) -> bool {
        self.excluded.contains_text(key, upn)
    }

    pub fn privileged_count(&self) -> usize {
        self.privileged.len()
    }

    /// The privileged accounts as listed (object ids and lower-cased UPNs).
    pub fn privileged_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.privileged.ids.iter().map(format_guid).collect();
        names.extend(self.privileged.names.iter().cloned());
        names.sort();
        names
    }
}

/// Said when no privileged account is configured.
pub const NO_PRIVILEGED: &str = "no privileged account is configured (coverage.privileged, coverage.privileged_file): \
    privileged users outside MFA coverage cannot be told apart, and their alerts never fire";
