//! deliver: the alert outbox and the thread that empties it into the
//! receivers — every Alertmanager of an HA pair (API v2), a JSON webhook,
//! a JSON-lines file.
//!
//! The pipeline only ever pushes into the outbox (bounded), so a receiver
//! that is down or slow never holds up ingestion. An alert leaves the outbox
//! once every receiver it was made for has taken it; each receiver retries
//! with exponential backoff (1 s doubling to 5 min). The outbox is part of
//! the checkpoint snapshot: an alert waiting at a crash is sent after the
//! restart.
//!
//! Receivers are known by what they are (kind and address), not by their
//! place in the configuration: an alert waiting for a receiver that is then
//! removed from the configuration is dropped for it (counted), and one added
//! gets the alerts made from then on.
//!
//! A receiver that refuses a batch as such (a 4xx other than 408/429: one
//! alert it cannot take, say) gets it split in halves until the alert it
//! refuses is found; that one is set aside for that receiver (counted,
//! logged with its id, kept in `alerts-rejected.ndjson` in the state
//! directory) and the rest go on. Redirects are never followed: a POST
//! redirected is re-sent as a GET without its alerts, so a 3xx is an error
//! naming the new address.
//!
//! Lock discipline: the outbox mutex is held to push, bump, copy or take a
//! batch out, never while sending.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::Alert;
use crate::config::Config;
use crate::events::{AlertRejected, DeliveryFailed, Events, OutboxFull};
use crate::metrics::Metrics;
use crate::secrets::{self, Secret};

/// An alert not yet taken by every receiver it was made for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub alert: Alert,
    /// The receivers ([`Target::id`]) that have not taken it yet.
    pub targets: Vec<String>,
    /// When it stops firing in Alertmanager (`endsAt`, Unix seconds): fixed
    /// the first time it is sent, so that every Alertmanager of a pair, and
    /// a re-send after a restart, say the same.
    pub ends_at: Option<i64>,
}

/// The outbox and the condition the delivery thread waits on.
#[derive(Default)]
pub struct OutboxCell {
    state: Mutex<Outbox>,
    wake: Condvar,
}

#[derive(Default)]
struct Outbox {
    pending: VecDeque<Pending>,
    stop: bool,
}

impl OutboxCell {
    fn lock(&self) -> MutexGuard<'_, Outbox> {
        crate::locks::lock(&self.state)
    }
}

/// A receiver.
pub(crate) enum Target {
    Alertmanager { url: String },
    Webhook { url: Secret, token: Option<Secret> },
    File { path: PathBuf, file: Option<File> },
}

impl Target {
    /// The `sink` label of its delivery metrics.
    fn kind(&self) -> &'static str {
        match self {
            Target::Alertmanager { .. } => "alertmanager",
            Target::Webhook { .. } => "webhook",
            Target::File { .. } => "file",
        }
    }

    /// What it is called in logs: never a credential in its URL.
    pub(crate) fn name(&self) -> String {
        match self {
            Target::Alertmanager { url } => crate::outbound::redact_url(url),
            Target::Webhook { url, .. } => crate::outbound::redact_url(url.expose()),
            Target::File { path, .. } => path.display().to_string(),
        }
    }

    /// What identifies it across restarts and configuration changes: its
    /// kind and address (hashed: the address may hold a secret).
    pub(crate) fn id(&self) -> String {
        use sha2::Digest as _;
        let address = match self {
            Target::Alertmanager { url } => url.clone(),
            Target::Webhook { url, .. } => url.expose().to_owned(),
            Target::File { path, .. } => path.display().to_string(),
        };
        let digest = sha2::Sha256::digest(format!("{}\u{0}{address}", self.kind()).as_bytes());
        format!("{}-{}", self.kind(), digest[..8].iter().map(|b| format!("{b:02x}")).collect::<String>())
    }
}

