//! Ethereum for Oblivion's native clients and the coordinator.
//!
//! - [`Key`]: an account's private key (the CLI's `--key`, a native
//!   worker's payout key), and the EIP-191 signatures it makes.
//! - [`sign_in`]: answers a coordinator's Sign-In with Ethereum challenge.
//! - [`settlement`]: the job key and the EIP-712 settlement the coordinator
//!   signs for the escrow.
//! - [`listing`]: the EIP-712 listing the coordinator signs for the
//!   escrow's model market, and the contributors' share weights.
//! - [`merkle`]: the payout tree ([`PayoutTree`]) whose root a settlement
//!   commits to, OpenZeppelin `StandardMerkleTree`-compatible.
//! - [`payouts`]: the payout rule ([`shares`]), splitting a job's payment in
//!   proportion to credited work.
//! - [`calls`]: calldata of the escrow's `fund`, `settle`, `claim` and the
//!   market's `list`, `purchase`, `claimShare` and `withdraw` for a
//!   browser wallet, amounts in wei and ETH, and its revert reasons in words.
//! - `escrow` (feature `rpc`): the escrow contract's typed bindings,
//!   deployment and a signing JSON-RPC provider.
//!
//! - [`verify`]: a model's hash recomputed from its weights, and the one a
//!   settled job records on chain.
//!
//! Built on `alloy` without default features, so that with its own default
//! features the crate also builds for wasm32 (the browser app).

pub mod calls;
#[cfg(feature = "rpc")]
pub mod escrow;
mod key;
pub mod listing;
pub mod merkle;
pub mod payouts;
#[cfg(feature = "client")]
mod session;
pub mod settlement;
pub mod verify;

pub use key::{Key, KeyError, checksummed, sign_in};
pub use merkle::{Payout, PayoutTree, TreeError};
pub use payouts::shares;
#[cfg(feature = "client")]
pub use session::{error_line, sign_in_over_http};
pub use settlement::Settlement;
