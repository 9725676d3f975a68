//! # confer (the binary's library): wiring, configuration, shutdown
//!
//! [`start`] builds the core over its backends (SQLite or PostgreSQL storage, the
//! in-process bus and registry, wrapped for Redis when `redis_url` is set, GELF sink), mounts every door on one axum router, and serves until its
//! shutdown token is cancelled; then it drains connections and flushes storage.
//!
//! - [`config`]: the one `Config` struct (file + env + flags) and its generated example.
//! - [`gelf`]: the GELF 1.1 sender behind the core's `LogSink`.
//! - [`attachments`]: the `confer attachments clean-up` and `compress` tools.
//! - [`sync`]: the edge role of the edge-to-hub sync (`confer sync push|settings|schedule`).
//! - `hub_files`: the hub role's attachment bytes in the blob store.
//! - [`admin_client`]: the admin HTTP API's client, for `confer group|message|session`.
//! - [`migrate`]: `confer migrate --to postgres://…`, SQLite into PostgreSQL, verified.
//! - `main.rs`: the CLI (`serve`, `user`, `attachments`, `group`, `message`, `session`,
//!   `config example`) and logging set-up.
//!
//! This is the only crate that knows every other one; `anyhow` lives only here.

pub mod admin_client;
pub mod attachments;
pub mod config;
pub mod gelf;
mod hub_files;
mod limits;
pub mod migrate;
mod serve;
pub mod sync;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use confer_bus::{LocalBus, LocalRegistry};
use confer_core::bus::{EventBus, SessionRegistry};
use confer_core::hasher::HasherSettings;
use confer_core::login_limits::LoginLimitSettings;
use confer_core::logsink::LogSink;
use confer_core::metrics::Metrics;
use confer_core::{Core, CoreSettings};
use confer_store_postgres::{PgOptions, PgStore};
use confer_store_sqlite::nonces::NonceOptions;
use confer_store_sqlite::{SqliteOptions, SqliteStore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

/// The last step of a graceful shutdown: flush storage (the WAL checkpoint). Every write
/// was durable when it was acknowledged, so a failed flush (a full disk failing the
/// checkpoint) loses nothing: SQLite replays the WAL at the next start. The failure is
/// logged and the shutdown stays clean. Returns whether the flush succeeded.
async fn final_flush(
    flush: impl std::future::Future<Output = confer_core::CoreResult<()>>,
) -> bool {
    match flush.await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(
                error = %e,
                "final storage flush failed; acknowledged writes are in the WAL and are \
                 replayed at the next start"
            );
            false
        }
    }
}

/// Build the core over the backends described by `config`, for a command that is not a
/// serving node (`confer user`, `attachments`, `hub`, `sync`, tests): it never joins the
/// cluster of `redis_url`, where it would be taken for a node (and, with the default
/// `node_id`, for the server on the same host and port).
pub fn build_core(config: &Config) -> anyhow::Result<Arc<Core>> {
    build_node_core(config, false)
}

