//! The alerts' state in earlier formats, read once and converted.
//!
//! The first format (under the sink's bare name): receivers were then bits
//! by their place in the configuration, taken here to be the receivers
//! configured now (the only reading the first format had); the spray's
//! entries kept their first sign-in; there were no rate-limit windows.
//!
//! The third (`alerts/3`): alerts had no change facts (actor, target,
//! before and after).
//!
//! The fourth (`alerts/4`): no legacy protocols seen per user
//! (legacy_auth_success's `first_seen` mode starts with none known).

use std::collections::HashMap;

use serde::Deserialize;

use super::{Attempts, FatigueEvent, Made, RateWindow, State, directory::Watches};
use crate::alerts::deliver::Pending;
use crate::alerts::{Alert, Rule, Severity, SignInFacts};

#[derive(Deserialize)]
struct SavedV1 {
    state: StateV1,
    outbox: Vec<PendingV1>,
}

#[derive(Deserialize)]
struct StateV1 {
    made: HashMap<String, Made>,
    fatigue: HashMap<String, Vec<FatigueEvent>>,
    overdue: HashMap<String, u32>,
    attempts: HashMap<(String, i64), AttemptsV1>,
    watermark: i64,
    pruned_to: i64,
}

#[derive(Deserialize)]
struct AttemptsV1 {
    count: u64,
    users: Vec<String>,
    first: Option<Box<SignInFacts>>,
}

#[derive(Deserialize)]
struct PendingV1 {
    alert: AlertV1,
    targets: u8,
}

#[derive(Deserialize)]
struct AlertV1 {
    id: String,
    rule: Rule,
    severity: Severity,
    summary: String,
    count: u64,
    mfa_failures: Option<u32>,
    users: Vec<String>,
    created_at: String,
    sign_in: SignInFacts,
}

/// The first format's state and outbox, with `receivers` the ids of the
/// receivers configured now, in their configured order.
pub(super) fn v1(bytes: &[u8], receivers: &[String]) -> Result<(State, Vec<Pending>), postcard::Error> {
    let old: SavedV1 = postcard::from_bytes(bytes)?;
    let s = old.state;
    let attempts: HashMap<(String, i64), Attempts> = s
        .attempts
        .into_iter()
        .enumerate()
        .map(|(i, (key, a))| (key, Attempts { count: a.count, users: a.users, made: i as u64, facts: a.first }))
        .collect();
    let state = State {
        made: s.made,
        fatigue: s.fatigue,
        overdue: s.overdue,
        attempts_made: attempts.len() as u64,
        attempts,
        watermark: s.watermark,
        pruned_to: s.pruned_to,
        rates: Default::default(),
        legacy_seen: Default::default(),
    };
    let outbox = old
        .outbox
        .into_iter()
        .map(|p| {
            let targets = receivers
                .iter()
                .enumerate()
                .filter(|(i, _)| *i < 8 && p.targets & (1 << i) != 0)
                .map(|(_, id)| id.clone());
            let a = p.alert;
            let alert = Alert {
                id: a.id,
                rule: a.rule,
                severity: a.severity,
                summary: a.summary,
                count: a.count,
                mfa_failures: a.mfa_failures,
                users: a.users,
                held_back: Vec::new(),
                created_at: a.created_at,
                sign_in: a.sign_in,
                change: None,
            };
            Pending { alert, targets: targets.collect(), ends_at: None }
        })
        .filter(|p| !p.targets.is_empty())
        .collect();
    Ok((state, outbox))
}

/// The state of the second to fourth formats.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct StateV4 {
    made: HashMap<String, Made>,
    fatigue: HashMap<String, Vec<FatigueEvent>>,
    overdue: HashMap<String, u32>,
    attempts: HashMap<(String, i64), Attempts>,
    attempts_made: u64,
    watermark: i64,
    pruned_to: i64,
    rates: std::collections::BTreeMap<Rule, RateWindow>,
}

impl From<StateV4> for State {
    fn from(s: StateV4) -> State {
        State {
            made: s.made,
            fatigue: s.fatigue,
            overdue: s.overdue,
            attempts: s.attempts,
            attempts_made: s.attempts_made,
            watermark: s.watermark,
            pruned_to: s.pruned_to,
            rates: s.rates,
            legacy_seen: Default::default(),
        }
    }
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct SavedV4 {
    state: StateV4,
    outbox: Vec<Pending>,
    watches: Watches,
}

/// The fourth format's state, outbox and watches.
pub(super) fn v4(bytes: &[u8]) -> Result<(State, Vec<Pending>, Watches), postcard::Error> {
    let old: SavedV4 = postcard::from_bytes(bytes)?;
    Ok((old.state.into(), old.outbox, old.watches))
}

#[derive(Deserialize)]
struct SavedV3 {
    state: StateV4,
    outbox: Vec<PendingV3>,
    watches: Watches,
}

#[derive(Deserialize)]
struct PendingV3 {
    alert: AlertV3,
    targets: Vec<String>,
    ends_at: Option<i64>,
}

#[derive(Deserialize)]
struct AlertV3 {
    id: String,
    rule: Rule,
    severity: Severity,
    summary: String,
    count: u64,
    mfa_failures: Option<u32>,
    users: Vec<String>,
    held_back: Vec<crate::alerts::HeldBack>,
    created_at: String,
    sign_in: SignInFacts,
}

/// The third format's state, outbox and watches.
pub(super) fn v3(bytes: &[u8]) -> Result<(State, Vec<Pending>, Watches), postcard::Error> {
    Ok(convert(postcard::from_bytes(bytes)?))
}

fn convert(old: SavedV3) -> (State, Vec<Pending>, Watches) {
    let outbox = old
        .outbox
        .into_iter()
        .map(|p| {
            let a = p.alert;
            let alert = Alert {
                id: a.id,
                rule: a.rule,
                severity: a.severity,
                summary: a.summary,
                count: a.count,
                mfa_failures: a.mfa_failures,
                users: a.users,
                held_back: a.held_back,
                created_at: a.created_at,
                sign_in: a.sign_in,
                change: None,
            };
            Pending { alert, targets: p.targets, ends_at: p.ends_at }
        })
        .collect();
    (old.state.into(), outbox, old.watches)
}

#[derive(Deserialize)]
struct SavedV2 {
    state: StateV4,
    outbox: Vec<PendingV3>,
}

/// The second format's state and outbox (its alerts are the third's).
pub(super) fn v2(bytes: &[u8]) -> Result<(State, Vec<Pending>, Watches), postcard::Error> {
    let old: SavedV2 = postcard::from_bytes(bytes)?;
    let v3 = SavedV3 { state: old.state, outbox: old.outbox, watches: Watches::default() };
    Ok(convert(v3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fourth_format_is_read_with_no_legacy_protocols_known() {
        let state = StateV4 {
            made: HashMap::from([("a1".to_owned(), Made { time: 5, count: 2 })]),
            fatigue: Default::default(),
            overdue: HashMap::from([("ann".to_owned(), 9)]),
            attempts: Default::default(),
            attempts_made: 3,
            watermark: 7,
            pruned_to: 6,
            rates: Default::default(),
        };
        let bytes = postcard::to_allocvec(&SavedV4 { state, outbox: Vec::new(), watches: Watches::default() }).unwrap();
        let (state, outbox, _) = v4(&bytes).unwrap();
        assert_eq!(state.made["a1"].count, 2);
        assert_eq!((state.overdue["ann"], state.attempts_made, state.watermark, state.pruned_to), (9, 3, 7, 6));
        assert!(state.legacy_seen.is_empty() && outbox.is_empty());
    }
}
