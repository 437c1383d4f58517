//! Accepts connections up to a cap and serves each over HTTP/1.1 with read deadlines, so
//! that clients which connect and send nothing, or send a byte now and then, cannot hold
//! sockets and memory for ever. axum's own `serve` sets no timer, and hyper then applies
//! no header deadline at all. With TLS, the handshake must end within the header
//! timeout too, so a client that stalls it holds its slot no longer than a slow request.

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How many connections, and how slow they may be.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections served at once; past it, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers, and how long an
    /// idle keep-alive connection is kept.
    pub header_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// After shutdown is asked, connections get this long to finish their requests.
const DRAIN: Duration = Duration::from_secs(30);

/// Largest read buffer of one connection (hyper's default is about 400 KB); also the
/// largest request head. At 10,000 connections reading bodies, 16 KB each is 160 MB.
const READ_BUFFER: usize = 16 * 1024;

/// How long accepting pauses after an error such as running out of file descriptors,
/// which would otherwise fail again at once.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown`
/// resolves, then lets open connections finish for a while.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let tls = tls.map(TlsAcceptor::from);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // A connection's read buffer, whatever its client sends: bodies are read in chunks
        // that the admission bounds count, so a big buffer per connection only multiplies
        // memory by the number of connections.
        .max_buf_size(READ_BUFFER);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (router, http, watcher, tls) = (
            router.clone(),
            http.clone(),
            graceful.watcher(),
            tls.clone(),
        );
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, router, &http, watcher).await,
                Some(tls) => match tokio::time::timeout(header_timeout, tls.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(stream, router, &http, watcher).await,
                    Ok(Err(e)) => tracing::trace!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::trace!("TLS handshake not done within the header timeout"),
                },
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain time were closed");
    }
}

/// One connection's requests, until it closes or shutdown has drained it.
async fn serve_connection(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    router: Router,
    http: &hyper::server::conn::http1::Builder,
    watcher: Watcher,
) {
    let service = router.map_request(|req: hyper::Request<Incoming>| req.map(Body::new));
    let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    if let Err(e) = watcher.watch(conn).await {
        tracing::trace!(error = %e, "connection ended");
    }
}
