//! The HTTP accept loop: hyper's HTTP/1.1 server, as `axum::serve` runs it, with the
//! settings and limits axum does not expose.
//!
//! - hyper's read buffer has a configurable cap (`http_read_buffer_bytes`): the most a
//!   request body is read at once. The request head has its own, smaller cap
//!   (`http_max_head_bytes`, longer: 431), so a client that sends an endless head pins
//!   only that much. Anything that keeps a piece of a request (a header value, the URI)
//!   keeps the buffer alive, which is why the doors copy out what an upgraded connection
//!   needs and drop the request.
//! - A request head must arrive within `http_header_timeout_ms`, counted from when the
//!   connection opened or its previous request ended (hyper's header-read timer, which
//!   is therefore also the idle keep-alive timeout); then the connection is closed.
//! - Every request body goes through [`limits::Progress`] (aborted when it stalls or
//!   trickles), and a declared `Content-Length` over the largest body any route accepts
//!   is answered 413 before a byte of it is read.
//! - At most `max_connections_per_ip` connections per client address, upgraded ones
//!   included; past it a new connection is closed at once, unanswered.
//! - TCP_NODELAY on every accepted socket: without it, Nagle's algorithm meeting the
//!   peer's delayed ACK stalls request/answer traffic ~40 ms.
//! - `ConnectInfo<SocketAddr>` on every request, for the doors' logs and sessions.
//! - On shutdown: stop accepting, then let requests in flight finish, for at most the
//!   grace period (upgraded connections are the doors' business: they watch the same
//!   token).
//!
//! HTTP/1.1 only (no HTTP/2 over cleartext): hyper's HTTP/1 server is the one that lets
//! the request head be capped apart from the read buffer.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::limits::{self, Counted, Pace, PerIp, Progress};

/// hyper refuses a smaller read buffer.
const MIN_READ_BUFFER: usize = 8 * 1024;

/// The HTTP layer's limits (from the config).
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// The cap of each connection's read buffer (bytes).
    pub read_buffer: usize,
    /// The largest request head (bytes).
    pub max_head: usize,
    /// How long a request head may take, and an idle connection may wait for one.
    pub header_timeout: Duration,
    /// How fast a request body must come.
    pub body_pace: Pace,
    /// The largest body any route accepts (bytes).
    pub max_body: u64,
    /// Open connections per client address (0: no cap).
    pub per_ip: usize,
}

/// Serve `app` on `listener` until `shutdown`, then wait up to `grace` for requests in
/// flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.read_buffer.max(MIN_READ_BUFFER))
        .max_header_size(limits.max_head);
    let per_ip = PerIp::new(limits.per_ip);
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, typically: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = per_ip.admit(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: too many from this address");
            drop(tcp);
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let app = app.clone();
        let (pace, max_body) = (limits.body_pace, limits.max_body);
        let service =
            TowerToHyperService::new(tower::service_fn(move |req: hyper::Request<Incoming>| {
                let app = app.clone();
                async move {
                    if let Some(refused) = limits::too_large(req.headers(), max_body) {
                        return Ok(refused);
                    }
                    let mut req = req.map(|body| axum::body::Body::new(Progress::new(body, pace)));
                    req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    app.oneshot(req).await
                }
            }));
        let conn = builder
            .serve_connection(TokioIo::new(Counted::new(tcp, slot)), service)
            .with_upgrades();
        let stop = shutdown.clone();
        connections.spawn(async move {
            tokio::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = stop.cancelled() => {
                    // Finish the request in flight, if any, then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the shutdown grace period");
    }
}
