//! `/healthcheck` (no credential; 200 `OK` whatever it carries) and `/check` (200 when
//! the box's credential is valid, else 401). Both are answered before any credential
//! rule.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use axum::http::HeaderMap;

use crate::{auth, ChathostApi};

pub(crate) fn healthcheck() -> Response {
    (StatusCode::OK, "OK").into_response()
}

pub(crate) async fn check(api: &ChathostApi, headers: &HeaderMap) -> Response {
    match auth::box_of(api, headers).await {
        Ok(_) => (StatusCode::OK, "OK").into_response(),
        Err(refused) => refused,
    }
}
