//! The Synapse peer (`bench/peers/synapse`) and the load client that speaks the Matrix
//! client-server API to it.
//!
//! The peer: Synapse from PyPI in a venv under `target/` (`scripts/bench` installs it),
//! one process on a temporary folder of its own, SQLite as Synapse opens it (WAL,
//! `synchronous=FULL`). Setting up is done through the API, as a real deployment's
//! users would: every account registers (`m.login.dummy`, open registration with rate
//! limits off), the first member of each group creates its room (`public_chat`) and
//! the others join it. Only what comes after is measured.
//!
//! The client: `PUT /rooms/{room}/send/m.room.message/{txn}` is the acked send (Synapse
//! answers once the event is persisted), and a `/sync` long poll after the last
//! `next_batch` is delivery; a connection each, over HTTP/1.1 with keep-alive (hyper's
//! client connection, no pool). Bodies of timeline messages come out as `message`
//! events, so the scenarios count and time them as they do the others'.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use confer_core::Principal;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::peers::Accounts;
use crate::scenarios::drops::{body_seq, Resume};
use crate::server::{free_port, Server};
use crate::sio::SioEvent;

/// Requests in flight at once while accounts and rooms are set up.
const SETUP_CONCURRENCY: usize = 16;
/// How long a `/sync` waits for news, in milliseconds.
const SYNC_TIMEOUT_MS: u64 = 30_000;
/// Timeline messages only, no state, presence or receipts: what a delivery is here.
const FILTER: &str = r#"{"presence":{"types":[]},"account_data":{"types":[]},"room":{"state":{"types":[]},"ephemeral":{"types":[]},"account_data":{"types":[]},"timeline":{"types":["m.room.message"],"limit":1000}}}"#;

fn peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/peers/synapse")
}

fn venv() -> PathBuf {
    std::env::var_os("SYNAPSE_VENV").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/synapse-venv"),
        PathBuf::from,
    )
}

/// The homeserver.yaml `database:` section on SQLite, in the run's folder.
const SQLITE: &str = "database:\n  name: sqlite3\n  args:\n    database: \"@DIR@/homeserver.db\"\n";

/// Start Synapse, register `users` and make a room of each run of `group_size` of them
/// (one per `groups` entry, in order). On SQLite in the run's folder, or with `postgres`
/// on a new database of the PostgreSQL server that `$SYNAPSE_POSTGRES` names (libpq
/// keywords: `host`, `port`, `user`; `start.sh` creates the database, with the C
/// collation Synapse requires).
pub(crate) async fn start_synapse(
    users: &[(Principal, String)],
    groups: &[u64],
    postgres: bool,
) -> anyhow::Result<Server> {
    let database = if postgres {
        let dsn = std::env::var("SYNAPSE_POSTGRES").map_err(|_| {
            anyhow!("synapse-pg needs SYNAPSE_POSTGRES (e.g. 'host=127.0.0.1 port=5432 user=postgres'): scripts/bench starts a PostgreSQL and sets it")
        })?;
        postgres_section(
            &dsn,
            &format!("synapse_{}_{}", std::process::id(), free_port()?),
        )?
    } else {
        SQLITE.to_string()
    };
    if !venv().join("bin/synapse_homeserver").exists() {
        bail!(
            "Synapse peer not installed ({} has no synapse_homeserver): scripts/bench installs matrix-synapse there",
            venv().display()
        );
    }
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    for file in ["homeserver.yaml", "log.config"] {
        let template = std::fs::read_to_string(peer_dir().join(file))
            .with_context(|| format!("reading bench/peers/synapse/{file}"))?;
        let text = template
            .replace("@DATABASE@\n", &database)
            .replace("@PORT@", &port.to_string())
            .replace("@DIR@", &dir.path().to_string_lossy());
        std::fs::write(dir.path().join(file), text)?;
    }
    let child = tokio::process::Command::new(peer_dir().join("start.sh"))
        .arg(dir.path())
        .env("SYNAPSE_VENV", venv())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting Synapse (bench/peers/synapse/start.sh)")?;
    let mut server = Server {
        child,
        port,
        _dir: Some(dir),
        respawn: None,
        accounts: None,
    };
    wait_listening(&mut server).await?;
    let began = Instant::now();
    let accounts = set_up(port, users, groups).await?;
    // Set-up is not measured, but it decides which sizes can be run: say what it took.
    eprintln!(
        "Synapse set-up: {} accounts registered, {} rooms created and joined in {:.1} s",
        users.len(),
        groups.len(),
        began.elapsed().as_secs_f64()
    );
    server.accounts = Some(Arc::new(accounts));
    server.settle().await;
    Ok(server)
}

