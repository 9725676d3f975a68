//! What the shared HTTP layer refuses before any door sees a request: too many
//! connections from one address, a request body that does not progress, and a
//! `Content-Length` larger than any route accepts. Used by [`crate::serve`], once for
//! every route, so no door needs its own copy.
//!
//! - [`PerIp`] counts open connections by client address. The count is held by the
//!   connection's socket itself ([`Counted`]), so an upgraded connection (a WebSocket)
//!   keeps its slot for its whole life, not only while it was an HTTP request.
//! - [`Progress`] wraps every request body: while a handler waits for body bytes, the
//!   body must bring at least `min_bytes` every `timeout`, or it ends with an error (a
//!   stalled or trickling upload frees its connection).
//! - [`too_large`] answers 413 at once when the declared length is over the limit.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Open connections by client address, with a cap (0: none).
pub struct PerIp {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    pub fn new(max: usize) -> Arc<PerIp> {
        Arc::new(PerIp {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for one more connection from `ip`, or `None` when it has its share.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut table = self.table();
        let open = table.entry(ip).or_insert(0);
        if self.max != 0 && *open >= self.max {
            return None;
        }
        *open += 1;
        Some(Slot {
            table: self.clone(),
            ip,
        })
    }
}

/// One admitted connection; given back when dropped.
pub struct Slot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.table.table();
        if let Some(open) = table.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                table.remove(&self.ip);
            }
        }
    }
}

/// An accepted socket and its slot: the slot goes when the socket does, whoever holds it
/// then (hyper, or the door an upgrade handed it to).
pub struct Counted {
    tcp: TcpStream,
    _slot: Slot,
}

impl Counted {
    pub fn new(tcp: TcpStream, slot: Slot) -> Counted {
        Counted { tcp, _slot: slot }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// A request body that stopped progressing.
#[derive(Debug, thiserror::Error)]
#[error("request body too slow: fewer than {min_bytes} bytes in {timeout:?}")]
pub struct TooSlow {
    min_bytes: u64,
    timeout: Duration,
}

/// How fast a request body must come while a handler waits for it.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub timeout: Duration,
    pub min_bytes: u64,
}

/// A request body that fails once it brings fewer than `pace.min_bytes` within
/// `pace.timeout` of waiting. The clock runs only while the handler waits for bytes
/// (a handler busy elsewhere is not the client's fault) and restarts each time the
/// minimum is reached.
pub struct Progress<B> {
    inner: B,
    pace: Pace,
    /// Bytes since the clock last restarted.
    got: u64,
    /// Running while the handler waits.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    failed: bool,
}

impl<B> Progress<B> {
    pub fn new(inner: B, pace: Pace) -> Progress<B> {
        Progress {
            inner,
            pace,
            got: 0,
            deadline: None,
            failed: false,
        }
    }
}

impl<B> Body for Progress<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.got += data.len() as u64;
                    if this.got >= this.pace.min_bytes {
                        this.got = 0;
                        this.deadline = None;
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let timeout = this.pace.timeout;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.failed = true;
                this.deadline = None;
                tracing::debug!("request body aborted: too slow");
                Poll::Ready(Some(Err(Box::new(TooSlow {
                    min_bytes: this.pace.min_bytes,
                    timeout,
                }))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// 413 when the request declares a body longer than `max` (bytes): answered before a
/// byte of it is read, and the connection is closed after.
pub fn too_large(headers: &HeaderMap, max: u64) -> Option<Response> {
    let declared: u64 = headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if declared <= max {
        return None;
    }
    let mut response = (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body too large (limit {max} bytes)"),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_address_and_given_back() {
        let table = PerIp::new(2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = table.admit(a);
        let second = table.admit(a);
        assert!(first.is_some() && second.is_some());
        assert!(table.admit(a).is_none(), "a third from the same address");
        assert!(
            table.admit(b).is_some(),
            "another address has its own share"
        );
        drop(first);
        assert!(table.admit(a).is_some(), "a slot given back is free again");
        drop(second);
        assert!(
            table.table().is_empty(),
            "no entry kept for closed connections"
        );
    }

    #[test]
    fn no_cap_when_zero() {
        let table = PerIp::new(0);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let slots: Vec<_> = (0..1000).filter_map(|_| table.admit(ip)).collect();
        assert_eq!(slots.len(), 1000);
    }

    #[test]
    fn only_a_declared_length_over_the_limit_is_refused() {
        let mut headers = HeaderMap::new();
        assert!(too_large(&headers, 10).is_none(), "no length declared");
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert!(too_large(&headers, 10).is_none());
        headers.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from_static("2000000000"),
        );
        let refused = too_large(&headers, 10).map(|r| r.status());
        assert_eq!(refused, Some(StatusCode::PAYLOAD_TOO_LARGE));
    }
}