/// The receivers as configured; a webhook's token, and its URL when it is a
/// secret, come from a systemd credential or the environment, never the
/// configuration file.
pub(crate) fn targets(config: &Config) -> anyhow::Result<Vec<Target>> {
    let a = &config.alerts;
    let mut targets = Vec::new();
    if let Some(am) = &a.alertmanager {
        for url in &am.urls {
            targets.push(Target::Alertmanager { url: url.trim_end_matches('/').to_owned() });
        }
    }
    if let Some(w) = &a.webhook {
        let url = match &w.url {
            Some(url) => Secret::new(url.clone()),
            None => secrets::read(w.url_credential.as_deref(), w.url_env.as_deref())
                .map_err(|e| anyhow::anyhow!("alerts.webhook URL: {e}"))?,
        };
        let token = if w.token_credential.is_some() || w.token_env.is_some() {
            Some(
                secrets::read(w.token_credential.as_deref(), w.token_env.as_deref())
                    .map_err(|e| anyhow::anyhow!("alerts.webhook token: {e}"))?,
            )
        } else {
            None
        };
        let secret = token.is_some() || w.url.is_none();
        crate::outbound::check_secret_url("alerts.webhook", url.expose(), secret, w.plain_http_loopback)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        targets.push(Target::Webhook { url, token });
    }
    if let Some(path) = &a.log_file {
        targets.push(Target::File { path: path.clone(), file: None });
    }
    Ok(targets)
}

/// The outbox's owner on the pipeline side; dropping it stops the thread.
pub struct Delivery {
    cell: Arc<OutboxCell>,
    ids: Vec<String>,
    max: usize,
    metrics: Arc<Metrics>,
    events: Events,
    thread: Option<JoinHandle<()>>,
}

impl Delivery {
    /// Starts delivering to the configured receivers, beginning with what a
    /// previous run left in the outbox: for the receivers still configured.
    pub fn start(config: &Config, metrics: Arc<Metrics>, outbox: Vec<Pending>) -> anyhow::Result<Delivery> {
        let targets = targets(config)?;
        let ids: Vec<String> = targets.iter().map(Target::id).collect();
        let cell = Arc::new(OutboxCell::default());
        let mut removed = 0;
        {
            let mut o = cell.lock();
            for mut p in outbox {
                let before = p.targets.len();
                p.targets.retain(|t| ids.contains(t));
                if p.targets.len() < before {
                    removed += before - p.targets.len();
                    metrics.alert_suppressed(p.alert.rule.as_str(), "receiver_removed");
                }
                if !p.targets.is_empty() {
                    o.pending.push_back(p);
                }
            }
            metrics.alert_outbox(o.pending.len());
            if !o.pending.is_empty() {
                tracing::info!(alerts = o.pending.len(), "alerts from before the restart are waiting to be delivered");
            }
        }
        if removed > 0 {
            tracing::warn!(
                copies = removed,
                "alerts waiting for receivers that are no longer configured are dropped for them (the other receivers still get theirs)"
            );
        }
        let thread = if targets.is_empty() {
            tracing::info!("no alert receiver configured: alerts are listed at /api/v1/alerts only");
            None
        } else {
            let (cell, metrics, sender) = (cell.clone(), metrics.clone(), Sender::new(config));
            Some(
                std::thread::Builder::new()
                    .name("alerts".into())
                    .spawn(move || run(cell, targets, &metrics, sender))?,
            )
        };
        Ok(Delivery {
            cell,
            ids,
            max: config.alerts.outbox_max as usize,
            events: Events::new(metrics.clone()),
            metrics,
            thread,
        })
    }

    /// Queues an alert for every receiver.
    pub fn push(&self, alert: Alert) {
        if self.ids.is_empty() {
            return;
        }
        let mut o = self.cell.lock();
        if o.pending.len() >= self.max {
            drop(o);
            self.events.emit(OutboxFull { rule: alert.rule.as_str(), max: self.max });
            return;
        }
        o.pending.push_back(Pending { alert, targets: self.ids.clone(), ends_at: None });
        self.metrics.alert_outbox(o.pending.len());
        drop(o);
        self.cell.wake.notify_one();
    }

    /// A repeat inside a cooldown, while its alert still waits: it goes out counted.
    pub fn bump(&self, id: &str) {
        let mut o = self.cell.lock();
        if let Some(p) = o.pending.iter_mut().find(|p| p.alert.id == id) {
            p.alert.count += 1;
        }
    }

