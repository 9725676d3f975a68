//! # confer-door-files: attachments over HTTP
//!
//! - `POST /api/v1/files` (multipart, streamed to disk, size-limited, MIME detected from
//!   content, stored once per SHA-256) → `{item_id, filename, mimetype, size, url}`: a draft.
//! - `POST /api/v1/attachments` and `/local/chat_attachments/api.php` `{token, method:
//!   "add_file", item_id}` (JSON or form): the Moodle plugin's API, answered as it did.
//! - `GET /files/{item_id}/{filename}` and
//!   `/pluginfile.php/1/local_chat_attachments/chat_attachment/{item_id}/{path…}/{filename}`:
//!   the file server (owner and conversation members only; Range, ETag, 304, 410; only
//!   pictures, audio and video inline, always `nosniff` and a sandboxing CSP).
//!
//! ## Layout
//! - [`blobs`]: the blob store trait and its local-disk backend.
//! - `s3`: [`S3Blobs`], the blobs on an S3-compatible object store (`object_store`).
//! - `upload`, `add_file`, `serve`: one file per endpoint.
//! - `auth`: the token from a bearer header, a `token` parameter or the session cookie.
//! - `fuzzing` (hidden): the Range and multipart decoders, for the fuzz targets in `fuzz/`.

mod add_file;
mod auth;
pub mod blobs;
#[doc(hidden)]
pub mod fuzzing;
mod s3;
mod serve;
mod upload;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::map_response;
use axum::routing::{get, post};
use axum::Router;
use confer_core::Core;

pub use blobs::{BlobStore, LocalBlobs};
pub use s3::{S3Blobs, S3Options};
/// The MIME type of content from its first bytes (what uploads are stored as).
pub use upload::mimetype as sniff_mimetype;

/// The cookie a browser may carry the session token in.
pub const SESSION_COOKIE: &str = "confer_session";

/// What the endpoints share.
pub struct FilesApi {
    pub core: Arc<Core>,
    pub blobs: Arc<dyn BlobStore>,
    /// The largest upload accepted (bytes).
    pub max_upload: u64,
}

/// The largest request body an upload of at most `max_upload` bytes may take: room for
/// the multipart framing around a file of the largest size. The largest body of any
/// route, so the HTTP layer refuses a longer declared `Content-Length` before reading.
pub fn largest_body(max_upload: u64) -> u64 {
    max_upload.saturating_add(64 * 1024)
}

pub fn router(api: Arc<FilesApi>) -> Router {
    let body_limit = usize::try_from(largest_body(api.max_upload)).unwrap_or(usize::MAX);
    Router::new()
        .route(
            "/api/v1/files",
            post(upload::upload).layer(DefaultBodyLimit::max(body_limit)),
        )
        .route("/api/v1/attachments", post(add_file::add_file))
        .route("/local/chat_attachments/api.php", post(add_file::add_file))
        .route(
            "/files/{item_id}/{filename}",
            get(serve::by_id).layer(map_response(serve::harden)),
        )
        .route(
            "/pluginfile.php/1/local_chat_attachments/chat_attachment/{item_id}/{*rest}",
            get(serve::moodle).layer(map_response(serve::harden)),
        )
        .with_state(api)
}
