//! Step 7: what the hub has for this edge since `since` (`GET /messages/:since`): the
//! batch goes to the inbox (written durably) before anything of it is stored, then each
//! message is stored (`receive.rs`); one whose file does not download is kept for the
//! next run, up to `MAX_TRIES` runs. With `MAX_INBOX` messages still waiting, nothing new
//! is fetched (the hub keeps a batch not fetched).

use serde_json::{json, Value};

use super::inbox::{stored_path, write_durably, Inbox, MAX_INBOX, MAX_TRIES, STORED_FILE};
use super::receive::{receive, Failure};
use super::{expect, fail, Run, StepError, StepId};

const STEP: StepId = (7, "messages since");

/// The inbox as this step leaves it (step 9 adds the settings to it).
pub(super) async fn run(run: &mut Run<'_>, since: i64) -> Result<Inbox, StepError> {
    run.start(STEP)?;
    let config = run.config;
    let mut inbox = Inbox::read(config);
    let held_before = inbox.messages.len();
    if held_before < MAX_INBOX {
        let path = format!("/messages/{since}");
        let a = expect(run.hub.call("GET", &path, None, Vec::new()).await, STEP)?;
        let batch: Vec<Value> = serde_json::from_slice(&a.body)
            .map_err(|e| fail(STEP, format!("malformed JSON: {e}")))?;
        inbox.messages.extend(
            batch
                .into_iter()
                .map(|item| json!({"item": item, "tries": 0})),
        );
        run.save_inbox(&inbox, STEP)?;
        write_durably(
            config,
            &stored_path(config),
            json!({ "stored": since }).to_string().as_bytes(),
        )
        .map_err(|e| fail(STEP, format!("writing {STORED_FILE}: {e}")))?;
    }
    run.died(STEP)?;
    let mut kept = Vec::new();
    let mut dropped = 0;
    for entry in std::mem::take(&mut inbox.messages) {
        let item = &entry["item"];
        match receive(run.core, run.blobs, run.hub, item).await {
            Ok(true) => run.report.messages_received += 1,
            Ok(false) => {}
            Err(Failure::Retry(e)) if entry["tries"].as_u64().unwrap_or(0) + 1 < MAX_TRIES => {
                tracing::warn!(error = %e, "a hub message is kept for the next run");
                let tries = entry["tries"].as_u64().unwrap_or(0) + 1;
                kept.push(json!({"item": item, "tries": tries}));
            }
            Err(Failure::Retry(e) | Failure::Drop(e)) => {
                dropped += 1;
                tracing::warn!(error = %e, "a hub message was not stored");
            }
        }
    }
    inbox.messages = kept;
    run.report.messages_held = inbox.messages.len();
    run.save_inbox(&inbox, STEP)?;
    if held_before >= MAX_INBOX {
        return Err(fail(
            STEP,
            format!("{held_before} hub messages still to store; nothing new fetched"),
        ));
    }
    let detail = format!(
        "{} stored, {} kept for the next run, {dropped} not stored",
        run.report.messages_received, run.report.messages_held
    );
    run.done(STEP, detail);
    Ok(inbox)
}
