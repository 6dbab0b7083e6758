//! Content-addressed blobs (weights, data shards, updates) behind one
//! interface with two backends, each writing a blob completely before any
//! database row names it:
//!
//! - a local directory (the default): `<dir>/<aa>/<sha256>`, written
//!   atomically (temp file, rename) and made durable before any row names
//!   it: a batch of blobs shares one flush of their filesystem
//!   ([`sync_stored`]);
//! - S3-compatible object storage (`s3://BUCKET/PREFIX`, through the
//!   `object_store` crate, with the endpoint and credentials from the
//!   standard `AWS_*` variables), where a PUT is atomic and durable once
//!   answered; several coordinator instances share it.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use oblivion_protocol::BlobId;

/// The artifact store.
#[derive(Clone, Debug)]
pub enum Artifacts {
    /// A local directory.
    Dir(PathBuf),
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

/// Writes `bytes` as `path`, so that the file is either absent or
/// complete whenever the process dies (temp file, then rename). Neither
/// its contents nor its name survive a power cut until [`sync_stored`]
/// has flushed its filesystem, which a batch of writes shares.
fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = path
        .parent()
        .ok_or_else(|| io::Error::other("artifact path has no directory"))?;
    if !parent.exists() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!("tmp{}", rand::random::<u32>()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// A blob that is stored, though it may not survive a power cut until
/// [`sync_stored`] has flushed it.
#[derive(Debug)]
pub struct Stored {
    /// Its address.
    pub id: BlobId,
    /// Its file, written but not yet flushed.
    unsynced: Option<PathBuf>,
}

/// Makes `blobs` durable, contents and names, before a row names them:
/// group commit, so a batch of updates pays for one flush, not one for
/// each blob and one for each directory it touched. On Linux that is one
/// `syncfs` of each filesystem they are on (one, but for a store whose
/// directories are mount points); elsewhere each file and its directory
/// are synced. Blocking.
pub fn sync_stored<'a>(blobs: impl IntoIterator<Item = &'a Stored>) -> io::Result<()> {
    let files: Vec<&Path> = blobs
        .into_iter()
        .filter_map(|b| b.unsynced.as_deref())
        .collect();
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        let mut flushed = std::collections::BTreeSet::new();
        for file in files {
            let dir = file.parent().unwrap_or(file);
            let dir = std::fs::File::open(dir)?;
            if flushed.insert(dir.metadata()?.dev()) {
                rustix::fs::syncfs(&dir)?;
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let mut dirs = std::collections::BTreeSet::new();
        for file in files {
            std::fs::File::open(file)?.sync_all()?;
            dirs.extend(file.parent());
        }
        for dir in dirs {
            std::fs::File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

impl Artifacts {
    /// Opens the store `url` names: `s3://BUCKET[/PREFIX]`, or a directory
    /// (created if missing). An S3 bucket is checked to answer.
    pub async fn open(url: &str) -> io::Result<Artifacts> {
        let Some(rest) = url.strip_prefix("s3://") else {
            let dir = Path::new(url.strip_prefix("file://").unwrap_or(url));
            tokio::fs::create_dir_all(dir).await?;
            return Ok(Artifacts::Dir(dir.to_path_buf()));
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

    fn path(dir: &Path, id: BlobId) -> PathBuf {
        let hex = id.hex();
        dir.join(&hex[..2]).join(hex)
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
        let path = Self::path(dir, id);
        match std::fs::read(&path) {
            // Already stored: marked fresh, so that garbage collection
            // (which spares recent blobs) does not take it from under the
            // row about to name it. It is flushed all the same: the writer
            // that stored it may not have flushed it yet. Its contents are
            // checked first: a power cut before that flush may have left
            // its name over incomplete contents, which no row names (rows
            // commit after the flush) and which are written again here.
            Ok(existing) if BlobId::of(&existing) == id => std::fs::File::options()
                .append(true)
                .open(&path)?
                .set_modified(std::time::SystemTime::now())?,
            Ok(_) => write_file(&path, bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => write_file(&path, bytes)?,
            Err(e) => return Err(e),
        }
        Ok(Stored {
            unsynced: Some(path),
            id,
        })
    }

    /// The blob, or `None`.
    pub async fn get(&self, id: BlobId) -> io::Result<Option<Vec<u8>>> {
        let read = match self {
            Artifacts::Dir(dir) => tokio::fs::read(Self::path(dir, id)).await,
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
            Artifacts::Dir(dir) => tokio::fs::try_exists(Self::path(dir, id))
                .await
                .unwrap_or(false),
            Artifacts::S3 { store, prefix } => store.head(&Self::key(prefix, id)).await.is_ok(),
        }
    }

    /// When the blob was last written, or `None` if it is absent.
    pub async fn modified(&self, id: BlobId) -> io::Result<Option<std::time::SystemTime>> {
        let got = match self {
            Artifacts::Dir(dir) => tokio::fs::metadata(Self::path(dir, id))
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
            Artifacts::Dir(dir) => tokio::fs::remove_file(Self::path(dir, id)).await,
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
