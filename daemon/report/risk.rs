//! risk: the report's "risky users" — where Identity Protection left each
//! user at the range's end (the directory rebuilt as of then): the ones still
//! open (at risk, confirmed compromised), high first, with since when and
//! their coverage over the range; and the ones whose risk ended during the
//! range (remediated, dismissed), with how.

use super::directory::CoverageOf;
use super::*;
use crate::directory::{Directory, RiskAt, risk_level_class, risk_state_class};

/// One user Identity Protection flagged.
#[derive(Debug, Clone, Serialize)]
pub struct RiskyUser {
    pub user_key: String,
    pub upn: String,
    /// high, medium, low, hidden, none, other.
    pub level: &'static str,
    /// at_risk, confirmed_compromised, remediated, dismissed.
    pub state: &'static str,
    /// Why it stands or how it ended (`userPerformedSecuredPasswordChange`, `adminDismissedAllRiskForUser`).
    pub detail: String,
    /// The start of the open episode (RFC 3339), for an open state.
    pub since: Option<String>,
    /// The newest record's time.
    pub updated: String,
    /// Their coverage over the range (inactive: no counted sign-in).
    pub coverage: &'static str,
}

/// How many users' risk ended one way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ending {
    pub state: &'static str,
    pub detail: String,
    pub users: u64,
}

/// The section.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RiskyUsers {
    /// High risk, neither remediated nor dismissed, at the range's end.
    pub high_open: u64,
    /// Open at the range's end, any level.
    pub open: u64,
    /// Remediated or dismissed by a record within the range (and not open again by its end).
    pub remediated: u64,
    pub dismissed: u64,
    /// By (state, detail).
    pub endings: Vec<Ending>,
    /// Open at the end: high first, then the longest open.
    pub users: Vec<RiskyUser>,
    /// Ended within the range, newest first.
    pub ended: Vec<RiskyUser>,
}

/// Where a level comes in the list: high first.
fn level_rank(level: &str) -> u8 {
    match level {
        "high" => 0,
        "medium" => 1,
        "low" => 2,
        "hidden" => 3,
        _ => 4,
    }
}

pub(super) fn risky_users(directory: &Directory, w: Window, each: &[UserCoverage]) -> RiskyUsers {
    let (start, end) = w.millis();
    let coverage = CoverageOf::new(each);
    let mut out = RiskyUsers::default();
    let mut since_ms: BTreeMap<String, i64> = BTreeMap::new();
    for (key, upn, risk) in directory.risky_users() {
        let open = crate::directory::risk_open(risk.state.as_deref());
        let ended = matches!(risk_state_class(risk.state.as_deref()), "remediated" | "dismissed");
        let ended_now = ended && (start..end).contains(&risk.at);
        if !open && !ended_now {
            continue;
        }
        let user = row(&key, &upn, &risk, coverage.state(&key, &upn));
        if open {
            out.open += 1;
            out.high_open += u64::from(risk.high_open());
            since_ms.insert(key, risk.since.unwrap_or(risk.at));
            out.users.push(user);
        } else {
            if user.state == "remediated" {
                out.remediated += 1;
            } else {
                out.dismissed += 1;
            }
            out.ended.push(user);
        }
    }
    let since = |u: &RiskyUser| since_ms.get(&u.user_key).copied().unwrap_or(i64::MAX);
    out.users.sort_by(|a, b| {
        (level_rank(a.level), since(a), &a.upn, &a.user_key).cmp(&(level_rank(b.level), since(b), &b.upn, &b.user_key))
    });
    out.ended.sort_by(|a, b| (&b.updated, &a.upn).cmp(&(&a.updated, &b.upn)));
    let mut endings: BTreeMap<(&'static str, String), u64> = BTreeMap::new();
    for u in &out.ended {
        *endings.entry((u.state, u.detail.clone())).or_default() += 1;
    }
    out.endings = endings.into_iter().map(|((state, detail), users)| Ending { state, detail, users }).collect();
    out
}

fn row(key: &str, upn: &str, risk: &RiskAt, coverage: &'static str) -> RiskyUser {
    RiskyUser {
        user_key: key.to_owned(),
        upn: upn.to_owned(),
        level: risk_level_class(risk.level.as_deref()),
        state: risk_state_class(risk.state.as_deref()),
        detail: risk.detail.clone().unwrap_or_default(),
        since: risk.since.map(ms_text),
        updated: ms_text(risk.at),
        coverage,
    }
}
