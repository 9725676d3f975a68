//! # confer-store-tests: the storage test suite, one body per test for every backend
//!
//! Each `pub async fn` here is one test of the storage contract (`confer_core::store`),
//! written once against a [`Backend`] (a way to open the same database again and again)
//! and run by each backend's own tests through [`storage_suite!`]: the SQLite backend on
//! a temporary folder, the PostgreSQL backend on a fresh database of the server the test
//! command starts. What only one backend has (SQLite's commit linger, its nonce window's
//! size, its reader pool; PostgreSQL's several nodes) is tested beside that backend.
//!
//! [`pg`] makes a PostgreSQL database of its own for one test (the store's suite and the
//! server's several-node tests both use it).
//!
//! This crate exists only for tests, so it may unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod pg;

use std::collections::BTreeSet;
use std::sync::Arc;

use confer_core::hub::{HubBatchItem, HubGroup, HubLinkKind};
use confer_core::model::{
    now_us, Attachment, AttachmentState, ConversationKind, NewAccount, NewConversation, NewMessage,
    TokenRecord,
};
use confer_core::store::{
    AccountStore, AttachmentStore, ConversationStore, HubStore, MessageStore, Storage, StoreError,
    TokenStore,
};
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
            concurrent_retries_over_several_conversations_store_each_message_once,
            duplicate_logins_and_aliases_conflict,
            reads_after_each_change_see_it_although_conversations_are_cached,
            listing_by_id_bounds_matches_ids_from_any_group,
            posting_counts_as_having_read_what_came_before,
            listings_stop_at_their_byte_limit_and_say_there_is_more,
            a_message_keeps_its_files_across_a_reopen_and_loses_them_when_deleted,
            read_marks_follow_receipts_and_posts_and_survive_a_reopen,
            a_chosen_presence_is_stored_and_read_for_many_users_at_once,
            hub_keys_boxes_and_their_removal_survive_a_reopen,
            a_hub_roster_is_stored_whole_and_names_teachers_by_email_in_any_case,
            hub_links_are_kept_once_but_an_edge_mark_is_replaced,
            a_hub_batch_is_taken_once_as_prepared_and_moves_the_marks,
            hub_logs_and_settings_keep_their_order_and_are_removed_by_box,
            hub_attachments_change_owner_and_accounts_become_admins,
            changes_are_listed_once_in_order_and_numbers_rise_across_a_reopen,
            groups_changed_since_a_number_lists_changed_groups_and_those_left,
            a_profile_is_replaced_and_cleared,
            a_message_and_its_push_entry_commit_together_and_deliveries_outlive_a_reopen,
            an_outcome_recorded_after_its_delivery_was_replaced_leaves_the_new_one,
            a_claimed_delivery_is_no_one_elses_until_its_lease_runs_out,
            a_revoked_token_is_in_the_revocation_log_and_an_expired_one_is_not
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

/// 3 conversations, 60 nonces each sent three times at once (so copies of one retry
/// share a batch where a backend batches), among appends to a conversation that does not
/// exist: each nonce is stored once and every copy answers with that one message, seqs
/// are 1..=60 in each conversation, and ids rise with seqs.
pub async fn concurrent_retries_over_several_conversations_store_each_message_once<B: Backend>(
    backend: B,
) {
    let store = Arc::new(backend.open());
    let mut groups = Vec::new();
    for alias in ["r1", "r2", "r3"] {
        groups.push(conference(&*store, alias).await);
    }
    let mut tasks = Vec::new();
    for copy in 0..3 {
        for (g, &group) in groups.iter().enumerate() {
            for i in 0..60 {
                let store = store.clone();
                let nonce = format!("n{g}-{i}");
                tasks.push(tokio::spawn(async move {
                    let posted = store
                        .append_message(message(group, Some(&nonce), &format!("{copy}")))
                        .await
                        .unwrap();
                    let missing = store
                        .append_message(message(GroupId(999_999), Some(&nonce), "x"))
                        .await;
                    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
                    (nonce, posted)
                }));
            }
        }
    }
    let mut by_nonce: std::collections::HashMap<String, Vec<_>> = Default::default();
    for t in tasks {
        let (nonce, posted) = t.await.unwrap();
        by_nonce.entry(nonce).or_default().push(posted);
    }
    assert_eq!(by_nonce.len(), 180);
    for (nonce, copies) in &by_nonce {
        assert_eq!(copies.len(), 3);
        assert_eq!(copies.iter().filter(|a| !a.duplicate).count(), 1, "{nonce}");
        let ids: BTreeSet<u64> = copies.iter().map(|a| a.message.message_id).collect();
        assert_eq!(ids.len(), 1, "every copy of {nonce} names one message");
        let texts: BTreeSet<_> = copies.iter().map(|a| a.message.text.clone()).collect();
        assert_eq!(
            texts.len(),
            1,
            "every copy of {nonce} answers the stored text"
        );
    }
    for &group in &groups {
        let stored = store
            .messages_after(group, 0, 1000, usize::MAX)
            .await
            .unwrap()
            .messages;
        let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=60).collect::<Vec<u64>>());
        assert!(stored.windows(2).all(|w| w[0].message_id < w[1].message_id));
    }
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

