//! roles: which directory roles make a user privileged.
//!
//! The default is the roles Microsoft's "Require multifactor authentication
//! for admins" Conditional Access template names (the fourteen below), with
//! Intune, Hybrid Identity and Authentication Policy Administrator; a role is
//! named by its template id (the same in every tenant), or by its display
//! name for a custom role. `directory.privileged_roles` replaces the list.

use crate::decode::directory::Holding;

/// Microsoft's built-in roles counted privileged by default: (template id, name).
pub const DEFAULT_PRIVILEGED: [(&str, &str); 17] = [
    ("62e90394-69f5-4237-9190-012177145e10", "Global Administrator"),
    ("e8611ab8-c189-46e8-94e1-60213ab1f814", "Privileged Role Administrator"),
    ("7be44c8a-adaf-4e2a-84d6-ab2649e08a13", "Privileged Authentication Administrator"),
    ("194ae4cb-b126-40b2-bd5b-6091b380977d", "Security Administrator"),
    ("b1be1c3e-b65d-4f19-8427-f6fa0d97feb9", "Conditional Access Administrator"),
    ("29232cdf-9323-42fd-ade2-1d097af3e4de", "Exchange Administrator"),
    ("f28a1f50-f6e7-4571-818b-6a12f2af6b6c", "SharePoint Administrator"),
    ("fe930be7-5e62-47db-91af-98c3a49a38b1", "User Administrator"),
    ("966707d0-3269-4727-9be2-8c3a10f19b9d", "Password Administrator"),
    ("729827e3-9c14-49f7-bb1b-9608f156bbb8", "Helpdesk Administrator"),
    ("c4e39bd9-1100-46d3-8c65-fb160da0071f", "Authentication Administrator"),
    ("9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3", "Application Administrator"),
    ("158c047a-c907-4556-b7ef-446551a6b5f7", "Cloud Application Administrator"),
    ("b0f54661-2d74-4c50-afa3-1ec803f12efe", "Billing Administrator"),
    ("3a2c62db-5318-420d-8d74-23affee5d9d5", "Intune Administrator"),
    ("8ac3fc64-6eca-42ea-9e69-59f4c7b60eb2", "Hybrid Identity Administrator"),
    ("0526716b-113d-4c15-b2c8-68e3c22b9f80", "Authentication Policy Administrator"),
];

/// Other built-in roles, named in the API and the report when a user holds one.
const OTHER_KNOWN: [(&str, &str); 3] = [
    ("f2ef992c-3afb-46b9-b7cf-a126ee74c451", "Global Reader"),
    ("5f2222b1-57c3-48ba-8ad5-d4759f1fde6f", "Security Operator"),
    ("5d6b6bb7-de71-4623-b4af-96380a352509", "Security Reader"),
];

/// The display name of a built-in role, by template id.
pub fn name_of(template_id: &str) -> Option<&'static str> {
    DEFAULT_PRIVILEGED
        .iter()
        .chain(OTHER_KNOWN.iter())
        .find(|(id, _)| id.eq_ignore_ascii_case(template_id))
        .map(|(_, name)| *name)
}

/// The template id of a built-in role, by display name.
pub fn id_of(name: &str) -> Option<&'static str> {
    let name = name.trim();
    DEFAULT_PRIVILEGED.iter().chain(OTHER_KNOWN.iter()).find(|(_, n)| n.eq_ignore_ascii_case(name)).map(|(id, _)| *id)
}

/// The roles that count, by template id and by name (lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivilegedRoles {
    ids: Vec<String>,
    names: Vec<String>,
    /// Whether a PIM-eligible assignment counts (it can be activated at any time).
    pub eligible: bool,
}

impl Default for PrivilegedRoles {
    fn default() -> PrivilegedRoles {
        PrivilegedRoles::new(DEFAULT_PRIVILEGED.iter().map(|(id, _)| *id), true)
    }
}

impl PrivilegedRoles {
    /// The roles `directory.privileged_roles` names, else the default.
    pub fn from_config(c: &crate::config::DirectoryConfig) -> PrivilegedRoles {
        if c.privileged_roles.is_empty() {
            PrivilegedRoles::new(DEFAULT_PRIVILEGED.iter().map(|(id, _)| *id), c.eligible_is_privileged)
        } else {
            PrivilegedRoles::new(c.privileged_roles.iter().map(String::as_str), c.eligible_is_privileged)
        }
    }

    /// From template ids or display names (a built-in role's name counts as its id).
    pub fn new<'a>(roles: impl IntoIterator<Item = &'a str>, eligible: bool) -> PrivilegedRoles {
        let (mut ids, mut names) = (Vec::new(), Vec::new());
        for role in roles.into_iter().map(str::trim).filter(|r| !r.is_empty()) {
            if crate::decode::is_guid(role) {
                ids.push(role.to_lowercase());
            } else if let Some(id) = id_of(role) {
                ids.push(id.to_owned());
                names.push(role.to_lowercase());
            } else {
                names.push(role.to_lowercase());
            }
        }
        ids.sort();
        ids.dedup();
        names.sort();
        names.dedup();
        PrivilegedRoles { ids, names, eligible }
    }

    /// Whether a role (kept under `key`: template id or lower-case name, with
    /// the name a record gave) held this way makes its holder privileged.
    pub fn counts(&self, key: &str, name: Option<&str>, holding: Holding) -> bool {
        if holding == Holding::Eligible && !self.eligible {
            return false;
        }
        self.ids.iter().any(|id| id == key)
            || self.names.iter().any(|n| n == key)
            || name.is_some_and(|name| {
                self.names.iter().any(|n| n.eq_ignore_ascii_case(name.trim()))
                    || id_of(name).is_some_and(|id| self.ids.iter().any(|i| i == id))
            })
    }

    pub fn len(&self) -> usize {
        self.ids.len() + self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
