//! The one configuration struct, loaded from defaults, then a TOML file (`--config`),
//! then `CONFER_*` environment variables, then command-line flags; later sources win.
//!
//! The struct, its defaults, its documentation and `confer config example` all come from
//! the single `config!` list below, so the example cannot drift from the code.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Defines [`Config`], its `Default` and the per-field docs from one list.
macro_rules! config {
    ($( $(#[doc = $doc:literal])+ $name:ident : $ty:ty = $default:expr; )*) => {
        /// The server's configuration. Every field can be set in the TOML file, as
        /// `CONFER_<FIELD>` in the environment, and the common ones by flag.
        #[derive(Clone, Debug, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $( $(#[doc = $doc])+ pub $name: $ty, )*
        }

        impl Default for Config {
            fn default() -> Self {
                Config { $( $name: $default, )* }
            }
        }

        /// (field name, documentation) in declaration order.
        const FIELDS: &[(&str, &str)] = &[ $( (stringify!($name), concat!($($doc, "\n"),+)), )* ];
    };
}

config! {
    /// Address the HTTP server (all doors) listens on.
    listen: String = "127.0.0.1:8080".into();
    /// Folder of the embedded database and files; created when missing.
    data_dir: PathBuf = PathBuf::from("./data");
    /// Password of the built-in `admin` user (also of the admin HTTP API that the `confer
    /// group`, `message` and `session` commands use). Unset: both are disabled.
    admin_password: Option<String> = None;
    /// GELF server for `session log`: `udp://host:port` or `tcp://host:port`. Unset: the
    /// command answers "not implemented".
    gelf: Option<String> = None;
    /// Largest GELF UDP datagram; bigger messages are chunked as GELF specifies.
    gelf_chunk_size: usize = 1420;
    /// How often the server pings each External API connection (milliseconds).
    ping_interval_ms: u64 = 30_000;
    /// How long a client may take to answer a server request (milliseconds).
    reply_timeout_ms: u64 = 5_000;
    /// How long, once the client acknowledged the request with `{ack: tid}` (milliseconds).
    acked_reply_timeout_ms: u64 = 180_000;
    /// The longest `session cmd` waits for the target session's answer (milliseconds).
    /// The target's own timeouts end the wait first (`reply_timeout_ms`, or
    /// `acked_reply_timeout_ms` once it acked; the caller gets 100005), so this is raised
    /// to their sum: it only bounds a target that neither answers nor times out.
    forward_timeout_ms: u64 = 30_000;
    /// The External API's service name: `event subscribe`/`send` may name it in
    /// `service`; any other service is error 100020 (this server is one service).
    extapi_service: String = "confer".into();
    /// How long a login token from `POST /api/v1/login` stays valid (seconds).
    token_lifetime_secs: u64 = 30 * 24 * 3600;
    /// Largest WebSocket frame accepted (bytes); larger closes the connection with 1009.
    max_frame_bytes: usize = 1 << 20;
    /// Deliveries queued for one connection; a client that lets it fill is disconnected.
    outbound_queue: usize = 1024;
    /// How long a small batch of storage writes waits for more before its commit
    /// (microseconds; 0: never). Fewer commits cost less CPU (each is an fsync); a lone
    /// write never waits, and nothing is acknowledged before its commit is durable.
    commit_linger_us: u64 = 1_000;
    /// How long a chat message's `nonce` is remembered: a retry (same group, sender and
    /// nonce) within it answers with the original instead of storing again (seconds).
    nonce_window_secs: u64 = 24 * 3600;
    /// The most nonces remembered (44-90 bytes each: 44-88 MB at most by default); past
    /// it the oldest go first, so under a heavy load the window is shorter than
    /// `nonce_window_secs`.
    nonce_window_max: usize = 1_000_000;
    /// Where the storage lives: unset, the embedded SQLite database in `data_dir`;
    /// `postgres://user:password@host:port/database`, PostgreSQL, which several confer
    /// nodes can share (see README "Running several nodes"). The schema is created or
    /// upgraded by whichever command opens it first. Attachments' files stay in
    /// `data_dir` either way.
    database_url: Option<String> = None;
    /// PostgreSQL connections this node holds at most (with `database_url`). Every node
    /// has its own pool, and PostgreSQL accepts 100 connections unless configured
    /// (`max_connections`, a few of them reserved): keep nodes × this under it.
    database_pool_size: usize = 16;
    /// Redis (or Valkey) that joins this node to the others of a cluster:
    /// `redis://host:port/`. Unset: this node is alone. With it, events (External API
    /// subscriptions), Chat API pushes, presence and the session directory (`user list`,
    /// `session stop`/`cmd`) span every node (see README "Running several nodes" for
    /// what is not shared yet).
    redis_url: Option<String> = None;
    /// This node's name in the cluster, unique among the nodes. Unset: the host name and
    /// the `listen` port (and a random suffix when the port is 0).
    node_id: Option<String> = None;
    /// The prefix of every Redis key and channel of this cluster: all its nodes share it,
    /// and clusters sharing one Redis each need their own.
    redis_prefix: String = "confer".into();
    /// With `redis_url`: a node whose heartbeat (renewed every third of this) stops for
    /// this long is dead; its sessions leave the directory and its users' presence goes
    /// offline (seconds).
    node_timeout_secs: u64 = 10;
    /// Frames waiting to be published to Redis, at most; more are dropped and counted.
    redis_queue: usize = 65_536;
    /// Bytes of frames waiting to be published to Redis, at most.
    redis_queue_bytes: usize = 64 << 20;
    /// How long one write to a client may take before it is disconnected (milliseconds).
    write_timeout_ms: u64 = 10_000;
    /// The most messages one listing returns.
    max_list: usize = 1000;
    /// The most bytes of messages one listing returns (content plus ~128 bytes a
    /// message); a listing stops at this or `max_list`, whichever comes first, and says
    /// there is more. At least one message is always listed.
    max_list_bytes: usize = 4 << 20;
    /// How long a Chat API call rings before it times out (milliseconds).
    call_timeout_ms: u64 = 45_000;
    /// How long a Chat API typing indicator (`event` type 8) lasts without a renewal:
    /// then the server sends type 9 (stopped) itself, as it does at once when the typer's
    /// last socket goes (milliseconds).
    typing_timeout_ms: u64 = 6_000;
    /// Largest message through any door (text + attachments + display fields or msglog
    /// `msg` JSON, bytes).
    max_message_bytes: usize = 64 * 1024;
    /// Bytes of packets that may wait for a Chat API long-polling client's next GET
    /// (besides `outbound_queue` packets); past it the socket is cut. One answer larger
    /// than this still reaches a client that polls.
    poll_outbox_bytes: usize = 4 << 20;
    /// How often the Chat API pings each socket (Engine.IO `pingInterval`, milliseconds).
    chat_ping_interval_ms: u64 = 25_000;
    /// How long a Chat API socket may take to answer a ping (`pingTimeout`,
    /// milliseconds). A long-polling socket with no GET for both together is closed.
    chat_ping_timeout_ms: u64 = 20_000;
    /// Chat API requests each socket may make per second (sustained).
    chat_rate_per_sec: u32 = 50;
    /// Chat API requests a socket may make in one burst.
    chat_rate_burst: u32 = 200;
    /// External API commands each connection may make per second (sustained); beyond it
    /// a command is answered with error 100043 "rate limited" (answers to the server's
    /// own requests are never limited).
    extapi_rate_per_sec: u32 = 100;
    /// External API commands a connection may make in one burst.
    extapi_rate_burst: u32 = 400;
    /// The most subscriptions one session may add (External API `event subscribe`;
    /// its own two are not counted); beyond it: error 100040.
    max_subscriptions_per_session: usize = 1_000;
    /// How often each live session's login token is checked again (milliseconds): a
    /// token revoked (logout, `user passwd`, also by another process on the same
    /// database) or expired ends the sessions that used it. Each check is one read of
    /// the revocations since the last (a token itself is read once, when first seen);
    /// 0: never (revocations by this server still act at once).
    token_check_interval_ms: u64 = 1_000;
    /// Argon2 password hashes run at once, each in one reused ~19 MiB memory area, so
    /// hashing never holds more than this many areas (0: the number of CPU cores).
    password_hash_concurrency: usize = 0;
    /// Password checks that may wait for a free hasher; more are refused at once ("try
    /// later": HTTP 503, External API 100050).
    password_hash_queue: usize = 64;
    /// How long a password check waits for a free hasher before it is refused
    /// (milliseconds).
    password_hash_wait_ms: u64 = 2_000;
    /// Failed password logins one account may take in a burst, from anywhere; past it,
    /// logins to it are refused (HTTP 429 with Retry-After, External API 100050). 0: no
    /// per-account limit.
    login_account_burst: u32 = 10;
    /// Failed logins per minute an account gets back (at least 1).
    login_account_per_minute: u32 = 6;
    /// Failed password logins one client address (an IPv6 /64) may make in a burst,
    /// whatever the accounts. 0: no per-address limit.
    login_address_burst: u32 = 30;
    /// Failed logins per minute an address gets back (at least 1).
    login_address_per_minute: u32 = 30;
    /// Accounts, and separately addresses, whose login limits are tracked at once; when
    /// full, new ones are refused until some have refilled.
    login_limit_max_tracked: usize = 100_000;
    /// Whether anyone may create an account with `POST /api/v1/register` (the web
    /// client's "Sign up"). Off: accounts are made by `confer user add` (or the admin).
    /// Sign-ups follow the password rules of `user add` and the login limits above.
    open_registration: bool = false;
    /// Serve the hub role of the edge-to-hub sync: the chathost API under `/chathost`
    /// that edge boxes sync with, and its admin API (README "Edge and hub").
    hub_role: bool = false;
    /// As a hub, register an unknown box on its first call with the key it sends (as the
    /// original hub did). Off: boxes are registered by an administrator (`confer hub box
    /// add`, or the admin API).
    hub_trust_on_first_use: bool = false;
    /// As an edge: the hub `confer sync push` syncs with (`http://host:port`; `https://`
    /// too). Unset: give `--hub`.
    sync_hub_url: Option<String> = None;
    /// As an edge: this box's id (its MAC address with dashes). Unset: give `--box-id`.
    sync_box_id: Option<String> = None;
    /// As an edge: the key this box syncs with, until the hub sends it a new one (a
    /// setting `authorization` or `moodle-security-key`, kept in the data folder).
    sync_token: Option<String> = None;
    /// As an edge: how long one call to the hub may take (milliseconds).
    sync_timeout_ms: u64 = 30_000;
    /// As an edge: a PEM file of certificates an `https://` hub's certificate may be
    /// signed by, trusted besides the public roots (a hub with a self-signed certificate
    /// or a private CA). Unset: the public roots only.
    sync_ca_file: Option<PathBuf> = None;
    /// Largest attachment upload (bytes).
    max_upload_bytes: u64 = 100 * 1024 * 1024;
    /// Keep attachments' files in this bucket of an S3-compatible object store instead
    /// of `data_dir` alone (several nodes then serve the same files; each keeps the files
    /// it wrote or served under `data_dir/files` as a cache). Unset: the local folder.
    attachments_s3_bucket: Option<String> = None;
    /// A key prefix for the files in the bucket (e.g. "confer/").
    attachments_s3_prefix: Option<String> = None;
    /// The object store's endpoint when it is not AWS (e.g. "http://127.0.0.1:9000" for
    /// MinIO); plain http is allowed only when given here.
    attachments_s3_endpoint: Option<String> = None;
    /// The bucket's region ("us-east-1" when unset and not in AWS_REGION).
    attachments_s3_region: Option<String> = None;
    /// The access key; unset: AWS_ACCESS_KEY_ID and the other AWS_* variables.
    attachments_s3_access_key: Option<String> = None;
    /// The secret key, with `attachments_s3_access_key`.
    attachments_s3_secret_key: Option<String> = None;
    /// The most hyper's read buffer per HTTP connection may grow to (bytes, at least
    /// 8192; hyper's own default): the most an upload is read at once (BENCHMARKS.md:
    /// 8 KiB ~150 MB/s, this ~500 MB/s on loopback). Upgraded connections do not keep it.
    http_read_buffer_bytes: usize = 8192 + 4096 * 100;
    /// Largest HTTP request head, request line and headers (bytes; longer: 431). Also
    /// bounded by `http_read_buffer_bytes`.
    http_max_head_bytes: usize = 16 * 1024;
    /// How long a client may take to send a request head, counted from when the
    /// connection opened or its previous request ended, so also how long an idle
    /// keep-alive connection stays open (milliseconds). Then it is closed.
    http_header_timeout_ms: u64 = 10_000;
    /// A request body that brings fewer than `http_body_min_bytes` in this long while the
    /// server waits for it is aborted and its connection closed (milliseconds).
    http_body_timeout_ms: u64 = 10_000;
    /// See `http_body_timeout_ms` (bytes).
    http_body_min_bytes: u64 = 1024;
    /// Open connections (WebSockets included) per client address; past it a new
    /// connection is closed at accept, unanswered (0: no cap).
    max_connections_per_ip: usize = 256;
    /// `attachments compress`: video bitrate given to FFmpeg (e.g. "1M").
    compress_video_bitrate: String = "1M".into();
    /// `attachments compress`: the largest video height kept (pixels).
    compress_video_height: u32 = 720;
    /// `attachments compress`: audio codec, "opus" or "aac".
    compress_audio_codec: String = "opus".into();
    /// `attachments compress`: audio bitrate (e.g. "64k").
    compress_audio_bitrate: String = "64k".into();
    /// `attachments compress`: the largest image side kept (pixels).
    compress_image_max: u32 = 1280;
    /// `attachments compress`: image format, "webp" or "jpeg".
    compress_image_format: String = "webp".into();
    /// Push notifications (README "Push notifications"): whether a message's text goes in
    /// its push; off, only the title (group or sender name) leaves the server.
    push_preview: bool = true;
    /// A push not delivered within this long after its message or call is dropped
    /// (seconds).
    push_max_age_secs: u64 = 86_400;
    /// Push requests in flight at once, per provider.
    push_concurrency: usize = 16;
    /// Generic webhook: every push as a signed JSON POST here. With no other provider
    /// configured, every token type goes to it; otherwise the types no provider takes.
    push_webhook_url: Option<String> = None;
    /// Key of the webhook's `X-Confer-Signature` (HMAC-SHA256 of the body). Unset: no
    /// signature header.
    push_webhook_secret: Option<String> = None;
    /// FCM (token type 1): the Firebase service account's JSON key file. Unset: no FCM.
    push_fcm_service_account: Option<PathBuf> = None;
    /// FCM HTTP v1 API base URL.
    push_fcm_endpoint: String = "https://fcm.googleapis.com".into();
    /// OAuth2 token URL for FCM; unset: the service account's `token_uri`.
    push_fcm_token_url: Option<String> = None;
    /// APNs (token types 2 and 4, PushKit): the `.p8` signing key. Unset: no APNs.
    push_apns_key: Option<PathBuf> = None;
    /// APNs key id (the `.p8` key's 10-character id).
    push_apns_key_id: Option<String> = None;
    /// APNs team id.
    push_apns_team_id: Option<String> = None;
    /// The iOS app's bundle id: the alerts' topic; PushKit's is `<bundle>.voip`.
    push_apns_bundle_id: Option<String> = None;
    /// APNs base URL (`https://api.sandbox.push.apple.com` for development builds).
    push_apns_endpoint: String = "https://api.push.apple.com".into();
    /// A PEM CA certificate APNs connections trust besides the public roots (a test
    /// endpoint or a private gateway).
    push_apns_ca: Option<PathBuf> = None;
    /// Web Push (token type 3): the VAPID key, a P-256 private key in PKCS#8 PEM
    /// (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`). Unset: no Web
    /// Push.
    push_vapid_key: Option<PathBuf> = None;
    /// VAPID contact (`sub`), a `mailto:` or `https:` URL.
    push_vapid_subject: String = "mailto:admin@localhost".into();
    /// Whether Web Push subscriptions may name plain `http://` endpoints (tests only).
    push_webpush_allow_http: bool = false;
    /// How long shutdown waits for connections to close (milliseconds).
    shutdown_grace_ms: u64 = 5_000;
    /// Log format: "text" or "json".
    log_format: String = "text".into();
    /// Log filter, e.g. "info" or "confer=debug" (RUST_LOG overrides it).
    log_level: String = "info".into();
    /// How often every conference door (`/vsp/ws`) connection gets `timer.time`
    /// (milliseconds).
    vsp_timer_interval_ms: u64 = 1_000;
    /// Conference door commands each connection may make per second (sustained); beyond
    /// it a command is answered with code 8 "rate limited".
    vsp_rate_per_sec: u32 = 50;
    /// Conference door commands a connection may make in one burst.
    vsp_rate_burst: u32 = 200;
    /// This node's cluster id: `ClusterID` in every conference door event.
    cluster_id: u64 = 1;
    /// The secret shared with the TURN server (coturn's `static-auth-secret`, with
    /// `use-auth-secret`): TURN credentials are issued with it. Unset: clients get the
    /// STUN address (`stun_url`) only.
    turn_secret: Option<String> = None;
    /// How long issued TURN credentials stay valid (seconds).
    turn_ttl_secs: u64 = 86_400;
    /// The TURN server's URLs, comma-separated (`turn:turn.example.com:3478?transport=udp,
    /// turns:turn.example.com:5349`); the first is `servdesc`'s `serveraddr`.
    turn_urls: String = String::new();
    /// A STUN server's URL (`stun:stun.example.com:3478`), given to callers with or
    /// without TURN. Empty: none.
    stun_url: String = String::new();
    /// The UDP address of the built-in media endpoint (the SFU) that `CALLME_S2` opens
    /// media through, e.g. `0.0.0.0:3479`. Empty: no media endpoint (the conference door
    /// answers media commands with "media unavailable").
    media_udp_bind: String = String::new();
    /// The IP address announced to clients for media (`servufrag`, the answer's
    /// candidate) when it differs from the bound one; required when `media_udp_bind` is a
    /// wildcard address.
    media_public_ip: String = String::new();
    /// At most this many parties of one conference have media at once; the next
    /// `CALLME_S2` is refused as full.
    max_parties_per_conference: usize = 16;
    /// What one party may send through the media endpoint (audio and video together,
    /// kbit/s): announced in the answer (`b=AS`), and frames beyond it are not forwarded.
    media_party_max_kbps: u32 = 2_500;
    /// A party whose media (ICE + DTLS) has not connected this long after `CALLME_S2` is
    /// ended with `conf.webrtc.Disconnected` (milliseconds).
    media_connect_timeout_ms: u64 = 30_000;
    /// With `redis_url`: how long a `CALLME_S2` waits for the node hosting the
    /// conference's media (the first node that opened media for it) to answer
    /// (milliseconds); past it the caller is told media is unavailable.
    media_forward_timeout_ms: u64 = 5_000;
}

impl Config {
    /// The media endpoint's settings, or `None` when `media_udp_bind` is empty.
    pub fn media(&self) -> Result<Option<confer_media::SfuConfig>, String> {
        let bind = self.media_udp_bind.trim();
        if bind.is_empty() {
            return Ok(None);
        }
        let bind = bind
            .parse()
            .map_err(|e| format!("media_udp_bind {bind:?}: {e}"))?;
        let public_ip = match self.media_public_ip.trim() {
            "" => None,
            ip => Some(
                ip.parse()
                    .map_err(|e| format!("media_public_ip {ip:?}: {e}"))?,
            ),
        };
        Ok(Some(confer_media::SfuConfig {
            bind,
            public_ip,
            max_parties_per_conference: self.max_parties_per_conference,
            party_max_kbps: self.media_party_max_kbps.max(1),
            connect_timeout: std::time::Duration::from_millis(self.media_connect_timeout_ms),
        }))
    }

    /// The TURN and STUN servers every door hands its callers.
    pub fn turn(&self) -> confer_core::turn::TurnSettings {
        confer_core::turn::TurnSettings {
            secret: self.turn_secret.clone().filter(|s| !s.is_empty()),
            ttl: std::time::Duration::from_secs(self.turn_ttl_secs),
            urls: self
                .turn_urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_string)
                .collect(),
            stun_url: Some(self.stun_url.trim().to_string()).filter(|s| !s.is_empty()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{name}: {message}")]
    Value { name: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(Box<toml::de::Error>),
}

impl Config {
    /// Load from an optional file, the environment and flag overrides, in that order.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(&str, String)],
    ) -> Result<Config, ConfigError> {
        let mut table =
            toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Value {
                name: "defaults".into(),
                message: e.to_string(),
            })?;
        let defaults = table.clone();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let from_file: toml::Table = text.parse().map_err(|source| ConfigError::Parse {
                path: path.to_path_buf(),
                source: Box::new(source),
            })?;
            table.extend(from_file);
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        for (field, _) in FIELDS {
            let var = format!("CONFER_{}", field.to_uppercase());
            if let Some((_, value)) = env.iter().find(|(k, _)| *k == var) {
                table.insert(field.to_string(), typed(&var, defaults.get(*field), value)?);
            }
        }
        for (field, value) in flags {
            table.insert(
                field.to_string(),
                typed(field, defaults.get(*field), value)?,
            );
        }
        Config::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Invalid(Box::new(e)))
    }

    /// A commented TOML file with every field at its default.
    pub fn example() -> String {
        let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
        let mut out = String::from(
            "# confer configuration. Every field may also be set as CONFER_<FIELD> in the\n\
             # environment; flags (--listen, --data-dir) win over both.\n",
        );
        for (field, doc) in FIELDS {
            out.push('\n');
            for line in doc.lines() {
                out.push_str(&format!("#{line}\n"));
            }
            match defaults.get(*field) {
                Some(value) => out.push_str(&format!("{field} = {value}\n")),
                None => out.push_str(&format!("# {field} = \"\"\n")),
            }
        }
        out
    }
}

/// An environment or flag string as the TOML type of the field's default (strings when
/// the default is a string or unset).
fn typed(name: &str, default: Option<&toml::Value>, raw: &str) -> Result<toml::Value, ConfigError> {
    let bad = |what: &str| ConfigError::Value {
        name: name.to_string(),
        message: format!("expected {what}, got {raw:?}"),
    };
    Ok(match default {
        Some(toml::Value::Integer(_)) => {
            toml::Value::Integer(raw.trim().parse().map_err(|_| bad("an integer"))?)
        }
        Some(toml::Value::Boolean(_)) => {
            toml::Value::Boolean(raw.trim().parse().map_err(|_| bad("true or false"))?)
        }
        Some(toml::Value::Float(_)) => {
            toml::Value::Float(raw.trim().parse().map_err(|_| bad("a number"))?)
        }
        _ => toml::Value::String(raw.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_sources_win_and_types_follow_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:1\"\nmax_list = 5\nadmin_password = \"f\"\n",
        )
        .unwrap();
        let env = vec![
            ("CONFER_LISTEN".to_string(), "0.0.0.0:2".to_string()),
            ("CONFER_PING_INTERVAL_MS".to_string(), "250".to_string()),
            (
                "CONFER_GELF".to_string(),
                "udp://127.0.0.1:12201".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let c = Config::load(Some(&file), env, &[("data_dir", "/tmp/d".into())]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:2");
        assert_eq!(c.max_list, 5);
        assert_eq!(c.ping_interval_ms, 250);
        assert_eq!(c.admin_password.as_deref(), Some("f"));
        assert_eq!(c.gelf.as_deref(), Some("udp://127.0.0.1:12201"));
        assert_eq!(c.data_dir, PathBuf::from("/tmp/d"));
    }

    #[test]
    fn bad_values_and_unknown_keys_are_refused() {
        let env = vec![("CONFER_MAX_LIST".to_string(), "many".to_string())];
        assert!(matches!(
            Config::load(None, env, &[]),
            Err(ConfigError::Value { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "listn = \"x\"\n").unwrap();
        assert!(matches!(
            Config::load(Some(&file), vec![], &[]),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn the_example_parses_back_to_the_defaults() {
        let example = Config::example();
        assert!(example.contains("# Address the HTTP server"));
        assert!(example.contains("# admin_password = \"\""));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("example.toml");
        std::fs::write(&file, &example).unwrap();
        let c = Config::load(Some(&file), vec![], &[]).unwrap();
        assert_eq!(c.listen, Config::default().listen);
        assert_eq!(c.max_frame_bytes, Config::default().max_frame_bytes);
    }
}
