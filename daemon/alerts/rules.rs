//! The rules: one sign-in in, zero or more alerts out (README "Alerts").

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::deliver::{Delivery, Pending};
use super::{Alert, Rule, Severity, SignInFacts};
use crate::classify::{Labels, MfaFailure, Subject};
use crate::config::{AlertsConfig, Config};
use crate::coverage::{Accounts, Coverage, Policy};
use crate::pipeline::Shared;
use crate::sinks::{SignInEvent, Sink};

/// The rules' state that must survive a restart (the snapshot's part).
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Alerts made, by id: event time and how many sign-ins they hold. A
    /// repeat (cooldown, or the same record delivered twice) adds to `count`.
    made: HashMap<String, Made>,
    /// Interactive sign-ins of the last minutes per user, for mfa_fatigue.
    fatigue: HashMap<String, Vec<FatigueEvent>>,
    /// Users alerted as registration overdue, with the pending period's start.
    overdue: HashMap<String, u32>,
    /// Failed legacy sign-ins per (source IP, hour).
    attempts: HashMap<(String, i64), Attempts>,
    /// The newest event time seen (Unix seconds).
    watermark: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Made {
    time: i64,
    count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FatigueEvent {
    time: i64,
    /// The record's identity: the same record delivered twice counts once.
    record: String,
    /// `None` for an MFA failure; the sign-in for a success.
    success: Option<Box<SignInFacts>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Attempts {
    count: u64,
    users: Vec<String>,
    first: Option<Box<SignInFacts>>,
}

/// Per rule per wall-clock minute: sent and held back.
#[derive(Debug, Default)]
struct RateWindow {
    minute: i64,
    sent: u32,
    held_back: u32,
}

/// The alert sink: rules, their state, and the delivery thread.
pub struct Alerts {
    config: AlertsConfig,
    policy: Policy,
    shared: Arc<Shared>,
    state: State,
    delivery: Delivery,
    rates: BTreeMap<Rule, RateWindow>,
}

/// What the sink keeps in the snapshot.
#[derive(Serialize, Deserialize)]
struct Saved {
    state: State,
    outbox: Vec<Pending>,
}

/// Distinct users listed in a spray alert.
const SPRAY_SAMPLE: usize = 10;
/// At most this many sign-ins per user are kept for mfa_fatigue.
const FATIGUE_EVENTS_PER_USER: usize = 64;

impl Alerts {
    /// Builds the sink from its snapshot state and starts delivering.
    pub fn start(config: &Config, shared: Arc<Shared>, saved: Option<&Vec<u8>>) -> anyhow::Result<Alerts> {
        let saved: Option<Saved> = match saved {
            Some(bytes) => Some(
                postcard::from_bytes(bytes)
                    .map_err(|e| anyhow::anyhow!("the alerts' state in the snapshot cannot be read: {e}"))?,
            ),
            None => None,
        };
        let (state, outbox) = saved.map_or_else(Default::default, |s| (s.state, s.outbox));
        let delivery = Delivery::start(config, shared.clone(), outbox)?;
        Ok(Alerts {
            config: config.alerts.clone(),
            policy: Policy::from_config(&config.coverage),
            shared,
            state,
            delivery,
            rates: BTreeMap::new(),
        })
    }

    fn cooldown(&self, rule: Rule) -> i64 {
        let r = &self.config.rules;
        let c = match rule {
            Rule::LegacyAuthSuccess => &r.legacy_auth_success,
            Rule::PrivilegedSingleFactor => &r.privileged_single_factor,
            Rule::RiskyWithoutMfa => &r.risky_without_mfa,
            Rule::RiskyWithMfa => &r.risky_with_mfa,
            Rule::BreakGlassSignin => &r.break_glass_signin,
            Rule::RegistrationOverdue => &r.registration_overdue,
            Rule::MfaFatigue | Rule::LegacyAuthAttempt => return 0,
        };
        c.cooldown.as_secs() as i64
    }

    fn enabled(&self, rule: Rule) -> bool {
        let r = &self.config.rules;
        match rule {
            Rule::LegacyAuthSuccess => r.legacy_auth_success.enabled,
            Rule::PrivilegedSingleFactor => r.privileged_single_factor.enabled,
            Rule::RiskyWithoutMfa => r.risky_without_mfa.enabled,
            Rule::RiskyWithMfa => r.risky_with_mfa.enabled,
            Rule::BreakGlassSignin => r.break_glass_signin.enabled,
            Rule::RegistrationOverdue => r.registration_overdue.enabled,
            Rule::MfaFatigue => r.mfa_fatigue.enabled,
            Rule::LegacyAuthAttempt => r.legacy_auth_attempt.enabled,
        }
    }

    /// Makes an alert of `rule` about `subject` (a user key, or an IP),
    /// unless one for the same cooldown window or record was made already,
    /// in which case that one counts the repeat.
    fn emit(&mut self, rule: Rule, severity: Severity, subject: &str, identity: &str, mut alert: AlertDraft) {
        let time = alert.time;
        let cooldown = self.cooldown(rule);
        let window = if cooldown > 0 { format!("window {}", time.div_euclid(cooldown)) } else { identity.to_owned() };
        let id = alert_id(rule, subject, &window);
        if let Some(made) = self.state.made.get_mut(&id) {
            made.count += 1;
            self.shared.alerts.bump(&id);
            self.delivery.bump(&id);
            if cooldown > 0 {
                self.shared.metrics.alert_suppressed(rule, "cooldown");
            }
            return;
        }
        self.state.made.insert(id.clone(), Made { time, count: 1 });
        if Utc::now().timestamp() - time > self.config.max_age.as_secs() as i64 {
            self.shared.metrics.alert_suppressed(rule, "stale");
            return;
        }
        if !self.admit(rule) {
            return;
        }
        let alert = Alert {
            id,
            rule,
            severity,
            summary: std::mem::take(&mut alert.summary),
            count: 1,
            mfa_failures: alert.mfa_failures,
            users: std::mem::take(&mut alert.users),
            created_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            sign_in: alert.facts,
        };
        self.send(alert);
    }

    fn send(&mut self, alert: Alert) {
        self.shared.metrics.alert_made(alert.rule, alert.severity);
        self.shared.alerts.push(alert.clone());
        self.delivery.push(alert);
    }

    /// The per-rule rate limit (wall clock): past it alerts are held back,
    /// counted, and summed up in one alert when the minute ends.
    fn admit(&mut self, rule: Rule) -> bool {
        let minute = Utc::now().timestamp().div_euclid(60);
        self.roll_rates(minute);
        let limit = self.config.rate_limit_per_minute;
        let w = self.rates.entry(rule).or_default();
        w.minute = minute;
        if w.sent < limit {
            w.sent += 1;
            true
        } else {
            w.held_back += 1;
            self.shared.metrics.alert_suppressed(rule, "rate_limit");
            false
        }
    }

    /// Ends the minutes that are over, with one alert per rule that held some back.
    fn roll_rates(&mut self, minute: i64) {
        let over: Vec<(Rule, i64, u32)> = self
            .rates
            .iter()
            .filter(|(_, w)| w.minute < minute && w.held_back > 0)
            .map(|(r, w)| (*r, w.minute, w.held_back))
            .collect();
        self.rates.retain(|_, w| w.minute >= minute);
        for (rule, at, held_back) in over {
            let time = DateTime::from_timestamp(at * 60, 0).unwrap_or_default();
            let alert = Alert {
                id: alert_id(rule, "*", &format!("rate limit {at}")),
                rule,
                severity: Severity::Warning,
                summary: format!(
                    "{held_back} more {} alerts in the minute from {} were held back by alerts.rate_limit_per_minute ({}); see /api/v1/coverage and the dashboard",
                    rule.as_str(),
                    time.format("%H:%M UTC"),
                    self.config.rate_limit_per_minute
                ),
                count: held_back as u64,
                mfa_failures: None,
                users: Vec::new(),
                created_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                sign_in: SignInFacts { time: rfc3339(at * 60), ..SignInFacts::default() },
            };
            self.send(alert);
        }
    }

    /// mfa_fatigue: at least N MFA denials or unanswered prompts within M,
    /// then a success within M of the last one; every success that qualifies
    /// alerts once, whatever order the sign-ins arrive in.
    fn fatigue(&mut self, user: &str, event: FatigueEvent) {
        let cfg = &self.config.rules.mfa_fatigue;
        let (n, m) = (cfg.failures as usize, cfg.window.as_secs() as i64);
        let events = self.state.fatigue.entry(user.to_owned()).or_default();
        if events.iter().any(|e| e.record == event.record) {
            return;
        }
        let at = events.partition_point(|e| e.time <= event.time);
        let time = event.time;
        events.insert(at, event);
        if events.len() > FATIGUE_EVENTS_PER_USER {
            events.remove(0);
        }
        let failures: Vec<i64> = events.iter().filter(|e| e.success.is_none()).map(|e| e.time).collect();
        if failures.len() < n {
            return;
        }
        let mut fired = Vec::new();
        for e in events.iter().filter(|e| (e.time - time).abs() <= 2 * m) {
            let Some(success) = &e.success else { continue };
            // The largest burst: N+ failures within M, the last within M before the success.
            let burst = failures
                .iter()
                .filter(|&&last| last <= e.time && e.time - last <= m)
                .map(|&last| failures.iter().filter(|&&f| f <= last && last - f <= m).count())
                .max()
                .unwrap_or(0);
            if burst >= n {
                fired.push((e.record.clone(), success.clone(), burst));
            }
        }
        for (record, success, burst) in fired {
            let summary = format!(
                "MFA fatigue: {burst} MFA prompts denied or unanswered for {}, then a successful sign-in{}{}",
                who(&success),
                from(&success),
                success.app.as_deref().map(|a| format!(" to {a}")).unwrap_or_default()
            );
            let draft = AlertDraft::new(&success, summary).failures(burst as u32);
            self.emit(Rule::MfaFatigue, Severity::Critical, user, &record, draft);
        }
    }

    /// legacy_auth_attempt: failed legacy sign-ins per source IP per hour.
    fn attempt(&mut self, facts: SignInFacts, time: i64) {
        let Some(ip) = facts.ip.clone().filter(|ip| !ip.is_empty()) else { return };
        let hour = time.div_euclid(3600);
        let min = self.config.rules.legacy_auth_attempt.min_attempts as u64;
        let a = self.state.attempts.entry((ip.clone(), hour)).or_default();
        a.count += 1;
        if let Some(upn) = facts.upn.clone()
            && a.users.len() < SPRAY_SAMPLE
            && !a.users.contains(&upn)
        {
            a.users.push(upn);
        }
        if a.first.is_none() {
            a.first = Some(Box::new(facts));
        }
        if a.count < min {
            return;
        }
        let (count, users, first) = (a.count, a.users.clone(), a.first.clone().unwrap_or_default());
        let summary = format!(
            "Password spray over legacy protocols: {count} failed legacy sign-ins from {ip}{} in the hour from {} ({} account(s) tried, e.g. {})",
            first.country.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(),
            DateTime::from_timestamp(hour * 3600, 0).unwrap_or_default().format("%Y-%m-%d %H:00 UTC"),
            users.len(),
            users.first().map(String::as_str).unwrap_or("none named")
        );
        let mut draft = AlertDraft::new(&first, summary);
        draft.users = users;
        draft.time = time;
        self.emit(Rule::LegacyAuthAttempt, Severity::Warning, &ip, &format!("hour {hour}"), draft);
    }

    /// Forgets what no rule can use any more (older than the window any rule
    /// looks back over, in event time).
    fn prune(&mut self) {
        let horizon = self.state.watermark
            - (self.config.max_age.as_secs() as i64).max(3 * self.config.rules.mfa_fatigue.window.as_secs() as i64)
            - Rule::ALL.iter().map(|&r| self.cooldown(r)).max().unwrap_or(0)
            - 3600;
        self.state.made.retain(|_, m| m.time >= horizon);
        let fatigue_horizon = self.state.watermark - 3 * self.config.rules.mfa_fatigue.window.as_secs() as i64;
        self.state.fatigue.retain(|_, events| {
            events.retain(|e| e.time >= fatigue_horizon);
            !events.is_empty()
        });
        let hour = self.state.watermark.div_euclid(3600);
        self.state.attempts.retain(|(_, h), _| *h >= hour - 1);
    }
}

/// An alert before it has an id.
struct AlertDraft {
    time: i64,
    summary: String,
    mfa_failures: Option<u32>,
    users: Vec<String>,
    facts: SignInFacts,
}

impl AlertDraft {
    fn new(facts: &SignInFacts, summary: String) -> AlertDraft {
        let time = DateTime::parse_from_rfc3339(&facts.time).map_or(0, |t| t.timestamp());
        AlertDraft { time, summary, mfa_failures: None, users: Vec::new(), facts: facts.clone() }
    }

    fn failures(mut self, n: u32) -> AlertDraft {
        self.mfa_failures = Some(n);
        self
    }
}

/// A stable alert id: the same rule, subject and sign-in (or window) give
/// the same id in every run, on every host (two daemons for HA included).
pub fn alert_id(rule: Rule, subject: &str, identity: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{}\u{0}{}\u{0}{}", rule.as_str(), subject, identity).as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn rfc3339(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// "ann@contoso.com" (or the key when the record has no UPN).
fn who(f: &SignInFacts) -> String {
    f.upn.clone().or_else(|| f.user_key.clone()).unwrap_or_else(|| "an unnamed user".into())
}

/// " from 203.0.113.7 (NL)"
fn from(f: &SignInFacts) -> String {
    match (&f.ip, &f.country) {
        (Some(ip), Some(c)) if !c.is_empty() => format!(" from {ip} ({c})"),
        (Some(ip), _) => format!(" from {ip}"),
        _ => String::new(),
    }
}

/// The facts of the sign-in in `event`.
fn facts(event: &SignInEvent<'_, '_>) -> SignInFacts {
    let f = &event.record.fields;
    let own = |s: &Option<std::borrow::Cow<'_, str>>| {
        s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
    };
    SignInFacts {
        time: event.record.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        category: Some(event.record.category.as_str().to_owned()),
        tenant_id: own(&f.tenant_id),
        user_key: event.verdict.subject_key.as_deref().map(str::to_owned),
        upn: own(&f.user_principal_name),
        display_name: own(&f.user_display_name),
        user_type: own(&f.user_type),
        privileged: event.privileged,
        app: own(&f.app_display_name),
        resource: own(&f.resource_display_name),
        client_app: Some(event.verdict.client_app.trim().to_owned()).filter(|c| !c.is_empty()),
        user_agent: own(&f.user_agent),
        ropc: event.verdict.ropc,
        ip: own(&f.ip_address).or_else(|| own(&f.caller_ip_address)),
        country: own(&f.country),
        city: own(&f.city),
        outcome_code: Some(event.record.outcome_code),
        record_id: own(&f.id),
        correlation_id: own(&f.correlation_id),
        labels: event.verdict.labels.names().map(str::to_owned).collect(),
    }
}

/// A record's identity (SIGNIN-SEMANTICS §1, §5): category and id, else
/// category, correlation id, time and user.
fn record_identity(event: &SignInEvent<'_, '_>) -> String {
    let f = &event.record.fields;
    match f.id.as_deref().map(str::trim).filter(|id| !id.is_empty()) {
        Some(id) => format!("{} {id}", event.record.category.as_str()),
        None => format!(
            "{} {} {} {}",
            event.record.category.as_str(),
            f.correlation_id.as_deref().unwrap_or(""),
            event.record.time.timestamp_millis(),
            event.verdict.subject_key.as_deref().unwrap_or("")
        ),
    }
}

impl Sink for Alerts {
    fn name(&self) -> &'static str {
        super::NAME
    }

    fn sign_in(&mut self, event: &SignInEvent<'_, '_>) {
        let v = event.verdict;
        if v.subject != Subject::User {
            return;
        }
        let time = event.record.time.timestamp();
        self.state.watermark = self.state.watermark.max(time);
        let labels = v.labels;
        let (legacy, mfa, risky) = (
            labels.contains(Labels::LEGACY_AUTH),
            labels.contains(Labels::MFA_SATISFIED),
            labels.contains(Labels::RISKY),
        );
        let counted = v.success && (v.interactive || self.policy.count_non_interactive || legacy);
        let fatigue_failure = matches!(v.mfa_failure, Some(MfaFailure::Denied | MfaFailure::Required));
        let fatigue = self.enabled(Rule::MfaFatigue) && v.interactive && (v.success || fatigue_failure);
        let attempt = self.enabled(Rule::LegacyAuthAttempt) && legacy && !v.success;
        let wanted = [
            (Rule::LegacyAuthSuccess, v.success && legacy),
            (Rule::PrivilegedSingleFactor, event.privileged && counted && !mfa),
            (Rule::RiskyWithoutMfa, v.success && risky && !mfa),
            (Rule::RiskyWithMfa, v.success && risky && mfa),
            (Rule::BreakGlassSignin, event.excluded),
        ];
        if !fatigue && !attempt && !wanted.iter().any(|&(rule, hit)| hit && self.enabled(rule)) {
            return;
        }
        let facts = facts(event);
        let identity = record_identity(event);
        let Some(user) = v.subject_key.as_deref() else {
            if attempt {
                self.attempt(facts, time);
            }
            return;
        };
        for (rule, hit) in wanted {
            if !hit || !self.enabled(rule) {
                continue;
            }
            let (severity, summary) = describe(rule, &facts, event);
            self.emit(rule, severity, user, &identity, AlertDraft::new(&facts, summary));
        }
        if fatigue {
            let success = v.success.then(|| Box::new(facts.clone()));
            self.fatigue(user, FatigueEvent { time, record: identity, success });
        }
        if attempt {
            self.attempt(facts, time);
        }
    }

    fn review(&mut self, coverage: &Coverage, accounts: &Accounts) {
        self.roll_rates(Utc::now().timestamp().div_euclid(60));
        if !self.enabled(Rule::RegistrationOverdue) {
            return;
        }
        let grace = self.policy.registration_grace_secs;
        let overdue = coverage.registration_overdue_users();
        let mut still = HashMap::with_capacity(overdue.len());
        for user in overdue {
            let since = user.pending_since;
            if self.state.overdue.get(&user.key) == Some(&since) {
                still.insert(user.key, since);
                continue;
            }
            let privileged = accounts.privileged(&user.key, &user.upn);
            let facts = SignInFacts {
                time: rfc3339(since as i64 + grace),
                user_key: Some(user.key.clone()),
                upn: Some(user.upn.clone()).filter(|u| !u.is_empty()),
                display_name: user.display_name.clone(),
                user_type: Some(user.user_type.as_str().to_owned()),
                privileged,
                ..SignInFacts::default()
            };
            let summary = format!(
                "MFA registration overdue: {} has been asked to register MFA since {} and has not done MFA since (coverage.registration_grace {} days)",
                who(&facts),
                rfc3339(since as i64).get(..10).unwrap_or(""),
                grace / 86_400
            );
            let severity = if privileged { Severity::Critical } else { Severity::Warning };
            self.emit(
                Rule::RegistrationOverdue,
                severity,
                &user.key,
                &format!("since {since}"),
                AlertDraft::new(&facts, summary),
            );
            still.insert(user.key, since);
        }
        // A user no longer overdue (registered) is forgotten: a new pending period alerts again.
        self.state.overdue = still;
    }

    fn prepare(&mut self, _seq: u64) -> anyhow::Result<Option<Vec<u8>>> {
        self.prune();
        let outbox = self.delivery.pending();
        let saved = SavedRef { state: &self.state, outbox: &outbox };
        Ok(Some(postcard::to_allocvec(&saved).map_err(|e| anyhow::anyhow!("cannot save the alerts' state: {e}"))?))
    }
}

/// [`Saved`], borrowed.
#[derive(Serialize)]
struct SavedRef<'a> {
    state: &'a State,
    outbox: &'a [Pending],
}

