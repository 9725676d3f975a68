//! The `confer` command: `serve`, `user add|list|passwd`, `attachments`, `migrate`, `config example`,
//! and `group`, `message`, `session`, which act on the running server through its admin
//! HTTP API (`confer_server::admin_client`).
//!
//! Errors are printed as one line, `error: …`, and exit non-zero (2 for bad usage).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use confer_server::admin_client::{segment, AdminClient};
use confer_server::Config;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "confer",
    version,
    about = "Real-time messaging and conferencing server"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// Flags every command that touches data takes.
#[derive(Args, Clone)]
struct Common {
    /// TOML configuration file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data folder (overrides the file and CONFER_DATA_DIR).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

/// Flags of the commands that act on the running server through its admin API.
#[derive(Args, Clone)]
struct Remote {
    /// TOML configuration file; its `listen` and `admin_password` (or CONFER_LISTEN,
    /// CONFER_ADMIN_PASSWORD) say where the server is and how to log in.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The server's address, e.g. http://127.0.0.1:8080 (default: from `listen`).
    #[arg(long, global = true)]
    server: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Address to listen on (overrides the file and CONFER_LISTEN).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Manage accounts.
    User {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: UserCmd,
    },
    /// Attachment maintenance.
    Attachments {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: AttachmentsCmd,
    },
    /// Chat groups of the running server.
    /// Copy this data folder's SQLite database into PostgreSQL (stop the server first):
    /// with progress, resumable (run it again after an interruption), and verified by
    /// row counts and checksums of every table. Then set `database_url` to the same URL.
    Migrate {
        #[command(flatten)]
        common: Common,
        /// The target, `postgres://user:password@host:port/database`.
        #[arg(long)]
        to: String,
    },
    Group {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        action: GroupCmd,
    },
    /// Send a message through the running server, as a group member.
    Message {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        action: MessageCmd,
    },
    /// Live sessions of the running server.
    Session {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        action: SessionCmd,
    },
    /// The hub role of the edge-to-hub sync: the boxes that may sync with this server.
    Hub {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: HubCmd,
    },
    /// The edge role of the edge-to-hub sync: sync this server's data with a hub.
    Sync {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: SyncCmd,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        action: ConfigCmd,
    },
    /// What the doors implement, for checking docs/ (tests/docs/check.sh).
    #[command(hide = true)]
    Doc {
        #[command(subcommand)]
        action: DocCmd,
    },
}

#[derive(Subcommand)]
enum DocCmd {
    /// Print the doors' dispatch tables as JSON: External API commands, Chat API client
    /// events and server pushes.
    Commands,
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create an account.
    Add {
        login: String,
        #[arg(long)]
        password: String,
        /// The user number; assigned when left out.
        #[arg(long)]
        uin: Option<u64>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// A hub administrator (may use the chathost admin API).
        #[arg(long)]
        admin: bool,
    },
    /// List accounts.
    List,
    /// Set an account's password.
    Passwd {
        login: String,
        #[arg(long)]
        password: String,
    },
}

#[derive(Subcommand)]
enum HubCmd {
    /// Edge boxes.
    Box {
        #[command(subcommand)]
        action: HubBoxCmd,
    },
}

#[derive(Subcommand)]
enum HubBoxCmd {
    /// Register a box (or give it another key); prints its credential.
    Add {
        boxid: String,
        /// The key (a new UUID when left out).
        #[arg(long)]
        token: Option<String>,
    },
    /// List boxes: id, keys, last sync (Unix seconds), site name.
    List,
    /// Forget a box: its roster, keys and settings (its conversations stay).
    Remove { boxid: String },
}

#[derive(Subcommand)]
enum SyncCmd {
    /// Run one sync with the hub (the nine steps) and write its report.
    Push(SyncArgs),
    /// List the settings the hub sent.
    Settings,
    /// Sync periodically; while the hub is unreachable, wait longer each time (doubling,
    /// up to an hour).
    Schedule {
        #[command(flatten)]
        args: SyncArgs,
        /// How often: 30s, 5m, 1h.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        every: std::time::Duration,
    },
}

#[derive(Args, Clone)]
struct SyncArgs {
    /// The hub's address (overrides `sync_hub_url`).
    #[arg(long)]
    hub: Option<String>,
    /// This box's id (overrides `sync_box_id`).
    #[arg(long)]
    box_id: Option<String>,
    /// Write the report to report.json in the data folder instead of printing it.
    #[arg(long)]
    log_to_file: bool,
}

/// "90", "30s", "5m", "1h".
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("not a duration: {text}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("unknown unit in {text} (s, m or h)")),
    };
    if secs == 0 {
        return Err("the period must be at least 1s".into());
    }
    Ok(std::time::Duration::from_secs(secs))
}

