//! The edge role of the edge-to-hub sync: `confer sync push` runs the original edge's
//! nine steps (`chathost-api.md`) against any hub (a confer hub or the original), over
//! HTTP/1.1 with a timeout on every call (`sync_timeout_ms`), TLS by rustls.
//!
//! What an edge's data means to a hub (decided here; ARCHITECTURE.md keeps the list):
//! - a **course** is a chat group of type 2 (its `id` the group id, its name the
//!   group's); its **teacher** is the group's owner, its **students** the other members;
//!   an account that owns any such group counts as a teacher everywhere;
//! - a person's `email` is its login when that looks like an address, else
//!   `<login>@<boxid>` (the hub matches teachers by it);
//! - the **messages sent** are those of private conversations between a student and a
//!   teacher, written by the student, not sent before: each conversation has a mark (the
//!   last seq the hub confirmed), moved only by the hub's answer, so a run that dies
//!   resends, and the hub skips what it has (`<boxid>-<message id>`);
//! - an attachment goes once (`exists`, then the upload), remembered once the hub has it;
//! - the **logs** posted are the previous run's report, as a `sync` log;
//! - what the hub sends is stored as a message from its sender (an account created when
//!   missing) to the student, in their private conversation, once per hub id, with its
//!   file downloaded from `filepath`; the batch (handed out once by the hub) is written
//!   to the inbox (`sync-inbox.json`, see [`Inbox`]) as soon as it is read and leaves it
//!   only once stored, so a run that dies after the fetch loses nothing; the `since` of
//!   the last batch written there is kept in `sync-stored.json` and sent on
//!   `messageStatus` as `?stored=` (confer's extension): a confer hub then hands again
//!   a batch lost on the way (the original hub ignores it, and such a batch is lost);
//! - settings `authorization` and `moodle-security-key` replace the box's key; any other
//!   is stored and listed by `confer sync settings`. Settings go through the inbox too; a
//!   setting is stored once (however often it is handed over) and confirmed (`DELETE`)
//!   only after it is stored.
//!
//! The run writes a report (`report.json` in the data folder with `--log-to-file`, else
//! printed) saying which step failed and why. It opens the data folder itself, like
//! `confer user`: messages it stores are listed by a running server's clients, not pushed
//! to them live.
//!
//! One file per step, each with its number and name as the report says them, in the
//! order a run takes them: `check.rs` (1–3: healthcheck, check, messageStatus),
//! `rosters.rs` (4), `attachments.rs` (5), `outbox.rs` (6: messages), `incoming.rs`
//! (7: messages since, each stored by `receive.rs`), `logs.rs` (8), `settings.rs` (9).
//! Beside them: the hub client (`hub.rs`), what the edge's data means (`edge.rs`), and
//! what a run keeps on disk between runs (`inbox.rs`).

mod attachments;
mod check;
mod edge;
mod hub;
mod inbox;
mod incoming;
mod logs;
mod outbox;
mod receive;
mod rosters;
mod settings;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use confer_core::Core;
use confer_door_files::BlobStore;
use serde_json::{json, Value};

use crate::Config;
use hub::{Answer, Hub};

/// The longest wait between scheduled runs while the hub is down.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// How a run is asked for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub hub: Option<String>,
    pub box_id: Option<String>,
    pub log_to_file: bool,
}

/// Test hooks: end the run as if the process died at a point of a step (1–9).
#[derive(Clone, Copy, Debug, Default)]
pub struct Hooks {
    /// Before the step's first call to the hub.
    pub stop_before: Option<u8>,
    /// Right after the step's call to the hub answered (for step 5, its first file's),
    /// before anything of the answer is acted on: what was fetched (steps 7 and 9) is
    /// only in the inbox.
    pub die_after: Option<u8>,
}

/// One step's outcome.
#[derive(Clone, Debug)]
pub struct Step {
    pub step: u8,
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub hub: String,
    pub boxid: String,
    pub started: i64,
    pub steps: Vec<Step>,
    /// `step N (name): why`, when the run stopped.
    pub failed: Option<String>,
    pub attachments_sent: usize,
    pub messages_sent: usize,
    pub messages_failed: Vec<String>,
    pub messages_received: usize,
    /// Hub messages fetched but not stored yet (a file that did not download): kept in
    /// the inbox for the next run.
    pub messages_held: usize,
    pub settings_applied: Vec<String>,
}

impl Report {
    pub fn summary(&self) -> String {
        self.failed.clone().unwrap_or_else(|| "ok".into())
    }

    pub fn to_json(&self) -> Value {
        json!({
            "hub": self.hub,
            "boxid": self.boxid,
            "started": self.started,
            "ok": self.failed.is_none(),
            "failed": self.failed,
            "steps": self.steps.iter().map(|s| json!({
                "step": s.step, "name": s.name, "ok": s.ok, "detail": s.detail,
            })).collect::<Vec<_>>(),
            "attachments_sent": self.attachments_sent,
            "messages_sent": self.messages_sent,
            "messages_failed": self.messages_failed,
            "messages_received": self.messages_received,
            "messages_held": self.messages_held,
            "settings_applied": self.settings_applied,
        })
    }
}

/// The report's destination.
fn report_path(config: &Config) -> PathBuf {
    config.data_dir.join("report.json")
}

/// Run one sync and write its report (see the module doc).
pub async fn run_once(config: &Config, options: &Options) -> anyhow::Result<Report> {
    run_with(config, options, Hooks::default()).await
}

