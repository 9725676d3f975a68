//! Step 8: the previous run's report to the hub, as a `sync` log (`POST /logs/sync`).

use serde_json::json;

use super::{expect, Run, StepError, StepId};

const STEP: StepId = (8, "logs");

pub(super) async fn run(run: &mut Run<'_>, previous: Option<String>) -> Result<(), StepError> {
    run.start(STEP)?;
    let logs = match previous {
        Some(text) => json!([{"timestamp": run.report.started, "log": text}]),
        None => json!([]),
    };
    expect(run.hub.json("POST", "/logs/sync", &logs).await, STEP)?;
    run.died(STEP)?;
    run.done(STEP, "previous report sent".into());
    Ok(())
}
