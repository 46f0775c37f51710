//! The rules: one sign-in in, zero or more alerts out (README "Alerts").

mod directory;
mod first_seen;
mod upgrade;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::deliver::{Delivery, Pending};
use super::{AFTER_STORM, Alert, ChangeFacts, HELD_NAMED, HeldBack, Rule, Severity, SignInFacts};
use crate::classify::{Carried, Labels, MfaFailure, Subject};
use crate::config::{AlertsConfig, Config, LegacyMode};
use crate::coverage::{Accounts, Coverage, Policy};
use crate::sinks::{Prepared, SignInEvent, Sink, SinkContext, SourceClock};

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
    /// Failed legacy sign-ins per (source network, hour): at most
    /// `legacy_auth_attempt.max_sources` entries, the oldest evicted.
    attempts: HashMap<(String, i64), Attempts>,
    /// Entries made in `attempts` so far (their `made`).
    attempts_made: u64,
    /// The newest event time seen (Unix seconds).
    watermark: i64,
    /// The low watermark the state was last pruned to: after a restart,
    /// before the sources have been heard from again, nothing older is kept
    /// and nothing newer is dropped.
    pruned_to: i64,
    /// The rate limit's window of each rule, with what it held back.
    rates: BTreeMap<Rule, RateWindow>,
    /// legacy_auth_success in `first_seen` mode: each user's successful
    /// uses of legacy protocols (at most [`first_seen::PROTOCOLS_PER_USER`]).
    legacy_seen: HashMap<String, Vec<first_seen::Protocol>>,
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
    success: bool,
    /// The sign-in, kept for failures and for successes of a user with
    /// failures already known: a success with none is kept small (most
    /// successes never end an attack), and if failures arriving later make
    /// it qualify, the alert tells it by the last prompt denied.
    facts: Option<Box<SignInFacts>>,
    record_id: Option<String>,
}

/// Failed legacy sign-ins from one source network in one hour.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Attempts {
    count: u64,
    /// Some of the accounts tried (at most [`SPRAY_SAMPLE`], each cut to [`SPRAY_NAME`] bytes).
    users: Vec<String>,
    /// When the entry was made, in the order of all entries (the oldest is evicted first).
    made: u64,
    /// The sign-in that reached `min_attempts`: kept only then, so a spray
    /// from a million addresses does not keep a million sign-ins.
    facts: Option<Box<SignInFacts>>,
}

/// Per rule per wall-clock minute: sent and held back.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct RateWindow {
    minute: i64,
    sent: u32,
    /// How many were held back, and the first [`HELD_NAMED`] of them.
    held_count: u64,
    held: Vec<HeldBack>,
}

/// The alert sink: rules, their state, and the delivery thread.
pub struct Alerts {
    config: AlertsConfig,
    policy: Policy,
    ctx: SinkContext,
    /// The recent alerts the API lists.
    recent: Arc<super::Recent>,
    state: State,
    delivery: Delivery,
    /// What may be forgotten is decided by the slowest source still sending,
    /// not by the newest sign-in: that keeps the rules independent of the
    /// interleaving.
    clock: SourceClock,
    /// The tenants the sign-ins come from (a few at most; not in the
    /// snapshot: the sign-ins before the first review tell them again). A
    /// registration_overdue alert, made from coverage rather than a sign-in,
    /// names the tenant when there is only one.
    tenants: std::collections::BTreeSet<String>,
    /// Privileged accounts' recent addresses and method changes (privileged_methods_changed).
    watches: directory::Watches,
}

/// At most this many tenants are remembered for [`Alerts::tenants`].
const MAX_TENANTS: usize = 16;

/// What the sink keeps in the snapshot, under [`STATE_KEY`].
#[derive(Serialize, Deserialize)]
struct Saved {
    state: State,
    outbox: Vec<Pending>,
    watches: directory::Watches,
}

/// The key of the sink's state in the snapshot. The earlier formats, under
/// `alerts/4`, `alerts/3`, `alerts/2` and the sink's bare name, are read
/// once and converted ([`upgrade`]).
pub const STATE_KEY: &str = "alerts/5";
const STATE_KEY_V4: &str = "alerts/4";
const STATE_KEY_V3: &str = "alerts/3";
const STATE_KEY_V2: &str = "alerts/2";

/// Distinct users listed in a spray alert.
const SPRAY_SAMPLE: usize = 10;
/// A name or text kept by the spray rule is cut to this many bytes.
const SPRAY_NAME: usize = 128;
/// At most this many sign-ins per user are kept for mfa_fatigue.
const FATIGUE_EVENTS_PER_USER: usize = 64;
// mfa_denial_storm counts over them: its `failures` (at most 50, config
// validation) must fit with some successes around them.
const _: () = assert!(FATIGUE_EVENTS_PER_USER >= 50 + 10);

impl Alerts {
    /// Builds the sink from its snapshot state (`sinks`: every sink's state
    /// by key, as the snapshot has them) and starts delivering.
    pub fn start(
        config: &Config,
        ctx: SinkContext,
        recent: Arc<super::Recent>,
        sinks: &BTreeMap<String, Vec<u8>>,
    ) -> anyhow::Result<Alerts> {
        let snapshot = config.checkpoint.dir.join("state.snapshot");
        let unreadable =
            |e: postcard::Error| anyhow::anyhow!("the alerts' state in {} cannot be read: {e}", snapshot.display());
        let (state, outbox, watches) = if let Some(bytes) = sinks.get(STATE_KEY) {
            let saved: Saved = postcard::from_bytes(bytes).map_err(unreadable)?;
            (saved.state, saved.outbox, saved.watches)
        } else if let Some(bytes) = sinks.get(STATE_KEY_V4) {
            upgrade::v4(bytes).map_err(unreadable)?
        } else if let Some(bytes) = sinks.get(STATE_KEY_V3) {
            upgrade::v3(bytes).map_err(unreadable)?
        } else if let Some(bytes) = sinks.get(STATE_KEY_V2) {
            // The second format: no directory rules yet; its outbox's alerts are the third's.
            upgrade::v2(bytes).map_err(unreadable)?
        } else if let Some(bytes) = sinks.get(super::NAME) {
            // The first format named receivers by their place in the configuration.
            let ids: Vec<String> = super::deliver::targets(config)?.iter().map(|t| t.id()).collect();
            let (state, outbox) = upgrade::v1(bytes, &ids).map_err(unreadable)?;
            (state, outbox, Default::default())
        } else {
            (State::default(), Vec::new(), Default::default())
        };
        let delivery = Delivery::start(config, ctx.metrics.clone(), outbox)?;
        Ok(Alerts {
            config: config.alerts.clone(),
            policy: Policy::from_config(&config.coverage),
            ctx,
            recent,
            state,
            delivery,
            clock: SourceClock::default(),
            tenants: Default::default(),
            watches,
        })
    }

    fn cooldown(&self, rule: Rule) -> i64 {
        let r = &self.config.rules;
        let c = match rule {
            // first_seen: each first use alerts once, by its record.
            Rule::LegacyAuthSuccess if r.legacy_auth_success.mode == LegacyMode::FirstSeen => return 0,
            Rule::LegacyAuthSuccess => return r.legacy_auth_success.cooldown.as_secs() as i64,
            Rule::PrivilegedSingleFactor => &r.privileged_single_factor,
            Rule::RiskyWithoutMfa => &r.risky_without_mfa,
            Rule::RiskyWithMfa => &r.risky_with_mfa,
            Rule::BreakGlassSignin => &r.break_glass_signin,
            Rule::RegistrationOverdue => &r.registration_overdue,
            Rule::PrivilegedNotCovered => &r.privileged_not_covered,
            Rule::BreakGlassRoleChange => &r.break_glass_role_change,
            Rule::PerUserMfaDisabled => &r.per_user_mfa_disabled,
            Rule::MfaPolicyWeakened => &r.mfa_policy_weakened,
            Rule::MfaEnforcementLost => &r.mfa_enforcement_lost,
            Rule::BreakGlassProtectionChange => &r.break_glass_protection_change,
            Rule::RopcSignin => &r.ropc_signin,
            Rule::RiskyUserUnremediated => return r.risky_user_unremediated.cooldown.as_secs() as i64,
            Rule::MfaDenialStorm => return r.mfa_denial_storm.cooldown.as_secs() as i64,
            Rule::MfaFatigue | Rule::LegacyAuthAttempt | Rule::PrivilegedMethodsChanged => return 0,
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
            Rule::PrivilegedNotCovered => r.privileged_not_covered.enabled,
            Rule::PrivilegedMethodsChanged => r.privileged_methods_changed.enabled,
            Rule::BreakGlassRoleChange => r.break_glass_role_change.enabled,
            Rule::PerUserMfaDisabled => r.per_user_mfa_disabled.enabled,
            Rule::MfaPolicyWeakened => r.mfa_policy_weakened.enabled,
            Rule::MfaEnforcementLost => r.mfa_enforcement_lost.enabled,
            Rule::BreakGlassProtectionChange => r.break_glass_protection_change.enabled,
            Rule::RiskyUserUnremediated => r.risky_user_unremediated.enabled,
            Rule::MfaDenialStorm => r.mfa_denial_storm.enabled,
            Rule::RopcSignin => r.ropc_signin.enabled,
        }
    }

    /// Makes an alert of `rule` about `subject` (a user key, or an IP),
    /// unless one for the same cooldown window or record was made already,
    /// in which case that one counts the repeat.
    fn emit(&mut self, rule: Rule, severity: Severity, subject: &str, identity: &str, mut alert: AlertDraft) {
        let time = alert.time;
        let cooldown = self.cooldown(rule);
        let id = alert_id(rule, subject, &window(cooldown, time, identity));
        if let Some(made) = self.state.made.get_mut(&id) {
            made.count += 1;
            self.recent.bump(&id);
            self.delivery.bump(&id);
            if cooldown > 0 {
                self.ctx.metrics.alert_suppressed(rule.as_str(), "cooldown");
            }
            return;
        }
        self.state.made.insert(id.clone(), Made { time, count: 1 });
        // Stale by the brokers' clock, not the host's (see crate::clock).
        if self.ctx.clock.now().timestamp() - time > self.config.max_age.as_secs() as i64 {
            self.ctx.metrics.alert_suppressed(rule.as_str(), "stale");
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
            held_back: Vec::new(),
            created_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            sign_in: alert.facts,
            change: alert.change.take(),
        };
        if self.admit(&alert) {
            self.send(alert);
        }
    }

    fn send(&mut self, alert: Alert) {
        self.ctx.metrics.alert_made(alert.rule.as_str(), alert.severity.as_str());
        self.recent.push(alert.clone());
        self.delivery.push(alert);
    }

    /// The per-rule rate limit (wall clock): past it an alert is held back —
    /// counted, and named in the window's summary, which goes out when the
    /// minute is over. Windows are in the snapshot.
    fn admit(&mut self, alert: &Alert) -> bool {
        let minute = Utc::now().timestamp().div_euclid(60);
        self.roll_rates(minute);
        let limit = self.config.rate_limit_per_minute;
        let w = self.state.rates.entry(alert.rule).or_default();
        w.minute = minute;
        if w.sent < limit {
            w.sent += 1;
            return true;
        }
        w.held_count += 1;
        // Each user once (their first alert held back), the first HELD_NAMED users.
        let named = w.held.iter().any(|h| h.user_key == alert.sign_in.user_key && h.upn == alert.sign_in.upn);
        if !named && w.held.len() < HELD_NAMED {
            w.held.push(HeldBack {
                id: alert.id.clone(),
                user_key: alert.sign_in.user_key.clone(),
                upn: alert.sign_in.upn.clone().or_else(|| alert.sign_in.ip.clone()),
                time: alert.sign_in.time.clone(),
            });
        }
        self.ctx.metrics.alert_suppressed(alert.rule.as_str(), "rate_limit");
        false
    }

    /// Ends the minutes that are over, with one alert per rule that held some
    /// back. Its id comes from the first alert it holds back, so the same
    /// window summed up again after a restart is the same alert.
    fn roll_rates(&mut self, minute: i64) {
        let over: Vec<(Rule, RateWindow)> = self
            .state
            .rates
            .iter()
            .filter(|(_, w)| w.minute < minute && w.held_count > 0)
            .map(|(r, w)| (*r, w.clone()))
            .collect();
        self.state.rates.retain(|_, w| w.minute >= minute);
        for (rule, w) in over {
            let time = DateTime::from_timestamp(w.minute * 60, 0).unwrap_or_default();
            let first = w.held.first().map_or("", |h| h.id.as_str());
            let names: Vec<String> =
                w.held.iter().filter_map(|h| h.upn.clone().or_else(|| h.user_key.clone())).collect();
            let shown = names.iter().take(20).cloned().collect::<Vec<_>>().join(", ");
            let more = w.held_count.saturating_sub(names.len().min(20) as u64);
            let summary = format!(
                "{} more {} alerts in the minute from {} were held back by alerts.rate_limit_per_minute ({}): {shown}{} (held_back lists them with their ids)",
                w.held_count,
                rule.as_str(),
                time.format("%H:%M UTC"),
                self.config.rate_limit_per_minute,
                if more > 0 { format!(" and {more} more") } else { String::new() },
            );
            let alert = Alert {
                id: alert_id(rule, "*", &format!("held back from {first}")),
                rule,
                severity: Severity::Warning,
                summary,
                count: w.held_count,
                mfa_failures: None,
                users: names,
                held_back: w.held,
                created_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                sign_in: SignInFacts { time: rfc3339(w.minute * 60), ..SignInFacts::default() },
                change: None,
            };
            self.send(alert);
        }
    }

