//! A local directory of blobs, `<root>/<aa>/<sha256>`, and how its writes
//! become durable. A blob is written whole under its name (temp file, then
//! rename), so a killed process leaves it absent or complete; it survives
//! a power cut once its batch is flushed ([`BlobDir::flush`]), before any
//! row names it. A batch is flushed with one `syncfs` of the filesystem:
//! one flush for hundreds of blobs, where an `fsync` of each blob and each
//! directory it touched took 7% of all CPU under load.
//!
//! A flush that fails leaves the data of that batch, and perhaps of other
//! blobs written meanwhile, unknown on disk, while the page cache still
//! holds it; Linux reports such an error to each open handle once. So the
//! first failure is final: the batch's files are removed, and the store
//! refuses every later write until the process restarts.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use oblivion_protocol::BlobId;

/// A local directory of blobs (see the module).
#[derive(Debug)]
pub struct BlobDir {
    root: PathBuf,
    /// The root, held open from the start: `syncfs` on it reports every
    /// writeback error of its filesystem since then, not only those after
    /// a handle opened for the flush.
    handle: File,
    flush: Flush,
    /// Why a flush failed, after which nothing more is written.
    failed: Mutex<Option<String>>,
}

/// How a batch is made durable here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flush {
    /// One `syncfs` of the filesystem: Linux 5.8 and later (earlier
    /// kernels do not report its errors), not over FUSE (whose `syncfs`
    /// does not reach the daemon's storage).
    Filesystem,
    /// An `fsync` of each file, of each directory holding one, and of the
    /// root (a new `<aa>/` directory's name).
    EachFile,
}

impl BlobDir {
    /// Opens (creating) the directory `root`.
    pub(crate) fn open(root: &Path) -> io::Result<BlobDir> {
        std::fs::create_dir_all(root)?;
        let handle = File::open(root)?;
        let flush = flush_for(&handle);
        Ok(BlobDir {
            root: root.to_path_buf(),
            handle,
            flush,
            failed: Mutex::new(None),
        })
    }

    /// Where blob `id` lives.
    pub(crate) fn path(&self, id: BlobId) -> PathBuf {
        let hex = id.hex();
        self.root.join(&hex[..2]).join(hex)
    }

    /// Writes `bytes`, whose address is `id`, unless they are there
    /// already; returns the file, to be flushed with its batch.
    pub(crate) fn write(&self, id: BlobId, bytes: &[u8]) -> io::Result<PathBuf> {
        self.refuse_if_failed()?;
        let path = self.path(id);
        match File::options().read(true).append(true).open(&path) {
            // Already stored: checked, then marked fresh (one handle, so
            // garbage collection cannot remove it in between unseen), so
            // that collection, which spares recent blobs, does not take it
            // from under the row about to name it. It is flushed with the
            // batch all the same: its writer may not have flushed it yet.
            Ok(mut existing) => {
                let mut stored = Vec::with_capacity(bytes.len());
                existing.read_to_end(&mut stored)?;
                // A power cut before its writer's flush can leave the name
                // over incomplete contents, which no row names (rows commit
                // after the flush): written again.
                if BlobId::of(&stored) == id {
                    existing.set_modified(std::time::SystemTime::now())?;
                } else {
                    write_file(&path, bytes)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => write_file(&path, bytes)?,
            Err(e) => return Err(e),
        }
        Ok(path)
    }

    /// Makes `files` (written by [`BlobDir::write`]) durable, contents and
    /// names. The first failure is final (see the module's comment).
    pub(crate) fn flush(&self, files: &[&Path]) -> io::Result<()> {
        self.refuse_if_failed()?;
        let flushed = match self.flush {
            Flush::Filesystem => sync_filesystem(&self.handle),
            Flush::EachFile => self.sync_each(files),
        };
        flushed.inspect_err(|e| {
            let why = format!(
                "flushing the artifact directory {} failed ({e}); nothing more is \
                 stored until the coordinator restarts (check the disk first)",
                self.root.display()
            );
            *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
            for file in files {
                let _ = std::fs::remove_file(file);
            }
        })
    }

    fn sync_each(&self, files: &[&Path]) -> io::Result<()> {
        let mut dirs = std::collections::BTreeSet::new();
        for file in files {
            File::open(file)?.sync_all()?;
            dirs.extend(file.parent());
        }
        for dir in dirs {
            File::open(dir)?.sync_all()?;
        }
        self.handle.sync_all()
    }

    fn refuse_if_failed(&self) -> io::Result<()> {
        match &*self.failed.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(why) => Err(io::Error::other(why.clone())),
            None => Ok(()),
        }
    }
}

/// Writes `bytes` as `path`, so that the file is either absent or complete
/// whenever the process dies (temp file, then rename).
fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = path
        .parent()
        .ok_or_else(|| io::Error::other("artifact path has no directory"))?;
    if !parent.exists() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!("tmp{}", rand::random::<u32>()));
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(target_os = "linux")]
fn flush_for(root: &File) -> Flush {
    /// `statfs`'s type of a FUSE filesystem.
    const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut version = kernel
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let reports_errors = (version.next().unwrap_or(0), version.next().unwrap_or(0)) >= (5, 8);
    // `f_type`'s width differs between targets.
    #[allow(clippy::unnecessary_cast)]
    let fuse = rustix::fs::fstatfs(root).is_ok_and(|s| s.f_type as i64 == FUSE_SUPER_MAGIC);
    if reports_errors && !fuse {
        Flush::Filesystem
    } else {
        Flush::EachFile
    }
}

#[cfg(not(target_os = "linux"))]
fn flush_for(_root: &File) -> Flush {
    Flush::EachFile
}

#[cfg(target_os = "linux")]
fn sync_filesystem(root: &File) -> io::Result<()> {
    Ok(rustix::fs::syncfs(root)?)
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(_root: &File) -> io::Result<()> {
    Err(io::Error::other("syncfs is Linux's"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_flushes_a_batch_with_one_syncfs() {
        let dir = std::env::temp_dir().join(format!("blobdir{}", rand::random::<u32>()));
        let store = BlobDir::open(&dir).unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(store.flush, Flush::Filesystem);
        }
        let path = store.write(BlobId::of(b"x"), b"x").unwrap();
        store.flush(&[&path]).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_flush_removes_its_batch_and_refuses_every_later_write() {
        let dir = std::env::temp_dir().join(format!("blobdir{}", rand::random::<u32>()));
        let store = BlobDir::open(&dir).unwrap();
        let path = store.write(BlobId::of(b"x"), b"x").unwrap();
        // A file that is not there fails the flush of each file; the
        // filesystem's flush is made to fail the same way.
        let store = BlobDir {
            flush: Flush::EachFile,
            ..store
        };
        let missing = dir.join("missing");
        assert!(store.flush(&[&path, &missing]).is_err());
        assert!(!path.exists(), "the failed batch's blob is removed");
        let refused = store.write(BlobId::of(b"y"), b"y").unwrap_err();
        assert!(refused.to_string().contains("restarts"), "{refused}");
        assert!(store.flush(&[]).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
