//! The HTTP accept loop: hyper, as `axum::serve` runs it, with settings axum does not
//! expose.
//!
//! - hyper's read buffer has a configurable cap (`http_read_buffer_bytes`, hyper's own
//!   default unless set): also the largest request head. Anything that keeps a piece of
//!   a request (a header value, the URI) keeps that whole buffer alive, which is why the
//!   doors copy out what an upgraded connection needs and drop the request.
//! - TCP_NODELAY on every accepted socket: without it, Nagle's algorithm meeting the
//!   peer's delayed ACK stalls request/answer traffic ~40 ms.
//! - `ConnectInfo<SocketAddr>` on every request, for the doors' logs and sessions.
//! - On shutdown: stop accepting, then let requests in flight finish, for at most the
//!   grace period (upgraded connections are the doors' business: they watch the same
//!   token).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// hyper refuses a smaller read buffer.
const MIN_READ_BUFFER: usize = 8 * 1024;

/// Serve `app` on `listener` until `shutdown`, then wait up to `grace` for requests in
/// flight. `read_buffer` caps each connection's read buffer, and so its request head.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    read_buffer: usize,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(read_buffer.max(MIN_READ_BUFFER));
    let graceful = GracefulShutdown::new();
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
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let app = app.clone();
        let service = TowerToHyperService::new(tower::service_fn(
            move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                app.clone().oneshot(req)
            },
        ));
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the shutdown grace period");
    }
}