/// Build the core; a serving node (`join`) joins the cluster of `redis_url`.
fn build_node_core(config: &Config, join: bool) -> anyhow::Result<Arc<Core>> {
    let metrics = Arc::new(Metrics::default());
    let storage = open_storage(config, metrics.clone())?;
    let local_registry = Arc::new(LocalRegistry::new());
    let local_bus = Arc::new(LocalBus::new(local_registry.clone()));
    let cluster = config
        .redis_url
        .as_deref()
        .filter(|u| join && !u.is_empty());
    let (bus, registry): (Arc<dyn EventBus>, Arc<dyn SessionRegistry>) = match cluster {
        Some(url) => {
            let (bus, registry) = confer_bus_redis::start(
                confer_bus_redis::RedisOptions {
                    url: url.to_string(),
                    node_id: node_id(config),
                    prefix: config.redis_prefix.clone(),
                    queue: config.redis_queue,
                    queue_bytes: config.redis_queue_bytes,
                    node_timeout: Duration::from_secs(config.node_timeout_secs),
                    request_timeout: Duration::from_millis(
                        config
                            .forward_timeout_ms
                            .max(config.reply_timeout_ms + config.acked_reply_timeout_ms),
                    ),
                    metrics: metrics.clone(),
                },
                local_bus,
                local_registry,
            )
            .context("joining the cluster through redis_url")?;
            (Arc::new(bus), Arc::new(registry))
        }
        None => (local_bus, local_registry),
    };
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
        // The target's door times out first and says so (100005); this is the backstop.
        forward_timeout: Duration::from_millis(
            config
                .forward_timeout_ms
                .max(config.reply_timeout_ms + config.acked_reply_timeout_ms),
        ),
        max_list: config.max_list.max(1),
        max_list_bytes: config.max_list_bytes,
        call_timeout: Duration::from_millis(config.call_timeout_ms),
        typing_timeout: Duration::from_millis(config.typing_timeout_ms),
        max_message_bytes: config.max_message_bytes,
        max_subscriptions_per_session: config.max_subscriptions_per_session,
        hasher: HasherSettings {
            concurrency: config.password_hash_concurrency,
            queue: config.password_hash_queue,
            wait: Duration::from_millis(config.password_hash_wait_ms),
        },
        login_limits: LoginLimitSettings {
            account_burst: config.login_account_burst,
            account_per_minute: config.login_account_per_minute,
            address_burst: config.login_address_burst,
            address_per_minute: config.login_address_per_minute,
            max_tracked: config.login_limit_max_tracked,
        },
        open_registration: config.open_registration,
        push: confer_core::service::PushSettings {
            token_types: push_config(config)?.token_types(),
            preview: config.push_preview,
        },
    };
    let core = Core::new(storage, bus, registry, logs, metrics, settings);
    // Live calls and their ringing timers are shared through Redis when there is one.
    let core = match config.redis_url.as_deref().filter(|u| !u.is_empty()) {
        Some(url) => core.with_calls(Arc::new(
            confer_bus_redis::calls::RedisCalls::connect(url, &config.redis_prefix)
                .context("keeping calls in Redis (redis_url)")?,
        )),
        None => core,
    };
    // And who is online, on a node that serves chat sessions.
    let core = match cluster {
        Some(url) => core.with_online(Arc::new(
            confer_bus_redis::online::RedisOnline::connect(
                url,
                &config.redis_prefix,
                &node_id(config),
            )
            .context("counting who is online in Redis (redis_url)")?,
        )),
        None => core,
    };
    Ok(Arc::new(core))
}

/// This node's name: `node_id`, else the host name and the `listen` port (a random
/// suffix instead of port 0, which every test node would share).
fn node_id(config: &Config) -> String {
    if let Some(id) = config.node_id.as_deref().filter(|i| !i.is_empty()) {
        return id.to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "confer".into()
    } else {
        host
    };
    match config.listen.rsplit_once(':').map(|(_, port)| port) {
        Some(port) if port != "0" => format!("{host}:{port}"),
        _ => format!("{host}-{:016x}", rand::random::<u64>()),
    }
}

