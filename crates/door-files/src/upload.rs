//! `POST /api/v1/files`: a multipart upload, streamed to a staging file while its SHA-256
//! is computed, then published under that hash (stored once) and recorded as the
//! uploader's draft. Over the size limit: 413 and the staged bytes are removed. Every
//! error is `{"error": …}`, a body that is not multipart at all (400) included.

use std::sync::Arc;

use axum::extract::multipart::Field;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::{auth, FilesApi};

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Bytes looked at to recognise the content type.
const SNIFF: usize = 8192;

/// The MIME type from the content's first bytes; text if it is UTF-8, else bytes.
pub fn mimetype(head: &[u8]) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_string();
    }
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        // A multi-byte character cut at the end of the sniffed bytes is still text.
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > head.len(),
    };
    if text && !head.is_empty() {
        "text/plain".into()
    } else {
        "application/octet-stream".into()
    }
}

pub async fn upload(
    State(api): State<Arc<FilesApi>>,
    headers: HeaderMap,
    uri: Uri,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let Some(who) = auth::principal(&api.core, auth::token_of(&headers, &uri)).await else {
        return error(
            StatusCode::UNAUTHORIZED,
            "a valid session token is required",
        );
    };
    // Not multipart at all (no or another Content-Type, no boundary): said in this door's
    // JSON, not as the framework's plain-text rejection.
    let mut multipart = match multipart {
        Ok(m) => m,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the body must be multipart/form-data: {}", e.body_text()),
            )
        }
    };
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => return error(StatusCode::BAD_REQUEST, "no file part in the request"),
            Err(e) => {
                return error(
                    e.status(),
                    &format!("invalid multipart body: {}", e.body_text()),
                )
            }
        };
        let Some(filename) = field.file_name().map(str::to_string) else {
            continue;
        };
        return store(&api, &who, filename, field).await;
    }
}

async fn store(
    api: &FilesApi,
    who: &confer_core::Principal,
    filename: String,
    field: Field<'_>,
) -> Response {
    let staged = api.blobs.staging_path();
    let result = async {
        let mut file = tokio::fs::File::create(&staged)
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let received = receive(field, api.max_upload, &mut file).await?;
        file.sync_all()
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(received)
    }
    .await;
    let (sha, size, mime) = match result {
        Ok(done) => done,
        Err((status, message)) => {
            let _ = tokio::fs::remove_file(&staged).await;
            return error(status, &message);
        }
    };
    if let Err(e) = api.blobs.publish(&staged, &sha).await {
        let _ = tokio::fs::remove_file(&staged).await;
        tracing::error!(error = %e, "publishing an upload");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not store the file",
        );
    }
    match api
        .core
        .register_upload(who, sha, size, mime, filename)
        .await
    {
        Ok(a) => Json(json!({
            "item_id": a.item_id.to_string(),
            "filename": a.filename,
            "mimetype": a.mimetype,
            "size": a.size,
            "sha256": a.sha256,
            "url": confer_core::references::file_url(a.item_id, &a.filename),
        }))
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "recording an upload");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not record the file",
            )
        }
    }
}

/// A file part's bytes written to `out`, at most `max_upload` of them: its SHA-256 (hex),
/// size and MIME type.
pub(crate) async fn receive(
    mut field: Field<'_>,
    max_upload: u64,
    out: &mut (impl AsyncWrite + Unpin),
) -> Result<(String, u64, String), (StatusCode, String)> {
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut head = Vec::with_capacity(SNIFF);
    loop {
        let chunk = match field.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err((StatusCode::PAYLOAD_TOO_LARGE, "file too large".to_string()))
            }
            Err(e) => return Err((e.status(), e.body_text())),
        };
        size += chunk.len() as u64;
        if size > max_upload {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("file too large (limit {max_upload} bytes)"),
            ));
        }
        if head.len() < SNIFF {
            let take = (SNIFF - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(&chunk);
        out.write_all(&chunk)
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    }
    Ok((hex::encode(hasher.finalize()), size, mimetype(&head)))
}

#[cfg(test)]
mod tests {
    use super::mimetype;

    #[test]
    fn content_decides_the_type() {
        assert_eq!(mimetype(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(mimetype("héllo".as_bytes()), "text/plain");
        assert_eq!(mimetype(&[0, 159, 146, 150]), "application/octet-stream");
    }
}
