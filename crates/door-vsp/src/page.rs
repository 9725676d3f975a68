//! The conference door's test page at `/vsp/test` (with `/vsp/test.js` and
//! `/vsp/test.css`): plain HTML and JavaScript, no build step, embedded at build time. It
//! signs in, joins a conference through `/vsp/ws`, sends the browser's offer with
//! `CALLME_S2`, applies the server's answer and shows every other party's video with its
//! name; its `window.confer` is what the browser tests (tests/browser-sfu) drive and read.
//!
//! Every answer carries the Content-Security-Policy the binary hands in
//! ([`crate::Settings::page_csp`], the web client's), `nosniff` and
//! `Referrer-Policy: no-referrer`; the files are `no-cache` (they are small and change
//! with the server).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::Vsp;

const HTML: &str = include_str!("../page/index.html");
const JS: &str = include_str!("../page/test.js");
const CSS: &str = include_str!("../page/test.css");

fn serve(door: &Vsp, content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(door.settings.page_csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

pub async fn html(State(door): State<Arc<Vsp>>) -> Response {
    serve(&door, "text/html; charset=utf-8", HTML)
}

pub async fn js(State(door): State<Arc<Vsp>>) -> Response {
    serve(&door, "text/javascript; charset=utf-8", JS)
}

pub async fn css(State(door): State<Arc<Vsp>>) -> Response {
    serve(&door, "text/css; charset=utf-8", CSS)
}
