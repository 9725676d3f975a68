//! The schema, as an ordered list of migrations recorded in `PRAGMA user_version`.
//! Append new steps; never edit a released one.

use confer_core::store::StoreResult;
use rusqlite::Connection;

use crate::backend;

const MIGRATIONS: &[&str] = &[
    // 1: accounts, tokens, conversations, occupants, messages.
    "CREATE TABLE accounts (
        uin INTEGER PRIMARY KEY,
        login TEXT NOT NULL UNIQUE,
        name TEXT,
        avatar_url TEXT,
        password_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE tokens (
        token_hash BLOB PRIMARY KEY,
        uin INTEGER NOT NULL,
        login TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX tokens_by_expiry ON tokens(expires_at);
    CREATE TABLE conversations (
        group_id INTEGER PRIMARY KEY AUTOINCREMENT,
        alias TEXT UNIQUE,
        kind INTEGER NOT NULL,
        conf_class TEXT,
        name TEXT,
        owner INTEGER NOT NULL,
        creator INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        last_seq INTEGER NOT NULL DEFAULT 0,
        destroyed INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE occupants (
        group_id INTEGER NOT NULL REFERENCES conversations(group_id),
        uin INTEGER NOT NULL,
        joined_at INTEGER NOT NULL,
        PRIMARY KEY (group_id, uin)
    ) WITHOUT ROWID;
    CREATE INDEX occupants_by_uin ON occupants(uin, group_id);
    CREATE TABLE messages (
        message_id INTEGER PRIMARY KEY AUTOINCREMENT,
        group_id INTEGER NOT NULL REFERENCES conversations(group_id),
        seq INTEGER NOT NULL,
        sender INTEGER NOT NULL,
        sender_login TEXT NOT NULL,
        session_id TEXT,
        kind INTEGER NOT NULL,
        text TEXT,
        attachments TEXT,
        body TEXT,
        nonce TEXT,
        version INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        UNIQUE (group_id, seq)
    );
    CREATE UNIQUE INDEX messages_nonce ON messages(group_id, sender, nonce)
        WHERE nonce IS NOT NULL;",
    // 2: chat groups (avatar, per-member state, blocks), presence, device tokens, calls.
    "ALTER TABLE conversations ADD COLUMN avatar_url TEXT;
    ALTER TABLE accounts ADD COLUMN last_seen INTEGER;
    ALTER TABLE occupants ADD COLUMN muted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE occupants ADD COLUMN pinned_at INTEGER;
    ALTER TABLE occupants ADD COLUMN cleared_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE occupants ADD COLUMN seen_seq INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE blocks (
        group_id INTEGER NOT NULL REFERENCES conversations(group_id),
        uin INTEGER NOT NULL,
        PRIMARY KEY (group_id, uin)
    ) WITHOUT ROWID;
    CREATE TABLE device_tokens (
        token TEXT PRIMARY KEY,
        uin INTEGER NOT NULL,
        kind INTEGER NOT NULL
    );
    CREATE INDEX device_tokens_by_uin ON device_tokens(uin);
    CREATE TABLE calls (
        call_id INTEGER PRIMARY KEY AUTOINCREMENT,
        group_id INTEGER NOT NULL REFERENCES conversations(group_id),
        media_type INTEGER NOT NULL,
        status INTEGER NOT NULL,
        caller INTEGER NOT NULL,
        callees TEXT NOT NULL,
        accepted TEXT NOT NULL,
        declined TEXT NOT NULL,
        extra TEXT,
        started_at INTEGER NOT NULL,
        accepted_at INTEGER,
        stopped_at INTEGER
    );
    CREATE INDEX messages_by_group_id ON messages(group_id, message_id);",
    // 3: attachments and which messages carry them.
    "CREATE TABLE attachments (
        item_id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        mimetype TEXT NOT NULL,
        filename TEXT NOT NULL,
        state INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX attachments_by_sha ON attachments(sha256);
    CREATE TABLE message_attachments (
        item_id INTEGER NOT NULL REFERENCES attachments(item_id),
        message_id INTEGER NOT NULL REFERENCES messages(message_id),
        group_id INTEGER NOT NULL,
        PRIMARY KEY (item_id, message_id)
    ) WITHOUT ROWID;
    CREATE INDEX message_attachments_by_group ON message_attachments(group_id);",
    // 4: listing a group's messages uses the (group_id, seq) index alone (ids and seqs
    // rise together within a group). A second index by id cost every appended message one
    // more page written per commit: ~30% of the WAL's bytes.
    "DROP INDEX messages_by_group_id;",
    // 5: a group's last seq is read from its (group_id, seq) index; the counter in its
    // row, bumped with every message, was one more thing to keep in step.
    "ALTER TABLE conversations DROP COLUMN last_seq;",
    // 6: retries are recognized by a window of recent nonces kept by the writer
    // (`nonces.rs`); the index put each message's nonce on a page of its own per commit.
    "DROP INDEX messages_nonce;",
];

/// Apply every migration the database has not seen, each in its own transaction.
pub fn run(conn: &mut Connection) -> StoreResult<()> {
    let current: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(backend)?
        .try_into()
        .unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch(sql).map_err(backend)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        tracing::info!(version = i + 1, "storage migration applied");
    }
    Ok(())
}
