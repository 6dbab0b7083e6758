//! Typed bindings of the `OblivionEscrow` contract, over JSON-RPC.
//!
//! Generated from `abi/OblivionEscrow.json`, a copy of the ABI and creation
//! bytecode that `forge build` writes in `contracts/out/` (the test
//! `abi_is_fresh` fails when the copy is stale; `README.md` tells how to
//! refresh it). Every function, event and custom error of the contract has a
//! type in [`OblivionEscrow`]: a call's revert decodes with
//! `error.as_decoded_error::<OblivionEscrow::InvalidProof>()`.

use alloy::network::Network;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::transports::http::reqwest::Url;

use crate::key::Key;

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    // `Funded` has eight fields, so its generated constructor eight arguments.
    #[allow(clippy::too_many_arguments)]
    OblivionEscrow,
    "abi/OblivionEscrow.json"
);

pub use OblivionEscrow::{
    Claimed, Delisted, Funded, Listed, OblivionEscrowErrors, OblivionEscrowEvents,
    OblivionEscrowInstance, Purchased, Refunded, Returned, Settled, ShareClaimed, Swept, Withdrawn,
};

/// Deploys a new escrow whose claims stay open `claim_window` seconds after
/// each settlement, and whose settlements only the creator may send during
/// `settle_grace` seconds after they are issued (both nonzero), from
/// `provider`'s default sender, and waits for it to be mined.
pub async fn deploy<P: Provider<N>, N: Network>(
    provider: P,
    claim_window: u64,
    settle_grace: u64,
) -> alloy::contract::Result<OblivionEscrowInstance<P, N>> {
    OblivionEscrow::deploy(provider, claim_window, settle_grace).await
}

/// The escrow deployed at `address`, through `provider`.
pub fn at<P: Provider<N>, N: Network>(
    address: alloy::primitives::Address,
    provider: P,
) -> OblivionEscrowInstance<P, N> {
    OblivionEscrow::new(address, provider)
}

/// A provider for the JSON-RPC endpoint at `rpc` that signs and sends
/// transactions as `key`, filling in gas, chain id and nonce itself.
///
/// The nonce is the account's pending transaction count, asked for at each
/// send. (alloy's default nonce cache reserves a nonce even for a
/// transaction whose gas estimate fails on a revert, and every later
/// transaction then waits forever behind the gap.) So send one transaction
/// at a time per key: concurrent sends could get the same nonce.
pub fn connect(rpc: Url, key: &Key) -> DynProvider {
    // The process's TLS provider for https:// nodes (a second install is
    // refused harmlessly).
    let _ = rustls::crypto::ring::default_provider().install_default();
    ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(key.signer().clone())
        .connect_http(rpc)
        .erased()
}
