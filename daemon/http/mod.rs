//! http: /metrics, /healthz, /readyz and the /api/v1 coverage API.
//!
//! Reads the shared state (coverage, metrics, health, alerts) and never
//! writes it. Binds loopback by default: the API shows user names; on any
//! other address it takes a bearer token ([`auth`]). No configuration and no
//! secret is ever part of a response. Handlers read the state inside a
//! blocking task and let the lock go before the response is written, so a
//! slow client never holds up the pipeline; [`server`] bounds connections,
//! request heads and request time.

pub mod auth;
mod protections;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::coverage::{State as CoverageState, Summary, UserQuery, UserType};

/// What the HTTP server reads: the coverage state, the metrics, readiness,
/// the recent alerts. It never writes any of them.
#[derive(Clone)]
pub struct Served {
    pub coverage: Arc<crate::coverage::Handle>,
    pub directory: Arc<crate::directory::Handle>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub health: Arc<crate::health::Health>,
    pub recent: Arc<crate::alerts::Recent>,
}

/// What the handlers share.
#[derive(Clone)]
struct App {
    shared: Served,
    tokens: auth::Tokens,
    /// The history folder, when there is one: a user's notable sign-ins come from it.
    history: Option<(std::path::PathBuf, u32)>,
    /// The last summary and when it was made: a large state is summarised at
    /// most once a second however often it is scraped.
    summary: Arc<Mutex<Option<(Instant, Summary)>>>,
    /// Besides loopback names, the host people reach the API by (`alerts.api_url`).
    api_host: Option<String>,
    /// `privacy.pseudonymise`: the state knows users by their pseudonyms only.
    pseudonymised: bool,
}

impl App {
    /// A summary at most a second old (for scrapes). `None` only if
    /// summarising failed (a bug): then nothing is cached.
    async fn summary(&self) -> Option<Summary> {
        let mut cached = self.summary.lock().await;
        if let Some((at, summary)) = cached.as_ref()
            && at.elapsed() < Duration::from_secs(1)
        {
            return Some(summary.clone());
        }
        self.fresh_summary_locked(&mut cached).await
    }

    /// A summary of the state as it is now (for the API: what it says agrees
    /// with /api/v1/users asked right after).
    async fn fresh_summary(&self) -> Option<Summary> {
        let mut cached = self.summary.lock().await;
        self.fresh_summary_locked(&mut cached).await
    }

    async fn fresh_summary_locked(&self, cached: &mut Option<(Instant, Summary)>) -> Option<Summary> {
        let shared = self.shared.clone();
        let summary = tokio::task::spawn_blocking(move || {
            let summary = shared.metrics.coverage_summary(&shared.coverage);
            let directory = shared.directory.read();
            shared
                .metrics
                .directory(&directory.summary(directory.as_of()), shared.coverage.accounts().privileged_count());
            summary
        })
        .await
        .ok()?;
        *cached = Some((Instant::now(), summary.clone()));
        Some(summary)
    }
}

/// The routes: /metrics and the probes open (they carry no personal data),
/// /api/v1 behind the tokens when there are any; every request bounded in time.
pub fn router(shared: Served, tokens: auth::Tokens, config: &crate::config::Config) -> Router {
    let request_timeout = config.http.request_timeout;
    let metrics_need_token = config.http.metrics_require_token;
    let api_host = config
        .alerts
        .api_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    let app = App {
        shared,
        tokens,
        history: history(config),
        summary: Arc::new(Mutex::new(None)),
        api_host,
        pseudonymised: config.privacy.pseudonymise,
    };
    let mut api = Router::new();
    let mut open = Router::new();
    // /metrics tells the posture (who is privileged without MFA, which legacy
    // protocols get in): behind the tokens too when http.metrics_require_token.
    if metrics_need_token {
        api = api.route("/metrics", get(metrics));
    } else {
        open = open.route("/metrics", get(metrics));
    }
    let api = api
        .route("/api/v1/coverage", get(coverage))
        .route("/api/v1/users", get(users))
        .route("/api/v1/users/{id}", get(user))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/protections", get(protections))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), require_token));
    open.route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(app.clone(), known_host))
        .layer(axum::middleware::from_fn(move |req, next| within(request_timeout, req, next)))
        .with_state(app)
}

