//! Step 9: the hub's settings for this box (`GET /settings`): each goes to the inbox
//! first, is stored once per hub setting however often it is handed over, and only then
//! confirmed (`DELETE /settings/:id`). A key setting (`edge::KEY_SETTINGS`) becomes the
//! key the next run syncs with. If the hub stops answering the confirmations, the rest
//! wait in the inbox for the next run.

use confer_core::hub::HubLinkKind;
use serde_json::{json, Value};

use super::inbox::Inbox;
use super::receive::text_of;
use super::{expect, fail, Run, StepError, StepId};

const STEP: StepId = (9, "settings");

pub(super) async fn run(run: &mut Run<'_>, mut inbox: Inbox) -> Result<(), StepError> {
    run.start(STEP)?;
    let (core, hub) = (run.core, run.hub);
    let a = expect(hub.call("GET", "/settings", None, Vec::new()).await, STEP)?;
    let settings: Vec<Value> =
        serde_json::from_slice(&a.body).map_err(|e| fail(STEP, format!("malformed JSON: {e}")))?;
    // A setting handed over again (a hub restart) while it waits here is kept once.
    for setting in settings {
        if !inbox.settings.contains(&setting) {
            inbox.settings.push(setting);
        }
    }
    run.save_inbox(&inbox, STEP)?;
    run.died(STEP)?;
    let mut unconfirmed = Vec::new();
    let mut failure = None;
    for s in std::mem::take(&mut inbox.settings) {
        let key = s["key"].as_str().unwrap_or_default();
        let value = match &s["value"] {
            Value::String(v) => v.clone(),
            other => other.to_string(),
        };
        let id = text_of(&s["deleteId"]);
        if failure.is_some() {
            // The hub stopped answering: the rest wait in the inbox for the next run.
            unconfirmed.push(s);
            continue;
        }
        if key.is_empty() || id.is_empty() {
            continue;
        }
        // Stored once per hub setting, however often it is handed over. A hub may give a
        // confirmed setting's id to a new one, so the mark is of the whole setting.
        let applied = {
            use sha2::Digest;
            let whole = json!([id, text_of(&s["timestamp"]), key, value]).to_string();
            format!("setting:{}", hex::encode(sha2::Sha256::digest(whole)))
        };
        let known = core
            .hub_link(HubLinkKind::FromHub, &applied)
            .await
            .map_err(|e| fail(STEP, e.to_string()))?;
        if known.is_none() {
            let stored = core
                .hub_queue_setting("", key, &value)
                .await
                .map_err(|e| fail(STEP, e.to_string()))?;
            core.hub_set_link(HubLinkKind::FromHub, &applied, stored.id)
                .await
                .map_err(|e| fail(STEP, e.to_string()))?;
            run.report.settings_applied.push(key.to_string());
        }
        // 404: the hub no longer has it (confirmed before): nothing left to do.
        match hub
            .call("DELETE", &format!("/settings/{id}"), None, Vec::new())
            .await
        {
            Ok(a) if a.status == 200 || a.status == 404 => {}
            Ok(a) => {
                failure = Some(format!("HTTP {}: {}", a.status, a.text()));
                unconfirmed.push(s);
            }
            Err(e) => {
                failure = Some(e);
                unconfirmed.push(s);
            }
        }
    }
    inbox.settings = unconfirmed;
    run.save_inbox(&inbox, STEP)?;
    if let Some(why) = failure {
        return Err(fail(STEP, why));
    }
    let applied = run.report.settings_applied.len();
    run.done(STEP, format!("{applied} applied"));
    Ok(())
}
