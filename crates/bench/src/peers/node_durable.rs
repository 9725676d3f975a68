//! The durable Node peer of `bench/peers/node-durable`: socket.io storing every message in
//! SQLite (better-sqlite3, WAL, `synchronous=FULL`) before it acks and relays it, in a
//! database of its own in a temporary folder.

use crate::peers::node_relay::start_node_peer;
use crate::server::Server;

pub(crate) async fn start_node_durable() -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("peer.sqlite");
    let mut server = start_node_peer(
        "node-durable",
        &["socket.io", "better-sqlite3"],
        &[("DB", db.as_os_str())],
    )
    .await?;
    server._dir = Some(dir);
    Ok(server)
}