/// Without tokens the API is open to this host only: a request naming
/// another host (`Host:`) is a browser tricked into it (DNS rebinding) or one
/// following a tunnel's links, and gets 421. With tokens, the token decides.
async fn known_host(State(app): State<App>, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if !app.tokens.open() {
        return next.run(request).await;
    }
    let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    }
    .to_ascii_lowercase();
    let loopback = name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback || app.api_host.as_deref() == Some(name.as_str()) {
        return next.run(request).await;
    }
    app.shared.metrics.http_refused("unknown_host");
    (
        StatusCode::MISDIRECTED_REQUEST,
        Json(json!({"error": "this API without tokens answers requests for this host only (127.0.0.1, localhost, or the host of alerts.api_url)"})),
    )
        .into_response()
}

/// 401 with `WWW-Authenticate` unless the request carries one of the tokens.
async fn require_token(
    State(app): State<App>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if app.tokens.open() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    match presented {
        Some(token) if app.tokens.admits(token) => next.run(request).await,
        presented => {
            app.shared.metrics.http_unauthorized();
            // RFC 6750: a token that does not match is `invalid_token`; none at all, no error code.
            let (challenge, error) = match presented {
                Some(_) => (
                    "Bearer realm=\"mfawatch\", error=\"invalid_token\"",
                    "this bearer token is not one of this API's tokens (http.api_token_*; a token is compared whole, case and all)",
                ),
                None => (
                    "Bearer realm=\"mfawatch\"",
                    "this API needs a bearer token: Authorization: Bearer <token> (see http.api_token_* in the configuration)",
                ),
            };
            (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)], Json(json!({ "error": error })))
                .into_response()
        }
    }
}

/// A request that takes longer than `limit` gets a 503.
async fn within(limit: Duration, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "the request took too long"}))).into_response()
        }
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "no such path: see / for the list"}))).into_response()
}

async fn method_not_allowed() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, Json(json!({"error": "only GET is served"}))).into_response()
}

/// The history folder and the window's days, for a user's notable sign-ins.
fn history(config: &crate::config::Config) -> Option<(std::path::PathBuf, u32)> {
    let days = (config.coverage.window.as_secs() / 86_400) as u32;
    config.history.enabled.then(|| (config.history.dir(&config.checkpoint), days))
}

/// Serves until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Served,
    access: Access,
    config: &crate::config::Config,
    stop: CancellationToken,
) {
    let refused = {
        let shared = shared.clone();
        move |why: server::Turned| {
            shared.metrics.http_refused(match why {
                server::Turned::Busy => "busy",
                server::Turned::PerPeer => "per_peer",
                server::Turned::Evicted => "evicted_idle",
            })
        }
    };
    let router = router(shared, access.tokens, config);
    server::run(listener, router, access.tls, config.http.max_connections as usize, refused, stop).await;
}

/// Who may read the API and how it is reached: tokens and TLS, both re-read on SIGHUP.
#[derive(Clone)]
pub struct Access {
    pub tokens: auth::Tokens,
    pub tls: Option<server::Tls>,
}

impl Access {
    pub fn load(config: &crate::config::HttpConfig) -> anyhow::Result<Access> {
        Ok(Access { tokens: auth::for_start(config)?, tls: server::Tls::load(config)? })
    }

    /// SIGHUP: new tokens and certificate, each only if it reads whole and
    /// leaves the API no less protected than the start rule asks (a token
    /// source that reads empty or fails, or no token on an address others
    /// reach, is an error: the old ones stay).
    pub fn reload(&self, config: &crate::config::HttpConfig) -> anyhow::Result<()> {
        let digests = auth::load(config)?;
        auth::check_open(config, digests.len())?;
        if let Some(tls) = &self.tls {
            tls.reload(config)?;
        }
        self.tokens.replace(digests);
        Ok(())
    }
}

/// Binds the configured address, with an error that says which and why.
pub async fn bind(listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let addr: SocketAddr = listen.parse().map_err(|e| anyhow::anyhow!("http.listen {listen:?}: {e}"))?;
    tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr} (http.listen): {e}"))
}

