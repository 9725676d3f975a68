//! The client side of the admin HTTP API, for the `confer group`, `message` and
//! `session` commands: they act on the running server (live sessions exist only there,
//! and the store's conversation cache assumes the server is the database's only
//! writer), found from the same configuration as the server (`listen`,
//! `admin_password`) or `--server URL`.
//!
//! A minimal HTTP/1.1 client over a tokio `TcpStream` (one request per connection,
//! `Connection: close`), enough for a local JSON API without pulling in an HTTP client
//! crate. A server's `{"error": …}` becomes the error's text.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Config;

/// How long one admin request may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read (a listing of many groups or sessions fits easily).
const MAX_ANSWER: u64 = 64 << 20;

/// Where the admin API is and how to log in to it.
pub struct AdminClient {
    /// `host:port` to connect to.
    authority: String,
    /// The `Authorization` header value.
    auth: String,
}

/// `http://host:port` (a path is ignored) as `host:port`.
fn authority_of(url: &str) -> anyhow::Result<String> {
    if url.starts_with("https://") {
        bail!("{url}: https is not supported; give the server's http:// address");
    }
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        bail!("{url}: not a server address (expected http://host:port)");
    }
    Ok(if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    })
}

/// The address to reach a server listening on `listen`: a wildcard address means this
/// machine.
fn local_authority(listen: &str) -> String {
    if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        listen.to_string()
    }
}

/// Percent-encode one path segment (a login, a session id).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl AdminClient {
    /// From the configuration, or `server` when given.
    pub fn new(config: &Config, server: Option<&str>) -> anyhow::Result<AdminClient> {
        let authority = match server {
            Some(url) => authority_of(url)?,
            None => local_authority(&config.listen),
        };
        let password = config.admin_password.as_deref().ok_or_else(|| {
            anyhow!(
                "no admin password: set CONFER_ADMIN_PASSWORD (or admin_password in the \
                 --config file) to the server's"
            )
        })?;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}"));
        Ok(AdminClient {
            authority,
            auth: format!("Basic {basic}"),
        })
    }

    /// Send a request and return the answer's JSON; an error status is an error with
    /// the server's message.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("http://{}{path}", self.authority);
        let (status, answer) = tokio::time::timeout(TIMEOUT, self.exchange(method, path, body))
            .await
            .map_err(|_| anyhow!("{url}: no answer within {}s", TIMEOUT.as_secs()))?
            .with_context(|| {
                format!(
                    "cannot reach the server at http://{} (is `confer serve` running? \
                     --server URL chooses another)",
                    self.authority
                )
            })?;
        let json: Option<Value> = serde_json::from_slice(&answer).ok();
        if (200..300).contains(&status) {
            return json.ok_or_else(|| anyhow!("{url}: the answer is not JSON"));
        }
        let message = json
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&answer).trim().to_string());
        bail!("{message} (HTTP {status})")
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = tokio::net::TcpStream::connect(&self.authority).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\
             Content-Type: application/json\r\nAccept: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.authority,
            self.auth,
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.take(MAX_ANSWER).read_to_end(&mut raw).await?;
        parse_response(&raw)
    }
}

/// Status and body of a whole HTTP/1.1 response (Content-Length, chunked, or to EOF).
fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("the server's answer has no HTTP head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("the server's answer has no HTTP status"))?;
    if head.contains("\r\ntransfer-encoding: chunked") {
        return Ok((status, dechunk(body)?));
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let body = match length {
        Some(n) => body
            .get(..n)
            .ok_or_else(|| anyhow!("the server's answer was cut short"))?,
        None => body,
    };
    Ok((status, body.to_vec()))
}

fn dechunk(mut body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("a malformed chunked answer"))?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let n =
            usize::from_str_radix(size_text, 16).map_err(|_| anyhow!("a malformed chunk size"))?;
        if n == 0 {
            return Ok(out);
        }
        let chunk = body
            .get(line_end + 2..line_end + 2 + n)
            .ok_or_else(|| anyhow!("the server's answer was cut short"))?;
        out.extend_from_slice(chunk);
        body = body.get(line_end + 4 + n..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        assert_eq!(
            authority_of("http://10.0.0.1:9000/x").unwrap(),
            "10.0.0.1:9000"
        );
        assert_eq!(authority_of("localhost:8080").unwrap(), "localhost:8080");
        assert_eq!(
            authority_of("http://example.com").unwrap(),
            "example.com:80"
        );
        assert!(authority_of("https://example.com").is_err());
        assert_eq!(local_authority("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(local_authority("[::]:8080"), "[::1]:8080");
        assert_eq!(local_authority("127.0.0.1:1"), "127.0.0.1:1");
        assert_eq!(segment("a b/c@d"), "a%20b%2Fc@d");
    }

    #[test]
    fn responses_of_every_framing() {
        let fixed = b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}extra";
        assert_eq!(parse_response(fixed).unwrap(), (404, b"{}".to_vec()));
        let chunked =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (200, b"[1,2]".to_vec()));
        assert!(parse_response(b"garbage").is_err());
        let short = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}";
        assert!(parse_response(short).is_err());
    }
}
