//! The ejabberd peer (`bench/peers/ejabberd`) and the load client that speaks XMPP to it.
//!
//! The peer: Debian's ejabberd started as a plain process on a temporary folder of its
//! own, with accounts, MUC rooms and the message archive (`mod_mam`) in one SQLite
//! database that this module prepares before the start (Debian's `lite.sql` schema,
//! `journal_mode=WAL`, SQLite's default `synchronous=FULL`, the accounts inserted so
//! thousands are ready at once).
//!
//! The client is hand-written on tokio rather than a crate: it needs a stream header,
//! SASL PLAIN, resource binding, a MUC join and groupchat messages, which are a few
//! lines each, while the XMPP client crates bring TLS, DNS resolution and a full XML
//! tree per stanza, and this client holds thousands of connections on the cores the
//! server is measured on. It reads stanzas with a small splitter that trusts the
//! server's serialisation (ejabberd writes canonical XML), and parses only what the
//! scenarios need: a groupchat message's `id` and body, a presence's status codes.
//!
//! A groupchat message is acked by the room's reflection of it to its sender (same
//! `id`): ejabberd archives it before the room relays it, so the reflection means it
//! is stored, as confer's ack does. Every member, the sender included, receives it as
//! a delivery, as confer's Chat API members receive their own messages.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use confer_core::Principal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::server::{free_port, Server};
use crate::sio::SioEvent;

/// Every account's password (the fixture's accounts share one, as confer's do).
pub(crate) const PASSWORD: &str = "bench";
/// The XMPP domain and its MUC service.
const DOMAIN: &str = "localhost";
const MUC: &str = "conference.localhost";

fn peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/peers/ejabberd")
}

/// Debian's schema for SQLite, as the `ejabberd` package installs it.
const SCHEMA: &str = "/usr/share/ejabberd/sql/lite.sql";

