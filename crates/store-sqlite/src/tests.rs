//! Backend tests on real SQLite files in a temporary folder.

use std::collections::BTreeSet;
use std::sync::Arc;

use confer_core::metrics::Metrics;
use confer_core::model::{ConversationKind, NewAccount, NewConversation, NewMessage};
use confer_core::store::{AccountStore, ConversationStore, MessageStore, Storage, StoreError};
use confer_core::{GroupId, Json, Uin};

use crate::nonces::NonceOptions;
use crate::{SqliteOptions, SqliteStore};

fn open(dir: &std::path::Path) -> SqliteStore {
    SqliteStore::open(dir, Arc::new(Metrics::default())).unwrap()
}

async fn conference(store: &SqliteStore, alias: &str) -> GroupId {
    store
        .create_conversation(NewConversation {
            alias: Some(alias.into()),
            kind: ConversationKind::Conference {
                class: "sfu".into(),
            },
            name: None,
            avatar_url: None,
            owner: Uin(1),
            creator: Uin(1),
            occupants: BTreeSet::from([Uin(1)]),
            created_at_us: 1,
        })
        .await
        .unwrap()
        .group_id
}

fn message(group: GroupId, nonce: Option<&str>, text: &str) -> NewMessage {
    NewMessage {
        group_id: group,
        sender: Uin(1),
        sender_login: "alice".into(),
        session_id: None,
        kind: 0,
        text: Some(text.into()),
        attachments: None,
        body: Some(Json::from_validated(format!("{{\"t\":\"{text}\"}}"))),
        nonce: nonce.map(str::to_string),
        version: 0,
        created_at_us: 10,
        files: Vec::new(),
        push_to: Vec::new(),
    }
}

#[tokio::test]
async fn concurrent_appends_get_gapless_sequences_and_survive_reopen() {
    concurrent_appends(crate::writer::DEFAULT_LINGER).await;
}

#[tokio::test]
async fn concurrent_appends_without_the_commit_linger_too() {
    concurrent_appends(std::time::Duration::ZERO).await;
}

async fn concurrent_appends(linger: std::time::Duration) {
    let dir = tempfile::tempdir().unwrap();
    let group = {
        let metrics = Arc::new(Metrics::default());
        let store = Arc::new(
            SqliteStore::open_with(
                dir.path(),
                metrics,
                SqliteOptions {
                    linger,
                    ..SqliteOptions::default()
                },
            )
            .unwrap(),
        );
        let group = conference(&store, "c1").await;
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .append_message(message(group, None, &i.to_string()))
                    .await
                    .unwrap()
            }));
        }
        let mut seqs = BTreeSet::new();
        for t in tasks {
            seqs.insert(t.await.unwrap().message.seq);
        }
        assert_eq!(seqs, (1..=200).collect::<BTreeSet<u64>>());
        store.flush().await.unwrap();
        group
    };
    let store = open(dir.path());
    let all = store
        .messages_after(group, 0, 1000, usize::MAX)
        .await
        .unwrap()
        .messages;
    assert_eq!(all.len(), 200);
    assert_eq!(
        store
            .messages_after(group, 195, 1000, usize::MAX)
            .await
            .unwrap()
            .messages
            .len(),
        5
    );
    let next = store
        .append_message(message(group, None, "after"))
        .await
        .unwrap();
    assert_eq!(next.message.seq, 201);
    assert_eq!(
        next.message.body.as_ref().unwrap().as_str(),
        "{\"t\":\"after\"}"
    );
}

#[tokio::test]
async fn a_repeated_nonce_returns_the_original_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let group = conference(&store, "c1").await;
    let first = store
        .append_message(message(group, Some("n1"), "a"))
        .await
        .unwrap();
    let again = store
        .append_message(message(group, Some("n1"), "b"))
        .await
        .unwrap();
    assert!(!first.duplicate && again.duplicate);
    assert_eq!(again.message.message_id, first.message.message_id);
    assert_eq!(again.message.text.as_deref(), Some("a"));
    assert_eq!(
        store
            .messages_after(group, 0, 10, usize::MAX)
            .await
            .unwrap()
            .messages
            .len(),
        1
    );
    // The retry took no seq: the next message follows the original without a gap.
    let next = store
        .append_message(message(group, Some("n2"), "c"))
        .await
        .unwrap();
    assert_eq!(next.message.seq, first.message.seq + 1);
}

#[tokio::test]
async fn a_retry_is_recognized_after_a_restart_but_not_from_another_sender() {
    let dir = tempfile::tempdir().unwrap();
    // Created now: the window refilled on open holds the last 24 hours.
    let now = confer_core::model::now_us();
    let post = |group: GroupId, sender: u64| NewMessage {
        sender: Uin(sender),
        created_at_us: now,
        ..message(group, Some("n1"), "a")
    };
    let (group, first) = {
        let store = open(dir.path());
        let group = conference(&store, "c1").await;
        (group, store.append_message(post(group, 1)).await.unwrap())
    };
    let store = open(dir.path());
    let again = store.append_message(post(group, 1)).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message.message_id, first.message.message_id);
    let other = store.append_message(post(group, 2)).await.unwrap();
    assert!(!other.duplicate);
    assert_eq!(
        store
            .messages_after(group, 0, 10, usize::MAX)
            .await
            .unwrap()
            .messages
            .len(),
        2
    );
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

