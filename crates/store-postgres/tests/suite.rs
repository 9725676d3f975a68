//! The storage suite (`confer-store-tests`) on PostgreSQL, each test on a fresh database
//! of the server `CONFER_TEST_POSTGRES_URL` names (scripts/suite-scale starts one), then
//! what only this backend has: several stores over one database, as several nodes are.
//!
//! Without `CONFER_TEST_POSTGRES_URL` each test says it skipped and passes, unless
//! `CONFER_REQUIRE_SERVICES` is set (the test command sets it), when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use confer_core::model::NewMessage;
use confer_core::store::{ConversationStore, MessageStore};
use confer_store_postgres::{PgOptions, PgStore};
use confer_store_tests::pg::TestDatabase;
use confer_store_tests::{conference, message, Backend};

/// A database of its own on the test server, dropped when the test ends.
struct PgBackend(TestDatabase);

impl PgBackend {
    /// A fresh database, or `None` (saying why) when no server is configured.
    fn fresh() -> Option<PgBackend> {
        TestDatabase::fresh("confer_test").map(PgBackend)
    }
}

impl Backend for PgBackend {
    type Store = PgStore;
    fn open(&self) -> PgStore {
        PgStore::open(
            &self.0.url,
            PgOptions {
                pool_size: 8,
                ..PgOptions::default()
            },
        )
        .unwrap()
    }
}

confer_store_tests::storage_suite!(PgBackend::fresh());

/// Three stores over one database, as three nodes are, post to one conversation at once:
/// seqs are 1..=N without gap or duplicate, and ids rise with seqs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_posting_to_one_conversation_get_seqs_without_gaps() {
    let Some(backend) = PgBackend::fresh() else {
        return;
    };
    let nodes: Vec<Arc<PgStore>> = (0..3).map(|_| Arc::new(backend.open())).collect();
    let group = conference(&*nodes[0], "shared").await;
    let mut tasks = Vec::new();
    for i in 0..150 {
        let node = nodes[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            node.append_message(message(group, None, &format!("from node {}", i % 3)))
                .await
                .unwrap()
                .message
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.unwrap());
    }
    let seqs: BTreeSet<u64> = acked.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=150).collect::<BTreeSet<u64>>());
    let stored = nodes[1]
        .messages_after(group, 0, 1000, usize::MAX)
        .await
        .unwrap()
        .messages;
    assert_eq!(stored.len(), 150, "every acked message stored once");
    let ids: Vec<u64> = stored.iter().map(|m| m.message_id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "ids rise with seqs");
}

/// The same retry (same sender, group and nonce) reaching two nodes at once is stored
/// once; both answers are that message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_another_node_answers_with_the_original() {
    let Some(backend) = PgBackend::fresh() else {
        return;
    };
    let (a, b) = (Arc::new(backend.open()), Arc::new(backend.open()));
    let group = conference(&*a, "retries").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let new: NewMessage = message(group, Some("the-nonce"), "once");
            node.append_message(new).await.unwrap()
        }));
    }
    let mut ids = BTreeSet::new();
    let mut originals = 0;
    for t in tasks {
        let appended = t.await.unwrap();
        ids.insert(appended.message.message_id);
        if !appended.duplicate {
            originals += 1;
        }
    }
    assert_eq!((ids.len(), originals), (1, 1));
    assert_eq!(b.last_seq(group).await.unwrap(), 1);
}

/// Three nodes post to three groups at once while a member catches up by change number,
/// each time from the largest number it was shown (as a client does): when the posts are
/// done it has been shown every group's last message, and no number was given twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catching_up_while_three_nodes_post_to_several_groups_misses_nothing() {
    use confer_core::model::{ConversationKind, NewConversation};
    use confer_core::{GroupId, Uin};
    let Some(backend) = PgBackend::fresh() else {
        return;
    };
    let nodes: Vec<Arc<PgStore>> = (0..3).map(|_| Arc::new(backend.open())).collect();
    let mut groups = Vec::new();
    for _ in 0..3 {
        let created = nodes[0]
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
            .unwrap();
        groups.push(created.group_id);
    }
    let mut tasks = Vec::new();
    for i in 0..120 {
        let node = nodes[i % 3].clone();
        let group = groups[(i / 3) % 3];
        tasks.push(tokio::spawn(async move {
            node.append_message(message(group, None, "x"))
                .await
                .unwrap()
                .message
        }));
    }
    let reader = nodes[1].clone();
    let mut shown: BTreeMap<GroupId, u64> = BTreeMap::new();
    let mut since = 0;
    while !tasks.iter().all(|t| t.is_finished()) {
        let changed = reader.groups_changed(Uin(2), since).await.unwrap();
        since = catch_up(&mut shown, since, changed);
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.unwrap());
    }
    let changed = reader.groups_changed(Uin(2), since).await.unwrap();
    catch_up(&mut shown, since, changed);
    let numbers: BTreeSet<u64> = acked.iter().map(|m| m.change_seq).collect();
    assert_eq!(numbers.len(), acked.len(), "no number is given twice");
    for group in &groups {
        let last = acked
            .iter()
            .filter(|m| m.group_id == *group)
            .map(|m| m.change_seq)
            .max()
            .unwrap();
        assert_eq!(shown.get(group), Some(&last), "group {group:?}");
    }
}

/// Note each group's number shown; the next `since` (the largest number shown).
fn catch_up(
    shown: &mut BTreeMap<confer_core::GroupId, u64>,
    since: u64,
    changed: confer_core::model::ChangedGroups,
) -> u64 {
    let mut next = since;
    for g in changed.groups {
        let seen = shown.entry(g.conversation.group_id).or_default();
        *seen = (*seen).max(g.change_seq);
        next = next.max(g.change_seq);
    }
    next
}

/// Two nodes drain one outbox at once: both expand the same entries (each is turned into
/// deliveries once), then claim in small batches until nothing is due: every delivery is
/// claimed by exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_draining_one_outbox_claim_each_delivery_once() {
    use confer_core::model::PushKind;
    use confer_core::store::PushStore;
    let Some(backend) = PgBackend::fresh() else {
        return;
    };
    let (a, b) = (Arc::new(backend.open()), Arc::new(backend.open()));
    let group = conference(&*a, "outbox").await;
    for i in 0..20 {
        a.append_message(NewMessage {
            push_to: vec![confer_core::Uin(2)],
            ..message(group, None, &format!("m{i}"))
        })
        .await
        .unwrap();
    }
    let entries = a.push_entries(100).await.unwrap();
    assert_eq!(entries.len(), 20);
    let mut tasks = Vec::new();
    for node in [a.clone(), b.clone()] {
        let entries = entries.clone();
        tasks.push(tokio::spawn(async move {
            for entry in entries {
                // Five devices each.
                let deliveries = (0..5)
                    .map(|t| {
                        confer_store_tests::delivery(
                            PushKind::Message,
                            group,
                            entry.ref_id,
                            &format!("tok{t}"),
                        )
                    })
                    .collect();
                node.expand_push(entry.id, deliveries, None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut tasks = Vec::new();
    for (name, node) in [("a", a.clone()), ("b", b.clone())] {
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = node
                    .claim_pushes(name, &[1], 100, 1_000_000, 7)
                    .await
                    .unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(claimed.into_iter().map(|d| (d.message_id, d.token)));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 100, "20 entries × 5 devices, each claimed once");
    assert_eq!(distinct.len(), 100);
    assert!(a.push_entries(100).await.unwrap().is_empty());
}
