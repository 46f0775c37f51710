//! directory: the report's "admins and their MFA" and "registration"
//! sections — the directory state rebuilt from the history's directory
//! table as of the range's end (every record up to then, each once, applied
//! as the daemon applies them), joined with each user's coverage over the
//! range.

use super::*;
use crate::directory::{Directory, DirectoryView, PrivilegedRoles, Registration};

/// One privileged account.
#[derive(Debug, Clone, Serialize)]
pub struct Admin {
    pub user_key: String,
    pub upn: String,
    /// The privileged roles held at the range's end ("Global Administrator",
    /// "Security Administrator (eligible)"); empty when only their sign-ins
    /// were marked privileged (the configured list).
    pub roles: String,
    /// `roles` (a privileged role held at the range's end), or `list`
    /// (their sign-ins were marked privileged: the configured list, or a
    /// role held then and since taken away).
    pub source: &'static str,
    /// Their coverage over the range: covered, uncovered, inactive (no
    /// counted sign-in), excluded (break-glass).
    pub coverage: &'static str,
    /// registered, not_registered or unknown (no registration evidence).
    pub registration: &'static str,
    pub methods: String,
    pub phishing_resistant: bool,
}

/// The admins' section.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Admins {
    pub total: u64,
    pub from_roles: u64,
    /// Marked privileged on their sign-ins but holding no privileged role the directory knows.
    pub from_list_only: u64,
    pub covered: u64,
    pub uncovered: u64,
    pub inactive: u64,
    pub excluded: u64,
    pub not_registered: u64,
    pub registration_unknown: u64,
    pub phishing_resistant: u64,
    /// Most exposed first: uncovered, not registered, inactive, then by name.
    pub users: Vec<Admin>,
}

/// The registration section: of the users the sign-ins or the directory know.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RegistrationSummary {
    pub users: u64,
    /// The directory says an MFA method is registered.
    pub registered: u64,
    /// Registration details said "MFA capable" (registered and allowed by policy).
    pub capable: u64,
    pub not_registered: u64,
    /// No registration evidence: neither an event nor a registration report.
    pub unknown: u64,
    /// From the sign-ins: asked to register and not done MFA since, and past the grace.
    pub pending: u64,
    pub overdue: u64,
    /// Registered with a phishing-resistant method (FIDO2, Windows Hello, certificate).
    pub phishing_resistant: u64,
    /// phishing_resistant / registered.
    pub phishing_resistant_share: Option<f64>,
    /// Directory records the history holds up to the range's end.
    pub directory_records: u64,
    /// The newest of them (RFC 3339).
    pub directory_as_of: Option<String>,
}

/// The directory as of the range's end, rebuilt from the history's
/// directory table: every section that needs the directory reads this one.
pub(super) struct Rebuilt {
    pub(super) directory: Directory,
    /// Directory records the history holds up to the range's end.
    pub(super) records: u64,
    /// The range's last millisecond (Unix ms).
    pub(super) end: i64,
}

/// Every record up to the end of `w`, each once, applied as the daemon applies them.
pub(super) fn rebuild(
    dir: &Path,
    roles: &PrivilegedRoles,
    w: Window,
    damaged: &mut Vec<Damaged>,
) -> anyhow::Result<Rebuilt> {
    let end = w.millis().1 - 1;
    let (records, unreadable) = crate::history::directory::records_until(dir, end)?;
    damaged.extend(unreadable.into_iter().map(|error| Damaged { file: "directory table".into(), error }));
    let mut directory = Directory::new(roles.clone());
    for record in &records {
        directory.apply(record);
    }
    Ok(Rebuilt { directory, records: records.len() as u64, end })
}

/// Each user's coverage over the range found by key, else by UPN (any case),
/// as the directory's users are joined with the sign-ins' everywhere.
pub(super) struct CoverageOf<'a> {
    by_key: BTreeMap<&'a str, &'a UserCoverage>,
    by_upn: BTreeMap<String, &'a UserCoverage>,
}

impl<'a> CoverageOf<'a> {
    pub(super) fn new(each: &'a [UserCoverage]) -> CoverageOf<'a> {
        CoverageOf {
            by_key: each.iter().map(|u| (u.user_key.as_str(), u)).collect(),
            by_upn: each.iter().filter(|u| !u.upn.is_empty()).map(|u| (u.upn.to_lowercase(), u)).collect(),
        }
    }

    /// Their state over the range; `inactive` for a user with no counted sign-in in it.
    pub(super) fn state(&self, key: &str, upn: &str) -> &'static str {
        let found = self.by_key.get(key).or_else(|| self.by_upn.get(&upn.to_lowercase()));
        found.map_or(crate::coverage::State::Inactive.as_str(), |u| u.state.as_str())
    }
}

