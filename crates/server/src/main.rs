//! The `confer` command: `serve`, `user add|list|passwd`, `config example`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
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
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        action: ConfigCmd,
    },
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Config {
            action: ConfigCmd::Example,
        } => {
            print!("{}", Config::example());
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
        Cmd::Attachments { common, action } => {
            let config = load(&common, None)?;
            init_logging(&config);
            let core = confer_server::build_core(&config)?;
            let blobs = confer_server::open_blobs(&config)?;
            match action {
                AttachmentsCmd::CleanUp {
                    older_than_days,
                    dry_run,
                } => {
                    let summary = confer_server::attachments::clean_up(
                        &core,
                        &blobs,
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
                            &core, &blobs, id, &settings, false,
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
                } => {
                    let account = core
                        .add_account(&login, &password, uin, name)
                        .await
                        .with_context(|| format!("adding {login}"))?;
                    println!("added {} (uin {})", account.login, account.uin);
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
