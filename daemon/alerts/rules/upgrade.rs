//! The alerts' state as the first format kept it (under the sink's bare
//! name), read once and converted: receivers were then bits by their place
//! in the configuration, taken here to be the receivers configured now (the
//! only reading the first format had); the spray's entries kept their first
//! sign-in; there were no rate-limit windows.

use std::collections::HashMap;

use serde::Deserialize;

use super::{Attempts, FatigueEvent, Made, State};
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
            };
            Pending { alert, targets: targets.collect(), ends_at: None }
        })
        .filter(|p| !p.targets.is_empty())
        .collect();
    Ok((state, outbox))
}