/// Severity and one-line summary of a per-sign-in rule.
fn describe(rule: Rule, f: &SignInFacts, event: &SignInEvent<'_, '_>) -> (Severity, String) {
    let v = event.verdict;
    let client = f.client_app.as_deref().unwrap_or("an unknown client");
    let app = f.app.as_deref().map(|a| format!(" to {a}")).unwrap_or_default();
    let mfa = if v.labels.contains(Labels::MFA_SATISFIED) { "with MFA" } else { "without MFA" };
    let outcome = if v.success { "succeeded" } else { "failed" };
    match rule {
        Rule::LegacyAuthSuccess => (
            if event.privileged { Severity::Critical } else { Severity::Warning },
            format!(
                "Legacy sign-in by {}{} with {client}{}{app} succeeded {mfa}",
                who(f),
                if event.privileged { " (privileged)" } else { "" },
                from(f),
            ) + if v.ropc { " (ROPC: password only)" } else { "" },
        ),
        Rule::PrivilegedSingleFactor => (
            Severity::Critical,
            format!("Privileged account {} signed in without MFA{app} with {client}{}", who(f), from(f)),
        ),
        Rule::RiskyWithoutMfa => (
            Severity::Critical,
            format!(
                "Risky sign-in ({} risk) by {}{app}{} succeeded without MFA",
                v.risk_level.as_str(),
                who(f),
                from(f)
            ),
        ),
        Rule::RiskyWithMfa => (
            Severity::Warning,
            format!("Risky sign-in ({} risk) by {}{app}{} succeeded with MFA", v.risk_level.as_str(), who(f), from(f)),
        ),
        Rule::BreakGlassSignin => (
            Severity::Critical,
            format!(
                "Break-glass account {} signed in{app}{} ({outcome}, {mfa}): confirm it was an emergency",
                who(f),
                from(f)
            ),
        ),
        Rule::MfaFatigue | Rule::RegistrationOverdue | Rule::LegacyAuthAttempt => {
            (Severity::Warning, format!("{} for {}", rule.as_str(), who(f)))
        }
    }
}
