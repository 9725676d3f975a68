//! The schema, as an ordered list of migrations recorded in `PRAGMA user_version`.
//! Append new steps; never edit a released one.

use confer_core::store::{StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension};

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
    // 7: message ids without AUTOINCREMENT, whose bookkeeping row in `sqlite_sequence` was
    // read and rewritten by every insert (9% of the writer's instructions per append under
    // callgrind). Ids still only rise: a new id is one more than the largest, and messages
    // are never removed. SQLite cannot drop AUTOINCREMENT in place, so the table is
    // rebuilt (foreign keys are off while migrations run, see `run`).
    "CREATE TABLE messages_v7 (
        message_id INTEGER PRIMARY KEY,
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
    INSERT INTO messages_v7 (message_id, group_id, seq, sender, sender_login, session_id,
        kind, text, attachments, body, nonce, version, created_at, updated_at, deleted)
    SELECT message_id, group_id, seq, sender, sender_login, session_id,
        kind, text, attachments, body, nonce, version, created_at, updated_at, deleted
    FROM messages;
    DROP TABLE messages;
    ALTER TABLE messages_v7 RENAME TO messages;",
    // 8: the uploads a message carries (id, size, type, name), resolved when it was
    // posted, so listing or pushing it needs no other read (`messages::encode_files`).
    "ALTER TABLE messages ADD COLUMN files TEXT;",
    // 9: each member's received mark (`received_message`), beside its seen mark: message
    // receipts follow the marks, so a receipt is one row written, whatever it covers.
    "ALTER TABLE occupants ADD COLUMN received_seq INTEGER NOT NULL DEFAULT 0;",
    // 10: the online status a user chose (1 online, 3 idle, 4 invisible, 5 away, 6 busy)
    // and its free-text `message_status`, shown while it has a chat socket.
    "ALTER TABLE accounts ADD COLUMN online_status INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE accounts ADD COLUMN message_status TEXT NOT NULL DEFAULT '';",
    // 11: the edge-to-hub sync (`hub.rs`): the hub's boxes, their keys (SHA-256 only),
    // rosters and the teachers' emails they name, which edge messages and attachments are
    // stored (and, on an edge, which hub messages), each box's conversations and how far
    // they were handed to it, pending batches, logs and settings; and the hub
    // administrator flag of accounts.
    "ALTER TABLE accounts ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE hub_boxes (
        boxid TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        last_sync INTEGER NOT NULL DEFAULT 0,
        batch_since INTEGER,
        roster TEXT,
        roster_at INTEGER,
        roster_key TEXT,
        siteip TEXT
    );
    CREATE TABLE hub_keys (
        boxid TEXT NOT NULL,
        token_hash BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (boxid, token_hash)
    ) WITHOUT ROWID;
    CREATE TABLE hub_teachers (
        username TEXT PRIMARY KEY,
        email TEXT NOT NULL
    );
    CREATE INDEX hub_teachers_by_email ON hub_teachers(email);
    CREATE TABLE hub_links (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        id INTEGER NOT NULL,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID;
    CREATE TABLE hub_groups (
        boxid TEXT NOT NULL,
        group_id INTEGER NOT NULL,
        handed_seq INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (boxid, group_id)
    ) WITHOUT ROWID;
    CREATE TABLE hub_batch (
        boxid TEXT NOT NULL,
        message_id INTEGER NOT NULL,
        recipient TEXT NOT NULL,
        PRIMARY KEY (boxid, message_id, recipient)
    ) WITHOUT ROWID;
    CREATE TABLE hub_logs (
        id INTEGER PRIMARY KEY,
        boxid TEXT NOT NULL,
        kind TEXT NOT NULL,
        item TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX hub_logs_by_box ON hub_logs(boxid, id);
    CREATE TABLE hub_settings (
        id INTEGER PRIMARY KEY,
        boxid TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX hub_settings_by_box ON hub_settings(boxid, id);",
    // 12: change numbers for catching up (`changes.rs`): an edited or deleted message's
    // `rev` (a partial index, so posting writes nothing more), a group's, a member's marks',
    // and who left which group when; private groups hidden from a member who left.
    "ALTER TABLE messages ADD COLUMN rev INTEGER;
    CREATE INDEX messages_changed ON messages(group_id, rev) WHERE rev IS NOT NULL;
    ALTER TABLE conversations ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE occupants ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE occupants ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE departures (
        uin INTEGER NOT NULL,
        group_id INTEGER NOT NULL REFERENCES conversations(group_id),
        rev INTEGER NOT NULL,
        PRIMARY KEY (uin, group_id)
    ) WITHOUT ROWID;",
    // 13: the push outbox (`push.rs`): entries written with their message or call, and
    // the per-device deliveries the core turns them into, kept until sent or given up.
    "CREATE TABLE push_outbox (
        id INTEGER PRIMARY KEY,
        kind INTEGER NOT NULL,
        group_id INTEGER NOT NULL,
        ref_id INTEGER NOT NULL,
        sender INTEGER NOT NULL,
        recipients TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE push_queue (
        id INTEGER PRIMARY KEY,
        kind INTEGER NOT NULL,
        uin INTEGER NOT NULL,
        token_type INTEGER NOT NULL,
        token TEXT NOT NULL,
        group_id INTEGER NOT NULL,
        message_id INTEGER,
        call_id INTEGER,
        title TEXT NOT NULL,
        body TEXT,
        badge INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER NOT NULL
    );
    CREATE INDEX push_queue_due ON push_queue(next_at);
    CREATE INDEX push_queue_by_token ON push_queue(token);
    CREATE INDEX push_queue_by_call ON push_queue(call_id) WHERE call_id IS NOT NULL;",
    // 14: delivery ids are never reused (AUTOINCREMENT): a delivery removed while its
    // request was in flight (a call's, by its cancellation) gave its id to the next one,
    // which that request's outcome then finished unsent. And the node that claimed a
    // delivery (`claimed_by`; a claim moves `next_at` to the lease's end), as on
    // PostgreSQL: a restarted node takes back what it had claimed before it died.
    "CREATE TABLE push_queue_new (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind INTEGER NOT NULL,
        uin INTEGER NOT NULL,
        token_type INTEGER NOT NULL,
        token TEXT NOT NULL,
        group_id INTEGER NOT NULL,
        message_id INTEGER,
        call_id INTEGER,
        title TEXT NOT NULL,
        body TEXT,
        badge INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER NOT NULL,
        claimed_by TEXT
    );
    INSERT INTO push_queue_new (id, kind, uin, token_type, token, group_id, message_id,
        call_id, title, body, badge, created_at, attempts, next_at)
        SELECT id, kind, uin, token_type, token, group_id, message_id, call_id, title, body,
            badge, created_at, attempts, next_at FROM push_queue;
    DROP TABLE push_queue;
    ALTER TABLE push_queue_new RENAME TO push_queue;
    CREATE INDEX push_queue_due ON push_queue(next_at);
    CREATE INDEX push_queue_by_token ON push_queue(token);
    CREATE INDEX push_queue_by_call ON push_queue(call_id) WHERE call_id IS NOT NULL;
    CREATE INDEX push_queue_by_claim ON push_queue(claimed_by) WHERE claimed_by IS NOT NULL;",
    // 15: a hub→edge item handed out is kept, with the `since` it was handed as, until
    // the edge says it stored that batch (`hub_confirm_batch`).
    "ALTER TABLE hub_batch ADD COLUMN handed_as INTEGER;",
    // 16: revoked tokens, kept an hour (`tokens.rs`): a server's sessions end with their
    // token, and it learns of a revocation made by another process from this table.
    "CREATE TABLE token_revocations (
        token_hash BLOB NOT NULL,
        revoked_at INTEGER NOT NULL
    );
    CREATE INDEX token_revocations_by_time ON token_revocations(revoked_at);",
];