/// Both sections, from the directory as of the end of the range.
pub(super) fn sections(
    rebuilt: &Rebuilt,
    each: &[UserCoverage],
    pending: &[Pending],
) -> anyhow::Result<(Admins, RegistrationSummary)> {
    let directory = &rebuilt.directory;
    let at = chrono::DateTime::from_timestamp_millis(rebuilt.end).unwrap_or_default();
    let views: Vec<(String, String, DirectoryView)> = directory.views(at);
    let by_key: BTreeMap<&str, usize> = views.iter().enumerate().map(|(i, (k, _, _))| (k.as_str(), i)).collect();
    let by_upn: BTreeMap<String, usize> =
        views.iter().enumerate().filter(|(_, v)| !v.1.is_empty()).map(|(i, v)| (v.1.to_lowercase(), i)).collect();
    let view_of =
        |key: &str, upn: &str| by_key.get(key).or_else(|| by_upn.get(&upn.to_lowercase())).map(|&i| &views[i].2);

    // Admins: directory role holders at the end, and users whose sign-ins were marked privileged.
    let mut admins: BTreeMap<String, Admin> = BTreeMap::new();
    let mut joined = vec![false; views.len()];
    for u in each {
        let view = view_of(&u.user_key, &u.upn);
        if let Some(i) = by_key.get(u.user_key.as_str()).or_else(|| by_upn.get(&u.upn.to_lowercase())) {
            joined[*i] = true;
        }
        let held = view.map(privileged_roles).unwrap_or_default();
        if !u.privileged && held.is_empty() {
            continue;
        }
        admins.insert(u.user_key.clone(), admin(&u.user_key, &u.upn, &held, u.state.as_str(), view));
    }
    for (i, (key, upn, view)) in views.iter().enumerate() {
        let held = privileged_roles(view);
        if joined[i] || held.is_empty() {
            continue;
        }
        admins.insert(key.clone(), admin(key, upn, &held, crate::coverage::State::Inactive.as_str(), Some(view)));
    }
    let mut a = Admins { total: admins.len() as u64, ..Admins::default() };
    for admin in admins.values() {
        a.from_roles += u64::from(admin.source == "roles");
        a.from_list_only += u64::from(admin.source == "list");
        match admin.coverage {
            "covered" => a.covered += 1,
            "uncovered" => a.uncovered += 1,
            "excluded" => a.excluded += 1,
            _ => a.inactive += 1,
        }
        a.not_registered += u64::from(admin.registration == "not_registered");
        a.registration_unknown += u64::from(admin.registration == "unknown");
        a.phishing_resistant += u64::from(admin.phishing_resistant);
    }
    let exposure = |x: &Admin| match (x.coverage, x.registration) {
        ("uncovered", _) => 0,
        (_, "not_registered") => 1,
        ("inactive", _) => 2,
        _ => 3,
    };
    a.users = admins.into_values().collect();
    a.users.sort_by(|x, y| (exposure(x), &x.upn, &x.user_key).cmp(&(exposure(y), &y.upn, &y.user_key)));

    // Registration: every user the sign-ins know, and the directory's others.
    let mut r = RegistrationSummary {
        directory_records: rebuilt.records,
        directory_as_of: directory.newest().map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        ..RegistrationSummary::default()
    };
    let mut count = |view: Option<&DirectoryView>| {
        r.users += 1;
        match view.map_or(Registration::Unknown, |v| v.registration) {
            Registration::Registered => r.registered += 1,
            Registration::NotRegistered => r.not_registered += 1,
            Registration::Unknown => r.unknown += 1,
        }
        r.capable += u64::from(view.is_some_and(|v| v.mfa_capable == Some(true)));
        r.phishing_resistant += u64::from(view.is_some_and(|v| v.phishing_resistant));
    };
    for u in each {
        count(view_of(&u.user_key, &u.upn));
    }
    for (i, (_, _, view)) in views.iter().enumerate() {
        if !joined[i] {
            count(Some(view));
        }
    }
    r.pending = pending.len() as u64;
    r.overdue = pending.iter().filter(|p| p.overdue).count() as u64;
    r.phishing_resistant_share = (r.registered > 0).then(|| r.phishing_resistant as f64 / r.registered as f64);
    Ok((a, r))
}

/// The privileged roles a view holds, as the report names them.
fn privileged_roles(view: &DirectoryView) -> Vec<String> {
    view.roles
        .iter()
        .filter(|r| r.privileged)
        .map(|r| if r.holding == "active" { r.role.clone() } else { format!("{} ({})", r.role, r.holding) })
        .collect()
}

fn admin(key: &str, upn: &str, held: &[String], coverage: &'static str, view: Option<&DirectoryView>) -> Admin {
    Admin {
        user_key: key.to_owned(),
        upn: upn.to_owned(),
        roles: held.join("; "),
        source: if held.is_empty() { "list" } else { "roles" },
        coverage,
        registration: view.map_or(Registration::Unknown, |v| v.registration).as_str(),
        methods: view.map(|v| v.methods.join("; ")).unwrap_or_default(),
        phishing_resistant: view.is_some_and(|v| v.phishing_resistant),
    }
}