#[derive(Subcommand)]
enum GroupCmd {
    /// List every chat group: id, type, name, owner's uin, members' uins.
    List,
    /// Create a chat group (users by login or uin).
    Create {
        name: String,
        /// Its owner, a member.
        #[arg(long)]
        owner: String,
        /// Another member (repeat for more).
        #[arg(long = "member")]
        members: Vec<String>,
        /// 1 private (two members), 2 group, 3 public.
        #[arg(long = "type", default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=3))]
        kind: u8,
    },
    /// Add a member to a group.
    #[command(name = "add-member")]
    AddMember { group: String, user: String },
    /// Remove a member (not the owner) from a group.
    #[command(name = "remove-member")]
    RemoveMember { group: String, user: String },
}

#[derive(Subcommand)]
enum MessageCmd {
    /// Post a text message in a group; its members see it like any other.
    Send {
        group: String,
        text: String,
        /// The member it is sent as (login or uin); the group's owner when left out.
        #[arg(long = "as")]
        sender: Option<String>,
    },
}

#[derive(Subcommand)]
enum SessionCmd {
    /// List live sessions: id, user, door, remote address, start (Unix seconds).
    List,
    /// Disconnect a live session.
    Stop { session_id: String },
}

#[derive(Subcommand)]
enum AttachmentsCmd {
    /// Remove the files of attachments whose messages are all older than N days; the
    /// messages stay and the file URL answers 410 with a placeholder.
    #[command(name = "clean-up")]
    CleanUp {
        #[arg(long, default_value_t = 90)]
        older_than_days: u64,
        /// Report what would be removed, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-encode attachments with FFmpeg, keeping a result only when it is smaller.
    Compress {
        /// The attachment to compress.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        item_id: Option<u64>,
        /// Every attachment of at least --min-size bytes.
        #[arg(long)]
        all: bool,
        /// With --all: the smallest file considered, in bytes (k, M and G suffixes work).
        #[arg(long, default_value = "1M", value_parser = parse_size)]
        min_size: u64,
    },
}

/// "1500", "10k", "5M", "1G" (powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits.parse().map_err(|_| format!("not a size: {text}"))?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return Err(format!("unknown unit in {text}")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("too large: {text}"))
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print a commented example configuration with every default.
    Example,
}

fn load(common: &Common, listen: Option<String>) -> anyhow::Result<Config> {
    let mut flags = Vec::new();
    if let Some(dir) = &common.data_dir {
        flags.push(("data_dir", dir.display().to_string()));
    }
    if let Some(listen) = listen {
        flags.push(("listen", listen));
    }
    Ok(Config::load(
        common.config.as_deref(),
        std::env::vars(),
        &flags,
    )?)
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal: a file or a pipe gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A user error is one line, `error: …` with its causes, whatever `RUST_BACKTRACE` says
/// (returning the error from `main` would print its `Debug` form, backtrace included).
fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version: their text, exit 0.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // `confer` or `confer group` alone: the help, as a hint, and bad usage.
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("{}", one_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// clap's multi-line message (the error, its details, a usage hint) as one line: the
/// lines before the usage, joined.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A JSON string field, or "".
fn text<'a>(v: &'a serde_json::Value, field: &str) -> &'a str {
    v.get(field)
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
}

