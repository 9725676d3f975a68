//! The blob store: file contents named by their SHA-256, so the same content is stored
//! once. [`LocalBlobs`] keeps them under `<data>/files/ab/abcdef…`; an S3-compatible
//! store implements the same [`BlobStore`] trait.
//!
//! Writes are staged in a local file and published with one atomic rename, so readers
//! never see a partial blob; two uploads of the same content publish the same name.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

#[async_trait]
pub trait BlobStore: Send + Sync {
    /// A fresh local path to stage new content in.
    fn staging_path(&self) -> PathBuf;
    /// Publish staged content under its SHA-256 (the staged file is consumed).
    async fn publish(&self, staged: &Path, sha256: &str) -> io::Result<()>;
    /// Read `len` bytes from `start` of a blob.
    async fn open_range(
        &self,
        sha256: &str,
        start: u64,
        len: u64,
    ) -> io::Result<tokio::io::Take<tokio::fs::File>>;
    /// A local path with the blob's content (tools like FFmpeg read it).
    fn local_path(&self, sha256: &str) -> Option<PathBuf>;
    /// Remove a blob; `false` if it was not there.
    async fn remove(&self, sha256: &str) -> io::Result<bool>;
}

pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    /// Blobs under `root` (created, with its staging folder, when missing).
    pub fn open(root: &Path) -> io::Result<LocalBlobs> {
        std::fs::create_dir_all(root.join("staging"))?;
        Ok(LocalBlobs {
            root: root.to_path_buf(),
        })
    }

    /// Remove what a crash left in the staging folder (half-written uploads and
    /// compressions); returns how many files went. Only the server calls it, at start,
    /// before it accepts an upload.
    pub fn clear_staging(&self) -> io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(self.root.join("staging"))? {
            let path = entry?.path();
            if path.is_file() {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn path(&self, sha256: &str) -> Option<PathBuf> {
        let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| self.root.join(&sha256[..2]).join(sha256))
    }
}

#[async_trait]
impl BlobStore for LocalBlobs {
    fn staging_path(&self) -> PathBuf {
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        self.root.join("staging").join(hex::encode(id))
    }

    async fn publish(&self, staged: &Path, sha256: &str) -> io::Result<()> {
        let target = self
            .path(sha256)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a sha256"))?;
        if let Some(dir) = target.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        // Same name, same content: a rename over an existing blob changes nothing a
        // reader could see, and concurrent uploads of one file end as one copy.
        tokio::fs::rename(staged, &target).await
    }

    async fn open_range(
        &self,
        sha256: &str,
        start: u64,
        len: u64,
    ) -> io::Result<tokio::io::Take<tokio::fs::File>> {
        let path = self
            .path(sha256)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such blob"))?;
        let mut file = tokio::fs::File::open(path).await?;
        file.seek(io::SeekFrom::Start(start)).await?;
        Ok(file.take(len))
    }

    fn local_path(&self, sha256: &str) -> Option<PathBuf> {
        self.path(sha256)
    }

    async fn remove(&self, sha256: &str) -> io::Result<bool> {
        let Some(path) = self.path(sha256) else {
            return Ok(false);
        };
        match tokio::fs::remove_file(path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}
