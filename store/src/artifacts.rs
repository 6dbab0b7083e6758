//! Content-addressed blobs (weights, data shards, updates) behind one
//! interface with two backends, each writing a blob completely before any
//! database row names it:
//!
//! - a local directory (the default): `<dir>/<aa>/<sha256>`, written
//!   whole under its name and made durable before any row names it, a
//!   batch of blobs with one flush ([`sync_stored`]; `blob_dir.rs`);
//! - S3-compatible object storage (`s3://BUCKET/PREFIX`, through the
//!   `object_store` crate, with the endpoint and credentials from the
//!   standard `AWS_*` variables), where a PUT is atomic and durable once
//!   answered; several coordinator instances share it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use oblivion_protocol::BlobId;

use crate::blob_dir::BlobDir;

/// The artifact store.
#[derive(Clone, Debug)]
pub enum Artifacts {
    /// A local directory.
    Dir(Arc<BlobDir>),
    /// A bucket (and a prefix in it) of S3-compatible storage.
    S3 {
        /// The bucket.
        store: Arc<dyn ObjectStore>,
        /// Key prefix, without a trailing slash (may be empty).
        prefix: String,
    },
}

fn s3_error(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        e => io::Error::other(e),
    }
}

/// A blob that is stored, though it may not survive a power cut until
/// [`sync_stored`] has flushed it.
#[derive(Debug)]
pub struct Stored {
    /// Its address.
    pub id: BlobId,
    /// Its file and directory store, written but not yet flushed.
    unsynced: Option<(Arc<BlobDir>, PathBuf)>,
}

/// Makes `blobs` durable, contents and names, before a row names them:
/// group commit, so a batch of updates pays for one flush of their
/// directory store ([`BlobDir::flush`]), not one for each blob. Blocking.
pub fn sync_stored<'a>(blobs: impl IntoIterator<Item = &'a Stored>) -> io::Result<()> {
    let mut stores: Vec<(&Arc<BlobDir>, Vec<&Path>)> = Vec::new();
    for (store, file) in blobs.into_iter().filter_map(|b| b.unsynced.as_ref()) {
        match stores.iter_mut().find(|(s, _)| Arc::ptr_eq(s, store)) {
            Some((_, files)) => files.push(file),
            None => stores.push((store, vec![file])),
        }
    }
    for (store, files) in stores {
        store.flush(&files)?;
    }
    Ok(())
}

