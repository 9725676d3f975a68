//! The file server. Only the owner, members of a conversation where a message carries the
//! file, and the admin get it; anyone else gets 404 (no hint that it exists), a request
//! without a valid token 401. `Range` (one range per request: 206 or 416), `ETag` (the
//! SHA-256) with `If-None-Match` (304), `Content-Type`, `Content-Disposition`,
//! `Cache-Control: private`. A file removed by clean-up answers 410 with a placeholder.
//! A file re-encoded by `attachments compress` took the new format's extension; its
//! former name answers 301 to the new URL.
//!
//! Uploaded content must never run as a page of our origin: only pictures (not SVG),
//! audio and video are shown `inline`, everything else is an `attachment`; every answer
//! carries `X-Content-Type-Options: nosniff` and a sandboxing CSP ([`harden`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use confer_core::CoreError;
use tokio_util::io::ReaderStream;

use crate::{auth, FilesApi};

/// What a removed file is replaced with: a small "file missing" picture.
const MISSING_PLACEHOLDER: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128" viewBox="0 0 128 128"><rect width="128" height="128" fill="#eee"/><path d="M40 24h36l20 20v60H40z" fill="none" stroke="#999" stroke-width="4"/><path d="M48 56l32 32M80 56L48 88" stroke="#c33" stroke-width="6"/><text x="64" y="120" font-size="12" text-anchor="middle" fill="#666">file removed</text></svg>"##;

/// Every file-server answer forbids sniffing and runs as a sandboxed, script-less
/// document, so uploaded content never acts as a page of our origin.
pub const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'";