    /// Keeps an interactive sign-in for mfa_fatigue and mfa_denial_storm
    /// (one copy of the user's recent prompts and successes serves both).
    fn fatigue(&mut self, user: &str, mut event: FatigueEvent) {
        let (storm, fatigue) = (self.enabled(Rule::MfaDenialStorm), self.enabled(Rule::MfaFatigue));
        if !self.state.fatigue.contains_key(user) {
            self.state.fatigue.insert(user.to_owned(), Default::default());
        }
        let events = self.state.fatigue.get_mut(user).expect("just made");
        if event.success && !events.iter().any(|e| !e.success) {
            event.facts = None;
        }
        let (time, failure, record) = (event.time, !event.success, event.record.clone());
        if !remember(events, event) {
            return;
        }
        if storm && failure {
            self.storm(user, &record, time);
        }
        if fatigue {
            self.fatigue_alerts(user, time);
        }
    }

    /// mfa_denial_storm: at least N MFA denials or unanswered prompts within
    /// M with no successful (interactive) sign-in of the user's after the
    /// first of them. Every prompt that ends such a burst counts on the
    /// alert of its cooldown window, once, whatever order the sign-ins
    /// arrive in: a prompt arriving (`record`, at `time`) makes the prompts
    /// whose burst it completes qualify, itself included.
    fn storm(&mut self, user: &str, record: &str, time: i64) {
        let cfg = &self.config.rules.mfa_denial_storm;
        let (n, m) = (cfg.failures as usize, cfg.window.as_secs() as i64);
        let Some(events) = self.state.fatigue.get(user) else { return };
        let mut fired = Vec::new();
        for f in events.iter().filter(|f| !f.success && f.time >= time && f.time - time <= m) {
            let floor = storm_floor(events, f.time, m);
            let burst = failures_between(events, floor, f.time);
            // Another prompt qualifies now only if this one is what it lacked.
            let new = if f.record == record { burst >= n } else { floor <= time && burst == n };
            if new {
                let mut facts = f.facts.as_deref().cloned().unwrap_or_default();
                facts.time = rfc3339(f.time);
                facts.record_id = f.record_id.clone();
                fired.push((f.record.clone(), facts, burst));
            }
        }
        for (record, facts, burst) in fired {
            let summary = format!(
                "MFA denial storm: {burst} MFA prompts denied or unanswered for {} within {} minutes and no successful sign-in since the first (the latest{}{}): someone with the password is pushing prompts; mfa_fatigue pages if one is accepted",
                who(&facts),
                m / 60,
                from(&facts),
                facts.app.as_deref().map(|a| format!(" to {a}")).unwrap_or_default()
            );
            let draft = AlertDraft::new(&facts, summary).failures(burst as u32);
            self.emit(Rule::MfaDenialStorm, Severity::Warning, user, &record, draft);
        }
    }

    /// The id of the mfa_denial_storm alert made for the prompts before the
    /// success at `success` (since the user's success before it): the
    /// cooldown window of the first prompt that made a storm, as [`Alerts::emit`] made it.
    fn storm_before(&self, user: &str, events: &[FatigueEvent], success: i64) -> Option<String> {
        if !self.enabled(Rule::MfaDenialStorm) {
            return None;
        }
        let cfg = &self.config.rules.mfa_denial_storm;
        let (n, m) = (cfg.failures as usize, cfg.window.as_secs() as i64);
        let previous = events.iter().filter(|e| e.success && e.time < success).map(|e| e.time).max();
        let first = events
            .iter()
            .filter(|f| !f.success && f.time <= success && previous.is_none_or(|p| f.time > p))
            .find(|f| failures_between(events, storm_floor(events, f.time, m), f.time) >= n)?;
        let id = alert_id(
            Rule::MfaDenialStorm,
            user,
            &window(self.cooldown(Rule::MfaDenialStorm), first.time, &first.record),
        );
        self.state.made.contains_key(&id).then_some(id)
    }

    /// mfa_fatigue: at least N MFA denials or unanswered prompts within M,
    /// then a success within M of the last one; every success that qualifies
    /// alerts once, whatever order the sign-ins arrive in. `time`: the
    /// sign-in just kept.
    fn fatigue_alerts(&mut self, user: &str, time: i64) {
        let cfg = &self.config.rules.mfa_fatigue;
        let (n, m) = (cfg.failures as usize, cfg.window.as_secs() as i64);
        let Some(events) = self.state.fatigue.get(user) else { return };
        let failures: Vec<&FatigueEvent> = events.iter().filter(|e| !e.success).collect();
        if failures.len() < n {
            return;
        }
        let mut fired = Vec::new();
        for s in events.iter().filter(|e| e.success && (e.time - time).abs() <= 2 * m) {
            // The largest burst: N+ failures within M, the last within M before the success.
            let burst = failures
                .iter()
                .filter(|last| last.time <= s.time && s.time - last.time <= m)
                .map(|last| (failures.iter().filter(|f| f.time <= last.time && last.time - f.time <= m).count(), last))
                .max_by_key(|(count, last)| (*count, last.time));
            if let Some((count, last)) = burst.filter(|(count, _)| *count >= n) {
                let mut facts = match (&s.facts, &last.facts) {
                    (Some(f), _) => (**f).clone(),
                    (None, Some(f)) => (**f).clone(),
                    (None, None) => SignInFacts::default(),
                };
                facts.time = rfc3339(s.time);
                facts.record_id = s.record_id.clone();
                facts.outcome_code = Some(0);
                fired.push((s.record.clone(), facts, count, self.storm_before(user, events, s.time)));
            }
        }
        for (record, facts, burst, storm) in fired {
            let summary = format!(
                "MFA fatigue: {burst} MFA prompts denied or unanswered for {} within {} minutes, then a successful sign-in{}{}{}",
                who(&facts),
                m / 60,
                from(&facts),
                facts.app.as_deref().map(|a| format!(" to {a}")).unwrap_or_default(),
                storm.map(|id| format!("{AFTER_STORM}{id})")).unwrap_or_default()
            );
            let draft = AlertDraft::new(&facts, summary).failures(burst as u32);
            self.emit(Rule::MfaFatigue, Severity::Critical, user, &record, draft);
        }
    }

    /// legacy_auth_attempt: failed legacy sign-ins per source network per
    /// hour. Bounded: at most `max_sources` entries, each small until it
    /// alerts (a count and a few names), the oldest tenth forgotten at once
    /// when full.
    fn attempt(&mut self, facts: SignInFacts, time: i64) {
        let cfg = &self.config.rules.legacy_auth_attempt;
        let Some(source) = facts.ip.as_deref().and_then(|ip| source_network(ip, cfg.ipv6_prefix)) else { return };
        let (min, max_sources) = (cfg.min_attempts as u64, cfg.max_sources as usize);
        let hour = time.div_euclid(3600);
        let key = (source, hour);
        if !self.state.attempts.contains_key(&key) {
            if self.state.attempts.len() >= max_sources {
                self.evict_attempts(max_sources);
            }
            self.state.attempts_made += 1;
            let made = self.state.attempts_made;
            self.state.attempts.insert(key.clone(), Attempts { made, ..Attempts::default() });
        }
        let a = self.state.attempts.get_mut(&key).expect("just made");
        a.count += 1;
        if let Some(upn) = facts.upn.as_deref().map(|u| bounded(u, SPRAY_NAME))
            && a.users.len() < SPRAY_SAMPLE
            && !a.users.contains(&upn)
        {
            a.users.push(upn);
        }
        if a.count < min {
            return;
        }
        let first = a.facts.get_or_insert_with(|| Box::new(trimmed(facts))).as_ref().clone();
        let (count, users) = (a.count, a.users.clone());
        let source = &key.0;
        let summary = format!(
            "Password spray over legacy protocols: {count} failed legacy sign-ins from {source}{} in the hour from {} ({} account(s) tried, e.g. {})",
            first.country.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(),
            DateTime::from_timestamp(hour * 3600, 0).unwrap_or_default().format("%Y-%m-%d %H:00 UTC"),
            users.len(),
            users.first().map(String::as_str).unwrap_or("none named")
        );
        let mut draft = AlertDraft::new(&first, summary);
        draft.facts.ip = Some(source.clone());
        draft.users = users;
        draft.time = time;
        self.emit(Rule::LegacyAuthAttempt, Severity::Warning, source, &format!("hour {hour}"), draft);
    }

    /// A re-delivery that carries more than the copies before it: when it
    /// makes the sign-in risky, `risky_with_mfa` or `risky_without_mfa` by
    /// what all copies say of MFA (`after`), once — a risk the first copy
    /// already had alerted then, and a copy that only raises the level or
    /// completes the MFA detail alerts nothing.
    fn enriched_copy(&mut self, event: &SignInEvent<'_, '_>, before: Carried, after: Carried) {
        let v = event.verdict;
        if before.risky || !after.risky || !v.success {
            return;
        }
        let rule = if after.mfa { Rule::RiskyWithMfa } else { Rule::RiskyWithoutMfa };
        let Some(user) = v.subject_key.as_deref() else { return };
        if !self.enabled(rule) {
            return;
        }
        let facts = facts(event);
        let (severity, summary) = describe(rule, &facts, event);
        let summary = format!("{summary} (the risk came with a later copy of the sign-in)");
        self.emit(rule, severity, user, &record_identity(event), AlertDraft::new(&facts, summary));
    }

    /// legacy_auth_success in `first_seen` mode: records the successful
    /// legacy sign-in and, when its protocol is new to the user (no
    /// successful use in the `lookback` before it), says so.
    fn first_seen(&mut self, user: &str, f: &SignInFacts, time: i64, event: &SignInEvent<'_, '_>) -> Option<String> {
        let lookback = self.config.rules.legacy_auth_success.lookback;
        let client = f.client_app.as_deref().unwrap_or("");
        if !self.state.legacy_seen.contains_key(user) {
            self.state.legacy_seen.insert(user.to_owned(), Vec::new());
        }
        let protocols = self.state.legacy_seen.get_mut(user).expect("just made");
        if !first_seen::record(protocols, client, time, lookback.as_secs() as i64) {
            return None;
        }
        let v = event.verdict;
        let secs = lookback.as_secs();
        let over = if secs.is_multiple_of(86_400) {
            let days = secs / 86_400;
            format!("{days} day{}", if days == 1 { "" } else { "s" })
        } else {
            humantime::format_duration(lookback).to_string()
        };
        Some(
            format!(
                "First legacy sign-in with {} by {}{} in {over}{}{} (succeeded {})",
                if client.is_empty() { "an unknown client" } else { client },
                who(f),
                if event.privileged { " (privileged)" } else { "" },
                from(f),
                f.app.as_deref().map(|a| format!(" to {a}")).unwrap_or_default(),
                if v.labels.contains(Labels::MFA_SATISFIED) { "with MFA" } else { "without MFA" },
            ) + if v.ropc { " (ROPC: password only)" } else { "" },
        )
    }

    /// Forgets the oldest tenth of the spray's entries (one pass, so a spray
    /// from ever new addresses costs a pass per tenth of the bound).
    fn evict_attempts(&mut self, max_sources: usize) {
        let mut made: Vec<u64> = self.state.attempts.values().map(|a| a.made).collect();
        let k = (max_sources / 10).max(1).min(made.len() - 1);
        let (_, &mut cut, _) = made.select_nth_unstable(k);
        let before = self.state.attempts.len();
        self.state.attempts.retain(|_, a| a.made > cut);
        self.ctx.metrics.spray_sources_evicted((before - self.state.attempts.len()) as u64);
    }

    /// Forgets what no rule can use any more (older than the window any rule
    /// looks back over, in event time).
    fn prune(&mut self) {
        let low = self.low_watermark();
        self.state.pruned_to = low;
        let horizon = low
            - (self.config.max_age.as_secs() as i64)
            - Rule::ALL.iter().map(|&r| self.cooldown(r)).max().unwrap_or(0)
            - 3600;
        self.state.made.retain(|_, m| m.time >= horizon);
        let (f, storm) = (&self.config.rules.mfa_fatigue, &self.config.rules.mfa_denial_storm);
        let kept = (2 * f.window.as_secs()).max(storm.window.as_secs()) as i64;
        let fatigue_horizon = low - kept - f.reorder_tolerance.as_secs() as i64;
        self.state.fatigue.retain(|_, events| {
            events.retain(|e| e.time >= fatigue_horizon);
            !events.is_empty()
        });
        let lookback = self.config.rules.legacy_auth_success.lookback.as_secs() as i64;
        first_seen::prune(&mut self.state.legacy_seen, low - first_seen::LATE, lookback);
        let hour = low.div_euclid(3600);
        self.state.attempts.retain(|(_, h), _| *h >= hour - 1);
        self.prune_watches(low);
    }

    /// Where every source still sending has been read up to; after a
    /// restart, before they are heard from again, where the state was pruned to.
    fn low_watermark(&self) -> i64 {
        self.clock.low(&self.ctx.assignment).unwrap_or(self.state.pruned_to)
    }
}

