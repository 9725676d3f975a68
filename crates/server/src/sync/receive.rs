//! One hub→edge message stored on the edge (step 7's work for each item of the inbox):
//! once per hub id, as a message from its sender (an account made when missing) to the
//! student, its file first downloaded from the hub and stored as an upload.

use std::sync::Arc;

use confer_core::hub::{HubIncoming, HubLinkKind, HubPerson};
use confer_core::Core;
use confer_door_files::BlobStore;
use serde_json::{json, Value};

use super::hub::Hub;

/// The value of attribute `name` in an `<attachment …>` tag.
pub(super) fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = tag[start..].find('"')? + start;
    Some(
        tag[start..end]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// A JSON string or number as text (empty for anything else).
pub(super) fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Why a hub→edge message was not stored.
pub(super) enum Failure {
    /// Worth another try on the next run (its file did not download, the disk failed).
    Retry(String),
    /// Never storable (no id or recipient, a recipient this edge does not have).
    Drop(String),
}

impl From<confer_core::CoreError> for Failure {
    fn from(e: confer_core::CoreError) -> Failure {
        use confer_core::CoreError;
        match e {
            CoreError::UserNotFound | CoreError::InvalidValue(_) => Failure::Drop(e.to_string()),
            e => Failure::Retry(e.to_string()),
        }
    }
}

/// Store one hub→edge message; `false` if it was stored before.
pub(super) async fn receive(
    core: &Core,
    blobs: &Arc<dyn BlobStore>,
    hub: &Hub,
    item: &Value,
) -> Result<bool, Failure> {
    let id = text_of(&item["id"]);
    let sender = text_of(&item["sender"]["username"]);
    let recipient = text_of(&item["recipient"]["username"]);
    if id.is_empty() || sender.is_empty() || recipient.is_empty() {
        return Err(Failure::Drop(format!(
            "a hub message without id, sender or recipient: {item}"
        )));
    }
    if core.hub_link(HubLinkKind::FromHub, &id).await?.is_some() {
        return Ok(false);
    }
    let message = item["message"].as_str().unwrap_or_default();
    let person = HubPerson {
        username: sender,
        ..HubPerson::default()
    };
    let tag = message.trim_start();
    if tag.starts_with("<attachment") {
        let filepath = download_path(&attribute(tag, "filepath").unwrap_or_default());
        let filename = attribute(tag, "filename").unwrap_or_else(|| "file".into());
        let kind = attribute(tag, "type").unwrap_or_else(|| "document".into());
        let a = hub
            .call("GET", &filepath, None, Vec::new())
            .await
            .map_err(|e| Failure::Retry(format!("downloading {filepath}: {e}")))?;
        if a.status != 200 {
            return Err(Failure::Retry(format!(
                "downloading {filepath}: HTTP {}",
                a.status
            )));
        }
        let stored = store_blob(blobs, &a.body)
            .await
            .map_err(|e| Failure::Retry(format!("storing {filepath}: {e:#}")))?;
        let mime = confer_door_files::sniff_mimetype(&a.body[..a.body.len().min(8192)]);
        let att = core
            .edge_register_download(stored, a.body.len() as u64, mime.clone(), filename)
            .await?;
        let attachments = json!([{
            "item_id": att.item_id.to_string(), "type": kind, "filename": att.filename, "mimetype": mime,
        }])
        .to_string();
        return Ok(core
            .edge_store_from_hub(HubIncoming {
                hub_id: id,
                sender: person,
                recipient,
                text: None,
                attachments: Some(attachments),
                kind: confer_core::service::attachment_kind(&kind),
                item_ids: vec![att.item_id],
            })
            .await?);
    }
    Ok(core
        .edge_store_from_hub(HubIncoming {
            hub_id: id,
            sender: person,
            recipient,
            text: Some(message.to_string()),
            ..HubIncoming::default()
        })
        .await?)
}

/// The path on the hub to download `filepath` from: a path as it is, a full URL by its
/// path (the credential goes only to the hub synced with).
fn download_path(filepath: &str) -> String {
    let rest = filepath
        .strip_prefix("https://")
        .or_else(|| filepath.strip_prefix("http://"));
    match rest {
        Some(rest) => rest
            .find('/')
            .map_or("/".to_string(), |i| rest[i..].to_string()),
        None if filepath.starts_with('/') => filepath.to_string(),
        None => format!("/{filepath}"),
    }
}

async fn store_blob(blobs: &Arc<dyn BlobStore>, data: &[u8]) -> anyhow::Result<String> {
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(data));
    let staged = blobs.staging_path();
    tokio::fs::write(&staged, data).await?;
    if let Err(e) = blobs.publish(&staged, &sha).await {
        let _ = tokio::fs::remove_file(&staged).await;
        return Err(e.into());
    }
    Ok(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_tags_and_file_paths_are_read_as_the_hub_writes_them() {
        let tag = r#"<attachment type="photo" id="7" filename="a &quot;b&quot;.png" filepath="/chathost/files/3/7">"#;
        assert_eq!(attribute(tag, "filename").as_deref(), Some("a \"b\".png"));
        assert_eq!(attribute(tag, "type").as_deref(), Some("photo"));
        assert_eq!(attribute(tag, "missing"), None);
        assert_eq!(download_path("/chathost/files/3/7"), "/chathost/files/3/7");
        assert_eq!(
            download_path("https://hub.org/chathost/files/3/7"),
            "/chathost/files/3/7"
        );
        assert_eq!(download_path("files/3"), "/files/3");
    }
}
