//! `confer migrate --to postgres://…`: copy the SQLite database of a data folder into
//! PostgreSQL, table by table, so a single node can become the first of several.
//!
//! Both schemas are brought up to date first (each backend's own migrations), then every
//! table is copied in its key's order, [`BATCH`] rows per PostgreSQL transaction, each
//! row inserted unless its key is there already. So a run that was stopped (or failed)
//! can simply be run again: a table with one integer key goes on after the largest key
//! the target holds, the others are read again and what is there is skipped. Afterwards
//! each conversation's `last_seq` and every id sequence are set from the copied rows,
//! and each table is verified: the same number of rows, and the same SHA-256 over all
//! its rows read in key order on both sides.
//!
//! The server must be stopped while it runs (nothing else may write either database).
//! Queued pushes (`push_queue`) are copied; outbox entries not yet turned into them
//! (`push_outbox`, a message's for the moment after its post) are not.
//! Lives in the binary because it is the one crate that knows both backends.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context};
use futures_util::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

/// Rows copied per PostgreSQL transaction.
const BATCH: usize = 1_000;

/// A column's type as PostgreSQL has it (SQLite's flags are integers).
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
    Bool,
    Bytes,
}

struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// The key columns, in the order rows are copied and verified.
    key: &'static [&'static str],
}

use Kind::{Bool, Bytes, Int, Text};

/// Every table, parents before the rows that refer to them.
const TABLES: &[Table] = &[
    Table {
        name: "accounts",
        columns: &[
            ("uin", Int),
            ("login", Text),
            ("name", Text),
            ("avatar_url", Text),
            ("password_hash", Text),
            ("created_at", Int),
            ("last_seen", Int),
            ("online_status", Int),
            ("message_status", Text),
            ("admin", Bool),
        ],
        key: &["uin"],
    },
    Table {
        name: "tokens",
        columns: &[
            ("token_hash", Bytes),
            ("uin", Int),
            ("login", Text),
            ("expires_at", Int),
        ],
        key: &["token_hash"],
    },
    Table {
        name: "conversations",
        columns: &[
            ("group_id", Int),
            ("alias", Text),
            ("kind", Int),
            ("conf_class", Text),
            ("name", Text),
            ("avatar_url", Text),
            ("owner", Int),
            ("creator", Int),
            ("created_at", Int),
            ("updated_at", Int),
            ("destroyed", Bool),
            ("rev", Int),
        ],
        key: &["group_id"],
    },
    Table {
        name: "occupants",
        columns: &[
            ("group_id", Int),
            ("uin", Int),
            ("joined_at", Int),
            ("muted", Bool),
            ("pinned_at", Int),
            ("cleared_seq", Int),
            ("seen_seq", Int),
            ("received_seq", Int),
            ("rev", Int),
            ("hidden", Bool),
        ],
        key: &["group_id", "uin"],
    },
    Table {
        name: "blocks",
        columns: &[("group_id", Int), ("uin", Int)],
        key: &["group_id", "uin"],
    },
    Table {
        name: "departures",
        columns: &[("uin", Int), ("group_id", Int), ("rev", Int)],
        key: &["uin", "group_id"],
    },
    Table {
        name: "messages",
        columns: &[
            ("message_id", Int),
            ("group_id", Int),
            ("seq", Int),
            ("sender", Int),
            ("sender_login", Text),
            ("session_id", Text),
            ("kind", Int),
            ("text", Text),
            ("attachments", Text),
            ("body", Text),
            ("nonce", Text),
            ("version", Int),
            ("created_at", Int),
            ("updated_at", Int),
            ("deleted", Bool),
            ("files", Text),
            ("rev", Int),
        ],
        key: &["message_id"],
    },
    Table {
        name: "device_tokens",
        columns: &[("token", Text), ("uin", Int), ("kind", Int)],
        key: &["token"],
    },
    Table {
        name: "calls",
        columns: &[
            ("call_id", Int),
            ("group_id", Int),
            ("media_type", Int),
            ("status", Int),
            ("caller", Int),
            ("callees", Text),
            ("accepted", Text),
            ("declined", Text),
            ("extra", Text),
            ("started_at", Int),
            ("accepted_at", Int),
            ("stopped_at", Int),
        ],
        key: &["call_id"],
    },
    Table {
        name: "attachments",
        columns: &[
            ("item_id", Int),
            ("owner", Int),
            ("sha256", Text),
            ("size", Int),
            ("mimetype", Text),
            ("filename", Text),
            ("state", Int),
            ("created_at", Int),
        ],
        key: &["item_id"],
    },
    Table {
        name: "message_attachments",
        columns: &[("item_id", Int), ("message_id", Int), ("group_id", Int)],
        key: &["item_id", "message_id"],
    },
    // Pushes queued for devices and not yet sent (claims are void: the server is stopped).
    Table {
        name: "push_queue",
        columns: &[
            ("id", Int),
            ("kind", Int),
            ("uin", Int),
            ("token_type", Int),
            ("token", Text),
            ("group_id", Int),
            ("message_id", Int),
            ("call_id", Int),
            ("title", Text),
            ("body", Text),
            ("badge", Int),
            ("created_at", Int),
            ("attempts", Int),
            ("next_at", Int),
            ("claimed_by", Text),
        ],
        key: &["id"],
    },
    Table {
        name: "hub_boxes",
        columns: &[
            ("boxid", Text),
            ("created_at", Int),
            ("last_sync", Int),
            ("batch_since", Int),
            ("roster", Text),
            ("roster_at", Int),
            ("roster_key", Text),
            ("siteip", Text),
        ],
        key: &["boxid"],
    },
    Table {
        name: "hub_keys",
        columns: &[("boxid", Text), ("token_hash", Bytes), ("created_at", Int)],
        key: &["boxid", "token_hash"],
    },
    Table {
        name: "hub_teachers",
        columns: &[("username", Text), ("email", Text)],
        key: &["username"],
    },
    Table {
        name: "hub_links",
        columns: &[("kind", Text), ("key", Text), ("id", Int)],
        key: &["kind", "key"],
    },
    Table {
        name: "hub_groups",
        columns: &[("boxid", Text), ("group_id", Int), ("handed_seq", Int)],
        key: &["boxid", "group_id"],
    },
    Table {
        name: "hub_batch",
        columns: &[
            ("boxid", Text),
            ("message_id", Int),
            ("recipient", Text),
            ("handed_as", Int),
        ],
        key: &["boxid", "message_id", "recipient"],
    },
    Table {
        name: "hub_logs",
        columns: &[
            ("id", Int),
            ("boxid", Text),
            ("kind", Text),
            ("item", Text),
            ("at", Int),
        ],
        key: &["id"],
    },
    Table {
        name: "hub_settings",
        columns: &[
            ("id", Int),
            ("boxid", Text),
            ("key", Text),
            ("value", Text),
            ("at", Int),
        ],
        key: &["id"],
    },
];

