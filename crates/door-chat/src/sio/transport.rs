//! The two ways a socket's packets travel: one WebSocket, or HTTP long-polling (a GET
//! waits for the server's packets, a POST brings the client's). The socket's task sees
//! either through [`Link`]: the next packet in, a batch of packets out. A polling socket
//! may become a WebSocket one mid-life (the Engine.IO upgrade); [`Link::upgrade`] moves
//! it over without losing or reordering a packet.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::packet::SEPARATOR;

/// What arrives for a socket.
pub enum Input {
    /// One Engine.IO text packet.
    Text(Utf8Bytes),
    /// The client finished upgrading its polling socket to this WebSocket.
    Upgraded(Box<WebSocket>),
    /// Nothing for the socket (a WebSocket ping, a binary frame).
    Skip,
    /// The transport ended; with the close code and reason to send, if one is due.
    Closed(Option<(u16, &'static str)>),
}

/// Why packets did not reach a client.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// It does not read: a write timed out, or too many packets wait for its next poll.
    Slow,
    /// The connection is broken.
    Gone,
}

/// Packets waiting for the client's next GET, and their size.
#[derive(Default)]
struct Outbox {
    packets: VecDeque<Utf8Bytes>,
    bytes: usize,
}

impl Outbox {
    fn push(&mut self, packet: Utf8Bytes) {
        self.bytes += packet.as_str().len();
        self.packets.push_back(packet);
    }

    fn drain(&mut self) -> impl Iterator<Item = Utf8Bytes> + '_ {
        self.bytes = 0;
        self.packets.drain(..)
    }
}

/// The bounds of a polling socket's outbox.
#[derive(Clone, Copy, Debug)]
pub struct OutboxLimit {
    pub packets: usize,
    pub bytes: usize,
}

/// A long-polling socket's HTTP side, shared by its task and its GET and POST requests.
pub struct Poll {
    /// Packets waiting for the client's next GET.
    outbox: Mutex<Outbox>,
    ready: Notify,
    /// A GET is waiting: Engine.IO allows one at a time.
    getting: AtomicBool,
    /// A POST is being read: one at a time too, so a socket buffers one body at most.
    posting: AtomicBool,
    /// When the last GET ended (or the socket opened): a socket that stops polling is
    /// closed, whatever it POSTs.
    last_poll: Mutex<Instant>,
    /// The client's packets (POSTs) and its upgraded WebSocket, to the socket's task.
    pub inbound: mpsc::Sender<Input>,
    /// The socket ended or moved to a WebSocket: GETs stop waiting.
    pub closed: CancellationToken,
}

/// Why a GET got no packets.
#[derive(Debug, PartialEq, Eq)]
pub enum PollError {
    /// Another GET is already waiting.
    Overlap,
}

/// Packets a POST may bring before it waits for the socket's task to catch up.
const INBOUND_QUEUE: usize = 16;