/// A group's members, comma-separated.
fn members(group: &serde_json::Value) -> String {
    group["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(serde_json::Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn admin_client(remote: &Remote) -> anyhow::Result<AdminClient> {
    let config = Config::load(remote.config.as_deref(), std::env::vars(), &[])?;
    AdminClient::new(&config, remote.server.as_deref())
}

async fn group_command(remote: Remote, action: GroupCmd) -> anyhow::Result<()> {
    let client = admin_client(&remote)?;
    match action {
        GroupCmd::List => {
            let groups = client.call("GET", "/api/v1/admin/groups", None).await?;
            for g in groups.as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    text(g, "group_id"),
                    g["type"],
                    text(g, "name"),
                    text(g, "owner_uin"),
                    members(g)
                );
            }
        }
        GroupCmd::Create {
            name,
            owner,
            members: others,
            kind,
        } => {
            let body =
                serde_json::json!({"name": name, "owner": owner, "members": others, "type": kind});
            let g = client
                .call("POST", "/api/v1/admin/groups", Some(&body))
                .await?;
            println!(
                "created group {} ({}): owner {}, members {}",
                text(&g, "group_id"),
                text(&g, "name"),
                text(&g, "owner_uin"),
                members(&g)
            );
        }
        GroupCmd::AddMember { group, user } => {
            let path = format!("/api/v1/admin/groups/{}/members", segment(&group));
            let body = serde_json::json!({ "user": user });
            let g = client.call("POST", &path, Some(&body)).await?;
            println!("group {}: members {}", text(&g, "group_id"), members(&g));
        }
        GroupCmd::RemoveMember { group, user } => {
            let path = format!(
                "/api/v1/admin/groups/{}/members/{}",
                segment(&group),
                segment(&user)
            );
            let g = client.call("DELETE", &path, None).await?;
            println!("group {}: members {}", text(&g, "group_id"), members(&g));
        }
    }
    Ok(())
}

async fn message_command(remote: Remote, action: MessageCmd) -> anyhow::Result<()> {
    let client = admin_client(&remote)?;
    let MessageCmd::Send {
        group,
        text: message,
        sender,
    } = action;
    let path = format!("/api/v1/admin/groups/{}/messages", segment(&group));
    let mut body = serde_json::json!({ "text": message });
    if let Some(sender) = sender {
        body["as"] = sender.into();
    }
    let m = client.call("POST", &path, Some(&body)).await?;
    println!(
        "sent message {} (seq {}) to group {} as {}",
        text(&m, "message_id"),
        m["seq"],
        text(&m, "group_id"),
        text(&m, "sender_uin")
    );
    Ok(())
}

