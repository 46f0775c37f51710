//! graph: the directory seeds read from Microsoft Graph (`[directory.graph]`)
//! — the active role assignments, the PIM eligibilities and the users'
//! registration details — at start and every `refresh`, with the app
//! registration the Entra auth mode uses (`kafka.entra_*`, scope
//! `<directory.graph.url>/.default`).
//!
//! A thread of its own fetches each listing whole (following
//! `@odata.nextLink`, waiting out 429 and 503 as `Retry-After` says, a few
//! times) and sends it to the source's loop ([`Seeds`]), which hands every
//! page to the pipeline as a message at [`Position::Graph`], received when
//! the listing was fetched ([`apply`]): the directory state, the metrics and
//! the snapshot see a page exactly as a replayed file of it. Only the
//! pipeline thread touches the state; this thread touches nothing but HTTP.
//!
//! A role listing read whole is the state as of its time: what it no longer
//! lists ends then ([`Checkpointer::listing_complete`]). A listing with a page
//! missing (refused, throttled past the retries, the network) applies the
//! pages it has and removes nothing. A failure is counted and logged with the
//! listing, never fatal: the next refresh reads it again. The token and the
//! credential are never logged; `@odata.nextLink` is followed only to the
//! host of `directory.graph.url` (the request carries the token).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::checkpoint::Checkpointer;
use crate::config::Config;
use crate::decode::Position;
use crate::decode::directory::Holding;
use crate::events::{Events, GraphListingFailed};
use crate::kafka::entra::{Token, TokenSource};
use crate::metrics::Metrics;

/// One Graph listing: its label, where it is, which holding it lists whole,
/// and the application permission it needs.
#[derive(Debug)]
pub struct Listing {
    /// The `listing` label (one of [`crate::metrics::GRAPH_LISTINGS`]).
    pub name: &'static str,
    /// Under `<url>/v1.0`, with its query.
    pub path: &'static str,
    /// The holding a full listing is the state of (`None`: not a role listing).
    pub holding: Option<Holding>,
    pub permission: &'static str,
}

/// What is read, in this order. `$expand=principal` gives the principal's
/// type (a service principal's or a group's role is no user's) and UPN.
pub const LISTINGS: [Listing; 3] = [
    Listing {
        name: "role_assignments",
        path: "/roleManagement/directory/roleAssignments?$expand=principal",
        holding: Some(Holding::Active),
        permission: "RoleManagement.Read.Directory",
    },
    Listing {
        name: "role_eligibilities",
        path: "/roleManagement/directory/roleEligibilityScheduleInstances?$expand=principal",
        holding: Some(Holding::Eligible),
        permission: "RoleManagement.Read.Directory",
    },
    Listing {
        name: "registration_details",
        path: "/reports/authenticationMethods/userRegistrationDetails",
        holding: None,
        permission: "AuditLog.Read.All",
    },
];

/// A listing as fetched: its pages (Graph's JSON, as sent) and whether it is whole.
pub struct Fetched {
    pub listing: &'static Listing,
    /// When the listing was fetched (its first request): the pages' `received`.
    pub at: DateTime<Utc>,
    pub pages: Vec<Vec<u8>>,
    /// Every page was read.
    pub complete: bool,
}

/// The listings the seeder thread sends to the source's loop.
pub type Seeds = Receiver<Fetched>;

/// What the operation of a removal by a listing says.
const NOT_LISTED: &str = "No longer in the Graph listing";

/// Attempts at one page before the listing is given up until the next refresh.
const ATTEMPTS: u32 = 4;
/// The longest wait between two attempts, whatever `Retry-After` says.
const MAX_WAIT: Duration = Duration::from_secs(120);
/// A token this close to its end is fetched again.
const TOKEN_MARGIN_MS: i64 = 5 * 60 * 1000;
/// The largest page read (Graph's are a few hundred kB).
const MAX_PAGE: u64 = 64 * 1024 * 1024;

