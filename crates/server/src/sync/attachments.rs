//! Step 5: the files of the messages the edge owes the hub, each once: asked for
//! (`GET /attachments/:id/exists`), uploaded when the hub lacks it (`POST /attachments`,
//! multipart), then remembered as sent, so a later run does not ask again.

use confer_core::hub::HubLinkKind;
use tokio::io::AsyncReadExt;

use super::edge::{attachment_kind_name, outgoing, Edge, Outgoing};
use super::hub::multipart;
use super::{expect, fail, Run, StepError, StepId};

const STEP: StepId = (5, "attachments");

/// The messages the edge owes the hub (step 6 sends them).
pub(super) async fn run(run: &mut Run<'_>, edge: &Edge) -> Result<Vec<Outgoing>, StepError> {
    run.start(STEP)?;
    let (core, hub) = (run.core, run.hub);
    let pending = outgoing(core, edge)
        .await
        .map_err(|e| fail(STEP, format!("{e:#}")))?;
    let files: Vec<_> = pending
        .iter()
        .filter_map(|o| o.message.files.first().cloned())
        .collect();
    let bar = indicatif::ProgressBar::new(files.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("attachments {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for f in &files {
        let key = f.item_id.to_string();
        bar.set_message(f.filename.clone());
        let known = core
            .hub_link(HubLinkKind::SentAttachment, &key)
            .await
            .map_err(|e| fail(STEP, e.to_string()))?;
        if known.is_none() {
            let exists = format!("/attachments/{key}/exists");
            let a = hub
                .call("GET", &exists, None, Vec::new())
                .await
                .map_err(|e| fail(STEP, e))?;
            match a.status {
                200 => {}
                404 => {
                    let stored = core
                        .attachment_for_admin(f.item_id)
                        .await
                        .map_err(|e| fail(STEP, e.to_string()))?;
                    let mut data = Vec::new();
                    run.blobs
                        .open_range(&stored.sha256, 0, u64::MAX)
                        .await
                        .map_err(|e| fail(STEP, format!("reading {key}: {e}")))?
                        .read_to_end(&mut data)
                        .await
                        .map_err(|e| fail(STEP, format!("reading {key}: {e}")))?;
                    let fields = [
                        ("id", key.clone()),
                        ("type", attachment_kind_name(&f.mimetype).to_string()),
                        ("filepath", "/".to_string()),
                        ("filename", f.filename.clone()),
                    ];
                    let (ct, body) = multipart(&fields, &f.filename, &f.mimetype, &data);
                    expect(
                        hub.call("POST", "/attachments", Some(&ct), body).await,
                        STEP,
                    )?;
                    run.report.attachments_sent += 1;
                }
                other => return Err(fail(STEP, format!("exists: HTTP {other}: {}", a.text()))),
            }
            run.died(STEP)?;
            core.hub_set_link(HubLinkKind::SentAttachment, &key, 1)
                .await
                .map_err(|e| fail(STEP, e.to_string()))?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    run.died(STEP)?;
    let sent = run.report.attachments_sent;
    run.done(STEP, format!("{sent} sent"));
    Ok(pending)
}
