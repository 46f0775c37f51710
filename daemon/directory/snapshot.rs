//! snapshot: the directory state as the checkpoint keeps it.

use serde::{Deserialize, Serialize};

use super::{DirUser, Directory, Posture, PrivilegedRoles, Reported, RiskNow, UserKey};

/// The directory state in `state.snapshot` (which roles count is configuration, not state).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectorySnapshot {
    users: Vec<(UserKey, DirUser)>,
    newest: Option<i64>,
    /// Format 6 on.
    posture: Posture,
}

/// [`DirectorySnapshot`] borrowed from the live state, for writing (the same bytes).
#[derive(Debug, Serialize)]
pub struct DirectorySnapshotRef<'a> {
    users: Vec<(&'a UserKey, &'a DirUser)>,
    newest: Option<i64>,
    posture: &'a Posture,
}

/// Format 5 (the first with the directory): one risk record per user, no
/// posture; as first written without per-user MFA, then (the release that
/// decoded protections, same format number) with it: [`DirectorySnapshotV5b`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DirectorySnapshotV5 {
    users: Vec<(UserKey, DirUserV5)>,
    newest: Option<i64>,
}

/// Format 5 as the release that decoded protections wrote it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DirectorySnapshotV5b {
    users: Vec<(UserKey, DirUserV5b)>,
    newest: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DirUserV5b {
    user: DirUserV5,
    per_user_mfa: Option<(i64, String)>,
}

impl DirectorySnapshotV5b {
    pub fn upgrade(self) -> DirectorySnapshot {
        let (per_user, users): (Vec<_>, Vec<_>) =
            self.users.into_iter().map(|(k, u)| ((k.clone(), u.per_user_mfa), (k, u.user))).unzip();
        let mut s = DirectorySnapshotV5 { users, newest: self.newest }.upgrade();
        for ((_, user), (_, m)) in s.users.iter_mut().zip(per_user) {
            user.per_user_mfa = m;
        }
        s
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DirUserV5 {
    upn: Option<String>,
    display_name: Option<String>,
    named_at: i64,
    roles: std::collections::BTreeMap<(String, crate::decode::directory::Holding), super::Assignment>,
    methods: std::collections::BTreeMap<String, super::MethodState>,
    reported: Option<Reported>,
    all_required: Option<i64>,
    strong_auth: Option<(i64, Vec<String>)>,
    methods_changed: Option<i64>,
    risk: Option<RiskNow>,
    detection: Option<RiskNow>,
}

impl DirectorySnapshotV5 {
    pub fn upgrade(self) -> DirectorySnapshot {
        let users = self
            .users
            .into_iter()
            .map(|(key, u)| {
                let user = DirUser {
                    upn: u.upn,
                    display_name: u.display_name,
                    named_at: u.named_at,
                    roles: u.roles,
                    methods: u.methods,
                    reported: u.reported,
                    all_required: u.all_required,
                    strong_auth: u.strong_auth,
                    methods_changed: u.methods_changed,
                    risks: u.risk.into_iter().collect(),
                    detection: u.detection,
                    per_user_mfa: None,
                };
                (key, user)
            })
            .collect();
        DirectorySnapshot { users, newest: self.newest, posture: Posture::default() }
    }
}

impl Directory {
    pub fn snapshot_ref(&self) -> DirectorySnapshotRef<'_> {
        let mut users: Vec<(&UserKey, &DirUser)> = self.users.iter().collect();
        users.sort_by(|a, b| a.0.cmp(b.0));
        DirectorySnapshotRef { users, newest: self.newest, posture: &self.posture }
    }

    pub fn to_snapshot(&self) -> DirectorySnapshot {
        let mut users: Vec<(UserKey, DirUser)> = self.users.iter().map(|(k, u)| (k.clone(), u.clone())).collect();
        users.sort_by(|a, b| a.0.cmp(&b.0));
        DirectorySnapshot { users, newest: self.newest, posture: self.posture.clone() }
    }

    pub fn from_snapshot(roles: PrivilegedRoles, s: DirectorySnapshot) -> Directory {
        let mut d = Directory::new(roles);
        d.newest = s.newest;
        d.posture = s.posture;
        for (key, user) in s.users {
            if let (UserKey::Id(_), Some(upn)) = (&key, &user.upn) {
                d.by_upn.insert(upn.to_lowercase(), key.clone());
            }
            d.any_risk |= !user.risks.is_empty();
            d.users.insert(key, user);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::directory::Holding;

    /// A format-5 state (written by the release before per-user MFA and
    /// the posture) reads back with its users, roles and risk.
    #[test]
    fn a_format_5_directory_reads_into_format_6() {
        let mut user = DirUserV5 { upn: Some("ann@contoso.com".into()), named_at: 5, ..Default::default() };
        user.roles.insert(("62e90394-69f5-4237-9190-012177145e10".into(), Holding::Active), Default::default());
        user.risk = Some(RiskNow { level: Some("high".into()), state: Some("atRisk".into()), detail: None, at: 9 });
        let old = DirectorySnapshotV5 { users: vec![(UserKey::Name("ann@contoso.com".into()), user)], newest: Some(9) };
        let bytes = postcard::to_allocvec(&old).unwrap();
        let back: DirectorySnapshotV5 = postcard::from_bytes(&bytes).unwrap();
        let d = Directory::from_snapshot(PrivilegedRoles::default(), back.upgrade());
        assert_eq!(d.len(), 1);
        assert!(d.any_risk());
        let risk = d.risk_at("ann@contoso.com", "", chrono::DateTime::from_timestamp_millis(10).unwrap()).unwrap();
        assert!(risk.high_open());
        assert_eq!(risk.since, Some(9));
        assert!(d.posture().is_empty());
        // The same with per-user MFA, as the next release wrote format 5.
        let mut b = DirectorySnapshotV5b { users: Vec::new(), newest: Some(9) };
        for (k, u) in old.users {
            b.users.push((k, DirUserV5b { user: u, per_user_mfa: Some((7, "disabled".into())) }));
        }
        let bytes = postcard::to_allocvec(&b).unwrap();
        let (back, rest) = postcard::take_from_bytes::<DirectorySnapshotV5b>(&bytes).unwrap();
        assert!(rest.is_empty());
        let as_first = postcard::take_from_bytes::<DirectorySnapshotV5>(&bytes);
        assert!(as_first.is_err() || !as_first.unwrap().1.is_empty(), "the two layouts are told apart");
        let d = Directory::from_snapshot(PrivilegedRoles::default(), back.upgrade());
        assert_eq!(d.user("ann@contoso.com", "", chrono::Utc::now()).unwrap().per_user_mfa.unwrap().state, "disabled");
        // And a format-6 state reads back equal.
        let now = d.to_snapshot();
        let bytes = postcard::to_allocvec(&d.snapshot_ref()).unwrap();
        assert_eq!(postcard::from_bytes::<DirectorySnapshot>(&bytes).unwrap(), now);
    }
}
