//! server: the accept loop under the router — TLS when configured (rustls,
//! certificate and key re-read on SIGHUP), and the limits that keep a slow or
//! hostile client from holding the daemon: a bound on concurrent
//! connections, on the request head (line and headers), on the time to send
//! it, and on the time a request may take.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
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
            *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        }
        Ok(())
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
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

/// Accepts connections until `stop` is cancelled; then lets the ones open finish.
pub async fn run(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Tls>,
    max_connections: usize,
    refused: impl Fn() + Send + Sync + 'static,
    stop: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let refused = Arc::new(refused);
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept an HTTP connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Past the limit a connection is closed at once rather than queued.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused();
            drop(stream);
            continue;
        };
        let (router, tls, stop) = (router.clone(), tls.clone(), stop.clone());
        connections.spawn(async move {
            let _slot = slot;
            let service = TowerToHyperService::new(router);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.max_buf_size(MAX_HEAD)
                .max_headers(MAX_HEADERS)
                .header_read_timeout(HEAD_TIMEOUT)
                .timer(TokioTimer::new());
            match tls {
                Some(tls) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await {
                    Ok(Ok(stream)) => serve(&http, TokioIo::new(stream), service, stop).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                },
                None => serve(&http, TokioIo::new(stream), service, stop).await,
            }
        });
    }
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), connections.wait()).await;
}

async fn serve<I>(
    http: &hyper::server::conn::http1::Builder,
    io: I,
    service: TowerToHyperService<axum::Router>,
    stop: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
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
