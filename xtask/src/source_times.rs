//! Source files' modification times kept across clones, by content.
//!
//! Cargo takes a crate as built when none of its sources is newer than
//! its last build, and a fresh clone makes every file new: CI, which
//! builds a clean clone into a kept target directory, rebuilt all of the
//! workspace's crates every run (3 minutes of 20 on a warm machine). So
//! before building, every tracked file whose content is the same as at
//! the last run gets that run's modification time back, and every other
//! one is made newer than any build. Cargo's checks are then as exact as
//! content hashes.
//!
//! This holds only while nothing else builds into the target directory:
//! a build of other content in between would be newer than a restored
//! time and taken as current. So it is done only where the directory is
//! CI's own (`OBLIVION_CI`, set by `.ci/run`).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// One file as last seen: its content's hash and the time it was given.
struct Seen {
    hash: String,
    nanos: u128,
}

fn load(record: &Path) -> HashMap<String, Seen> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut fields = l.split('\t');
            let (path, hash, nanos) = (fields.next()?, fields.next()?, fields.next()?);
            let seen = Seen {
                hash: hash.to_string(),
                nanos: nanos.parse().ok()?,
            };
            Some((path.to_string(), seen))
        })
        .collect()
}

fn nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()
}

fn time(nanos: u128) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Restores the times of `root`'s tracked files from `record` (see the
/// module) and records them anew. Returns how many kept their old time
/// and how many are new or changed.
pub fn restore(root: &Path, record: &Path) -> Result<(usize, usize)> {
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .context("cannot run git ls-files")?;
    if !listed.status.success() {
        bail!("git ls-files failed in {}", root.display());
    }
    let seen = load(record);
    let now = nanos(SystemTime::now());
    let (mut kept, mut changed) = (0, 0);
    let mut lines = Vec::new();
    for name in listed.stdout.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let path = root.join(&name);
        // Links and files deleted in the work tree are left alone.
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if path.symlink_metadata().is_ok_and(|m| m.is_symlink()) {
            continue;
        }
        let hash = hex::encode(Sha256::digest(&bytes));
        let given = match seen.get(&name) {
            Some(s) if s.hash == hash => {
                kept += 1;
                s.nanos
            }
            _ => {
                changed += 1;
                now
            }
        };
        let file = std::fs::File::options()
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.set_modified(time(given))
            .with_context(|| format!("cannot set the time of {}", path.display()))?;
        lines.push(format!("{name}\t{hash}\t{given}"));
    }
    let partial = record.with_extension("partial");
    std::fs::write(&partial, lines.join("\n") + "\n")?;
    std::fs::rename(&partial, record)?;
    Ok((kept, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "git {args:?}");
    }

    fn modified(path: &Path) -> u128 {
        nanos(std::fs::metadata(path).unwrap().modified().unwrap())
    }

    #[test]
    fn unchanged_content_gets_its_old_time_and_changed_content_a_new_one() {
        let dir = std::env::temp_dir().join(format!("oblivion-times-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        git(&dir, &["init", "-q"]);
        std::fs::write(dir.join("same.rs"), "fn a() {}").unwrap();
        std::fs::write(dir.join("edited.rs"), "fn b() {}").unwrap();
        git(&dir, &["add", "."]);
        let record = dir.join("times.tsv");

        // First run: nothing recorded, so every file counts as new.
        assert_eq!(restore(&dir, &record).unwrap(), (0, 2));
        let same = modified(&dir.join("same.rs"));
        let edited = modified(&dir.join("edited.rs"));

        // As a fresh clone would: every file rewritten, one with new content.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(dir.join("same.rs"), "fn a() {}").unwrap();
        std::fs::write(dir.join("edited.rs"), "fn b() { 1; }").unwrap();
        assert_eq!(restore(&dir, &record).unwrap(), (1, 1));
        assert_eq!(modified(&dir.join("same.rs")), same);
        assert!(modified(&dir.join("edited.rs")) > edited);

        // Back to the old content: newer again, never the old time, since a
        // build of the edit may be newer than it.
        let edit = modified(&dir.join("edited.rs"));
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(dir.join("edited.rs"), "fn b() {}").unwrap();
        assert_eq!(restore(&dir, &record).unwrap(), (1, 1));
        assert!(modified(&dir.join("edited.rs")) > edit);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
