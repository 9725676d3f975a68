//! # confer-bench: the load generator
//!
//! Starts a fresh confer (or a peer server), prepares accounts, tokens and groups, drives
//! real connections through the Chat API (Socket.IO) or the External API (WebSocket), and
//! reports JSON lines plus a Markdown table. Scenarios:
//!
//! - `idle`: hold N authenticated connections; server RSS per connection. With
//!   `--workers`, more than one process may hold, over worker processes and `--nodes`,
//!   then a fan-out across them (`scenarios/crowd.rs`).
//! - `fanout`: G groups × M members, one sender per group at a total target rate; delivered
//!   messages/s and send→deliver latency; `--peak` searches each target's highest rate.
//!   Targets: `confer` and the peers of `bench/peers` (Node and socketioxide relays, a
//!   tokio WebSocket broadcast).
//! - `ingest`: S senders each waiting for the ack; durable acknowledged messages/s, the
//!   two Socket.IO relays acking without storage (the ceiling here), and the bare batched
//!   SQLite insert loop on the same disk.
//! - `drops`: fan-out while receivers are cut at random and resume with `list_message`
//!   after the last id they saw; messages delivered once, lost, seen twice.
//! - `storm`: N clients all cut by a server restart; how many resume, and how fast.
//! - `logins`: password login bursts and floods of wrong guesses over HTTP: logins/s, server
//!   RSS, a real login's latency during a flood (`logins.rs`).
//!
//! - `sfu`: P synthetic WebRTC parties (str0m peers) sending generated video and audio
//!   through the media endpoint: forwarded frames/s, per-receiver loss and jitter, CPU per
//!   forwarded frame (`scenarios/sfu.rs`); `--search` finds the most parties at which every
//!   receiver's loss stays under 1 %.
//!
//! confer runs as one node on SQLite, or with `--database-url` on a fresh PostgreSQL
//! database, with `--redis-url` and `--nodes N` as N nodes (`cluster.rs`).
//!
//! It measures; it never asserts a time. See BENCHMARKS.md for the commands and results.
//!
//! ## Layout
//! This file holds the command line and the dispatch only. Each scenario is a module of
//! [`scenarios`]; each server it can run against is a module of [`peers`] (confer, the Node
//! relay, the Rust relays); [`clients`] connects load clients through each door over the
//! lean clients [`sio`] and [`raw_ws`]; [`server`] is a started process and what `/proc`
//! says about it; [`report`] prints the figures.

mod clients;
mod cluster;
mod peers;
mod raw_ws;
mod report;
mod scenarios;
mod server;
mod sio;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::peers::confer::confer_bin;
use crate::report::print_rows;
use crate::scenarios::peak::{peak_search, PeakSearch};
use crate::scenarios::{
    crowd,
    drops::{drops, DropsRun},
    fanout::fanout,
    idle::idle,
    ingest::ingest,
    logins, sfu,
    storm::storm,
};