async fn session_command(remote: Remote, action: SessionCmd) -> anyhow::Result<()> {
    let client = admin_client(&remote)?;
    match action {
        SessionCmd::List => {
            let sessions = client.call("GET", "/api/v1/admin/sessions", None).await?;
            for s in sessions.as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    text(s, "session_id"),
                    text(s, "user"),
                    text(s, "door"),
                    text(s, "remote"),
                    s["started_at"]
                );
            }
        }
        SessionCmd::Stop { session_id } => {
            let path = format!("/api/v1/admin/sessions/{}", segment(&session_id));
            client.call("DELETE", &path, None).await?;
            println!("stopped {session_id}");
        }
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Group { remote, action } => group_command(remote, action).await,
        Cmd::Message { remote, action } => message_command(remote, action).await,
        Cmd::Session { remote, action } => session_command(remote, action).await,
        Cmd::Config {
            action: ConfigCmd::Example,
        } => {
            print!("{}", Config::example());
            Ok(())
        }
        Cmd::Doc {
            action: DocCmd::Commands,
        } => {
            let extapi: Vec<_> = confer_door_extapi::cmd::command_names()
                .map(|(class, subclass, cmd)| {
                    serde_json::json!({"class": class, "subclass": subclass, "cmd": cmd})
                })
                .collect();
            let mut pushes = vec![confer_door_chat::session::LOGIN];
            pushes.extend(confer_door_chat::render::PUSHES);
            let tables = serde_json::json!({
                "extapi_commands": extapi,
                "chat_events": confer_door_chat::cmd::event_names().collect::<Vec<_>>(),
                "chat_pushes": pushes,
                "chathost_endpoints": confer_door_chathost::ENDPOINTS
                    .iter()
                    .map(|(m, p)| serde_json::json!({"method": m, "path": p}))
                    .collect::<Vec<_>>(),
            });
            println!("{tables}");
            Ok(())
        }
        Cmd::Serve { common, listen } => {
            let config = load(&common, listen)?;
            init_logging(&config);
            let running = confer_server::start(config).await?;
            let token = running.shutdown_token();
            tokio::spawn(async move {
                shutdown_signal().await;
                tracing::info!("shutdown requested");
                token.cancel();
            });
            running.wait().await
        }
        Cmd::Migrate { common, to } => {
            let config = load(&common, None)?;
            init_logging(&config);
            let quiet = !std::io::stderr().is_terminal();
            let done = confer_server::migrate::migrate(&config.data_dir, &to, quiet).await?;
            for r in &done.tables {
                println!(
                    "{}: {} rows ({} copied by this run), SHA-256 {}",
                    r.table, r.rows, r.copied, r.checksum
                );
            }
            println!("verified: every table holds the same rows in PostgreSQL");
            for l in &done.left_behind {
                println!("{}: {} rows not copied ({})", l.table, l.rows, l.why);
            }
            Ok(())
        }
        Cmd::Attachments { common, action } => {
            let config = load(&common, None)?;
            init_logging(&config);
            let core = confer_server::build_core(&config)?;
            let blobs = confer_server::open_blob_store(&config)?;
            let blobs = &*blobs;
            match action {
                AttachmentsCmd::CleanUp {
                    older_than_days,
                    dry_run,
                } => {
                    let summary = confer_server::attachments::clean_up(
                        &core,
                        blobs,
                        older_than_days,
                        dry_run,
                        false,
                    )
                    .await?;
                    let verb = if dry_run { "would free" } else { "freed" };
                    println!(
                        "{} file(s) older than {older_than_days} day(s); {verb} {} bytes",
                        summary.files, summary.bytes_freed
                    );
                }
                AttachmentsCmd::Compress {
                    item_id,
                    all,
                    min_size,
                } => {
                    let settings =
                        confer_server::attachments::CompressSettings::from_config(&config);
                    let ids: Vec<u64> = if all {
                        core.attachments_at_least(min_size)
                            .await?
                            .into_iter()
                            .map(|a| a.item_id)
                            .collect()
                    } else {
                        item_id.into_iter().collect()
                    };
                    let (mut before, mut after) = (0u64, 0u64);
                    for id in ids {
                        use confer_server::attachments::Compressed;
                        match confer_server::attachments::compress(
                            &core, blobs, id, &settings, false,
                        )
                        .await
                        {
                            Ok(Compressed::Smaller {
                                before: b,
                                after: a,
                                filename,
                            }) => {
                                println!("{id}: {b} -> {a} bytes, now {filename}");
                                before += b;
                                after += a;
                            }
                            Ok(Compressed::NotSmaller {
                                before: b,
                                after: a,
                            }) => {
                                println!("{id}: kept the original ({b} bytes; re-encoded {a})");
                            }
                            Ok(Compressed::Skipped) => {
                                println!("{id}: not audio, video or an image; skipped")
                            }
                            Err(e) => {
                                core.flush().await?;
                                return Err(anyhow::anyhow!("attachment {id}: {e}"));
                            }
                        }
                    }
                    println!("saved {} bytes", before.saturating_sub(after));
                }
            }
            core.flush().await?;
            Ok(())
        }
        Cmd::Hub {
            common,
            action: HubCmd::Box { action },
        } => {
            let config = load(&common, None)?;
            init_logging(&config);
            let core = confer_server::build_core(&config)?;
            let result = hub_box_command(&core, action).await;
            core.flush().await?;
            result
        }
        Cmd::Sync { common, action } => {
            let config = load(&common, None)?;
            init_logging(&config);
            sync_command(config, action).await
        }
        Cmd::User { common, action } => {
            let config = load(&common, None)?;
            init_logging(&config);
            let core = confer_server::build_core(&config)?;
            let result = match action {
                UserCmd::Add {
                    login,
                    password,
                    uin,
                    name,
                    admin,
                } => {
                    let account = core
                        .add_account(&login, &password, uin, name)
                        .await
                        .with_context(|| format!("adding {login}"))?;
                    if admin {
                        core.set_account_admin(&login, true).await?;
                    }
                    let role = if admin { ", hub administrator" } else { "" };
                    println!("added {} (uin {}{role})", account.login, account.uin);
                    Ok(())
                }
                UserCmd::List => {
                    for a in core.list_accounts().await? {
                        println!("{}\t{}\t{}", a.uin, a.login, a.name.unwrap_or_default());
                    }
                    Ok(())
                }
                UserCmd::Passwd { login, password } => {
                    core.set_password(&login, &password)
                        .await
                        .with_context(|| format!("setting the password of {login}"))?;
                    println!("password of {login} changed");
                    Ok(())
                }
            };
            core.flush().await?;
            result
        }
    }
}