async fn account<S: AccountStore>(store: &S, login: &str) -> Uin {
    store
        .create_account(NewAccount {
            uin: None,
            login: login.into(),
            name: None,
            password_hash: "x".into(),
            created_at_us: 1,
        })
        .await
        .unwrap()
        .uin
}

/// Keys are listed newest first and counted on their box; `replace` drops the others;
/// removing keys keeps the box, removing the box forgets it; all of it survives a reopen.
pub async fn hub_keys_boxes_and_their_removal_survive_a_reopen<B: Backend>(backend: B) {
    {
        let store = backend.open();
        store.hub_add_key("b1", [1; 32], false, 10).await.unwrap();
        store.hub_add_key("b1", [2; 32], false, 20).await.unwrap();
        store.hub_add_key("b2", [3; 32], false, 30).await.unwrap();
        // The same key again only refreshes it.
        store.hub_add_key("b2", [3; 32], false, 40).await.unwrap();
        store.flush().await.unwrap();
    }
    let store = backend.open();
    assert_eq!(store.hub_keys("b1").await.unwrap(), vec![[2; 32], [1; 32]]);
    assert_eq!(store.hub_keys("b2").await.unwrap(), vec![[3; 32]]);
    assert!(store.hub_keys("nobody").await.unwrap().is_empty());
    let boxes = store.hub_boxes().await.unwrap();
    let listed: Vec<(&str, i64, usize)> = boxes
        .iter()
        .map(|b| (b.boxid.as_str(), b.created_at_us, b.keys))
        .collect();
    assert_eq!(listed, vec![("b1", 10, 2), ("b2", 30, 1)]);
    assert!(boxes[0].roster.is_none() && boxes[0].last_sync == 0);

    store.hub_add_key("b1", [4; 32], true, 50).await.unwrap();
    assert_eq!(store.hub_keys("b1").await.unwrap(), vec![[4; 32]]);
    assert_eq!(
        store.hub_box("b1").await.unwrap().unwrap().created_at_us,
        10
    );

    assert!(store.hub_remove_keys("b1").await.unwrap());
    assert!(!store.hub_remove_keys("nobody").await.unwrap());
    let b1 = store.hub_box("b1").await.unwrap().expect("the box stays");
    assert_eq!(b1.keys, 0);

    store.hub_queue_setting("b2", "k", "v", 1).await.unwrap();
    assert!(store.hub_remove_box("b2").await.unwrap());
    assert!(!store.hub_remove_box("b2").await.unwrap());
    assert!(store.hub_box("b2").await.unwrap().is_none());
    assert!(store.hub_keys("b2").await.unwrap().is_empty());
    assert!(store.hub_settings("b2").await.unwrap().is_empty());
    // A box registered again starts afresh.
    store.hub_add_key("b2", [5; 32], false, 60).await.unwrap();
    assert_eq!(
        store.hub_box("b2").await.unwrap().unwrap().created_at_us,
        60
    );
}