/// The homeserver.yaml `database:` section for database `name` on the server `dsn`
/// names (`key=value` words); `cp_min`/`cp_max` as Synapse's documentation shows them.
fn postgres_section(dsn: &str, name: &str) -> anyhow::Result<String> {
    let mut args = format!("    database: {name}\n");
    for word in dsn.split_whitespace() {
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| anyhow!("SYNAPSE_POSTGRES: {word:?} is not key=value"))?;
        if !["host", "port", "user", "password"].contains(&key)
            || !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
        {
            bail!("SYNAPSE_POSTGRES: {word:?}: only host, port, user, password, plain values");
        }
        args.push_str(&format!("    {key}: \"{value}\"\n"));
    }
    Ok(format!(
        "database:\n  name: psycopg2\n  args:\n{args}    cp_min: 5\n    cp_max: 10\n"
    ))
}

/// Synapse creates its database on the first start: tens of seconds on a loaded machine.
async fn wait_listening(server: &mut Server) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    let log = server
        ._dir
        .as_ref()
        .map_or(PathBuf::new(), |d| d.path().join("homeserver.log"));
    while Instant::now() < deadline {
        if let Ok(mut c) = Http::open(server.port, None).await {
            if let Ok((200, _)) = c.request("GET", "/health", None, None).await {
                return Ok(());
            }
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            bail!("Synapse exited ({status}); see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "Synapse did not answer /health within 180 s; see {}",
        log.display()
    )
}

/// Register every account, then create and join the rooms, [`SETUP_CONCURRENCY`]
/// requests at a time.
async fn set_up(
    port: u16,
    users: &[(Principal, String)],
    groups: &[u64],
) -> anyhow::Result<Accounts> {
    let mut accounts = Accounts::default();
    let logins: Vec<String> = users.iter().map(|(p, _)| p.login.clone()).collect();
    for (login, token) in in_parallel(logins, move |login| async move {
        let mut http = Http::open(port, None).await?;
        let body = json!({"username": login, "password": crate::peers::xmpp::PASSWORD,
            "auth": {"type": "m.login.dummy"}, "initial_device_display_name": "bench"});
        let (status, answer) = http
            .request("POST", "/_matrix/client/v3/register", None, Some(body))
            .await?;
        let token = answer["access_token"]
            .as_str()
            .filter(|_| status == 200)
            .ok_or_else(|| anyhow!("registering {login}: {status} {answer}"))?
            .to_string();
        Ok((login, token))
    })
    .await?
    {
        accounts.tokens.insert(login, token);
    }
    if groups.is_empty() {
        return Ok(accounts);
    }
    let size = users.len() / groups.len();
    let rooms: Vec<(u64, Vec<String>)> = groups
        .iter()
        .enumerate()
        .map(|(k, g)| {
            let members = users[k * size..(k + 1) * size]
                .iter()
                .filter_map(|(p, _)| accounts.tokens.get(&p.login).cloned())
                .collect();
            (*g, members)
        })
        .collect();
    for (group, room) in in_parallel(rooms, move |(group, members)| async move {
        let mut http = Http::open(port, None).await?;
        let creator = members.first().ok_or_else(|| anyhow!("an empty group"))?;
        let (status, answer) = http
            .request(
                "POST",
                "/_matrix/client/v3/createRoom",
                Some(creator),
                Some(json!({"preset": "public_chat", "name": format!("g{group}")})),
            )
            .await?;
        let room = answer["room_id"]
            .as_str()
            .filter(|_| status == 200)
            .ok_or_else(|| anyhow!("creating the room of {group}: {status} {answer}"))?
            .to_string();
        for member in &members[1..] {
            let path = format!("/_matrix/client/v3/join/{}", encode(&room));
            let (status, answer) = http
                .request("POST", &path, Some(member), Some(json!({})))
                .await?;
            if status != 200 {
                bail!("joining {room}: {status} {answer}");
            }
        }
        Ok((group, room))
    })
    .await?
    {
        accounts.rooms.insert(group, room);
    }
    Ok(accounts)
}

/// Run `f` over `items`, [`SETUP_CONCURRENCY`] at a time, keeping the results.
async fn in_parallel<T, R, F, Fut>(items: Vec<T>, f: F) -> anyhow::Result<Vec<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<R>> + Send,
{
    let queue = Arc::new(std::sync::Mutex::new(items.into_iter()));
    let mut tasks = Vec::new();
    for _ in 0..SETUP_CONCURRENCY {
        let (queue, f) = (queue.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some(item) = next else { break };
                done.push(f(item).await?);
            }
            anyhow::Ok(done)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

/// One HTTP/1.1 connection to Synapse, reopened when the server closed it.
struct Http {
    port: u16,
    bind: Option<IpAddr>,
    sender: SendRequest<Full<Bytes>>,
}

impl Http {
    async fn open(port: u16, bind: Option<IpAddr>) -> anyhow::Result<Http> {
        Ok(Http {
            port,
            bind,
            sender: connect(port, bind).await?,
        })
    }

    /// `method path` with `token` and a JSON `body`: the status and the JSON answer.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let (status, bytes) = self.raw(method, path, token, body).await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    async fn raw(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        for attempt in 0..2 {
            if attempt > 0 || self.sender.is_closed() {
                self.sender = connect(self.port, self.bind).await?;
            }
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", "localhost")
                .header("content-type", "application/json");
            if let Some(token) = token {
                req = req.header("authorization", format!("Bearer {token}"));
            }
            let req = req.body(Full::new(body.clone()))?;
            if self.sender.ready().await.is_err() {
                continue;
            }
            let Ok(resp) = self.sender.send_request(req).await else {
                continue;
            };
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await?.to_bytes();
            return Ok((status, bytes));
        }
        bail!("{method} {path}: the connection to Synapse failed twice")
    }
}

async fn connect(port: u16, bind: Option<IpAddr>) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let tcp = match bind {
        Some(ip) => {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.bind((ip, 0).into())?;
            s.connect(([127, 0, 0, 1], port).into()).await?
        }
        None => TcpStream::connect(("127.0.0.1", port)).await?,
    };
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Percent-encoding for a path segment or a query value (room ids hold `!` and `:`).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A Matrix client of one account: its sends on a connection of their own (opened at
/// the first send), its deliveries from a `/sync` loop on another.
pub struct Matrix {
    port: u16,
    bind: Option<IpAddr>,
    token: String,
    /// The room its sends go to (none for an idle client).
    room: String,
    sends: tokio::sync::Mutex<Option<Http>>,
    next_txn: AtomicU64,
    sync: tokio::task::JoinHandle<()>,
}

impl Drop for Matrix {
    fn drop(&mut self) {
        self.sync.abort();
    }
}

impl Matrix {
    /// Log in as `login` with the token its registration gave, take the current
    /// `next_batch` with one `/sync`, then long-poll from there in a task of its own.
    pub(crate) async fn connect(
        server: &Server,
        login: &str,
        room: String,
        bind: Option<IpAddr>,
    ) -> anyhow::Result<(Matrix, mpsc::UnboundedReceiver<SioEvent>)> {
        let token = server
            .accounts
            .as_ref()
            .and_then(|a| a.tokens.get(login))
            .ok_or_else(|| anyhow!("{login} was not registered on Synapse"))?
            .clone();
        let mut http = Http::open(server.port, bind).await?;
        let filter = encode(FILTER);
        let (status, first) = http
            .request(
                "GET",
                &format!("/_matrix/client/v3/sync?timeout=0&filter={filter}"),
                Some(&token),
                None,
            )
            .await?;
        let mut since = first["next_batch"]
            .as_str()
            .filter(|_| status == 200)
            .ok_or_else(|| anyhow!("first /sync of {login}: {status} {first}"))?
            .to_string();
        let (events_tx, events) = mpsc::unbounded_channel();
        let sync_token = token.clone();
        let sync = tokio::spawn(async move {
            let mut events = Some(events_tx);
            loop {
                let path = format!(
                    "/_matrix/client/v3/sync?timeout={SYNC_TIMEOUT_MS}&filter={filter}&since={}",
                    encode(&since)
                );
                let Ok((200, bytes)) = http.raw("GET", &path, Some(&sync_token), None).await else {
                    break;
                };
                let text = String::from_utf8_lossy(&bytes);
                if let Some(tx) = &events {
                    for body in bodies(&text) {
                        let frame = format!("{{\"message\":\"{body}\"}}");
                        if tx.send(SioEvent::raw(frame.into())).is_err() {
                            // Nobody reads this client's deliveries (an ingest sender).
                            events = None;
                            break;
                        }
                    }
                }
                match next_batch(&text) {
                    Some(next) => since = next.to_string(),
                    None => break,
                }
            }
        });
        let client = Matrix {
            port: server.port,
            bind,
            token,
            room,
            sends: tokio::sync::Mutex::new(None),
            next_txn: AtomicU64::new(0),
            sync,
        };
        Ok((client, events))
    }

    /// Send `body` to its room and wait until Synapse has persisted it: 0, or the HTTP
    /// status it refused with.
    pub(crate) async fn send_message(&self, body: &str) -> anyhow::Result<i64> {
        let txn = self.next_txn.fetch_add(1, Ordering::Relaxed);
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/b{txn}",
            encode(&self.room)
        );
        let mut sends = self.sends.lock().await;
        if sends.is_none() {
            *sends = Some(Http::open(self.port, self.bind).await?);
        }
        let http = sends.as_mut().ok_or_else(|| anyhow!("no connection"))?;
        let content = json!({"msgtype": "m.text", "body": body});
        let (status, _) = http
            .raw("PUT", &path, Some(&self.token), Some(content))
            .await?;
        Ok(if status == 200 { 0 } else { i64::from(status) })
    }
}

/// One `drops` receiver on Synapse: a `/sync` loop on a connection of its own that is
/// cut when told to (the request in flight abandoned, its `next_batch` never seen), then
/// after the pause resumes on a new connection with the last `since` token it got, as a
/// client that persisted it does. When `stop` changes, a last `/sync` after that token
/// and done. Each message is recorded by the number its body carries
/// ([`crate::scenarios::drops::body_seq`]); `ready` is told after the first `/sync`.
/// Gives up after 20 failed attempts in a row.
pub(crate) async fn drop_prone_receiver(
    server_port: u16,
    token: String,
    receipts: Resume,
    mut cut: mpsc::Receiver<Duration>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    ready: mpsc::Sender<()>,
) -> anyhow::Result<()> {
    let filter = encode(FILTER);
    let mut since: Option<String> = None;
    let mut ready = Some(ready);
    let mut failures = 0u32;
    let sync_path = |since: &Option<String>, timeout: u64| {
        let since = since
            .as_ref()
            .map_or(String::new(), |s| format!("&since={}", encode(s)));
        format!("/_matrix/client/v3/sync?timeout={timeout}&filter={filter}{since}")
    };
    // One /sync: record its messages and take its next_batch.
    // A /sync that resumes (the first of a connection after a cut, or the last) counts
    // what it brings as found on a resume.
    let take = |bytes: &Bytes, since: &mut Option<String>, resumed: bool| -> anyhow::Result<()> {
        let text = String::from_utf8_lossy(bytes);
        for seq in bodies(&text).filter_map(body_seq) {
            receipts.record(seq, resumed);
        }
        *since = Some(
            next_batch(&text)
                .ok_or_else(|| anyhow!("a /sync answer without next_batch"))?
                .to_string(),
        );
        Ok(())
    };
    loop {
        let mut http = match Http::open(server_port, None).await {
            Ok(h) => h,
            Err(e) if failures >= 20 => return Err(e.context("connecting to Synapse")),
            Err(_) => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The first request of a connection does not wait: it is the catch-up.
        let mut timeout = 0;
        let pause = loop {
            let path = sync_path(&since, timeout);
            tokio::select! {
                r = http.raw("GET", &path, Some(&token), None) => match r {
                    Ok((200, bytes)) => {
                        let resumed = timeout == 0 && since.is_some();
                        take(&bytes, &mut since, resumed)?;
                        failures = 0;
                        timeout = SYNC_TIMEOUT_MS;
                        if let Some(r) = ready.take() {
                            let _ = r.send(()).await;
                        }
                    }
                    Ok((status, bytes)) if failures >= 20 => bail!(
                        "/sync answered {status}: {}",
                        String::from_utf8_lossy(&bytes)
                    ),
                    Err(e) if failures >= 20 => return Err(e),
                    _ => {
                        failures += 1;
                        break Duration::from_millis(100);
                    }
                },
                d = cut.recv() => break d.unwrap_or(Duration::ZERO),
                _ = stop.changed() => {
                    let (status, bytes) =
                        http.raw("GET", &sync_path(&since, 0), Some(&token), None).await?;
                    if status != 200 {
                        bail!("the last /sync answered {status}");
                    }
                    return take(&bytes, &mut since, true);
                }
            }
        };
        drop(http);
        tokio::time::sleep(pause).await;
    }
}

/// The room of `group` that set-up made.
pub(crate) fn room_of(server: &Server, group: u64) -> anyhow::Result<String> {
    server
        .accounts
        .as_ref()
        .and_then(|a| a.rooms.get(&group))
        .cloned()
        .ok_or_else(|| anyhow!("group {group} has no room on Synapse"))
}

/// The `body` of every message in a `/sync` answer, found in the text (the filter lets
/// only timeline messages through, and the scenarios' bodies need no unescaping).
fn bodies(text: &str) -> impl Iterator<Item = &str> {
    text.split("\"body\":\"").skip(1).filter_map(|rest| {
        let end = rest.find('"')?;
        Some(&rest[..end])
    })
}

fn next_batch(text: &str) -> Option<&str> {
    let at = text.find("\"next_batch\":\"")? + "\"next_batch\":\"".len();
    let end = text[at..].find('"')?;
    Some(&text[at..at + end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_answer_gives_its_bodies_and_its_next_batch() {
        let text = r#"{"next_batch":"s72_1","rooms":{"join":{"!a:localhost":{"timeline":{"events":[{"content":{"body":"t=12","msgtype":"m.text"}},{"content":{"body":"x"}}]}}}}}"#;
        assert_eq!(bodies(text).collect::<Vec<_>>(), ["t=12", "x"]);
        assert_eq!(next_batch(text), Some("s72_1"));
        assert_eq!(encode("!a:b c"), "%21a%3Ab%20c");
    }
}
