//! A local directory of blobs, `<root>/<aa>/<sha256>`, and how its writes
//! become durable. A blob is written whole under its name (temp file, then
//! rename), so a killed process leaves it absent or complete; it survives
//! a power cut once its batch is flushed ([`BlobDir::flush`]), before any
//! row names it. Where `syncfs` reports errors (Linux 5.8 and later, not
//! FUSE or overlayfs), a batch is flushed with one `syncfs` of the
//! filesystem: one flush for hundreds of blobs, where an `fsync` of each
//! blob and each directory it touched took 7% of all CPU under load.
//! Elsewhere each file is synced.
//!
//! A flush that fails leaves the data of that batch, and perhaps of other
//! blobs written meanwhile, unknown on disk, while the page cache still
//! holds it; Linux reports such an error to each open handle once. So the
//! first failure is final: the store refuses every later write until the
//! process restarts, and flushes run one at a time, so that none can pass
//! after another has seen the error. A write-back error on any file of
//! the filesystem (the database's too) stops artifact writes so. The
//! batch's files are left where they are: a file is named by its contents,
//! so one of them may be a blob that an earlier, flushed batch wrote and a
//! committed row names. No row names the others, which garbage collection
//! removes in time; a restart after a disk error without a reboot could
//! find one in the page cache and take it for stored, which is why the
//! error says to check the disk first.

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
    /// Why a flush failed, after which nothing more is written; held for
    /// the whole of each flush.
    failed: Mutex<Option<String>>,
}

/// How a batch is made durable here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flush {
    /// One `syncfs` of the filesystem, where it reports errors
    /// ([`flush_on`]).
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
            // Already stored: checked, then marked fresh through the same
            // handle, so that garbage collection, which spares recent
            // blobs, does not take it from under the row about to name it.
            // It is flushed with the batch all the same: its writer may not
            // have flushed it yet.
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
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        refusal(&failed)?;
        let flushed = match self.flush {
            Flush::Filesystem => sync_filesystem(&self.handle),
            Flush::EachFile => self.sync_each(files),
        };
        flushed.inspect_err(|e| {
            *failed = Some(format!(
                "flushing the artifact directory {} failed ({e}); nothing more is \
                 stored until the coordinator restarts (check the disk first)",
                self.root.display()
            ));
        })
    }

    fn sync_each(&self, files: &[&Path]) -> io::Result<()> {
        let mut dirs = std::collections::BTreeSet::new();
        for file in files {
            match File::open(file) {
                Ok(f) => f.sync_all()?,
                // Collected meanwhile (it was there before this batch).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            dirs.extend(file.parent());
        }
        for dir in dirs {
            File::open(dir)?.sync_all()?;
        }
        self.handle.sync_all()
    }

    fn refuse_if_failed(&self) -> io::Result<()> {
        refusal(&self.failed.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The refusal of a store whose flush failed (`failed` says why).
fn refusal(failed: &Option<String>) -> io::Result<()> {
    match failed {
        Some(why) => Err(io::Error::other(why.clone())),
        None => Ok(()),
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
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // `f_type`'s width differs between targets.
    #[allow(clippy::unnecessary_cast)]
    let filesystem = rustix::fs::fstatfs(root).map_or(0, |s| s.f_type as i64);
    flush_on(&kernel, filesystem)
}

/// How to flush on Linux `kernel` (its release, "6.1.0-13-amd64") and the
/// filesystem of `statfs` type `filesystem`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn flush_on(kernel: &str, filesystem: i64) -> Flush {
    /// FUSE: its `syncfs` does not reach the daemon's storage.
    const FUSE: i64 = 0x6573_5546;
    /// overlayfs: its `syncfs` may not pass on the lower layer's errors.
    const OVERLAYFS: i64 = 0x794c_7630;
    let mut version = kernel
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    // 5.8: `syncfs` reports write-back errors.
    let reports_errors = (version.next().unwrap_or(0), version.next().unwrap_or(0)) >= (5, 8);
    if reports_errors && filesystem != FUSE && filesystem != OVERLAYFS {
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
    fn syncfs_only_where_it_reports_errors() {
        const EXT4: i64 = 0xef53;
        assert_eq!(flush_on("6.1.0-13-amd64", EXT4), Flush::Filesystem);
        assert_eq!(flush_on("5.8.0", EXT4), Flush::Filesystem);
        assert_eq!(flush_on("5.10", EXT4), Flush::Filesystem);
        assert_eq!(flush_on("5.4.0-150-generic", EXT4), Flush::EachFile);
        assert_eq!(flush_on("4.4.0", EXT4), Flush::EachFile);
        assert_eq!(flush_on("", EXT4), Flush::EachFile);
        assert_eq!(flush_on("6.8.0", 0x6573_5546), Flush::EachFile, "FUSE");
        assert_eq!(flush_on("6.8.0", 0x794c_7630), Flush::EachFile, "overlayfs");
    }

    #[test]
    fn a_batch_is_flushed_either_way() {
        let dir = std::env::temp_dir().join(format!("blobdir{}", rand::random::<u32>()));
        let store = BlobDir::open(&dir).unwrap();
        let path = store.write(BlobId::of(b"x"), b"x").unwrap();
        store.flush(&[&path]).unwrap();
        let store = BlobDir {
            flush: Flush::EachFile,
            ..store
        };
        let path = store.write(BlobId::of(b"y"), b"y").unwrap();
        store.flush(&[&path]).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_flush_refuses_every_later_write() {
        let dir = std::env::temp_dir().join(format!("blobdir{}", rand::random::<u32>()));
        let store = BlobDir::open(&dir).unwrap();
        let path = store.write(BlobId::of(b"x"), b"x").unwrap();
        // A file that cannot be opened fails the flush of each file (the
        // failure of a whole filesystem's flush cannot be caused here).
        let store = BlobDir {
            flush: Flush::EachFile,
            ..store
        };
        // Under a file, not a directory: it cannot be opened, not even by
        // root, and not because it is missing.
        let beneath_a_file = path.join("x");
        assert!(store.flush(&[&path, &beneath_a_file]).is_err());
        assert!(path.exists(), "a blob another row may name stays");
        let refused = store.write(BlobId::of(b"y"), b"y").unwrap_err();
        assert!(refused.to_string().contains("restarts"), "{refused}");
        assert!(store.flush(&[]).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
