//! GELF 1.1 output for `session log`: UDP datagrams (chunked above the configured size,
//! as GELF specifies) or a TCP stream of null-terminated messages.

use async_trait::async_trait;
use confer_core::logsink::{LogError, LogRecord, LogSink};
use rand::RngCore;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Mutex;

/// GELF's chunk header: magic (2), message id (8), sequence number (1), count (1).
const CHUNK_HEADER: usize = 12;
const CHUNK_MAGIC: [u8; 2] = [0x1e, 0x0f];
/// GELF allows at most 128 chunks per message.
const MAX_CHUNKS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum GelfError {
    #[error("gelf: expected udp://host:port or tcp://host:port, got {0:?}")]
    BadUrl(String),
    #[error("gelf: chunk size must be larger than {CHUNK_HEADER}")]
    BadChunkSize,
}

enum Transport {
    Udp,
    /// The open stream, if any. A tokio `Mutex` because the lock is held across the write:
    /// messages on one TCP stream must not interleave.
    Tcp(Mutex<Option<TcpStream>>),
}

pub struct GelfSink {
    address: String,
    transport: Transport,
    chunk_size: usize,
}

impl GelfSink {
    pub fn from_url(url: &str, chunk_size: usize) -> Result<Self, GelfError> {
        if chunk_size <= CHUNK_HEADER {
            return Err(GelfError::BadChunkSize);
        }
        let (transport, address) = if let Some(a) = url.strip_prefix("udp://") {
            (Transport::Udp, a)
        } else if let Some(a) = url.strip_prefix("tcp://") {
            (Transport::Tcp(Mutex::new(None)), a)
        } else {
            return Err(GelfError::BadUrl(url.to_string()));
        };
        if address.is_empty() || !address.contains(':') {
            return Err(GelfError::BadUrl(url.to_string()));
        }
        Ok(GelfSink {
            address: address.trim_end_matches('/').to_string(),
            transport,
            chunk_size,
        })
    }

    async fn send_udp(&self, payload: &[u8]) -> Result<(), LogError> {
        // Checked first: a record too large for GELF's chunks is the client's to fix.
        let datagrams = datagrams(payload, self.chunk_size).map_err(|e| {
            LogError::TooLarge(format!("log record too large for GELF over UDP: {e}"))
        })?;
        self.send_datagrams(datagrams)
            .await
            .map_err(|e| LogError::Failed(format!("gelf to {}: {e}", self.address)))
    }

    async fn send_datagrams(&self, datagrams: Vec<Vec<u8>>) -> std::io::Result<()> {
        let bind = if self.address.starts_with('[') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        let socket = UdpSocket::bind(bind).await?;
        socket.connect(&self.address).await?;
        for datagram in datagrams {
            socket.send(&datagram).await?;
        }
        Ok(())
    }

    async fn send_tcp(
        &self,
        stream: &Mutex<Option<TcpStream>>,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let mut framed = Vec::with_capacity(payload.len() + 1);
        framed.extend_from_slice(payload);
        framed.push(0);
        let mut guard = stream.lock().await;
        // One retry on a fresh connection: the old one may have been closed by the server.
        for attempt in 0..2 {
            if guard.is_none() {
                *guard = Some(TcpStream::connect(&self.address).await?);
            }
            if let Some(conn) = guard.as_mut() {
                match conn.write_all(&framed).await {
                    Ok(()) => return Ok(()),
                    Err(e) if attempt == 1 => return Err(e),
                    Err(_) => *guard = None,
                }
            }
        }
        Ok(())
    }
}

/// Split a payload into GELF datagrams: one plain datagram when it fits, else chunks.
fn datagrams(payload: &[u8], chunk_size: usize) -> std::io::Result<Vec<Vec<u8>>> {
    if payload.len() <= chunk_size {
        return Ok(vec![payload.to_vec()]);
    }
    let per_chunk = chunk_size - CHUNK_HEADER;
    let count = payload.len().div_ceil(per_chunk);
    if count > MAX_CHUNKS {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("message needs {count} chunks, GELF allows {MAX_CHUNKS}"),
        ));
    }
    let mut id = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut id);
    Ok(payload
        .chunks(per_chunk)
        .enumerate()
        .map(|(seq, part)| {
            let mut d = Vec::with_capacity(CHUNK_HEADER + part.len());
            d.extend_from_slice(&CHUNK_MAGIC);
            d.extend_from_slice(&id);
            d.push(seq as u8);
            d.push(count as u8);
            d.extend_from_slice(part);
            d
        })
        .collect())
}