async fn hub_box_command(core: &confer_core::Core, action: HubBoxCmd) -> anyhow::Result<()> {
    match action {
        HubBoxCmd::Add { boxid, token } => {
            let token = token.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            core.hub_add_key(&boxid, &token, false, "")
                .await
                .with_context(|| format!("adding box {boxid}"))?;
            println!("{boxid}|{token}");
        }
        HubBoxCmd::List => {
            for b in core.hub_boxes().await? {
                let site = b
                    .roster
                    .as_ref()
                    .and_then(|r| serde_json::from_str::<serde_json::Value>(r.as_str()).ok())
                    .and_then(|r| r[0]["sitename"].as_str().map(str::to_string))
                    .unwrap_or_default();
                println!("{}\t{}\t{}\t{site}", b.boxid, b.keys, b.last_sync);
            }
        }
        HubBoxCmd::Remove { boxid } => {
            if !core.hub_remove_box(&boxid).await? {
                anyhow::bail!("no box {boxid}");
            }
            println!("removed {boxid}");
        }
    }
    Ok(())
}

async fn sync_command(config: Config, action: SyncCmd) -> anyhow::Result<()> {
    use confer_server::sync;
    let options = |args: &SyncArgs| sync::Options {
        hub: args.hub.clone().or_else(|| config.sync_hub_url.clone()),
        box_id: args.box_id.clone().or_else(|| config.sync_box_id.clone()),
        log_to_file: args.log_to_file,
    };
    match action {
        SyncCmd::Push(args) => {
            let report = sync::run_once(&config, &options(&args)).await?;
            if report.failed.is_some() {
                anyhow::bail!("sync failed: {}", report.summary());
            }
            Ok(())
        }
        SyncCmd::Settings => {
            let core = confer_server::build_core(&config)?;
            for s in core.hub_settings("").await? {
                println!("{}\t{}\t{}", s.key, s.value, s.timestamp);
            }
            core.flush().await?;
            Ok(())
        }
        SyncCmd::Schedule { args, every } => sync::schedule(&config, &options(&args), every).await,
    }
}
