//! The coordinator's link to the chain paid jobs settle on: its settings,
//! the settlement signer, the escrow, and a provider. Shared by the
//! services that need the chain's terms (jobs' deadlines, sign-in's chain
//! id, a resumed job's lease horizon) and by payments, which reads and
//! writes the chain through it.

use oblivion_protocol::JobId;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256, keccak256};
use alloy::providers::{DynProvider, Provider};
use oblivion_chain::Key;
use oblivion_chain::escrow;
use oblivion_chain::settlement;
use oblivion_protocol::api::ChainInfo;

use crate::config::ChainConfig;

/// The coordinator's link to the chain its paid jobs settle on.
pub struct ChainLink {
    /// The settings.
    pub config: ChainConfig,
    /// The settlement signer.
    pub key: Key,
    /// The escrow contract.
    pub escrow: Address,
    /// The escrow's `settleGrace`, once read.
    pub(super) grace: OnceLock<u64>,
    /// When the coordinator last tried to send each job's settlement.
    pub(super) sent: Mutex<HashMap<JobId, f64>>,
    pub(super) provider: DynProvider,
}

pub(super) fn hex32(b: B256) -> String {
    format!("{b:#x}")
}

/// Where `log` is on chain: its transaction, index and block.
pub(super) fn log_place(log: &alloy::rpc::types::Log) -> oblivion_store::LogPlace {
    oblivion_store::LogPlace {
        tx: log.transaction_hash.map(hex32).unwrap_or_default(),
        log_index: log.log_index.unwrap_or_default(),
        block: log.block_number.unwrap_or_default(),
    }
}

pub(super) fn chain_err(e: impl std::fmt::Display) -> String {
    format!("chain: {e}")
}

impl ChainLink {
    /// A link for `config` (the node is asked nothing yet: it may be down).
    pub fn new(config: ChainConfig) -> Result<ChainLink, String> {
        let key = Key::parse(&config.signer_key).map_err(|e| format!("signer_key: {e}"))?;
        let escrow: Address = config
            .escrow
            .parse()
            .map_err(|_| format!("escrow_address {:?} is not an address", config.escrow))?;
        let url = config
            .rpc_url
            .parse()
            .map_err(|e| format!("chain_rpc_url {:?}: {e}", config.rpc_url))?;
        let provider = escrow::connect(url, &key);
        Ok(ChainLink {
            config,
            key,
            escrow,
            grace: OnceLock::new(),
            sent: Mutex::new(HashMap::new()),
            provider,
        })
    }

    /// What the app needs to fund a job.
    pub fn info(&self) -> ChainInfo {
        ChainInfo {
            chain_id: self.config.chain_id,
            escrow: format!("{:#x}", self.escrow),
            signer: self.key.address().to_lowercase(),
            confirmations: self.config.confirmations,
            settle_grace_secs: self.grace.get().copied().unwrap_or(0),
        }
    }

    /// The latest block's timestamp: the escrow's clock.
    pub(super) async fn chain_time(&self) -> Result<u64, String> {
        Ok(self
            .provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .map_err(chain_err)?
            .ok_or_else(|| chain_err("no latest block"))?
            .header
            .timestamp)
    }

    /// The escrow key of job `id` owned by `owner` (lower-case hex).
    pub fn job_key(&self, owner: &str, id: JobId) -> String {
        let owner: Address = owner.parse().unwrap_or(Address::ZERO);
        hex32(settlement::job_key(owner, self.key.address_bytes(), id))
    }
}

/// keccak256 of a spec as stored: what a deposit must name.
pub fn spec_hash(spec_json: &str) -> String {
    hex32(keccak256(spec_json.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn https_nodes_are_reachable() {
        let link = ChainLink::new(ChainConfig {
            rpc_url: "https://127.0.0.1:9/".into(),
            chain_id: 1,
            escrow: format!("{:#x}", Address::ZERO),
            signer_key: "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6".into(),
            confirmations: 1,
            poll: std::time::Duration::from_secs(1),
            round_time: std::time::Duration::from_secs(300),
            deadline_margin: std::time::Duration::from_secs(1800),
            min_contributors_bps: 1000,
        })
        .unwrap();
        // Nothing listens there: the request must fail connecting, not for
        // want of TLS.
        let e = format!("{:?}", link.provider.get_block_number().await.unwrap_err());
        assert!(!e.to_lowercase().contains("scheme"), "{e}");
        assert!(e.contains("ConnectionRefused"), "{e}");
    }
}
