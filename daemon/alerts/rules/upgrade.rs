//! The alerts' state in earlier formats, read once and converted.
//!
//! The first format (under the sink's bare name): receivers were then bits
//! by their place in the configuration, taken here to be the receivers
//! configured now (the only reading the first format had); the spray's
//! entries kept their first sign-in; there were no rate-limit windows.
//!
//! The third (`alerts/3`): alerts had no change facts (actor, target,
//! before and after).

use std::collections::HashMap;

use serde::Deserialize;

use super::{Attempts, FatigueEvent, Made, State, directory::Watches};
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

#[derive(Deserialize)]
struct SavedV3 {
    state: State,
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
    (old.state, outbox, old.watches)
}

#[derive(Deserialize)]
struct SavedV2 {
    state: State,
    outbox: Vec<PendingV3>,
}

/// The second format's state and outbox (its alerts are the third's).
pub(super) fn v2(bytes: &[u8]) -> Result<(State, Vec<Pending>, Watches), postcard::Error> {
    let old: SavedV2 = postcard::from_bytes(bytes)?;
    let v3 = SavedV3 { state: old.state, outbox: old.outbox, watches: Watches::default() };
    Ok(convert(v3))
}
