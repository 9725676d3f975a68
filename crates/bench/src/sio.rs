//! A minimal Socket.IO v4 client over the WebSocket transport, just enough for load:
//! namespace connect with auth, emits with acks, events, and answering pings. Lean on
//! purpose, so that thousands of connections measure the server, not the client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Calls waiting for their ack (its arguments, unparsed); `None` once the connection ended.
type Acks = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<String>>>>>;

/// Every WebSocket this load client opens. tungstenite zero-fills its whole read buffer
/// before each read (128 KiB by default): that memset was an eighth of this client's CPU
/// under ingest. The server's frames here are at most a few KiB.
pub fn ws_config() -> Option<WebSocketConfig> {
    Some(WebSocketConfig::default().read_buffer_size(8 * 1024))
}

/// The one field of an ack the load needs. Parsing every ack whole into a `Value` (an
/// ordered map per object) cost this client more than reading the socket did: confer's
/// `create_message` ack carries the whole message.
#[derive(serde::Deserialize)]
struct AckResult {
    result: i64,
}

pub struct Sio {
    out: mpsc::UnboundedSender<Message>,
    acks: Acks,
    next: AtomicU64,
    ns: String,
}

/// An event the server emitted, kept as the frame it came in: a scenario parses what it
/// needs. Fan-out needs only the send stamp, and parsing every delivery whole into a
/// `Value` was the load client's largest cost there, more for servers that send richer
/// messages.
pub struct SioEvent {
    frame: Utf8Bytes,
    /// Where the event's JSON array (`["name", arg]`) starts; for the raw WebSocket peer,
    /// its message object.
    at: usize,
    raw: bool,
}

impl SioEvent {
    /// A raw WebSocket peer's frame: a `message` event whose argument is the frame.
    pub fn raw(frame: Utf8Bytes) -> SioEvent {
        SioEvent {
            frame,
            at: 0,
            raw: true,
        }
    }

    fn json(&self) -> &str {
        self.frame.as_str().get(self.at..).unwrap_or("")
    }

    /// Whether the event is called `name`.
    pub fn is(&self, name: &str) -> bool {
        if self.raw {
            return name == "message";
        }
        let rest = self.json().strip_prefix("[\"").unwrap_or("");
        rest.strip_prefix(name)
            .is_some_and(|r| r.starts_with("\",") || r.starts_with("\"]"))
    }

    /// The event's name and first argument.
    pub fn parse(&self) -> (String, Value) {
        let value = serde_json::from_str::<Value>(self.json()).unwrap_or(Value::Null);
        if self.raw {
            return ("message".into(), value);
        }
        match value {
            Value::Array(mut parts) if !parts.is_empty() => {
                let name = parts.remove(0).as_str().unwrap_or("").to_string();
                (name, parts.into_iter().next().unwrap_or(Value::Null))
            }
            _ => (String::new(), Value::Null),
        }
    }

    /// The send time a fan-out message carries as its text (`"t=<µs since the epoch>"`),
    /// found in the frame without parsing it.
    pub fn stamp(&self) -> Option<u64> {
        let text = self.json();
        let at = text.find("\"t=")? + 3;
        let digits = &text[at..];
        let end = digits.find('"')?;
        digits[..end].parse().ok()
    }
}

