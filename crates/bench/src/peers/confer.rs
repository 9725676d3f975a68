//! confer as a target: a fresh data folder prepared directly through the store (accounts,
//! tokens, groups), and the server process started on it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use confer_core::{ConversationKind, Principal};

use crate::server::{free_port, wait_healthy, Server};
use crate::Cli;
pub(crate) fn confer_bin(cli: &Cli) -> PathBuf {
    cli.confer.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("confer")))
            .unwrap_or_else(|| PathBuf::from("confer"))
    })
}

/// Accounts, tokens and chat groups prepared directly in a fresh data folder.
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) users: Vec<(Principal, String)>,
    pub(crate) groups: Vec<u64>,
}

/// `users` accounts (one password hash shared, so preparing is fast), a token each, and
/// groups of consecutive users of `group_size`.
pub(crate) async fn prepare(users: usize, group_size: usize) -> anyhow::Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let config = confer_server::Config {
        data_dir: dir.path().join("data"),
        ..confer_server::Config::default()
    };
    let core = confer_server::build_core(&config)?;
    let hash = confer_core::auth::hash_password("bench")?;
    let mut made = Vec::with_capacity(users);
    let chunks: Vec<usize> = (0..users).collect();
    for chunk in chunks.chunks(256) {
        let tasks = chunk.iter().map(|i| {
            let (core, hash) = (core.clone(), hash.clone());
            async move {
                let a = core
                    .import_account(&format!("u{i}"), &hash, None, None)
                    .await?;
                let who = Principal {
                    uin: a.uin,
                    login: a.login,
                    admin: false,
                };
                let (token, _) = core.issue_token(&who).await?;
                anyhow::Ok((who, token))
            }
        });
        for r in futures_util::future::join_all(tasks).await {
            made.push(r?);
        }
    }
    let mut groups = Vec::new();
    if group_size > 1 {
        for members in made.chunks(group_size) {
            let occupants = members.iter().map(|(p, _)| p.uin).collect();
            let (g, _) = core
                .create_group(
                    &members[0].0,
                    ConversationKind::Group,
                    Some("bench".into()),
                    None,
                    None,
                    occupants,
                )
                .await?;
            groups.push(g.group_id.0);
        }
    }
    core.flush().await?;
    Ok(Fixture {
        dir,
        users: made,
        groups,
    })
}

pub(crate) fn spawn_confer(
    bin: &Path,
    data: &Path,
    port: u16,
) -> anyhow::Result<tokio::process::Child> {
    tokio::process::Command::new(bin)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .env("CONFER_LOG_LEVEL", "warn")
        .env("CONFER_CHAT_RATE_PER_SEC", "1000000")
        .env("CONFER_CHAT_RATE_BURST", "1000000")
        .env("CONFER_OUTBOUND_QUEUE", "8192")
        // Every simulated client comes from 127.0.0.1.
        .env("CONFER_MAX_CONNECTIONS_PER_IP", "0")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

pub(crate) async fn start_confer(bin: &Path, fixture: Fixture) -> anyhow::Result<Server> {
    let port = free_port()?;
    let data = fixture.dir.path().join("data");
    let child = spawn_confer(bin, &data, port)?;
    wait_healthy(port).await?;
    Ok(Server {
        child,
        port,
        _dir: Some(fixture.dir),
        respawn: Some((bin.to_path_buf(), data)),
        accounts: None,
    })
}