impl Poll {
    pub fn new() -> (Arc<Poll>, mpsc::Receiver<Input>) {
        let (inbound, rx) = mpsc::channel(INBOUND_QUEUE);
        let poll = Poll {
            outbox: Mutex::new(Outbox::default()),
            ready: Notify::new(),
            getting: AtomicBool::new(false),
            posting: AtomicBool::new(false),
            last_poll: Mutex::new(Instant::now()),
            inbound,
            closed: CancellationToken::new(),
        };
        (Arc::new(poll), rx)
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn polled_now(&self) {
        *self.last_poll.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// How long the client has gone without a GET waiting (zero while one waits).
    pub fn unpolled_for(&self) -> Duration {
        if self.getting.load(Ordering::Acquire) {
            return Duration::ZERO;
        }
        self.last_poll
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    /// Mark a POST as being read: `None` when another one is (the caller ends the
    /// socket); the guard clears the mark however the POST ends.
    pub fn posting(&self) -> Option<impl Drop + '_> {
        if self.posting.swap(true, Ordering::AcqRel) {
            return None;
        }
        struct Posting<'a>(&'a AtomicBool);
        impl Drop for Posting<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        Some(Posting(&self.posting))
    }

    /// A GET: wait until packets are waiting (the server pings often enough that this
    /// never waits long), then take them all, joined as a polling body.
    pub async fn take(&self) -> Result<String, PollError> {
        if self.getting.swap(true, Ordering::AcqRel) {
            return Err(PollError::Overlap);
        }
        // Cleared however the GET ends: hyper drops this future when the client hangs up
        // mid-poll, and the next GET must not count as a second one.
        struct Getting<'a>(&'a Poll);
        impl Drop for Getting<'_> {
            fn drop(&mut self) {
                self.0.polled_now();
                self.0.getting.store(false, Ordering::Release);
            }
        }
        let _getting = Getting(self);
        loop {
            let notified = self.ready.notified();
            {
                let mut outbox = self.outbox();
                if !outbox.packets.is_empty() {
                    let mut body = String::with_capacity(outbox.bytes + outbox.packets.len());
                    for (i, packet) in outbox.drain().enumerate() {
                        if i > 0 {
                            body.push(SEPARATOR);
                        }
                        body.push_str(packet.as_str());
                    }
                    return Ok(body);
                }
            }
            if self.closed.is_cancelled() {
                // The socket is gone: tell the client to close.
                return Ok("1".to_string());
            }
            tokio::select! {
                _ = notified => {}
                _ = self.closed.cancelled() => {}
            }
        }
    }

    /// Release a waiting GET with a noop. During an upgrade the client sends `5` only once
    /// its pending poll returns, so the server answers the probe and then this (as the
    /// reference server does); were no GET waiting, the noop goes over the WebSocket,
    /// harmlessly.
    pub fn noop(&self) {
        self.send_now("6");
    }

    /// Queue one Engine.IO packet of the server's own and wake a waiting GET.
    fn send_now(&self, packet: &'static str) {
        self.outbox().push(Utf8Bytes::from_static(packet));
        self.ready.notify_one();
    }

    /// Queue one turn's packets for the next GET; `false` (and the outbox emptied: the
    /// socket is about to be cut, nobody will read them) when they would pass `limit`.
    /// One turn's packets always fit an empty outbox, so a client that polls gets even
    /// an answer larger than the byte limit.
    fn push(&self, packets: &mut Vec<Utf8Bytes>, limit: OutboxLimit) -> bool {
        let mut outbox = self.outbox();
        let bytes: usize = packets.iter().map(|p| p.as_str().len()).sum();
        let too_many = outbox.packets.len() + packets.len() > limit.packets;
        let too_big = !outbox.packets.is_empty() && outbox.bytes + bytes > limit.bytes;
        if too_many || too_big {
            *outbox = Outbox::default();
            return false;
        }
        for packet in packets.drain(..) {
            outbox.push(packet);
        }
        drop(outbox);
        self.ready.notify_one();
        true
    }
}

/// How a socket's task reaches its client.
pub enum Link {
    Ws(Box<WebSocket>),
    Poll(Arc<Poll>, mpsc::Receiver<Input>),
}

