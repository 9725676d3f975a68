//! The door's decoders of client input, reachable from the fuzz targets in `fuzz/`: the
//! `Range` header and the multipart upload body. Hidden from the docs and not an API;
//! each function runs exactly the code a request runs, without the disk or the network.

use axum::body::Body;
use axum::extract::{FromRequest, Multipart};
use axum::http::{header, HeaderMap, HeaderValue, Request};
use axum::response::IntoResponse;

/// The file server's reading of a `Range` header value for a file of `size` bytes. A value
/// that is not a valid header never reaches the server, so it counts as no header.
#[allow(clippy::result_unit_err)]
pub fn range(value: &[u8], size: u64) -> Result<Option<(u64, u64)>, ()> {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(value) {
        headers.insert(header::RANGE, v);
    }
    crate::serve::range(&headers, size)
}

/// An upload's body, read as `POST /api/v1/files` reads it (the first part with a file
/// name, at most `max_upload` bytes of it), its bytes dropped instead of stored: the file
/// name, SHA-256, size and MIME type, or the status and message the client would get.
pub async fn upload(
    content_type: &[u8],
    body: Vec<u8>,
    max_upload: u64,
) -> Result<(String, String, u64, String), (u16, String)> {
    let mut request = Request::new(Body::from(body));
    if let Ok(v) = HeaderValue::from_bytes(content_type) {
        request.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    let mut multipart = match Multipart::from_request(request, &()).await {
        Ok(m) => m,
        Err(rejection) => {
            let response = rejection.into_response();
            return Err((response.status().as_u16(), String::new()));
        }
    };
    // As `upload::upload`: the first part with a file name.
    let (filename, field) = loop {
        match multipart.next_field().await {
            Ok(Some(field)) => match field.file_name().map(str::to_string) {
                Some(name) => break (name, field),
                None => continue,
            },
            Ok(None) => return Err((400, "no file part in the request".into())),
            Err(e) => return Err((e.status().as_u16(), e.body_text())),
        }
    };
    let (sha, size, mime) = crate::upload::receive(field, max_upload, &mut tokio::io::sink())
        .await
        .map_err(|(status, message)| (status.as_u16(), message))?;
    Ok((filename, sha, size, mime))
}
