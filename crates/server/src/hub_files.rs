//! The hub's attachment bytes (`confer_door_chathost::FileStore`) in the server's blob
//! store, so a box's uploads are served and cleaned up like every other attachment.

use std::io::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Bytes;
use confer_door_files::BlobStore;
use sha2::{Digest, Sha256};

pub struct HubFiles(pub Arc<dyn BlobStore>);

#[async_trait]
impl confer_door_chathost::FileStore for HubFiles {
    async fn put(&self, bytes: Bytes) -> std::io::Result<(String, u64, String)> {
        let sha = hex::encode(Sha256::digest(&bytes));
        let mime = confer_door_files::sniff_mimetype(&bytes[..bytes.len().min(8192)]);
        let staged = self.0.staging_path();
        let path = staged.clone();
        let data = bytes.clone();
        tokio::task::spawn_blocking(move || {
            let mut f = std::fs::File::create(&path)?;
            f.write_all(&data)?;
            f.sync_all()
        })
        .await
        .map_err(std::io::Error::other)??;
        if let Err(e) = self.0.publish(&staged, &sha).await {
            let _ = tokio::fs::remove_file(&staged).await;
            return Err(e);
        }
        Ok((sha, bytes.len() as u64, mime))
    }

    async fn get(&self, sha256: &str) -> std::io::Result<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        self.0
            .open_range(sha256, 0, u64::MAX)
            .await?
            .read_to_end(&mut out)
            .await?;
        Ok(out)
    }
}
