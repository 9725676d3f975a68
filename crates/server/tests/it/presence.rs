//! Presence when its count does not answer (`OnlineState`: Redis out of reach on a
//! cluster): a connect and a close still go through, each after the count's bounded
//! wait, a peer hears online and offline decided from the registry's view instead, and
//! `/metrics` counts each fallback.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use confer_core::bus::{Delivery, Mailbox, MailboxReceiver};
use confer_core::event::EventBody;
use confer_core::model::ConversationKind;
use confer_core::online::OnlineState;
use confer_core::store::StoreResult;
use confer_core::{Principal, SessionId, Uin};
use tokio_util::sync::CancellationToken;

/// A count that never answers.
struct Silent;

#[async_trait]
impl OnlineState for Silent {
    async fn join(&self, _: Uin, _: &SessionId) -> StoreResult<bool> {
        std::future::pending().await
    }

    async fn leave(&self, _: Uin, _: &SessionId) -> StoreResult<Option<bool>> {
        std::future::pending().await
    }
}

/// The online statuses `rx` was told for `uin`, in order.
fn statuses_of(rx: &mut MailboxReceiver, uin: Uin) -> Vec<u8> {
    let mut seen = Vec::new();
    while let Some(delivery) = rx.try_recv() {
        if let Delivery::Event { event, .. } = delivery {
            if let EventBody::UserStatus {
                uin: who,
                online_status,
                ..
            } = &event.body
            {
                if *who == uin {
                    seen.push(*online_status);
                }
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presence_count_that_never_answers_loses_no_online_or_offline() {
    // A connect that waited for the count for good would hang the test: fail instead.
    tokio::time::timeout(std::time::Duration::from_secs(120), without_a_count())
        .await
        .expect("connects and closes went through");
}

async fn without_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let config = confer_server::Config {
        data_dir: dir.path().join("data"),
        ..confer_server::Config::default()
    };
    let core = confer_server::build_core(&config).unwrap();
    let core = Arc::try_unwrap(core)
        .ok()
        .expect("no other handle yet")
        .with_online(Arc::new(Silent));
    let mut who = Vec::new();
    for login in ["pat", "quinn"] {
        let a = core.add_account(login, "pw", None, None).await.unwrap();
        who.push(Principal {
            uin: a.uin,
            login: a.login,
            admin: false,
        });
    }
    let (pat, quinn) = (&who[0], &who[1]);
    core.create_group(
        pat,
        ConversationKind::Private,
        None,
        None,
        None,
        BTreeSet::from([quinn.uin]),
    )
    .await
    .unwrap();

    let (mailbox, mut watching) = Mailbox::bounded(64, CancellationToken::new());
    core.open_chat_session(quinn, "quinn-token", "test".into(), mailbox)
        .await
        .unwrap();
    let (mailbox, _pats) = Mailbox::bounded(64, CancellationToken::new());
    let session = core
        .open_chat_session(pat, "pat-token", "test".into(), mailbox)
        .await
        .unwrap();
    assert_eq!(statuses_of(&mut watching, pat.uin), [1], "pat came online");
    core.close_chat_session(&session).await;
    assert_eq!(statuses_of(&mut watching, pat.uin), [2], "pat went offline");
    // Each of the three (two joins, a leave) is counted where an operator looks.
    assert!(core
        .metrics()
        .render()
        .contains("confer_presence_uncounted_total 3"));
}