    /// What waits, for the snapshot.
    pub fn pending(&self) -> Vec<Pending> {
        self.cell.lock().pending.iter().cloned().collect()
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.cell.lock().stop = true;
        self.cell.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Alerts per request.
const BATCH: usize = 64;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// A receiver that is down is tried again at most this long apart, so that
/// what waited for it goes out within seconds of its return (a long outage
/// must not leave the outbox waiting minutes more); a try costs one request.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Alertmanager keeps label values as they come; past this a value is cut
/// (a hostile user name must not make every request huge).
const MAX_LABEL: usize = 512;
const MAX_ANNOTATION: usize = 4096;

/// Why a receiver did not take a batch.
#[derive(Debug)]
enum Refusal {
    /// It refuses these alerts as they are (a 4xx other than 408/429):
    /// sending them again will not help.
    Rejected(String),
    /// It could not take them now (down, 5xx, timeout, redirect, disk): try again later.
    Failed(String),
}

/// The least time a break-glass alert fires in Alertmanager.
const BREAK_GLASS_FIRING: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// What a receiver's request needs besides the alerts.
struct Sender {
    agent: ureq::Agent,
    resolve_after: chrono::TimeDelta,
    api_url: String,
    /// Where alerts a receiver refuses are kept.
    rejected: PathBuf,
}

impl Sender {
    fn new(config: &Config) -> Sender {
        Sender {
            agent: crate::outbound::agent(Duration::from_secs(10)),
            resolve_after: chrono::TimeDelta::from_std(config.alerts.resolve_after)
                .unwrap_or(chrono::TimeDelta::hours(1)),
            api_url: config.api_url(),
            rejected: config.checkpoint.dir.join("alerts-rejected.ndjson"),
        }
    }

    fn send(&self, target: &mut Target, alerts: &[Pending]) -> Result<(), Refusal> {
        match target {
            Target::Alertmanager { url } => {
                let body: Vec<Value> = alerts.iter().map(|p| self.alertmanager(p)).collect();
                self.post(&format!("{url}/api/v2/alerts"), None, &Value::Array(body))
            }
            Target::Webhook { url, token } => {
                let alerts: Vec<&Alert> = alerts.iter().map(|p| &p.alert).collect();
                let body = json!({ "version": 1, "source": "mfawatch", "alerts": alerts });
                self.post(url.expose(), token.as_ref(), &body)
            }
            Target::File { path, file } => {
                let write = |file: &mut Option<File>| -> std::io::Result<()> {
                    if file.is_none() {
                        *file = Some(crate::durable::open_append(path)?);
                    }
                    let f = file.as_mut().expect("opened");
                    let mut lines = Vec::new();
                    for p in alerts {
                        serde_json::to_writer(&mut lines, &p.alert)?;
                        lines.push(b'\n');
                    }
                    f.write_all(&lines)?;
                    f.sync_data()
                };
                write(file).map_err(|e| {
                    *file = None;
                    Refusal::Failed(e.to_string())
                })
            }
        }
    }

    fn post(&self, url: &str, token: Option<&Secret>, body: &Value) -> Result<(), Refusal> {
        let bytes = serde_json::to_vec(body).map_err(|e| Refusal::Failed(e.to_string()))?;
        let mut request = self.agent.post(url).header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {}", token.expose()));
        }
        let mut response = request.send(&bytes[..]).map_err(|e| Refusal::Failed(redact_error(&e.to_string(), url)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status.is_redirection() {
            let to = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("");
            return Err(Refusal::Failed(format!(
                "HTTP {status}: the receiver redirects to {} (redirects are not followed: the alerts would be lost); configure that address",
                crate::outbound::redact_url(to)
            )));
        }
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let message = format!("HTTP {}: {}", status, text.chars().take(200).collect::<String>());
        match status.as_u16() {
            408 | 429 => Err(Refusal::Failed(message)),
            400..=499 => Err(Refusal::Rejected(message)),
            _ => Err(Refusal::Failed(message)),
        }
    }

    /// How long an alert of `rule` fires: `alerts.resolve_after`; a
    /// break-glass sign-in at least [`BREAK_GLASS_FIRING`], since nobody
    /// acting on it is no reason for it to go away (silence it once confirmed).
    fn firing_for(&self, rule: super::Rule) -> chrono::TimeDelta {
        match rule {
            super::Rule::BreakGlassSignin
            | super::Rule::BreakGlassRoleChange
            | super::Rule::BreakGlassProtectionChange => self.resolve_after.max(BREAK_GLASS_FIRING),
            _ => self.resolve_after,
        }
    }

    /// When `p` stops firing in Alertmanager: fixed at its first sending;
    /// an Alertmanager that gets it only after that time (down for longer
    /// than `alerts.resolve_after`) gets it firing for `resolve_after` from now,
    /// so the page still reaches someone.
    fn ends_at(&self, p: &Pending) -> chrono::DateTime<chrono::Utc> {
        let now = chrono::Utc::now();
        match p.ends_at.and_then(|t| chrono::DateTime::from_timestamp(t, 0)) {
            Some(ends) if ends > now => ends,
            _ => now + self.firing_for(p.alert.rule),
        }
    }

    /// One alert as Alertmanager takes it. Labels identify it (the same
    /// alert from two daemons is one alert there); annotations carry the rest.
    fn alertmanager(&self, p: &Pending) -> Value {
        let a = &p.alert;
        let f = &a.sign_in;
        let mut labels = Map::new();
        let mut label = |k: &str, v: Option<&str>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                labels.insert(k.into(), Value::String(bounded(v, MAX_LABEL)));
            }
        };
        label("alertname", Some(a.rule.alertname()));
        label("severity", Some(a.severity.as_str()));
        label("rule", Some(a.rule.as_str()));
        label("alert_id", Some(&a.id));
        label("source", Some("mfawatch"));
        if a.rule == super::Rule::LegacyAuthAttempt {
            label("ip", f.ip.as_deref());
        } else {
            label("user", f.user_key.as_deref());
            label("upn", f.upn.as_deref());
        }
        label("tenant_id", f.tenant_id.as_deref());
        // A policy's id is no person's: the label that groups its alerts.
        label("policy", a.change.as_ref().and_then(|c| c.policy_id.as_deref()));
        let mut annotations = Map::new();
        let mut note = |k: &str, v: Option<String>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                annotations.insert(k.into(), Value::String(bounded(&v, MAX_ANNOTATION)));
            }
        };
        note("summary", Some(a.summary.clone()));
        note("event_time", Some(f.time.clone()));
        note("count", Some(a.count.to_string()));
        note("display_name", f.display_name.clone());
        note("user_type", f.user_type.clone());
        note("privileged", Some(f.privileged.to_string()));
        note("app", f.app.clone());
        note("resource", f.resource.clone());
        note("client_app", f.client_app.clone());
        note("user_agent", f.user_agent.clone());
        note("ropc", f.ropc.then(|| "true".to_owned()));
        note("ip", f.ip.clone());
        note("country", f.country.clone());
        note("city", f.city.clone());
        note("record_id", f.record_id.clone());
        note("correlation_id", f.correlation_id.clone());
        note("labels", Some(f.labels.join(";")));
        note("mfa_failures", a.mfa_failures.map(|n| n.to_string()));
        note("storm_alert_id", a.storm_alert_id().map(str::to_owned));
        note("users", Some(a.users.join(", ")));
        if let Some(c) = &a.change {
            note("actor", c.actor.clone());
            note("target", Some(c.target.clone()));
            note("before", c.before.clone());
            note("after", c.after.clone());
            note("operation", Some(c.operation.clone()));
        }
        let now = chrono::Utc::now();
        let starts = chrono::DateTime::parse_from_rfc3339(&f.time).map_or(now, |t| t.with_timezone(&chrono::Utc));
        json!({
            "labels": labels,
            "annotations": annotations,
            "startsAt": starts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "endsAt": self.ends_at(p).max(starts).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "generatorURL": generator_url(&self.api_url, a),
        })
    }

    /// Sends `batch` to `target`; a batch the receiver refuses as such is
    /// split until the alerts it refuses are found. Returns the refused
    /// ones with the reason, or the error that made the rest wait.
    fn deliver(&self, target: &mut Target, batch: &[Pending]) -> Result<Vec<(String, String)>, String> {
        match self.send(target, batch) {
            Ok(()) => Ok(Vec::new()),
            Err(Refusal::Failed(e)) => Err(e),
            Err(Refusal::Rejected(e)) if batch.len() == 1 => Ok(vec![(batch[0].alert.id.clone(), e)]),
            Err(Refusal::Rejected(_)) => {
                let (first, second) = batch.split_at(batch.len() / 2);
                let mut refused = self.deliver(target, first)?;
                refused.extend(self.deliver(target, second)?);
                Ok(refused)
            }
        }
    }

    /// Keeps an alert a receiver refused, with why, in `alerts-rejected.ndjson`.
    fn set_aside(&self, receiver: &str, alert: &Alert, reason: &str) -> std::io::Result<()> {
        let mut file = crate::durable::open_append(&self.rejected)?;
        let line = json!({ "receiver": receiver, "reason": reason, "alert": alert });
        let mut bytes = serde_json::to_vec(&line)?;
        bytes.push(b'\n');
        file.write_all(&bytes)?;
        file.sync_data()
    }
}