impl Link {
    /// The next thing for the socket. Cancel-safe: nothing is lost if another branch of
    /// the caller's `select!` wins.
    pub async fn next(&mut self) -> Input {
        match self {
            Link::Ws(ws) => match ws.next().await {
                Some(Ok(Message::Text(text))) => Input::Text(text),
                // The client's Close is answered when the socket ends (`close`: tungstenite
                // sends the queued reply, the client's code echoed).
                Some(Ok(Message::Close(_))) | None => Input::Closed(None),
                Some(Ok(_)) => Input::Skip,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "chat websocket read failed");
                    Input::Closed(confer_websocket::close_for(&e))
                }
            },
            Link::Poll(_, rx) => rx.recv().await.unwrap_or(Input::Closed(None)),
        }
    }

    /// Send `packets` (and empty it), or say why the client cannot take them.
    pub async fn send(
        &mut self,
        packets: &mut Vec<Utf8Bytes>,
        limit: OutboxLimit,
        timeout: Duration,
    ) -> Result<(), SendError> {
        match self {
            Link::Ws(ws) => {
                let write = async {
                    for packet in packets.drain(..) {
                        ws.feed(Message::Text(packet)).await?;
                    }
                    ws.flush().await
                };
                match tokio::time::timeout(timeout, write).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(SendError::Gone),
                    Err(_) => Err(SendError::Slow),
                }
            }
            Link::Poll(poll, _) if poll.push(packets, limit) => Ok(()),
            Link::Poll(..) => Err(SendError::Slow),
        }
    }

    /// Move to the WebSocket the client upgraded to. Packets still waiting for a poll go
    /// over the WebSocket first (into `packets`, ahead of anything newer); the pending
    /// GET, if any, is released with a noop, as Engine.IO asks.
    pub fn upgrade(&mut self, ws: Box<WebSocket>, packets: &mut Vec<Utf8Bytes>) {
        if let Link::Poll(poll, _) = self {
            let waiting: Vec<Utf8Bytes> = poll.outbox().drain().collect();
            packets.splice(0..0, waiting);
            poll.noop();
            poll.closed.cancel();
        }
        *self = Link::Ws(ws);
    }

    /// End the transport: a close frame on a WebSocket, a close packet for the last poll.
    pub async fn close(&mut self, code: Option<(u16, &'static str)>, timeout: Duration) {
        match self {
            Link::Ws(ws) => {
                let frame = code.map(|(code, reason)| CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(reason),
                });
                let sent = tokio::time::timeout(timeout, ws.send(Message::Close(frame))).await;
                if let Ok(Err(_)) = sent {
                    // The client closed first: tungstenite refuses a close of our own but
                    // has queued its reply to the client's; send that. (Not after a
                    // timeout: a client that does not read would only cost another.)
                    confer_websocket::answer_close(ws, timeout).await;
                }
            }
            Link::Poll(poll, _) => {
                poll.send_now("1");
                poll.closed.cancel();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_poll_gets_waiting_packets_and_a_dropped_poll_does_not_block_the_next() {
        let (poll, _rx) = Poll::new();
        // A GET that the client abandons while it waits.
        let abandoned = tokio::time::timeout(Duration::from_millis(20), poll.take()).await;
        assert!(abandoned.is_err(), "nothing was waiting");
        let mut packets = vec![
            Utf8Bytes::from_static("2"),
            Utf8Bytes::from_static("42/data,[\"x\"]"),
        ];
        assert!(poll.push(&mut packets, limit(10, 1000)));
        assert_eq!(poll.take().await, Ok("2\u{1e}42/data,[\"x\"]".to_string()));
    }

    #[tokio::test]
    async fn two_polls_at_once_are_refused_and_a_full_outbox_is_refused() {
        let (poll, _rx) = Poll::new();
        let first = {
            let poll = poll.clone();
            tokio::spawn(async move { poll.take().await })
        };
        tokio::task::yield_now().await;
        while !poll.getting.load(Ordering::Acquire) {
            tokio::task::yield_now().await;
        }
        assert_eq!(poll.take().await, Err(PollError::Overlap));
        let mut three = vec![Utf8Bytes::from_static("6"); 3];
        assert!(!poll.push(&mut three, limit(2, 1000)), "over the limit");
        poll.noop();
        assert_eq!(first.await.unwrap(), Ok("6".to_string()));
    }

    #[tokio::test]
    async fn an_outbox_is_bounded_in_bytes_and_emptied_when_over() {
        let (poll, _rx) = Poll::new();
        let big = Utf8Bytes::from("x".repeat(600));
        assert!(poll.push(&mut vec![big.clone()], limit(100, 1000)));
        assert!(
            !poll.push(&mut vec![big.clone()], limit(100, 1000)),
            "1,200 bytes"
        );
        assert_eq!(poll.outbox().bytes, 0, "what nobody will read is freed");
        // Alone, one turn's packets fit even when larger than the limit.
        assert!(poll.push(&mut vec![big.clone(), big], limit(100, 1000)));
    }

    fn limit(packets: usize, bytes: usize) -> OutboxLimit {
        OutboxLimit { packets, bytes }
    }
}
