//! Backend tests on real SQLite files in a temporary folder: the storage suite
//! (`confer-store-tests`, the same test bodies the PostgreSQL backend runs), then what only
//! this backend has (the commit linger, the nonce window's size, the reader pool).

use std::sync::Arc;

use confer_core::metrics::Metrics;
use confer_core::store::MessageStore;
use confer_store_tests::{conference, message, Backend};

use crate::nonces::NonceOptions;
use crate::{SqliteOptions, SqliteStore};

/// A temporary folder; every open is the same database file in it.
struct SqliteBackend {
    dir: tempfile::TempDir,
    options: SqliteOptions,
}

impl SqliteBackend {
    fn with(options: SqliteOptions) -> Self {
        SqliteBackend {
            dir: tempfile::tempdir().unwrap(),
            options,
        }
    }
}

impl Backend for SqliteBackend {
    type Store = SqliteStore;
    fn open(&self) -> SqliteStore {
        SqliteStore::open_with(self.dir.path(), Arc::new(Metrics::default()), self.options).unwrap()
    }
}

confer_store_tests::storage_suite!(Some(SqliteBackend::with(SqliteOptions::default())));

fn open(dir: &std::path::Path) -> SqliteStore {
    SqliteStore::open(dir, Arc::new(Metrics::default())).unwrap()
}

/// The suite's concurrent-append test again, with writes that never wait for more.
#[tokio::test]
async fn concurrent_appends_without_the_commit_linger_too() {
    confer_store_tests::concurrent_appends_get_gapless_sequences_and_survive_reopen(
        SqliteBackend::with(SqliteOptions {
            linger: std::time::Duration::ZERO,
            ..SqliteOptions::default()
        }),
    )
    .await;
}

#[tokio::test]
async fn a_nonce_that_left_the_window_makes_a_new_message() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        nonces: NonceOptions {
            max: 2,
            ..NonceOptions::default()
        },
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(dir.path(), Arc::new(Metrics::default()), options).unwrap();
    let group = conference(&store, "c1").await;
    for nonce in ["n1", "n2", "n3"] {
        let m = store
            .append_message(message(group, Some(nonce), nonce))
            .await
            .unwrap();
        assert!(!m.duplicate);
    }
    // n3 and n2 are remembered, n1 is not any more.
    assert!(
        store
            .append_message(message(group, Some("n3"), "again"))
            .await
            .unwrap()
            .duplicate
    );
    assert!(
        !store
            .append_message(message(group, Some("n1"), "again"))
            .await
            .unwrap()
            .duplicate
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_share_a_bounded_set_of_connections() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .read(|conn| {
                    // Long enough that the reads overlap.
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 1);
    }
    let open = store.readers.lock().unwrap().len();
    assert!(
        (1..=crate::READERS).contains(&open),
        "{open} reader connections"
    );
}
