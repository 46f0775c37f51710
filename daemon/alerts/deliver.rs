//! deliver: the alert outbox and the thread that empties it into the
//! receivers — every Alertmanager of an HA pair (API v2), a JSON webhook,
//! a JSON-lines file.
//!
//! The pipeline only ever pushes into the outbox (bounded), so a receiver
//! that is down or slow never holds up ingestion. An alert leaves the outbox
//! once every receiver has taken it; each receiver retries with exponential
//! backoff (1 s doubling to 5 min). The outbox is part of the checkpoint
//! snapshot: an alert waiting at a crash is sent after the restart.
//!
//! Lock discipline: the outbox mutex is held to push, bump, copy or take a
//! batch out, never while sending.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::Alert;
use crate::config::Config;
use crate::logging::Throttle;
use crate::pipeline::Shared;
use crate::secrets::{self, Secret};

/// An alert not yet taken by every receiver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub alert: Alert,
    /// Receivers (bit i: receiver i) that have not taken it yet.
    pub targets: u8,
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
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A receiver.
pub(crate) enum Target {
    Alertmanager { url: String },
    Webhook { url: String, token: Option<Secret> },
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

    fn name(&self) -> String {
        match self {
            Target::Alertmanager { url } | Target::Webhook { url, .. } => url.clone(),
            Target::File { path, .. } => path.display().to_string(),
        }
    }
}

/// The receivers as configured; a webhook token comes from a systemd
/// credential or the environment, never the configuration file.
pub(crate) fn targets(config: &Config) -> anyhow::Result<Vec<Target>> {
    let a = &config.alerts;
    let mut targets = Vec::new();
    if let Some(am) = &a.alertmanager {
        for url in &am.urls {
            targets.push(Target::Alertmanager { url: url.trim_end_matches('/').to_owned() });
        }
    }
    if let Some(w) = &a.webhook {
        let token = if w.token_credential.is_some() || w.token_env.is_some() {
            Some(
                secrets::read(w.token_credential.as_deref(), w.token_env.as_deref())
                    .map_err(|e| anyhow::anyhow!("alerts.webhook token: {e}"))?,
            )
        } else {
            None
        };
        targets.push(Target::Webhook { url: w.url.clone(), token });
    }
    if let Some(path) = &a.log_file {
        targets.push(Target::File { path: path.clone(), file: None });
    }
    Ok(targets)
}

/// The outbox's owner on the pipeline side; dropping it stops the thread.
pub struct Delivery {
    cell: Arc<OutboxCell>,
    all: u8,
    max: usize,
    shared: Arc<Shared>,
    throttle: Throttle,
    thread: Option<JoinHandle<()>>,
}

impl Delivery {
    /// Starts delivering to the configured receivers, beginning with what a
    /// previous run left in the outbox.
    pub fn start(config: &Config, shared: Arc<Shared>, outbox: Vec<Pending>) -> anyhow::Result<Delivery> {
        let targets = targets(config)?;
        let all = ((1u16 << targets.len()) - 1) as u8;
        let cell = Arc::new(OutboxCell::default());
        {
            let mut o = cell.lock();
            o.pending = outbox
                .into_iter()
                .map(|mut p| {
                    p.targets &= all;
                    p
                })
                .filter(|p| p.targets != 0)
                .collect();
            shared.metrics.alert_outbox(o.pending.len());
        }
        if !cell.lock().pending.is_empty() {
            tracing::info!(
                alerts = cell.lock().pending.len(),
                "alerts from before the restart are waiting to be delivered"
            );
        }
        let thread = if targets.is_empty() {
            tracing::info!("no alert receiver configured: alerts are listed at /api/v1/alerts only");
            None
        } else {
            let (cell, shared, api) = (cell.clone(), shared.clone(), Sender::new(config));
            Some(std::thread::Builder::new().name("alerts".into()).spawn(move || run(cell, targets, shared, api))?)
        };
        Ok(Delivery {
            cell,
            all,
            max: config.alerts.outbox_max as usize,
            shared,
            throttle: Throttle::default(),
            thread,
        })
    }

