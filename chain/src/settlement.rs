//! The settlement the coordinator signs for the escrow (EIP-712), and the
//! job key it refers to.
//!
//! The coordinator's key signs `Settlement(job, root, total, modelHash,
//! nonce, issuedAt)` under the domain `("OblivionEscrow", "1", chainId,
//! escrow)`; the job's creator may submit it with `settle` at once, anyone
//! once the escrow's `settleGrace` has passed since `issuedAt`. `nonce` is
//! the escrow's `nonces(job)` (0 for a job never settled).

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::signers::SignerSync;
use alloy::sol_types::{Eip712Domain, SolStruct, SolValue};

use oblivion_protocol::JobId;

use crate::key::{Key, KeyError};

alloy::sol! {
    /// The coordinator's payout statement for one job: the escrow pays at most
    /// `total` along the payout tree with `root`, for the model `modelHash`.
    #[derive(Debug, PartialEq, Eq)]
    struct Settlement {
        /// The job key ([`job_key`]).
        bytes32 job;
        /// Root of the payout tree ([`crate::PayoutTree::root`]).
        bytes32 root;
        /// The most the leaves may pay together; the deposit's excess over it
        /// goes back to the creator at settlement.
        uint256 total;
        /// Hash of the model the job produced.
        bytes32 modelHash;
        /// The escrow's `nonces(job)` when settling.
        uint256 nonce;
        /// When the coordinator issued it (chain time): at most the job's
        /// deadline; anyone may submit it `settleGrace` later.
        uint64 issuedAt;
    }
}

/// The escrow's key of job `job_id` funded by `creator` for the coordinator
/// key `signer`: `keccak256(abi.encode(creator, signer, jobId))`.
pub fn job_key(creator: Address, signer: Address, job_id: JobId) -> B256 {
    keccak256((creator, signer, U256::from(job_id.0)).abi_encode_params())
}

/// The EIP-712 domain of the escrow deployed at `escrow` on `chain_id`.
pub fn domain(chain_id: u64, escrow: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some("OblivionEscrow".into()),
        Some("1".into()),
        Some(U256::from(chain_id)),
        Some(escrow),
        None,
    )
}

/// The digest the coordinator signs; equal to the escrow's
/// `settlementDigest(job, root, total, modelHash, nonce, issuedAt)`.
pub fn digest(settlement: &Settlement, chain_id: u64, escrow: Address) -> B256 {
    settlement.eip712_signing_hash(&domain(chain_id, escrow))
}

/// `key`'s signature of `settlement` for the escrow at `escrow` on
/// `chain_id`: 65 bytes `r ‖ s ‖ v` with `v` 27 or 28 and a low `s`, as the
/// escrow's `settle` takes it.
pub fn sign(
    key: &Key,
    settlement: &Settlement,
    chain_id: u64,
    escrow: Address,
) -> Result<[u8; 65], KeyError> {
    let hash = digest(settlement, chain_id, escrow);
    let signature = key
        .signer()
        .sign_hash_sync(&hash)
        .map_err(|e| KeyError::Signing(e.to_string()))?;
    Ok(signature.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{Signature, address, b256};

    const ESCROW: Address = address!("5615dEB798BB3E4dFa0139dFa1b3D433Cc23b72f");
    const CREATOR: Address = address!("e1164Eb5D7892A8e85CcaB3097e8202AD9e33d88");
    const CHAIN: u64 = 31337;

    /// The test suite's coordinator key, `0xC0FFEE`.
    fn coffee() -> Key {
        Key::parse(&format!("{:064x}", 0xC0FFEE)).unwrap()
    }

    fn settlement() -> Settlement {
        let job = job_key(CREATOR, coffee().address_bytes(), JobId(7));
        Settlement {
            job,
            root: keccak256("root"),
            total: U256::from(5_000_000_000_000_000_000u128),
            modelHash: keccak256("model: weights v1"),
            nonce: U256::ZERO,
            issuedAt: 1_700_000_000,
        }
    }

    /// `test_SettlementDigest_FixedVector` in `contracts/test/OblivionEscrow.t.sol`.
    #[test]
    fn matches_the_contracts_fixed_vector() {
        let key = coffee();
        assert_eq!(
            key.address_bytes(),
            address!("F5A5E415061470A8b9137959180901aEa72450a4")
        );
        let s = settlement();
        assert_eq!(
            s.job,
            b256!("2c80e6d46b029b0d294657614b531670819a9c6e22ab3142aaf39bd19122b3f0")
        );
        assert_eq!(
            keccak256(Settlement::eip712_encode_type().as_bytes()),
            b256!("57bba6a9d0cffc337e383cc7f09da2983fd5053a20872fcdf31294f01b72bada")
        );
        let d = digest(&s, CHAIN, ESCROW);
        assert_eq!(
            d,
            b256!("19fb0968d3e450209606fb5bd74ebf56c53812c8be1f9d29952de741baaa7d80")
        );
        let sig = sign(&key, &s, CHAIN, ESCROW).unwrap();
        assert_eq!(
            sig[..32],
            b256!("11ac2088ace1a38c750a6db095d44e34cc198e06a36f24517d482368edb3283b")[..]
        );
        assert_eq!(
            sig[32..64],
            b256!("3e576b379e9ed170fdc37838ac5fee7f401d1d7c55d6dd9bc90173c72a272e4e")[..]
        );
        assert_eq!(sig[64], 28);
        let recovered = Signature::try_from(&sig[..])
            .unwrap()
            .recover_address_from_prehash(&d)
            .unwrap();
        assert_eq!(recovered, key.address_bytes());
    }

    #[test]
    fn another_job_chain_or_escrow_is_another_digest() {
        let s = settlement();
        let d = digest(&s, CHAIN, ESCROW);
        let other_job = Settlement {
            job: job_key(CREATOR, coffee().address_bytes(), JobId(8)),
            ..s.clone()
        };
        let other_creator = Settlement {
            job: job_key(ESCROW, coffee().address_bytes(), JobId(7)),
            ..s.clone()
        };
        let replayed = Settlement {
            nonce: U256::from(1),
            ..s.clone()
        };
        let reissued = Settlement {
            issuedAt: s.issuedAt + 1,
            ..s.clone()
        };
        for other in [
            digest(&other_job, CHAIN, ESCROW),
            digest(&other_creator, CHAIN, ESCROW),
            digest(&replayed, CHAIN, ESCROW),
            digest(&reissued, CHAIN, ESCROW),
            digest(&s, 1, ESCROW),
            digest(&s, CHAIN, CREATOR),
        ] {
            assert_ne!(other, d);
        }
        let sig = sign(&coffee(), &s, CHAIN, ESCROW).unwrap();
        assert_ne!(sig, sign(&coffee(), &other_job, CHAIN, ESCROW).unwrap());
        assert_ne!(sig, sign(&coffee(), &s, 1, ESCROW).unwrap());
    }
}
