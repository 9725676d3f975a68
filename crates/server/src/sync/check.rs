//! Steps 1–3: the hub answers (`GET /healthcheck`), takes this box's key (`GET /check`),
//! and says since when it has this box's messages (`GET /messageStatus`, with confer's
//! `?stored=`: the `since` of the last batch this edge wrote to its inbox).

use super::inbox::read_stored;
use super::{expect, fail, Run, StepError, StepId};

const HEALTHCHECK: StepId = (1, "healthcheck");
const CHECK: StepId = (2, "check");
const MESSAGE_STATUS: StepId = (3, "messageStatus");

/// The hub's `since` (step 7 asks for what came after it).
pub(super) async fn run(run: &mut Run<'_>) -> Result<i64, StepError> {
    let hub = run.hub;
    run.start(HEALTHCHECK)?;
    let path = format!("/healthcheck?boxid={}", hub.boxid);
    expect(hub.call("GET", &path, None, Vec::new()).await, HEALTHCHECK)?;
    run.died(HEALTHCHECK)?;
    run.done(HEALTHCHECK, "hub reachable".into());

    run.start(CHECK)?;
    expect(hub.call("GET", "/check", None, Vec::new()).await, CHECK)?;
    run.died(CHECK)?;
    run.done(CHECK, "key accepted".into());

    run.start(MESSAGE_STATUS)?;
    let path = format!("/messageStatus?stored={}", read_stored(run.config));
    let a = expect(
        hub.call("GET", &path, None, Vec::new()).await,
        MESSAGE_STATUS,
    )?;
    run.died(MESSAGE_STATUS)?;
    let since: i64 = a
        .text()
        .trim()
        .parse()
        .map_err(|_| fail(MESSAGE_STATUS, format!("not a time: {:?}", a.text())))?;
    run.done(MESSAGE_STATUS, format!("since {since}"));
    Ok(since)
}
