//! What a run keeps on disk between runs: the inbox of what the hub handed over and is
//! not stored yet (`sync-inbox.json`), and the `since` of the last batch written there
//! (`sync-stored.json`), each a whole new file, synced and renamed over the old.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::Config;

/// Where what the hub handed over waits until it is stored (see [`Inbox`]).
fn inbox_path(config: &Config) -> PathBuf {
    config.data_dir.join("sync-inbox.json")
}

/// The file that keeps the `since` of the last hub batch written to the inbox.
pub(super) const STORED_FILE: &str = "sync-stored.json";

/// Where the `since` of the last hub batch written to the inbox is kept.
pub(super) fn stored_path(config: &Config) -> PathBuf {
    config.data_dir.join(STORED_FILE)
}

/// The `since` of the last hub batch this edge wrote to its inbox (0 if none, or if the
/// file is unreadable: the hub then hands again what it still holds, stored once).
pub(super) fn read_stored(config: &Config) -> i64 {
    std::fs::read(stored_path(config))
        .ok()
        .and_then(|t| serde_json::from_slice::<Value>(&t).ok())
        .and_then(|v| v["stored"].as_i64())
        .unwrap_or(0)
}

/// Write a whole new file durably: staged, synced, renamed over the old.
pub(super) fn write_durably(
    config: &Config,
    path: &std::path::Path,
    bytes: &[u8],
) -> std::io::Result<()> {
    let staged = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&staged)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&staged, path)?;
    if let Ok(dir) = std::fs::File::open(&config.data_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The most hub messages the inbox holds; with more, step 7 fetches nothing new (the hub
/// keeps a batch not fetched) until they are stored.
pub(super) const MAX_INBOX: usize = 10_000;
/// How many runs a hub message that cannot be stored (its file does not download) is
/// tried in before it is dropped with a warning.
pub(super) const MAX_TRIES: u64 = 5;

/// What the hub handed over (`GET /messages/:since`, `GET /settings`) and this edge has
/// not finished with: written to `sync-inbox.json` in the data folder (a whole new file,
/// synced, renamed over the old) as soon as an answer is read, before anything of it is
/// stored or confirmed, and emptied as its items are stored. The hub hands a batch out
/// once; a run that dies after the fetch leaves the batch here and the next run stores
/// it (every store is idempotent on the hub's id), so nothing is lost and nothing doubled.
#[derive(Debug, Default)]
pub(super) struct Inbox {
    /// `{"item": <hub message>, "tries": n}`.
    pub(super) messages: Vec<Value>,
    /// Settings as the hub sent them, stored or not, not yet confirmed (`DELETE`).
    pub(super) settings: Vec<Value>,
}

impl Inbox {
    /// The inbox a previous run left (empty if none). An unreadable one is set aside
    /// (`sync-inbox.json.bad`) with a warning, not trusted.
    pub(super) fn read(config: &Config) -> Inbox {
        let path = inbox_path(config);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(_) => return Inbox::default(),
        };
        match serde_json::from_slice::<Value>(&text) {
            Ok(Value::Object(o)) => {
                let list = |k: &str| o.get(k).and_then(Value::as_array).cloned();
                Inbox {
                    messages: list("messages").unwrap_or_default(),
                    settings: list("settings").unwrap_or_default(),
                }
            }
            _ => {
                tracing::warn!(path = %path.display(), "unreadable sync inbox set aside");
                let _ = std::fs::rename(&path, path.with_extension("json.bad"));
                Inbox::default()
            }
        }
    }

    /// Write it durably (or remove the file when empty).
    pub(super) fn write(&self, config: &Config) -> std::io::Result<()> {
        let path = inbox_path(config);
        if self.messages.is_empty() && self.settings.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        write_durably(
            config,
            &path,
            json!({"messages": self.messages, "settings": self.settings})
                .to_string()
                .as_bytes(),
        )
    }
}