async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "mfawatch\n\n/metrics             Prometheus metrics\n/healthz /readyz     probes\n/api/v1/coverage     coverage summary\n/api/v1/users        users, ?state=uncovered|never_mfa|covered|inactive|excluded&privileged=true|false&user_type=member|guest|unknown&registration_pending=true&never_mfa=true&legacy=true&single_factor=true&risky=true&phishing_resistant=false&limit=N&offset=N\n/api/v1/users/{upn-or-id}\n/api/v1/alerts       recent alerts, ?rule=legacy_auth_success|...&user=upn-or-id&limit=N\n",
    )
}

async fn metrics(State(app): State<App>) -> impl IntoResponse {
    app.summary().await; // brings the coverage gauges up to date
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.shared.metrics.render())
}

async fn healthz(State(app): State<App>) -> Response {
    if app.shared.health.alive(60) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "the pipeline has not turned for 60 s\n").into_response()
    }
}

async fn readyz(State(app): State<App>) -> Response {
    match app.shared.health.not_ready() {
        None => (StatusCode::OK, Json(json!({"ready": true}))).into_response(),
        Some(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false, "reason": reason}))).into_response()
        }
    }
}

/// Recent alerts, newest first: `?rule=&user=&limit=`.
async fn alerts(State(app): State<App>, Query(params): Query<Vec<(String, String)>>) -> Response {
    let mut rule = None;
    let mut user = None;
    let mut limit = 100;
    let mut seen = std::collections::HashSet::new();
    for (key, value) in &params {
        if !seen.insert(key.as_str()) {
            return BadParam(format!("{key} is given more than once: give it once")).into_response();
        }
        match key.as_str() {
            "rule" => match crate::alerts::Rule::parse(value) {
                Some(r) => rule = Some(r),
                None => {
                    let names: Vec<&str> = crate::alerts::Rule::ALL.iter().map(|r| r.as_str()).collect();
                    return bad_request(key, value, &names.join(", ")).into_response();
                }
            },
            "user" => user = Some(value.clone()),
            "limit" => match value.parse::<usize>().ok().filter(|n| (1..=2000).contains(n)) {
                Some(n) => limit = n,
                None => return bad_request(key, value, "1 to 2000").into_response(),
            },
            _ => return bad_request(key, value, "rule, user, limit").into_response(),
        }
    }
    let (total, alerts) = app.shared.recent.list(rule, user.as_deref(), limit);
    Json(json!({"total": total, "alerts": alerts})).into_response()
}

async fn coverage(State(app): State<App>) -> Response {
    match app.fresh_summary().await {
        Some(summary) => Json(summary).into_response(),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "cannot summarise the coverage state\n").into_response(),
    }
}

/// A query parameter with a value the API does not take.
struct BadParam(String);

impl IntoResponse for BadParam {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, Json(json!({"error": self.0}))).into_response()
    }
}

fn bad_request(param: &str, value: &str, allowed: &str) -> BadParam {
    BadParam(format!("{param}={value:?}: use {allowed}"))
}

fn parse_bool(param: &str, value: &str) -> Result<bool, BadParam> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(bad_request(param, value, "true or false (or 1/0, yes/no)")),
    }
}

