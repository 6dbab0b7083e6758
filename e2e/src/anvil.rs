//! A throwaway local EVM node (anvil, from `contracts/node_modules`, as the
//! test command installs it): ten unlocked, funded development accounts on
//! chain 31337. Browser tests back their injected wallet with it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::postgres::free_port;
use crate::root;

/// A running anvil, killed on drop.
pub struct Anvil {
    child: Child,
    /// Its JSON-RPC URL.
    pub url: String,
}

impl Anvil {
    /// Starts anvil on a free port and waits until it answers (it mines a
    /// block per transaction).
    pub fn start() -> Result<Anvil> {
        Self::start_with(&[])
    }

    /// Starts anvil with `extra` flags (say, `--block-time 1`).
    pub fn start_with(extra: &[&str]) -> Result<Anvil> {
        let modules = root().join("contracts/node_modules");
        // The platform package's executable itself: the npm launcher in
        // `.bin` would leave it running when killed.
        let Some(bin) = std::fs::read_dir(modules.join("@foundry-rs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("anvil-"))
            .map(|e| e.path().join("bin/anvil"))
            .find(|p| p.is_file())
        else {
            bail!(
                "no anvil in {}: run `npm ci` in contracts/ (cargo xtask test does)",
                modules.display()
            );
        };
        let port = free_port()?;
        let child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--silent"])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let anvil = Anvil {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("anvil did not start listening on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(anvil)
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