#[derive(Parser)]
#[command(
    name = "confer-bench",
    about = "Load generator for confer and its peers"
)]
pub(crate) struct Cli {
    /// The confer binary to start (default: `confer` beside this one).
    #[arg(long, global = true)]
    confer: Option<PathBuf>,
    /// Spread client sockets over this many source addresses 127.0.0.1…N (past ~60k
    /// connections one source address runs out of ports).
    #[arg(long, global = true, default_value_t = 1)]
    sources: u8,
    /// Threads of the load client's runtime; by default one for `ingest` and one per core
    /// for the rest. Ingest's senders each wait for an ack, and one thread serves them
    /// with the fewest wake-ups (7.5 against 9–10 µs of client CPU per ack); fan-out's
    /// thousands of receivers need more than one core to take what the servers send.
    #[arg(long, global = true)]
    client_threads: Option<usize>,
    /// confer's storage on this PostgreSQL server (`postgres://user@host:port/db`, a
    /// database it may create others from): each run creates a fresh database there,
    /// prepares it, and drops it after. Unset: SQLite in a fresh data folder.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Join confer's nodes through this Redis (`redis://host:port/`), one `redis_prefix`
    /// per run.
    #[arg(long, global = true)]
    redis_url: Option<String>,
    /// confer nodes to start (fanout, ingest, idle): clients are spread over them
    /// round-robin, and their CPU and memory summed. More than one needs --database-url
    /// and --redis-url.
    #[arg(long, global = true, default_value_t = 1)]
    nodes: usize,
    /// With --database-url: prepare accounts, tokens and groups in PostgreSQL through the
    /// store, one transaction each, instead of in SQLite copied by `confer migrate`.
    #[arg(long, global = true)]
    fill_directly: bool,
    /// `database_pool_size` of each node.
    #[arg(long, global = true, default_value_t = 16)]
    pool_size: usize,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum Door {
    Chat,
    Ext,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum Target {
    Confer,
    NodeRelay,
    /// socket.io + better-sqlite3 (WAL, synchronous=FULL): stores before it acks.
    NodeDurable,
    SioRelay,
    WsBroadcast,
    /// Debian's ejabberd: XMPP MUC rooms archived (mod_mam) in SQLite before they relay.
    Ejabberd,
    /// Synapse, the reference Matrix homeserver, on SQLite: persists before it answers a send.
    Synapse,
    /// Synapse on PostgreSQL: a database of its own on the server `$SYNAPSE_POSTGRES`
    /// names (libpq keywords, e.g. `host=127.0.0.1 port=5432 user=postgres`).
    SynapsePg,
}

#[derive(Subcommand)]
enum Scenario {
    /// Hold N authenticated connections and report memory per connection.
    Idle {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        #[arg(long, value_enum, default_value_t = Door::Chat)]
        door: Door,
        /// Seconds to hold them before measuring.
        #[arg(long, default_value_t = 2)]
        hold: u64,
        /// The server: confer (through `--door`), or a peer that stores, through its own
        /// protocol (`ejabberd`: logged in, bound and online; `synapse`: a pending `/sync`).
        #[arg(long, value_enum, default_value_t = Target::Confer)]
        target: Target,
        /// Hold the connections in this many load-client processes (this binary as
        /// `idle-worker`, at most 18,000 each, more when needed): for more connections
        /// than one process may hold descriptors. confer through the Chat API only.
        #[arg(long, default_value_t = 0)]
        workers: usize,
        /// With --workers: groups of this many for the fan-out after the memory figures.
        #[arg(long, default_value_t = 10)]
        members: usize,
        /// With --workers: then a fan-out at this many messages/s in total across all the
        /// connections (each group's first member sends), with latency; 0: none.
        #[arg(long, default_value_t = 0)]
        fanout_rate: u64,
        #[arg(long, default_value_t = 10)]
        fanout_seconds: u64,
    },
    /// One load-client process of `idle --workers` (its plan on standard input).
    #[command(hide = true)]
    IdleWorker {
        /// Messages per second this worker sends in the fan-out.
        #[arg(long)]
        rate: f64,
        #[arg(long)]
        seconds: u64,
    },
    /// Group fan-out at a target rate, with latency.
    Fanout {
        #[arg(long, default_value_t = 100)]
        groups: usize,
        #[arg(long, default_value_t = 10)]
        members: usize,
        /// Messages per second sent in total.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Which servers to run, one after the other.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "confer,node-relay,sio-relay,ws-broadcast"
        )]
        targets: Vec<Target>,
        /// Search each target's peak: double the rate from --rate until it stops keeping
        /// up (some messages undelivered after the drain, or fewer sent than asked), then
        /// bisect (halving first while --rate itself falls behind); report the last rate
        /// that kept up, then compare confer to each peer; then run once at half that
        /// peak's rate for the latency there.
        #[arg(long)]
        peak: bool,
        /// Bisection steps after the doubling (each halves the uncertainty).
        #[arg(long, default_value_t = 3)]
        refine: u32,
        /// With --peak, a rate is kept up only if its p99 latency is at most this many
        /// milliseconds too: past it the server is queueing (writes batch up and rates
        /// rise while every message waits), not keeping up.
        #[arg(long, default_value_t = 100.0)]
        max_p99_ms: f64,
    },
    /// Like fanout, but receivers are cut at random and resume by their protocol's own
    /// mechanism: list_message (confer), the room archive (ejabberd), /sync since (Synapse).
    Drops {
        #[arg(long, default_value_t = 20)]
        groups: usize,
        #[arg(long, default_value_t = 5)]
        members: usize,
        #[arg(long, default_value_t = 200)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Disconnects per second (spread over random receivers).
        #[arg(long, default_value_t = 10)]
        cuts: u64,
        /// Which servers to run, one after the other: confer, ejabberd, synapse.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "confer")]
        targets: Vec<Target>,
    },
    /// N clients all cut at once by a server restart; how many resume, and how fast.
    Storm {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Password logins over HTTP: a burst of correct ones, then floods of wrong guesses
    /// while a real user logs in.
    Logins {
        /// Correct logins in the burst (distinct accounts).
        #[arg(long, default_value_t = 300)]
        logins: usize,
        /// Wrong guesses in each flood.
        #[arg(long, default_value_t = 1000)]
        guesses: usize,
        /// Requests at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Synthetic WebRTC parties sending ~500 kbit/s video + ~32 kbit/s audio through the
    /// media endpoint, each receiving every other party of its conference.
    Sfu {
        #[arg(long, default_value_t = 6)]
        parties: usize,
        #[arg(long, default_value_t = 2)]
        conferences: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Search instead of one run: rising sizes (one more party per conference each
        /// step, from two each) until the worst receiver loses 1 %, up to `--parties`.
        #[arg(long)]
        search: bool,
    },
    /// Senders that each wait for the durable ack.
    Ingest {
        #[arg(long, default_value_t = 200)]
        senders: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Which servers to run, one after the other: the relays ack without storing,
        /// the ceiling of this client and protocol on this machine.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "confer,node-relay,sio-relay"
        )]
        targets: Vec<Target>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let threads = cli.client_threads.unwrap_or(match cli.scenario {
        Scenario::Ingest { .. } => 1,
        _ => std::thread::available_parallelism().map_or(1, usize::from),
    });
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run(&cli))
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let rows = match &cli.scenario {
        Scenario::Idle {
            connections,
            door,
            hold,
            target,
            workers,
            members,
            fanout_rate,
            fanout_seconds,
        } => {
            if *workers == 0 {
                idle(cli, *connections, *door, *hold, *target).await?
            } else {
                if *door != Door::Chat || *target != Target::Confer {
                    anyhow::bail!("idle --workers holds confer's Chat API connections only");
                }
                let ask = crowd::Crowd {
                    connections: *connections,
                    workers: *workers,
                    hold: *hold,
                    members: *members,
                    rate: *fanout_rate,
                    seconds: *fanout_seconds,
                };
                crowd::crowd(cli, &ask).await?
            }
        }
        Scenario::IdleWorker { rate, seconds } => {
            return crowd::worker(cli, *rate, *seconds).await;
        }
        Scenario::Fanout {
            groups,
            members,
            rate,
            seconds,
            targets,
            peak,
            refine,
            max_p99_ms,
        } => {
            let mut rows = Vec::new();
            if *peak {
                rows.extend(
                    peak_search(
                        cli,
                        *groups,
                        *members,
                        *seconds,
                        &PeakSearch {
                            start: *rate,
                            refine: *refine,
                            max_p99_ms: *max_p99_ms,
                        },
                        targets,
                    )
                    .await?,
                );
            } else {
                for t in targets {
                    rows.extend(fanout(cli, *groups, *members, *rate, *seconds, *t).await?);
                }
            }
            rows
        }
        Scenario::Ingest {
            senders,
            seconds,
            targets,
        } => ingest(cli, *senders, *seconds, targets).await?,
        Scenario::Storm { clients, timeout } => storm(cli, *clients, *timeout).await?,
        Scenario::Logins {
            logins,
            guesses,
            concurrency,
        } => {
            let ask = logins::Logins {
                logins: *logins,
                guesses: *guesses,
                concurrency: (*concurrency).max(1),
            };
            logins::logins(&confer_bin(cli), &ask).await?
        }
        Scenario::Drops {
            groups,
            members,
            rate,
            seconds,
            cuts,
            targets,
        } => {
            let run = DropsRun {
                groups: *groups,
                members: *members,
                rate: *rate,
                seconds: *seconds,
                cuts: *cuts,
            };
            drops(cli, &run, targets).await?
        }
        Scenario::Sfu {
            parties,
            conferences,
            seconds,
            search: true,
        } => sfu::search(*conferences, *parties, *seconds).await?,
        Scenario::Sfu {
            parties,
            conferences,
            seconds,
            search: false,
        } => {
            let run = sfu::SfuRun {
                parties: *parties,
                conferences: *conferences,
                seconds: *seconds,
            };
            sfu::sfu(&run).await?
        }
    };
    print_rows(&rows);
    Ok(())
}
