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

use crate::scenarios::drops::{body_seq, Resume};
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
/// `""` for success, `"created"` for a room this join created, `"error"`, or for an
/// archive query's end, `"fin "` then `1` if the archive has no more, then the last id
/// of the page (see [`fin`]).
type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<String>>>>;

const JOIN: &str = "\u{0}join";

/// A logged-in XMPP client: SASL PLAIN, bound to a resource.
pub struct Xmpp {
    out: mpsc::UnboundedSender<String>,
    waiting: Waiting,
    next: AtomicU64,
    nick: String,
    /// The writer and the reader: aborted on drop, which closes the socket (a cut).
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for Xmpp {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Xmpp {
    /// Connect to ejabberd at `port`, log in as `login`, bind a resource, and start
    /// reading: groupchat messages with a body come out as `message` events.
    pub async fn connect(
        port: u16,
        login: &str,
        bind: Option<std::net::IpAddr>,
    ) -> anyhow::Result<(Xmpp, mpsc::UnboundedReceiver<SioEvent>)> {
        Xmpp::connect_as(port, login, "bench", bind).await
    }

    /// [`Xmpp::connect`] bound to `resource`: a client that reconnects takes a new one
    /// each time, so the server's departure of its old session (whenever it notices the
    /// cut) cannot take the new one's room seat with it.
    pub async fn connect_as(
        port: u16,
        login: &str,
        resource: &str,
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
        let bind_iq = format!(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>{}</resource></bind></iq>",
            escape(resource)
        );
        wr.write_all(bind_iq.as_bytes()).await?;
        let bound = expect(&mut rd, &mut split, "<iq").await?;
        if !bound.contains("type='result'") {
            bail!("bind refused for {login}: {bound}");
        }
        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        let writer = tokio::spawn(async move {
            while let Some(s) = out_rx.recv().await {
                if wr.write_all(s.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        let waiting: Waiting = Arc::default();
        let (events_tx, events) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(rd, split, waiting.clone(), events_tx));
        let client = Xmpp {
            out,
            waiting,
            next: AtomicU64::new(0),
            nick: login.to_string(),
            tasks: [writer, reader],
        };
        Ok((client, events))
    }

    fn send(&self, stanza: String) -> anyhow::Result<()> {
        self.out
            .send(stanza)
            .map_err(|_| anyhow!("connection closed"))
    }

    /// Register an answer to wait for under `key`, then send `stanza`.
    async fn ask(&self, key: String, stanza: String) -> anyhow::Result<String> {
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
        match self.ask(JOIN.into(), presence).await?.as_str() {
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
        Ok(match self.ask(id, stanza).await?.as_str() {
            "error" => 1,
            _ => 0,
        })
    }

    /// Ask the archive (MAM) of `group`'s room for one page of the messages after
    /// archive id `after` (from its start without one). The messages come out as
    /// `message` events with their `archive_id` before this returns: whether the archive
    /// has no more after the page, and the page's last id.
    pub async fn archive_after(
        &self,
        group: &str,
        after: Option<u64>,
    ) -> anyhow::Result<(bool, Option<u64>)> {
        let id = format!("q{}", self.next.fetch_add(1, Ordering::Relaxed));
        let after = after.map_or(String::new(), |a| format!("<after>{a}</after>"));
        let query = format!(
            "<iq type='set' id='{id}' to='g{group}@{MUC}'><query xmlns='urn:xmpp:mam:2' queryid='{id}'>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>{ARCHIVE_PAGE}</max>{after}</set></query></iq>"
        );
        let answer = self.ask(id, query).await?;
        let Some(rest) = answer.strip_prefix("fin ") else {
            bail!("the archive of g{group} refused the query: {answer}");
        };
        let (complete, last) = rest.split_once(' ').unwrap_or((rest, ""));
        let last = match last {
            "" => None,
            l => Some(
                l.parse()
                    .map_err(|_| anyhow!("archive id {l:?} is not a number"))?,
            ),
        };
        Ok((complete == "1", last))
    }
}

/// One `drops` receiver on ejabberd: connect (a new resource each time), join the room
/// without history, page the room's archive (MAM) after the newest archive id it had
/// seen, then take the room's messages until told to drop, and start over after the
/// pause; when `stop` changes, a last catch-up and done. Each message is recorded by the
/// number its body carries ([`crate::scenarios::drops::body_seq`]); `ready` is told once
/// the first join and catch-up are done. Gives up after 20 failed attempts in a row.
pub(crate) async fn drop_prone_receiver(
    port: u16,
    login: String,
    group: u64,
    receipts: Resume,
    mut cut: mpsc::Receiver<Duration>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    ready: mpsc::Sender<()>,
) -> anyhow::Result<()> {
    let group = group.to_string();
    // The newest archive id up to which everything was seen: where the next resume asks.
    let mut resume: Option<u64> = None;
    let mut ready = Some(ready);
    let (mut attempt, mut failures) = (0u64, 0u32);
    loop {
        attempt += 1;
        let session = async {
            let (c, mut events) =
                Xmpp::connect_as(port, &login, &format!("r{attempt}"), None).await?;
            c.join(&group).await?;
            catch_up(&c, &group, &mut resume, &mut events, &receipts).await?;
            anyhow::Ok((c, events))
        };
        let (c, mut events) = match session.await {
            Ok(s) => s,
            Err(e) if failures >= 20 => return Err(e.context(format!("{login} resuming"))),
            Err(_) => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        failures = 0;
        if let Some(r) = ready.take() {
            let _ = r.send(()).await;
        }
        let pause = loop {
            tokio::select! {
                e = events.recv() => match e {
                    Some(event) => {
                        if let (Some(seq), id, from_archive) = delivered(&event) {
                            receipts.record(seq, from_archive);
                            resume = resume.max(id);
                        }
                    }
                    None => break Duration::ZERO,
                },
                d = cut.recv() => break d.unwrap_or(Duration::ZERO),
                _ = stop.changed() => {
                    return catch_up(&c, &group, &mut resume, &mut events, &receipts).await;
                }
            }
        };
        drop(c);
        tokio::time::sleep(pause).await;
    }
}

/// Page the archive after `resume` until it has no more, recording every message (the
/// live ones that arrive meanwhile too). `resume` moves only with the pages' last ids
/// and, once the archive is through, to the newest live one: a live message can arrive
/// before older archived ones, and resuming after it would skip them.
async fn catch_up(
    c: &Xmpp,
    group: &str,
    resume: &mut Option<u64>,
    events: &mut mpsc::UnboundedReceiver<SioEvent>,
    receipts: &Resume,
) -> anyhow::Result<()> {
    let mut after = *resume;
    let mut newest = *resume;
    loop {
        let (complete, last) = c.archive_after(group, after).await?;
        // The page's messages came before its end.
        while let Ok(event) = events.try_recv() {
            if let (Some(seq), id, from_archive) = delivered(&event) {
                // A live one that came meanwhile counts as pushed.
                receipts.record(seq, from_archive);
                newest = newest.max(id);
            }
        }
        after = after.max(last);
        *resume = (*resume).max(after);
        if complete || last.is_none() {
            *resume = (*resume).max(newest);
            return Ok(());
        }
    }
}

/// A delivered message's number (from its body), its archive id, and whether it came
/// from an archive query rather than live from the room.
fn delivered(event: &SioEvent) -> (Option<u64>, Option<u64>, bool) {
    let (_, v) = event.parse();
    (
        v["message"].as_str().and_then(body_seq),
        v["archive_id"].as_str().and_then(|a| a.parse().ok()),
        v["from_archive"] == true,
    )
}

/// Messages per archive page.
const ARCHIVE_PAGE: u32 = 250;

/// The answer to an iq that ends an archive query (`<fin>`): `"fin 1 LAST"` when the
/// archive has no more, `"fin 0 LAST"` when it has; LAST is empty for an empty page.
fn fin(stanza: &str) -> Option<String> {
    let at = stanza.find("<fin")?;
    let head = &stanza[at..at + stanza[at..].find('>')?];
    let complete = attr(head, "complete") == Some("true");
    let last = stanza
        .find("<last>")
        .and_then(|a| {
            let a = a + "<last>".len();
            Some(&stanza[a..a + stanza[a..].find("</last>")?])
        })
        .unwrap_or("");
    Some(format!("fin {} {last}", u8::from(complete)))
}

/// The archive id of a message: a live one's `<stanza-id>` that the room stamped, or an
/// archive query result's `id`.
fn archive_id(stanza: &str) -> Option<&str> {
    for tag in ["<result ", "<stanza-id "] {
        if let Some(at) = stanza.find(tag) {
            let head = &stanza[at..at + stanza[at..].find('>')?];
            return attr(head, "id");
        }
    }
    None
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
            let answer = |key: &str, said: String| {
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
                    answer(id, if failed { "error" } else { "" }.into());
                }
                if let (false, Some(body), Some(tx)) = (failed, body(&stanza), &events) {
                    let from_archive = stanza.contains("<result ");
                    let frame = match archive_id(&stanza) {
                        Some(a) => format!(
                            "{{\"message\":\"{body}\",\"archive_id\":\"{a}\",\"from_archive\":{from_archive}}}"
                        ),
                        None => format!("{{\"message\":\"{body}\"}}"),
                    };
                    if tx.send(SioEvent::raw(frame.into())).is_err() {
                        // Nobody reads this client's deliveries (an ingest sender).
                        events = None;
                    }
                }
            } else if stanza.starts_with("<presence") {
                if failed && head.contains(&format!("@{MUC}")) {
                    answer(JOIN, "error".into());
                } else if stanza.contains("code='110'") {
                    answer(
                        JOIN,
                        if stanza.contains("code='201'") {
                            "created"
                        } else {
                            ""
                        }
                        .into(),
                    );
                }
            } else if stanza.starts_with("<iq") {
                if let Some(id) = attr(head, "id") {
                    let said = match (failed, fin(&stanza)) {
                        (true, _) => "error".into(),
                        (false, Some(fin)) => fin,
                        (false, None) => String::new(),
                    };
                    answer(id, said);
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

    #[test]
    fn archive_ids_and_query_ends_are_read_as_ejabberd_writes_them() {
        let live = "<message from='g1@conference.localhost/u1' type='groupchat' id='m3'>\
            <body>d=7</body><stanza-id by='g1@conference.localhost' id='1764650000000123' \
            xmlns='urn:xmpp:sid:0'/></message>";
        assert_eq!(archive_id(live), Some("1764650000000123"));
        let result = "<message to='u2@localhost/r1'><result xmlns='urn:xmpp:mam:2' queryid='q0' \
            id='1764650000000456'><forwarded xmlns='urn:xmpp:forward:0'><message type='groupchat'>\
            <body>d=8</body><stanza-id id='9' by='x' xmlns='urn:xmpp:sid:0'/></message>\
            </forwarded></result></message>";
        assert_eq!(archive_id(result), Some("1764650000000456"));
        assert_eq!(body(result), Some("d=8"));
        let end = "<iq type='result' id='q0'><fin xmlns='urn:xmpp:mam:2' complete='true'>\
            <set xmlns='http://jabber.org/protocol/rsm'><first index='0'>1</first>\
            <last>1764650000000456</last></set></fin></iq>";
        assert_eq!(fin(end).as_deref(), Some("fin 1 1764650000000456"));
        let more = "<iq type='result' id='q1'><fin xmlns='urn:xmpp:mam:2'><set \
            xmlns='http://jabber.org/protocol/rsm'><last>5</last></set></fin></iq>";
        assert_eq!(fin(more).as_deref(), Some("fin 0 5"));
        assert_eq!(
            fin("<iq type='result' id='q2'><fin xmlns='urn:xmpp:mam:2' complete='true'/></iq>")
                .as_deref(),
            Some("fin 1 ")
        );
    }
}
