//! http: /metrics, /healthz, /readyz and the /api/v1 coverage API.
//!
//! Reads the shared state (coverage, metrics, health) and never writes it.
//! Binds loopback by default: the API shows user names. No configuration and
//! no secret is ever part of a response.

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
use crate::pipeline::Shared;

/// What the handlers share.
#[derive(Clone)]
struct App {
    shared: Arc<Shared>,
    /// The last summary and when it was made: a large state is summarised at
    /// most once a second however often it is scraped.
    summary: Arc<Mutex<Option<(Instant, Summary)>>>,
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
        let summary = tokio::task::spawn_blocking(move || shared.coverage_summary()).await.ok()?;
        *cached = Some((Instant::now(), summary.clone()));
        Some(summary)
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    let app = App { shared, summary: Arc::new(Mutex::new(None)) };
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/coverage", get(coverage))
        .route("/api/v1/users", get(users))
        .route("/api/v1/users/{id}", get(user))
        .route("/api/v1/alerts", get(alerts))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "no such path: see / for the list"}))).into_response()
}

async fn method_not_allowed() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, Json(json!({"error": "only GET is served"}))).into_response()
}

/// Serves until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(shared)).with_graceful_shutdown(async move { stop.cancelled().await }).await
}

/// Binds the configured address, with an error that says which and why.
pub async fn bind(listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let addr: SocketAddr = listen.parse().map_err(|e| anyhow::anyhow!("http.listen {listen:?}: {e}"))?;
    tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr} (http.listen): {e}"))
}

async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "mfawatch\n\n/metrics             Prometheus metrics\n/healthz /readyz     probes\n/api/v1/coverage     coverage summary\n/api/v1/users        users, ?state=uncovered|never_mfa|covered|inactive|excluded&privileged=true|false&user_type=member|guest|unknown&registration_pending=true&never_mfa=true&limit=N&offset=N\n/api/v1/users/{upn-or-id}\n/api/v1/alerts       recent alerts, ?rule=legacy_auth_success|...&user=upn-or-id&limit=N\n",
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
    let (total, alerts) = app.shared.alerts.list(rule, user.as_deref(), limit);
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
                    "state, never_mfa, privileged, registration_pending, user_type, limit, offset",
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

async fn users(State(app): State<App>, Query(params): Query<Vec<(String, String)>>) -> Response {
    let query = match user_query(&params) {
        Ok(q) => q,
        Err(bad) => return bad.into_response(),
    };
    let shared = app.shared.clone();
    let result = tokio::task::spawn_blocking(move || {
        let accounts = shared.accounts();
        let coverage = shared.coverage.read().unwrap_or_else(|e| e.into_inner());
        let newest = coverage.watermark().map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let (total, users) = coverage.users(&accounts, &query);
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
        let accounts = shared.accounts();
        let coverage = shared.coverage.read().unwrap_or_else(|e| e.into_inner());
        coverage.user(&accounts, &lookup)
    })
    .await
    .ok()
    .flatten();
    match found {
        Some(user) => Json(user).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no sign-in seen for {id:?} (give a UPN or an object id)")})),
        )
            .into_response(),
    }
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
