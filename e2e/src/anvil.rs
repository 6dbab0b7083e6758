//! A throwaway local EVM node (anvil, from `contracts/node_modules`, as the
//! test command installs it): ten unlocked, funded development accounts on
//! chain 31337. Browser tests back their injected wallet with it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider};
use anyhow::{Context, Result, bail};
use oblivion_chain::{Key, escrow};

use crate::postgres::free_port;
use crate::root;

/// anvil's development account #8: deploys the escrow in tests.
pub const DEPLOYER_KEY: &str = "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97";
/// anvil's development account #9: the coordinator's settlement signer in
/// tests.
pub const SIGNER_KEY: &str = "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6";

/// Deploys an escrow on the node at `url` from [`DEPLOYER_KEY`], with a
/// claim window of a day and a settlement grace of `grace` seconds.
pub async fn deploy_escrow(url: &str, grace: u64) -> Result<Address> {
    let url = url.parse().context("the node's URL")?;
    let provider = escrow::connect(url, &Key::parse(DEPLOYER_KEY)?);
    Ok(*escrow::deploy(provider, 86_400, grace).await?.address())
}

/// The coordinator's flags to settle on the node at `rpc` with the escrow
/// at `escrow`, signing as [`SIGNER_KEY`], chain events counting after
/// `confirmations` blocks, polled every second.
pub fn chain_flags(rpc: &str, escrow: Address, confirmations: u64) -> Vec<String> {
    [
        "--chain-rpc-url",
        rpc,
        "--chain-id",
        "31337",
        "--escrow-address",
        &format!("{escrow:#x}"),
        "--signer-key",
        SIGNER_KEY,
        "--confirmations",
        &confirmations.to_string(),
        "--chain-poll-secs",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Sends `call`, waits until it is mined and checks that it succeeded.
pub async fn mined<P, D>(
    call: alloy::contract::CallBuilder<P, D>,
) -> Result<alloy::rpc::types::TransactionReceipt>
where
    P: Provider,
    D: alloy::contract::CallDecoder,
{
    let receipt = call.send().await?.get_receipt().await?;
    if !receipt.status() {
        bail!("transaction {:#x} reverted", receipt.transaction_hash);
    }
    Ok(receipt)
}

/// Mines `blocks` empty blocks.
pub async fn mine(provider: &DynProvider, blocks: u64) -> Result<()> {
    for _ in 0..blocks {
        let _: serde_json::Value = provider.raw_request("evm_mine".into(), ()).await?;
    }
    Ok(())
}

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
