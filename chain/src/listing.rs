//! The listing the coordinator signs for the escrow's model market
//! (EIP-712, the escrow's domain), its key, and the contributors' shares it
//! commits to.
//!
//! The coordinator's key signs `Listing(modelId, owner, modelHash, price,
//! contributorsBps, sharesRoot, nonce)`; the owner sends it to `list`.
//! `nonce` is the escrow's count of earlier listings under the same key
//! (`listings(key).nonce`), so that no signature lists twice.

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::signers::SignerSync;
use alloy::sol_types::{SolStruct, SolValue};

use oblivion_protocol::ModelId;
use oblivion_protocol::market::SHARE_UNIT;

use crate::key::{Key, KeyError};
use crate::payouts::shares;
use crate::settlement::domain;

alloy::sol! {
    /// The coordinator's statement that `owner` may sell model `modelId`
    /// (weights `modelHash`) at `price`, giving `contributorsBps` of each
    /// sale to the share tree with root `sharesRoot`.
    #[derive(Debug, PartialEq, Eq)]
    struct Listing {
        uint256 modelId;
        address owner;
        bytes32 modelHash;
        uint256 price;
        uint16 contributorsBps;
        bytes32 sharesRoot;
        uint256 nonce;
    }
}

/// The escrow's key of the listing of model `model` by `owner` under the
/// coordinator key `signer`: `keccak256(abi.encode(owner, signer, modelId))`.
pub fn listing_key(owner: Address, signer: Address, model: ModelId) -> B256 {
    keccak256((owner, signer, U256::from(model.0)).abi_encode_params())
}

/// The digest the coordinator signs; equal to the escrow's
/// `listingDigest(...)`.
pub fn digest(listing: &Listing, chain_id: u64, escrow: Address) -> B256 {
    listing.eip712_signing_hash(&domain(chain_id, escrow))
}

/// `key`'s signature of `listing` for the escrow at `escrow` on
/// `chain_id`, 65 bytes as `list` takes it.
pub fn sign(
    key: &Key,
    listing: &Listing,
    chain_id: u64,
    escrow: Address,
) -> Result<[u8; 65], KeyError> {
    key.signer()
        .sign_hash_sync(&digest(listing, chain_id, escrow))
        .map(|s| s.as_bytes())
        .map_err(|e| KeyError::Signing(e.to_string()))
}

/// The contributors' weights of a model's sales: `work` (verified work by
/// account) split by the payout rule ([`shares`]) over [`SHARE_UNIT`], so
/// the weights add up to exactly the unit. Feed them to
/// [`crate::PayoutTree::from_shares`] for the share tree.
pub fn share_weights(work: &[(Address, u64)]) -> Vec<(Address, U256)> {
    shares(U256::from(SHARE_UNIT), work)
}

/// What a share of `weight` is owed of a pool that took in `pool`, in all:
/// `pool × weight / SHARE_UNIT`, rounded down (the escrow's rule).
pub fn share_owed(pool: U256, weight: u64) -> U256 {
    // A pool below 2^256 / 2^20 cannot overflow; a larger one is not money.
    pool.saturating_mul(U256::from(weight)) / U256::from(SHARE_UNIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::address;

    #[test]
    fn weights_add_up_to_the_unit_by_work() {
        let a = address!("00000000000000000000000000000000000000aa");
        let b = address!("00000000000000000000000000000000000000bb");
        let c = address!("00000000000000000000000000000000000000cc");
        let w = share_weights(&[(a, 1), (b, 1), (c, 1)]);
        let sum: U256 = w.iter().map(|(_, w)| *w).sum();
        assert_eq!(sum, U256::from(SHARE_UNIT));
        assert_eq!(
            w.iter().map(|(_, w)| w.to::<u64>()).collect::<Vec<_>>(),
            vec![333_334, 333_333, 333_333]
        );
        assert!(share_weights(&[]).is_empty());
    }

    #[test]
    fn owed_rounds_down_like_the_escrow() {
        // `test_RoundingLeavesLessThanAWeiPerLeaf` in contracts/test/OblivionMarket.t.sol.
        assert_eq!(share_owed(U256::from(500), 333_334), U256::from(166));
        assert_eq!(share_owed(U256::from(500), 333_333), U256::from(166));
        assert_eq!(share_owed(U256::from(1_000_000), 1), U256::from(1));
    }

    #[test]
    fn keys_bind_owner_signer_and_model() {
        let a = address!("00000000000000000000000000000000000000aa");
        let b = address!("00000000000000000000000000000000000000bb");
        let k = listing_key(a, b, ModelId(1));
        assert_ne!(k, listing_key(b, a, ModelId(1)));
        assert_ne!(k, listing_key(a, b, ModelId(2)));
    }
}
