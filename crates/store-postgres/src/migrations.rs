//! The schema, as an ordered list of migrations recorded in the `confer_schema` table.
//! Append new steps; never edit a released one.
//!
//! Several nodes may start at once against an empty database: the runner holds a
//! session-level advisory lock while it reads the version and applies what is missing,
//! so the second node waits and then finds nothing to do.

use confer_core::store::{StoreError, StoreResult};
use tokio_postgres::NoTls;

use crate::backend;

/// The advisory lock key the migrations run under (any constant of our own).
const MIGRATION_LOCK: i64 = 0x636f_6e66_6572; // "confer"

const MIGRATIONS: &[&str] = &[
    // 1: the schema of SQLite's migration 8, in PostgreSQL's types. Differences: a
    // conversation keeps its `last_seq` (its row is locked by each append, which is what
    // makes seqs gapless when several nodes post to it at once), and nonces are indexed
    // by (group, sender), which every node sees. Not unique: SQLite recognizes a nonce
    // only within its window, so a folder copied by `confer migrate` may hold one nonce
    // twice; the newest is the one a retry finds.
    "CREATE TABLE accounts (
        uin BIGINT PRIMARY KEY,
        login TEXT NOT NULL UNIQUE,
        name TEXT,
        avatar_url TEXT,
        password_hash TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        last_seen BIGINT
    );
    CREATE TABLE tokens (
        token_hash BYTEA PRIMARY KEY,
        uin BIGINT NOT NULL,
        login TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX tokens_by_expiry ON tokens(expires_at);
    CREATE INDEX tokens_by_uin ON tokens(uin);
    CREATE TABLE conversations (
        group_id BIGSERIAL PRIMARY KEY,
        alias TEXT UNIQUE,
        kind BIGINT NOT NULL,
        conf_class TEXT,
        name TEXT,
        avatar_url TEXT,
        owner BIGINT NOT NULL,
        creator BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        destroyed BOOLEAN NOT NULL DEFAULT FALSE,
        last_seq BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE occupants (
        group_id BIGINT NOT NULL REFERENCES conversations(group_id),
        uin BIGINT NOT NULL,
        joined_at BIGINT NOT NULL,
        muted BOOLEAN NOT NULL DEFAULT FALSE,
        pinned_at BIGINT,
        cleared_seq BIGINT NOT NULL DEFAULT 0,
        seen_seq BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (group_id, uin)
    );
    CREATE INDEX occupants_by_uin ON occupants(uin, group_id);
    CREATE TABLE blocks (
        group_id BIGINT NOT NULL REFERENCES conversations(group_id),
        uin BIGINT NOT NULL,
        PRIMARY KEY (group_id, uin)
    );
    CREATE TABLE messages (
        message_id BIGSERIAL PRIMARY KEY,
        group_id BIGINT NOT NULL REFERENCES conversations(group_id),
        seq BIGINT NOT NULL,
        sender BIGINT NOT NULL,
        sender_login TEXT NOT NULL,
        session_id TEXT,
        kind BIGINT NOT NULL,
        text TEXT,
        attachments TEXT,
        body TEXT,
        nonce TEXT,
        version BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        deleted BOOLEAN NOT NULL DEFAULT FALSE,
        files TEXT,
        UNIQUE (group_id, seq)
    );
    CREATE INDEX messages_nonce ON messages(group_id, sender, nonce)
        WHERE nonce IS NOT NULL;
    CREATE TABLE device_tokens (
        token TEXT PRIMARY KEY,
        uin BIGINT NOT NULL,
        kind BIGINT NOT NULL
    );
    CREATE INDEX device_tokens_by_uin ON device_tokens(uin);
    CREATE TABLE calls (
        call_id BIGSERIAL PRIMARY KEY,
        group_id BIGINT NOT NULL REFERENCES conversations(group_id),
        media_type BIGINT NOT NULL,
        status BIGINT NOT NULL,
        caller BIGINT NOT NULL,
        callees TEXT NOT NULL,
        accepted TEXT NOT NULL,
        declined TEXT NOT NULL,
        extra TEXT,
        started_at BIGINT NOT NULL,
        accepted_at BIGINT,
        stopped_at BIGINT
    );
    CREATE TABLE attachments (
        item_id BIGSERIAL PRIMARY KEY,
        owner BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        size BIGINT NOT NULL,
        mimetype TEXT NOT NULL,
        filename TEXT NOT NULL,
        state BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX attachments_by_sha ON attachments(sha256);
    CREATE TABLE message_attachments (
        item_id BIGINT NOT NULL REFERENCES attachments(item_id),
        message_id BIGINT NOT NULL REFERENCES messages(message_id),
        group_id BIGINT NOT NULL,
        PRIMARY KEY (item_id, message_id)
    );
    CREATE INDEX message_attachments_by_group ON message_attachments(group_id);",
    // 2 (SQLite's 9 and 10): each member's received mark beside its seen mark, and the
    // online status a user chose with its free-text `message_status`.
    "ALTER TABLE occupants ADD COLUMN received_seq BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE accounts ADD COLUMN online_status BIGINT NOT NULL DEFAULT 1;
    ALTER TABLE accounts ADD COLUMN message_status TEXT NOT NULL DEFAULT '';",
    // 3 (SQLite's 11): the edge-to-hub sync (`hub.rs`): the hub's boxes, their keys
    // (SHA-256 only), rosters and the teachers' emails they name (found ignoring case, as
    // SQLite's NOCASE does), links between edge and hub ids, each box's conversations and
    // how far they were handed to it, pending batches, logs and settings; and the hub
    // administrator flag of accounts.
    "ALTER TABLE accounts ADD COLUMN admin BOOLEAN NOT NULL DEFAULT FALSE;
    CREATE TABLE hub_boxes (
        boxid TEXT PRIMARY KEY,
        created_at BIGINT NOT NULL,
        last_sync BIGINT NOT NULL DEFAULT 0,
        batch_since BIGINT,
        roster TEXT,
        roster_at BIGINT,
        roster_key TEXT,
        siteip TEXT
    );
    CREATE TABLE hub_keys (
        boxid TEXT NOT NULL,
        token_hash BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (boxid, token_hash)
    );
    CREATE TABLE hub_teachers (
        username TEXT PRIMARY KEY,
        email TEXT NOT NULL
    );
    CREATE INDEX hub_teachers_by_email ON hub_teachers(lower(email));
    CREATE TABLE hub_links (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        id BIGINT NOT NULL,
        PRIMARY KEY (kind, key)
    );
    CREATE TABLE hub_groups (
        boxid TEXT NOT NULL,
        group_id BIGINT NOT NULL,
        handed_seq BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (boxid, group_id)
    );
    CREATE TABLE hub_batch (
        boxid TEXT NOT NULL,
        message_id BIGINT NOT NULL,
        recipient TEXT NOT NULL,
        PRIMARY KEY (boxid, message_id, recipient)
    );
    CREATE TABLE hub_logs (
        id BIGSERIAL PRIMARY KEY,
        boxid TEXT NOT NULL,
        kind TEXT NOT NULL,
        item TEXT NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE INDEX hub_logs_by_box ON hub_logs(boxid, id);
    CREATE TABLE hub_settings (
        id BIGSERIAL PRIMARY KEY,
        boxid TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE INDEX hub_settings_by_box ON hub_settings(boxid, id);",
    // 4 (SQLite's 12): change numbers for catching up (`changes.rs`): an edited or deleted
    // message's `rev` (a partial index, so posting writes nothing more), a group's, a
    // member's marks', who left which group when, private groups hidden from a member who
    // left; and the clock they are taken from, starting past every message id (a new
    // message's id is its number from now on).
    "ALTER TABLE messages ADD COLUMN rev BIGINT;
    CREATE INDEX messages_changed ON messages(group_id, rev) WHERE rev IS NOT NULL;
    ALTER TABLE conversations ADD COLUMN rev BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE occupants ADD COLUMN rev BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE occupants ADD COLUMN hidden BOOLEAN NOT NULL DEFAULT FALSE;
    CREATE TABLE departures (
        uin BIGINT NOT NULL,
        group_id BIGINT NOT NULL REFERENCES conversations(group_id),
        rev BIGINT NOT NULL,
        PRIMARY KEY (uin, group_id)
    );
    CREATE TABLE change_clock (n BIGINT NOT NULL);
    INSERT INTO change_clock (n) SELECT COALESCE(MAX(message_id), 0) FROM messages;",
    // 5 (SQLite's 13 and 14): the push outbox (`push.rs`): entries written with their
    // message (in its transaction) or call, and the per-device deliveries they become,
    // each claimed by one node at a time (`claimed_by`; the claim moves `next_at` to the
    // lease's end). Ids come from sequences, so none is reused.
    "CREATE TABLE push_outbox (
        id BIGSERIAL PRIMARY KEY,
        kind BIGINT NOT NULL,
        group_id BIGINT NOT NULL,
        ref_id BIGINT NOT NULL,
        sender BIGINT NOT NULL,
        recipients BIGINT[] NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE push_queue (
        id BIGSERIAL PRIMARY KEY,
        kind BIGINT NOT NULL,
        uin BIGINT NOT NULL,
        token_type BIGINT NOT NULL,
        token TEXT NOT NULL,
        group_id BIGINT NOT NULL,
        message_id BIGINT,
        call_id BIGINT,
        title TEXT NOT NULL,
        body TEXT,
        badge BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_at BIGINT NOT NULL,
        claimed_by TEXT
    );
    CREATE INDEX push_queue_due ON push_queue(next_at);
    CREATE INDEX push_queue_by_token ON push_queue(token);
    CREATE INDEX push_queue_by_call ON push_queue(call_id) WHERE call_id IS NOT NULL;
    CREATE INDEX push_queue_by_claim ON push_queue(claimed_by) WHERE claimed_by IS NOT NULL;",
    // 6 (SQLite's 15): a hub→edge item handed out is kept, with the `since` it was handed
    // as, until the edge says it stored that batch (`hub_confirm_batch`).
    "ALTER TABLE hub_batch ADD COLUMN handed_as BIGINT;",
    // 7 (SQLite's 16): revoked tokens, kept an hour (`tokens.rs`).
    "CREATE TABLE token_revocations (
        token_hash BYTEA NOT NULL,
        revoked_at BIGINT NOT NULL
    );
    CREATE INDEX token_revocations_by_time ON token_revocations(revoked_at);",
];

/// Connect once and apply every migration the database has not seen, each in its own
/// transaction, under the migration lock.
pub(crate) async fn run(config: &tokio_postgres::Config) -> StoreResult<()> {
    let (mut client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| StoreError::Backend(format!("connecting to PostgreSQL: {e}")))?;
    let driver = tokio::spawn(connection);
    let result = apply(&mut client).await;
    drop(client);
    let _ = driver.await;
    result
}

async fn apply(client: &mut tokio_postgres::Client) -> StoreResult<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(backend)?;
    let applied = apply_locked(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(backend);
    applied.and(unlocked.map(|_| ()))
}

async fn apply_locked(client: &mut tokio_postgres::Client) -> StoreResult<()> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS confer_schema (version BIGINT NOT NULL)")
        .await
        .map_err(backend)?;
    let current: i64 = client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM confer_schema", &[])
        .await
        .map_err(backend)?
        .get(0);
    let current = usize::try_from(current).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "the database's schema is version {current}, newer than this build's {}",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = client.transaction().await.map_err(backend)?;
        tx.batch_execute(sql).await.map_err(backend)?;
        let version = (i + 1) as i64;
        tx.execute(
            "INSERT INTO confer_schema (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        tracing::info!(version = i + 1, "storage migration applied");
    }
    Ok(())
}
