//! The contributor's privacy settings and ledger, kept in the worker's data
//! directory (`privacy.json`): limits given as flags are stored there, and
//! the ledger is written before each update of the contributor's own data
//! leaves, so a restart, or a kill, never forgets a spend. One worker
//! process at a time holds a data directory (`privacy.lock`): two would
//! each count only their own spends.

use std::path::{Path, PathBuf};

use oblivion_protocol::tab::ContributorPrivacy;

/// Where the settings and ledger live.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("privacy.json")
}

/// Reads them; a missing file is the defaults and an empty ledger.
pub fn load(data_dir: &Path) -> Result<ContributorPrivacy, String> {
    let file = path(data_dir);
    match std::fs::read(&file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not a privacy file ({e})", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ContributorPrivacy::default()),
        Err(e) => Err(format!("{}: {e}", file.display())),
    }
}

/// Takes the data directory for this process: held while the returned
/// file is open; a second worker on the same directory is refused.
pub fn lock(data_dir: &Path) -> Result<std::fs::File, String> {
    std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let file = data_dir.join("privacy.lock");
    let handle = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    match handle.try_lock() {
        Ok(()) => Ok(handle),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another oblivion-worker holds {}: give each worker with local data its own \
             --data-dir",
            data_dir.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("{}: {e}", file.display())),
    }
}

/// Writes them whole (to a temporary file, synced, then renamed over the
/// old one: a crash leaves the old file or the new, never half of one).
pub fn save(data_dir: &Path, privacy: &ContributorPrivacy) -> Result<(), String> {
    use std::io::Write;
    let file = path(data_dir);
    let fail = |e: std::io::Error| format!("{}: {e}", file.display());
    std::fs::create_dir_all(data_dir).map_err(fail)?;
    let json = serde_json::to_vec_pretty(privacy).map_err(|e| e.to_string())?;
    let temporary = data_dir.join(format!("privacy.json.{}.tmp", std::process::id()));
    let mut out = std::fs::File::create(&temporary).map_err(fail)?;
    out.write_all(&json).map_err(fail)?;
    out.sync_all().map_err(fail)?;
    std::fs::rename(&temporary, &file).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oblivion_privacy::contributor::{Ask, ContributorLimits};

    #[test]
    fn a_ledger_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("oblivion-privacy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(load(&dir).unwrap(), ContributorPrivacy::default());
        let held = lock(&dir).unwrap();
        let e = lock(&dir).unwrap_err();
        assert!(e.contains("another oblivion-worker"), "{e}");
        drop(held);
        let _held = lock(&dir).unwrap();
        let mut privacy = ContributorPrivacy {
            limits: ContributorLimits {
                job_epsilon: 4.0,
                ..ContributorLimits::default()
            },
            ..ContributorPrivacy::default()
        };
        privacy.ledger.spend(&Ask {
            network: "http://c".into(),
            job: 3,
            noise_multiplier: 8.0,
            rounds: 5,
            batch_size: 16,
            records: 40,
        });
        save(&dir, &privacy).unwrap();
        assert_eq!(load(&dir).unwrap(), privacy);
        std::fs::write(path(&dir), "{not json").unwrap();
        assert!(load(&dir).unwrap_err().contains("not a privacy file"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
