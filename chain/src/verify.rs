//! Checking a model against the chain: the hash a settlement or a listing
//! commits to is the keccak256 of the model's weights as the network
//! stores them (safetensors, content-addressed by sha256), so anyone
//! holding those bytes recomputes it ([`weights_hash`]) and compares it
//! with what the escrow recorded ([`settled_query`], read through any node
//! or wallet, then [`settled_model_hash`]).

use alloy::primitives::keccak256;
use alloy::sol_types::SolCall;

use crate::calls::{Bytes, CallError};

alloy::sol! {
    /// The escrow's record of a job, as `jobs(bytes32)` returns it.
    interface IEscrowJobs {
        function jobs(bytes32 job) external view returns (address creator, address signer, address token, uint64 deadline, uint64 settledAt, uint256 deposit, uint256 total, uint256 claimed, bytes32 root, bytes32 specHash, bytes32 modelHash, uint8 state);
    }
}

/// The escrow's `State` of a settled job, and of one swept after it.
const SETTLED: u8 = 2;
const SWEPT: u8 = 4;

/// keccak256 of `weights`, `0x` hex: what a settlement's and a listing's
/// `modelHash` name.
pub fn weights_hash(weights: &[u8]) -> String {
    format!("{:#x}", keccak256(weights))
}

/// Calldata of `jobs(job_key)`, to read a job's record with `eth_call`.
pub fn settled_query(job_key: &str) -> Result<Bytes, CallError> {
    let job = job_key.trim().parse().map_err(|_| CallError {
        field: "job_key".into(),
        reason: format!("{job_key:?} is not a 32-byte hash"),
    })?;
    Ok(IEscrowJobs::jobsCall { job }.abi_encode().into())
}

/// The model hash a job was settled with, from `jobs(...)`'s returned data
/// (`0x` hex); `None` when the data does not decode or the job is not
/// settled.
pub fn settled_model_hash(returned: &str) -> Option<String> {
    let digits = returned.trim().strip_prefix("0x")?;
    let bytes = hex::decode(digits).ok()?;
    let record = IEscrowJobs::jobsCall::abi_decode_returns(&bytes).ok()?;
    matches!(record.state, SETTLED | SWEPT).then(|| format!("{:#x}", record.modelHash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{Address, B256, U256};
    use alloy::sol_types::SolValue;

    #[test]
    fn the_query_is_the_escrows_jobs_function() {
        let abi = include_str!("../abi/OblivionEscrow.json");
        assert!(abi.contains("\"name\": \"jobs\""));
        assert_eq!(
            IEscrowJobs::jobsCall::SIGNATURE,
            "jobs(bytes32)",
            "the escrow's view"
        );
        let key = format!("{:#x}", B256::repeat_byte(7));
        let data = settled_query(&key).unwrap();
        assert_eq!(data[..4], IEscrowJobs::jobsCall::SELECTOR);
        assert!(settled_query("0x12").is_err());
    }

    #[test]
    fn a_settled_record_gives_its_model_hash() {
        let model = B256::repeat_byte(0xab);
        let record = |state: u8| {
            let words = (
                Address::ZERO,
                Address::ZERO,
                Address::ZERO,
                U256::ZERO,
                U256::ZERO,
                U256::from(5),
                U256::from(5),
                U256::ZERO,
                B256::ZERO,
                B256::ZERO,
                model,
                U256::from(state),
            )
                .abi_encode_params();
            format!("0x{}", hex::encode(words))
        };
        assert_eq!(settled_model_hash(&record(2)), Some(format!("{model:#x}")));
        assert_eq!(settled_model_hash(&record(4)), Some(format!("{model:#x}")));
        assert_eq!(settled_model_hash(&record(1)), None, "funded, not settled");
        assert_eq!(settled_model_hash("0x1234"), None);
        assert_eq!(weights_hash(b""), format!("{:#x}", keccak256(b"")));
    }
}