fn user_query(params: &[(String, String)]) -> Result<UserQuery, BadParam> {
    let mut q = UserQuery { limit: 100, ..UserQuery::default() };
    let mut seen = std::collections::HashSet::new();
    let mut state_never_mfa = false;
    for (key, value) in params {
        if !seen.insert(key.as_str()) {
            return Err(BadParam(format!("{key} is given more than once: give it once")));
        }
        match key.as_str() {
            "state" if value.eq_ignore_ascii_case("never_mfa") => {
                q.state = Some(CoverageState::Uncovered);
                state_never_mfa = true;
            }
            "state" => {
                q.state =
                    Some(CoverageState::parse(value).ok_or_else(|| {
                        bad_request(key, value, "covered, uncovered, never_mfa, inactive or excluded")
                    })?)
            }
            "never_mfa" => q.never_mfa = Some(parse_bool(key, value)?),
            "privileged" => q.privileged = Some(parse_bool(key, value)?),
            "registration_pending" => q.registration_pending = Some(parse_bool(key, value)?),
            "legacy" => q.legacy = Some(parse_bool(key, value)?),
            "single_factor" => q.single_factor = Some(parse_bool(key, value)?),
            "risky" => q.risky = Some(parse_bool(key, value)?),
            "phishing_resistant" => q.phishing_resistant = Some(parse_bool(key, value)?),
            "user_type" => {
                q.user_type = Some(
                    UserType::ALL
                        .into_iter()
                        .find(|t| t.as_str().eq_ignore_ascii_case(value))
                        .ok_or_else(|| bad_request(key, value, "member, guest or unknown"))?,
                )
            }
            "limit" => {
                q.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| (1..=10_000).contains(&n))
                    .ok_or_else(|| bad_request(key, value, "1 to 10000"))?
            }
            "offset" => q.offset = value.parse().map_err(|_| bad_request(key, value, "a number"))?,
            _ => {
                return Err(bad_request(
                    key,
                    value,
                    "state, never_mfa, privileged, registration_pending, user_type, legacy, single_factor, risky, limit, offset",
                ));
            }
        }
    }
    if state_never_mfa {
        if q.never_mfa == Some(false) {
            return Err(BadParam("state=never_mfa and never_mfa=false ask for opposite users".into()));
        }
        q.never_mfa = Some(true);
    }
    Ok(q)
}

