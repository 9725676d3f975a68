//! confer as a target: a fresh data folder (or, with `--database-url`, a fresh PostgreSQL
//! database) prepared directly through the store (accounts, tokens, groups), and the
//! server process started on it, or `--nodes` of them over one PostgreSQL and one Redis.

use std::path::{Path, PathBuf};

use anyhow::Context;
use confer_core::{ConversationKind, Principal};

use crate::cluster::{run_id, Deployment, FreshDatabase, Layout, Services};
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
    /// The run's PostgreSQL database, when confer stores there (`--database-url`).
    pub(crate) database: Option<FreshDatabase>,
}

/// [`prepare`] where this run's confer stores: the SQLite folder, or a fresh database on
/// `--database-url`, filled by preparing the folder and copying it with `confer migrate`
/// (measured: filling PostgreSQL through the store, one transaction per account and
/// token, was far slower; `--fill-directly` does that instead).
pub(crate) async fn prepare_for(
    cli: &Cli,
    users: usize,
    group_size: usize,
) -> anyhow::Result<Fixture> {
    let Some(url) = Layout::of(cli)?.database_url else {
        return prepare_in(None, users, group_size).await;
    };
    let database = FreshDatabase::create(&url).await?;
    if cli.fill_directly {
        return prepare_in(Some(database), users, group_size).await;
    }
    let started = std::time::Instant::now();
    let mut fixture = prepare_in(None, users, group_size).await?;
    let prepared = started.elapsed().as_secs_f64();
    let out = tokio::process::Command::new(confer_bin(cli))
        .arg("migrate")
        .arg("--data-dir")
        .arg(fixture.dir.path().join("data"))
        .args(["--to", &database.url])
        .env("CONFER_LOG_LEVEL", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("running confer migrate")?;
    if !out.status.success() {
        anyhow::bail!(
            "confer migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if users >= 10_000 {
        eprintln!(
            "{users} users prepared in SQLite in {prepared:.0} s, copied by confer migrate in {:.0} s",
            started.elapsed().as_secs_f64() - prepared
        );
    }
    fixture.database = Some(database);
    Ok(fixture)
}

/// `users` accounts (one password hash shared, so preparing is fast), a token each, and
/// groups of consecutive users of `group_size`.
pub(crate) async fn prepare(users: usize, group_size: usize) -> anyhow::Result<Fixture> {
    prepare_in(None, users, group_size).await
}

async fn prepare_in(
    database: Option<FreshDatabase>,
    users: usize,
    group_size: usize,
) -> anyhow::Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let config = confer_server::Config {
        data_dir: dir.path().join("data"),
        database_url: database.as_ref().map(|d| d.url.clone()),
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
        // 64 at once: one by one, PostgreSQL's round trips made 20,000 groups take minutes.
        let all: Vec<&[(Principal, String)]> = made.chunks(group_size).collect();
        for chunk in all.chunks(64) {
            let tasks = chunk.iter().map(|members| {
                let core = core.clone();
                let occupants = members.iter().map(|(p, _)| p.uin).collect();
                async move {
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
                    anyhow::Ok(g.group_id.0)
                }
            });
            for g in futures_util::future::join_all(tasks).await {
                groups.push(g?);
            }
        }
    }
    core.flush().await?;
    drop(core);
    Ok(Fixture {
        dir,
        users: made,
        groups,
        database,
    })
}

pub(crate) fn spawn_confer(
    bin: &Path,
    data: &Path,
    port: u16,
) -> anyhow::Result<tokio::process::Child> {
    spawn_node(bin, data, port, &[])
}

/// [`spawn_confer`] with more settings (`CONFER_<FIELD>`, value).
fn spawn_node(
    bin: &Path,
    data: &Path,
    port: u16,
    settings: &[(String, String)],
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
        .envs(settings.iter().map(|(k, v)| (k, v)))
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

/// confer as `--nodes` nodes (each its own port, data folder and `node_id`, all one
/// `redis_prefix` of this run) over the fixture's database and `--redis-url`; or, without
/// `--database-url`, one node on the fixture's SQLite folder as [`start_confer`].
pub(crate) async fn start_nodes(cli: &Cli, mut fixture: Fixture) -> anyhow::Result<Deployment> {
    let layout = Layout::of(cli)?;
    let bin = confer_bin(cli);
    let Some(database) = fixture.database.take() else {
        return Ok(start_confer(&bin, fixture).await?.into());
    };
    let mut common = vec![
        ("CONFER_DATABASE_URL".to_string(), database.url.clone()),
        (
            "CONFER_DATABASE_POOL_SIZE".to_string(),
            layout.pool.to_string(),
        ),
    ];
    if let Some(redis) = &layout.redis_url {
        common.push(("CONFER_REDIS_URL".into(), redis.clone()));
        common.push(("CONFER_REDIS_PREFIX".into(), run_id()));
    }
    let mut nodes = Vec::new();
    let mut dirs = vec![fixture.dir];
    for _ in 1..layout.nodes {
        dirs.push(tempfile::tempdir()?);
    }
    for (i, dir) in dirs.into_iter().enumerate() {
        let port = free_port()?;
        let mut settings = common.clone();
        settings.push(("CONFER_NODE_ID".into(), format!("bench-node-{i}")));
        let child = spawn_node(&bin, &dir.path().join("data"), port, &settings)?;
        nodes.push(Server {
            child,
            port,
            _dir: Some(dir),
            // A restart would have to start it with the same settings: not needed yet.
            respawn: None,
            accounts: None,
        });
    }
    for n in &nodes {
        wait_healthy(n.port).await?;
    }
    Ok(Deployment {
        nodes,
        services: Services::find(&layout).await,
        _database: Some(database),
    })
}