/// Apply every migration the database has not seen, each in its own transaction.
///
/// Foreign keys are off meanwhile, as SQLite's procedure for rebuilding a table asks:
/// with them on, dropping the old table would first delete its rows and so break every
/// reference to them. Each migration proves before its commit that it left no reference
/// dangling (`PRAGMA foreign_key_check`).
pub fn run(conn: &mut Connection) -> StoreResult<()> {
    let current: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(backend)?
        .try_into()
        .unwrap_or(0);
    if current >= MIGRATIONS.len() {
        return Ok(());
    }
    let enforced: bool = conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .map_err(backend)?;
    conn.pragma_update(None, "foreign_keys", false)
        .map_err(backend)?;
    let applied = apply(conn, current);
    conn.pragma_update(None, "foreign_keys", enforced)
        .map_err(backend)?;
    applied
}

fn apply(conn: &mut Connection, from: usize) -> StoreResult<()> {
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from) {
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch(sql).map_err(backend)?;
        let dangling: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        if let Some(table) = dangling {
            return Err(StoreError::Backend(format!(
                "migration {} left a row of {table} pointing at nothing",
                i + 1
            )));
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        tracing::info!(version = i + 1, "storage migration applied");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database made before migration 7, with a message that an attachment references,
    /// upgrades keeping both, and new ids go on from the largest.
    #[test]
    fn rebuilding_messages_keeps_rows_and_references() -> Result<(), Box<dyn std::error::Error>> {
        let mut conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", true)?;
        apply_until(&mut conn, 6)?;
        conn.execute_batch(
            "INSERT INTO conversations (group_id, kind, owner, creator, created_at, updated_at)
                 VALUES (1, 1, 1, 1, 0, 0);
             INSERT INTO messages (group_id, seq, sender, sender_login, kind, version,
                 created_at, updated_at) VALUES (1, 1, 1, 'a', 0, 0, 0, 0);
             INSERT INTO attachments (item_id, owner, sha256, size, mimetype, filename,
                 state, created_at) VALUES (1, 1, 'x', 1, 'text/plain', 'f.txt', 1, 0);
             INSERT INTO message_attachments (item_id, message_id, group_id)
                 VALUES (1, 1, 1);",
        )?;
        run(&mut conn)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        assert_eq!(version, MIGRATIONS.len() as i64);
        let enforced: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
        assert!(
            enforced,
            "foreign keys are enforced again after the migrations"
        );
        let linked: i64 = conn.query_row(
            "SELECT COUNT(*) FROM message_attachments JOIN messages USING (message_id)",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(linked, 1);
        conn.execute(
            "INSERT INTO messages (group_id, seq, sender, sender_login, kind, version,
                 created_at, updated_at) VALUES (1, 2, 1, 'a', 0, 0, 0, 0)",
            [],
        )?;
        assert_eq!(conn.last_insert_rowid(), 2);
        // The rebuilt table still refuses a message in a group that does not exist.
        let orphan = conn.execute(
            "INSERT INTO messages (group_id, seq, sender, sender_login, kind, version,
                 created_at, updated_at) VALUES (9, 1, 1, 'a', 0, 0, 0, 0)",
            [],
        );
        assert!(orphan.is_err());
        Ok(())
    }

    fn apply_until(conn: &mut Connection, version: usize) -> rusqlite::Result<()> {
        for (i, sql) in MIGRATIONS.iter().enumerate().take(version) {
            conn.execute_batch(sql)?;
            conn.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        Ok(())
    }
}
