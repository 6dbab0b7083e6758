//! Operator settings: defaults, overridden by a TOML file, then by
//! environment variables (`OBLIVION_*`), then by command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Everything `serve` can be told.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Database and artifacts live here.
    pub data_dir: PathBuf,
    /// Most leases one worker holds at once.
    pub lease_cap: u32,
    /// How often workers send heartbeats.
    pub heartbeat: Duration,
    /// A lease without a heartbeat for this long expires and is re-issued.
    pub lease_ttl: Duration,
    /// Largest dataset upload, bytes.
    pub max_upload_bytes: usize,
    /// Largest update upload, bytes.
    pub max_update_bytes: usize,
    /// Built web app to serve at `/` (the `dist/` folder), if any.
    pub web_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("oblivion-data"),
            lease_cap: 2,
            heartbeat: Duration::from_secs(15),
            lease_ttl: Duration::from_secs(45),
            max_upload_bytes: 64 * 1024 * 1024,
            max_update_bytes: oblivion_protocol::wire::MAX_UPDATE_BYTES,
            web_dir: None,
        }
    }
}

/// The same settings, all optional: one layer (file, or flags and environment).
#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ConfigLayer {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "OBLIVION_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the database and artifacts [default: ./oblivion-data].
    #[arg(long, env = "OBLIVION_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Most leases one worker holds at once [default: 2].
    #[arg(long, env = "OBLIVION_LEASE_CAP")]
    pub lease_cap: Option<u32>,
    /// Seconds between worker heartbeats [default: 15].
    #[arg(long, env = "OBLIVION_HEARTBEAT_SECS")]
    pub heartbeat_secs: Option<u64>,
    /// Seconds without a heartbeat before a lease expires [default: 45].
    #[arg(long, env = "OBLIVION_LEASE_TTL_SECS")]
    pub lease_ttl_secs: Option<u64>,
    /// Largest dataset upload in bytes [default: 64 MiB].
    #[arg(long, env = "OBLIVION_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<usize>,
    /// Largest update upload in bytes [default: 64 MiB].
    #[arg(long, env = "OBLIVION_MAX_UPDATE_BYTES")]
    pub max_update_bytes: Option<usize>,
    /// Folder of the built web app to serve at / [default: ./dist if present].
    #[arg(long, env = "OBLIVION_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
}

impl Config {
    /// Applies `layer` over `self`.
    pub fn apply(mut self, layer: &ConfigLayer) -> Config {
        let l = layer.clone();
        self.listen = l.listen.unwrap_or(self.listen);
        self.data_dir = l.data_dir.unwrap_or(self.data_dir);
        self.lease_cap = l.lease_cap.unwrap_or(self.lease_cap);
        self.heartbeat = l.heartbeat_secs.map_or(self.heartbeat, Duration::from_secs);
        self.lease_ttl = l.lease_ttl_secs.map_or(self.lease_ttl, Duration::from_secs);
        self.max_upload_bytes = l.max_upload_bytes.unwrap_or(self.max_upload_bytes);
        self.max_update_bytes = l.max_update_bytes.unwrap_or(self.max_update_bytes);
        self.web_dir = l.web_dir.or(self.web_dir);
        self
    }

    /// Defaults, then the TOML file (if given), then `overrides`; checked.
    pub fn load(file: Option<&Path>, overrides: &ConfigLayer) -> Result<Config, String> {
        let mut config = Config::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
            let layer: ConfigLayer = toml::from_str(&text)
                .map_err(|e| format!("config file {}: {}", path.display(), e.message()))?;
            config = config.apply(&layer);
        }
        config = config.apply(overrides);
        if config.web_dir.is_none() && Path::new("dist/index.html").exists() {
            config.web_dir = Some(PathBuf::from("dist"));
        }
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.lease_cap == 0 {
            return Err("lease_cap must be at least 1".into());
        }
        if self.heartbeat.is_zero() {
            return Err("heartbeat_secs must be at least 1".into());
        }
        if self.lease_ttl <= self.heartbeat {
            return Err("lease_ttl_secs must be longer than heartbeat_secs".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order_and_are_checked() {
        let dir = std::env::temp_dir().join(format!("oblivion-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "lease_cap = 5\nheartbeat_secs = 2\nlease_ttl_secs = 6\n",
        )
        .unwrap();
        let flags = ConfigLayer {
            lease_cap: Some(3),
            ..ConfigLayer::default()
        };
        let c = Config::load(Some(&file), &flags).unwrap();
        assert_eq!(
            (c.lease_cap, c.heartbeat.as_secs(), c.lease_ttl.as_secs()),
            (3, 2, 6)
        );
        std::fs::write(&file, "lease_cap = 5\nbogus = 1\n").unwrap();
        assert!(
            Config::load(Some(&file), &ConfigLayer::default())
                .unwrap_err()
                .contains("bogus")
        );
        let bad = ConfigLayer {
            lease_ttl_secs: Some(1),
            ..ConfigLayer::default()
        };
        assert!(Config::load(None, &bad).is_err());
    }
}