/// Why a page could not be read.
#[derive(Debug, thiserror::Error)]
enum PageError {
    #[error("{0}")]
    Token(String),
    #[error(
        "GET {path} answered {status}{said}; the application needs Graph's {permission} application permission, admin-consented"
    )]
    Denied { path: String, status: u16, said: String, permission: &'static str },
    #[error("GET {path} answered {status}{said}")]
    Status { path: String, status: u16, said: String },
    #[error("GET {path}: {error}")]
    Network { path: String, error: String },
    #[error("GET {path}: {problem}")]
    NotAListing { path: String, problem: String },
    #[error("stopping")]
    Stopped,
}

/// Reads the listings from Graph.
pub struct Seeder {
    /// `directory.graph.url`, without a trailing slash.
    base: String,
    tokens: TokenSource,
    token: Option<Token>,
    agent: ureq::Agent,
    metrics: Arc<Metrics>,
    events: Events,
}

impl Seeder {
    /// The seeder of `[directory.graph]`, with the credential read now.
    pub fn from_config(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Seeder> {
        let base = config.directory.graph.url.trim_end_matches('/').to_owned();
        let tokens = TokenSource::new(config, format!("{base}/.default"))
            .map_err(|e| anyhow::anyhow!("directory.graph: {e:#}"))?;
        Ok(Seeder {
            base,
            tokens,
            token: None,
            agent: crate::outbound::agent(Duration::from_secs(60)),
            events: Events::new(metrics.clone()),
            metrics,
        })
    }

    /// Fetches `listing` whole, or as far as it can (then says why, counted and logged).
    pub fn fetch(&mut self, listing: &'static Listing, stop: &AtomicBool) -> Fetched {
        let at = Utc::now();
        let mut pages = Vec::new();
        let mut url = format!("{}/v1.0{}", self.base, listing.path);
        let complete = loop {
            match self.page(listing, &url, stop) {
                Ok((page, next)) => {
                    pages.push(page);
                    match next {
                        Some(next) => url = next,
                        None => break true,
                    }
                }
                Err(PageError::Stopped) => break false,
                Err(error) => {
                    self.events.emit(GraphListingFailed { listing: listing.name, error: &error });
                    break false;
                }
            }
        };
        Fetched { listing, at, pages, complete }
    }

    /// A valid token: the one held, or a fresh one.
    fn token(&mut self) -> Result<&str, PageError> {
        let now = Utc::now().timestamp_millis();
        if self.token.as_ref().is_none_or(|t| t.expires_at - now < TOKEN_MARGIN_MS) {
            self.token = Some(self.tokens.fetch().map_err(PageError::Token)?);
        }
        Ok(self.token.as_ref().map(|t| t.value.expose()).unwrap_or_default())
    }

    /// One page and the next page's URL, retried while Graph says "later".
    fn page(
        &mut self,
        listing: &Listing,
        url: &str,
        stop: &AtomicBool,
    ) -> Result<(Vec<u8>, Option<String>), PageError> {
        let path = url_path(url);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let bearer = match self.token() {
                Ok(token) => format!("Bearer {token}"),
                Err(e) => {
                    self.metrics.graph_fetch(listing.name, "failed");
                    return Err(e);
                }
            };
            let answer =
                self.agent.get(url).header("Authorization", &bearer).header("Accept", "application/json").call();
            drop(bearer);
            let wait = match answer {
                Err(e) => {
                    self.metrics.graph_fetch(listing.name, "failed");
                    if attempt >= ATTEMPTS {
                        return Err(PageError::Network { path, error: e.to_string() });
                    }
                    backoff(attempt)
                }
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(retry_after)
                        .unwrap_or_else(|| backoff(attempt));
                    let body = response.body_mut().with_config().limit(MAX_PAGE).read_to_vec();
                    match (status, body) {
                        (200, Ok(body)) => {
                            let next = next_link(&body).map_err(|problem| {
                                self.metrics.graph_fetch(listing.name, "failed");
                                PageError::NotAListing { path: path.clone(), problem }
                            })?;
                            if let Some(next) = &next
                                && !same_origin(next, &self.base)
                            {
                                self.metrics.graph_fetch(listing.name, "failed");
                                return Err(PageError::NotAListing {
                                    path,
                                    problem: format!(
                                        "@odata.nextLink points to {} (not followed: the request carries the token; directory.graph.url is {})",
                                        crate::outbound::redact_url(next),
                                        self.base
                                    ),
                                });
                            }
                            self.metrics.graph_fetch(listing.name, "ok");
                            return Ok((body, next));
                        }
                        (429 | 503, _) => {
                            self.metrics.graph_fetch(listing.name, "throttled");
                            if attempt >= ATTEMPTS {
                                return Err(PageError::Status {
                                    path,
                                    status,
                                    said: format!(" {ATTEMPTS} times (throttled)"),
                                });
                            }
                            retry_after
                        }
                        (401 | 403, body) => {
                            self.metrics.graph_fetch(listing.name, "denied");
                            // A refused token may be a stale one: the next refresh fetches another.
                            self.token = None;
                            let said = graph_error(&body.unwrap_or_default());
                            return Err(PageError::Denied { path, status, said, permission: listing.permission });
                        }
                        (500..=599, _) if attempt < ATTEMPTS => {
                            self.metrics.graph_fetch(listing.name, "failed");
                            backoff(attempt)
                        }
                        (status, body) => {
                            self.metrics.graph_fetch(listing.name, "failed");
                            let said = match body {
                                Ok(body) => graph_error(&body),
                                Err(e) => format!(" ({e})"),
                            };
                            return Err(PageError::Status { path, status, said });
                        }
                    }
                }
            };
            if !sleep(wait.min(MAX_WAIT), stop) {
                return Err(PageError::Stopped);
            }
        }
    }
}