#[tokio::test]
async fn a_failing_write_does_not_undo_its_batch_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let group = conference(&store, "c1").await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        // Every other write targets a conversation that does not exist.
        let target = if i % 2 == 0 { group } else { GroupId(999) };
        tasks.push(tokio::spawn(async move {
            store.append_message(message(target, None, "x")).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::NotFound) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 25);
    assert_eq!(
        store
            .messages_after(group, 0, 100, usize::MAX)
            .await
            .unwrap()
            .messages
            .len(),
        25
    );
}

#[tokio::test]
async fn duplicate_logins_and_aliases_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let new = |login: &str| NewAccount {
        uin: None,
        login: login.into(),
        name: None,
        password_hash: "h".into(),
        created_at_us: 1,
    };
    let a = store.create_account(new("alice")).await.unwrap();
    let b = store.create_account(new("bob")).await.unwrap();
    assert_ne!(a.uin, b.uin);
    assert!(matches!(
        store.create_account(new("alice")).await,
        Err(StoreError::Conflict(_))
    ));
    conference(&store, "c1").await;
    let again = store
        .create_conversation(NewConversation {
            alias: Some("c1".into()),
            kind: ConversationKind::Conference {
                class: "mcu".into(),
            },
            name: None,
            avatar_url: None,
            owner: Uin(2),
            creator: Uin(2),
            occupants: BTreeSet::new(),
            created_at_us: 1,
        })
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))));
}

#[tokio::test]
async fn reads_after_each_change_see_it_although_conversations_are_cached() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let group = conference(&store, "cached").await;
    let read = || async { store.conversation(group).await.unwrap().unwrap() };
    assert_eq!(read().await.occupants, BTreeSet::from([Uin(1)]));

    store.add_occupant(group, Uin(2), 2).await.unwrap();
    assert_eq!(read().await.occupants, BTreeSet::from([Uin(1), Uin(2)]));
    store.set_blocked(group, Uin(2), true, 9).await.unwrap();
    assert_eq!(read().await.blocked, BTreeSet::from([Uin(2)]));
    store.remove_occupant(group, Uin(2), 3).await.unwrap();
    assert_eq!(read().await.occupants, BTreeSet::from([Uin(1)]));
    let mut renamed = read().await;
    renamed.name = Some("new name".into());
    store.update_group(renamed, 4).await.unwrap();
    assert_eq!(read().await.name.as_deref(), Some("new name"));
    store.mark_destroyed(group, 5).await.unwrap();
    assert!(read().await.destroyed);

    assert_eq!(store.last_seq(group).await.unwrap(), 0);
    store
        .append_message(message(group, None, "one"))
        .await
        .unwrap();
    store
        .append_message(message(group, None, "two"))
        .await
        .unwrap();
    assert_eq!(store.last_seq(group).await.unwrap(), 2);
}

#[tokio::test]
async fn listing_by_id_bounds_matches_ids_from_any_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = (conference(&store, "a").await, conference(&store, "b").await);
    // Interleaved, so each group's ids have holes that belong to the other group.
    let mut ids = Vec::new();
    for i in 0..30 {
        let group = if i % 3 == 0 { b } else { a };
        let m = store
            .append_message(message(group, None, &format!("m{i}")))
            .await
            .unwrap()
            .message;
        ids.push((group, m.message_id));
    }
    let in_a: Vec<u64> = ids
        .iter()
        .filter(|(g, _)| *g == a)
        .map(|&(_, id)| id)
        .collect();
    let list = |before: Option<u64>, after: Option<u64>, above_seq: u64, oldest_first: bool| {
        let store = &store;
        async move {
            let query = confer_core::model::MessageQuery {
                before,
                after,
                above_seq,
                offset: 0,
                limit: 100,
                max_bytes: usize::MAX,
                oldest_first,
            };
            let got = store.list_messages(a, query).await.unwrap().messages;
            got.iter().map(|m| m.message_id).collect::<Vec<u64>>()
        }
    };
    let max = ids.iter().map(|&(_, id)| id).max().unwrap();
    // Every bound, whether a message of this group, of the other one, or of none.
    for bound in 0..=max + 2 {
        let below: Vec<u64> = in_a.iter().copied().filter(|&id| id < bound).collect();
        let above: Vec<u64> = in_a.iter().copied().filter(|&id| id > bound).collect();
        assert_eq!(
            list(None, Some(bound), 0, true).await,
            above,
            "after {bound}"
        );
        let mut newest_first = below.clone();
        newest_first.reverse();
        assert_eq!(
            list(Some(bound), None, 0, false).await,
            newest_first,
            "before {bound}"
        );
    }
    // Both bounds, and what the user cleared (seq 1..=5) hidden.
    let (lo, hi) = (in_a[2], in_a[12]);
    let between: Vec<u64> = in_a[5..12].to_vec();
    assert_eq!(list(Some(hi), Some(lo), 5, true).await, between);
    assert_eq!(
        list(Some(u64::MAX), Some(u64::MAX), 0, true).await,
        Vec::<u64>::new()
    );
    assert_eq!(list(Some(u64::MAX), None, 0, true).await, in_a);
}