/// A roster creates its box, is replaced by the next one, and its teachers are found by
/// email whatever its case; a teacher's new email replaces the old.
pub async fn a_hub_roster_is_stored_whole_and_names_teachers_by_email_in_any_case<B: Backend>(
    backend: B,
) {
    {
        let store = backend.open();
        store
            .hub_set_roster(
                "b1",
                Json::from_validated("{\"v\":1}"),
                "hint1".into(),
                "10.0.0.1".into(),
                vec![
                    ("t.one".into(), "One@School.example".into()),
                    ("t.two".into(), "two@school.example".into()),
                ],
                100,
            )
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    let store = backend.open();
    let b1 = store
        .hub_box("b1")
        .await
        .unwrap()
        .expect("the roster made the box");
    assert_eq!(b1.roster.as_ref().map(Json::as_str), Some("{\"v\":1}"));
    assert_eq!(
        (
            b1.roster_at_us,
            b1.roster_key.as_deref(),
            b1.siteip.as_deref()
        ),
        (Some(100), Some("hint1"), Some("10.0.0.1"))
    );
    assert_eq!(b1.created_at_us, 100);
    for email in [
        "one@school.example",
        "ONE@SCHOOL.EXAMPLE",
        "One@School.example",
    ] {
        assert_eq!(
            store.hub_teacher_by_email(email).await.unwrap().as_deref(),
            Some("t.one"),
            "{email}"
        );
    }
    assert_eq!(
        store.hub_teacher_by_email("x@y.example").await.unwrap(),
        None
    );

    store
        .hub_set_roster(
            "b1",
            Json::from_validated("{\"v\":2}"),
            "hint2".into(),
            "10.0.0.2".into(),
            vec![("t.one".into(), "new@school.example".into())],
            200,
        )
        .await
        .unwrap();
    let b1 = store.hub_box("b1").await.unwrap().unwrap();
    assert_eq!(b1.roster.as_ref().map(Json::as_str), Some("{\"v\":2}"));
    assert_eq!((b1.roster_at_us, b1.created_at_us), (Some(200), 100));
    assert_eq!(
        store
            .hub_teacher_by_email("NEW@school.example")
            .await
            .unwrap()
            .as_deref(),
        Some("t.one")
    );
    assert_eq!(
        store
            .hub_teacher_by_email("one@school.example")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .hub_teacher_by_email("two@school.example")
            .await
            .unwrap()
            .as_deref(),
        Some("t.two"),
        "a teacher the new roster leaves out keeps its email"
    );
}

/// A link is recorded once (the first id wins), per kind; an edge mark is replaced.
pub async fn hub_links_are_kept_once_but_an_edge_mark_is_replaced<B: Backend>(backend: B) {
    {
        let store = backend.open();
        assert!(store
            .hub_set_link(HubLinkKind::EdgeMessage, "b1-7", 70)
            .await
            .unwrap());
        assert!(!store
            .hub_set_link(HubLinkKind::EdgeMessage, "b1-7", 71)
            .await
            .unwrap());
        assert!(store
            .hub_set_link(HubLinkKind::EdgeAttachment, "b1-7", 72)
            .await
            .unwrap());
        assert!(store
            .hub_set_link(HubLinkKind::EdgeMark, "pushed", 5)
            .await
            .unwrap());
        assert!(store
            .hub_set_link(HubLinkKind::EdgeMark, "pushed", 9)
            .await
            .unwrap());
        store.flush().await.unwrap();
    }
    let store = backend.open();
    let link = |kind, key: &'static str| {
        let store = &store;
        async move { store.hub_link(kind, key).await.unwrap() }
    };
    assert_eq!(link(HubLinkKind::EdgeMessage, "b1-7").await, Some(70));
    assert_eq!(link(HubLinkKind::EdgeAttachment, "b1-7").await, Some(72));
    assert_eq!(link(HubLinkKind::EdgeMark, "pushed").await, Some(9));
    assert_eq!(link(HubLinkKind::Course, "b1-7").await, None);
    assert_eq!(link(HubLinkKind::FromHub, "1").await, None);
}

/// A prepared batch is taken once, and only as the `since` it was prepared for; its
/// items are kept until confirmed (handed again when the edge's `stored` is older); the
/// box's conversations keep the marks it moved; a repeated item is stored once.
pub async fn a_hub_batch_is_taken_once_as_prepared_and_moves_the_marks<B: Backend>(backend: B) {
    let item = |message_id, recipient: &str| HubBatchItem {
        message_id,
        recipient: recipient.into(),
    };
    let (g1, g2) = (GroupId(11), GroupId(12));
    {
        let store = backend.open();
        store.hub_add_group("b1", g1).await.unwrap();
        store.hub_add_group("b1", g2).await.unwrap();
        store.hub_add_group("b1", g2).await.unwrap();
        store.hub_add_group("b2", g1).await.unwrap();
        store
            .hub_prepare_batch(
                "b1",
                1000,
                vec![
                    item(5, "sam"),
                    item(3, "ann"),
                    item(5, "sam"),
                    item(5, "ann"),
                ],
                vec![HubGroup {
                    group_id: g2,
                    handed_seq: 42,
                }],
                7,
            )
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    let store = backend.open();
    let mark = |group_id, handed_seq| HubGroup {
        group_id,
        handed_seq,
    };
    assert_eq!(
        store.hub_groups("b1").await.unwrap(),
        vec![mark(g1, 0), mark(g2, 42)]
    );
    assert_eq!(store.hub_groups("b2").await.unwrap(), vec![mark(g1, 0)]);
    let b1 = store.hub_box("b1").await.unwrap().unwrap();
    assert_eq!((b1.last_sync, b1.pending), (7, 3));

    assert!(store.hub_take_batch("b1", 999).await.unwrap().is_empty());
    assert!(store.hub_take_batch("b2", 1000).await.unwrap().is_empty());
    assert_eq!(
        store.hub_take_batch("b1", 1000).await.unwrap(),
        vec![item(3, "ann"), item(5, "ann"), item(5, "sam")]
    );
    assert!(
        store.hub_take_batch("b1", 1000).await.unwrap().is_empty(),
        "a batch is taken once"
    );
    // Handed items are kept until the edge says (`stored`) whether it stored them.
    assert_eq!(store.hub_box("b1").await.unwrap().unwrap().pending, 3);
    store.hub_confirm_batch("b1", Some(999)).await.unwrap();
    store
        .hub_prepare_batch("b1", 1500, vec![item(6, "ann")], Vec::new(), 9)
        .await
        .unwrap();
    assert_eq!(
        store.hub_take_batch("b1", 1500).await.unwrap(),
        vec![
            item(3, "ann"),
            item(5, "ann"),
            item(5, "sam"),
            item(6, "ann")
        ],
        "a batch handed as a later since than the edge stored is handed again"
    );
    store.hub_confirm_batch("b1", Some(1500)).await.unwrap();
    assert_eq!(store.hub_box("b1").await.unwrap().unwrap().pending, 0);
    store
        .hub_prepare_batch("b1", 1600, vec![item(7, "ann")], Vec::new(), 10)
        .await
        .unwrap();
    assert_eq!(store.hub_take_batch("b1", 1600).await.unwrap().len(), 1);
    store.hub_confirm_batch("b1", None).await.unwrap();
    assert_eq!(
        store.hub_box("b1").await.unwrap().unwrap().pending,
        0,
        "without `stored` every handed item is done with"
    );

    // Several takes at once: exactly one gets the batch.
    let store = Arc::new(store);
    store
        .hub_prepare_batch("b1", 2000, vec![item(8, "ann")], Vec::new(), 8)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.hub_take_batch("b1", 2000).await.unwrap()
        }));
    }
    let mut taken = Vec::new();
    for t in tasks {
        taken.extend(t.await.unwrap());
    }
    assert_eq!(taken, vec![item(8, "ann")]);
}

