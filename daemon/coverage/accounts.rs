//! accounts: who is privileged and who is excluded, by object id or UPN:
//! the configuration and `coverage.privileged_file` name them (the list),
//! and the directory names who holds a privileged role now (the role
//! holders). The list is replaced on SIGHUP, the holders whenever a role
//! changes (both through [`super::Handle`]); read by coverage, alerts and
//! the report. Privileged is the union of the two. Plain data: no I/O, no stage.

use super::*;

/// Who is privileged or excluded; changes on SIGHUP, so it is passed in.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    pub(super) privileged: AccountSet,
    pub(super) excluded: AccountSet,
    /// Who holds a privileged directory role now (object ids and lower-case UPNs).
    pub(super) holders: AccountSet,
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
        Accounts {
            privileged: AccountSet::new(privileged),
            excluded: AccountSet::new(excluded),
            holders: AccountSet::default(),
        }
    }

    /// These accounts with `holders` as the directory's role holders.
    pub fn with_holders<'a>(&self, holders: impl IntoIterator<Item = &'a str>) -> Accounts {
        Accounts { holders: AccountSet::new(holders), ..self.clone() }
    }

    /// Whether the user with this key (object id or lower-cased UPN) and UPN
    /// is privileged now: listed, or holding a privileged role.
    pub fn privileged(&self, key: &str, upn: &str) -> bool {
        self.privileged.contains_text(key, upn) || self.holders.contains_text(key, upn)
    }

    /// Whether the user is on the configured list (the directory answers as of a time).
    pub fn listed(&self, key: &str, upn: &str) -> bool {
        self.privileged.contains_text(key, upn)
    }

    pub(super) fn privileged_key(&self, key: Key<'_>, upn: &str) -> bool {
        self.privileged.contains(key, upn) || self.holders.contains(key, upn)
    }

    pub fn excluded(&self, key: &str, upn: &str) -> bool {
        self.excluded.contains_text(key, upn)
    }

    /// Accounts on the configured list.
    pub fn privileged_count(&self) -> usize {
        self.privileged.len()
    }

    /// Whether anyone counts as privileged (listed or holding a role).
    pub fn any_privileged(&self) -> bool {
        self.privileged.len() + self.holders.len() > 0
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
pub const NO_PRIVILEGED: &str = "no privileged account is known: none configured (coverage.privileged, coverage.privileged_file) \
    and no role holder read from the audit log or a role-assignment seed; privileged users outside MFA coverage cannot \
    be told apart, and their alerts never fire";
