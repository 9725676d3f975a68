//! # confer (the binary's library): wiring, configuration, shutdown
//!
//! [`start`] builds the core over its backends (SQLite storage, in-process bus and
//! registry, GELF sink), mounts every door on one axum router, and serves until its
//! shutdown token is cancelled; then it drains connections and flushes storage.
//!
//! - [`config`]: the one `Config` struct (file + env + flags) and its generated example.
//! - [`gelf`]: the GELF 1.1 sender behind the core's `LogSink`.
//! - [`attachments`]: the `confer attachments clean-up` and `compress` tools.
//! - `main.rs`: the CLI (`serve`, `user`, `config example`) and logging set-up.
//!
//! This is the only crate that knows every other one; `anyhow` lives only here.

pub mod attachments;
pub mod config;
pub mod gelf;
mod limits;
mod serve;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use confer_bus::{LocalBus, LocalRegistry};
use confer_core::logsink::LogSink;
use confer_core::metrics::Metrics;
use confer_core::{Core, CoreSettings};
use confer_store_sqlite::nonces::NonceOptions;
use confer_store_sqlite::{SqliteOptions, SqliteStore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

/// Build the core over the embedded backends described by `config`.
pub fn build_core(config: &Config) -> anyhow::Result<Arc<Core>> {
    let metrics = Arc::new(Metrics::default());
    let storage = Arc::new(
        SqliteStore::open_with(
            &config.data_dir,
            metrics.clone(),
            SqliteOptions {
                linger: Duration::from_micros(config.commit_linger_us),
                nonces: NonceOptions {
                    window: Duration::from_secs(config.nonce_window_secs),
                    max: config.nonce_window_max,
                },
            },
        )
        .with_context(|| format!("opening storage in {}", config.data_dir.display()))?,
    );
    let registry = Arc::new(LocalRegistry::new());
    let bus = Arc::new(LocalBus::new(registry.clone()));
    let logs: Option<Arc<dyn LogSink>> = match &config.gelf {
        Some(url) => Some(Arc::new(gelf::GelfSink::from_url(
            url,
            config.gelf_chunk_size,
        )?)),
        None => None,
    };
    let settings = CoreSettings {
        admin_password: config.admin_password.clone(),
        token_lifetime: Duration::from_secs(config.token_lifetime_secs),
        forward_timeout: Duration::from_millis(config.forward_timeout_ms),
        max_list: config.max_list.max(1),
        call_timeout: Duration::from_millis(config.call_timeout_ms),
        max_message_bytes: config.max_message_bytes,
    };
    Ok(Arc::new(Core::new(
        storage, bus, registry, logs, metrics, settings,
    )))
}

/// The blob store of attachments, under `<data_dir>/files`.
pub fn open_blobs(config: &Config) -> anyhow::Result<confer_door_files::LocalBlobs> {
    let root = config.data_dir.join("files");
    confer_door_files::LocalBlobs::open(&root)
        .with_context(|| format!("opening {}", root.display()))
}

/// A running server.
pub struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// The address it listens on (the real port when the config said `:0`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token that stops it when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stop: close connections (1001), wait for them, flush storage.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Wait until the server stopped (after its token was cancelled).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task")?
    }
}

/// Connections the kernel may hold for us before we accept them; it caps this at
/// `net.core.somaxconn` (4,096 on most systems). tokio's default, 1,024, drops the SYNs of
/// a reconnect storm, and a dropped SYN is retried only after 1, 3, 7 … seconds.
const LISTEN_BACKLOG: u32 = 65_535;

async fn bind(listen: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(listen).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("the address resolved to nothing")))
}

/// Bind, wire and serve in the background.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let core = build_core(&config)?;
    let listener = bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let ext = Arc::new(confer_door_extapi::ExtApi {
        core: core.clone(),
        settings: confer_door_extapi::Settings {
            ping_interval: Duration::from_millis(config.ping_interval_ms.max(1)),
            reply_timeout: Duration::from_millis(config.reply_timeout_ms),
            acked_reply_timeout: Duration::from_millis(config.acked_reply_timeout_ms),
            max_frame_bytes: config.max_frame_bytes,
            outbound_queue: config.outbound_queue,
            write_timeout: Duration::from_millis(config.write_timeout_ms),
        },
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
    });
    let chat = confer_door_chat::ChatApi::new(
        core.clone(),
        confer_door_chat::Settings {
            outbound_queue: config.outbound_queue,
            rate_per_sec: config.chat_rate_per_sec,
            rate_burst: config.chat_rate_burst,
            max_payload: config.max_frame_bytes,
            poll_outbox_bytes: config.poll_outbox_bytes,
            ping_interval: Duration::from_millis(config.chat_ping_interval_ms.max(1)),
            ping_timeout: Duration::from_millis(config.chat_ping_timeout_ms.max(1)),
            write_timeout: Duration::from_millis(config.write_timeout_ms),
        },
        shutdown.clone(),
        tracker.clone(),
    );
    let files = Arc::new(confer_door_files::FilesApi {
        core: core.clone(),
        blobs: Arc::new(open_blobs(&config)?),
        max_upload: config.max_upload_bytes,
    });
    let app = confer_door_http::router(core.clone())
        .merge(confer_door_extapi::router(ext))
        .merge(confer_door_files::router(files))
        .merge(confer_door_chat::router(chat));
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    let token = shutdown.clone();
    let http = serve::HttpLimits {
        read_buffer: config.http_read_buffer_bytes,
        max_head: config.http_max_head_bytes,
        header_timeout: Duration::from_millis(config.http_header_timeout_ms.max(1)),
        body_pace: limits::Pace {
            timeout: Duration::from_millis(config.http_body_timeout_ms.max(1)),
            min_bytes: config.http_body_min_bytes,
        },
        max_body: confer_door_files::largest_body(config.max_upload_bytes),
        per_ip: config.max_connections_per_ip,
    };
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "confer listening");
    let task = tokio::spawn(async move {
        serve::serve(listener, app, http, token, grace).await;
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!("connections still open after the shutdown grace period");
        }
        core.flush().await.context("flushing storage")?;
        tracing::info!("confer stopped");
        Ok(())
    });
    Ok(Running {
        addr,
        shutdown,
        task,
    })
}