/// This node's media endpoint wrapped for the cluster of `redis_url`: opens go to the
/// node hosting the conference's media (`confer_bus_redis::media`).
fn cluster_media(
    config: &Config,
    url: &str,
    local: Arc<dyn confer_core::media::MediaEndpoint>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Arc<dyn confer_core::media::MediaEndpoint>> {
    let media = confer_bus_redis::media::ClusterMedia::start(
        confer_bus_redis::media::ClusterMediaOptions {
            url: url.to_string(),
            node_id: node_id(config),
            prefix: config.redis_prefix.clone(),
            node_timeout: Duration::from_secs(config.node_timeout_secs),
            open_timeout: Duration::from_millis(config.media_forward_timeout_ms),
            metrics,
        },
        local,
    )
    .context("sharing conference media through redis_url")?;
    Ok(media)
}

/// The storage `config` names: PostgreSQL with a `database_url`, else the embedded
/// SQLite database in `data_dir`. Either is migrated to the current schema first.
pub fn open_storage(
    config: &Config,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Arc<dyn confer_core::store::Storage>> {
    if let Some(url) = config.database_url.as_deref().filter(|u| !u.is_empty()) {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            anyhow::bail!("database_url must start with postgres:// (got {url:?})");
        }
        let store = PgStore::open(
            url,
            PgOptions {
                pool_size: config.database_pool_size,
                metrics,
            },
        )
        .context("opening the PostgreSQL database of database_url")?;
        return Ok(Arc::new(store));
    }
    let store = SqliteStore::open_with(
        &config.data_dir,
        metrics,
        SqliteOptions {
            linger: Duration::from_micros(config.commit_linger_us),
            nonces: NonceOptions {
                window: Duration::from_secs(config.nonce_window_secs),
                max: config.nonce_window_max,
            },
        },
    )
    .with_context(|| format!("opening storage in {}", config.data_dir.display()))?;
    Ok(Arc::new(store))
}

/// The push providers `config` sets up (README "Push notifications"); key files are read
/// when the worker starts.
pub fn push_config(config: &Config) -> anyhow::Result<confer_push::PushConfig> {
    let apns = match &config.push_apns_key {
        None => None,
        Some(key) => {
            let need = |v: &Option<String>, name: &str| {
                v.clone()
                    .with_context(|| format!("push_apns_key is set: {name} is needed too"))
            };
            Some(confer_push::ApnsConfig {
                key: key.clone(),
                key_id: need(&config.push_apns_key_id, "push_apns_key_id")?,
                team_id: need(&config.push_apns_team_id, "push_apns_team_id")?,
                bundle_id: need(&config.push_apns_bundle_id, "push_apns_bundle_id")?,
                endpoint: config.push_apns_endpoint.clone(),
                ca: config.push_apns_ca.clone(),
            })
        }
    };
    Ok(confer_push::PushConfig {
        concurrency: config.push_concurrency.max(1),
        max_age: Duration::from_secs(config.push_max_age_secs),
        node: node_id(config),
        webhook: config
            .push_webhook_url
            .clone()
            .map(|url| confer_push::WebhookConfig {
                url,
                secret: config.push_webhook_secret.clone(),
            }),
        fcm: config
            .push_fcm_service_account
            .clone()
            .map(|service_account| confer_push::FcmConfig {
                service_account,
                endpoint: config.push_fcm_endpoint.clone(),
                token_url: config.push_fcm_token_url.clone(),
            }),
        apns,
        webpush: config
            .push_vapid_key
            .clone()
            .map(|vapid_key| confer_push::WebPushConfig {
                vapid_key,
                subject: config.push_vapid_subject.clone(),
                allow_http: config.push_webpush_allow_http,
            }),
    })
}

/// The blob store of attachments, under `<data_dir>/files`.
pub fn open_blobs(config: &Config) -> anyhow::Result<confer_door_files::LocalBlobs> {
    let root = config.data_dir.join("files");
    confer_door_files::LocalBlobs::open(&root)
        .with_context(|| format!("opening {}", root.display()))
}

/// The blob store attachments are kept in: `<data_dir>/files`, or the S3-compatible
/// bucket `attachments_s3_bucket` with that folder as this node's copies.
pub fn open_blob_store(config: &Config) -> anyhow::Result<Arc<dyn confer_door_files::BlobStore>> {
    let local = open_blobs(config)?;
    let Some(bucket) = config
        .attachments_s3_bucket
        .as_deref()
        .filter(|b| !b.is_empty())
    else {
        return Ok(Arc::new(local));
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let options = confer_door_files::S3Options {
        bucket: bucket.to_string(),
        prefix: text(&config.attachments_s3_prefix),
        endpoint: text(&config.attachments_s3_endpoint),
        region: text(&config.attachments_s3_region),
        access_key: text(&config.attachments_s3_access_key),
        secret_key: text(&config.attachments_s3_secret_key),
    };
    let blobs = confer_door_files::S3Blobs::open(&options, local)
        .context("opening the attachments' object store (attachments_s3_*)")?;
    Ok(Arc::new(blobs))
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
    start_with_media(config, None).await
}

/// [`start`], with the server's WebRTC endpoint (the SFU) plugged into the conference
/// door; `None`: its media commands answer "not available yet".
pub async fn start_with_media(
    config: Config,
    media: Option<Arc<dyn confer_core::media::MediaEndpoint>>,
) -> anyhow::Result<Running> {
    let mut config = config;
    if config.redis_url.as_deref().is_some_and(|u| !u.is_empty()) {
        // One name for this node's bus and its media (a random one is drawn once).
        config.node_id = Some(node_id(&config));
    }
    let core = build_node_core(&config, true)?;
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
            rate_per_sec: config.extapi_rate_per_sec,
            rate_burst: config.extapi_rate_burst,
            service: config.extapi_service.clone(),
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
            turn: config.turn(),
        },
        shutdown.clone(),
        tracker.clone(),
    );
    // An endpoint handed in (tests) wins; otherwise the configured SFU, if any.
    let media: Option<Arc<dyn confer_core::media::MediaEndpoint>> =
        match (media, config.media().map_err(anyhow::Error::msg)?) {
            (Some(given), _) => Some(given),
            (None, Some(settings)) => Some(
                confer_media::Sfu::start(settings, core.metrics().clone())
                    .await
                    .context("starting the media endpoint")?,
            ),
            (None, None) => None,
        };
    // In a cluster, one node's SFU carries each conference's media (its first opener's).
    let media = match (media, config.redis_url.as_deref().filter(|u| !u.is_empty())) {
        (Some(local), Some(url)) => {
            Some(cluster_media(&config, url, local, core.metrics().clone())?)
        }
        (media, _) => media,
    };
    let vsp = Arc::new(confer_door_vsp::Vsp {
        core: core.clone(),
        settings: confer_door_vsp::Settings {
            timer_interval: Duration::from_millis(config.vsp_timer_interval_ms.max(1)),
            max_frame_bytes: config.max_frame_bytes,
            outbound_queue: config.outbound_queue,
            write_timeout: Duration::from_millis(config.write_timeout_ms),
            rate_per_sec: config.vsp_rate_per_sec,
            rate_burst: config.vsp_rate_burst,
            cluster_id: config.cluster_id,
            turn: config.turn(),
            page_csp: confer_door_http::web::CSP,
        },
        media,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
    });
    let blobs = open_blobs(&config)?;
    // Half-written files of a crashed run: nothing refers to them.
    match blobs.clear_staging() {
        Ok(0) => {}
        Ok(n) => tracing::info!(files = n, "removed half-written uploads from staging"),
        Err(e) => tracing::warn!(error = %e, "could not clear the staging folder"),
    }
    let blobs = open_blob_store(&config)?;
    let files = Arc::new(confer_door_files::FilesApi {
        core: core.clone(),
        blobs: blobs.clone(),
        max_upload: config.max_upload_bytes,
    });
    let mut app = confer_door_http::router(core.clone())
        .merge(confer_door_extapi::router(ext))
        .merge(confer_door_files::router(files))
        .merge(confer_door_chat::router(chat))
        .merge(confer_door_vsp::router(vsp));
    if config.hub_role {
        let hub = confer_door_chathost::ChathostApi::new(
            core.clone(),
            Arc::new(hub_files::HubFiles(blobs)),
            config.hub_trust_on_first_use,
        );
        app = app.merge(confer_door_chathost::router(Arc::new(hub)));
    }
    // Every node ends timed-out calls, those rung through another node included.
    core.start_call_timers();
    if config.token_check_interval_ms > 0 {
        let every = Duration::from_millis(config.token_check_interval_ms);
        tracker.spawn(core.clone().watch_tokens(every, shutdown.clone()));
    }
    // Push delivery: the worker drains the durable outbox until shutdown.
    if let Some(worker) = confer_push::Worker::new(core.clone(), &push_config(&config)?)
        .context("starting push delivery")?
    {
        tracker.spawn(worker.run(shutdown.clone()));
    }
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
        max_body: confer_door_files::largest_body(config.max_upload_bytes)
            .max(confer_door_chathost::MAX_BODY as u64 + 64 * 1024),
        per_ip: config.max_connections_per_ip,
    };
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "confer listening");
    let task = tokio::spawn(async move {
        serve::serve(listener, app, http, token, grace).await;
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!("connections still open after the shutdown grace period");
        }
        final_flush(core.flush()).await;
        tracing::info!("confer stopped");
        Ok(())
    });
    Ok(Running {
        addr,
        shutdown,
        task,
    })
}

#[cfg(test)]
mod tests {
    use confer_core::store::StoreError;
    use confer_core::CoreError;

    #[tokio::test]
    async fn a_failing_final_flush_is_logged_and_the_shutdown_stays_clean() {
        let full_disk = async {
            Err(CoreError::Storage(StoreError::Backend(
                "database or disk is full".into(),
            )))
        };
        assert!(!super::final_flush(full_disk).await);
        assert!(super::final_flush(async { Ok(()) }).await);
    }
}