/// `text` cut to at most `max` bytes, at a character boundary, marked when cut.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// An HTTP client error, without the URL's secrets (ureq quotes the URL).
fn redact_error(error: &str, url: &str) -> String {
    error.replace(url, &crate::outbound::redact_url(url))
}

/// The link from an alert into this daemon's API: the user (its key
/// percent-encoded as one path segment), or the rule's alerts.
pub fn generator_url(api_url: &str, a: &Alert) -> String {
    let Ok(mut url) = url::Url::parse(api_url) else { return api_url.to_owned() };
    let user = a.sign_in.user_key.as_deref().filter(|k| !k.is_empty());
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().push("api").push("v1");
        match user {
            Some(key) => {
                path.push("users").push(key);
            }
            None => {
                path.push("alerts");
            }
        }
    }
    if user.is_none() {
        url.query_pairs_mut().append_pair("rule", a.rule.as_str());
    }
    url.to_string()
}

/// The delivery thread: sends what waits to each receiver that is not
/// backing off, clears what was taken, sleeps until there is more.
fn run(cell: Arc<OutboxCell>, mut targets: Vec<Target>, metrics: &Arc<Metrics>, sender: Sender) {
    let events = Events::new(metrics.clone());
    let ids: Vec<String> = targets.iter().map(Target::id).collect();
    let mut next_try = vec![Instant::now(); targets.len()];
    let mut backoff = vec![FIRST_BACKOFF; targets.len()];
    loop {
        let mut o = cell.lock();
        if o.stop {
            return;
        }
        let now = Instant::now();
        let mut due: Vec<(usize, Vec<Pending>)> = Vec::new();
        for (i, id) in ids.iter().enumerate().filter(|&(i, _)| next_try[i] <= now) {
            let mut batch = Vec::new();
            for p in o.pending.iter_mut().filter(|p| p.targets.contains(id)).take(BATCH) {
                // Fixed the first time it goes out, for every receiver after.
                p.ends_at.get_or_insert_with(|| (chrono::Utc::now() + sender.firing_for(p.alert.rule)).timestamp());
                batch.push(p.clone());
            }
            if !batch.is_empty() {
                due.push((i, batch));
            }
        }
        if due.is_empty() {
            let wait = next_try
                .iter()
                .filter(|&&t| t > now)
                .map(|&t| t - now)
                .min()
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            let _ = cell.wake.wait_timeout(o, wait);
            continue;
        }
        drop(o);
        for (i, batch) in due {
            let target = &mut targets[i];
            let kind = target.kind();
            match sender.deliver(target, &batch) {
                Ok(refused) => {
                    crate::testhooks::pause("deliver-before-clear");
                    metrics.alert_delivered(kind, "ok", batch.len() - refused.len());
                    backoff[i] = FIRST_BACKOFF;
                    for (id, reason) in &refused {
                        let alert = &batch.iter().find(|p| &p.alert.id == id).expect("from the batch").alert;
                        let kept = sender.set_aside(&target.name(), alert, reason);
                        events.emit(AlertRejected {
                            receiver: &target.name(),
                            kind,
                            id,
                            rule: alert.rule.as_str(),
                            reason,
                            kept_in: &sender.rejected,
                            kept: kept.is_ok(),
                        });
                    }
                    let mut o = cell.lock();
                    for p in o.pending.iter_mut().filter(|p| batch.iter().any(|b| b.alert.id == p.alert.id)) {
                        p.targets.retain(|t| t != &ids[i]);
                    }
                    o.pending.retain(|p| !p.targets.is_empty());
                    metrics.alert_outbox(o.pending.len());
                }
                Err(e) => {
                    next_try[i] = Instant::now() + backoff[i];
                    events.emit(DeliveryFailed {
                        id: &ids[i],
                        receiver: &target.name(),
                        kind,
                        alerts: batch.len(),
                        error: e,
                        retry_in: backoff[i],
                    });
                    backoff[i] = (backoff[i] * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{Rule, Severity, SignInFacts};

    fn alert(user: Option<&str>) -> Alert {
        Alert {
            id: "abc".into(),
            rule: Rule::LegacyAuthSuccess,
            severity: Severity::Warning,
            summary: String::new(),
            count: 1,
            mfa_failures: None,
            users: Vec::new(),
            held_back: Vec::new(),
            created_at: String::new(),
            sign_in: SignInFacts { user_key: user.map(str::to_owned), ..SignInFacts::default() },
            change: None,
        }
    }

    #[test]
    fn links_percent_encode_the_user_whatever_it_holds() {
        let url = generator_url("https://mfawatch.example/soc/", &alert(Some("x%zz@contoso.example/../a b?c#d")));
        assert_eq!(url, "https://mfawatch.example/soc/api/v1/users/x%25zz@contoso.example%2F..%2Fa%20b%3Fc%23d");
        assert!(url::Url::parse(&url).is_ok());
        let url = generator_url("http://127.0.0.1:9464", &alert(None));
        assert_eq!(url, "http://127.0.0.1:9464/api/v1/alerts?rule=legacy_auth_success");
    }

    #[test]
    fn a_break_glass_page_does_not_resolve_itself_an_hour_later() {
        let config = Config::default();
        let sender = Sender::new(&config);
        let pending = |rule| Pending {
            alert: Alert { rule, severity: Severity::Critical, ..alert(Some("bg@contoso.example")) },
            targets: Vec::new(),
            ends_at: None,
        };
        let now = chrono::Utc::now();
        let firing = |rule| sender.ends_at(&pending(rule)) - now;
        assert!(firing(Rule::BreakGlassSignin) >= chrono::TimeDelta::days(7) - chrono::TimeDelta::minutes(1));
        let other = firing(Rule::LegacyAuthSuccess);
        assert!(other < chrono::TimeDelta::minutes(61) && other > chrono::TimeDelta::minutes(59), "{other}");
    }

    #[test]
    fn an_mfa_fatigue_alert_after_a_denial_storm_names_the_storms_alert_in_an_annotation() {
        let sender = Sender::new(&Config::default());
        let storm = "0123456789abcdef0123456789abcdef";
        let annotations = |rule, summary: String| {
            let p =
                Pending { alert: Alert { rule, summary, ..alert(Some("ann")) }, targets: Vec::new(), ends_at: None };
            sender.alertmanager(&p)["annotations"].clone()
        };
        let summary = format!("MFA fatigue: … then a successful sign-in{}{storm})", crate::alerts::AFTER_STORM);
        assert_eq!(annotations(Rule::MfaFatigue, summary.clone())["storm_alert_id"], storm);
        assert!(
            annotations(Rule::MfaFatigue, "MFA fatigue: … then a successful sign-in".into())["storm_alert_id"]
                .is_null()
        );
        assert!(
            annotations(Rule::LegacyAuthSuccess, summary)["storm_alert_id"].is_null(),
            "only mfa_fatigue names one"
        );
    }

    #[test]
    fn long_label_values_are_cut_at_a_character_boundary() {
        let long = "é".repeat(1000);
        let cut = bounded(&long, MAX_LABEL);
        assert!(cut.len() <= MAX_LABEL && cut.ends_with('…'), "{}", cut.len());
        assert_eq!(bounded("short", MAX_LABEL), "short");
    }

    #[test]
    fn a_receiver_is_known_by_its_kind_and_address_not_its_place() {
        let am = Target::Alertmanager { url: "http://am:9093".into() };
        let file = Target::File { path: "/var/log/mfawatch/alerts.ndjson".into(), file: None };
        assert_ne!(am.id(), file.id());
        assert_eq!(am.id(), Target::Alertmanager { url: "http://am:9093".into() }.id());
        assert!(am.id().starts_with("alertmanager-") && !am.id().contains("am:9093"));
    }
}