    /// Queues an alert for every receiver.
    pub fn push(&self, alert: Alert) {
        if self.all == 0 {
            return;
        }
        let mut o = self.cell.lock();
        if o.pending.len() >= self.max {
            drop(o);
            self.shared.metrics.alert_suppressed(alert.rule, "outbox_full");
            if let Some(held_back) = self.throttle.admit("outbox full") {
                tracing::error!(
                    max = self.max,
                    held_back,
                    "the alert outbox is full (receivers down for long): new alerts are counted, not sent"
                );
            }
            return;
        }
        o.pending.push_back(Pending { alert, targets: self.all });
        self.shared.metrics.alert_outbox(o.pending.len());
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
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What a receiver's request needs besides the alerts.
struct Sender {
    agent: ureq::Agent,
    resolve_after: chrono::TimeDelta,
    api_url: String,
}

impl Sender {
    fn new(config: &Config) -> Sender {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .user_agent(concat!("mfawatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        let api_url = config.alerts.api_url.clone().unwrap_or_else(|| format!("http://{}", config.http.listen));
        Sender {
            agent,
            resolve_after: chrono::TimeDelta::from_std(config.alerts.resolve_after)
                .unwrap_or(chrono::TimeDelta::hours(1)),
            api_url: api_url.trim_end_matches('/').to_owned(),
        }
    }

    fn send(&self, target: &mut Target, alerts: &[Alert]) -> Result<(), String> {
        match target {
            Target::Alertmanager { url } => {
                let body: Vec<Value> = alerts.iter().map(|a| self.alertmanager(a)).collect();
                self.post(&format!("{url}/api/v2/alerts"), None, &Value::Array(body))
            }
            Target::Webhook { url, token } => {
                let body = json!({ "version": 1, "source": "mfawatch", "alerts": alerts });
                self.post(url, token.as_ref(), &body)
            }
            Target::File { path, file } => {
                let write = |file: &mut Option<File>| -> std::io::Result<()> {
                    if file.is_none() {
                        *file = Some(OpenOptions::new().create(true).append(true).open(&*path)?);
                    }
                    let f = file.as_mut().expect("opened");
                    let mut lines = Vec::new();
                    for a in alerts {
                        serde_json::to_writer(&mut lines, a)?;
                        lines.push(b'\n');
                    }
                    f.write_all(&lines)?;
                    f.sync_data()
                };
                write(file).map_err(|e| {
                    *file = None;
                    e.to_string()
                })
            }
        }
    }

    fn post(&self, url: &str, token: Option<&Secret>, body: &Value) -> Result<(), String> {
        let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let mut request = self.agent.post(url).header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {}", token.expose()));
        }
        match request.send(&bytes[..]) {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(mut response) => {
                let text = response.body_mut().read_to_string().unwrap_or_default();
                Err(format!("HTTP {}: {}", response.status(), text.chars().take(200).collect::<String>()))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// One alert as Alertmanager takes it. Labels identify it (the same
    /// alert from two daemons is one alert there); annotations carry the rest.
    fn alertmanager(&self, a: &Alert) -> Value {
        let f = &a.sign_in;
        let mut labels = Map::new();
        let mut label = |k: &str, v: Option<&str>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                labels.insert(k.into(), Value::String(v.to_owned()));
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
        let mut annotations = Map::new();
        let mut note = |k: &str, v: Option<String>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                annotations.insert(k.into(), Value::String(v));
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
        note("labels", Some(f.labels.join(",")));
        note("mfa_failures", a.mfa_failures.map(|n| n.to_string()));
        note("users", Some(a.users.join(", ")));
        let now = chrono::Utc::now();
        let starts = chrono::DateTime::parse_from_rfc3339(&f.time).map_or(now, |t| t.with_timezone(&chrono::Utc));
        let ends = starts.max(now) + self.resolve_after;
        let generator = match (&f.user_key, a.rule) {
            (Some(key), _) => format!("{}/api/v1/users/{key}", self.api_url),
            (None, rule) => format!("{}/api/v1/alerts?rule={}", self.api_url, rule.as_str()),
        };
        json!({
            "labels": labels,
            "annotations": annotations,
            "startsAt": starts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "endsAt": ends.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "generatorURL": generator,
        })
    }
}

/// The delivery thread: sends what waits to each receiver that is not
/// backing off, clears what was taken, sleeps until there is more.
fn run(cell: Arc<OutboxCell>, mut targets: Vec<Target>, shared: Arc<Shared>, sender: Sender) {
    let throttle = Throttle::default();
    let mut next_try = vec![Instant::now(); targets.len()];
    let mut backoff = vec![FIRST_BACKOFF; targets.len()];
    loop {
        let o = cell.lock();
        if o.stop {
            return;
        }
        let now = Instant::now();
        let due: Vec<(usize, Vec<Alert>)> = (0..targets.len())
            .filter(|&i| next_try[i] <= now)
            .map(|i| {
                let bit = 1u8 << i;
                (i, o.pending.iter().filter(|p| p.targets & bit != 0).take(BATCH).map(|p| p.alert.clone()).collect())
            })
            .filter(|(_, batch): &(usize, Vec<Alert>)| !batch.is_empty())
            .collect();
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
            let result = sender.send(target, &batch);
            let kind = target.kind();
            match result {
                Ok(()) => {
                    shared.metrics.alert_delivered(kind, "ok", batch.len());
                    backoff[i] = FIRST_BACKOFF;
                    let bit = 1u8 << i;
                    let mut o = cell.lock();
                    for p in o.pending.iter_mut().filter(|p| batch.iter().any(|a| a.id == p.alert.id)) {
                        p.targets &= !bit;
                    }
                    o.pending.retain(|p| p.targets != 0);
                    shared.metrics.alert_outbox(o.pending.len());
                }
                Err(e) => {
                    shared.metrics.alert_delivered(kind, "error", batch.len());
                    next_try[i] = Instant::now() + backoff[i];
                    if let Some(held_back) = throttle.admit(&target.name()) {
                        tracing::warn!(receiver = %target.name(), error = %e, retry_in = ?backoff[i], held_back, "alert delivery failed; the alerts wait in the outbox");
                    }
                    backoff[i] = (backoff[i] * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