/// [`run_once`] with test hooks.
pub async fn run_with(config: &Config, options: &Options, hooks: Hooks) -> anyhow::Result<Report> {
    let hub_url = options
        .hub
        .clone()
        .ok_or_else(|| anyhow!("no hub: give --hub URL or set sync_hub_url"))?;
    let boxid = options
        .box_id
        .clone()
        .ok_or_else(|| anyhow!("no box id: give --box-id ID or set sync_box_id"))?;
    if !confer_core::service::hub_valid_name(&boxid) {
        return Err(anyhow!("{boxid:?} is not a box id"));
    }
    let core = crate::build_core(config)?;
    let blobs: Arc<dyn BlobStore> = crate::open_blob_store(config)?;
    let previous = std::fs::read_to_string(report_path(config)).ok();
    let mut report = Report {
        hub: hub_url.clone(),
        boxid: boxid.clone(),
        started: confer_core::model::now_us() / 1_000_000,
        ..Report::default()
    };
    let token = edge::current_token(&core, config)
        .await?
        .unwrap_or_default();
    let mut hub = Hub::new(
        &hub_url,
        &boxid,
        &token,
        Duration::from_millis(config.sync_timeout_ms.max(1)),
    )?;
    if hub.tls {
        hub.tls_config = Some(hub::tls_config(config.sync_ca_file.as_deref())?);
    }
    let mut run = Run {
        core: &core,
        blobs: &blobs,
        hub: &hub,
        config,
        report: &mut report,
        hooks,
    };
    let outcome = steps(&mut run, previous).await;
    if let Err((step, name, why)) = outcome {
        report.steps.push(Step {
            step,
            name,
            ok: false,
            detail: why.clone(),
        });
        report.failed = Some(format!("step {step} ({name}): {why}"));
        tracing::warn!(step, name, why, "sync stopped");
    }
    core.flush().await?;
    let text = serde_json::to_string_pretty(&report.to_json())?;
    if options.log_to_file {
        std::fs::write(report_path(config), &text)
            .with_context(|| format!("writing {}", report_path(config).display()))?;
    } else {
        println!("{text}");
    }
    Ok(report)
}

/// A step's number (1–9) and name, as the report and the test hooks say them.
type StepId = (u8, &'static str);
/// Why a run stopped: the step and the reason.
type StepError = (u8, &'static str, String);

fn fail(step: StepId, why: impl Into<String>) -> StepError {
    (step.0, step.1, why.into())
}

/// The hub's answer if it is a 200, else why not.
fn expect(answer: Result<Answer, String>, step: StepId) -> Result<Answer, StepError> {
    match answer {
        Ok(a) if a.status == 200 => Ok(a),
        Ok(a) => Err(fail(step, format!("HTTP {}: {}", a.status, a.text()))),
        Err(e) => Err(fail(step, e)),
    }
}

/// What every step works with, and the report it adds to.
struct Run<'a> {
    core: &'a Core,
    blobs: &'a Arc<dyn BlobStore>,
    hub: &'a Hub,
    config: &'a Config,
    report: &'a mut Report,
    hooks: Hooks,
}

impl Run<'_> {
    /// Before the step's first call: the test hook may end the run here.
    fn start(&self, step: StepId) -> Result<(), StepError> {
        if self.hooks.stop_before == Some(step.0) {
            Err(fail(step, "stopped by the test hook"))
        } else {
            Ok(())
        }
    }

    /// After the hub answered, before the answer is acted on: the test hook may end the
    /// run here, as if the process died.
    fn died(&self, step: StepId) -> Result<(), StepError> {
        if self.hooks.die_after == Some(step.0) {
            Err(fail(step, "died after the hub answered (test hook)"))
        } else {
            Ok(())
        }
    }

    /// Write `inbox` durably (steps 7 and 9), or fail `step`.
    fn save_inbox(&self, inbox: &inbox::Inbox, step: StepId) -> Result<(), StepError> {
        inbox
            .write(self.config)
            .map_err(|e| fail(step, format!("writing the sync inbox: {e}")))
    }

    /// The step went through.
    fn done(&mut self, step: StepId, detail: String) {
        self.report.steps.push(Step {
            step: step.0,
            name: step.1,
            ok: true,
            detail,
        });
    }
}

/// The nine steps, in order; the first that fails ends the run.
async fn steps(run: &mut Run<'_>, previous: Option<String>) -> Result<(), StepError> {
    let since = check::run(run).await?;
    let edge = rosters::run(run).await?;
    let pending = attachments::run(run, &edge).await?;
    outbox::run(run, &edge, &pending).await?;
    let inbox = incoming::run(run, since).await?;
    logs::run(run, previous).await?;
    settings::run(run, inbox).await
}

/// The wait after a run: `every` after a success; after a failure twice the last wait,
/// at most an hour (or `every`, if that is longer).
fn next_wait(last: Duration, every: Duration, ok: bool) -> Duration {
    if ok {
        every
    } else {
        last.saturating_mul(2).min(MAX_BACKOFF.max(every))
    }
}

/// Run every `every`; after a failed run wait twice as long each time (up to an hour),
/// until a run succeeds.
pub async fn schedule(config: &Config, options: &Options, every: Duration) -> anyhow::Result<()> {
    let mut wait = every;
    loop {
        let ok = match run_once(config, options).await {
            Ok(r) => r.failed.is_none(),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "sync run failed");
                false
            }
        };
        wait = next_wait(wait, every, ok);
        tracing::info!(next_in_secs = wait.as_secs(), ok, "next sync");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hub_that_stays_down_is_tried_less_and_less_often_and_normally_again_once_it_answers() {
        let every = Duration::from_secs(300);
        let mut wait = every;
        let mut waits = Vec::new();
        for _ in 0..6 {
            wait = next_wait(wait, every, false);
            waits.push(wait.as_secs());
        }
        assert_eq!(waits, [600, 1200, 2400, 3600, 3600, 3600]);
        assert_eq!(next_wait(wait, every, true), every);
    }
}
