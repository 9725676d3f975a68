//! The web client at `/`: the Vite bundle from `web/dist`, embedded at build time
//! (`build.rs`), so a server built on a machine without Node serves it.
//!
//! `index.html` is `Cache-Control: no-cache` (a browser revalidates it, by its `ETag`,
//! so a new server's client is picked up at once); everything under `/assets/` has a
//! content hash in its name and is `immutable` for a year. Every answer carries the
//! client's Content-Security-Policy ([`CSP`]: only this origin's scripts, styles,
//! pictures, media and connections; no inline code, no framing), `nosniff`, and
//! `Referrer-Policy: no-referrer`.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// What the client's pages may load and do. `connect-src 'self'` covers the Chat API's
/// WebSocket of the same origin; `blob:` the previews of files being sent.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; \
     font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/{*file}", get(asset))
}

fn find(path: &str) -> Option<&'static [u8]> {
    ASSETS
        .binary_search_by(|(p, _)| (*p).cmp(path))
        .ok()
        .and_then(|i| ASSETS.get(i))
        .map(|(_, bytes)| *bytes)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// A weak validator from the contents (FNV-1a): the same bundle, the same tag.
fn etag(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("\"{hash:016x}\"")
}

fn serve(path: &str, cache: &'static str, headers: &HeaderMap) -> Response {
    let Some(bytes) = find(path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let tag = etag(bytes);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type(path))], bytes).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    response
}

async fn index(headers: HeaderMap) -> Response {
    serve("/index.html", "no-cache", &headers)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&format!("/assets/{file}"), IMMUTABLE, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_so_lookups_find_every_file() {
        assert!(ASSETS.windows(2).all(|w| w[0].0 < w[1].0));
        for (path, bytes) in ASSETS {
            assert_eq!(find(path), Some(*bytes));
        }
        assert_eq!(find("/nope"), None);
    }
}