/// The GELF 1.1 JSON of a record.
pub fn gelf_json(record: &LogRecord) -> Value {
    let mut obj = Map::new();
    obj.insert("version".into(), Value::from("1.1"));
    obj.insert("host".into(), Value::from(record.host.as_str()));
    obj.insert(
        "short_message".into(),
        Value::from(record.short_message.as_str()),
    );
    if let Some(full) = &record.full_message {
        obj.insert("full_message".into(), Value::from(full.as_str()));
    }
    obj.insert(
        "timestamp".into(),
        Value::from(record.timestamp_us as f64 / 1e6),
    );
    obj.insert("level".into(), Value::from(record.level));
    obj.insert("_user".into(), Value::from(record.user.as_str()));
    obj.insert(
        "_session_id".into(),
        Value::from(record.session_id.as_str()),
    );
    // The keys that would collide go first, so `user` is always `_meta_user`.
    let (colliding, plain): (Vec<_>, Vec<_>) = record
        .meta
        .iter()
        .partition(|(key, _)| RESERVED_META_KEYS.contains(&key.as_str()));
    for (key, value) in colliding.into_iter().chain(plain) {
        let value = serde_json::from_str(value.as_str()).unwrap_or(Value::Null);
        obj.insert(meta_field_name(&obj, key), value);
    }
    Value::Object(obj)
}

/// `meta` keys whose `_key` is the server's own field (`_user`, `_session_id`) or one GELF
/// forbids (`_id`).
const RESERVED_META_KEYS: [&str; 3] = ["user", "session_id", "id"];

/// The GELF field a `meta` key becomes: `_key`, unless that name is taken (the server's
/// own `_user` and `_session_id`, an earlier meta key) or is `_id`, which GELF forbids;
/// then `_meta_key` (`_meta_meta_key` …) until it is free. So the server's fields always
/// win and no meta value is lost. GELF's own fields (`version`, `host` …) cannot be
/// reached: every meta name starts with `_`.
fn meta_field_name(obj: &Map<String, Value>, key: &str) -> String {
    let mut name = format!("_{key}");
    while name == "_id" || obj.contains_key(&name) {
        name = format!("_meta_{}", &name[1..]);
    }
    name
}

#[async_trait]
impl LogSink for GelfSink {
    async fn send(&self, record: LogRecord) -> Result<(), LogError> {
        let payload = gelf_json(&record).to_string().into_bytes();
        match &self.transport {
            Transport::Udp => self.send_udp(&payload).await,
            Transport::Tcp(stream) => self
                .send_tcp(stream, &payload)
                .await
                .map_err(|e| LogError::Failed(format!("gelf to {}: {e}", self.address))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confer_core::Json;

    #[test]
    fn small_payloads_go_whole_and_large_ones_in_numbered_chunks() {
        assert_eq!(datagrams(b"abc", 100).unwrap(), vec![b"abc".to_vec()]);
        let payload: Vec<u8> = (0..250u32).map(|i| i as u8).collect();
        let chunks = datagrams(&payload, 112).unwrap();
        assert_eq!(chunks.len(), 3);
        let id = &chunks[0][2..10];
        let mut joined = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(&c[..2], &CHUNK_MAGIC);
            assert_eq!(&c[2..10], id);
            assert_eq!((c[10], c[11]), (i as u8, 3));
            joined.extend_from_slice(&c[12..]);
        }
        assert_eq!(joined, payload);
        assert!(datagrams(&vec![0; 200 * 100], 112).is_err());
    }

    #[test]
    fn meta_keys_never_replace_the_servers_fields() {
        let record = LogRecord {
            host: "h".into(),
            short_message: "m".into(),
            full_message: None,
            level: 1,
            user: "alice".into(),
            session_id: "s1".into(),
            meta: ["meta_user", "user", "session_id", "id", "version", "key"]
                .iter()
                .map(|k| {
                    (
                        k.to_string(),
                        Json::from_validated(format!("\"{k}-value\"")),
                    )
                })
                .collect(),
            timestamp_us: 0,
        };
        let gelf = gelf_json(&record);
        assert_eq!(gelf["_user"], "alice");
        assert_eq!(gelf["_session_id"], "s1");
        assert_eq!(gelf["version"], "1.1");
        assert!(gelf.get("_id").is_none());
        assert_eq!(gelf["_meta_user"], "user-value");
        assert_eq!(gelf["_meta_session_id"], "session_id-value");
        assert_eq!(gelf["_meta_id"], "id-value");
        assert_eq!(gelf["_meta_meta_user"], "meta_user-value");
        assert_eq!(gelf["_version"], "version-value");
        assert_eq!(gelf["_key"], "key-value");
    }

    #[test]
    fn urls_choose_the_transport() {
        assert!(GelfSink::from_url("udp://127.0.0.1:12201", 1420).is_ok());
        assert!(GelfSink::from_url("tcp://localhost:12201", 1420).is_ok());
        assert!(GelfSink::from_url("http://x:1", 1420).is_err());
        assert!(GelfSink::from_url("udp://", 1420).is_err());
        assert!(GelfSink::from_url("udp://a:1", 12).is_err());
    }
}