/// SQLite tables `migrate` leaves behind, and why. Their rows are counted and named in
/// the report (`NotCopied`), never silently lost.
pub const NOT_COPIED: &[(&str, &str)] = &[
    (
        "push_outbox",
        "messages' pushes not yet turned into deliveries (an entry lasts moments after its post)",
    ),
    (
        "token_revocations",
        "the last hour's revoked tokens, already deleted (a server's first token check reads every token)",
    ),
];

/// The numbered changes (store-postgres `changes.rs`): the change clock goes past each.
const CHANGE_NUMBERS: &[(&str, &str)] = &[
    ("messages", "message_id"),
    ("messages", "rev"),
    ("conversations", "rev"),
    ("occupants", "rev"),
    ("departures", "rev"),
];

/// The tables whose rows hold an id a sequence hands out (table, column).
const SEQUENCES: &[(&str, &str)] = &[
    ("conversations", "group_id"),
    ("messages", "message_id"),
    ("calls", "call_id"),
    ("attachments", "item_id"),
    ("push_queue", "id"),
    ("hub_logs", "id"),
    ("hub_settings", "id"),
];

/// One value of a row, the same from either database.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Value {
    /// An unambiguous text form, for the checksum.
    fn digest_into(&self, hash: &mut Sha256) {
        match self {
            Value::Null => hash.update(b"n;"),
            Value::Int(n) => hash.update(format!("i{n};").as_bytes()),
            Value::Text(t) => {
                hash.update(format!("t{}:", t.len()).as_bytes());
                hash.update(t.as_bytes());
            }
            Value::Bytes(b) => {
                hash.update(format!("b{}:", b.len()).as_bytes());
                hash.update(b);
            }
        }
    }

    /// As a PostgreSQL parameter of the column's type.
    fn to_param(&self, kind: Kind) -> anyhow::Result<Box<dyn ToSql + Sync + Send>> {
        Ok(match (kind, self) {
            (Kind::Int, Value::Null) => Box::new(None::<i64>),
            (Kind::Int, Value::Int(n)) => Box::new(Some(*n)),
            (Kind::Bool, Value::Null) => Box::new(None::<bool>),
            (Kind::Bool, Value::Int(n)) => Box::new(Some(*n != 0)),
            (Kind::Text, Value::Null) => Box::new(None::<String>),
            (Kind::Text, Value::Text(t)) => Box::new(Some(t.clone())),
            (Kind::Bytes, Value::Null) => Box::new(None::<Vec<u8>>),
            (Kind::Bytes, Value::Bytes(b)) => Box::new(Some(b.clone())),
            (_, other) => bail!("unexpected value {other:?} in the SQLite database"),
        })
    }
}

