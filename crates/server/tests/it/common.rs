//! Test harness: the real server on 127.0.0.1:0 with a temporary data folder, a WebSocket
//! client for the External API that answers server requests the way a real client does,
//! and a minimal HTTP/1.1 client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confer_server::{Config, Running};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

pub const ADMIN_PASSWORD: &str = "admin-secret";
/// Long enough for anything a test waits on; tests never assert on timing.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    pub dir: Arc<tempfile::TempDir>,
    pub config: Config,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().join("data"),
            admin_password: Some(ADMIN_PASSWORD.into()),
            ..Config::default()
        };
        tweak(&mut config);
        Self::start_in(dir, config).await
    }

    async fn start_in(dir: Arc<tempfile::TempDir>, config: Config) -> TestServer {
        let running = confer_server::start(config.clone()).await.unwrap();
        TestServer {
            addr: running.addr(),
            running: Some(running),
            dir,
            config,
        }
    }

    /// Stop gracefully and start again on the same data folder (a new port).
    pub async fn restart(mut self) -> TestServer {
        self.running.take().unwrap().stop().await.unwrap();
        let dir = self.dir.clone();
        Self::start_in(dir, self.config.clone()).await
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/ws", self.addr)
    }

    /// Create an account through the core, as `confer user add` does.
    pub async fn add_user(&self, login: &str, password: &str) {
        let core = confer_server::build_core(&self.config).unwrap();
        core.add_account(login, password, None, None).await.unwrap();
        core.flush().await.unwrap();
    }

    pub async fn connect(&self) -> Client {
        Client::connect(&self.ws_url(), true).await
    }

    /// Connect and log in with a password.
    pub async fn login(&self, user: &str, password: &str) -> (Client, String) {
        let client = self.connect().await;
        let session = logged_in(&client, json!({"user": user, "password": password})).await;
        (client, session)
    }

    pub async fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        http(self.addr, method, path, headers, body).await
    }
}