/// Starts the seeder thread: every listing at once, then every
/// `directory.graph.refresh`, until `stop`. An error only when the credential
/// cannot be read.
pub fn spawn(config: &Config, metrics: Arc<Metrics>, stop: Arc<AtomicBool>) -> anyhow::Result<Seeds> {
    let mut seeder = Seeder::from_config(config, metrics)?;
    let refresh = config.directory.graph.refresh;
    let (send, receive): (Sender<Fetched>, Seeds) = channel();
    std::thread::Builder::new().name("graph".into()).spawn(move || {
        tracing::info!(url = %seeder.base, refresh = %humantime::format_duration(refresh), "reading the directory from Microsoft Graph");
        loop {
            for listing in &LISTINGS {
                let fetched = seeder.fetch(listing, &stop);
                if stop.load(Ordering::Relaxed) || send.send(fetched).is_err() {
                    return;
                }
            }
            if !sleep(refresh, &stop) {
                return;
            }
        }
    })?;
    Ok(receive)
}

/// Hands a fetched listing to the pipeline, a page a message; for a role
/// listing read whole, ends what it no longer lists. An error only when a
/// page's effects could not be kept (a dead letter not written): the
/// source stops then, as for any message.
pub fn apply(checkpointer: &mut Checkpointer, fetched: &Fetched, metrics: &Metrics) -> std::io::Result<()> {
    let listing: Arc<str> = Arc::from(fetched.listing.name);
    for (i, page) in fetched.pages.iter().enumerate() {
        let position = Position::Graph { listing: listing.clone(), page: i as u32 + 1 };
        checkpointer.process(page, &position, Some(fetched.at))?;
    }
    if !fetched.complete {
        return Ok(());
    }
    let ended = match fetched.listing.holding {
        Some(holding) => {
            // The removals are the listing's last "page" (in the history's `source`).
            let position = Position::Graph { listing: listing.clone(), page: fetched.pages.len() as u32 + 1 };
            checkpointer.listing_complete(holding, fetched.at, NOT_LISTED, &position)
        }
        None => 0,
    };
    metrics.graph_seeded(fetched.listing.name, fetched.at);
    tracing::info!(
        target: "mfawatch::source::graph",
        listing = fetched.listing.name,
        pages = fetched.pages.len(),
        ended,
        "Graph listing applied"
    );
    Ok(())
}

