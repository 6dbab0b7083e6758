//! Content-addressed blobs on disk: `<dir>/<aa>/<sha256>`, written once,
//! atomically (temp file + rename), and served immutable.

use std::io;
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

    /// Stores `bytes`; returns their sha256 (hex).
    pub async fn put(&self, bytes: &[u8]) -> io::Result<String> {
        let sha = hex::encode(Sha256::digest(bytes));
        let path = self.path(&sha);
        if tokio::fs::try_exists(&path).await? {
            return Ok(sha);
        }
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let tmp = path.with_extension(format!("tmp{}", rand::random::<u32>()));
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(sha)
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