/// What was copied and checked of one table.
#[derive(Debug, PartialEq, Eq)]
pub struct TableReport {
    pub table: &'static str,
    /// Rows this run inserted (0 when a previous run had copied everything).
    pub copied: u64,
    /// Rows on each side once done (equal, or the run fails).
    pub rows: u64,
    /// The hex SHA-256 of the table's rows (equal on both sides, or the run fails).
    pub checksum: String,
}

/// A SQLite table left behind ([`NOT_COPIED`]) that had rows.
#[derive(Debug, PartialEq, Eq)]
pub struct LeftBehind {
    pub table: &'static str,
    pub rows: u64,
    pub why: &'static str,
}

/// What a run did: every copied table, verified, and what it left behind.
#[derive(Debug)]
pub struct Migrated {
    pub tables: Vec<TableReport>,
    pub left_behind: Vec<LeftBehind>,
}

/// Copy `data_dir`'s SQLite database into the PostgreSQL database of `url` and verify
/// it. `quiet` (stderr is not a terminal) turns the progress bars into a line on stderr
/// per table copied.
pub async fn migrate(data_dir: &Path, url: &str, quiet: bool) -> anyhow::Result<Migrated> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!("--to must be a postgres:// URL (got {url:?})");
    }
    let db_file = data_dir.join(confer_store_sqlite::DB_FILE);
    if !db_file.exists() {
        bail!(
            "no database to migrate: {} does not exist",
            db_file.display()
        );
    }
    // Both schemas up to date, each by its own backend.
    drop(
        confer_store_sqlite::SqliteStore::open(
            data_dir,
            std::sync::Arc::new(confer_core::metrics::Metrics::default()),
        )
        .with_context(|| format!("opening {}", db_file.display()))?,
    );
    drop(
        confer_store_postgres::PgStore::open(url, confer_store_postgres::PgOptions::default())
            .context("opening the PostgreSQL database")?,
    );
    let source = rusqlite::Connection::open_with_flags(
        &db_file,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {}", db_file.display()))?;
    let (mut target, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    let driver = tokio::spawn(connection);

    let mut reports = Vec::new();
    for table in TABLES {
        let copied = copy_table(&source, &mut target, table, quiet)
            .await
            .with_context(|| format!("copying {}", table.name))?;
        reports.push((table, copied));
    }
    target
        .batch_execute(
            "UPDATE conversations c SET last_seq = COALESCE(
                 (SELECT MAX(seq) FROM messages m WHERE m.group_id = c.group_id), 0)",
        )
        .await
        .context("setting each conversation's last seq")?;
    for (table, column) in SEQUENCES {
        target
            .batch_execute(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),
                     COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            ))
            .await
            .with_context(|| format!("moving the id sequence of {table} past its rows"))?;
    }
    // Every numbered change (a new message's id is its number) is below the change clock
    // (store-postgres `changes.rs`), so the next change is numbered after them all.
    let highest = CHANGE_NUMBERS
        .iter()
        .map(|(table, column)| format!("(SELECT COALESCE(MAX({column}), 0) FROM {table})"))
        .collect::<Vec<_>>()
        .join(", ");
    target
        .batch_execute(&format!(
            "UPDATE change_clock SET n = GREATEST(n, {highest})"
        ))
        .await
        .context("moving the change clock past the copied change numbers")?;
    let mut tables = Vec::new();
    for (table, copied) in reports {
        let (source_rows, source_sum) = sqlite_checksum(&source, table)?;
        let (target_rows, target_sum) = pg_checksum(&target, table).await?;
        if source_rows != target_rows {
            bail!(
                "{}: {source_rows} rows in SQLite but {target_rows} in PostgreSQL",
                table.name
            );
        }
        if source_sum != target_sum {
            bail!(
                "{}: the rows differ (SHA-256 {source_sum} in SQLite, {target_sum} in PostgreSQL)",
                table.name
            );
        }
        tables.push(TableReport {
            table: table.name,
            copied,
            rows: source_rows,
            checksum: source_sum,
        });
    }
    let mut left_behind = Vec::new();
    for (table, why) in NOT_COPIED {
        let rows: i64 = source
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .with_context(|| format!("counting {table}"))?;
        if rows > 0 {
            left_behind.push(LeftBehind {
                table,
                rows: u64::try_from(rows).unwrap_or(0),
                why,
            });
        }
    }
    drop(target);
    let _ = driver.await;
    Ok(Migrated {
        tables,
        left_behind,
    })
}

