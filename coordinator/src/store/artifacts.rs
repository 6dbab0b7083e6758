//! Content-addressed blobs on disk: `<dir>/<aa>/<sha256>`, written once,
//! atomically and durably (temp file, fsync, rename, fsync of the
//! directory) before any database row names them, and served immutable.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The artifact directory.
#[derive(Clone, Debug)]
pub struct Artifacts {
    dir: PathBuf,
}

fn valid_sha(sha: &str) -> bool {
    sha.len() == 64 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Writes `bytes` as `path`, so that after a crash the file is either
/// absent or complete, and its name survives a power cut.
fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = path
        .parent()
        .ok_or_else(|| io::Error::other("artifact path has no directory"))?;
    std::fs::create_dir_all(parent)?;
    let tmp = path.with_extension(format!("tmp{}", rand::random::<u32>()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(parent)?.sync_all()
}

impl Artifacts {
    /// Opens (creating) the store under `dir`.
    pub async fn open(dir: &Path) -> io::Result<Artifacts> {
        tokio::fs::create_dir_all(dir).await?;
        Ok(Artifacts {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, sha: &str) -> PathBuf {
        self.dir.join(&sha[..2]).join(sha)
    }

    /// Stores `bytes` (hashing and writing on a blocking thread); returns
    /// their sha256 (hex) once they are on disk.
    pub async fn put(&self, bytes: Vec<u8>) -> io::Result<String> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let sha = hex::encode(Sha256::digest(&bytes));
            let path = store.path(&sha);
            if !path.exists() {
                write_durably(&path, &bytes)?;
            }
            Ok(sha)
        })
        .await
        .map_err(io::Error::other)?
    }

    /// The blob with this sha256, or `None`.
    pub async fn get(&self, sha: &str) -> io::Result<Option<Vec<u8>>> {
        if !valid_sha(sha) {
            return Ok(None);
        }
        match tokio::fs::read(self.path(sha)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the blob exists.
    pub async fn contains(&self, sha: &str) -> bool {
        valid_sha(sha) && tokio::fs::try_exists(self.path(sha)).await.unwrap_or(false)
    }
}
