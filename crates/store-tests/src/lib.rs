//! # confer-store-tests: the storage test suite, one body per test for every backend
//!
//! Each `pub async fn` here is one test of the storage contract (`confer_core::store`),
//! written once against a [`Backend`] (a way to open the same database again and again)
//! and run by each backend's own tests through [`storage_suite!`]: the SQLite backend on
//! a temporary folder, the PostgreSQL backend on a fresh database of the server the test
//! command starts. What only one backend has (SQLite's commit linger, its nonce window's
//! size, its reader pool; PostgreSQL's several nodes) is tested beside that backend.
//!
//! This crate exists only for tests, so it may unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use confer_core::model::{ConversationKind, NewAccount, NewConversation, NewMessage};
use confer_core::store::{AccountStore, ConversationStore, MessageStore, Storage, StoreError};
use confer_core::{GroupId, Json, Uin};

/// One database of one backend, opened as often as a test likes: every [`Backend::open`]
/// of the same value opens the same data (a reopen after a restart).
pub trait Backend: Send + Sync + 'static {
    type Store: Storage + 'static;
    fn open(&self) -> Self::Store;
}

/// Each test of the suite as a `#[tokio::test]` over the backend `$backend` makes: an
/// expression of type `Option<impl Backend>`, `None` when the backend is not available
/// here (the expression says why).
#[macro_export]
macro_rules! storage_suite {
    ($backend:expr) => {
        $crate::storage_suite!(@each $backend;
            concurrent_appends_get_gapless_sequences_and_survive_reopen,
            a_repeated_nonce_returns_the_original_message,
            a_retry_is_recognized_after_a_restart_but_not_from_another_sender,
            a_failing_write_does_not_undo_its_batch_neighbours,
            duplicate_logins_and_aliases_conflict,
            reads_after_each_change_see_it_although_conversations_are_cached,
            listing_by_id_bounds_matches_ids_from_any_group,
            posting_counts_as_having_read_what_came_before,
            listings_stop_at_their_byte_limit_and_say_there_is_more,
            a_message_keeps_its_files_across_a_reopen_and_loses_them_when_deleted,
            read_marks_follow_receipts_and_posts_and_survive_a_reopen,
            a_chosen_presence_is_stored_and_read_for_many_users_at_once,
            changes_are_listed_once_in_order_and_numbers_rise_across_a_reopen
        );
    };
    (@each $backend:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                if let Some(backend) = $backend {
                    $crate::$name(backend).await;
                }
            }
        )*
    };
}