impl Artifacts {
    /// Opens the store `url` names: `s3://BUCKET[/PREFIX]`, or a directory
    /// (created if missing). An S3 bucket is checked to answer.
    pub async fn open(url: &str) -> io::Result<Artifacts> {
        let Some(rest) = url.strip_prefix("s3://") else {
            let dir = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
            let dir = tokio::task::spawn_blocking(move || BlobDir::open(&dir))
                .await
                .map_err(io::Error::other)??;
            return Ok(Artifacts::Dir(Arc::new(dir)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(io::Error::other(format!("{url:?} names no bucket")));
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if std::env::var("AWS_ENDPOINT_URL").is_ok_and(|e| e.starts_with("http://")) {
            builder = builder.with_allow_http(true);
        }
        let store: Arc<dyn ObjectStore> = Arc::new(builder.build().map_err(io::Error::other)?);
        let prefix = prefix.trim_matches('/').to_string();
        // A listing fails on a missing bucket or bad credentials (a HEAD of
        // a missing key would not tell those apart from an empty store).
        let listing = ObjectPath::from(prefix.as_str());
        store
            .list_with_delimiter(Some(&listing))
            .await
            .map_err(|e| io::Error::other(format!("artifact store {url}: {e}")))?;
        Ok(Artifacts::S3 { store, prefix })
    }

    fn key(prefix: &str, id: BlobId) -> ObjectPath {
        let hex = id.hex();
        if prefix.is_empty() {
            ObjectPath::from(format!("{}/{hex}", &hex[..2]))
        } else {
            ObjectPath::from(format!("{prefix}/{}/{hex}", &hex[..2]))
        }
    }

    /// Stores `bytes` (hashing, and writing to disk, on a blocking
    /// thread); returns their address once they are stored durably.
    pub async fn put(&self, bytes: Vec<u8>) -> io::Result<BlobId> {
        let stored = match self {
            Artifacts::Dir(_) => {
                let store = self.clone();
                tokio::task::spawn_blocking(move || {
                    let stored = store.write_here(&bytes)?;
                    sync_stored([&stored])?;
                    Ok::<_, io::Error>(stored)
                })
                .await
                .map_err(io::Error::other)??
            }
            Artifacts::S3 { .. } => self.put_unsynced(bytes).await?,
        };
        Ok(stored.id)
    }

    /// Stores `bytes` as [`Artifacts::put`] does, but leaves the blob for
    /// [`sync_stored`] to flush with others.
    pub async fn put_unsynced(&self, bytes: Vec<u8>) -> io::Result<Stored> {
        match self {
            Artifacts::Dir(_) => {
                let store = self.clone();
                tokio::task::spawn_blocking(move || store.write_here(&bytes))
                    .await
                    .map_err(io::Error::other)?
            }
            Artifacts::S3 { store, prefix } => {
                let (id, bytes) = tokio::task::spawn_blocking(move || (BlobId::of(&bytes), bytes))
                    .await
                    .map_err(io::Error::other)?;
                // Always written, even when present: its new modification
                // time protects it from garbage collection for a while.
                let key = Self::key(prefix, id);
                store
                    .put(&key, PutPayload::from(bytes))
                    .await
                    .map_err(s3_error)?;
                // A PUT is durable once answered.
                Ok(Stored { id, unsynced: None })
            }
        }
    }

    /// Whether blobs are written on the caller's thread
    /// ([`Artifacts::write_here`]): a directory's are; object storage's are
    /// uploaded ([`Artifacts::put_unsynced`]).
    pub fn writes_here(&self) -> bool {
        matches!(self, Artifacts::Dir(_))
    }

    /// Hashes and writes `bytes` on this thread, which must be one that may
    /// block (the thread that checked them, say: no hand-off to another),
    /// leaving the blob for [`sync_stored`] to flush. Only for a directory
    /// store ([`Artifacts::writes_here`]); object storage answers an
    /// error.
    pub fn write_here(&self, bytes: &[u8]) -> io::Result<Stored> {
        let Artifacts::Dir(dir) = self else {
            return Err(io::Error::other("object storage is written with put"));
        };
        let id = BlobId::of(bytes);
        let file = dir.write(id, bytes)?;
        Ok(Stored {
            id,
            unsynced: Some((dir.clone(), file)),
        })
    }

    /// The blob, or `None`.
    pub async fn get(&self, id: BlobId) -> io::Result<Option<Vec<u8>>> {
        let read = match self {
            Artifacts::Dir(dir) => tokio::fs::read(dir.path(id)).await,
            Artifacts::S3 { store, prefix } => match store.get(&Self::key(prefix, id)).await {
                Ok(got) => got.bytes().await.map(|b| b.to_vec()).map_err(s3_error),
                Err(e) => Err(s3_error(e)),
            },
        };
        match read {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the blob exists.
    pub async fn contains(&self, id: BlobId) -> bool {
        match self {
            Artifacts::Dir(dir) => tokio::fs::try_exists(dir.path(id)).await.unwrap_or(false),
            Artifacts::S3 { store, prefix } => store.head(&Self::key(prefix, id)).await.is_ok(),
        }
    }

    /// When the blob was last written, or `None` if it is absent.
    pub async fn modified(&self, id: BlobId) -> io::Result<Option<std::time::SystemTime>> {
        let got = match self {
            Artifacts::Dir(dir) => tokio::fs::metadata(dir.path(id))
                .await
                .and_then(|m| m.modified()),
            Artifacts::S3 { store, prefix } => store
                .head(&Self::key(prefix, id))
                .await
                .map(|m| m.last_modified.into())
                .map_err(s3_error),
        };
        match got {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the blob (no error if it is already gone).
    pub async fn delete(&self, id: BlobId) -> io::Result<()> {
        let result = match self {
            Artifacts::Dir(dir) => tokio::fs::remove_file(dir.path(id)).await,
            Artifacts::S3 { store, prefix } => {
                store.delete(&Self::key(prefix, id)).await.map_err(s3_error)
            }
        };
        match result {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