/// Added to every file-server response (files, 304, 404, the 410 placeholder).
pub async fn harden(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

/// Types a browser may show in place: pictures (not SVG, which is a document that can
/// script), audio and video. Everything else is a download.
fn shown_inline(mimetype: &str) -> bool {
    let m = mimetype.trim().to_ascii_lowercase();
    (m.starts_with("image/") && !m.contains("svg"))
        || m.starts_with("audio/")
        || m.starts_with("video/")
}

/// `inline` or `attachment`, with the name as ASCII (`filename`) and as UTF-8
/// (`filename*`, RFC 8187).
fn disposition(mimetype: &str, filename: &str) -> String {
    let kind = if shown_inline(mimetype) {
        "inline"
    } else {
        "attachment"
    };
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in filename.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

fn status(code: StatusCode) -> Response {
    code.into_response()
}

pub async fn by_id(
    State(api): State<Arc<FilesApi>>,
    Path((item_id, filename)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    serve(&api, &item_id, &filename, &headers, &uri).await
}

/// The Moodle URL form: `…/chat_attachment/{item_id}/{path…}/{filename}`; the file name is
/// the last segment.
pub async fn moodle(
    State(api): State<Arc<FilesApi>>,
    Path((item_id, rest)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let filename = rest.rsplit('/').next().unwrap_or_default().to_string();
    if rest.split('/').any(|seg| seg == "..") {
        return status(StatusCode::NOT_FOUND);
    }
    serve(&api, &item_id, &filename, &headers, &uri).await
}

/// A parsed `Range: bytes=…` header for a file of `size` bytes: `Ok(None)` means the whole
/// file (no header, or several ranges, which RFC 9110 lets a server ignore).
fn range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (s, "") => (s.parse().map_err(|_| ())?, size.saturating_sub(1)),
        (s, e) => {
            let (s, e): (u64, u64) = (s.parse().map_err(|_| ())?, e.parse().map_err(|_| ())?);
            (s, e.min(size.saturating_sub(1)))
        }
    };
    if size == 0 || start >= size || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

async fn serve(
    api: &FilesApi,
    item_id: &str,
    filename: &str,
    headers: &HeaderMap,
    uri: &Uri,
) -> Response {
    let Some(who) = auth::principal(&api.core, auth::token_of(headers, uri)).await else {
        return status(StatusCode::UNAUTHORIZED);
    };
    let Ok(item_id) = item_id.parse::<u64>() else {
        return status(StatusCode::NOT_FOUND);
    };
    let attachment = match api.core.readable_attachment(&who, item_id).await {
        Ok(a) => a,
        Err(CoreError::AttachmentGone) => {
            return (
                StatusCode::GONE,
                [
                    (header::CONTENT_TYPE, "image/svg+xml"),
                    (header::CACHE_CONTROL, "private"),
                ],
                MISSING_PLACEHOLDER,
            )
                .into_response();
        }
        Err(CoreError::AttachmentNotFound) => return status(StatusCode::NOT_FOUND),
        Err(e) => {
            tracing::error!(error = %e, "file server");
            return status(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    if attachment.filename != filename {
        // Re-encoded since (`cat.png` is now `cat.webp`): the old URL leads to the new one.
        if confer_core::references::is_former_name(filename, &attachment.filename) {
            let mut location =
                confer_core::references::file_url(attachment.item_id, &attachment.filename);
            if let Some(query) = uri.query() {
                location.push('?');
                location.push_str(query);
            }
            if let Ok(location) = HeaderValue::from_str(&location) {
                return (
                    StatusCode::MOVED_PERMANENTLY,
                    [(header::LOCATION, location)],
                )
                    .into_response();
            }
        }
        return status(StatusCode::NOT_FOUND);
    }
    let etag = format!("\"{}\"", attachment.sha256);
    let mut out = HeaderMap::new();
    let mut put = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            out.insert(name, v);
        }
    };
    put(header::ETAG, &etag);
    put(header::CACHE_CONTROL, "private, max-age=3600");
    put(header::ACCEPT_RANGES, "bytes");
    put(header::CONTENT_TYPE, &attachment.mimetype);
    put(
        header::CONTENT_DISPOSITION,
        &disposition(&attachment.mimetype, &attachment.filename),
    );
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    let size = attachment.size;
    let (code, start, len) = match range(headers, size) {
        Ok(None) => (StatusCode::OK, 0, size),
        Ok(Some((start, end))) => {
            put(
                header::CONTENT_RANGE,
                &format!("bytes {start}-{end}/{size}"),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Err(()) => {
            put(header::CONTENT_RANGE, &format!("bytes */{size}"));
            return (StatusCode::RANGE_NOT_SATISFIABLE, out).into_response();
        }
    };
    put(header::CONTENT_LENGTH, &len.to_string());
    match api.blobs.open_range(&attachment.sha256, start, len).await {
        Ok(reader) => (code, out, Body::from_stream(ReaderStream::new(reader))).into_response(),
        Err(e) => {
            tracing::error!(error = %e, item_id, "blob unreadable");
            status(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn only_pictures_sound_and_video_are_shown_inline() {
        assert!(disposition("image/png", "a.png").starts_with("inline;"));
        assert!(disposition("video/mp4", "a.mp4").starts_with("inline;"));
        for m in ["image/svg+xml", "text/html", "text/xml", "application/pdf"] {
            assert!(disposition(m, "a").starts_with("attachment;"), "{m}");
        }
        assert_eq!(
            disposition("text/plain", "é \"x\".txt"),
            "attachment; filename=\"_ _x_.txt\"; filename*=UTF-8''%C3%A9%20%22x%22.txt"
        );
    }

    #[test]
    fn ranges_first_middle_suffix_and_unsatisfiable() {
        assert_eq!(range(&HeaderMap::new(), 100), Ok(None));
        assert_eq!(range(&with("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(range(&with("bytes=50-"), 100), Ok(Some((50, 99))));
        assert_eq!(range(&with("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(range(&with("bytes=90-200"), 100), Ok(Some((90, 99))));
        assert_eq!(range(&with("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(range(&with("bytes=100-"), 100), Err(()));
        assert_eq!(range(&with("bytes=9-3"), 100), Err(()));
        assert_eq!(range(&with("bytes=x-"), 100), Err(()));
    }
}
