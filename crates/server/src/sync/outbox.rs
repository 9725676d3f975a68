//! Step 6: the messages the edge owes the hub (`POST /messages`), a file named by its
//! `<attachment …>` tag. The hub answers 404 with the ids it could not take; each
//! conversation's mark moves to just before its first of those, so they go again.

use std::collections::{BTreeMap, BTreeSet};

use confer_core::hub::HubLinkKind;
use confer_core::Uin;
use serde_json::{json, Value};

use super::edge::{attachment_kind_name, email_of, Edge, Outgoing};
use super::{fail, Run, StepError, StepId};

const STEP: StepId = (6, "messages");

pub(super) async fn run(
    run: &mut Run<'_>,
    edge: &Edge,
    pending: &[Outgoing],
) -> Result<(), StepError> {
    run.start(STEP)?;
    let boxid = &run.hub.boxid;
    let login = |uin: &Uin| {
        edge.logins
            .get(uin)
            .map(|(l, _)| l.clone())
            .unwrap_or_default()
    };
    let items: Vec<Value> = pending
        .iter()
        .map(|o| {
            let m = &o.message;
            let (text, attachment) = match m.files.first() {
                Some(f) => {
                    let kind = attachment_kind_name(&f.mimetype);
                    (
                        format!(
                            "<attachment type=\"{kind}\" id=\"{}\" filepath=\"/\" filename=\"{}\">",
                            f.item_id,
                            f.filename.replace('"', "&quot;")
                        ),
                        json!({"type": kind, "id": f.item_id.to_string(), "filepath": "/", "filename": f.filename}),
                    )
                }
                None => (m.text.clone().unwrap_or_default(), Value::Null),
            };
            let (s, r) = (login(&m.sender), login(&o.recipient));
            json!({
                "id": m.message_id.to_string(),
                "conversation_id": o.group.to_string(),
                "subject": null,
                "message": text,
                "sender": {"id": m.sender.0, "username": s, "email": email_of(&s, boxid)},
                "recipient": {"id": o.recipient.0, "username": r, "email": email_of(&r, boxid)},
                "attachment": attachment,
                "created_on": m.created_at_us / 1_000_000,
            })
        })
        .collect();
    let a = run
        .hub
        .json("POST", "/messages", &Value::Array(items))
        .await
        .map_err(|e| fail(STEP, e))?;
    let failed: BTreeSet<String> = match a.status {
        200 => BTreeSet::new(),
        404 => serde_json::from_slice::<Vec<Value>>(&a.body)
            .map_err(|_| {
                fail(
                    STEP,
                    format!("HTTP 404 without a list of ids: {}", a.text()),
                )
            })?
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        other => return Err(fail(STEP, format!("HTTP {other}: {}", a.text()))),
    };
    run.died(STEP)?;
    // Each conversation's mark moves to just before its first failed message.
    let mut marks: BTreeMap<u64, u64> = BTreeMap::new();
    let mut blocked: BTreeSet<u64> = BTreeSet::new();
    for o in pending {
        if failed.contains(&o.message.message_id.to_string()) {
            blocked.insert(o.group);
            continue;
        }
        if !blocked.contains(&o.group) {
            marks.insert(o.group, o.message.seq);
        }
    }
    for (group, seq) in marks {
        run.core
            .hub_set_link(HubLinkKind::EdgeMark, &format!("pushed:{group}"), seq)
            .await
            .map_err(|e| fail(STEP, e.to_string()))?;
    }
    run.report.messages_sent = pending.len() - failed.len();
    run.report.messages_failed = failed.into_iter().collect();
    let detail = format!(
        "{} sent, {} failed",
        run.report.messages_sent,
        run.report.messages_failed.len()
    );
    run.done(STEP, detail);
    Ok(())
}