fn column_list(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The key order, byte-wise on both sides (PostgreSQL's text order depends on its locale).
fn order_by(table: &Table, postgres: bool) -> String {
    table
        .key
        .iter()
        .map(|k| {
            let text = table
                .columns
                .iter()
                .any(|(c, kind)| c == k && matches!(kind, Kind::Text));
            if postgres && text {
                format!("{k} COLLATE \"C\"")
            } else {
                (*k).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_row(row: &rusqlite::Row<'_>, n: usize) -> rusqlite::Result<Vec<Value>> {
    (0..n)
        .map(|i| {
            Ok(match row.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::Int(v),
                ValueRef::Real(v) => Value::Text(v.to_string()),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
            })
        })
        .collect()
}

/// Copy one table; the number of rows inserted.
async fn copy_table(
    source: &rusqlite::Connection,
    target: &mut tokio_postgres::Client,
    table: &Table,
    quiet: bool,
) -> anyhow::Result<u64> {
    let columns = column_list(table);
    let total: i64 =
        source.query_row(&format!("SELECT COUNT(*) FROM {}", table.name), [], |r| {
            r.get(0)
        })?;
    // A single integer key: go on after the largest one already copied.
    let int_key = match table.key {
        [key]
            if table
                .columns
                .iter()
                .any(|(c, k)| c == key && matches!(k, Kind::Int)) =>
        {
            Some(*key)
        }
        _ => None,
    };
    let mut after: i64 = match int_key {
        Some(key) => target
            .query_one(
                &format!("SELECT COALESCE(MAX({key}), 0) FROM {}", table.name),
                &[],
            )
            .await?
            .try_get(0)?,
        None => i64::MIN,
    };
    let done_before: i64 = match int_key {
        Some(key) => source.query_row(
            &format!("SELECT COUNT(*) FROM {} WHERE {key} <= ?1", table.name),
            [after],
            |r| r.get(0),
        )?,
        None => 0,
    };
    let bar = progress(table.name, total, quiet);
    bar.set_position(u64::try_from(done_before).unwrap_or(0));

    let placeholders: Vec<String> = (1..=table.columns.len()).map(|i| format!("${i}")).collect();
    let insert = format!(
        "INSERT INTO {} ({columns}) VALUES ({}) ON CONFLICT DO NOTHING",
        table.name,
        placeholders.join(", ")
    );
    let select = match int_key {
        Some(key) => format!(
            "SELECT {columns} FROM {} WHERE {key} > ?1 ORDER BY {key} LIMIT {BATCH}",
            table.name
        ),
        None => format!(
            "SELECT {columns} FROM {} ORDER BY {} LIMIT {BATCH} OFFSET ?1",
            table.name,
            order_by(table, false)
        ),
    };
    let mut offset: i64 = 0;
    let mut copied = 0u64;
    loop {
        let mut stmt = source.prepare_cached(&select)?;
        let param = if int_key.is_some() { after } else { offset };
        let rows: Vec<Vec<Value>> = stmt
            .query_map([param], |r| read_row(r, table.columns.len()))?
            .collect::<rusqlite::Result<_>>()?;
        if rows.is_empty() {
            break;
        }
        let tx = target.transaction().await?;
        let statement = tx.prepare(&insert).await?;
        for row in &rows {
            let params: Vec<Box<dyn ToSql + Sync + Send>> = row
                .iter()
                .zip(table.columns)
                .map(|(v, (_, kind))| v.to_param(*kind))
                .collect::<anyhow::Result<_>>()?;
            let refs: Vec<&(dyn ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            copied += tx.execute(&statement, &refs).await?;
        }
        tx.commit().await?;
        bar.inc(rows.len() as u64);
        if let (Some(_), Some(Value::Int(last))) = (int_key, rows.last().and_then(|r| r.first())) {
            after = *last;
        }
        offset += rows.len() as i64;
        if rows.len() < BATCH {
            break;
        }
    }
    bar.finish_and_clear();
    if quiet {
        eprintln!(
            "copied {}: {copied} rows by this run, {total} in all",
            table.name
        );
    }
    Ok(copied)
}

fn progress(table: &str, total: i64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(u64::try_from(total).unwrap_or(0));
    if let Ok(style) = ProgressStyle::with_template("{msg:20} {bar:40} {pos}/{len}") {
        bar.set_style(style);
    }
    bar.set_message(table.to_string());
    bar
}

fn finish(hash: Sha256) -> String {
    let mut hex = String::new();
    for byte in hash.finalize() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn sqlite_checksum(source: &rusqlite::Connection, table: &Table) -> anyhow::Result<(u64, String)> {
    let mut stmt = source.prepare(&format!(
        "SELECT {} FROM {} ORDER BY {}",
        column_list(table),
        table.name,
        order_by(table, false)
    ))?;
    let mut rows = stmt.query([])?;
    let mut hash = Sha256::new();
    let mut count = 0u64;
    while let Some(row) = rows.next()? {
        for value in read_row(row, table.columns.len())? {
            value.digest_into(&mut hash);
        }
        hash.update(b"\n");
        count += 1;
    }
    Ok((count, finish(hash)))
}

async fn pg_checksum(
    target: &tokio_postgres::Client,
    table: &Table,
) -> anyhow::Result<(u64, String)> {
    // Streamed: a table is never held in memory whole.
    let rows = target
        .query_raw(
            &format!(
                "SELECT {} FROM {} ORDER BY {}",
                column_list(table),
                table.name,
                order_by(table, true)
            ),
            std::iter::empty::<&(dyn ToSql + Sync)>(),
        )
        .await?;
    let mut rows = std::pin::pin!(rows);
    let mut hash = Sha256::new();
    let mut count = 0u64;
    while let Some(row) = rows.try_next().await? {
        for (i, (_, kind)) in table.columns.iter().enumerate() {
            let value = match kind {
                Kind::Int => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
                Kind::Bool => row
                    .try_get::<_, Option<bool>>(i)?
                    .map(|b| Value::Int(i64::from(b))),
                Kind::Text => row.try_get::<_, Option<String>>(i)?.map(Value::Text),
                Kind::Bytes => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Bytes),
            };
            value.unwrap_or(Value::Null).digest_into(&mut hash);
        }
        hash.update(b"\n");
        count += 1;
    }
    Ok((count, finish(hash)))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// A column the SQLite store gains must be copied too (or its table named in
    /// `NOT_COPIED`): this fails until `TABLES` lists it.
    #[test]
    fn every_sqlite_table_and_column_is_copied_or_named() {
        let dir = tempfile::tempdir().unwrap();
        drop(
            confer_store_sqlite::SqliteStore::open(
                dir.path(),
                std::sync::Arc::new(confer_core::metrics::Metrics::default()),
            )
            .unwrap(),
        );
        let con =
            rusqlite::Connection::open(dir.path().join(confer_store_sqlite::DB_FILE)).unwrap();
        let mut stmt = con
            .prepare(
                "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
            )
            .unwrap();
        let mut sqlite: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for row in stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .unwrap()
        {
            let (table, column) = row.unwrap();
            sqlite.entry(table).or_default().insert(column);
        }
        for (table, _) in NOT_COPIED {
            assert!(sqlite.remove(*table).is_some(), "{table} is not in SQLite");
        }
        let copied: BTreeMap<String, BTreeSet<String>> = TABLES
            .iter()
            .map(|t| {
                let columns = t.columns.iter().map(|(c, _)| c.to_string()).collect();
                (t.name.to_string(), columns)
            })
            .collect();
        assert_eq!(copied, sqlite, "TABLES against SQLite's schema");
    }
}