/// An alert before it has an id.
struct AlertDraft {
    time: i64,
    summary: String,
    mfa_failures: Option<u32>,
    users: Vec<String>,
    facts: SignInFacts,
    change: Option<Box<ChangeFacts>>,
}

impl AlertDraft {
    fn new(facts: &SignInFacts, summary: String) -> AlertDraft {
        let time = DateTime::parse_from_rfc3339(&facts.time).map_or(0, |t| t.timestamp());
        AlertDraft { time, summary, mfa_failures: None, users: Vec::new(), facts: facts.clone(), change: None }
    }

    fn change(mut self, change: ChangeFacts) -> AlertDraft {
        self.change = Some(Box::new(change));
        self
    }

    fn failures(mut self, n: u32) -> AlertDraft {
        self.mfa_failures = Some(n);
        self
    }
}

/// The source a failed legacy sign-in is counted under: an IPv4 address as
/// it is, an IPv6 address as its `/prefix` network (`2001:db8:1:2::/64`).
/// None for what is not an address.
fn source_network(ip: &str, ipv6_prefix: u8) -> Option<String> {
    match ip.trim().parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => Some(v4.to_string()),
        std::net::IpAddr::V6(v6) if ipv6_prefix >= 128 => Some(v6.to_string()),
        std::net::IpAddr::V6(v6) => {
            let bits = u128::from(v6) & (u128::MAX << (128 - u32::from(ipv6_prefix)));
            Some(format!("{}/{ipv6_prefix}", std::net::Ipv6Addr::from(bits)))
        }
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn bounded(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// A sign-in's facts with its long free texts cut ([`SPRAY_NAME`]), for state kept long.
fn trimmed(mut f: SignInFacts) -> SignInFacts {
    for text in [&mut f.user_agent, &mut f.display_name, &mut f.app, &mut f.resource, &mut f.upn] {
        if let Some(t) = text.as_mut() {
            *t = bounded(t, SPRAY_NAME);
        }
    }
    f
}

/// What an alert id is made from besides rule and subject: the cooldown
/// window of `time`, or with no cooldown the sign-in's `identity`.
fn window(cooldown: i64, time: i64, identity: &str) -> String {
    if cooldown > 0 { format!("window {}", time.div_euclid(cooldown)) } else { identity.to_owned() }
}

/// Where the burst of prompts a denial storm ending at `at` may start:
/// `window` before it, and after the user's last success up to `at`.
fn storm_floor(events: &[FatigueEvent], at: i64, window: i64) -> i64 {
    let success = events.iter().filter(|e| e.success && e.time <= at).map(|e| e.time + 1).max();
    success.unwrap_or(i64::MIN).max(at - window)
}

/// How many prompts failed from `from` to `to` (event time, both included).
fn failures_between(events: &[FatigueEvent], from: i64, to: i64) -> usize {
    events.iter().filter(|e| !e.success && e.time >= from && e.time <= to).count()
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

/// Adds `event` to a user's recent events (in time order, the oldest
/// dropped past [`FATIGUE_EVENTS_PER_USER`]); false when the same record
/// is there already (delivered twice).
fn remember(events: &mut Vec<FatigueEvent>, event: FatigueEvent) -> bool {
    if events.iter().any(|e| e.record == event.record) {
        return false;
    }
    let at = events.partition_point(|e| e.time <= event.time);
    events.insert(at, event);
    if events.len() > FATIGUE_EVENTS_PER_USER {
        events.remove(0);
    }
    true
}

/// A field's text, trimmed, if there is any.
fn own(s: &Option<std::borrow::Cow<'_, str>>) -> Option<String> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// The facts of the sign-in in `event`.
fn facts(event: &SignInEvent<'_, '_>) -> SignInFacts {
    let f = &event.record.fields;
    SignInFacts {
        time: event.record.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        category: Some(event.record.category.as_str().to_owned()),
        tenant_id: own(&f.tenant_id),
        user_key: event.verdict.subject_key.as_deref().map(str::to_owned),
        upn: own(&f.user_principal_name),
        display_name: own(&f.user_display_name),
        user_type: f.user_type.as_deref().map(|t| crate::coverage::UserType::parse(Some(t)).as_str().to_owned()),
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

/// A record's identity ([`crate::decode::Identity`]), as alert ids take it.
fn record_identity(event: &SignInEvent<'_, '_>) -> String {
    event.record.identity().hex()
}

impl Sink for Alerts {
    fn name(&self) -> &'static str {
        super::NAME
    }

    fn state_key(&self) -> &'static str {
        STATE_KEY
    }

    fn superseded(&self) -> &'static [&'static str] {
        &[super::NAME, STATE_KEY_V2, STATE_KEY_V3, STATE_KEY_V4]
    }

    fn directory(&mut self, event: &crate::sinks::DirectoryEvent<'_>) {
        self.directory_record(event);
    }

    fn sign_in(&mut self, event: &SignInEvent<'_, '_>) {
        let v = event.verdict;
        let time = event.record.time.timestamp();
        self.clock.heard(event.position, time);
        if v.subject != Subject::User {
            return;
        }
        self.state.watermark = self.state.watermark.max(time);
        if let Some(tenant) = event.record.fields.tenant_id.as_deref().map(str::trim).filter(|t| !t.is_empty())
            && self.tenants.len() < MAX_TENANTS
            && !self.tenants.contains(tenant)
        {
            self.tenants.insert(tenant.to_owned());
        }
        // A later copy of a counted sign-in (docs/labels.md §5): one that
        // adds nothing was judged with its first copy; one that adds a risk
        // may alert on it now, and on nothing else.
        if let Some(before) = event.earlier {
            let after = before.merge(Carried::of(v));
            if after != before {
                self.enriched_copy(event, before, after);
            }
            return;
        }
        let labels = v.labels;
        let (legacy, mfa, risky) = (
            labels.contains(Labels::LEGACY_AUTH),
            labels.contains(Labels::MFA_SATISFIED),
            labels.contains(Labels::RISKY),
        );
        let counted = v.success && (v.interactive || self.policy.count_non_interactive || legacy);
        let fatigue_failure = matches!(v.mfa_failure, Some(MfaFailure::Denied | MfaFailure::Required));
        let fatigue = (self.enabled(Rule::MfaFatigue) || self.enabled(Rule::MfaDenialStorm))
            && v.interactive
            && (v.success || fatigue_failure);
        let attempt = self.enabled(Rule::LegacyAuthAttempt) && legacy && !v.success;
        if event.privileged
            && v.success
            && self.enabled(Rule::PrivilegedMethodsChanged)
            && let (Some(user), Some(ip)) = (v.subject_key.as_deref(), own(&event.record.fields.ip_address))
        {
            self.watch_sign_in(user, time, &ip, || facts(event));
        }
        let wanted = [
            (Rule::LegacyAuthSuccess, v.success && legacy),
            (Rule::PrivilegedSingleFactor, event.privileged && counted && !mfa),
            (Rule::RiskyWithoutMfa, v.success && risky && !mfa),
            (Rule::RiskyWithMfa, v.success && risky && mfa),
            (Rule::BreakGlassSignin, event.excluded),
            (Rule::RiskyUserUnremediated, counted && self.unremediated(event).is_some()),
            (Rule::RopcSignin, v.success && v.ropc && !mfa),
        ];
        let any_wanted = wanted.iter().any(|&(rule, hit)| hit && self.enabled(rule));
        if !fatigue && !attempt && !any_wanted {
            return;
        }
        // Most interactive successes only need remembering, small, in case
        // prompts denied for the user arrive later (see FatigueEvent): with
        // no failure known for the user, no alert can come of it now.
        if fatigue
            && v.success
            && !attempt
            && !any_wanted
            && let Some(user) = v.subject_key.as_deref()
        {
            let small = |event: &SignInEvent<'_, '_>| FatigueEvent {
                time,
                record: record_identity(event),
                success: true,
                facts: None,
                record_id: own(&event.record.fields.id),
            };
            match self.state.fatigue.get_mut(user) {
                None => {
                    self.state.fatigue.insert(user.to_owned(), vec![small(event)]);
                    return;
                }
                Some(events) if !events.iter().any(|e| !e.success) => {
                    remember(events, small(event));
                    return;
                }
                Some(_) => {}
            }
        }
        let mut facts = facts(event);
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
            let (severity, mut summary) = describe(rule, &facts, event);
            if rule == Rule::LegacyAuthSuccess && self.config.rules.legacy_auth_success.mode == LegacyMode::FirstSeen {
                match self.first_seen(user, &facts, time, event) {
                    Some(first) => summary = first,
                    None => continue,
                }
            }
            let mut draft = AlertDraft::new(&facts, summary);
            if rule == Rule::RiskyUserUnremediated
                && let Some(risk) = &event.risk
            {
                draft = draft.change(directory::risk_change(risk, &facts));
            }
            self.emit(rule, severity, user, &identity, draft);
        }
        if fatigue {
            let record_id = facts.record_id.clone();
            let kept = if attempt { facts.clone() } else { std::mem::take(&mut facts) };
            let event =
                FatigueEvent { time, record: identity, success: v.success, facts: Some(Box::new(kept)), record_id };
            self.fatigue(user, event);
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
                tenant_id: (self.tenants.len() == 1).then(|| self.tenants.iter().next().cloned()).flatten(),
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

    fn prepare(&mut self, _seq: u64) -> anyhow::Result<Prepared> {
        self.prune();
        let outbox = self.delivery.pending();
        let saved = SavedRef { state: &self.state, outbox: &outbox, watches: &self.watches };
        let state = postcard::to_allocvec(&saved).map_err(|e| anyhow::anyhow!("cannot save the alerts' state: {e}"))?;
        Ok(Prepared { state: Some(state), durable: None })
    }
}

/// [`Saved`], borrowed.
#[derive(Serialize)]
struct SavedRef<'a> {
    state: &'a State,
    outbox: &'a [Pending],
    watches: &'a directory::Watches,
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
                "Risky sign-in ({}) by {}{app}{} succeeded without MFA",
                crate::classify::risk_reason(v.risk_level, event.record.fields.risk_state.as_deref()),
                who(f),
                from(f)
            ),
        ),
        Rule::RiskyWithMfa => (
            Severity::Warning,
            format!(
                "Risky sign-in ({}) by {}{app}{} succeeded with MFA",
                crate::classify::risk_reason(v.risk_level, event.record.fields.risk_state.as_deref()),
                who(f),
                from(f)
            ),
        ),
        Rule::BreakGlassSignin => (
            Severity::Critical,
            format!(
                "Break-glass account {} signed in{app}{} ({outcome}, {mfa}): confirm it was an emergency",
                who(f),
                from(f)
            ),
        ),
        Rule::RiskyUserUnremediated => {
            let risk = event.risk.as_ref();
            let since = risk.and_then(|r| r.since).unwrap_or(0) / 1000;
            let hours = (event.record.time.timestamp() - since) / 3600;
            (
                Severity::Critical,
                format!(
                    "High-risk user {} ({}, since {}) signed in successfully{app}{} {hours} h later, not remediated (no secure password change, no dismissal): require a password change or block the account",
                    who(f),
                    risk.and_then(|r| r.state.as_deref()).unwrap_or("at risk"),
                    rfc3339(since),
                    from(f)
                ),
            )
        }
        Rule::RopcSignin => (
            if event.privileged { Severity::Critical } else { Severity::Warning },
            format!(
                "ROPC sign-in by {}{}{app}{} with {client} (user agent {}) succeeded without MFA: the password alone was enough",
                who(f),
                if event.privileged { " (privileged)" } else { "" },
                from(f),
                f.user_agent.as_deref().unwrap_or("none given"),
            ),
        ),
        Rule::MfaFatigue
        | Rule::MfaDenialStorm
        | Rule::RegistrationOverdue
        | Rule::LegacyAuthAttempt
        | Rule::PrivilegedNotCovered
        | Rule::PrivilegedMethodsChanged
        | Rule::BreakGlassRoleChange
        | Rule::PerUserMfaDisabled
        | Rule::MfaPolicyWeakened
        | Rule::MfaEnforcementLost
        | Rule::BreakGlassProtectionChange => (Severity::Warning, format!("{} for {}", rule.as_str(), who(f))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Rules, classify};
    use crate::decode::Position;
    use crate::decode::{Item, decode_message};
    use chrono::TimeZone as _;

    const ANN: &str = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
    const BOB: &str = "1f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
    const CAT: &str = "2f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
    const DAN: &str = "3f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
    const EVE: &str = "4f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    /// What a test looks at: the recent alerts and the metrics.
    struct Shared {
        alerts: Arc<crate::alerts::Recent>,
        metrics: Arc<crate::metrics::Metrics>,
        ctx: SinkContext,
    }

    impl Shared {
        fn new(rules: &Rules) -> Arc<Shared> {
            let metrics = Arc::new(crate::metrics::Metrics::new(rules));
            let ctx =
                SinkContext { metrics: metrics.clone(), assignment: Default::default(), clock: Default::default() };
            Arc::new(Shared { alerts: Default::default(), metrics, ctx })
        }

        fn start(&self, config: &Config, saved: BTreeMap<String, Vec<u8>>) -> Alerts {
            Alerts::start(config, self.ctx.clone(), self.alerts.clone(), &saved).unwrap()
        }
    }

    fn alerts(extra: &str) -> (Alerts, Arc<Shared>) {
        let text = format!("[alerts]\nmax_age = \"100000d\"\n{extra}");
        let config = Config::parse(&text, std::path::Path::new("test.toml")).unwrap();
        let shared = Shared::new(&config.rules());
        (shared.start(&config, BTreeMap::new()), shared)
    }

    /// A sign-in record: who, when (minutes after 2025-06-10 09:00), how it ended.
    struct R {
        user: &'static str,
        minute: i64,
        code: i64,
        client: &'static str,
        mfa: bool,
        interactive: bool,
        risk: &'static str,
        id: String,
    }

    fn r(user: &'static str, minute: i64) -> R {
        R { user, minute, code: 0, client: "Browser", mfa: true, interactive: true, risk: "none", id: String::new() }
    }

    impl R {
        fn json(&self) -> String {
            let time =
                chrono::Utc.with_ymd_and_hms(2025, 6, 10, 9, 0, 0).unwrap() + chrono::Duration::minutes(self.minute);
            let id = if self.id.is_empty() {
                format!("{}-{}-{}", self.user, self.minute, self.code)
            } else {
                self.id.clone()
            };
            let details = if self.code == 500121 { "MFA denied; user declined the authentication" } else { "" };
            format!(
                r#"{{"time":"{t}","category":"{c}","properties":{{"id":"{id}","createdDateTime":"{t}","userId":"{u}","userPrincipalName":"{u}@contoso.example","userType":"Member","tenantId":"{tenant}","status":{{"errorCode":{code},"additionalDetails":"{details}"}},"clientAppUsed":"{client}","authenticationRequirement":"{req}","riskLevelDuringSignIn":"{risk}","riskState":"{state}","ipAddress":"203.0.113.7","location":{{"countryOrRegion":"NL"}},"appDisplayName":"Office 365"}}}}"#,
                t = time.to_rfc3339(),
                c = if self.interactive { "SignInLogs" } else { "NonInteractiveUserSignInLogs" },
                u = self.user,
                tenant = TENANT,
                code = self.code,
                client = self.client,
                req = if self.mfa { "multiFactorAuthentication" } else { "singleFactorAuthentication" },
                risk = self.risk,
                // Risk hidden by licence: risky by its state only.
                state = if matches!(self.risk, "high" | "hidden") { "atRisk" } else { "none" },
            )
        }
    }

    fn feed(a: &mut Alerts, record: &R, privileged: bool, excluded: bool) {
        feed_copy(a, record, privileged, excluded, None);
    }

    /// Feeds a copy of a record, told what the copies before it carried
    /// (as coverage tells the pipeline); returns what this copy carries.
    fn feed_copy(a: &mut Alerts, record: &R, privileged: bool, excluded: bool, earlier: Option<Carried>) -> Carried {
        let json = record.json();
        let items = decode_message(json.as_bytes());
        let Some(Item::SignIn(s)) = items.first() else { panic!("{items:?}") };
        let verdict = classify(s, &Rules::default());
        let position = Position::File { path: "t".into(), line: 1 };
        a.sign_in(&SignInEvent {
            record: s,
            verdict: &verdict,
            position: &position,
            index: 0,
            privileged,
            excluded,
            risk: None,
            earlier,
        });
        Carried::of(&verdict)
    }

    #[test]
    fn a_risk_that_comes_with_a_later_copy_alerts_once_in_either_order_and_a_plain_copy_adds_nothing() {
        let plain = R { mfa: false, id: "re-1".into(), ..r(ANN, 0) };
        let risky = R { mfa: false, risk: "high", id: "re-1".into(), ..r(ANN, 0) };
        let want = vec![(Rule::RiskyWithoutMfa, Severity::Critical, ANN.to_owned(), 1)];
        // The plain copy first: nothing; the risky copy then alerts.
        let (mut a, shared) = alerts("");
        let first = feed_copy(&mut a, &plain, false, false, None);
        assert_eq!(made(&shared), vec![]);
        let second = feed_copy(&mut a, &risky, false, false, Some(first));
        assert_eq!(made(&shared), want);
        assert!(list_summary(&shared).contains("later copy"), "{}", list_summary(&shared));
        // Read again (a third copy): nothing more, the count stays one sign-in.
        feed_copy(&mut a, &risky, false, false, Some(first.merge(second)));
        assert_eq!(made(&shared), want);
        // The risky copy first: it alerts; the plain one after adds nothing.
        let (mut a, shared) = alerts("");
        let first = feed_copy(&mut a, &risky, false, false, None);
        feed_copy(&mut a, &plain, false, false, Some(first));
        assert_eq!(made(&shared), want);
        // A copy that completes MFA after the risk was known: no risky_with_mfa besides.
        let with_mfa = R { mfa: true, risk: "high", id: "re-1".into(), ..r(ANN, 0) };
        feed_copy(&mut a, &with_mfa, false, false, Some(first));
        assert_eq!(made(&shared), want);
        // The risk on a copy that also brought the MFA the first lacked: risky_with_mfa (when on).
        let (mut a, shared) = alerts("[alerts.rules.risky_with_mfa]\nenabled = true\ncooldown = \"1h\"\n");
        let first = feed_copy(&mut a, &plain, false, false, None);
        feed_copy(&mut a, &with_mfa, false, false, Some(first));
        assert_eq!(made(&shared).into_iter().map(|m| m.0).collect::<Vec<_>>(), vec![Rule::RiskyWithMfa]);
    }

    fn list_summary(shared: &Shared) -> String {
        let (_, list) = shared.alerts.list(None, None, 10);
        list.iter().map(|a| a.summary.as_str()).collect::<Vec<_>>().join(" | ")
    }

    /// A failed legacy sign-in from `ip` (the record of `r`, another address).
    fn feed_from(a: &mut Alerts, record: &R, ip: &str) {
        let json = record.json().replace("203.0.113.7", ip);
        let items = decode_message(json.as_bytes());
        let Some(Item::SignIn(s)) = items.first() else { panic!("{items:?}") };
        let verdict = classify(s, &Rules::default());
        let position = Position::File { path: "t".into(), line: 1 };
        a.sign_in(&SignInEvent {
            record: s,
            verdict: &verdict,
            position: &position,
            index: 0,
            privileged: false,
            excluded: false,
            risk: None,
            earlier: None,
        });
    }

    #[test]
    fn a_spray_from_rotating_addresses_is_one_source_per_ipv6_prefix_and_the_state_is_bounded() {
        let spray = "[alerts.rules.legacy_auth_attempt]\nenabled = true\nmin_attempts = 10\nmax_sources = 1000\n";
        let (mut a, shared) = alerts(spray);
        let failed = |i: i64| R { client: "IMAP4", code: 50126, id: format!("spray-{i}"), ..r(ANN, 0) };
        // 5,000 addresses of one /64: one source, one alert.
        for i in 0..5_000i64 {
            feed_from(&mut a, &failed(i), &format!("2001:db8:1:2:{:x}:{:x}::1", i / 65_536, i % 65_536));
        }
        assert_eq!(a.state.attempts.len(), 1);
        let sprays: Vec<_> = made(&shared).into_iter().filter(|m| m.0 == Rule::LegacyAuthAttempt).collect();
        assert_eq!(sprays.len(), 1, "{sprays:?}");
        let (_, list) = shared.alerts.list(Some(Rule::LegacyAuthAttempt), None, 10);
        assert_eq!(list[0].sign_in.ip.as_deref(), Some("2001:db8:1:2::/64"));
        // 5,000 sources of one attempt each: the state keeps at most max_sources, small, and says what it forgot.
        for i in 0..5_000i64 {
            feed_from(&mut a, &failed(10_000 + i), &format!("198.{}.{}.{}", i / 65_536, (i / 256) % 256, i % 256));
        }
        assert!(a.state.attempts.len() <= 1000, "{}", a.state.attempts.len());
        assert!(
            a.state.attempts.values().filter(|e| e.count < 10).all(|e| e.facts.is_none()),
            "no sign-in kept before it alerts"
        );
        let evicted = crate::metrics::sum(&shared.metrics.render(), "mfawatch_spray_sources_evicted_total");
        assert!(evicted >= 4_000.0, "evictions are counted: {evicted}");
    }

    fn made(shared: &Shared) -> Vec<(Rule, Severity, String, u64)> {
        let (_, list) = shared.alerts.list(None, None, 1000);
        let mut out: Vec<_> =
            list.into_iter().map(|a| (a.rule, a.severity, a.sign_in.user_key.unwrap_or_default(), a.count)).collect();
        out.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)));
        out
    }

    #[test]
    fn a_successful_legacy_sign_in_alerts_critical_for_a_privileged_user_and_a_failed_one_does_not() {
        let (mut a, shared) = alerts("");
        feed(&mut a, &R { client: "IMAP4", mfa: false, ..r(ANN, 0) }, false, false);
        feed(&mut a, &R { client: "IMAP4", mfa: false, ..r(BOB, 0) }, true, false);
        feed(&mut a, &R { client: "POP3", code: 50126, ..r(ANN, 5) }, false, false);
        let got = made(&shared);
        assert!(got.contains(&(Rule::LegacyAuthSuccess, Severity::Warning, ANN.into(), 1)), "{got:?}");
        assert!(got.contains(&(Rule::LegacyAuthSuccess, Severity::Critical, BOB.into(), 1)), "{got:?}");
        let (_, list) = shared.alerts.list(Some(Rule::LegacyAuthSuccess), Some(ANN), 10);
        let summary = &list[0].summary;
        assert!(
            summary.contains("IMAP4") && summary.contains("203.0.113.7 (NL)") && summary.contains("without MFA"),
            "{summary}"
        );
    }

    #[test]
    fn a_privileged_users_counted_sign_in_without_mfa_alerts() {
        let (mut a, shared) = alerts("");
        feed(&mut a, &R { mfa: false, ..r(ANN, 0) }, true, false);
        feed(&mut a, &r(BOB, 0), true, false); // with MFA
        feed(&mut a, &R { mfa: false, interactive: false, ..r(BOB, 1) }, true, false); // not counted
        feed(&mut a, &R { mfa: false, ..r(BOB, 2) }, false, false); // not privileged
        assert_eq!(made(&shared), vec![(Rule::PrivilegedSingleFactor, Severity::Critical, ANN.into(), 1)]);
    }

    #[test]
    fn risky_sign_ins_alert_without_mfa_and_with_mfa_only_when_switched_on() {
        let (mut a, shared) = alerts("");
        feed(&mut a, &R { mfa: false, risk: "high", ..r(ANN, 0) }, false, false);
        feed(&mut a, &R { mfa: true, risk: "high", ..r(BOB, 0) }, false, false);
        assert_eq!(made(&shared), vec![(Rule::RiskyWithoutMfa, Severity::Critical, ANN.into(), 1)]);
        let (mut a, shared) = alerts("[alerts.rules.risky_with_mfa]\nenabled = true\ncooldown = \"1h\"\n");
        feed(&mut a, &R { mfa: true, risk: "high", ..r(BOB, 0) }, false, false);
        assert_eq!(made(&shared), vec![(Rule::RiskyWithMfa, Severity::Warning, BOB.into(), 1)]);
    }

    #[test]
    fn every_break_glass_sign_in_alerts_success_or_failure() {
        let (mut a, shared) = alerts("");
        feed(&mut a, &R { code: 50126, ..r(ANN, 0) }, false, true);
        feed(&mut a, &r(ANN, 1), false, true);
        let got = made(&shared);
        assert_eq!(got.len(), 2, "cooldown 0: each sign-in is its own alert: {got:?}");
        assert!(got.iter().all(|g| g.0 == Rule::BreakGlassSignin && g.1 == Severity::Critical));
        // The same record delivered twice is one alert.
        feed(&mut a, &r(ANN, 1), false, true);
        assert_eq!(made(&shared).len(), 2);
    }

    #[test]
    fn repeats_inside_the_cooldown_count_on_the_alert_already_made() {
        let (mut a, shared) = alerts("");
        for minute in [1, 20, 40] {
            feed(&mut a, &R { client: "IMAP4", mfa: false, ..r(ANN, minute) }, false, false);
        }
        assert_eq!(made(&shared), vec![(Rule::LegacyAuthSuccess, Severity::Warning, ANN.into(), 3)]);
        // The next window (event time, aligned to the cooldown) is a new alert.
        feed(&mut a, &R { client: "IMAP4", mfa: false, ..r(ANN, 75) }, false, false);
        assert_eq!(made(&shared).len(), 2);
        let text = shared.metrics.render();
        assert!(
            text.contains("mfawatch_alerts_suppressed_total{reason=\"cooldown\",rule=\"legacy_auth_success\"} 2"),
            "{text}"
        );
    }

    const FIRST_SEEN: &str = "[alerts.rules.legacy_auth_success]\nmode = \"first_seen\"\ncooldown = \"1h\"\n";
    const DAY: i64 = 24 * 60;

    /// A successful legacy sign-in of `user` with `client`, `minute` after 2025-06-10 09:00.
    fn legacy(user: &'static str, client: &'static str, minute: i64) -> R {
        R { client, mfa: false, ..r(user, minute) }
    }

    /// The legacy_auth_success alerts made: (user, sign-in time, count), in time order.
    fn legacy_made(shared: &Shared) -> Vec<(String, String, u64)> {
        let (_, list) = shared.alerts.list(Some(Rule::LegacyAuthSuccess), None, 1000);
        let mut out: Vec<_> =
            list.into_iter().map(|a| (a.sign_in.user_key.unwrap_or_default(), a.sign_in.time, a.count)).collect();
        out.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        out
    }

    fn at(minute: i64) -> String {
        rfc3339(chrono::Utc.with_ymd_and_hms(2025, 6, 10, 9, 0, 0).unwrap().timestamp() + minute * 60)
    }

    #[test]
    fn legacy_auth_success_in_every_mode_is_as_before_whether_named_or_not() {
        for extra in ["", "[alerts.rules.legacy_auth_success]\nmode = \"every\"\ncooldown = \"1h\"\n"] {
            let (mut a, shared) = alerts(extra);
            for minute in [1, 20, 40, 75] {
                feed(&mut a, &legacy(ANN, "IMAP4", minute), false, false);
            }
            feed(&mut a, &legacy(ANN, "POP3", 41), false, false);
            assert_eq!(legacy_made(&shared), vec![(ANN.into(), at(1), 4), (ANN.into(), at(75), 1)], "{extra:?}");
            assert!(a.state.legacy_seen.is_empty(), "nothing kept for first_seen");
        }
    }

    #[test]
    fn first_seen_alerts_a_protocol_new_to_the_user_once_until_unused_for_the_lookback() {
        let (mut a, shared) = alerts(FIRST_SEEN);
        feed(&mut a, &legacy(ANN, "IMAP4", 0), false, false);
        // Used again within 7 days of the last use: not new, and no cooldown count either.
        for minute in [1, 60, 3 * DAY, 10 * DAY] {
            feed(&mut a, &legacy(ANN, "IMAP4", minute), false, false);
        }
        assert_eq!(legacy_made(&shared), vec![(ANN.into(), at(0), 1)]);
        let (_, list) = shared.alerts.list(Some(Rule::LegacyAuthSuccess), Some(ANN), 10);
        let summary = &list[0].summary;
        assert!(
            summary.starts_with(&format!("First legacy sign-in with IMAP4 by {ANN}@contoso.example in 7 days"))
                && summary.contains("203.0.113.7 (NL)")
                && summary.contains("without MFA"),
            "{summary}"
        );
        assert_eq!(list[0].severity, Severity::Warning);
        // Unused for more than 7 days: new again. Another protocol, another user: new, whatever the cooldown.
        feed(&mut a, &legacy(ANN, "IMAP4", 17 * DAY + 1), false, false);
        feed(&mut a, &legacy(ANN, "Authenticated SMTP", 17 * DAY + 2), false, false);
        feed(&mut a, &legacy(BOB, "IMAP4", 17 * DAY + 2), true, false);
        feed(&mut a, &legacy(ANN, "IMAP4", 17 * DAY + 3), false, false);
        let got = legacy_made(&shared);
        assert_eq!(
            got,
            vec![
                (ANN.into(), at(0), 1),
                (ANN.into(), at(17 * DAY + 1), 1),
                (ANN.into(), at(17 * DAY + 2), 1),
                (BOB.into(), at(17 * DAY + 2), 1)
            ]
        );
        let (_, list) = shared.alerts.list(Some(Rule::LegacyAuthSuccess), Some(BOB), 10);
        assert_eq!(list[0].severity, Severity::Critical, "privileged");
        // A failed legacy sign-in is not a use.
        feed(&mut a, &R { code: 50126, ..legacy(CAT, "POP3", 17 * DAY) }, false, false);
        feed(&mut a, &legacy(CAT, "POP3", 17 * DAY + 5), false, false);
        assert_eq!(legacy_made(&shared).last().unwrap().1, at(17 * DAY + 5));
        // The same record read twice is the same alert.
        feed(&mut a, &legacy(CAT, "POP3", 17 * DAY + 5), false, false);
        assert_eq!(legacy_made(&shared).len(), 5);
    }

    #[test]
    fn first_seen_judges_by_event_time_whatever_the_arrival_order() {
        // Uses at day 0, 1, 10 (more than 7 days after the last), 12: new at 0 and 10.
        let uses = [0, DAY, 10 * DAY, 12 * DAY];
        let truth = vec![(ANN.to_string(), at(0), 1), (ANN.to_string(), at(10 * DAY), 1)];
        for order in [[0, 1, 2, 3], [2, 0, 3, 1], [2, 3, 0, 1], [0, 2, 1, 3]] {
            let (mut a, shared) = alerts(FIRST_SEEN);
            for i in order {
                feed(&mut a, &legacy(ANN, "IMAP4", uses[i]), false, false);
            }
            assert_eq!(legacy_made(&shared), truth, "arrival order {order:?}");
        }
        // In reverse order each use arrives before the one that makes it not
        // new: it alerts (an alert is not taken back), none is missed, and
        // what comes after is judged by all of them.
        let (mut a, shared) = alerts(FIRST_SEEN);
        for &minute in uses.iter().rev() {
            feed(&mut a, &legacy(ANN, "IMAP4", minute), false, false);
        }
        let got = legacy_made(&shared);
        assert!(truth.iter().all(|t| got.contains(t)), "{got:?}");
        assert_eq!(got.len(), 4);
        for minute in [2 * DAY, 5 * DAY, 13 * DAY] {
            feed(&mut a, &legacy(ANN, "IMAP4", minute), false, false);
        }
        assert_eq!(legacy_made(&shared).len(), 4);
    }

    #[test]
    fn first_seen_uses_survive_a_restart_and_a_record_read_again_alerts_once() {
        let (mut a, shared) = alerts(FIRST_SEEN);
        feed(&mut a, &legacy(ANN, "IMAP4", 0), false, false);
        assert_eq!(legacy_made(&shared).len(), 1);
        let saved = a.prepare(1).unwrap().state.unwrap();
        drop(a);
        let text = format!("[alerts]\nmax_age = \"100000d\"\n{FIRST_SEEN}");
        let config = Config::parse(&text, std::path::Path::new("test.toml")).unwrap();
        let again = Shared::new(&config.rules());
        let mut b = again.start(&config, BTreeMap::from([(STATE_KEY.to_owned(), saved)]));
        feed(&mut b, &legacy(ANN, "IMAP4", 0), false, false); // read again
        feed(&mut b, &legacy(ANN, "IMAP4", 2 * DAY), false, false); // not new
        assert_eq!(legacy_made(&again), vec![]);
        feed(&mut b, &legacy(ANN, "POP3", 2 * DAY), false, false);
        assert_eq!(legacy_made(&again), vec![(ANN.into(), at(2 * DAY), 1)]);
    }

    #[test]
    fn first_seen_state_is_bounded_per_user_and_pruned_past_the_lookback() {
        let (mut a, shared) = alerts(FIRST_SEEN);
        for (i, client) in crate::classify::DEFAULT_LEGACY_CLIENTS.iter().enumerate() {
            feed(&mut a, &legacy(ANN, client, i as i64), false, false);
        }
        // Case and spaces aside, the same protocol.
        feed(&mut a, &legacy(ANN, " imap4", 30), false, false);
        assert_eq!(legacy_made(&shared).len(), crate::classify::DEFAULT_LEGACY_CLIENTS.len());
        assert_eq!(a.state.legacy_seen[ANN].len(), crate::classify::DEFAULT_LEGACY_CLIENTS.len());
        // A mailbox polled every 10 minutes for 30 days is one run.
        for minute in (0..30 * DAY).step_by(10) {
            feed(&mut a, &legacy(BOB, "IMAP4", minute), false, false);
        }
        assert_eq!(a.state.legacy_seen[BOB].len(), 1);
        assert_eq!(a.state.legacy_seen[BOB][0].runs(), 1);
        assert_eq!(legacy_made(&shared).iter().filter(|m| m.0 == BOB).count(), 1);
        // Pruned to what the lookback still needs before the low watermark (day 30).
        a.prepare(1).unwrap();
        assert!(!a.state.legacy_seen.contains_key(ANN), "ANN's uses are 30 days old");
        assert!(a.state.legacy_seen.contains_key(BOB));
    }

    #[test]
    fn past_the_rate_limit_alerts_are_held_back_counted_and_summed_up() {
        let (mut a, shared) = alerts("rate_limit_per_minute = 2\n");
        let users = [ANN, BOB, "2f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", "3f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"];
        for user in users {
            feed(&mut a, &R { client: "IMAP4", mfa: false, ..r(user, 0) }, false, false);
        }
        assert_eq!(made(&shared).len(), 2);
        let text = shared.metrics.render();
        assert!(
            text.contains("mfawatch_alerts_suppressed_total{reason=\"rate_limit\",rule=\"legacy_auth_success\"} 2"),
            "{text}"
        );
        // When the minute is over, one alert says how many were held back.
        let minute = Utc::now().timestamp().div_euclid(60);
        a.roll_rates(minute + 1);
        let (_, list) = shared.alerts.list(Some(Rule::LegacyAuthSuccess), None, 10);
        assert_eq!(list.len(), 3);
        assert!(list[0].summary.contains("2 more legacy_auth_success alerts"), "{}", list[0].summary);
        assert_eq!(list[0].count, 2);
    }

    #[test]
    fn what_the_rate_limit_holds_back_survives_a_restart_and_is_summed_up_under_one_id() {
        let users = [ANN, BOB, "2f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", "3f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"];
        let summary = |restart: bool| {
            let (mut a, shared) = alerts("rate_limit_per_minute = 1\n");
            for user in users {
                feed(&mut a, &R { client: "IMAP4", mfa: false, ..r(user, 0) }, false, false);
            }
            let (mut a, shared) = if restart {
                // Stopped inside the minute: the window, and what it held back, are in the snapshot.
                let saved = a.prepare(1).unwrap().state.unwrap();
                drop(a);
                let config =
                    Config::parse("[alerts]\nmax_age = \"100000d\"\nrate_limit_per_minute = 1\n", "t.toml".as_ref())
                        .unwrap();
                let shared = Shared::new(&config.rules());
                let b = shared.start(&config, BTreeMap::from([(STATE_KEY.to_string(), saved)]));
                (b, shared)
            } else {
                (a, shared)
            };
            // Some minutes later (a restart takes its time): the summary of that minute.
            a.roll_rates(Utc::now().timestamp().div_euclid(60) + 5);
            let (_, list) = shared.alerts.list(Some(Rule::LegacyAuthSuccess), None, 10);
            let summary = list.into_iter().find(|a| a.count == 3).expect("one summary for the three held back");
            assert_eq!(summary.held_back.len(), 3);
            assert_eq!(summary.users.len(), 3);
            assert!(summary.summary.contains("3 more legacy_auth_success alerts"), "{}", summary.summary);
            summary.id
        };
        assert_eq!(summary(true), summary(false), "the same window gives the same summary, restart or not");
    }

    #[test]
    fn an_alert_says_the_user_type_and_why_a_sign_in_is_risky_in_the_daemons_words() {
        let (mut a, shared) = alerts("");
        feed(&mut a, &R { client: "IMAP4", mfa: false, ..r(ANN, 0) }, false, false);
        feed(&mut a, &R { mfa: false, risk: "hidden", ..r(BOB, 1) }, false, false);
        let (_, list) = shared.alerts.list(None, None, 100);
        assert!(!list.is_empty());
        assert!(list.iter().any(|a| a.summary.contains("risk state: at risk, level hidden by licence")), "{list:?}");
        for alert in &list {
            let t = alert.sign_in.user_type.as_deref();
            assert!(matches!(t, Some("member" | "guest" | "unknown")), "as the API and the report say it: {t:?}");
            assert!(
                !alert.summary.contains("none risk") && !alert.summary.contains("hidden risk"),
                "{}",
                alert.summary
            );
        }
    }

    #[test]
    fn sign_ins_older_than_max_age_update_state_but_do_not_page() {
        let (mut a, shared) = alerts("");
        a.config.max_age = std::time::Duration::from_secs(86_400);
        feed(&mut a, &R { client: "IMAP4", mfa: false, ..r(ANN, 0) }, false, false);
        assert!(made(&shared).is_empty());
        let text = shared.metrics.render();
        assert!(
            text.contains("mfawatch_alerts_suppressed_total{reason=\"stale\",rule=\"legacy_auth_success\"} 1"),
            "{text}"
        );
        assert_eq!(a.state.made.len(), 1, "the state knows it");
    }

    fn fatigue_ids(records: &[R]) -> Vec<String> {
        let (mut a, shared) = alerts("");
        for record in records {
            feed(&mut a, record, false, false);
        }
        let (_, list) = shared.alerts.list(Some(Rule::MfaFatigue), None, 100);
        let mut ids: Vec<String> = list.into_iter().map(|a| a.id).collect();
        ids.sort();
        ids
    }

    fn denied(user: &'static str, minute: i64) -> R {
        R { code: 500121, ..r(user, minute) }
    }

    #[test]
    fn mfa_fatigue_needs_enough_prompts_close_together_then_a_success_soon_after() {
        let burst = || vec![denied(ANN, 0), denied(ANN, 2), R { code: 50074, ..r(ANN, 4) }];
        let mut records = burst();
        records.push(r(ANN, 9));
        assert_eq!(fatigue_ids(&records).len(), 1);
        // Two prompts are not enough.
        assert!(fatigue_ids(&[denied(ANN, 0), denied(ANN, 2), r(ANN, 5)]).is_empty());
        // Prompts spread over more than the window are not a burst.
        assert!(fatigue_ids(&[denied(ANN, 0), denied(ANN, 6), denied(ANN, 12), r(ANN, 13)]).len().eq(&0));
        // A success longer than the window after the last prompt is not the end of one.
        let mut late = burst();
        late.push(r(ANN, 16));
        assert!(fatigue_ids(&late).is_empty());
        // A success before the prompts is not one either.
        let mut before = vec![r(ANN, -1)];
        before.extend(burst());
        assert!(fatigue_ids(&before).is_empty());
    }

    #[test]
    fn mfa_fatigue_gives_the_same_alerts_in_any_arrival_order() {
        let records =
            || vec![denied(ANN, 0), denied(ANN, 1), denied(ANN, 3), r(ANN, 6), r(ANN, 8), denied(BOB, 0), r(BOB, 1)];
        let expected = fatigue_ids(&records());
        assert_eq!(expected.len(), 2, "both of ann's successes follow the burst");
        // Every rotation and the reverse: partitions interleave in any way.
        let n = records().len();
        for shift in 0..n {
            let mut order = records();
            order.rotate_left(shift);
            assert_eq!(fatigue_ids(&order), expected, "rotated by {shift}");
            order.reverse();
            assert_eq!(fatigue_ids(&order), expected, "reversed, rotated by {shift}");
        }
    }

    fn storm_alerts(shared: &Shared) -> Vec<Alert> {
        let (_, list) = shared.alerts.list(Some(Rule::MfaDenialStorm), None, 100);
        list
    }

    /// `n` prompts denied for `user`, a minute apart from `minute`.
    fn storm(user: &'static str, minute: i64, n: i64) -> Vec<R> {
        (0..n).map(|i| denied(user, minute + i)).collect()
    }

    #[test]
    fn a_denial_storm_alerts_once_before_any_success_and_not_below_the_threshold_or_with_a_success_inside() {
        let (mut a, shared) = alerts("");
        for record in storm(ANN, 0, 10) {
            feed(&mut a, &record, false, false);
        }
        let got = storm_alerts(&shared);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].severity, got[0].count, got[0].mfa_failures), (Severity::Warning, 1, Some(10)));
        assert!(
            got[0].summary.starts_with("MFA denial storm: 10 MFA prompts denied or unanswered for")
                && got[0].summary.contains("203.0.113.7 (NL)"),
            "{}",
            got[0].summary
        );
        assert_eq!(got[0].sign_in.time, rfc3339(denied(ANN, 9).time()), "the prompt that made it a storm");
        assert!(made(&shared).iter().all(|m| m.0 == Rule::MfaDenialStorm), "no mfa_fatigue without a success");
        // Nine are not enough; ten over more than the window are not a storm.
        let (mut a, shared) = alerts("");
        for record in storm(ANN, 0, 9).into_iter().chain((0..10).map(|i| denied(BOB, 2 * i))) {
            feed(&mut a, &record, false, false);
        }
        assert!(storm_alerts(&shared).is_empty(), "{:?}", storm_alerts(&shared));
        // A success after the first prompt: the prompts after it start again.
        let (mut a, shared) = alerts("");
        let mut records = storm(ANN, 0, 10);
        records.insert(5, r(ANN, 4));
        for record in &records {
            feed(&mut a, record, false, false);
        }
        assert!(storm_alerts(&shared).is_empty(), "{:?}", storm_alerts(&shared));
        // Unanswered prompts (50074) count as denials do; non-interactive ones do not.
        let (mut a, shared) = alerts("");
        for i in 0..10 {
            feed(&mut a, &R { code: 50074, ..r(CAT, i) }, false, false);
            feed(&mut a, &R { code: 500121, interactive: false, ..r(DAN, i) }, false, false);
        }
        let got: Vec<_> = storm_alerts(&shared).into_iter().map(|a| a.sign_in.user_key.unwrap()).collect();
        assert_eq!(got, vec![CAT.to_owned()]);
        // Switched off: nothing; mfa_fatigue still works without it.
        let (mut a, shared) = alerts("[alerts.rules.mfa_denial_storm]\nenabled = false\n");
        for record in storm(ANN, 0, 12).into_iter().chain([r(ANN, 13)]) {
            feed(&mut a, &record, false, false);
        }
        assert!(storm_alerts(&shared).is_empty());
        let (_, fatigue) = shared.alerts.list(Some(Rule::MfaFatigue), None, 10);
        assert_eq!(fatigue.len(), 1);
        assert!(fatigue[0].storm_alert_id().is_none(), "{}", fatigue[0].summary);
    }

    #[test]
    fn a_denial_storm_is_one_alert_per_cooldown_that_counts_the_prompts_after_it() {
        let (mut a, shared) = alerts("");
        for record in storm(ANN, 0, 12) {
            feed(&mut a, &record, false, false);
        }
        // The same records again (delivered twice) change nothing.
        for record in storm(ANN, 0, 12) {
            feed(&mut a, &record, false, false);
        }
        assert_eq!(made(&shared), vec![(Rule::MfaDenialStorm, Severity::Warning, ANN.into(), 3)]);
        let text = shared.metrics.render();
        assert!(
            text.contains("mfawatch_alerts_suppressed_total{reason=\"cooldown\",rule=\"mfa_denial_storm\"} 2"),
            "{text}"
        );
        // Another storm in the next cooldown window (event time) is a new alert.
        for record in storm(ANN, 70, 10) {
            feed(&mut a, &record, false, false);
        }
        assert_eq!(storm_alerts(&shared).len(), 2);
    }

    fn storm_ids(records: &[R]) -> Vec<(String, u64)> {
        let (mut a, shared) = alerts("");
        for record in records {
            feed(&mut a, record, false, false);
        }
        let mut ids: Vec<_> = storm_alerts(&shared).into_iter().map(|a| (a.id, a.count)).collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_denial_storm_gives_the_same_alert_in_any_arrival_order() {
        let records = || {
            let mut records = storm(ANN, 0, 11);
            records.extend(storm(BOB, 3, 9));
            records.push(r(BOB, 20));
            records
        };
        let expected = storm_ids(&records());
        let window = format!("window {}", denied(ANN, 0).time() / 3600);
        assert_eq!(expected, vec![(alert_id(Rule::MfaDenialStorm, ANN, &window), 2)]);
        let n = records().len();
        for shift in 0..n {
            let mut order = records();
            order.rotate_left(shift);
            assert_eq!(storm_ids(&order), expected, "rotated by {shift}");
            order.reverse();
            assert_eq!(storm_ids(&order), expected, "reversed, rotated by {shift}");
        }
        // Interleaved from both ends.
        let mut order = records();
        let (mut front, mut back) = (order.drain(..n / 2).collect::<Vec<_>>(), order);
        back.reverse();
        let mut mixed = Vec::new();
        while !front.is_empty() || !back.is_empty() {
            mixed.extend(back.pop());
            mixed.extend(front.pop());
        }
        assert_eq!(storm_ids(&mixed), expected, "interleaved");
    }

    #[test]
    fn the_mfa_fatigue_alert_after_a_storm_names_the_storms_alert_whatever_order_the_prompts_arrive_in() {
        for reversed in [false, true] {
            let mut records = storm(ANN, 0, 10);
            if reversed {
                records.reverse();
            }
            records.push(r(ANN, 12));
            let (mut a, shared) = alerts("");
            for record in &records {
                feed(&mut a, record, false, false);
            }
            let storm = storm_alerts(&shared);
            let (_, fatigue) = shared.alerts.list(Some(Rule::MfaFatigue), None, 10);
            assert_eq!((storm.len(), fatigue.len()), (1, 1), "reversed {reversed}");
            assert_eq!(fatigue[0].storm_alert_id(), Some(storm[0].id.as_str()), "{}", fatigue[0].summary);
            assert!(fatigue[0].summary.ends_with(&format!("(after denial storm alert {})", storm[0].id)));
        }
        // The success read before the storm is complete: mfa_fatigue pages
        // first and cannot name a storm alert not made yet; the storm still alerts.
        let mut records = storm(ANN, 0, 10);
        records.insert(0, r(ANN, 12));
        let (mut a, shared) = alerts("");
        for record in &records {
            feed(&mut a, record, false, false);
        }
        let (_, fatigue) = shared.alerts.list(Some(Rule::MfaFatigue), None, 10);
        assert_eq!((storm_alerts(&shared).len(), fatigue.len()), (1, 1));
        assert!(fatigue[0].storm_alert_id().is_none(), "{}", fatigue[0].summary);
        // A fatigue burst too small for a storm names none.
        let (mut a, shared) = alerts("");
        for record in storm(ANN, 0, 4).into_iter().chain([r(ANN, 5)]) {
            feed(&mut a, &record, false, false);
        }
        let (_, fatigue) = shared.alerts.list(Some(Rule::MfaFatigue), None, 10);
        assert_eq!(fatigue.len(), 1);
        assert!(fatigue[0].storm_alert_id().is_none() && !fatigue[0].summary.contains("storm"));
    }

    #[test]
    fn a_denial_storm_survives_a_restart_with_its_state_and_keeps_its_id() {
        // A receiver that never answers: alerts wait in the outbox.
        let extra = "[alerts.webhook]\nurl = \"http://127.0.0.1:9/hook\"\n";
        let config = Config::parse(&format!("[alerts]\nmax_age = \"100000d\"\n{extra}"), "t.toml".as_ref()).unwrap();
        // Nine prompts, a checkpoint, a restart, the tenth.
        let (mut a, _) = alerts(extra);
        for record in storm(ANN, 0, 9) {
            feed(&mut a, &record, false, false);
        }
        let saved = a.prepare(1).unwrap().state.unwrap();
        drop(a);
        let shared = Shared::new(&config.rules());
        let mut b = shared.start(&config, BTreeMap::from([(STATE_KEY.to_string(), saved)]));
        feed(&mut b, &denied(ANN, 9), false, false);
        let got = storm_alerts(&shared);
        assert_eq!(got.len(), 1);
        assert_eq!(vec![(got[0].id.clone(), 1)], storm_ids(&storm(ANN, 0, 10)), "the id of a run without the restart");
        // Saved after the alert: the prompts read again after the restart count on it, no second alert.
        let saved = b.prepare(2).unwrap().state.unwrap();
        drop(b);
        let shared = Shared::new(&config.rules());
        let mut c = shared.start(&config, BTreeMap::from([(STATE_KEY.to_string(), saved)]));
        feed(&mut c, &denied(ANN, 10), false, false);
        assert_eq!(c.delivery.pending().len(), 1, "the storm alert waits in the outbox (no receiver answers)");
        assert_eq!(c.delivery.pending()[0].alert.id, got[0].id);
        assert_eq!(c.delivery.pending()[0].alert.count, 2);
        assert!(storm_alerts(&shared).is_empty(), "no new alert");
        // And the success then names the storm's alert.
        feed(&mut c, &r(ANN, 12), false, false);
        let (_, fatigue) = shared.alerts.list(Some(Rule::MfaFatigue), None, 10);
        assert_eq!(fatigue[0].storm_alert_id(), Some(got[0].id.as_str()));
    }

    /// A sign-in over the resource-owner password flow (the record of `r`).
    fn feed_ropc(a: &mut Alerts, record: &R, privileged: bool) {
        let json = record.json().replace(
            "\"appDisplayName\"",
            "\"authenticationProtocol\":\"ropc\",\"userAgent\":\"BAV2ROPC\",\"appDisplayName\"",
        );
        let items = decode_message(json.as_bytes());
        let Some(Item::SignIn(s)) = items.first() else { panic!("{items:?}") };
        let verdict = classify(s, &Rules::default());
        assert!(verdict.ropc, "{json}");
        let position = Position::File { path: "t".into(), line: 1 };
        a.sign_in(&SignInEvent {
            record: s,
            verdict: &verdict,
            position: &position,
            index: 0,
            privileged,
            excluded: false,
            risk: None,
            earlier: None,
        });
    }

    #[test]
    fn a_successful_ropc_sign_in_without_mfa_alerts_whatever_the_client_critical_when_privileged() {
        let (mut a, shared) = alerts("");
        feed_ropc(&mut a, &R { client: "Mobile Apps and Desktop clients", mfa: false, ..r(ANN, 0) }, false);
        feed_ropc(&mut a, &R { client: "Authenticated SMTP", mfa: false, ..r(BOB, 0) }, true);
        let got: Vec<_> = made(&shared).into_iter().filter(|m| m.0 == Rule::RopcSignin).collect();
        assert_eq!(
            got,
            vec![
                (Rule::RopcSignin, Severity::Warning, ANN.into(), 1),
                (Rule::RopcSignin, Severity::Critical, BOB.into(), 1)
            ]
        );
        let (_, list) = shared.alerts.list(Some(Rule::RopcSignin), Some(ANN), 10);
        let summary = &list[0].summary;
        for part in [ANN, "Office 365", "203.0.113.7 (NL)", "BAV2ROPC", "without MFA"] {
            assert!(summary.contains(part), "{part}: {summary}");
        }
        // Failed, with MFA, or not ROPC: nothing.
        let (mut a, shared) = alerts("");
        feed_ropc(&mut a, &R { client: "Browser", mfa: false, code: 50126, ..r(ANN, 0) }, false);
        feed_ropc(&mut a, &R { client: "Browser", mfa: true, ..r(BOB, 0) }, false);
        feed(&mut a, &R { client: "Browser", mfa: false, ..r(CAT, 0) }, false, false);
        assert!(made(&shared).iter().all(|m| m.0 != Rule::RopcSignin), "{:?}", made(&shared));
        // Switched off.
        let (mut a, shared) = alerts("[alerts.rules.ropc_signin]\nenabled = false\ncooldown = \"1h\"\n");
        feed_ropc(&mut a, &R { client: "Browser", mfa: false, ..r(ANN, 0) }, false);
        assert!(made(&shared).is_empty());
    }

    #[test]
    fn ropc_sign_ins_inside_the_cooldown_count_on_one_alert_also_across_a_restart() {
        let extra = "[alerts.webhook]\nurl = \"http://127.0.0.1:9/hook\"\n";
        let (mut a, shared) = alerts(extra);
        let ropc = |minute| R { client: "Browser", mfa: false, ..r(ANN, minute) };
        feed_ropc(&mut a, &ropc(1), false);
        feed_ropc(&mut a, &ropc(20), false);
        assert_eq!(made(&shared), vec![(Rule::RopcSignin, Severity::Warning, ANN.into(), 2)]);
        let id = a.delivery.pending()[0].alert.id.clone();
        assert_eq!(id, alert_id(Rule::RopcSignin, ANN, &format!("window {}", ropc(1).time() / 3600)));
        let saved = a.prepare(1).unwrap().state.unwrap();
        drop(a);
        let config = Config::parse(&format!("[alerts]\nmax_age = \"100000d\"\n{extra}"), "t.toml".as_ref()).unwrap();
        let shared = Shared::new(&config.rules());
        let mut b = shared.start(&config, BTreeMap::from([(STATE_KEY.to_string(), saved)]));
        feed_ropc(&mut b, &ropc(40), false);
        let pending = b.delivery.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].alert.id.as_str(), pending[0].alert.count), (id.as_str(), 3));
        // The next window is a new alert.
        feed_ropc(&mut b, &ropc(75), false);
        assert_eq!(b.delivery.pending().len(), 2);
    }

    #[test]
    fn alert_ids_are_the_same_in_every_run() {
        let records = [R { client: "IMAP4", mfa: false, ..r(ANN, 0) }];
        let ids = |_: u8| {
            let (mut a, shared) = alerts("");
            feed(&mut a, &records[0], false, false);
            shared.alerts.list(None, None, 10).1.into_iter().map(|a| a.id).collect::<Vec<_>>()
        };
        assert_eq!(ids(1), ids(2));
        assert_eq!(ids(1)[0], alert_id(Rule::LegacyAuthSuccess, ANN, &format!("window {}", records[0].time() / 3600)));
    }

    impl R {
        fn time(&self) -> i64 {
            (chrono::Utc.with_ymd_and_hms(2025, 6, 10, 9, 0, 0).unwrap() + chrono::Duration::minutes(self.minute))
                .timestamp()
        }
    }

    /// Ann at `time`, asked to register MFA or not, with MFA or not.
    fn ann_seen(
        time: chrono::DateTime<chrono::Utc>,
        registration_required: bool,
        any_mfa: bool,
    ) -> crate::coverage::Observation<'static> {
        crate::coverage::Observation {
            key: ANN,
            upn: Some("ann@contoso.example"),
            display_name: None,
            user_type: Some("Member"),
            time,
            counted: false,
            mfa: false,
            single_factor: false,
            legacy: false,
            registration_required,
            any_mfa,
            app: None,
            client_app: "Browser",
            risky: false,
            identity: 0,
            carried: Default::default(),
            strength: None,
        }
    }

    /// Coverage in which Ann, asked to register on 1 June 2025, is overdue 20 days later.
    fn ann_overdue() -> Coverage {
        let mut coverage = Coverage::new(Policy::default());
        let t0 = chrono::Utc.with_ymd_and_hms(2025, 6, 1, 9, 0, 0).unwrap();
        coverage.observe(&ann_seen(t0, true, false));
        coverage.observe(&ann_seen(t0 + chrono::Duration::days(20), false, false));
        coverage
    }

    #[test]
    fn a_registration_overdue_alert_names_the_tenant_the_sign_ins_come_from() {
        let (mut a, shared) = alerts("");
        feed(&mut a, &r(BOB, 0), false, false);
        a.review(&ann_overdue(), &Accounts::default());
        let (_, list) = shared.alerts.list(Some(Rule::RegistrationOverdue), None, 10);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].sign_in.tenant_id.as_deref(), Some(TENANT), "{:?}", list[0]);
    }

    #[test]
    fn a_user_becoming_registration_overdue_alerts_once_per_pending_period() {
        let (mut a, shared) = alerts("");
        let mut coverage = Coverage::new(Policy::default());
        let t0 = chrono::Utc.with_ymd_and_hms(2025, 6, 1, 9, 0, 0).unwrap();
        let o = ann_seen;
        coverage.observe(&o(t0, true, false));
        coverage.observe(&o(t0 + chrono::Duration::days(20), false, false));
        a.review(&coverage, &Accounts::default());
        a.review(&coverage, &Accounts::default());
        let got = made(&shared);
        assert_eq!(got, vec![(Rule::RegistrationOverdue, Severity::Warning, ANN.into(), 1)]);
        // Registered (MFA), then pending again later: a new period, a new alert.
        coverage.observe(&o(t0 + chrono::Duration::days(21), false, true));
        a.review(&coverage, &Accounts::default());
        coverage.observe(&o(t0 + chrono::Duration::days(22), true, false));
        coverage.observe(&o(t0 + chrono::Duration::days(40), false, false));
        a.review(&coverage, &Accounts::default());
        assert_eq!(made(&shared).len(), 2);
    }

    #[test]
    fn a_registration_period_overdue_longer_ago_than_max_age_does_not_page() {
        // A backfill of 2025 data, then the first `run`: the overdue periods
        // it finds are history, as old sign-ins are.
        let (mut a, shared) = alerts("");
        a.config.max_age = std::time::Duration::from_secs(86_400);
        a.review(&ann_overdue(), &Accounts::default());
        assert!(made(&shared).is_empty(), "{:?}", made(&shared));
        let text = shared.metrics.render();
        assert!(
            text.contains("mfawatch_alerts_suppressed_total{reason=\"stale\",rule=\"registration_overdue\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn the_outbox_and_rule_state_survive_a_restart_through_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        // A receiver that never answers: alerts wait in the outbox.
        let extra = "[alerts.webhook]\nurl = \"http://127.0.0.1:9/hook\"\n";
        let (mut a, _) = alerts(extra);
        feed(&mut a, &R { client: "IMAP4", mfa: false, ..r(ANN, 0) }, false, false);
        let saved = a.prepare(1).unwrap().state.unwrap();
        drop(a);
        let text = format!("[alerts]\nmax_age = \"100000d\"\n{extra}");
        let config = Config::parse(&text, &dir.path().join("t.toml")).unwrap();
        let shared = Shared::new(&config.rules());
        let mut b = shared.start(&config, BTreeMap::from([(STATE_KEY.to_string(), saved)]));
        assert_eq!(b.delivery.pending().len(), 1, "the waiting alert is still there");
        // The same sign-in read again after the restart is the same alert, counted once more.
        feed(&mut b, &R { client: "IMAP4", mfa: false, ..r(ANN, 0) }, false, false);
        assert_eq!(b.delivery.pending().len(), 1);
        assert_eq!(b.delivery.pending()[0].alert.count, 2);
    }

    /// A directory record about ANN at `minute` after 2025-06-10 09:00.
    fn directory_record(
        minute: i64,
        category: crate::decode::directory::DirCategory,
        fact: crate::decode::directory::Fact,
    ) -> crate::decode::directory::DirectoryRecord {
        use crate::decode::directory::DirectoryRecord;
        DirectoryRecord {
            category,
            shape: crate::decode::Shape::Diagnostic,
            time: chrono::Utc.with_ymd_and_hms(2025, 6, 10, 9, 0, 0).unwrap() + chrono::Duration::minutes(minute),
            id: Some(format!("audit-{minute}")),
            operation: "User registered security info".into(),
            tenant_id: Some(TENANT.into()),
            initiated_by: Some(format!("{ANN}@contoso.example")),
            fact,
        }
    }

    fn ann() -> crate::decode::directory::Principal {
        crate::decode::directory::Principal {
            id: Some(ANN.into()),
            upn: Some(format!("{ANN}@contoso.example")),
            ..Default::default()
        }
    }

    fn methods_changed(minute: i64) -> crate::decode::directory::DirectoryRecord {
        use crate::decode::directory::{DirCategory, Fact, Method, MethodChange, MethodChangeKind};
        let change = MethodChange {
            user: ann(),
            change: MethodChangeKind::Registered,
            methods: vec![Method::new("microsoftAuthenticatorPush")],
            by_admin: false,
        };
        directory_record(minute, DirCategory::AuditLogs, Fact::Methods(change))
    }

    fn role_added(
        minute: i64,
        category: crate::decode::directory::DirCategory,
    ) -> crate::decode::directory::DirectoryRecord {
        use crate::decode::directory::{Fact, Holding, Role, RoleChange};
        let change = RoleChange {
            principal: ann(),
            role: Role {
                template_id: Some("62e90394-69f5-4237-9190-012177145e10".into()),
                name: Some("Global Administrator".into()),
            },
            holding: Holding::Active,
            added: true,
            activation: false,
            until: None,
            since: None,
        };
        let mut record = directory_record(minute, category, Fact::Role(change));
        record.operation = "Add member to role".into();
        record
    }

    fn feed_directory(
        a: &mut Alerts,
        record: &crate::decode::directory::DirectoryRecord,
        privileged: bool,
        excluded: bool,
        became: Option<&str>,
    ) {
        let position = Position::File { path: "audit".into(), line: 1 };
        let upn = format!("{ANN}@contoso.example");
        a.directory(&crate::sinks::DirectoryEvent {
            record,
            applied: crate::directory::Applied::Changed,
            position: &position,
            index: 0,
            user_key: ANN,
            upn: &upn,
            privileged,
            became_privileged: became.map(str::to_owned),
            excluded,
            coverage: None,
            registration: crate::directory::Registration::Unknown,
            break_glass: Vec::new(),
            mfa_enforced: Vec::new(),
        });
    }

    #[test]
    fn a_privileged_accounts_method_change_then_a_sign_in_from_a_new_address_is_critical_in_either_order() {
        let from = |minute: i64, ip: &str| (r(ANN, minute), ip.to_owned());
        // Known address an hour before; the change at 09:00; a new address 20 minutes after.
        let sign_ins = [from(-60, "203.0.113.7"), from(20, "198.51.100.9")];
        let change = methods_changed(0);
        let feed_sign_in = |a: &mut Alerts, (record, ip): &(R, String)| {
            let json = record.json().replace("203.0.113.7", ip);
            let items = decode_message(json.as_bytes());
            let Some(Item::SignIn(s)) = items.first() else { panic!("{items:?}") };
            let verdict = classify(s, &Rules::default());
            let position = Position::File { path: "t".into(), line: 1 };
            a.sign_in(&SignInEvent {
                record: s,
                verdict: &verdict,
                position: &position,
                index: 0,
                privileged: true,
                excluded: false,
                risk: None,
                earlier: None,
            });
        };
        let rules = |shared: &Shared| -> Vec<(Rule, Severity)> {
            made(shared).into_iter().filter(|m| m.0 == Rule::PrivilegedMethodsChanged).map(|m| (m.0, m.1)).collect()
        };
        let expected = vec![
            (Rule::PrivilegedMethodsChanged, Severity::Warning),
            (Rule::PrivilegedMethodsChanged, Severity::Critical),
        ];
        // The change first.
        let (mut a, shared) = alerts("");
        feed_directory(&mut a, &change, true, false, None);
        for s in &sign_ins {
            feed_sign_in(&mut a, s);
        }
        let mut got = rules(&shared);
        got.sort_by_key(|(_, s)| *s == Severity::Critical);
        assert_eq!(got, expected);
        let critical = shared.alerts.list(Some(Rule::PrivilegedMethodsChanged), None, 10).1;
        let critical = critical.iter().find(|a| a.severity == Severity::Critical).unwrap();
        assert!(
            critical.summary.contains("198.51.100.9") && critical.summary.contains("20 minutes later"),
            "{}",
            critical.summary
        );
        // The sign-ins first (the audit hub is usually behind), and everything twice.
        let (mut b, shared_b) = alerts("");
        for s in sign_ins.iter().rev() {
            feed_sign_in(&mut b, s);
        }
        feed_directory(&mut b, &change, true, false, None);
        feed_directory(&mut b, &change, true, false, None);
        feed_sign_in(&mut b, &sign_ins[1]);
        let mut got = rules(&shared_b);
        got.sort_by_key(|(_, s)| *s == Severity::Critical);
        assert_eq!(got, expected);
        assert_eq!(
            made(&shared).iter().map(|m| &m.2).collect::<Vec<_>>(),
            made(&shared_b).iter().map(|m| &m.2).collect::<Vec<_>>()
        );
        // Only the known address after the change, or the new one two hours later: a warning only.
        let (mut c, shared_c) = alerts("");
        feed_directory(&mut c, &change, true, false, None);
        feed_sign_in(&mut c, &from(-60, "203.0.113.7"));
        feed_sign_in(&mut c, &from(10, "203.0.113.7"));
        feed_sign_in(&mut c, &from(120, "198.51.100.9"));
        assert_eq!(rules(&shared_c), vec![(Rule::PrivilegedMethodsChanged, Severity::Warning)]);
        // Not privileged: nothing.
        let (mut d, shared_d) = alerts("");
        feed_directory(&mut d, &change, false, false, None);
        assert!(rules(&shared_d).is_empty());
    }

    #[test]
    fn a_role_change_on_a_break_glass_account_and_a_new_admin_not_covered_alert_but_seeds_never_do() {
        use crate::decode::directory::DirCategory;
        let (mut a, shared) = alerts("");
        feed_directory(&mut a, &role_added(0, DirCategory::AuditLogs), true, true, Some("Global Administrator"));
        feed_directory(&mut a, &role_added(5, DirCategory::RoleAssignments), true, true, Some("Global Administrator"));
        let got: Vec<(Rule, Severity)> = made(&shared).into_iter().map(|m| (m.0, m.1)).collect();
        assert_eq!(
            got,
            vec![(Rule::BreakGlassRoleChange, Severity::Critical)],
            "a break-glass account is not also 'not covered'"
        );
        let (mut b, shared_b) = alerts("");
        feed_directory(&mut b, &role_added(0, DirCategory::AuditLogs), true, false, Some("Global Administrator"));
        feed_directory(&mut b, &role_added(0, DirCategory::AuditLogs), true, false, Some("Global Administrator"));
        feed_directory(&mut b, &role_added(5, DirCategory::RoleAssignments), true, false, Some("Global Administrator"));
        let (_, list) = shared_b.alerts.list(None, None, 10);
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!((list[0].rule, list[0].severity), (Rule::PrivilegedNotCovered, Severity::Critical));
        assert!(
            list[0].summary.contains("became privileged as Global Administrator (Add member to role, by"),
            "{}",
            list[0].summary
        );
        // The state survives a restart: the same record again is the same alert.
        let saved = b.prepare(1).unwrap().state.unwrap();
        let config = Config::parse("[alerts]\nmax_age = \"100000d\"\n", std::path::Path::new("t.toml")).unwrap();
        let mut again = shared_b.start(&config, BTreeMap::from([(STATE_KEY.to_owned(), saved)]));
        feed_directory(&mut again, &role_added(0, DirCategory::AuditLogs), true, false, Some("Global Administrator"));
        let (_, list) = shared_b.alerts.list(None, None, 10);
        assert_eq!((list.len(), list[0].count), (1, 3), "one alert, the record counted again: {list:?}");
    }

    /// The protections fixture's records, each handed to the rules as the
    /// pipeline does: after the directory took it, with the MFA policies
    /// enforced then and the break-glass account (zed) whose exclusion it changed.
    fn feed_protections(a: &mut Alerts, records: &[crate::decode::directory::DirectoryRecord]) {
        use crate::decode::directory::{Fact, PolicyChange, PolicyOp, Protection};
        const ZED: &str = "7c5b3a5e-0000-4000-8000-000000000026";
        let mut directory = crate::directory::Directory::default();
        let position = Position::File { path: "audit".into(), line: 1 };
        for record in records {
            let applied = directory.apply(record);
            let (key, upn) = record.fact.subject().and_then(|p| directory.key_of(p)).unwrap_or_default();
            let mut break_glass = Vec::new();
            let mut mfa_enforced = Vec::new();
            match &record.fact {
                Fact::Policy(PolicyChange {
                    protection: Protection::ConditionalAccess { op: PolicyOp::Updated, before: Some(b), after: Some(a) },
                    ..
                }) => {
                    let (was, is) =
                        (b.exclude_users.iter().any(|u| u == ZED), a.exclude_users.iter().any(|u| u == ZED));
                    if was != is {
                        break_glass.push((ZED.to_owned(), "zed@contoso.example".to_owned(), is));
                    }
                }
                Fact::Policy(PolicyChange { protection: Protection::SecurityDefaults { .. }, .. }) => {
                    mfa_enforced = directory.posture().mfa_enforced_at(record.time.timestamp_millis());
                }
                _ => {}
            }
            a.directory(&crate::sinks::DirectoryEvent {
                record,
                applied,
                position: &position,
                index: 0,
                user_key: &key,
                upn: &upn,
                privileged: false,
                became_privileged: None,
                excluded: key == ZED,
                coverage: None,
                registration: crate::directory::Registration::Unknown,
                break_glass,
                mfa_enforced,
            });
        }
    }

    fn protection_records() -> Vec<crate::decode::directory::DirectoryRecord> {
        let text = include_str!("../../tests/fixtures/directory/auditlogs-protections.ndjson");
        text.lines()
            .flat_map(|l| decode_message(l.as_bytes()))
            .filter_map(|i| match i {
                Item::Directory(r) => Some(*r),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn changes_that_weaken_mfa_enforcement_alert_with_actor_target_and_both_sides_once_each() {
        let records = protection_records();
        assert_eq!(records.len(), 15);
        let (mut a, shared) = alerts("");
        feed_protections(&mut a, &records);
        let (_, list) = shared.alerts.list(None, None, 100);
        let mut got: Vec<String> = list
            .iter()
            .map(|x| {
                let c = x.change.as_deref().unwrap();
                format!(
                    "{} {} {} | {} | by {} | {} -> {}",
                    x.sign_in.time,
                    x.rule.as_str(),
                    x.severity.as_str(),
                    c.target,
                    c.actor.as_deref().unwrap_or("-"),
                    c.before.as_deref().unwrap_or("-"),
                    c.after.as_deref().unwrap_or("-")
                )
            })
            .collect();
        got.reverse();
        let p1 = "Require MFA for admins";
        let p2 = "Require MFA for all users";
        let expected = [
            format!("2026-11-12T10:00:00Z mfa_policy_weakened critical | {p1} | by eve@contoso.example | enabled, grant mfa, excludes user:7c5b3a5e-0000-4000-8000-000000000026 -> report_only, grant mfa, excludes user:7c5b3a5e-0000-4000-8000-000000000026"),
            format!("2026-11-13T08:00:00Z mfa_policy_weakened critical | {p2} | by eve@contoso.example | enabled, grant mfa -> enabled, grant mfa, excludes user:7c5b3a5e-0000-4000-8000-000000000002, group:bbbbbbbb-0000-4000-8000-000000000009"),
            format!("2026-11-13T08:30:00Z break_glass_protection_change critical | zed@contoso.example in \"{p1}\" | by eve@contoso.example | excluded -> included"),
            format!("2026-11-14T11:00:00Z mfa_policy_weakened critical | {p2} | by eve@contoso.example | enabled, grant mfa, excludes user:7c5b3a5e-0000-4000-8000-000000000002, group:bbbbbbbb-0000-4000-8000-000000000009 -> -"),
            format!("2026-11-14T11:30:00Z mfa_policy_weakened critical | {p1} | by eve@contoso.example | enabled, grant mfa -> disabled, grant mfa"),
            "2026-11-15T07:00:00Z mfa_enforcement_lost critical | Security Defaults | by eve@contoso.example | enabled -> disabled".to_owned(),
            "2026-11-16T09:00:00Z per_user_mfa_disabled warning | dan@contoso.example | by eve@contoso.example | - -> disabled".to_owned(),
            "2026-11-16T09:05:00Z per_user_mfa_disabled warning | cat@contoso.example | by eve@contoso.example | enabled -> disabled".to_owned(),
        ];
        assert_eq!(got, expected, "\n{}", got.join("\n"));
        // Read again (a restart re-reading the hub, after the state was saved): the same alerts, counted again.
        let saved = a.prepare(1).unwrap().state.unwrap();
        let config = Config::parse("[alerts]\nmax_age = \"100000d\"\n", std::path::Path::new("t.toml")).unwrap();
        let mut again = shared.start(&config, BTreeMap::from([(STATE_KEY.to_owned(), saved)]));
        feed_protections(&mut again, &records);
        let (_, list) = shared.alerts.list(None, None, 100);
        assert_eq!(list.len(), expected.len(), "no new alert");
        assert!(list.iter().all(|x| x.count == 2), "{list:?}");
        // Switched off: nothing.
        let off: String =
            ["mfa_policy_weakened", "per_user_mfa_disabled", "mfa_enforcement_lost", "break_glass_protection_change"]
                .iter()
                .map(|r| format!("[alerts.rules.{r}]\nenabled = false\ncooldown = \"0s\"\n"))
                .collect();
        let (mut b, shared_b) = alerts(&off);
        feed_protections(&mut b, &records);
        assert!(made(&shared_b).is_empty());
    }

    #[test]
    fn security_defaults_off_while_an_mfa_policy_is_enforced_is_not_a_loss() {
        let records = protection_records();
        // Without the deletion and the disabling of 11-14, "Require MFA for admins" is enforced when defaults go off.
        let kept: Vec<_> = records.iter().filter(|r| !r.time.to_rfc3339().starts_with("2026-11-14")).cloned().collect();
        let (mut a, shared) = alerts("");
        feed_protections(&mut a, &kept);
        assert!(!made(&shared).iter().any(|m| m.0 == Rule::MfaEnforcementLost), "{:?}", made(&shared));
    }

    #[test]
    fn a_high_risk_user_signing_in_unremediated_after_the_threshold_alerts_once_per_cooldown() {
        use crate::directory::RiskAt;
        let at = |minute: i64| {
            (chrono::Utc.with_ymd_and_hms(2025, 6, 10, 9, 0, 0).unwrap() + chrono::Duration::minutes(minute))
                .timestamp_millis()
        };
        let high = |since_minute: i64, state: &str| RiskAt {
            level: Some("high".into()),
            state: Some(state.into()),
            detail: Some("none".into()),
            at: at(since_minute),
            since: crate::directory::risk_open(Some(state)).then(|| at(since_minute)),
        };
        let feed_risk = |a: &mut Alerts, record: &R, risk: Option<RiskAt>| {
            let json = record.json();
            let items = decode_message(json.as_bytes());
            let Some(Item::SignIn(s)) = items.first() else { panic!("{items:?}") };
            let verdict = classify(s, &Rules::default());
            let position = Position::File { path: "t".into(), line: 1 };
            let event = SignInEvent {
                record: s,
                verdict: &verdict,
                position: &position,
                index: 0,
                privileged: false,
                excluded: false,
                risk,
                earlier: None,
            };
            a.sign_in(&event);
        };
        let (mut a, shared) = alerts("");
        // At risk 30 hours before: alerts; again 2 hours later: the same alert, counted.
        feed_risk(&mut a, &r(ANN, 0), Some(high(-30 * 60, "atRisk")));
        feed_risk(&mut a, &r(ANN, 120), Some(high(-30 * 60, "atRisk")));
        // At risk only 2 hours, remediated, medium, or a failed sign-in: nothing.
        feed_risk(&mut a, &r(BOB, 0), Some(high(-120, "atRisk")));
        feed_risk(&mut a, &r(CAT, 0), Some(high(-30 * 60, "remediated")));
        feed_risk(&mut a, &r(DAN, 0), Some(RiskAt { level: Some("medium".into()), ..high(-30 * 60, "atRisk") }));
        feed_risk(&mut a, &R { code: 50126, ..r(EVE, 0) }, Some(high(-30 * 60, "confirmedCompromised")));
        let got: Vec<(Rule, Severity, String, u64)> =
            made(&shared).into_iter().filter(|m| m.0 == Rule::RiskyUserUnremediated).collect();
        assert_eq!(
            got,
            vec![(Rule::RiskyUserUnremediated, Severity::Critical, ANN.to_owned(), 2)],
            "{:?}",
            made(&shared)
        );
        let (_, list) = shared.alerts.list(Some(Rule::RiskyUserUnremediated), None, 10);
        assert!(list[0].summary.contains("30 h later"), "{}", list[0].summary);
        let c = list[0].change.as_deref().unwrap();
        assert_eq!(c.before.as_deref(), Some("high risk, atRisk since 2025-06-09T03:00:00Z"));
        // A day later (the next cooldown window): a new alert; after a restart, the same ones.
        feed_risk(&mut a, &r(ANN, 24 * 60 + 60), Some(high(-30 * 60, "atRisk")));
        let saved = a.prepare(1).unwrap().state.unwrap();
        let config = Config::parse("[alerts]\nmax_age = \"100000d\"\n", std::path::Path::new("t.toml")).unwrap();
        let mut again = shared.start(&config, BTreeMap::from([(STATE_KEY.to_owned(), saved)]));
        feed_risk(&mut again, &r(ANN, 24 * 60 + 60), Some(high(-30 * 60, "atRisk")));
        let ids: Vec<u64> =
            made(&shared).into_iter().filter(|m| m.0 == Rule::RiskyUserUnremediated).map(|m| m.3).collect();
        assert_eq!(ids, vec![2, 2], "two windows, the second read twice");
        // A threshold of 48 hours: nothing at 30.
        let (mut b, shared_b) = alerts("[alerts.rules.risky_user_unremediated]\nafter = \"48h\"\n");
        feed_risk(&mut b, &r(ANN, 0), Some(high(-30 * 60, "atRisk")));
        assert!(made(&shared_b).is_empty());
    }
}