/// Sleeps `wait`, or less when `stop` is set; says whether to go on.
fn sleep(wait: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(100)));
    }
    !stop.load(Ordering::Relaxed)
}

/// 2 s, 4 s, 8 s… after the first, second, third failure.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1 << attempt.min(6))
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&Utc) - Utc::now()).to_std().unwrap_or_default())
}

/// A page's `@odata.nextLink`, after checking it is a listing (`value` an array).
fn next_link(body: &[u8]) -> Result<Option<String>, String> {
    let page: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if !page.get("value").is_some_and(serde_json::Value::is_array) {
        return Err("not a Graph collection (no \"value\" array)".into());
    }
    Ok(page.get("@odata.nextLink").and_then(serde_json::Value::as_str).map(str::to_owned))
}

/// Graph's error body `{"error":{"code","message"}}` as `: code: message`.
fn graph_error(body: &[u8]) -> String {
    let error: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |k: &str| error["error"][k].as_str().map(|s| s.lines().next().unwrap_or("").to_owned());
    match (field("code"), field("message")) {
        (Some(code), Some(message)) => format!(": {code}: {message}"),
        (Some(said), None) | (None, Some(said)) => format!(": {said}"),
        (None, None) => String::new(),
    }
}

/// The path of `url` (no host, no query: what the logs name).
fn url_path(url: &str) -> String {
    url::Url::parse(url).map(|u| u.path().to_owned()).unwrap_or_else(|_| "(not a URL)".into())
}

/// Whether `url` is on the scheme, host and port of `base`.
fn same_origin(url: &str, base: &str) -> bool {
    match (url::Url::parse(url), url::Url::parse(base)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        assert_eq!(retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO), "a date passed: now");
        assert_eq!(retry_after("soon"), None);
    }

    #[test]
    fn a_page_must_be_a_collection_and_its_next_link_is_read() {
        let page =
            br#"{"@odata.context":"x","value":[],"@odata.nextLink":"https://graph.microsoft.com/v1.0/x?$skiptoken=a"}"#;
        assert_eq!(next_link(page).unwrap().as_deref(), Some("https://graph.microsoft.com/v1.0/x?$skiptoken=a"));
        assert_eq!(next_link(br#"{"value":[{"id":"1"}]}"#).unwrap(), None);
        assert!(next_link(b"<html>").unwrap_err().contains("not JSON"));
        assert!(next_link(br#"{"error":{}}"#).unwrap_err().contains("no \"value\""));
    }

    #[test]
    fn the_next_link_is_followed_only_to_the_configured_host() {
        let base = "https://graph.microsoft.com";
        assert!(same_origin("https://graph.microsoft.com/v1.0/x?$skiptoken=a", base));
        assert!(!same_origin("https://graph.example/v1.0/x", base));
        assert!(!same_origin("http://graph.microsoft.com/v1.0/x", base));
    }

    #[test]
    fn graphs_error_body_is_said_in_one_line() {
        let body = br#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation.","innerError":{}}}"#;
        assert_eq!(
            graph_error(body),
            ": Authorization_RequestDenied: Insufficient privileges to complete the operation."
        );
        assert_eq!(graph_error(b"<html>"), "");
    }

    #[test]
    fn every_listing_has_its_label() {
        let names: Vec<&str> = LISTINGS.iter().map(|l| l.name).collect();
        assert_eq!(names, crate::metrics::GRAPH_LISTINGS);
    }
}
