//! server: the accept loop under the router — TLS when configured (rustls,
//! certificate and key re-read on SIGHUP), and the limits that keep a slow or
//! hostile client from holding the daemon: a bound on concurrent
//! connections, on the request head (line and headers), on the time to send
//! it, and on the time a request may take.
//!
//! One client must not take every connection (then Prometheus' scrapes and
//! systemd's probes fail): at the bound a new connection takes the place of
//! the one that has been idle longest — a socket that never sent a request,
//! or a keep-alive between requests — so a client that asks at once (a
//! scrape, a probe) gets through a flood of held sockets; only when every
//! connection is in a request is a new one refused. A peer other than
//! loopback holds at most a quarter of the connections.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::HttpConfig;

/// The request line and headers together are at most this large.
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS configuration in use; replaced on SIGHUP.
#[derive(Clone)]
pub struct Tls(Arc<RwLock<Arc<rustls::ServerConfig>>>);

impl Tls {
    /// Loads the certificate chain and key named in the configuration, if any.
    pub fn load(http: &HttpConfig) -> anyhow::Result<Option<Tls>> {
        match server_config(http)? {
            Some(config) => Ok(Some(Tls(Arc::new(RwLock::new(Arc::new(config)))))),
            None => Ok(None),
        }
    }

    /// Reads the files again (SIGHUP): a renewed certificate without a restart.
    pub fn reload(&self, http: &HttpConfig) -> anyhow::Result<()> {
        if let Some(config) = server_config(http)? {
            *crate::locks::write(&self.0) = Arc::new(config);
        }
        Ok(())
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(crate::locks::read(&self.0).clone())
    }
}

fn server_config(http: &HttpConfig) -> anyhow::Result<Option<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&http.tls_cert, &http.tls_key) else { return Ok(None) };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| anyhow::anyhow!("http.tls_cert {}: {e}", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "http.tls_cert {}: no certificate in it", cert.display());
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow::anyhow!("http.tls_key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("http.tls_cert / http.tls_key: {e}"))?;
    Ok(Some(config))
}

/// What the accept loop knows of each open connection.
struct Open {
    id: u64,
    peer: std::net::IpAddr,
    /// Inside a request (from its head read to its response given).
    busy: Arc<std::sync::atomic::AtomicBool>,
    /// When it last became idle (accepted, or a response given), ms since start.
    idle_since: Arc<std::sync::atomic::AtomicU64>,
    close: CancellationToken,
}

/// Why a connection was not served.
pub enum Turned {
    /// Every connection is inside a request.
    Busy,
    /// This peer holds its share already.
    PerPeer,
    /// An idle one was closed to make room.
    Evicted,
}

/// Accepts connections until `stop` is cancelled; then lets the ones open finish.
pub async fn run(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Tls>,
    max_connections: usize,
    turned: impl Fn(Turned) + Send + Sync + 'static,
    stop: CancellationToken,
) {
    use std::sync::atomic::Ordering;
    let open: Arc<std::sync::Mutex<Vec<Open>>> = Arc::default();
    let started = std::time::Instant::now();
    let now_ms = move || started.elapsed().as_millis() as u64;
    let per_peer = (max_connections / 4).max(1);
    let turned = Arc::new(turned);
    let connections = tokio_util::task::TaskTracker::new();
    let mut next_id = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => (stream, peer.ip()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept an HTTP connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        {
            let registry = open.clone();
            let mut open = crate::locks::lock(&open);
            let idle = |o: &&Open| !o.busy.load(Ordering::Relaxed);
            let longest_idle = |of: &mut dyn Iterator<Item = &Open>| {
                of.filter(idle).min_by_key(|o| o.idle_since.load(Ordering::Relaxed)).map(|o| o.id)
            };
            let from_peer = open.iter().filter(|o| o.peer == peer).count();
            let victim = if !peer.is_loopback() && from_peer >= per_peer {
                // Its own idle one makes room, or it waits for one of its requests to end.
                match longest_idle(&mut open.iter().filter(|o| o.peer == peer)) {
                    Some(id) => Some(id),
                    None => {
                        turned(Turned::PerPeer);
                        continue;
                    }
                }
            } else if open.len() >= max_connections {
                match longest_idle(&mut open.iter()) {
                    Some(id) => Some(id),
                    None => {
                        turned(Turned::Busy);
                        continue;
                    }
                }
            } else {
                None
            };
            if let Some(id) = victim
                && let Some(at) = open.iter().position(|o| o.id == id)
            {
                open.swap_remove(at).close.cancel();
                turned(Turned::Evicted);
            }
            next_id += 1;
            let conn = Open {
                id: next_id,
                peer,
                busy: Arc::default(),
                idle_since: Arc::new(std::sync::atomic::AtomicU64::new(now_ms())),
                close: stop.child_token(),
            };
            let (id, busy, idle_since, close) =
                (conn.id, conn.busy.clone(), conn.idle_since.clone(), conn.close.clone());
            open.push(conn);
            let (router, tls, open) = (router.clone(), tls.clone(), registry);
            connections.spawn(async move {
                let service = tower::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let (mut router, busy, idle_since) = (router.clone(), busy.clone(), idle_since.clone());
                    async move {
                        busy.store(true, Ordering::Relaxed);
                        let response = tower::Service::call(&mut router, request.map(axum::body::Body::new)).await;
                        idle_since.store(now_ms(), Ordering::Relaxed);
                        busy.store(false, Ordering::Relaxed);
                        response
                    }
                });
                let service = hyper_util::service::TowerToHyperService::new(service);
                let mut http = hyper::server::conn::http1::Builder::new();
                http.max_buf_size(MAX_HEAD)
                    .max_headers(MAX_HEADERS)
                    .header_read_timeout(HEAD_TIMEOUT)
                    .timer(TokioTimer::new());
                match tls {
                    Some(tls) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await {
                        Ok(Ok(stream)) => serve(&http, TokioIo::new(stream), service, close).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    },
                    None => serve(&http, TokioIo::new(stream), service, close).await,
                }
                crate::locks::lock(&open).retain(|o| o.id != id);
            });
        }
    }
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), connections.wait()).await;
}

async fn serve<I, S>(http: &hyper::server::conn::http1::Builder, io: I, service: S, stop: CancellationToken)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = http.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        }
        _ = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
