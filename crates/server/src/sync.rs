//! The edge role of the edge-to-hub sync: `confer sync push` runs the original edge's
//! nine steps (`chathost-api.md`) against any hub (a confer hub or the original), over
//! HTTP/1.1 with a timeout on every call (`sync_timeout_ms`), TLS by rustls.
//!
//! What an edge's data means to a hub (decided here; ARCHITECTURE.md keeps the list):
//! - a **course** is a chat group of type 2 (its `id` the group id, its name the
//!   group's); its **teacher** is the group's owner, its **students** the other members;
//!   an account that owns any such group counts as a teacher everywhere;
//! - a person's `email` is its login when that looks like an address, else
//!   `<login>@<boxid>` (the hub matches teachers by it);
//! - the **messages sent** are those of private conversations between a student and a
//!   teacher, written by the student, not sent before: each conversation has a mark (the
//!   last seq the hub confirmed), moved only by the hub's answer, so a run that dies
//!   resends, and the hub skips what it has (`<boxid>-<message id>`);
//! - an attachment goes once (`exists`, then the upload), remembered once the hub has it;
//! - the **logs** posted are the previous run's report, as a `sync` log;
//! - what the hub sends is stored as a message from its sender (an account created when
//!   missing) to the student, in their private conversation, once per hub id, with its
//!   file downloaded from `filepath`; the batch (handed out once by the hub) is written
//!   to the inbox (`sync-inbox.json`, see [`Inbox`]) as soon as it is read and leaves it
//!   only once stored, so a run that dies after the fetch loses nothing; the `since` of
//!   the last batch written there is kept in `sync-stored.json` and sent on
//!   `messageStatus` as `?stored=` (confer's extension): a confer hub then hands again
//!   a batch lost on the way (the original hub ignores it, and such a batch is lost);
//! - settings `authorization` and `moodle-security-key` replace the box's key; any other
//!   is stored and listed by `confer sync settings`. Settings go through the inbox too; a
//!   setting is stored once (however often it is handed over) and confirmed (`DELETE`)
//!   only after it is stored.
//!
//! The run writes a report (`report.json` in the data folder with `--log-to-file`, else
//! printed) saying which step failed and why. It opens the data folder itself, like
//! `confer user`: messages it stores are listed by a running server's clients, not pushed
//! to them live.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use axum::body::Bytes;
use confer_core::hub::{HubIncoming, HubLinkKind, HubPerson};
use confer_core::model::{ConversationKind, Message};
use confer_core::{Core, Uin};
use confer_door_files::BlobStore;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::Config;

/// The largest answer read from a hub (a batch, a file).
const MAX_ANSWER: usize = 64 << 20;
/// The longest wait between scheduled runs while the hub is down.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// The keys of settings that carry the box's new key.
const KEY_SETTINGS: [&str; 2] = ["authorization", "moodle-security-key"];

/// How a run is asked for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub hub: Option<String>,
    pub box_id: Option<String>,
    pub log_to_file: bool,
}

/// Test hooks: end the run as if the process died at a point of a step (1–9).
#[derive(Clone, Copy, Debug, Default)]
pub struct Hooks {
    /// Before the step's first call to the hub.
    pub stop_before: Option<u8>,
    /// Right after the step's call to the hub answered (for step 5, its first file's),
    /// before anything of the answer is acted on: what was fetched (steps 7 and 9) is
    /// only in the inbox.
    pub die_after: Option<u8>,
}

/// One step's outcome.
#[derive(Clone, Debug)]
pub struct Step {
    pub step: u8,
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub hub: String,
    pub boxid: String,
    pub started: i64,
    pub steps: Vec<Step>,
    /// `step N (name): why`, when the run stopped.
    pub failed: Option<String>,
    pub attachments_sent: usize,
    pub messages_sent: usize,
    pub messages_failed: Vec<String>,
    pub messages_received: usize,
    /// Hub messages fetched but not stored yet (a file that did not download): kept in
    /// the inbox for the next run.
    pub messages_held: usize,
    pub settings_applied: Vec<String>,
}

impl Report {
    pub fn summary(&self) -> String {
        self.failed.clone().unwrap_or_else(|| "ok".into())
    }

