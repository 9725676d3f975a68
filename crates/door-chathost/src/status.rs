//! `GET /messageStatus`: the box's last sync time as text (unix seconds, `1` if never),
//! after preparing its hub→edge batch (`Core::hub_prepare_batch`) for `GET
//! /messages/<that value>`.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::{core_error, ChathostApi};

pub(crate) async fn message_status(api: &ChathostApi, boxid: &str) -> Response {
    match api.core.hub_prepare_batch(boxid).await {
        Ok(since) => ([(header::CONTENT_TYPE, "text/plain")], since.to_string()).into_response(),
        Err(e) => core_error(e),
    }
}