/// `/api/v1/protections[?limit=N]` ([`protections::body`]).
async fn protections(State(app): State<App>, Query(params): Query<Vec<(String, String)>>) -> Response {
    let mut limit = 100;
    for (k, v) in &params {
        match (k.as_str(), v.parse::<usize>()) {
            ("limit", Ok(n)) if (1..=crate::directory::posture::TIMELINE).contains(&n) => limit = n,
            ("limit", _) => return bad_request("limit", v, "1 to 2000").into_response(),
            _ => return bad_request(k, v, "limit").into_response(),
        }
    }
    let shared = app.shared.clone();
    match tokio::task::spawn_blocking(move || protections::body(&shared.directory.read(), limit)).await {
        Ok(body) => Json(body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn users(State(app): State<App>, Query(params): Query<Vec<(String, String)>>) -> Response {
    let query = match user_query(&params) {
        Ok(q) => q,
        Err(bad) => return bad.into_response(),
    };
    let shared = app.shared.clone();
    let result = tokio::task::spawn_blocking(move || {
        // The directory's lock before the coverage state's, never both (docs/design.md).
        let risky: std::collections::HashMap<String, crate::directory::RiskAt> = shared
            .directory
            .read()
            .risky_users()
            .into_iter()
            .filter(|(_, _, r)| r.high_open())
            .map(|(k, _, r)| (k, r))
            .collect();
        let accounts = shared.coverage.accounts();
        let coverage = shared.coverage.read();
        let newest = coverage.watermark().map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let (total, users) = coverage.users(&accounts, &query);
        drop(coverage);
        let mut users = serde_json::to_value(&users).unwrap_or_default();
        // Identity Protection's high-risk users not remediated are marked.
        for user in users.as_array_mut().into_iter().flatten() {
            let key = user["key"].as_str().unwrap_or_default().to_owned();
            let upn = user["upn"].as_str().unwrap_or_default().to_lowercase();
            if let Some(r) = risky.get(&key).or_else(|| risky.get(&upn)) {
                let since = r
                    .since
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                user["high_risk"] = json!({"level": r.level, "state": r.state, "since": since});
            }
        }
        json!({"newest_sign_in": newest, "total": total, "offset": query.offset, "limit": query.limit, "users": users})
    })
    .await;
    match result {
        Ok(body) => Json(body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn user(State(app): State<App>, Path(id): Path<String>) -> Response {
    let shared = app.shared.clone();
    let lookup = id.clone();
    let found = tokio::task::spawn_blocking(move || {
        let accounts = shared.coverage.accounts();
        let coverage = shared.coverage.read();
        let user = coverage.user(&accounts, &lookup);
        let watermark = coverage.watermark();
        drop(coverage);
        // Never both locks at once: the coverage state's is let go first.
        let (key, upn) = user.as_ref().map_or((lookup.as_str(), lookup.as_str()), |u| (u.key.as_str(), u.upn.as_str()));
        let directory = shared.directory.read();
        let now = directory.newest().max(watermark).unwrap_or_else(chrono::Utc::now);
        let seen = directory.user(key, upn, now);
        let listed = accounts.listed(key, upn);
        (user, seen, listed)
    })
    .await
    .ok();
    let (found, directory, listed) = found.unwrap_or((None, None, false));
    let Some(user) = found else {
        if let Some(directory) = directory {
            // Known to the directory only: an admin who has not signed in (yet).
            let registration = crate::directory::registration_state(directory.registration, None);
            let body = json!({
                "key": id,
                "signed_in": false,
                "privileged_because": crate::directory::privileged_because(listed, Some(&directory)),
                "registration": registration,
                "directory": directory,
            });
            return Json(body).into_response();
        }
        let error = if app.pseudonymised && id.contains('@') && !id.starts_with("u-") {
            format!(
                "no sign-in seen for {id:?}: this daemon pseudonymises users (privacy.pseudonymise), so it knows them by pseudonym only; look the pseudonym up with `mfawatch pseudonym --config FILE {id}`, or give the object id"
            )
        } else {
            format!("no sign-in seen for {id:?} (give a UPN or an object id)")
        };
        return (StatusCode::NOT_FOUND, Json(json!({ "error": error }))).into_response();
    };
    let mut body = serde_json::to_value(&user).unwrap_or_default();
    let registration = directory.as_ref().map_or(crate::directory::Registration::Unknown, |d| d.registration);
    body["registration"] = json!(crate::directory::registration_state(registration, Some(&user)));
    body["privileged_because"] = json!(crate::directory::privileged_because(listed, directory.as_ref()));
    body["directory"] = json!(directory);
    // The coverage state keeps counts; the sign-ins behind them are in the history.
    body["notable_sign_ins"] = match app.history.clone() {
        Some((dir, days)) => {
            let key = user.key.clone();
            match tokio::task::spawn_blocking(move || crate::report::notable_sign_ins(&dir, &key, days, 50)).await {
                Ok(Ok(rows)) => json!(rows),
                Ok(Err(e)) => json!({"error": format!("cannot read the history: {e:#}")}),
                Err(_) => json!({"error": "cannot read the history"}),
            }
        }
        None => json!({"error": "history.enabled is off: the sign-ins behind these counts are not kept"}),
    };
    // Which mechanisms asked this user for MFA over the window (docs/labels.md §4), from the same history.
    body["mfa_enforcement"] = match app.history.clone() {
        Some((dir, days)) => {
            let key = user.key.clone();
            match tokio::task::spawn_blocking(move || crate::report::enforcement::user_enforcement(&dir, &key, days))
                .await
            {
                Ok(Ok(seen)) => json!(seen),
                Ok(Err(e)) => json!({"error": format!("cannot read the history: {e:#}")}),
                Err(_) => json!({"error": "cannot read the history"}),
            }
        }
        None => json!({"error": "history.enabled is off: the mechanisms that asked for MFA are not kept"}),
    };
    Json(body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str) -> Result<UserQuery, String> {
        let params: Vec<(String, String)> =
            text.split('&').filter_map(|p| p.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        user_query(&params).map_err(|BadParam(e)| e)
    }

    #[test]
    fn never_mfa_is_a_state_to_ask_for_in_any_case() {
        let q = query("state=NEVER_MFA").unwrap();
        assert_eq!((q.state, q.never_mfa), (Some(CoverageState::Uncovered), Some(true)));
    }

    #[test]
    fn contradictions_and_repetitions_are_refused_whatever_the_order() {
        for text in ["state=never_mfa&never_mfa=false", "never_mfa=false&state=never_mfa"] {
            assert!(query(text).unwrap_err().contains("opposite"), "{text}");
        }
        assert!(query("state=uncovered&state=covered").unwrap_err().contains("more than once"));
        assert!(query("privileged=maybe").unwrap_err().contains("true or false"));
        assert_eq!(query("privileged=Yes").unwrap().privileged, Some(true));
    }
}