/// Logs are listed oldest first up to a limit, per box; settings get rising ids, are
/// listed per box in order and deleted one at a time, by their own box only.
pub async fn hub_logs_and_settings_keep_their_order_and_are_removed_by_box<B: Backend>(backend: B) {
    let (first, second) = {
        let store = backend.open();
        store
            .hub_add_logs(
                "b1",
                "chat",
                vec![Json::from_validated("[1]"), Json::from_validated("[2]")],
                5,
            )
            .await
            .unwrap();
        store
            .hub_add_logs("b2", "chat", vec![Json::from_validated("[9]")], 6)
            .await
            .unwrap();
        store
            .hub_add_logs("b1", "login", vec![Json::from_validated("{}")], 7)
            .await
            .unwrap();
        let first = store
            .hub_queue_setting("b1", "volume", "3", 100)
            .await
            .unwrap();
        let second = store
            .hub_queue_setting("b1", "volume", "4", 101)
            .await
            .unwrap();
        store
            .hub_queue_setting("", "theme", "dark", 102)
            .await
            .unwrap();
        store.flush().await.unwrap();
        (first, second)
    };
    let store = backend.open();
    let logs = store.hub_logs("b1", 10).await.unwrap();
    let seen: Vec<(&str, &str, i64)> = logs
        .iter()
        .map(|l| (l.kind.as_str(), l.item.as_str(), l.at_us))
        .collect();
    assert_eq!(
        seen,
        vec![("chat", "[1]", 5), ("chat", "[2]", 5), ("login", "{}", 7)]
    );
    assert!(logs.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(store.hub_logs("b1", 2).await.unwrap(), logs[..2].to_vec());
    assert_eq!(store.hub_logs("b2", 10).await.unwrap().len(), 1);
    assert!(store.hub_logs("b3", 10).await.unwrap().is_empty());

    assert!(first.id < second.id);
    assert_eq!(
        (
            first.boxid.as_str(),
            first.key.as_str(),
            first.value.as_str(),
            first.timestamp
        ),
        ("b1", "volume", "3", 100)
    );
    assert_eq!(
        store.hub_settings("b1").await.unwrap(),
        vec![first.clone(), second.clone()]
    );
    let own = store.hub_settings("").await.unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(
        (own[0].key.as_str(), own[0].value.as_str()),
        ("theme", "dark")
    );

    assert!(!store.hub_delete_setting("b2", first.id).await.unwrap());
    assert!(!store.hub_delete_setting("b1", u64::MAX).await.unwrap());
    assert!(store.hub_delete_setting("b1", first.id).await.unwrap());
    assert!(!store.hub_delete_setting("b1", first.id).await.unwrap());
    assert_eq!(store.hub_settings("b1").await.unwrap(), vec![second]);
}

/// An attachment handed on by the hub belongs to its new owner; an unknown one is
/// `NotFound`. The admin flag is off for a new account, set and cleared, and `NotFound`
/// (or simply false) for an unknown one.
pub async fn hub_attachments_change_owner_and_accounts_become_admins<B: Backend>(backend: B) {
    let (alice, item) = {
        let store = backend.open();
        let alice = account(&store, "alice").await;
        let item = store
            .insert_attachment(Attachment {
                item_id: 0,
                owner: Uin(1),
                sha256: "00".repeat(32),
                size: 3,
                mimetype: "text/plain".into(),
                filename: "a.txt".into(),
                state: AttachmentState::Draft,
                created_at_us: 1,
            })
            .await
            .unwrap()
            .item_id;
        store.hub_claim_attachment(item, Uin(77)).await.unwrap();
        assert!(!store.account_is_admin(alice).await.unwrap());
        store.set_account_admin(alice, true).await.unwrap();
        store.flush().await.unwrap();
        (alice, item)
    };
    let store = backend.open();
    assert_eq!(
        store.attachment(item).await.unwrap().unwrap().owner,
        Uin(77)
    );
    assert!(matches!(
        store.hub_claim_attachment(item + 1000, Uin(77)).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.account_is_admin(alice).await.unwrap());
    store.set_account_admin(alice, false).await.unwrap();
    assert!(!store.account_is_admin(alice).await.unwrap());
    assert!(!store.account_is_admin(Uin(999_999)).await.unwrap());
    assert!(!store.account_is_admin(Uin(u64::MAX)).await.unwrap());
    assert!(matches!(
        store.set_account_admin(Uin(999_999), true).await,
        Err(StoreError::NotFound)
    ));
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

/// What `groups_changed` answers after each kind of change: a post, a member's marks, a
/// member removed, a private group hidden and shown again, a group ended; numbers go on
/// rising after a reopen.
pub async fn groups_changed_since_a_number_lists_changed_groups_and_those_left<B: Backend>(
    backend: B,
) {
    use confer_core::model::ChangedGroups;
    let ids = |c: &ChangedGroups| -> (Vec<GroupId>, Vec<GroupId>) {
        (
            c.groups.iter().map(|g| g.conversation.group_id).collect(),
            c.left.iter().map(|l| l.group_id).collect(),
        )
    };
    let newest = |c: &ChangedGroups| -> u64 {
        c.groups
            .iter()
            .map(|g| g.change_seq)
            .chain(c.left.iter().map(|l| l.change_seq))
            .max()
            .unwrap_or(0)
    };
    let (group, private, last) = {
        let store = backend.open();
        let chat = |kind, members: &[u64]| NewConversation {
            alias: None,
            kind,
            name: None,
            avatar_url: None,
            owner: Uin(1),
            creator: Uin(1),
            occupants: members.iter().map(|u| Uin(*u)).collect(),
            created_at_us: 1,
        };
        let group = store
            .create_conversation(chat(ConversationKind::Group, &[1, 2, 3]))
            .await
            .unwrap()
            .group_id;
        let private = store
            .create_conversation(chat(ConversationKind::Private, &[1, 2]))
            .await
            .unwrap()
            .group_id;
        let all = store.groups_changed(Uin(1), 0).await.unwrap();
        assert_eq!(ids(&all), (vec![group, private], vec![]));
        let start = newest(&all);

        // A post changes its group only, with the message's number.
        let posted = store
            .append_message(message(group, None, "hi"))
            .await
            .unwrap()
            .message;
        assert!(posted.change_seq > start);
        let changed = store.groups_changed(Uin(2), start).await.unwrap();
        assert_eq!(ids(&changed), (vec![group], vec![]));
        assert_eq!(changed.groups[0].change_seq, posted.change_seq);
        let after_post = posted.change_seq;

        // A member's marks change the group for that member only.
        let mut state = store.member_state(private, Uin(1)).await.unwrap().unwrap();
        state.muted = true;
        store
            .set_member_state(private, Uin(1), state)
            .await
            .unwrap();
        assert_eq!(
            ids(&store.groups_changed(Uin(1), after_post).await.unwrap()),
            (vec![private], vec![])
        );
        assert_eq!(
            ids(&store.groups_changed(Uin(2), after_post).await.unwrap()),
            (vec![], vec![])
        );

        // A member removed: the group is one it left, and the others see it changed.
        store.remove_occupant(group, Uin(3), 5).await.unwrap();
        let gone = store.groups_changed(Uin(3), after_post).await.unwrap();
        assert_eq!(ids(&gone), (vec![], vec![group]));
        assert!(store.groups_of(Uin(3)).await.unwrap().is_empty());
        let seen = store.groups_changed(Uin(2), after_post).await.unwrap();
        assert_eq!(ids(&seen), (vec![group], vec![]));

        // Hidden from the member who left it, shown again later.
        let before_hide = newest(&store.groups_changed(Uin(1), 0).await.unwrap());
        store
            .set_hidden(private, BTreeSet::from([Uin(2)]), true)
            .await
            .unwrap();
        let conv = store.conversation(private).await.unwrap().unwrap();
        assert_eq!(conv.hidden, BTreeSet::from([Uin(2)]));
        assert!(
            store
                .member_state(private, Uin(2))
                .await
                .unwrap()
                .unwrap()
                .hidden
        );
        let listed: Vec<GroupId> = store
            .groups_of(Uin(2))
            .await
            .unwrap()
            .iter()
            .map(|g| g.conversation.group_id)
            .collect();
        assert_eq!(listed, vec![group], "a hidden group is not listed");
        let hidden = store.groups_changed(Uin(2), before_hide).await.unwrap();
        assert_eq!(ids(&hidden), (vec![], vec![private]));
        let hidden_at = newest(&hidden);
        assert!(matches!(
            store
                .set_hidden(private, BTreeSet::from([Uin(9)]), true)
                .await,
            Err(StoreError::NotFound)
        ));
        store
            .set_hidden(private, BTreeSet::from([Uin(2)]), false)
            .await
            .unwrap();
        let back = store.groups_changed(Uin(2), hidden_at).await.unwrap();
        assert_eq!(ids(&back), (vec![private], vec![]));
        assert!(store
            .conversation(private)
            .await
            .unwrap()
            .unwrap()
            .hidden
            .is_empty());

        // A group ended is one its members left.
        let before_end = newest(&store.groups_changed(Uin(1), 0).await.unwrap());
        store.mark_destroyed(group, 9).await.unwrap();
        let ended = store.groups_changed(Uin(1), before_end).await.unwrap();
        assert_eq!(ids(&ended), (vec![], vec![group]));
        let last = newest(&store.groups_changed(Uin(1), 0).await.unwrap()).max(newest(&ended));
        store.flush().await.unwrap();
        (group, private, last)
    };
    let store = backend.open();
    assert_eq!(
        ids(&store.groups_changed(Uin(3), 0).await.unwrap()),
        (vec![], vec![group]),
        "a departure survives a reopen"
    );
    let posted = store
        .append_message(message(private, None, "again"))
        .await
        .unwrap()
        .message;
    assert!(
        posted.change_seq > last,
        "numbers go on rising after a reopen"
    );
    let changed = store.groups_changed(Uin(2), last).await.unwrap();
    assert_eq!(ids(&changed), (vec![private], vec![]));
}

/// A profile replaces the account's name and avatar, `None` clears them, an unknown
/// account is `NotFound`; it survives a reopen.
pub async fn a_profile_is_replaced_and_cleared<B: Backend>(backend: B) {
    let uin = {
        let store = backend.open();
        let uin = account(&store, "ann").await;
        store
            .set_profile(
                uin,
                Some("Ann".into()),
                Some("https://x.example/a.png".into()),
            )
            .await
            .unwrap();
        store.flush().await.unwrap();
        uin
    };
    let store = backend.open();
    let ann = store.account_by_login("ann").await.unwrap().unwrap();
    assert_eq!(
        (ann.name.as_deref(), ann.avatar_url.as_deref()),
        (Some("Ann"), Some("https://x.example/a.png"))
    );
    store
        .set_profile(uin, Some("Ann B".into()), None)
        .await
        .unwrap();
    let ann = store.account_by_login("ann").await.unwrap().unwrap();
    assert_eq!((ann.name.as_deref(), ann.avatar_url), (Some("Ann B"), None));
    store.set_profile(uin, None, None).await.unwrap();
    assert_eq!(
        store.account_by_login("ann").await.unwrap().unwrap().name,
        None
    );
    assert!(matches!(
        store
            .set_profile(Uin(999_999), Some("x".into()), None)
            .await,
        Err(StoreError::NotFound)
    ));
}

/// One delivery of `kind` to token `tok` of user 2 in `group` (what the core makes of an
/// entry), about message or call `ref_id`.
pub fn delivery(
    kind: confer_core::model::PushKind,
    group: GroupId,
    ref_id: u64,
    token: &str,
) -> confer_core::model::PushDelivery {
    use confer_core::model::{PushDelivery, PushKind};
    let message = kind == PushKind::Message;
    PushDelivery {
        id: 0,
        kind,
        uin: Uin(2),
        token_type: 1,
        token: token.into(),
        group_id: group,
        message_id: message.then_some(ref_id),
        call_id: (!message).then_some(ref_id),
        title: "t".into(),
        body: message.then(|| "hi".to_string()),
        badge: 1,
        created_at_us: 10,
        attempts: 0,
        next_at_us: 0,
    }
}

/// A call's outbox entry from user 1 to user 2 in `group`.
pub fn call_entry(
    kind: confer_core::model::PushKind,
    group: GroupId,
    call_id: u64,
) -> confer_core::model::PushEntry {
    confer_core::model::PushEntry {
        id: 0,
        kind,
        group_id: group,
        ref_id: call_id,
        sender: Uin(1),
        recipients: vec![Uin(2)],
        created_at_us: 10,
    }
}

/// A message's push entry commits with it and survives a reopen (as after kill -9); it is
/// turned into its deliveries once, even when two nodes both read it; a retry is due at
/// its time and keeps its attempts across a reopen; a dead token takes its deliveries.
pub async fn a_message_and_its_push_entry_commit_together_and_deliveries_outlive_a_reopen<
    B: Backend,
>(
    backend: B,
) {
    use confer_core::model::{DeviceToken, PushKind};
    use confer_core::store::{DeviceTokenStore, PushStore};
    let group = {
        let store = backend.open();
        let group = conference(&store, "pushes").await;
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
        // A message without pushes queues nothing.
        store
            .append_message(message(group, None, "quiet"))
            .await
            .unwrap();
        group
    };
    let store = backend.open();
    assert_eq!(
        store.token_holders(vec![Uin(2)]).await.unwrap(),
        vec![Uin(2)]
    );
    let entries = store.push_entries(10).await.unwrap();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(
        (entry.kind, entry.group_id, entry.recipients.clone()),
        (PushKind::Message, group, vec![Uin(2)])
    );
    let d = delivery(PushKind::Message, group, entry.ref_id, "tok");
    store
        .expand_push(entry.id, vec![d.clone()], None)
        .await
        .unwrap();
    // Another node that read the same entry expands nothing more.
    store.expand_push(entry.id, vec![d], None).await.unwrap();
    assert!(store.push_entries(10).await.unwrap().is_empty());
    let due = store
        .claim_pushes("a", &[1, 2, 3, 4], 10, 70, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "one delivery for the one entry");
    assert_eq!(due[0].body.as_deref(), Some("hi"));
    assert_eq!(due[0].message_id, Some(entry.ref_id));
    store.push_retry(due[0].id, 1, 1_000).await.unwrap();
    assert!(store
        .claim_pushes("a", &[1], 999, 2_000, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.next_push_at().await.unwrap(), Some(1_000));
    drop(store);
    let store = backend.open();
    // Only the token types asked for.
    assert!(store
        .claim_pushes("a", &[2, 3], 1_000, 2_000, 10)
        .await
        .unwrap()
        .is_empty());
    let due = store
        .claim_pushes("a", &[1], 1_000, 2_000, 10)
        .await
        .unwrap();
    assert_eq!((due.len(), due[0].attempts), (1, 1));
    store.remove_dead_token("tok").await.unwrap();
    store.release_push_claims("a", 1_000).await.unwrap();
    assert!(store
        .claim_pushes("a", &[1], i64::MAX, i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.device_tokens(Uin(2)).await.unwrap().is_empty());
    assert_eq!(store.next_push_at().await.unwrap(), None);
}

/// The call's push is in flight when the call ends: its cancellation replaces it, and
/// the call push's outcome, recorded after, finishes the call push and not the
/// cancellation (delivery ids are never reused; they were, and the cancellation was
/// never sent).
pub async fn an_outcome_recorded_after_its_delivery_was_replaced_leaves_the_new_one<B: Backend>(
    backend: B,
) {
    use confer_core::model::PushKind;
    use confer_core::store::PushStore;
    let store = backend.open();
    let group = conference(&store, "calls").await;
    store
        .enqueue_push(call_entry(PushKind::Call, group, 7))
        .await
        .unwrap();
    let entries = store.push_entries(10).await.unwrap();
    let ring = delivery(PushKind::Call, group, 7, "tok");
    store
        .expand_push(entries[0].id, vec![ring], None)
        .await
        .unwrap();
    // The call push is claimed and its request under way...
    let ringing = store.claim_pushes("a", &[1], 10, 70, 10).await.unwrap();
    assert_eq!(ringing.len(), 1);
    // ... when the call ends: the cancellation replaces it ...
    store
        .enqueue_push(call_entry(PushKind::CallCancelled, group, 7))
        .await
        .unwrap();
    let entries = store.push_entries(10).await.unwrap();
    let cancel = delivery(PushKind::CallCancelled, group, 7, "tok");
    store
        .expand_push(entries[0].id, vec![cancel], Some(7))
        .await
        .unwrap();
    // ... and then the call push's answer is recorded (delivered, or to be retried).
    store.push_done(ringing[0].id).await.unwrap();
    store.push_retry(ringing[0].id, 1, 10).await.unwrap();
    let due = store.claim_pushes("a", &[1], 20, 80, 10).await.unwrap();
    assert_eq!(due.len(), 1, "the cancellation is still queued");
    assert_eq!(
        (due[0].kind, due[0].call_id, due[0].attempts),
        (PushKind::CallCancelled, Some(7), 0)
    );
}

/// A claimed delivery is no other node's until its lease runs out (its node died), and
/// then it is; a node that restarts takes back at once what it had claimed; an outcome
/// recorded ends the claim.
pub async fn a_claimed_delivery_is_no_one_elses_until_its_lease_runs_out<B: Backend>(backend: B) {
    use confer_core::model::PushKind;
    use confer_core::store::{MessageStore, PushStore};
    let store = backend.open();
    let group = conference(&store, "leases").await;
    let mut ids = Vec::new();
    for i in 0..2 {
        let m = store
            .append_message(NewMessage {
                push_to: vec![Uin(2)],
                ..message(group, None, &format!("m{i}"))
            })
            .await
            .unwrap();
        ids.push(m.message.message_id);
    }
    for entry in store.push_entries(10).await.unwrap() {
        let d = delivery(PushKind::Message, group, entry.ref_id, "tok");
        store.expand_push(entry.id, vec![d], None).await.unwrap();
    }
    let a = store.claim_pushes("a", &[1], 100, 160, 1).await.unwrap();
    assert_eq!(a.len(), 1, "a limit of one claims one");
    let b = store.claim_pushes("b", &[1], 100, 160, 10).await.unwrap();
    assert_eq!(b.len(), 1, "b gets the other one");
    assert_ne!(a[0].id, b[0].id);
    assert!(store
        .claim_pushes("b", &[1], 159, 219, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.next_push_at().await.unwrap(), Some(160));
    // a died: at the lease's end b takes a's delivery.
    let taken = store.claim_pushes("b", &[1], 160, 220, 10).await.unwrap();
    assert_eq!(taken.len(), 2, "both leases ran out");
    // b restarts: both are due again at once, and a's old claim is gone with b's.
    store.release_push_claims("a", 170).await.unwrap();
    assert!(store
        .claim_pushes("c", &[1], 170, 230, 10)
        .await
        .unwrap()
        .is_empty());
    store.release_push_claims("b", 170).await.unwrap();
    let again = store.claim_pushes("c", &[1], 170, 230, 10).await.unwrap();
    assert_eq!(again.len(), 2);
    // A retry ends the claim: due at its own time, not the lease's.
    store.push_retry(again[0].id, 1, 180).await.unwrap();
    store.push_done(again[1].id).await.unwrap();
    let retried = store.claim_pushes("d", &[1], 180, 240, 10).await.unwrap();
    assert_eq!((retried.len(), retried[0].attempts), (1, 1));
    let mut messages: Vec<u64> = [&a[0], &b[0]].iter().filter_map(|d| d.message_id).collect();
    messages.sort_unstable();
    assert_eq!(messages, ids);
}

/// Tokens revoked one at a time and all of a user's at once are in the revocation log
/// (from the time they were revoked, across a reopen, at most as many as asked); a token
/// that merely expires is not, and the live ones are read back with their expiry.
pub async fn a_revoked_token_is_in_the_revocation_log_and_an_expired_one_is_not<B: Backend>(
    backend: B,
) {
    let hour = 3_600_000_000;
    let start = now_us();
    let token = |n: u8, uin: u64, expires_at_us: i64| TokenRecord {
        token_hash: [n; 32],
        uin: Uin(uin),
        login: format!("user{uin}"),
        expires_at_us,
    };
    {
        let store = backend.open();
        for t in [
            token(1, 1, start + hour),
            token(2, 2, start + hour),
            token(3, 2, start + 2 * hour),
            token(4, 3, start + 3 * hour),
            token(5, 4, start + 1),
        ] {
            store.insert_token(t).await.unwrap();
        }
        let all = [[1; 32], [2; 32], [3; 32], [4; 32], [5; 32]].to_vec();
        let mut live = store.live_tokens(all.clone(), start).await.unwrap();
        live.sort();
        assert_eq!(
            live,
            vec![
                ([1; 32], start + hour),
                ([2; 32], start + hour),
                ([3; 32], start + 2 * hour),
                ([4; 32], start + 3 * hour),
                ([5; 32], start + 1),
            ]
        );
        // Token 5 expires; nothing revokes it.
        let later = start + 2;
        assert_eq!(store.live_tokens(vec![[5; 32]], later).await.unwrap(), []);
        assert!(store.delete_token([1; 32]).await.unwrap());
        assert!(!store.delete_token([9; 32]).await.unwrap());
        assert_eq!(store.delete_tokens_of(Uin(2)).await.unwrap(), 2);
        store.flush().await.unwrap();
    }
    let store = backend.open();
    let mut revoked = store.revoked_tokens(start - 1, 100).await.unwrap();
    revoked.sort();
    assert_eq!(revoked, vec![[1; 32], [2; 32], [3; 32]]);
    assert_eq!(store.revoked_tokens(start - 1, 2).await.unwrap().len(), 2);
    assert_eq!(
        store.revoked_tokens(now_us() + hour, 100).await.unwrap(),
        Vec::<[u8; 32]>::new()
    );
    let all = [[1; 32], [2; 32], [3; 32], [4; 32]].to_vec();
    assert_eq!(
        store.live_tokens(all, now_us()).await.unwrap(),
        vec![([4; 32], start + 3 * hour)]
    );
}