/// A login token from `POST /api/v1/login` at `addr`, as a client gets and keeps one.
pub async fn token(addr: SocketAddr, user: &str, password: &str) -> String {
    let body = json!({"user": user, "password": password}).to_string();
    let (status, body) = http(addr, "POST", "/api/v1/login", &[], &body).await;
    assert_eq!(status, 200, "login of {user} over HTTP: {body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    reply["session"].as_str().unwrap().to_string()
}

/// Log `client` in as `user` with a token (`user login`); its session id.
pub async fn login(client: &Client, user: &str, token: &str) -> String {
    logged_in(client, json!({"user": user, "token": token})).await
}

/// `user login` with `data`, which must succeed; the session id.
async fn logged_in(client: &Client, data: Value) -> String {
    let reply = client.call("core", "user", "login", data).await;
    assert_eq!(reply["result"], "ok", "login failed: {reply}");
    reply["data"]["session_id"].as_str().unwrap().to_string()
}

/// The close code and reason the server sent, if it sent a close frame.
pub type CloseInfo = Option<(u16, String)>;

/// A request the server sent to the client (an event, a ping, a forwarded command).
pub type ServerRequest = Value;

/// An External API client. A reader task routes answers to their callers by tid; server
/// requests go to `requests`, and, when `auto_answer` is set, events and pings are
/// answered `ok` at once as a well-behaved client does.
pub struct Client {
    out: mpsc::UnboundedSender<Message>,
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    requests: tokio::sync::Mutex<mpsc::UnboundedReceiver<ServerRequest>>,
    closed: tokio::sync::Mutex<Option<oneshot::Receiver<CloseInfo>>>,
    next_tid: std::sync::atomic::AtomicU64,
}

impl Client {
    pub async fn connect(url: &str, auto_answer: bool) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let (req_tx, req_rx) = mpsc::unbounded_channel();
        let (closed_tx, closed_rx) = oneshot::channel();
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let w = waiting.clone();
        let answer = out.clone();
        tokio::spawn(async move {
            let mut close = None;
            while let Some(Ok(msg)) = stream.next().await {
                match msg {
                    Message::Text(t) => {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap();
                        if v.get("result").is_some() {
                            let tid = v["tid"].as_u64().unwrap_or(0);
                            let waiter = w.lock().unwrap().remove(&tid);
                            match waiter {
                                Some(tx) => {
                                    let _ = tx.send(v);
                                }
                                None => {
                                    let _ = req_tx.send(json!({"unmatched": v}));
                                }
                            }
                        } else {
                            let auto = auto_answer
                                && matches!(v["cmd"].as_str(), Some("event") | Some("ping"));
                            if auto {
                                let ok = json!({"result": "ok", "tid": v["tid"]});
                                let _ = answer.send(Message::Text(ok.to_string().into()));
                            }
                            let _ = req_tx.send(v);
                        }
                    }
                    Message::Close(frame) => {
                        close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                        break;
                    }
                    _ => {}
                }
            }
            let _ = closed_tx.send(close);
        });
        Client {
            out,
            waiting,
            requests: tokio::sync::Mutex::new(req_rx),
            closed: tokio::sync::Mutex::new(Some(closed_rx)),
            next_tid: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Send a request and wait for its answer frame.
    pub async fn call(&self, class: &str, subclass: &str, cmd: &str, data: Value) -> Value {
        let tid = self
            .next_tid
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut frame = json!({"class": class, "subclass": subclass, "cmd": cmd, "tid": tid});
        if !data.is_null() {
            frame["data"] = data;
        }
        self.raw_call(tid, &frame.to_string()).await
    }

    /// [`call`](Self::call), but `None` when no answer comes within [`WAIT`] (the
    /// server died): for tests that kill a server mid-traffic.
    pub async fn try_call(
        &self,
        class: &str,
        subclass: &str,
        cmd: &str,
        data: Value,
    ) -> Option<Value> {
        let tid = self
            .next_tid
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let frame =
            json!({"class": class, "subclass": subclass, "cmd": cmd, "tid": tid, "data": data});
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(tid, tx);
        self.send_text(&frame.to_string());
        tokio::time::timeout(WAIT, rx).await.ok()?.ok()
    }

    /// `core/user/login` with these fields; the answer frame.
    pub async fn login_with(&self, data: Value) -> Value {
        self.call("core", "user", "login", data).await
    }

    /// Send any text and wait for the answer with `tid`.
    pub async fn raw_call(&self, tid: u64, text: &str) -> Value {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(tid, tx);
        self.send_text(text);
        tokio::time::timeout(WAIT, rx)
            .await
            .expect("no answer")
            .expect("connection closed")
    }

    pub fn send_text(&self, text: &str) {
        let _ = self.out.send(Message::Text(text.to_string().into()));
    }

    pub fn send_message(&self, m: Message) {
        let _ = self.out.send(m);
    }

    /// The next server request (event, ping, forwarded command).
    pub async fn next_request(&self) -> ServerRequest {
        let mut rx = self.requests.lock().await;
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("no server request")
            .expect("closed")
    }

    /// The next event's `data`, skipping pings.
    pub async fn next_event(&self) -> Value {
        loop {
            let r = self.next_request().await;
            if r["cmd"] == "event" {
                return r["data"].clone();
            }
        }
    }

    /// The next event whose `type` is `kind`, skipping others.
    pub async fn event_of_type(&self, kind: &str) -> Value {
        loop {
            let e = self.next_event().await;
            if e["type"] == kind {
                return e;
            }
        }
    }

    /// Whether an event arrives within `d` (for "must not receive" checks).
    pub async fn no_event_within(&self, d: Duration) -> bool {
        let mut rx = self.requests.lock().await;
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return true,
                Ok(None) => return true,
                Ok(Some(r)) if r["cmd"] == "event" => return false,
                Ok(Some(_)) => {}
            }
        }
    }

    /// Wait for the server to close the connection: its close code and reason.
    pub async fn closed(&self) -> Option<(u16, String)> {
        let rx = self
            .closed
            .lock()
            .await
            .take()
            .expect("closed() called twice");
        tokio::time::timeout(WAIT, rx)
            .await
            .expect("connection not closed")
            .unwrap_or(None)
    }

    pub fn answer(&self, frame: Value) {
        self.send_text(&frame.to_string());
    }
}

/// A minimal HTTP/1.1 request: (status, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let (status, _, body) = http_bytes(addr, method, path, headers, body.as_bytes()).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A minimal HTTP/1.1 request with a byte body: (status, lower-cased head, body bytes).
pub async fn http_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    // The server may answer (413) before reading everything; that is not an error here.
    let _ = stream.write_all(&bytes).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(&body)
    } else {
        body
    };
    (status, head, body)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = body.windows(2).position(|w| w == b"\r\n") {
        let n =
            usize::from_str_radix(String::from_utf8_lossy(&body[..pos]).trim(), 16).unwrap_or(0);
        if n == 0 || body.len() < pos + 2 + n {
            break;
        }
        out.extend_from_slice(&body[pos + 2..pos + 2 + n]);
        body = body.get(pos + 4 + n..).unwrap_or_default();
    }
    out
}

/// The `data.code` of an error answer.
pub fn code(reply: &Value) -> u64 {
    assert_eq!(reply["result"], "error", "expected an error: {reply}");
    reply["data"]["code"].as_u64().unwrap()
}

pub fn ok_data(reply: &Value) -> Value {
    assert_eq!(reply["result"], "ok", "expected ok: {reply}");
    reply.get("data").cloned().unwrap_or(Value::Null)
}