impl Sio {
    /// Connect to `base` (`ws://host:port`), join namespace `ns` with `auth`, and return the
    /// client with its stream of events.
    pub async fn connect(
        base: &str,
        ns: &str,
        auth: Option<Value>,
        bind: Option<std::net::IpAddr>,
    ) -> anyhow::Result<(Sio, mpsc::UnboundedReceiver<SioEvent>)> {
        let url = format!("{base}/socket.io/?EIO=4&transport=websocket");
        let host = base.trim_start_matches("ws://");
        let addr: std::net::SocketAddr = host.parse().context("base must be ws://ip:port")?;
        let socket = match bind {
            Some(ip) => {
                let s = tokio::net::TcpSocket::new_v4()?;
                s.bind(std::net::SocketAddr::new(ip, 0))?;
                s.connect(addr).await?
            }
            None => TcpStream::connect(addr).await?,
        };
        socket.set_nodelay(true)?;
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, socket, ws_config()).await?;
        let (mut sink, mut stream) = ws.split();
        let open = stream
            .next()
            .await
            .ok_or_else(|| anyhow!("closed before open"))??;
        if !open.to_text().unwrap_or("").starts_with('0') {
            return Err(anyhow!("unexpected engine.io open: {open:?}"));
        }
        let connect = match &auth {
            Some(a) => format!("40{ns},{a}"),
            None => format!("40{ns},"),
        };
        sink.send(Message::Text(connect.into())).await?;
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (events_tx, events) = mpsc::unbounded_channel();
        let acks: Acks = Arc::new(Mutex::new(Some(HashMap::new())));
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let pong = out.clone();
        let acks_in = acks.clone();
        let prefix = format!("{ns},");
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let Message::Text(frame) = m else { continue };
                let t = frame.as_str();
                if t == "2" {
                    let _ = pong.send(Message::Text("3".into()));
                    continue;
                }
                let (kind, rest) = t.split_at(t.len().min(2));
                let rest = rest.strip_prefix(prefix.as_str()).unwrap_or(rest);
                match kind {
                    // Nobody listens (ingest waits for acks only): not parsed at all.
                    "42" if events_tx.is_closed() => {}
                    "42" => {
                        let at = t.len() - rest.len();
                        let _ = events_tx.send(SioEvent {
                            frame: frame.clone(),
                            at,
                            raw: false,
                        });
                    }
                    "43" => {
                        let digits: String =
                            rest.chars().take_while(char::is_ascii_digit).collect();
                        let id: u64 = digits.parse().unwrap_or(0);
                        let body = rest[digits.len()..].to_string();
                        let waiter = acks_in
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .as_mut()
                            .and_then(|waiting| waiting.remove(&id));
                        if let Some(w) = waiter {
                            let _ = w.send(body);
                        }
                    }
                    _ => {}
                }
            }
            // The connection ended: calls waiting for an ack fail now, and later calls at
            // once, instead of waiting forever.
            acks_in.lock().unwrap_or_else(|e| e.into_inner()).take();
        });
        Ok((
            Sio {
                out,
                acks,
                next: AtomicU64::new(1),
                ns: ns.to_string(),
            },
            events,
        ))
    }

    /// Leave the namespace and close the connection.
    pub fn close(&self) {
        let _ = self
            .out
            .send(Message::Text(format!("41{},", self.ns).into()));
        let _ = self.out.send(Message::Close(None));
    }

    /// Emit `name` with `arg` and wait for the ack's first argument.
    pub async fn call(&self, name: &str, arg: &Value) -> anyhow::Result<Value> {
        let body = self.call_raw(name, arg).await?;
        let mut args: Vec<Value> = serde_json::from_str(&body)?;
        Ok(if args.is_empty() {
            Value::Null
        } else {
            args.swap_remove(0)
        })
    }

    /// Emit `name` with `arg` and wait for the ack's `result` alone.
    pub async fn call_result(&self, name: &str, arg: &Value) -> anyhow::Result<i64> {
        let body = self.call_raw(name, arg).await?;
        let (ack,): (AckResult,) = serde_json::from_str(&body)?;
        Ok(ack.result)
    }

    /// Emit `name` with `arg` and wait for the ack's arguments as sent (a JSON array).
    async fn call_raw(&self, name: &str, arg: &Value) -> anyhow::Result<String> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.acks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .ok_or_else(|| anyhow!("connection closed"))?
            .insert(id, tx);
        // Written straight from the argument: `json!([name, arg])` would copy it whole.
        let packet = format!("42{},{id}[{},{arg}]", self.ns, Value::from(name));
        self.out
            .send(Message::Text(packet.into()))
            .map_err(|_| anyhow!("connection closed"))?;
        Ok(rx.await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(frame: &str) -> SioEvent {
        SioEvent {
            at: frame.find('[').unwrap_or(0),
            frame: Utf8Bytes::from(frame.to_string()),
            raw: false,
        }
    }

    #[test]
    fn an_event_is_known_by_its_name_and_its_stamp_read_from_the_text() {
        let e = event(r#"42/data,["message",{"message":{"message_id":"7","message":"t=123"}}]"#);
        assert!(e.is("message"));
        assert!(!e.is("messages") && !e.is("mess"));
        assert_eq!(e.stamp(), Some(123));
        let (name, arg) = e.parse();
        assert_eq!(
            (name.as_str(), &arg["message"]["message_id"]),
            ("message", &Value::from("7"))
        );
        assert!(event(r#"42/data,["login"]"#).is("login"));
        assert_eq!(
            event(r#"42/data,["message",{"message":"hi"}]"#).stamp(),
            None
        );
    }

    #[test]
    fn a_raw_frame_is_a_message_event() {
        let e = SioEvent::raw(Utf8Bytes::from_static(r#"{"message":"t=9"}"#));
        assert!(e.is("message"));
        assert_eq!(e.stamp(), Some(9));
        assert_eq!(e.parse().1["message"], "t=9");
    }
}
