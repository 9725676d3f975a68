//! The web client at `/`: served from the binary, `index.html` revalidated every time,
//! the hashed assets it names cached for good, every answer under a strict CSP.

use crate::common::{http_bytes, TestServer};

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(str::trim)
}

#[tokio::test]
async fn the_web_client_is_served_with_its_cache_and_security_headers() {
    let server = TestServer::start().await;
    let (status, head, body) = http_bytes(server.addr, "GET", "/", &[], b"").await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(&head, "cache-control"), Some("no-cache"));
    let csp = header(&head, "content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
    let html = String::from_utf8(body).unwrap();
    assert!(!html.contains("<script>"), "no inline script: {html}");

    // Every file the page names is there, immutable, with its own type.
    let mut named = 0;
    for part in html.split('"').filter(|p| p.starts_with("/assets/")) {
        named += 1;
        let (status, head, body) = http_bytes(server.addr, "GET", part, &[], b"").await;
        assert_eq!(status, 200, "{part}: {head}");
        assert!(!body.is_empty());
        assert_eq!(
            header(&head, "cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{part}"
        );
        let kind = header(&head, "content-type").unwrap_or_default();
        if part.ends_with(".js") {
            assert_eq!(kind, "text/javascript; charset=utf-8");
        } else if part.ends_with(".css") {
            assert_eq!(kind, "text/css; charset=utf-8");
        }
        assert!(header(&head, "content-security-policy").is_some());
    }
    assert!(
        named >= 2,
        "the page names its script and stylesheet: {html}"
    );

    // Revalidating index.html by its ETag costs no body.
    let etag = header(&head, "etag").unwrap().to_string();
    let (status, _, body) =
        http_bytes(server.addr, "GET", "/", &[("If-None-Match", &etag)], b"").await;
    assert_eq!(status, 304);
    assert!(body.is_empty());

    // Anything else under /assets/ is not there.
    let (status, _, _) = http_bytes(server.addr, "GET", "/assets/nope.js", &[], b"").await;
    assert_eq!(status, 404);
    let (status, _, _) = http_bytes(server.addr, "GET", "/assets/../../Cargo.toml", &[], b"").await;
    assert_eq!(status, 404);
    server.stop().await;
}
