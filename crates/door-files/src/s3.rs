//! [`S3Blobs`]: attachment contents on an S3-compatible object store (AWS S3, MinIO,
//! Ceph, moto…), so that several nodes serve the same files without a shared folder.
//!
//! The object store is the truth: a blob is published when its upload to the store
//! completed (a multipart upload for a large one, so nothing is held in memory whole),
//! and removed from it by the clean-up job. Each node keeps the blobs it wrote or served
//! in its local folder ([`LocalBlobs`], the same layout), so ranges are served from a
//! local file and tools that read a path (FFmpeg) have one; a blob this node has not seen
//! is fetched once, into staging first, then renamed into place as any upload is. Those
//! local copies are a cache: deleting them loses nothing.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use tokio::io::AsyncWriteExt;

use crate::blobs::{BlobStore, LocalBlobs};

/// Where the objects are and how to reach them.
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    /// The bucket.
    pub bucket: String,
    /// A key prefix inside it (`confer/`), or empty.
    pub prefix: String,
    /// The endpoint of a store other than AWS (`http://127.0.0.1:9000`); empty for AWS.
    pub endpoint: String,
    pub region: String,
    /// Credentials; empty to take them from the environment (`AWS_ACCESS_KEY_ID` …).
    pub access_key: String,
    pub secret_key: String,
}

fn other(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        e => io::Error::other(e),
    }
}

fn valid(sha256: &str) -> bool {
    sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit())
}

pub struct S3Blobs {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    local: LocalBlobs,
}

impl S3Blobs {
    /// The store of `options`, with `local` as this node's copies. Nothing is asked of
    /// the store yet.
    pub fn open(options: &S3Options, local: LocalBlobs) -> io::Result<S3Blobs> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&options.bucket);
        if !options.region.is_empty() {
            builder = builder.with_region(&options.region);
        }
        if !options.endpoint.is_empty() {
            builder = builder
                .with_endpoint(&options.endpoint)
                .with_allow_http(options.endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if !options.access_key.is_empty() {
            builder = builder
                .with_access_key_id(&options.access_key)
                .with_secret_access_key(&options.secret_key);
        }
        let store = builder.build().map_err(io::Error::other)?;
        Ok(S3Blobs::over(Arc::new(store), &options.prefix, local))
    }

    /// Over any object store (tests use `object_store`'s in-memory one).
    pub fn over(store: Arc<dyn ObjectStore>, prefix: &str, local: LocalBlobs) -> S3Blobs {
        S3Blobs {
            store,
            prefix: prefix.to_string(),
            local,
        }
    }

    fn key(&self, sha256: &str) -> io::Result<ObjectPath> {
        if !valid(sha256) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a sha256"));
        }
        Ok(ObjectPath::from(format!("{}{sha256}", self.prefix)))
    }

    /// Fetch a blob this node has no copy of into its folder.
    async fn fetch(&self, sha256: &str) -> io::Result<()> {
        let key = self.key(sha256)?;
        let staged = self.local.staging_path();
        let result = async {
            let mut body = self.store.get(&key).await.map_err(other)?.into_stream();
            let mut file = tokio::fs::File::create(&staged).await?;
            while let Some(chunk) = body.next().await {
                file.write_all(&chunk.map_err(other)?).await?;
            }
            file.sync_all().await?;
            drop(file);
            self.local.publish(&staged, sha256).await
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&staged).await;
        }
        result
    }

    fn cached(&self, sha256: &str) -> Option<PathBuf> {
        self.local.local_path(sha256).filter(|p| p.is_file())
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    fn staging_path(&self) -> PathBuf {
        self.local.staging_path()
    }

    async fn publish(&self, staged: &Path, sha256: &str) -> io::Result<()> {
        let key = self.key(sha256)?;
        let mut file = tokio::fs::File::open(staged).await?;
        let mut upload = BufWriter::new(self.store.clone(), key);
        if let Err(e) = tokio::io::copy(&mut file, &mut upload).await {
            let _ = upload.abort().await;
            return Err(e);
        }
        upload.shutdown().await?;
        // Kept as this node's copy.
        self.local.publish(staged, sha256).await
    }

    async fn open_range(
        &self,
        sha256: &str,
        start: u64,
        len: u64,
    ) -> io::Result<tokio::io::Take<tokio::fs::File>> {
        if self.cached(sha256).is_none() {
            self.fetch(sha256).await?;
        }
        self.local.open_range(sha256, start, len).await
    }

    fn local_path(&self, sha256: &str) -> Option<PathBuf> {
        self.cached(sha256)
    }

    async fn remove(&self, sha256: &str) -> io::Result<bool> {
        let key = self.key(sha256)?;
        let stored = match self.store.head(&key).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(other(e)),
        };
        if stored {
            self.store.delete(&key).await.map_err(other)?;
        }
        let local = self.local.remove(sha256).await?;
        Ok(stored || local)
    }
}