    pub fn to_json(&self) -> Value {
        json!({
            "hub": self.hub,
            "boxid": self.boxid,
            "started": self.started,
            "ok": self.failed.is_none(),
            "failed": self.failed,
            "steps": self.steps.iter().map(|s| json!({
                "step": s.step, "name": s.name, "ok": s.ok, "detail": s.detail,
            })).collect::<Vec<_>>(),
            "attachments_sent": self.attachments_sent,
            "messages_sent": self.messages_sent,
            "messages_failed": self.messages_failed,
            "messages_received": self.messages_received,
            "messages_held": self.messages_held,
            "settings_applied": self.settings_applied,
        })
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A hub's address and this box's credential.
struct Hub {
    tls: bool,
    host: String,
    port: u16,
    /// The path every endpoint goes under (`/chathost`).
    prefix: String,
    auth: String,
    boxid: String,
    timeout: Duration,
    /// For an `https://` hub: the public roots and those of `sync_ca_file`.
    tls_config: Option<Arc<rustls::ClientConfig>>,
}

/// The TLS settings for an https hub: the public roots (webpki-roots), and the
/// certificates of `ca_file` (PEM) if given: a hub with a self-signed certificate or a
/// private CA.
fn tls_config(ca_file: Option<&std::path::Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut added = 0;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert =
                cert.map_err(|e| anyhow!("{}: not a PEM certificate: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| anyhow!("{}: a certificate not usable: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(anyhow!("{}: no PEM certificate in it", path.display()));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An answer: status and body.
struct Answer {
    status: u16,
    body: Bytes,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(300)
            .collect()
    }
}

impl Hub {
    fn new(url: &str, boxid: &str, token: &str, timeout: Duration) -> anyhow::Result<Hub> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            (false, url)
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (
                h.to_string(),
                p.parse().with_context(|| format!("port of {url}"))?,
            ),
            _ => (authority.to_string(), if tls { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(anyhow!("{url}: not a hub address (http://host:port)"));
        }
        let path = path.trim_end_matches('/');
        let prefix = if path.to_ascii_lowercase().ends_with("chathost") {
            format!("/{path}")
        } else if path.is_empty() {
            "/chathost".to_string()
        } else {
            format!("/{path}/chathost")
        };
        Ok(Hub {
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            prefix,
            auth: format!("Bearer {boxid}|{token}"),
            boxid: boxid.to_string(),
            timeout,
            tls_config: None,
        })
    }

    async fn connect(&self) -> std::io::Result<Box<dyn Io>> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        tcp.set_nodelay(true)?;
        if !self.tls {
            return Ok(Box::new(tcp));
        }
        let config = match &self.tls_config {
            Some(c) => c.clone(),
            None => tls_config(None).map_err(std::io::Error::other)?,
        };
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(std::io::Error::other)?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        Ok(Box::new(tls))
    }

    /// One request on its own connection, within the timeout.
    async fn call(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let full = if path.starts_with(&self.prefix) || path.starts_with("/chathost") {
            path.to_string()
        } else {
            format!("{}{path}", self.prefix)
        };
        let work = async {
            let io = self
                .connect()
                .await
                .map_err(|e| format!("connecting: {e}"))?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                    .await
                    .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(&full)
                .header("host", format!("{}:{}", self.host, self.port))
                .header("authorization", &self.auth)
                .header("x-boxid", &self.boxid)
                .header("connection", "close");
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            let req = req
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| e.to_string())?;
            let res = sender
                .send_request(req)
                .await
                .map_err(|e| format!("request: {e}"))?;
            let status = res.status().as_u16();
            let body = Limited::new(res.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    async fn json(&self, method: &str, path: &str, body: &Value) -> Result<Answer, String> {
        self.call(
            method,
            path,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await
    }
}

/// The key this box syncs with: the newest the hub sent, else the configured one.
async fn current_token(core: &Core, config: &Config) -> anyhow::Result<Option<String>> {
    let received = core.hub_settings("").await?;
    Ok(received
        .iter()
        .rev()
        .find(|s| KEY_SETTINGS.contains(&s.key.as_str()))
        .map(|s| s.value.clone())
        .or_else(|| config.sync_token.clone()))
}

/// A person's email as the hub sees it.
fn email_of(login: &str, boxid: &str) -> String {
    if login.contains('@') {
        login.to_string()
    } else {
        format!("{login}@{boxid}")
    }
}

/// The edge's people and courses, read from its chat groups.
struct Edge {
    courses: Vec<Value>,
    teachers: BTreeSet<Uin>,
    students: BTreeSet<Uin>,
    logins: BTreeMap<Uin, (String, Option<String>)>,
}

async fn read_edge(core: &Core, boxid: &str, sitename: &str) -> anyhow::Result<Edge> {
    let groups: Vec<_> = core
        .edge_groups()
        .await?
        .into_iter()
        .filter(|g| g.kind == ConversationKind::Group && !g.destroyed)
        .collect();
    let teachers: BTreeSet<Uin> = groups.iter().map(|g| g.owner).collect();
    let mut students = BTreeSet::new();
    let mut logins = BTreeMap::new();
    for g in &groups {
        for uin in &g.occupants {
            if !teachers.contains(uin) {
                students.insert(*uin);
            }
            if !logins.contains_key(uin) {
                if let Some(a) = core.edge_account(*uin).await? {
                    logins.insert(*uin, (a.login, a.name));
                }
            }
        }
    }
    let person = |uin: &Uin| -> Option<Value> {
        let (login, name) = logins.get(uin)?;
        Some(json!({
            "id": uin.0, "username": login, "first_name": name.clone().unwrap_or_default(),
            "last_name": "", "email": email_of(login, boxid), "last_accessed": 0, "language": "en",
        }))
    };
    let courses = groups
        .iter()
        .map(|g| {
            json!({
                "id": g.group_id.0,
                "course_name": g.name.clone().unwrap_or_else(|| format!("group {}", g.group_id)),
                "summary": "",
                "created_on": g.created_at_us / 1_000_000,
                "updated_on": g.updated_at_us / 1_000_000,
                "teachers": person(&g.owner).into_iter().collect::<Vec<_>>(),
                "students": g.occupants.iter().filter(|u| !teachers.contains(u))
                    .filter_map(person).collect::<Vec<_>>(),
                "sitename": sitename, "siteadmin_name": "", "siteadmin_email": "",
                "siteadmin_phone": "", "siteadmin_country": "",
                "package": "confer", "packageStatus": "",
            })
        })
        .collect();
    Ok(Edge {
        courses,
        teachers,
        students,
        logins,
    })
}

/// A message the edge owes the hub.
struct Outgoing {
    group: u64,
    message: Message,
    recipient: Uin,
}

async fn outgoing(core: &Core, edge: &Edge) -> anyhow::Result<Vec<Outgoing>> {
    let mut out = Vec::new();
    for g in core.edge_groups().await? {
        if g.kind != ConversationKind::Private || g.occupants.len() != 2 {
            continue;
        }
        let Some(student) = g
            .occupants
            .iter()
            .find(|u| edge.students.contains(u))
            .copied()
        else {
            continue;
        };
        let Some(teacher) = g
            .occupants
            .iter()
            .find(|u| edge.teachers.contains(u))
            .copied()
        else {
            continue;
        };
        let mark_key = format!("pushed:{}", g.group_id.0);
        let mut after = core
            .hub_link(HubLinkKind::EdgeMark, &mark_key)
            .await?
            .unwrap_or(0);
        loop {
            let page = core.edge_messages_after(g.group_id, after).await?;
            for m in &page.messages {
                after = m.seq;
                if m.sender == student && !m.deleted && m.kind != 5 {
                    out.push(Outgoing {
                        group: g.group_id.0,
                        message: m.clone(),
                        recipient: teacher,
                    });
                }
            }
            if !page.more || page.messages.is_empty() {
                break;
            }
        }
    }
    Ok(out)
}

fn attachment_kind_name(mimetype: &str) -> &'static str {
    confer_core::service::kind_of_mimetype(mimetype)
}

/// The value of attribute `name` in an `<attachment …>` tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = tag[start..].find('"')? + start;
    Some(
        tag[start..end]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

fn multipart(
    fields: &[(&str, String)],
    filename: &str,
    mimetype: &str,
    data: &[u8],
) -> (String, Vec<u8>) {
    let boundary = format!("confer-sync-{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::with_capacity(data.len() + 1024);
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    let safe = filename.replace(['"', '\r', '\n'], "_");
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{safe}\"\r\nContent-Type: {mimetype}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The report's destination.
fn report_path(config: &Config) -> PathBuf {
    config.data_dir.join("report.json")
}

/// Where what the hub handed over waits until it is stored (see [`Inbox`]).
fn inbox_path(config: &Config) -> PathBuf {
    config.data_dir.join("sync-inbox.json")
}

/// The file that keeps the `since` of the last hub batch written to the inbox.
const STORED_FILE: &str = "sync-stored.json";

/// Where the `since` of the last hub batch written to the inbox is kept.
fn stored_path(config: &Config) -> PathBuf {
    config.data_dir.join(STORED_FILE)
}

/// The `since` of the last hub batch this edge wrote to its inbox (0 if none, or if the
/// file is unreadable: the hub then hands again what it still holds, stored once).
fn read_stored(config: &Config) -> i64 {
    std::fs::read(stored_path(config))
        .ok()
        .and_then(|t| serde_json::from_slice::<Value>(&t).ok())
        .and_then(|v| v["stored"].as_i64())
        .unwrap_or(0)
}

/// Write a whole new file durably: staged, synced, renamed over the old.
fn write_durably(config: &Config, path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let staged = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&staged)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&staged, path)?;
    if let Ok(dir) = std::fs::File::open(&config.data_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The most hub messages the inbox holds; with more, step 7 fetches nothing new (the hub
/// keeps a batch not fetched) until they are stored.
const MAX_INBOX: usize = 10_000;
/// How many runs a hub message that cannot be stored (its file does not download) is
/// tried in before it is dropped with a warning.
const MAX_TRIES: u64 = 5;

/// What the hub handed over (`GET /messages/:since`, `GET /settings`) and this edge has
/// not finished with: written to `sync-inbox.json` in the data folder (a whole new file,
/// synced, renamed over the old) as soon as an answer is read, before anything of it is
/// stored or confirmed, and emptied as its items are stored. The hub hands a batch out
/// once; a run that dies after the fetch leaves the batch here and the next run stores
/// it (every store is idempotent on the hub's id), so nothing is lost and nothing doubled.
#[derive(Debug, Default)]
struct Inbox {
    /// `{"item": <hub message>, "tries": n}`.
    messages: Vec<Value>,
    /// Settings as the hub sent them, stored or not, not yet confirmed (`DELETE`).
    settings: Vec<Value>,
}

impl Inbox {
    /// The inbox a previous run left (empty if none). An unreadable one is set aside
    /// (`sync-inbox.json.bad`) with a warning, not trusted.
    fn read(config: &Config) -> Inbox {
        let path = inbox_path(config);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(_) => return Inbox::default(),
        };
        match serde_json::from_slice::<Value>(&text) {
            Ok(Value::Object(o)) => {
                let list = |k: &str| o.get(k).and_then(Value::as_array).cloned();
                Inbox {
                    messages: list("messages").unwrap_or_default(),
                    settings: list("settings").unwrap_or_default(),
                }
            }
            _ => {
                tracing::warn!(path = %path.display(), "unreadable sync inbox set aside");
                let _ = std::fs::rename(&path, path.with_extension("json.bad"));
                Inbox::default()
            }
        }
    }

    /// Write it durably (or remove the file when empty).
    fn write(&self, config: &Config) -> std::io::Result<()> {
        let path = inbox_path(config);
        if self.messages.is_empty() && self.settings.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        write_durably(
            config,
            &path,
            json!({"messages": self.messages, "settings": self.settings})
                .to_string()
                .as_bytes(),
        )
    }
}

/// Run one sync and write its report (see the module doc).
pub async fn run_once(config: &Config, options: &Options) -> anyhow::Result<Report> {
    run_with(config, options, Hooks::default()).await
}

/// [`run_once`] with test hooks.
pub async fn run_with(config: &Config, options: &Options, hooks: Hooks) -> anyhow::Result<Report> {
    let hub_url = options
        .hub
        .clone()
        .ok_or_else(|| anyhow!("no hub: give --hub URL or set sync_hub_url"))?;
    let boxid = options
        .box_id
        .clone()
        .ok_or_else(|| anyhow!("no box id: give --box-id ID or set sync_box_id"))?;
    if !confer_core::service::hub_valid_name(&boxid) {
        return Err(anyhow!("{boxid:?} is not a box id"));
    }
    let core = crate::build_core(config)?;
    let blobs: Arc<dyn BlobStore> = crate::open_blob_store(config)?;
    let previous = std::fs::read_to_string(report_path(config)).ok();
    let mut report = Report {
        hub: hub_url.clone(),
        boxid: boxid.clone(),
        started: confer_core::model::now_us() / 1_000_000,
        ..Report::default()
    };
    let token = current_token(&core, config).await?.unwrap_or_default();
    let mut hub = Hub::new(
        &hub_url,
        &boxid,
        &token,
        Duration::from_millis(config.sync_timeout_ms.max(1)),
    )?;
    if hub.tls {
        hub.tls_config = Some(tls_config(config.sync_ca_file.as_deref())?);
    }
    let outcome = steps(&core, &blobs, &hub, config, &mut report, hooks, previous).await;
    if let Err((step, name, why)) = outcome {
        report.steps.push(Step {
            step,
            name,
            ok: false,
            detail: why.clone(),
        });
        report.failed = Some(format!("step {step} ({name}): {why}"));
        tracing::warn!(step, name, why, "sync stopped");
    }
    core.flush().await?;
    let text = serde_json::to_string_pretty(&report.to_json())?;
    if options.log_to_file {
        std::fs::write(report_path(config), &text)
            .with_context(|| format!("writing {}", report_path(config).display()))?;
    } else {
        println!("{text}");
    }
    Ok(report)
}

type StepError = (u8, &'static str, String);

fn expect(
    answer: Result<Answer, String>,
    step: u8,
    name: &'static str,
) -> Result<Answer, StepError> {
    match answer {
        Ok(a) if a.status == 200 => Ok(a),
        Ok(a) => Err((step, name, format!("HTTP {}: {}", a.status, a.text()))),
        Err(e) => Err((step, name, e)),
    }
}

async fn steps(
    core: &Core,
    blobs: &Arc<dyn BlobStore>,
    hub: &Hub,
    config: &Config,
    report: &mut Report,
    hooks: Hooks,
    previous: Option<String>,
) -> Result<(), StepError> {
    let stop = |n: u8, name: &'static str| -> Result<(), StepError> {
        if hooks.stop_before == Some(n) {
            Err((n, name, "stopped by the test hook".into()))
        } else {
            Ok(())
        }
    };
    let died = |n: u8, name: &'static str| -> Result<(), StepError> {
        if hooks.die_after == Some(n) {
            Err((n, name, "died after the hub answered (test hook)".into()))
        } else {
            Ok(())
        }
    };
    let internal = |n: u8, name: &'static str| move |e: anyhow::Error| (n, name, format!("{e:#}"));
    let done = |report: &mut Report, step: u8, name: &'static str, detail: String| {
        report.steps.push(Step {
            step,
            name,
            ok: true,
            detail,
        });
    };

    stop(1, "healthcheck")?;
    let path = format!("/healthcheck?boxid={}", hub.boxid);
    expect(
        hub.call("GET", &path, None, Vec::new()).await,
        1,
        "healthcheck",
    )?;
    died(1, "healthcheck")?;
    done(report, 1, "healthcheck", "hub reachable".into());

    stop(2, "check")?;
    expect(
        hub.call("GET", "/check", None, Vec::new()).await,
        2,
        "check",
    )?;
    died(2, "check")?;
    done(report, 2, "check", "key accepted".into());

    stop(3, "messageStatus")?;
    let a = expect(
        hub.call(
            "GET",
            &format!("/messageStatus?stored={}", read_stored(config)),
            None,
            Vec::new(),
        )
        .await,
        3,
        "messageStatus",
    )?;
    died(3, "messageStatus")?;
    let since: i64 = a
        .text()
        .trim()
        .parse()
        .map_err(|_| (3, "messageStatus", format!("not a time: {:?}", a.text())))?;
    done(report, 3, "messageStatus", format!("since {since}"));

    stop(4, "courseRosters")?;
    let edge = read_edge(core, &hub.boxid, &hub.boxid)
        .await
        .map_err(internal(4, "courseRosters"))?;
    let roster = Value::Array(edge.courses.clone());
    expect(
        hub.json("POST", "/courseRosters", &roster).await,
        4,
        "courseRosters",
    )?;
    died(4, "courseRosters")?;
    done(
        report,
        4,
        "courseRosters",
        format!("{} course(s)", edge.courses.len()),
    );

    stop(5, "attachments")?;
    let pending = outgoing(core, &edge)
        .await
        .map_err(internal(5, "attachments"))?;
    let files: Vec<_> = pending
        .iter()
        .filter_map(|o| o.message.files.first().cloned())
        .collect();
    let bar = indicatif::ProgressBar::new(files.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("attachments {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for f in &files {
        let key = f.item_id.to_string();
        bar.set_message(f.filename.clone());
        let known = core
            .hub_link(HubLinkKind::SentAttachment, &key)
            .await
            .map_err(|e| (5, "attachments", e.to_string()))?;
        if known.is_none() {
            let a = hub
                .call(
                    "GET",
                    &format!("/attachments/{key}/exists"),
                    None,
                    Vec::new(),
                )
                .await
                .map_err(|e| (5, "attachments", e))?;
            match a.status {
                200 => {}
                404 => {
                    let stored = core
                        .attachment_for_admin(f.item_id)
                        .await
                        .map_err(|e| (5, "attachments", e.to_string()))?;
                    let mut data = Vec::new();
                    {
                        use tokio::io::AsyncReadExt;
                        blobs
                            .open_range(&stored.sha256, 0, u64::MAX)
                            .await
                            .map_err(|e| (5, "attachments", format!("reading {key}: {e}")))?
                            .read_to_end(&mut data)
                            .await
                            .map_err(|e| (5, "attachments", format!("reading {key}: {e}")))?;
                    }
                    let fields = [
                        ("id", key.clone()),
                        ("type", attachment_kind_name(&f.mimetype).to_string()),
                        ("filepath", "/".to_string()),
                        ("filename", f.filename.clone()),
                    ];
                    let (ct, body) = multipart(&fields, &f.filename, &f.mimetype, &data);
                    expect(
                        hub.call("POST", "/attachments", Some(&ct), body).await,
                        5,
                        "attachments",
                    )?;
                    report.attachments_sent += 1;
                }
                other => {
                    return Err((
                        5,
                        "attachments",
                        format!("exists: HTTP {other}: {}", a.text()),
                    ))
                }
            }
            died(5, "attachments")?;
            core.hub_set_link(HubLinkKind::SentAttachment, &key, 1)
                .await
                .map_err(|e| (5, "attachments", e.to_string()))?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    died(5, "attachments")?;
    done(
        report,
        5,
        "attachments",
        format!("{} sent", report.attachments_sent),
    );

    stop(6, "messages")?;
    let login = |uin: &Uin| {
        edge.logins
            .get(uin)
            .map(|(l, _)| l.clone())
            .unwrap_or_default()
    };
    let items: Vec<Value> = pending
        .iter()
        .map(|o| {
            let m = &o.message;
            let (text, attachment) = match m.files.first() {
                Some(f) => {
                    let kind = attachment_kind_name(&f.mimetype);
                    (
                        format!(
                            "<attachment type=\"{kind}\" id=\"{}\" filepath=\"/\" filename=\"{}\">",
                            f.item_id,
                            f.filename.replace('"', "&quot;")
                        ),
                        json!({"type": kind, "id": f.item_id.to_string(), "filepath": "/", "filename": f.filename}),
                    )
                }
                None => (m.text.clone().unwrap_or_default(), Value::Null),
            };
            let (s, r) = (login(&m.sender), login(&o.recipient));
            json!({
                "id": m.message_id.to_string(),
                "conversation_id": o.group.to_string(),
                "subject": null,
                "message": text,
                "sender": {"id": m.sender.0, "username": s, "email": email_of(&s, &hub.boxid)},
                "recipient": {"id": o.recipient.0, "username": r, "email": email_of(&r, &hub.boxid)},
                "attachment": attachment,
                "created_on": m.created_at_us / 1_000_000,
            })
        })
        .collect();
    let a = hub
        .json("POST", "/messages", &Value::Array(items))
        .await
        .map_err(|e| (6, "messages", e))?;
    let failed: BTreeSet<String> = match a.status {
        200 => BTreeSet::new(),
        404 => serde_json::from_slice::<Vec<Value>>(&a.body)
            .map_err(|_| {
                (
                    6,
                    "messages",
                    format!("HTTP 404 without a list of ids: {}", a.text()),
                )
            })?
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        other => return Err((6, "messages", format!("HTTP {other}: {}", a.text()))),
    };
    died(6, "messages")?;
    // Each conversation's mark moves to just before its first failed message.
    let mut marks: BTreeMap<u64, u64> = BTreeMap::new();
    let mut blocked: BTreeSet<u64> = BTreeSet::new();
    for o in &pending {
        if failed.contains(&o.message.message_id.to_string()) {
            blocked.insert(o.group);
            continue;
        }
        if !blocked.contains(&o.group) {
            marks.insert(o.group, o.message.seq);
        }
    }
    for (group, seq) in marks {
        core.hub_set_link(HubLinkKind::EdgeMark, &format!("pushed:{group}"), seq)
            .await
            .map_err(|e| (6, "messages", e.to_string()))?;
    }
    report.messages_sent = pending.len() - failed.len();
    report.messages_failed = failed.into_iter().collect();
    done(
        report,
        6,
        "messages",
        format!(
            "{} sent, {} failed",
            report.messages_sent,
            report.messages_failed.len()
        ),
    );

    stop(7, "messages since")?;
    let mut inbox = Inbox::read(config);
    let save = |inbox: &Inbox, n: u8, name: &'static str| {
        inbox
            .write(config)
            .map_err(|e| (n, name, format!("writing the sync inbox: {e}")))
    };
    let held_before = inbox.messages.len();
    if held_before < MAX_INBOX {
        let a = expect(
            hub.call("GET", &format!("/messages/{since}"), None, Vec::new())
                .await,
            7,
            "messages since",
        )?;
        let batch: Vec<Value> = serde_json::from_slice(&a.body)
            .map_err(|e| (7, "messages since", format!("malformed JSON: {e}")))?;
        inbox.messages.extend(
            batch
                .into_iter()
                .map(|item| json!({"item": item, "tries": 0})),
        );
        save(&inbox, 7, "messages since")?;
        write_durably(
            config,
            &stored_path(config),
            json!({ "stored": since }).to_string().as_bytes(),
        )
        .map_err(|e| (7, "messages since", format!("writing {STORED_FILE}: {e}")))?;
    }
    died(7, "messages since")?;
    let mut kept = Vec::new();
    let mut dropped = 0;
    for entry in std::mem::take(&mut inbox.messages) {
        let item = &entry["item"];
        match receive(core, blobs, hub, item).await {
            Ok(true) => report.messages_received += 1,
            Ok(false) => {}
            Err(Failure::Retry(e)) if entry["tries"].as_u64().unwrap_or(0) + 1 < MAX_TRIES => {
                tracing::warn!(error = %e, "a hub message is kept for the next run");
                let tries = entry["tries"].as_u64().unwrap_or(0) + 1;
                kept.push(json!({"item": item, "tries": tries}));
            }
            Err(Failure::Retry(e) | Failure::Drop(e)) => {
                dropped += 1;
                tracing::warn!(error = %e, "a hub message was not stored");
            }
        }
    }
    inbox.messages = kept;
    report.messages_held = inbox.messages.len();
    save(&inbox, 7, "messages since")?;
    if held_before >= MAX_INBOX {
        return Err((
            7,
            "messages since",
            format!("{held_before} hub messages still to store; nothing new fetched"),
        ));
    }
    done(
        report,
        7,
        "messages since",
        format!(
            "{} stored, {} kept for the next run, {dropped} not stored",
            report.messages_received, report.messages_held
        ),
    );

    stop(8, "logs")?;
    let logs = match previous {
        Some(text) => json!([{"timestamp": report.started, "log": text}]),
        None => json!([]),
    };
    expect(hub.json("POST", "/logs/sync", &logs).await, 8, "logs")?;
    died(8, "logs")?;
    done(report, 8, "logs", "previous report sent".into());

    stop(9, "settings")?;
    let a = expect(
        hub.call("GET", "/settings", None, Vec::new()).await,
        9,
        "settings",
    )?;
    let settings: Vec<Value> = serde_json::from_slice(&a.body)
        .map_err(|e| (9, "settings", format!("malformed JSON: {e}")))?;
    // A setting handed over again (a hub restart) while it waits here is kept once.
    for setting in settings {
        if !inbox.settings.contains(&setting) {
            inbox.settings.push(setting);
        }
    }
    save(&inbox, 9, "settings")?;
    died(9, "settings")?;
    let mut unconfirmed = Vec::new();
    let mut failure = None;
    for s in std::mem::take(&mut inbox.settings) {
        let key = s["key"].as_str().unwrap_or_default();
        let value = match &s["value"] {
            Value::String(v) => v.clone(),
            other => other.to_string(),
        };
        let id = text_of(&s["deleteId"]);
        if failure.is_some() {
            // The hub stopped answering: the rest wait in the inbox for the next run.
            unconfirmed.push(s);
            continue;
        }
        if key.is_empty() || id.is_empty() {
            continue;
        }
        // Stored once per hub setting, however often it is handed over. A hub may give a
        // confirmed setting's id to a new one, so the mark is of the whole setting.
        let applied = {
            use sha2::Digest;
            let whole = json!([id, text_of(&s["timestamp"]), key, value]).to_string();
            format!("setting:{}", hex::encode(sha2::Sha256::digest(whole)))
        };
        let known = core
            .hub_link(HubLinkKind::FromHub, &applied)
            .await
            .map_err(|e| (9, "settings", e.to_string()))?;
        if known.is_none() {
            let stored = core
                .hub_queue_setting("", key, &value)
                .await
                .map_err(|e| (9, "settings", e.to_string()))?;
            core.hub_set_link(HubLinkKind::FromHub, &applied, stored.id)
                .await
                .map_err(|e| (9, "settings", e.to_string()))?;
            report.settings_applied.push(key.to_string());
        }
        // 404: the hub no longer has it (confirmed before): nothing left to do.
        match hub
            .call("DELETE", &format!("/settings/{id}"), None, Vec::new())
            .await
        {
            Ok(a) if a.status == 200 || a.status == 404 => {}
            Ok(a) => {
                failure = Some(format!("HTTP {}: {}", a.status, a.text()));
                unconfirmed.push(s);
            }
            Err(e) => {
                failure = Some(e);
                unconfirmed.push(s);
            }
        }
    }
    inbox.settings = unconfirmed;
    save(&inbox, 9, "settings")?;
    if let Some(why) = failure {
        return Err((9, "settings", why));
    }
    let _ = config;
    done(
        report,
        9,
        "settings",
        format!("{} applied", report.settings_applied.len()),
    );
    Ok(())
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Why a hub→edge message was not stored.
enum Failure {
    /// Worth another try on the next run (its file did not download, the disk failed).
    Retry(String),
    /// Never storable (no id or recipient, a recipient this edge does not have).
    Drop(String),
}

impl From<confer_core::CoreError> for Failure {
    fn from(e: confer_core::CoreError) -> Failure {
        use confer_core::CoreError;
        match e {
            CoreError::UserNotFound | CoreError::InvalidValue(_) => Failure::Drop(e.to_string()),
            e => Failure::Retry(e.to_string()),
        }
    }
}

/// Store one hub→edge message; `false` if it was stored before.
async fn receive(
    core: &Core,
    blobs: &Arc<dyn BlobStore>,
    hub: &Hub,
    item: &Value,
) -> Result<bool, Failure> {
    let id = text_of(&item["id"]);
    let sender = text_of(&item["sender"]["username"]);
    let recipient = text_of(&item["recipient"]["username"]);
    if id.is_empty() || sender.is_empty() || recipient.is_empty() {
        return Err(Failure::Drop(format!(
            "a hub message without id, sender or recipient: {item}"
        )));
    }
    if core.hub_link(HubLinkKind::FromHub, &id).await?.is_some() {
        return Ok(false);
    }
    let message = item["message"].as_str().unwrap_or_default();
    let person = HubPerson {
        username: sender,
        ..HubPerson::default()
    };
    let tag = message.trim_start();
    if tag.starts_with("<attachment") {
        let filepath = download_path(&attribute(tag, "filepath").unwrap_or_default());
        let filename = attribute(tag, "filename").unwrap_or_else(|| "file".into());
        let kind = attribute(tag, "type").unwrap_or_else(|| "document".into());
        let a = hub
            .call("GET", &filepath, None, Vec::new())
            .await
            .map_err(|e| Failure::Retry(format!("downloading {filepath}: {e}")))?;
        if a.status != 200 {
            return Err(Failure::Retry(format!(
                "downloading {filepath}: HTTP {}",
                a.status
            )));
        }
        let stored = store_blob(blobs, &a.body)
            .await
            .map_err(|e| Failure::Retry(format!("storing {filepath}: {e:#}")))?;
        let mime = confer_door_files::sniff_mimetype(&a.body[..a.body.len().min(8192)]);
        let att = core
            .edge_register_download(stored, a.body.len() as u64, mime.clone(), filename)
            .await?;
        let attachments = json!([{
            "item_id": att.item_id.to_string(), "type": kind, "filename": att.filename, "mimetype": mime,
        }])
        .to_string();
        return Ok(core
            .edge_store_from_hub(HubIncoming {
                hub_id: id,
                sender: person,
                recipient,
                text: None,
                attachments: Some(attachments),
                kind: confer_core::service::attachment_kind(&kind),
                item_ids: vec![att.item_id],
            })
            .await?);
    }
    Ok(core
        .edge_store_from_hub(HubIncoming {
            hub_id: id,
            sender: person,
            recipient,
            text: Some(message.to_string()),
            ..HubIncoming::default()
        })
        .await?)
}

/// The path on the hub to download `filepath` from: a path as it is, a full URL by its
/// path (the credential goes only to the hub synced with).
fn download_path(filepath: &str) -> String {
    let rest = filepath
        .strip_prefix("https://")
        .or_else(|| filepath.strip_prefix("http://"));
    match rest {
        Some(rest) => rest
            .find('/')
            .map_or("/".to_string(), |i| rest[i..].to_string()),
        None if filepath.starts_with('/') => filepath.to_string(),
        None => format!("/{filepath}"),
    }
}

async fn store_blob(blobs: &Arc<dyn BlobStore>, data: &[u8]) -> anyhow::Result<String> {
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(data));
    let staged = blobs.staging_path();
    tokio::fs::write(&staged, data).await?;
    if let Err(e) = blobs.publish(&staged, &sha).await {
        let _ = tokio::fs::remove_file(&staged).await;
        return Err(e.into());
    }
    Ok(sha)
}

/// The wait after a run: `every` after a success; after a failure twice the last wait,
/// at most an hour (or `every`, if that is longer).
fn next_wait(last: Duration, every: Duration, ok: bool) -> Duration {
    if ok {
        every
    } else {
        last.saturating_mul(2).min(MAX_BACKOFF.max(every))
    }
}

/// Run every `every`; after a failed run wait twice as long each time (up to an hour),
/// until a run succeeds.
pub async fn schedule(config: &Config, options: &Options, every: Duration) -> anyhow::Result<()> {
    let mut wait = every;
    loop {
        let ok = match run_once(config, options).await {
            Ok(r) => r.failed.is_none(),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "sync run failed");
                false
            }
        };
        wait = next_wait(wait, every, ok);
        tracing::info!(next_in_secs = wait.as_secs(), ok, "next sync");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hub_that_stays_down_is_tried_less_and_less_often_and_normally_again_once_it_answers() {
        let every = Duration::from_secs(300);
        let mut wait = every;
        let mut waits = Vec::new();
        for _ in 0..6 {
            wait = next_wait(wait, every, false);
            waits.push(wait.as_secs());
        }
        assert_eq!(waits, [600, 1200, 2400, 3600, 3600, 3600]);
        assert_eq!(next_wait(wait, every, true), every);
    }

    #[test]
    fn a_hub_address_gives_host_port_and_the_chathost_prefix() {
        let h = Hub::new("http://10.0.0.5:8080", "b", "t", Duration::from_secs(1)).unwrap();
        assert_eq!(
            (h.tls, h.host.as_str(), h.port, h.prefix.as_str()),
            (false, "10.0.0.5", 8080, "/chathost")
        );
        let h = Hub::new(
            "https://hub.example.org/chathost/",
            "b",
            "t",
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            (h.tls, h.host.as_str(), h.port, h.prefix.as_str()),
            (true, "hub.example.org", 443, "/chathost")
        );
        assert!(Hub::new("http://", "b", "t", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn attachment_tags_and_file_paths_are_read_as_the_hub_writes_them() {
        let tag = r#"<attachment type="photo" id="7" filename="a &quot;b&quot;.png" filepath="/chathost/files/3/7">"#;
        assert_eq!(attribute(tag, "filename").as_deref(), Some("a \"b\".png"));
        assert_eq!(attribute(tag, "type").as_deref(), Some("photo"));
        assert_eq!(attribute(tag, "missing"), None);
        assert_eq!(download_path("/chathost/files/3/7"), "/chathost/files/3/7");
        assert_eq!(
            download_path("https://hub.org/chathost/files/3/7"),
            "/chathost/files/3/7"
        );
        assert_eq!(download_path("files/3"), "/files/3");
    }
}