/// Start ejabberd with `users` as accounts (their logins, password [`PASSWORD`]).
pub(crate) async fn start_ejabberd(users: &[(Principal, String)]) -> anyhow::Result<Server> {
    if !Path::new(SCHEMA).exists() {
        bail!("ejabberd peer not installed ({SCHEMA} is missing): scripts/bench installs Debian's ejabberd and erlang-p1-sqlite3");
    }
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("ejabberd.sqlite");
    prepare_db(&db, users)?;
    let port = free_port()?;
    let template = std::fs::read_to_string(peer_dir().join("ejabberd.yml"))
        .context("reading bench/peers/ejabberd/ejabberd.yml")?;
    let config = template
        .replace("@PORT@", &port.to_string())
        .replace("@DB@", &db.to_string_lossy());
    std::fs::write(dir.path().join("ejabberd.yml"), config)?;
    let child = tokio::process::Command::new(peer_dir().join("start.sh"))
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting ejabberd (bench/peers/ejabberd/start.sh)")?;
    let mut server = Server {
        child,
        port,
        _dir: Some(dir),
        respawn: None,
        accounts: None,
    };
    // The BEAM takes seconds to start on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            server.settle().await;
            return Ok(server);
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            bail!(
                "ejabberd exited ({status}); see its log in {}",
                server
                    ._dir
                    .as_ref()
                    .map_or(PathBuf::new(), |d| d.path().join("ejabberd.log"))
                    .display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("ejabberd did not listen on port {port} within 180 s")
}

/// The database ejabberd opens: Debian's schema in WAL mode (a setting the file keeps),
/// with the accounts.
fn prepare_db(db: &Path, users: &[(Principal, String)]) -> anyhow::Result<()> {
    let schema = std::fs::read_to_string(SCHEMA)?;
    let mut conn = rusqlite::Connection::open(db)?;
    conn.execute_batch(&schema)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare("INSERT INTO users (username, password) VALUES (?1, ?2)")?;
        for (who, _) in users {
            insert.execute(rusqlite::params![who.login, PASSWORD])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Answers the reader is waiting for, by key: a message's or an iq's `id`, or [`JOIN`]
/// for the room's presence of the client itself. The value is what the answer said:
/// `""` for success, `"created"` for a room this join created, `"error"`.
type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<&'static str>>>>;

const JOIN: &str = "\u{0}join";

/// A logged-in XMPP client: SASL PLAIN, bound to a resource.
pub struct Xmpp {
    out: mpsc::UnboundedSender<String>,
    waiting: Waiting,
    next: AtomicU64,
    nick: String,
}

impl Xmpp {
    /// Connect to ejabberd at `port`, log in as `login`, bind a resource, and start
    /// reading: groupchat messages with a body come out as `message` events.
    pub async fn connect(
        port: u16,
        login: &str,
        bind: Option<std::net::IpAddr>,
    ) -> anyhow::Result<(Xmpp, mpsc::UnboundedReceiver<SioEvent>)> {
        let tcp = match bind {
            Some(ip) => {
                let s = tokio::net::TcpSocket::new_v4()?;
                s.bind((ip, 0).into())?;
                s.connect(([127, 0, 0, 1], port).into()).await?
            }
            None => TcpStream::connect(("127.0.0.1", port)).await?,
        };
        tcp.set_nodelay(true)?;
        let (mut rd, mut wr) = tcp.into_split();
        let mut split = Splitter::default();
        let header = format!(
            "<?xml version='1.0'?><stream:stream to='{DOMAIN}' xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
        );
        wr.write_all(header.as_bytes()).await?;
        expect(&mut rd, &mut split, "<stream:features").await?;
        let plain =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{login}\0{PASSWORD}"));
        let auth = format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>"
        );
        wr.write_all(auth.as_bytes()).await?;
        let answer = next_stanza(&mut rd, &mut split).await?;
        if !answer.starts_with("<success") {
            bail!("login refused for {login}: {answer}");
        }
        // A new stream after SASL: the server opens its own again.
        split = Splitter::default();
        wr.write_all(header.as_bytes()).await?;
        expect(&mut rd, &mut split, "<stream:features").await?;
        wr.write_all(
            b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
              <resource>bench</resource></bind></iq>",
        )
        .await?;
        let bound = expect(&mut rd, &mut split, "<iq").await?;
        if !bound.contains("type='result'") {
            bail!("bind refused for {login}: {bound}");
        }
        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(s) = out_rx.recv().await {
                if wr.write_all(s.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        let waiting: Waiting = Arc::default();
        let (events_tx, events) = mpsc::unbounded_channel();
        tokio::spawn(read_loop(rd, split, waiting.clone(), events_tx));
        let client = Xmpp {
            out,
            waiting,
            next: AtomicU64::new(0),
            nick: login.to_string(),
        };
        Ok((client, events))
    }

    fn send(&self, stanza: String) -> anyhow::Result<()> {
        self.out
            .send(stanza)
            .map_err(|_| anyhow!("connection closed"))
    }

    /// Register an answer to wait for under `key`, then send `stanza`.
    async fn ask(&self, key: String, stanza: String) -> anyhow::Result<&'static str> {
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, tx);
        self.send(stanza)?;
        rx.await.map_err(|_| anyhow!("connection closed"))
    }

    /// Be online (initial presence), as a client that stays connected is.
    pub fn online(&self) -> anyhow::Result<()> {
        self.send("<presence/>".into())
    }

    /// Join the room of `group` without its history; the first to join creates it and
    /// accepts the default configuration (an instant room, persistent, archived).
    pub async fn join(&self, group: &str) -> anyhow::Result<()> {
        let room = format!("g{group}@{MUC}");
        let presence = format!(
            "<presence to='{room}/{}'><x xmlns='http://jabber.org/protocol/muc'>\
             <history maxstanzas='0'/></x></presence>",
            self.nick
        );
        match self.ask(JOIN.into(), presence).await? {
            "error" => bail!("joining {room} refused"),
            "created" => {
                let id = format!("c{}", self.next.fetch_add(1, Ordering::Relaxed));
                let config = format!(
                    "<iq type='set' id='{id}' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'>\
                     <x xmlns='jabber:x:data' type='submit'/></query></iq>"
                );
                if self.ask(id, config).await? == "error" {
                    bail!("configuring {room} refused");
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Send `body` to the room of `group` and wait for its reflection (it is archived
    /// then): 0, or 1 if the room answered with an error.
    pub async fn send_message(&self, group: &str, body: &str) -> anyhow::Result<i64> {
        let id = format!("m{}", self.next.fetch_add(1, Ordering::Relaxed));
        let stanza = format!(
            "<message to='g{group}@{MUC}' type='groupchat' id='{id}'><body>{}</body></message>",
            escape(body)
        );
        Ok(match self.ask(id, stanza).await? {
            "error" => 1,
            _ => 0,
        })
    }
}

/// Read stanzas until the connection ends: answer whoever waits for one, and pass each
/// groupchat message with a body on as a `message` event (its body as the text).
async fn read_loop(
    mut rd: OwnedReadHalf,
    mut split: Splitter,
    waiting: Waiting,
    events: mpsc::UnboundedSender<SioEvent>,
) {
    let mut events = Some(events);
    loop {
        while let Some(stanza) = split.next_stanza() {
            let answer = |key: &str, said: &'static str| {
                let tx = waiting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(key);
                if let Some(tx) = tx {
                    let _ = tx.send(said);
                }
            };
            let head = &stanza[..stanza.find('>').unwrap_or(stanza.len())];
            let failed = head.contains("type='error'");
            if stanza.starts_with("<message") {
                if let Some(id) = attr(head, "id") {
                    answer(id, if failed { "error" } else { "" });
                }
                if let (false, Some(body), Some(tx)) = (failed, body(&stanza), &events) {
                    let frame = format!("{{\"message\":\"{body}\"}}");
                    if tx.send(SioEvent::raw(frame.into())).is_err() {
                        // Nobody reads this client's deliveries (an ingest sender).
                        events = None;
                    }
                }
            } else if stanza.starts_with("<presence") {
                if failed && head.contains(&format!("@{MUC}")) {
                    answer(JOIN, "error");
                } else if stanza.contains("code='110'") {
                    answer(
                        JOIN,
                        if stanza.contains("code='201'") {
                            "created"
                        } else {
                            ""
                        },
                    );
                }
            } else if stanza.starts_with("<iq") {
                if let Some(id) = attr(head, "id") {
                    answer(id, if failed { "error" } else { "" });
                }
            }
        }
        if !split.fill(&mut rd).await {
            break;
        }
    }
    // The connection ended: whoever still waits learns it from the dropped senders.
    waiting.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

async fn next_stanza(rd: &mut OwnedReadHalf, split: &mut Splitter) -> anyhow::Result<String> {
    loop {
        if let Some(s) = split.next_stanza() {
            return Ok(s);
        }
        if !split.fill(rd).await {
            bail!("the XMPP server closed the stream");
        }
    }
}

/// The next stanza that starts with `prefix`, skipping others.
async fn expect(
    rd: &mut OwnedReadHalf,
    split: &mut Splitter,
    prefix: &str,
) -> anyhow::Result<String> {
    loop {
        let s = next_stanza(rd, split).await?;
        if s.starts_with(prefix) {
            return Ok(s);
        }
        if s.starts_with("<stream:error") {
            bail!("stream error: {s}");
        }
    }
}

/// The value of attribute `name` in a start tag (single-quoted, as ejabberd writes).
fn attr<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}='");
    let at = head.find(&key)? + key.len();
    let len = head[at..].find('\'')?;
    Some(&head[at..at + len])
}

/// The text of a message's `<body>`, as written (the scenarios' bodies need no
/// unescaping: a stamp or a letter).
fn body(stanza: &str) -> Option<&str> {
    let at = stanza.find("<body>")? + "<body>".len();
    let len = stanza[at..].find("</body>")?;
    Some(&stanza[at..at + len])
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Splits the stream into top-level stanzas (the children of `<stream:stream>`) by
/// counting tags; text and attributes are assumed to hold no raw `>` or `<`.
#[derive(Default)]
struct Splitter {
    buf: Vec<u8>,
    /// Where scanning resumes.
    pos: usize,
    /// Elements open at `pos`: 1 inside the stream, between stanzas.
    depth: u32,
    /// Where the stanza being read started.
    start: Option<usize>,
}

impl Splitter {
    /// Read more from the socket; false once it ended.
    async fn fill(&mut self, rd: &mut OwnedReadHalf) -> bool {
        let mut chunk = [0u8; 8192];
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    fn next_stanza(&mut self) -> Option<String> {
        loop {
            let lt = self.pos + self.buf[self.pos..].iter().position(|&b| b == b'<')?;
            let gt = lt + self.buf[lt..].iter().position(|&b| b == b'>')?;
            self.pos = gt + 1;
            let tag = &self.buf[lt..=gt];
            match tag.get(1) {
                Some(b'?') | Some(b'!') => {}
                Some(b'/') => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 1 {
                        return self.take();
                    }
                }
                _ => {
                    if self.depth == 1 {
                        self.start = Some(lt);
                    }
                    if tag.len() >= 2 && tag[tag.len() - 2] == b'/' {
                        if self.depth == 1 {
                            return self.take();
                        }
                    } else {
                        self.depth += 1;
                        if self.depth == 1 {
                            // The stream's own start tag: nothing to keep before it.
                            self.buf.drain(..self.pos);
                            self.pos = 0;
                        }
                    }
                }
            }
        }
    }

    fn take(&mut self) -> Option<String> {
        let start = self.start.take().unwrap_or(0);
        let stanza = String::from_utf8_lossy(&self.buf[start..self.pos]).into_owned();
        self.buf.drain(..self.pos);
        self.pos = 0;
        Some(stanza)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanzas_are_split_at_the_stream_level_across_reads() {
        let mut s = Splitter::default();
        s.buf.extend_from_slice(
            b"<?xml version='1.0'?><stream:stream id='1'><stream:features><bind/></stream:fea",
        );
        assert_eq!(s.next_stanza(), None);
        s.buf.extend_from_slice(
            b"tures><success xmlns='x'/><message id='m1'><body>t=5</body></message>",
        );
        assert_eq!(
            s.next_stanza().as_deref(),
            Some("<stream:features><bind/></stream:features>")
        );
        assert_eq!(s.next_stanza().as_deref(), Some("<success xmlns='x'/>"));
        let m = s.next_stanza().unwrap_or_default();
        assert_eq!(attr(&m[..m.find('>').unwrap_or(0)], "id"), Some("m1"));
        assert_eq!(body(&m), Some("t=5"));
        assert_eq!(s.next_stanza(), None);
    }
}
