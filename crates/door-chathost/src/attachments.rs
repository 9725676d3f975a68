//! Attachments of a box, keyed `<boxid>-<id>`:
//! - `GET /attachments/:id/exists`: 200 with the stored type as Content-Type, or 404.
//! - `POST /attachments`: multipart with a `file` part and fields `id`, `type`,
//!   `filepath`, `filename`; the stored type is sniffed from the content. Posting an id
//!   again answers 200 and keeps the first. No file: 400; no id: 400.
//! - `GET /files/:message_id/:item_id`: a file a hub→edge message carries, for the box
//!   whose conversation it is in (the `filepath` of its `<attachment>` tag).

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::{core_error, error, number, ok_json, Call, ChathostApi};

pub(crate) async fn exists(api: &ChathostApi, boxid: &str, id: &str) -> Response {
    if !confer_core::service::hub_valid_name(id) {
        return error(StatusCode::BAD_REQUEST, "not an attachment id");
    }
    match api.core.hub_attachment(boxid, id).await {
        Ok(Some(a)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, a.mimetype.clone())],
            "",
        )
            .into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such attachment"),
        Err(e) => core_error(e),
    }
}

pub(crate) async fn post(api: &ChathostApi, boxid: &str, call: Call) -> Response {
    let headers = call.headers.clone();
    let extensions = call.extensions.clone();
    let bytes = match call.bytes(api).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let mut req = Request::new(Body::from(bytes));
    *req.headers_mut() = headers;
    *req.extensions_mut() = extensions;
    let mut multipart = match Multipart::from_request(req, &()).await {
        Ok(m) => m,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the body must be multipart/form-data: {}", e.body_text()),
            )
        }
    };
    let (mut id, mut filename, mut file): (Option<String>, Option<String>, Option<Bytes>) =
        (None, None, None);
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("multipart: {}", e.body_text()),
                )
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        let part_filename = field.file_name().map(str::to_string);
        let data = match field.bytes().await {
            Ok(d) => d,
            Err(e) => return error(e.status(), &format!("multipart: {}", e.body_text())),
        };
        match name.as_str() {
            "file" => {
                if filename.is_none() {
                    filename = part_filename;
                }
                file = Some(data);
            }
            "id" => id = Some(String::from_utf8_lossy(&data).trim().to_string()),
            "filename" => filename = Some(String::from_utf8_lossy(&data).trim().to_string()),
            _ => {}
        }
    }
    let Some(id) = id.filter(|i| confer_core::service::hub_valid_name(i)) else {
        return error(StatusCode::BAD_REQUEST, "the field id is required");
    };
    // Stored already: 200, the first kept (the file, if any, is not looked at).
    match api.core.hub_attachment(boxid, &id).await {
        Ok(Some(_)) => return ok_json(json!({ "success": true, "existed": true })),
        Ok(None) => {}
        Err(e) => return core_error(e),
    }
    let Some(file) = file.filter(|f| !f.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "no file part in the request");
    };
    let (sha, size, mime) = match api.files.put(file).await {
        Ok(stored) => stored,
        Err(e) => {
            tracing::error!(error = %e, "storing a box's attachment");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not store the file",
            );
        }
    };
    let filename = filename
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| id.clone());
    match api
        .core
        .hub_register_attachment(boxid, &id, sha, size, mime, filename)
        .await
    {
        Ok(_) => ok_json(json!({ "success": true })),
        Err(e) => core_error(e),
    }
}

pub(crate) async fn download(
    api: &ChathostApi,
    boxid: &str,
    message_id: &str,
    item_id: &str,
) -> Response {
    let (message_id, item_id) = match (number(message_id, "message id"), number(item_id, "item id"))
    {
        (Ok(m), Ok(i)) => (m, i),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let a = match api.core.hub_box_file(boxid, message_id, item_id).await {
        Ok(a) => a,
        Err(e) => return core_error(e),
    };
    match api.files.get(&a.sha256).await {
        Ok(bytes) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, a.mimetype.clone()),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reading a file for a box");
            error(StatusCode::INTERNAL_SERVER_ERROR, "could not read the file")
        }
    }
}
