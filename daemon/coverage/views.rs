//! views: what readers get from coverage — one user ([`UserView`]), the
//! summary behind the gauges and `/api/v1/summary`, the overdue list and the
//! API's query. Plain serialisable data, built by [`super::Coverage`]; no
//! reader ever sees an entry.

use super::*;

/// One user as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub key: String,
    pub upn: String,
    pub display_name: Option<String>,
    pub user_type: UserType,
    pub state: State,
    pub never_mfa: bool,
    pub privileged: bool,
    pub registration_pending: bool,
    pub registration_overdue: bool,
    pub registration_pending_since: Option<String>,
    /// Counted sign-ins in the window.
    pub counts: Counts,
    pub last_seen: Option<String>,
    pub last_mfa: Option<String>,
    pub last_single_factor: Option<LastSignIn>,
    pub last_legacy: Option<LastSignIn>,
    pub last_risky: Option<String>,
    /// Covered by phishing-resistant MFA (docs/labels.md §6).
    pub phishing_resistant: bool,
    /// The newest counted sign-in with phishing-resistant MFA, and with a weaker MFA method named.
    pub last_phishing_resistant: Option<String>,
    pub last_weaker_mfa: Option<String>,
}

/// The newest sign-in of a kind: when, to what, from which client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSignIn {
    pub time: String,
    pub app: Option<String>,
    pub client: Option<String>,
}

/// Users per (state, user type, privileged), and the ratio. The window is the
/// `window_days` UTC days ending with the newest sign-in seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub window_days: u16,
    pub window_start: Option<String>,
    pub window_end: Option<String>,
    pub users: u64,
    pub states: std::collections::BTreeMap<&'static str, u64>,
    pub never_mfa: u64,
    pub registration_pending: u64,
    pub registration_overdue: u64,
    /// covered / (covered + uncovered); `None` when both are zero.
    pub coverage_ratio: Option<f64>,
    /// The newest sign-in this reflects (event time): numbers that stop
    /// moving while this stays put mean the feed has stopped.
    pub as_of: Option<String>,
    /// Accounts on the privileged list.
    pub privileged_accounts: usize,
    /// What makes these numbers less than they seem.
    pub warnings: Vec<String>,
    pub breakdown: Vec<Breakdown>,
    /// Counted sign-ins folded in after their day had left the window.
    pub late_records: u64,
    /// Covered users on phishing-resistant MFA (docs/labels.md §6), all
    /// and privileged; and the privileged users covered at all.
    pub phishing_resistant: u64,
    pub privileged_phishing_resistant: u64,
    pub privileged_covered: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    pub user_type: UserType,
    pub privileged: bool,
    pub covered: u64,
    pub uncovered: u64,
    pub never_mfa: u64,
    pub inactive: u64,
    pub excluded: u64,
    pub coverage_ratio: Option<f64>,
}

/// A user registration_overdue, as alerts name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverdueUser {
    pub key: String,
    pub upn: String,
    pub display_name: Option<String>,
    pub user_type: UserType,
    /// Unix seconds: the UTC day the pending period began.
    pub pending_since: u32,
}

/// Filter for [`Coverage::users`].
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    pub state: Option<State>,
    pub never_mfa: Option<bool>,
    pub privileged: Option<bool>,
    pub user_type: Option<UserType>,
    pub registration_pending: Option<bool>,
    /// Users with (or without) a counted legacy sign-in in the window.
    pub legacy: Option<bool>,
    /// Users with (or without) a counted single-factor sign-in in the window.
    pub single_factor: Option<bool>,
    /// Users with (or without) a successful risky sign-in in the window.
    pub risky: Option<bool>,
    /// Users covered (or not) by phishing-resistant MFA.
    pub phishing_resistant: Option<bool>,
    pub limit: usize,
    pub offset: usize,
}