#[tokio::test]
async fn posting_counts_as_having_read_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let group = store
        .create_conversation(NewConversation {
            alias: None,
            kind: ConversationKind::Group,
            name: None,
            avatar_url: None,
            owner: Uin(1),
            creator: Uin(1),
            occupants: BTreeSet::from([Uin(1), Uin(2)]),
            created_at_us: 1,
        })
        .await
        .unwrap()
        .group_id;
    let store = &store;
    let post = |from: u64| {
        let mut m = message(group, None, "x");
        m.sender = Uin(from);
        store.append_message(m)
    };
    let unread = |uin: u64| async move {
        let listings = store.groups_of(Uin(uin)).await.unwrap();
        listings
            .iter()
            .find(|l| l.conversation.group_id == group)
            .map(|l| l.unread)
            .unwrap()
    };
    post(1).await.unwrap();
    post(1).await.unwrap();
    assert_eq!((unread(1).await, unread(2).await), (0, 2));
    post(2).await.unwrap();
    assert_eq!((unread(1).await, unread(2).await), (1, 0));
    post(1).await.unwrap();
    assert_eq!((unread(1).await, unread(2).await), (0, 1));
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
async fn listings_stop_at_their_byte_limit_and_say_there_is_more() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let group = conference(&store, "big").await;
    let text = "x".repeat(1000);
    for _ in 0..10 {
        store
            .append_message(message(group, None, &text))
            .await
            .unwrap();
    }
    let one = store
        .messages_after(group, 0, 1, usize::MAX)
        .await
        .unwrap()
        .messages[0]
        .listed_bytes();
    assert!(one > 2000, "text and body both count: {one}");
    // Room for three and a half: three are listed, and there is more.
    let page = store
        .messages_after(group, 0, 100, one * 7 / 2)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 3);
    assert!(page.more);
    // The next page goes on from the last one.
    let next = store
        .messages_after(group, page.messages[2].seq, 100, one * 7 / 2)
        .await
        .unwrap();
    assert_eq!(next.messages[0].seq, 4);
    // A limit smaller than one message still lists one, so paging moves on.
    let tiny = store.messages_after(group, 0, 100, 1).await.unwrap();
    assert_eq!((tiny.messages.len(), tiny.more), (1, true));
    // The count limit says "more" too, and an exact fit does not.
    let counted = store.messages_after(group, 0, 4, usize::MAX).await.unwrap();
    assert_eq!((counted.messages.len(), counted.more), (4, true));
    let all = store
        .messages_after(group, 0, 10, usize::MAX)
        .await
        .unwrap();
    assert_eq!((all.messages.len(), all.more), (10, false));
    // The chat listing, newest first, stops the same way.
    let query = confer_core::model::MessageQuery {
        before: None,
        after: None,
        above_seq: 0,
        offset: 0,
        limit: 100,
        max_bytes: one * 7 / 2,
        oldest_first: false,
    };
    let newest = store.list_messages(group, query).await.unwrap();
    let seqs: Vec<u64> = newest.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![10, 9, 8]);
    assert!(newest.more);
}

#[tokio::test]
async fn a_message_keeps_its_files_across_a_reopen_and_loses_them_when_deleted() {
    use confer_core::model::{MessageFile, MessageQuery};
    let dir = tempfile::tempdir().unwrap();
    let files = vec![
        MessageFile {
            item_id: 4,
            filename: "what? #1 é.png".into(),
            mimetype: "image/png".into(),
            size: 1234,
        },
        MessageFile {
            item_id: 9,
            filename: "notes.txt".into(),
            mimetype: "text/plain".into(),
            size: 0,
        },
    ];
    let (group, id) = {
        let store = open(dir.path());
        let group = conference(&store, "c1").await;
        let appended = store
            .append_message(NewMessage {
                files: files.clone(),
                ..message(group, None, "look")
            })
            .await
            .unwrap();
        assert_eq!(appended.message.files, files);
        (group, appended.message.message_id)
    };
    let store = open(dir.path());
    assert_eq!(store.message(id).await.unwrap().unwrap().files, files);
    let query = MessageQuery {
        before: None,
        after: None,
        above_seq: 0,
        offset: 0,
        limit: 10,
        max_bytes: usize::MAX,
        oldest_first: true,
    };
    let listed = store.list_messages(group, query).await.unwrap();
    assert_eq!(listed.messages[0].files, files);
    assert_eq!(
        store
            .messages_after(group, 0, 10, usize::MAX)
            .await
            .unwrap()
            .messages[0]
            .files,
        files
    );
    let deleted = store.delete_message(id, 20).await.unwrap();
    assert!(deleted.files.is_empty());
}

#[tokio::test]
async fn a_message_and_its_push_entry_commit_together_and_deliveries_outlive_a_reopen() {
    use confer_core::model::{DeviceToken, PushDelivery, PushKind};
    use confer_core::store::{DeviceTokenStore, PushStore};
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
