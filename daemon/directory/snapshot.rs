//! snapshot: the directory state as the checkpoint keeps it.

use serde::{Deserialize, Serialize};

use super::{DirUser, Directory, PrivilegedRoles, UserKey};

/// The directory state in `state.snapshot` (which roles count is configuration, not state).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectorySnapshot {
    users: Vec<(UserKey, DirUser)>,
    newest: Option<i64>,
}

/// [`DirectorySnapshot`] borrowed from the live state, for writing (the same bytes).
#[derive(Debug, Serialize)]
pub struct DirectorySnapshotRef<'a> {
    users: Vec<(&'a UserKey, &'a DirUser)>,
    newest: Option<i64>,
}

impl Directory {
    pub fn snapshot_ref(&self) -> DirectorySnapshotRef<'_> {
        let mut users: Vec<(&UserKey, &DirUser)> = self.users.iter().collect();
        users.sort_by(|a, b| a.0.cmp(b.0));
        DirectorySnapshotRef { users, newest: self.newest }
    }

    pub fn to_snapshot(&self) -> DirectorySnapshot {
        let mut users: Vec<(UserKey, DirUser)> = self.users.iter().map(|(k, u)| (k.clone(), u.clone())).collect();
        users.sort_by(|a, b| a.0.cmp(&b.0));
        DirectorySnapshot { users, newest: self.newest }
    }

    pub fn from_snapshot(roles: PrivilegedRoles, s: DirectorySnapshot) -> Directory {
        let mut d = Directory::new(roles);
        d.newest = s.newest;
        for (key, user) in s.users {
            if let (UserKey::Id(_), Some(upn)) = (&key, &user.upn) {
                d.by_upn.insert(upn.to_lowercase(), key.clone());
            }
            d.users.insert(key, user);
        }
        d
    }
}
