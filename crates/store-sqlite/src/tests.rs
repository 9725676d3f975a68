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

#[tokio::test]
async fn a_message_and_its_push_entry_commit_together_and_deliveries_outlive_a_reopen() {
    use confer_core::model::{DeviceToken, NewMessage, PushDelivery, PushKind};
    use confer_core::store::{DeviceTokenStore, PushStore};
    use confer_core::Uin;
    let dir = tempfile::tempdir().unwrap();
    let group = {
        let store = open(dir.path());
        let group = conference(&store, "c1").await;
        store
            .register_token(DeviceToken {
                uin: Uin(2),
                kind: 1,
                token: "tok".into(),
            })
            .await
            .unwrap();
        assert_eq!(
            store.token_holders(vec![Uin(2), Uin(3)]).await.unwrap(),
            vec![Uin(2)]
        );
        store
            .append_message(NewMessage {
                push_to: vec![Uin(2)],
                ..message(group, None, "hi")
            })
            .await
            .unwrap();
        // A retry of nothing, and a message without pushes, queue nothing.
        store
            .append_message(message(group, None, "quiet"))
            .await
            .unwrap();
        group
    };
    // Reopened (as after kill -9): the entry is there, and the holder is known again.
    let store = open(dir.path());
    assert_eq!(
        store.token_holders(vec![Uin(2)]).await.unwrap(),
        vec![Uin(2)]
    );
    let entries = store.push_entries(10).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].kind, PushKind::Message);
    assert_eq!(entries[0].recipients, vec![Uin(2)]);
    assert_eq!(entries[0].group_id, group);
    let delivery = PushDelivery {
        id: 0,
        kind: PushKind::Message,
        uin: Uin(2),
        token_type: 1,
        token: "tok".into(),
        group_id: group,
        message_id: Some(entries[0].ref_id),
        call_id: None,
        title: "t".into(),
        body: Some("hi".into()),
        badge: 1,
        created_at_us: 10,
        attempts: 0,
        next_at_us: 0,
    };
    store
        .expand_push(entries[0].id, vec![delivery.clone()], None)
        .await
        .unwrap();
    assert!(store.push_entries(10).await.unwrap().is_empty());
    let due = store.due_pushes(10, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].body.as_deref(), Some("hi"));
    store.push_retry(due[0].id, 1, 1_000).await.unwrap();
    assert!(store.due_pushes(999, 10).await.unwrap().is_empty());
    assert_eq!(store.next_push_at().await.unwrap(), Some(1_000));
    drop(store);
    let store = open(dir.path());
    let due = store.due_pushes(1_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 1);
    // A dead token takes its queued deliveries with it.
    store.remove_dead_token("tok").await.unwrap();
    assert!(store.due_pushes(i64::MAX, 10).await.unwrap().is_empty());
    assert!(store.device_tokens(Uin(2)).await.unwrap().is_empty());
}
