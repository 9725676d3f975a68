//! Step 4: the edge's courses, with their teachers and students, to the hub
//! (`POST /courseRosters`), as read from its chat groups (`edge.rs`).

use serde_json::Value;

use super::edge::{read_edge, Edge};
use super::{expect, fail, Run, StepError, StepId};

const STEP: StepId = (4, "courseRosters");

/// The edge as read for the roster (steps 5 and 6 use it).
pub(super) async fn run(run: &mut Run<'_>) -> Result<Edge, StepError> {
    run.start(STEP)?;
    let boxid = &run.hub.boxid;
    let edge = read_edge(run.core, boxid, boxid)
        .await
        .map_err(|e| fail(STEP, format!("{e:#}")))?;
    let roster = Value::Array(edge.courses.clone());
    expect(run.hub.json("POST", "/courseRosters", &roster).await, STEP)?;
    run.died(STEP)?;
    run.done(STEP, format!("{} course(s)", edge.courses.len()));
    Ok(edge)
}
