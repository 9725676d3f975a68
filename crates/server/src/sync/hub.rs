//! The hub as the edge calls it: one HTTP/1.1 request per connection (`connection:
//! close`), TLS by rustls for an `https://` hub (the public roots, and `sync_ca_file`'s),
//! every call within `sync_timeout_ms`, an answer read up to [`MAX_ANSWER`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

/// The largest answer read from a hub (a batch, a file).
const MAX_ANSWER: usize = 64 << 20;

pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A hub's address and this box's credential.
pub(super) struct Hub {
    pub(super) tls: bool,
    host: String,
    port: u16,
    /// The path every endpoint goes under (`/chathost`).
    prefix: String,
    auth: String,
    pub(super) boxid: String,
    timeout: Duration,
    /// For an `https://` hub: the public roots and those of `sync_ca_file`.
    pub(super) tls_config: Option<Arc<rustls::ClientConfig>>,
}

/// The TLS settings for an https hub: the public roots (webpki-roots), and the
/// certificates of `ca_file` (PEM) if given: a hub with a self-signed certificate or a
/// private CA.
pub(super) fn tls_config(
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut added = 0;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert =
                cert.map_err(|e| anyhow!("{}: not a PEM certificate: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| anyhow!("{}: a certificate not usable: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(anyhow!("{}: no PEM certificate in it", path.display()));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An answer: status and body.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: Bytes,
}

impl Answer {
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(300)
            .collect()
    }
}

impl Hub {
    pub(super) fn new(
        url: &str,
        boxid: &str,
        token: &str,
        timeout: Duration,
    ) -> anyhow::Result<Hub> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            (false, url)
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (
                h.to_string(),
                p.parse().with_context(|| format!("port of {url}"))?,
            ),
            _ => (authority.to_string(), if tls { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(anyhow!("{url}: not a hub address (http://host:port)"));
        }
        let path = path.trim_end_matches('/');
        let prefix = if path.to_ascii_lowercase().ends_with("chathost") {
            format!("/{path}")
        } else if path.is_empty() {
            "/chathost".to_string()
        } else {
            format!("/{path}/chathost")
        };
        Ok(Hub {
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            prefix,
            auth: format!("Bearer {boxid}|{token}"),
            boxid: boxid.to_string(),
            timeout,
            tls_config: None,
        })
    }

    async fn connect(&self) -> std::io::Result<Box<dyn Io>> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        tcp.set_nodelay(true)?;
        if !self.tls {
            return Ok(Box::new(tcp));
        }
        let config = match &self.tls_config {
            Some(c) => c.clone(),
            None => tls_config(None).map_err(std::io::Error::other)?,
        };
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(std::io::Error::other)?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        Ok(Box::new(tls))
    }

    /// One request on its own connection, within the timeout.
    pub(super) async fn call(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let full = if path.starts_with(&self.prefix) || path.starts_with("/chathost") {
            path.to_string()
        } else {
            format!("{}{path}", self.prefix)
        };
        let work = async {
            let io = self
                .connect()
                .await
                .map_err(|e| format!("connecting: {e}"))?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                    .await
                    .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(&full)
                .header("host", format!("{}:{}", self.host, self.port))
                .header("authorization", &self.auth)
                .header("x-boxid", &self.boxid)
                .header("connection", "close");
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            let req = req
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| e.to_string())?;
            let res = sender
                .send_request(req)
                .await
                .map_err(|e| format!("request: {e}"))?;
            let status = res.status().as_u16();
            let body = Limited::new(res.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    pub(super) async fn json(
        &self,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<Answer, String> {
        self.call(
            method,
            path,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await
    }
}

/// A `multipart/form-data` body of `fields` and one file; its content type and bytes.
pub(super) fn multipart(
    fields: &[(&str, String)],
    filename: &str,
    mimetype: &str,
    data: &[u8],
) -> (String, Vec<u8>) {
    let boundary = format!("confer-sync-{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::with_capacity(data.len() + 1024);
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    let safe = filename.replace(['"', '\r', '\n'], "_");
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{safe}\"\r\nContent-Type: {mimetype}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hub_address_gives_host_port_and_the_chathost_prefix() {
        let h = Hub::new("http://10.0.0.5:8080", "b", "t", Duration::from_secs(1)).unwrap();
        assert_eq!(
            (h.tls, h.host.as_str(), h.port, h.prefix.as_str()),
            (false, "10.0.0.5", 8080, "/chathost")
        );
        let h = Hub::new(
            "https://hub.example.org/chathost/",
            "b",
            "t",
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            (h.tls, h.host.as_str(), h.port, h.prefix.as_str()),
            (true, "hub.example.org", 443, "/chathost")
        );
        assert!(Hub::new("http://", "b", "t", Duration::from_secs(1)).is_err());
    }
}