pub async fn conference<S: ConversationStore>(store: &S, alias: &str) -> GroupId {
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

pub fn message(group: GroupId, nonce: Option<&str>, text: &str) -> NewMessage {
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

/// 200 concurrent appends get seqs 1..=200; after a flush and a reopen all are there and
/// the next one is 201.
pub async fn concurrent_appends_get_gapless_sequences_and_survive_reopen<B: Backend>(backend: B) {
    let group = {
        let store = Arc::new(backend.open());
        let group = conference(&*store, "c1").await;
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
    let store = backend.open();
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

pub async fn a_repeated_nonce_returns_the_original_message<B: Backend>(backend: B) {
    let store = backend.open();
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

pub async fn a_retry_is_recognized_after_a_restart_but_not_from_another_sender<B: Backend>(
    backend: B,
) {
    // Created now: a window kept by time (SQLite refills its window on open with the
    // last 24 hours) holds it.
    let now = confer_core::model::now_us();
    let post = |group: GroupId, sender: u64| NewMessage {
        sender: Uin(sender),
        created_at_us: now,
        ..message(group, Some("n1"), "a")
    };
    let (group, first) = {
        let store = backend.open();
        let group = conference(&store, "c1").await;
        (group, store.append_message(post(group, 1)).await.unwrap())
    };
    let store = backend.open();
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

pub async fn a_failing_write_does_not_undo_its_batch_neighbours<B: Backend>(backend: B) {
    let store = Arc::new(backend.open());
    let group = conference(&*store, "c1").await;
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

pub async fn duplicate_logins_and_aliases_conflict<B: Backend>(backend: B) {
    let store = backend.open();
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

pub async fn reads_after_each_change_see_it_although_conversations_are_cached<B: Backend>(
    backend: B,
) {
    let store = backend.open();
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

pub async fn listing_by_id_bounds_matches_ids_from_any_group<B: Backend>(backend: B) {
    let store = backend.open();
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
                changed_after: None,
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

pub async fn posting_counts_as_having_read_what_came_before<B: Backend>(backend: B) {
    let store = backend.open();
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

pub async fn listings_stop_at_their_byte_limit_and_say_there_is_more<B: Backend>(backend: B) {
    let store = backend.open();
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
        changed_after: None,
    };
    let newest = store.list_messages(group, query).await.unwrap();
    let seqs: Vec<u64> = newest.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![10, 9, 8]);
    assert!(newest.more);
}

pub async fn a_message_keeps_its_files_across_a_reopen_and_loses_them_when_deleted<B: Backend>(
    backend: B,
) {
    use confer_core::model::{MessageFile, MessageQuery};
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
        let store = backend.open();
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
    let store = backend.open();
    assert_eq!(store.message(id).await.unwrap().unwrap().files, files);
    let query = MessageQuery {
        before: None,
        after: None,
        above_seq: 0,
        offset: 0,
        limit: 10,
        max_bytes: usize::MAX,
        oldest_first: true,
        changed_after: None,
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

pub async fn read_marks_follow_receipts_and_posts_and_survive_a_reopen<B: Backend>(backend: B) {
    use confer_core::model::ReadMark;
    let group = {
        let store = backend.open();
        let group = store
            .create_conversation(NewConversation {
                alias: None,
                kind: ConversationKind::Group,
                name: None,
                avatar_url: None,
                owner: Uin(1),
                creator: Uin(1),
                occupants: BTreeSet::from([Uin(1), Uin(2), Uin(3)]),
                created_at_us: 1,
            })
            .await
            .unwrap()
            .group_id;
        for from in [1, 1, 3] {
            let mut m = message(group, None, "x");
            m.sender = Uin(from);
            store.append_message(m).await.unwrap();
        }
        let mut state = store.member_state(group, Uin(2)).await.unwrap().unwrap();
        state.received_seq = 2;
        store.set_member_state(group, Uin(2), state).await.unwrap();
        store.flush().await.unwrap();
        group
    };
    let store = backend.open();
    let mut marks = store.read_marks(group, 1).await.unwrap();
    marks.sort_by_key(|m| m.uin);
    let mark = |uin, received_seq, seen_seq| ReadMark {
        uin: Uin(uin),
        received_seq,
        seen_seq,
    };
    // 1 posted up to seq 2, 3 posted seq 3 (posting counts as seen), 2 received up to 2.
    assert_eq!(marks, vec![mark(1, 0, 2), mark(2, 2, 0), mark(3, 0, 3)]);
    // Posts before `from_seq` are not read.
    let mut marks = store.read_marks(group, 3).await.unwrap();
    marks.sort_by_key(|m| m.uin);
    assert_eq!(marks[0], mark(1, 0, 0));
}

pub async fn a_chosen_presence_is_stored_and_read_for_many_users_at_once<B: Backend>(backend: B) {
    let store = backend.open();
    for login in ["a", "b"] {
        store
            .create_account(NewAccount {
                uin: None,
                login: login.into(),
                name: None,
                password_hash: "x".into(),
                created_at_us: 1,
            })
            .await
            .unwrap();
    }
    let a = store.account_by_login("a").await.unwrap().unwrap().uin;
    let b = store.account_by_login("b").await.unwrap().unwrap().uin;
    store.set_presence(b, 5, "lunch".into()).await.unwrap();
    let found = store.presences(vec![a, b, Uin(999_999)]).await.unwrap();
    assert_eq!(found.len(), 2, "unknown users are left out");
    assert_eq!(
        (found[0].online_status, found[0].message_status.as_str()),
        (1, "")
    );
    assert_eq!(
        (found[1].online_status, found[1].message_status.as_str()),
        (5, "lunch")
    );
}

fn changes_after(since: u64, limit: usize) -> confer_core::model::MessageQuery {
    confer_core::model::MessageQuery {
        limit,
        max_bytes: usize::MAX,
        changed_after: Some(since),
        ..Default::default()
    }
}

/// Catching up by change number: each change is listed once, in change order, page by
/// page; an edited message moves past the new ones; numbers keep rising after a reopen.
pub async fn changes_are_listed_once_in_order_and_numbers_rise_across_a_reopen<B: Backend>(
    backend: B,
) {
    let (group, ids) = {
        let store = backend.open();
        let group = conference(&store, "room").await;
        let mut ids = Vec::new();
        for text in ["a", "b", "c"] {
            let m = store
                .append_message(message(group, None, text))
                .await
                .unwrap();
            assert_eq!(m.message.change_seq, m.message.message_id);
            ids.push(m.message.message_id);
        }
        let edited = store
            .edit_message(ids[0], Some("a2".into()), None, 20)
            .await
            .unwrap();
        assert!(
            edited.change_seq > ids[2],
            "an edit takes a new, larger number"
        );
        let deleted = store.delete_message(ids[1], 21).await.unwrap();
        assert!(deleted.change_seq > edited.change_seq);
        store.flush().await.unwrap();
        (group, ids)
    };
    let store = backend.open();
    let mut seen = Vec::new();
    let mut since = ids[0];
    loop {
        let page = store
            .list_messages(group, changes_after(since, 1))
            .await
            .unwrap();
        seen.extend(page.messages.iter().map(|m| (m.text.clone(), m.deleted)));
        match page.messages.last() {
            Some(m) if page.more => since = m.change_seq,
            _ => break,
        }
    }
    assert_eq!(
        seen,
        [
            (Some("c".into()), false),
            (Some("a2".into()), false),
            (None, true)
        ]
    );
    let next = store
        .append_message(message(group, None, "d"))
        .await
        .unwrap();
    let all = store
        .list_messages(group, changes_after(0, 10))
        .await
        .unwrap();
    let largest = all.messages.iter().map(|m| m.change_seq).max().unwrap();
    assert_eq!(
        largest, next.message.message_id,
        "after a reopen, numbers go on rising"
    );
}
