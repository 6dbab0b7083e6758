//! Calldata for the escrow functions a browser wallet sends (`fund`,
//! `settle`, `claim`, and the market's `list`, `delist`, `purchase`,
//! `claimShare`, `withdraw`), built from the API's strings (`0x` hex,
//! decimal wei), and the escrow's revert reasons in words.
//!
//! Amounts: [`u256`] and [`wei`] convert the API's [`Wei`] to and from the
//! chain's words, [`parse_ether`] reads what a person types ("0.25"),
//! [`format_ether`] shows wei as ETH ("1.5").

use alloy::primitives::{Address, B256};
use alloy::sol_types::{SolCall, SolError, SolInterface};
use oblivion_protocol::api::{RewardView, SettlementView};
use oblivion_protocol::market::{ListingView, ShareView};
use oblivion_protocol::{JobId, Wei};

pub use alloy::primitives::{Bytes, U256};

use IOblivionEscrow::IOblivionEscrowErrors as EscrowError;

alloy::sol! {
    /// The part of `OblivionEscrow` a wallet calls, and every error it
    /// reverts with. Declared here rather than read from the artifact so
    /// that the crate needs no JSON at build time; the test `selectors`
    /// below checks these declarations against the committed ABI
    /// (`abi/OblivionEscrow.json`), which `tests/abi.rs` keeps equal to the
    /// contract as built.
    interface IOblivionEscrow {
        function fund(uint256 jobId, address signer, bytes32 specHash, uint64 deadline) external payable returns (bytes32 job);
        function settle(bytes32 job, bytes32 root, uint256 total, bytes32 modelHash, uint64 issuedAt, bytes signature) external;
        function claim(bytes32 job, uint256 index, address account, uint256 amount, bytes32[] proof) external;
        function list(uint256 modelId, address signer, bytes32 modelHash, uint256 price, uint16 contributorsBps, bytes32 sharesRoot, bytes signature) external returns (bytes32 listing);
        function delist(bytes32 listing) external;
        function purchase(bytes32 listing) external payable;
        function claimShare(bytes32 listing, uint256 index, address account, uint256 weight, bytes32[] proof) external;
        function withdraw() external;

        error AlreadyBought(address buyer);
        error ContributorsShareTooHigh(uint16 contributorsBps, uint16 max);
        error ListingTermsFixed();
        error NoContributors();
        error NotListed(bytes32 listing);
        error NotOwner(address owner);
        error NothingToClaim();
        error NothingToWithdraw();
        error PoolExceeded(uint256 claimed, uint256 pool);
        error WrongPayment(uint256 sent, uint256 price);
        error AlreadyClaimed(uint256 index);
        error ClaimExceedsTotal(uint256 claimed, uint256 total);
        error ClaimWindowClosed(uint256 closesAt);
        error ClaimWindowOpen(uint256 closesAt);
        error DeadlineNotInFuture(uint64 deadline);
        error InvalidProof();
        error InvalidShortString();
        error InvalidSignature();
        error IssuedAfterDeadline(uint64 issuedAt, uint64 deadline);
        error IssuedInFuture(uint64 issuedAt);
        error JobExists(bytes32 job);
        error JobNotFunded(bytes32 job);
        error JobNotSettled(bytes32 job);
        error NativeTransferFailed(address to, uint256 amount);
        error ReentrancyGuardReentrantCall();
        error RefundNotOpen(uint256 opensAt);
        error RefundOpen(uint256 openedAt);
        error SafeERC20FailedOperation(address token);
        error SettlementInGrace(uint256 opensAt);
        error StringTooLong(string str);
        error TotalExceedsDeposit(uint256 total, uint256 deposit);
        error ZeroAmount();
        error ZeroClaimWindow();
        error ZeroSettleGrace();
        error ZeroSigner();
        error ZeroToken();
    }
}

/// One decimal ETH is this many wei.
const WEI_PER_ETHER: u64 = 1_000_000_000_000_000_000;
/// Decimal places of ETH.
const ETHER_DECIMALS: usize = 18;

/// An input that does not make a call: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CallError {
    /// The input at fault (`signer`, `total`, `proof[2]`, ...).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> CallError {
    CallError {
        field: field.into(),
        reason: reason.into(),
    }
}

fn hex_digits<'a>(field: &str, s: &'a str) -> Result<&'a str, CallError> {
    let t = s.trim();
    let digits = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .ok_or_else(|| invalid(field, format!("{s:?} is not 0x hex")))?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(field, format!("{s:?} is not 0x hex")));
    }
    Ok(digits)
}

fn address(field: &str, s: &str) -> Result<Address, CallError> {
    let digits = hex_digits(field, s)?;
    if digits.len() != 40 {
        return Err(invalid(
            field,
            format!("{s:?} is not an address (20 bytes of 0x hex)"),
        ));
    }
    digits
        .parse::<Address>()
        .map_err(|e| invalid(field, format!("{s:?} is not an address: {e}")))
}

fn b256(field: &str, s: &str) -> Result<B256, CallError> {
    let digits = hex_digits(field, s)?;
    if digits.len() != 64 {
        return Err(invalid(
            field,
            format!("{s:?} is not a 32-byte hash (64 hex digits)"),
        ));
    }
    digits
        .parse::<B256>()
        .map_err(|e| invalid(field, format!("{s:?} is not a 32-byte hash: {e}")))
}

fn bytes(field: &str, s: &str) -> Result<Bytes, CallError> {
    let digits = hex_digits(field, s)?;
    if digits.len() % 2 != 0 {
        return Err(invalid(
            field,
            format!("{s:?} has an odd number of hex digits"),
        ));
    }
    hex::decode(digits)
        .map(Bytes::from)
        .map_err(|e| invalid(field, format!("{s:?} is not hex: {e}")))
}

/// An amount as the escrow takes it.
pub fn u256(amount: &Wei) -> U256 {
    // Cannot fail: a `Wei` is decimal digits below 2^256.
    U256::from_str_radix(amount.as_str(), 10).unwrap_or(U256::MAX)
}

/// An amount the chain holds, as the API writes it.
pub fn wei(amount: U256) -> Wei {
    // Cannot fail: a U256 prints as decimal digits below 2^256.
    Wei::parse(&amount.to_string()).unwrap_or_else(|_| Wei::zero())
}

/// An amount of ETH as a person types it ("0.25", "1", "1.5", ".5"), in
/// wei. At most 18 decimal places; no sign, exponent or unit.
pub fn parse_ether(s: &str) -> Result<U256, CallError> {
    let t = s.trim();
    let bad = || {
        invalid(
            "amount",
            format!("{s:?} is not an amount of ETH such as 0.25"),
        )
    };
    let (whole, fraction) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(bad());
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if fraction.len() > ETHER_DECIMALS {
        return Err(invalid(
            "amount",
            format!(
                "{s:?} has more than {ETHER_DECIMALS} decimal places (1 wei is 0.000000000000000001 ETH)"
            ),
        ));
    }
    let digits = format!("{whole}{fraction:0<ETHER_DECIMALS$}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(U256::ZERO);
    }
    U256::from_str_radix(digits, 10).map_err(|_| invalid("amount", format!("{s:?} is too large")))
}

/// Wei as a plain decimal number of ETH, without trailing zeros: `1.5`,
/// `0.000000000000000001`, `12`.
pub fn format_ether(wei: U256) -> String {
    let unit = U256::from(WEI_PER_ETHER);
    let whole = wei / unit;
    let fraction = (wei % unit).to_string();
    let fraction = format!("{fraction:0>ETHER_DECIMALS$}");
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{fraction}")
    }
}

/// Calldata of `fund(jobId, signer, specHash, deadline)`: the deposit for
/// job `job_id` (sent as the transaction's value), settled by the
/// coordinator key `signer`, refundable after `deadline` (Unix seconds).
pub fn fund(
    job_id: JobId,
    signer: &str,
    spec_hash: &str,
    deadline: u64,
) -> Result<Bytes, CallError> {
    let call = IOblivionEscrow::fundCall {
        jobId: U256::from(job_id.0),
        signer: address("signer", signer)?,
        specHash: b256("spec_hash", spec_hash)?,
        deadline,
    };
    Ok(call.abi_encode().into())
}

/// Calldata of `settle(job, root, total, modelHash, issuedAt, signature)`
/// for the job with key `job_key`, from the coordinator's signed settlement.
pub fn settle(job_key: &str, settlement: &SettlementView) -> Result<Bytes, CallError> {
    let call = IOblivionEscrow::settleCall {
        job: b256("job_key", job_key)?,
        root: b256("root", &settlement.root)?,
        total: u256(&settlement.total),
        modelHash: b256("model_hash", &settlement.model_hash)?,
        issuedAt: settlement.issued_at,
        signature: bytes("signature", &settlement.signature)?,
    };
    if call.signature.len() != 65 {
        return Err(invalid(
            "signature",
            format!("{} bytes, not 65", call.signature.len()),
        ));
    }
    Ok(call.abi_encode().into())
}

/// Calldata of `claim(job, index, account, amount, proof)` for one reward.
pub fn claim(reward: &RewardView) -> Result<Bytes, CallError> {
    let proof = proof(&reward.proof)?;
    let call = IOblivionEscrow::claimCall {
        job: b256("job_key", &reward.job_key)?,
        index: U256::from(reward.index),
        account: address("account", &reward.account)?,
        amount: u256(&reward.amount),
        proof,
    };
    Ok(call.abi_encode().into())
}

fn proof(hashes: &[String]) -> Result<Vec<B256>, CallError> {
    hashes
        .iter()
        .enumerate()
        .map(|(i, p)| b256(&format!("proof[{i}]"), p))
        .collect()
}

/// Calldata of `list(modelId, signer, modelHash, price, contributorsBps,
/// sharesRoot, signature)`: the owner sends the coordinator's signed terms.
pub fn list(listing: &ListingView) -> Result<Bytes, CallError> {
    let call = IOblivionEscrow::listCall {
        modelId: U256::from(listing.model_id.0),
        signer: address("signer", &listing.signer)?,
        modelHash: b256("model_hash", &listing.model_hash)?,
        price: u256(&listing.price),
        contributorsBps: listing.contributors_bps,
        sharesRoot: b256("shares_root", &listing.shares_root)?,
        signature: bytes("signature", &listing.signature)?,
    };
    if call.signature.len() != 65 {
        return Err(invalid(
            "signature",
            format!("{} bytes, not 65", call.signature.len()),
        ));
    }
    Ok(call.abi_encode().into())
}

/// Calldata of `delist(listing)`.
pub fn delist(listing_key: &str) -> Result<Bytes, CallError> {
    let call = IOblivionEscrow::delistCall {
        listing: b256("listing", listing_key)?,
    };
    Ok(call.abi_encode().into())
}

/// Calldata of `purchase(listing)`; the price goes as the value.
pub fn purchase(listing_key: &str) -> Result<Bytes, CallError> {
    let call = IOblivionEscrow::purchaseCall {
        listing: b256("listing", listing_key)?,
    };
    Ok(call.abi_encode().into())
}

/// Calldata of `claimShare(listing, index, account, weight, proof)`.
pub fn claim_share(share: &ShareView) -> Result<Bytes, CallError> {
    let call = IOblivionEscrow::claimShareCall {
        listing: b256("listing", &share.listing)?,
        index: U256::from(share.leaf.index),
        account: address("account", &share.leaf.account)?,
        weight: U256::from(share.leaf.weight),
        proof: proof(&share.proof)?,
    };
    Ok(call.abi_encode().into())
}

/// Calldata of `withdraw()`.
pub fn withdraw() -> Bytes {
    IOblivionEscrow::withdrawCall {}.abi_encode().into()
}

fn eth(wei: U256) -> String {
    format!("{} ETH", format_ether(wei))
}

/// Why the escrow reverted, in words, from the revert data (`0x` hex: a
/// 4-byte selector and its arguments). Knows the escrow's own errors (by
/// their selector alone when the arguments were cut off) and Solidity's
/// `Error(string)` and `Panic(uint256)`; `None` for anything else.
pub fn explain_revert(data: &str) -> Option<String> {
    let data = bytes("revert", data).ok()?;
    if data.len() < 4 {
        return None;
    }
    if let Ok(e) = EscrowError::abi_decode(&data) {
        return Some(explain(&e));
    }
    let selector: [u8; 4] = data[..4].try_into().ok()?;
    if let Some(name) = EscrowError::name_by_selector(selector) {
        return Some(explain_name(name));
    }
    if let Ok(r) = alloy::sol_types::Revert::abi_decode(&data) {
        return Some(format!("the contract refused: {}", r.reason));
    }
    if let Ok(p) = alloy::sol_types::Panic::abi_decode(&data) {
        return Some(format!("the contract failed: {p}"));
    }
    None
}

/// Finds revert data in a wallet's error text (some put it in the message,
/// e.g. `execution reverted: custom error 0x3c9d0c1e…`) and explains it.
pub fn explain_revert_in(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(at) = rest.find("0x") {
        let tail = &rest[at..];
        let len = 2 + tail[2..].bytes().take_while(u8::is_ascii_hexdigit).count();
        if len >= 10 {
            let candidate = &tail[..len - (len % 2)];
            if let Some(reason) = explain_revert(candidate) {
                return Some(reason);
            }
        }
        rest = &tail[len.max(2)..];
    }
    None
}

/// An escrow error in words, with what its arguments tell.
fn explain(e: &EscrowError) -> String {
    use IOblivionEscrow as E;
    match e {
        EscrowError::AlreadyClaimed(E::AlreadyClaimed { index }) => {
            format!("payout {index} of this job was claimed already")
        }
        EscrowError::ClaimExceedsTotal(E::ClaimExceedsTotal { claimed, total }) => format!(
            "the claims would come to {} but the settlement pays {} in all",
            eth(*claimed),
            eth(*total)
        ),
        EscrowError::NativeTransferFailed(E::NativeTransferFailed { to, amount }) => {
            format!("the escrow could not pay {} to {to}", eth(*amount))
        }
        EscrowError::SettlementInGrace(E::SettlementInGrace { opensAt }) => format!(
            "only the job's creator may send this settlement before {opensAt} (Unix time); anyone may after"
        ),
        EscrowError::RefundNotOpen(E::RefundNotOpen { opensAt }) => format!(
            "the refund opens at {opensAt} (Unix time), two settlement grace periods after the deadline"
        ),
        EscrowError::WrongPayment(E::WrongPayment { sent, price }) => format!(
            "the model costs {}, not {}: its price changed, reload the page",
            eth(*price),
            eth(*sent)
        ),
        EscrowError::ContributorsShareTooHigh(E::ContributorsShareTooHigh {
            contributorsBps,
            max,
        }) => format!(
            "the contributors' part is {}%, more than the most a listing may give ({}%)",
            f64::from(*contributorsBps) / 100.0,
            f64::from(*max) / 100.0
        ),
        EscrowError::TotalExceedsDeposit(E::TotalExceedsDeposit { total, deposit }) => format!(
            "the settlement pays {} but only {} was deposited",
            eth(*total),
            eth(*deposit)
        ),
        other => explain_name(EscrowError::name_by_selector(other.selector()).unwrap_or("")),
    }
}

/// An escrow error in words, from its name alone.
fn explain_name(name: &str) -> String {
    match name {
        "AlreadyClaimed" => "this payout was claimed already",
        "ClaimExceedsTotal" => "the claims would exceed what the settlement pays",
        "ClaimWindowClosed" => "the claim window has closed",
        "ClaimWindowOpen" => "the claim window is still open",
        "DeadlineNotInFuture" => {
            "the settlement deadline is not in the future: check this computer's clock"
        }
        "RefundNotOpen" => "the refund is not open yet",
        "RefundOpen" => "the refund is open: the job can no longer be settled",
        "IssuedAfterDeadline" => "the settlement was issued after the job's deadline",
        "IssuedInFuture" => "the settlement was issued later than the latest block: try again shortly",
        "SettlementInGrace" => "only the job's creator may send this settlement yet",
        "InvalidProof" => "the payout proof does not match the settled payout tree",
        "InvalidSignature" => "the coordinator's signature does not match this settlement",
        "JobExists" => "this job is funded already",
        "JobNotFunded" => {
            "the escrow holds no open deposit for this job (never funded, or settled or refunded already)"
        }
        "JobNotSettled" => "the job's creator has not settled it yet",
        "NativeTransferFailed" => "the escrow could not pay the recipient",
        "TotalExceedsDeposit" => "the settlement pays more than was deposited",
        "ZeroAmount" => "the deposit must be more than zero",
        "ZeroSigner" => "no settlement signer was named",
        "AlreadyBought" => "this account has bought the model already",
        "ContributorsShareTooHigh" => "the contributors' part is above the escrow's cap",
        "ListingTermsFixed" => {
            "a listing's model and shares cannot change once listed: only its price and part"
        }
        "NoContributors" => "the model has no contributors to give a part of its sales",
        "NotListed" => "the model is not on sale",
        "NotOwner" => "only the model's owner may do this",
        "NothingToClaim" => "this share has been paid everything the sales so far owe it",
        "NothingToWithdraw" => "there are no proceeds to withdraw",
        "PoolExceeded" => "the claim would exceed what the sales paid the contributors",
        "WrongPayment" => "the payment is not the model's price: reload the page",
        "" => "the escrow refused",
        other => return format!("the escrow refused ({other})"),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::keccak256;
    use oblivion_protocol::api::PayoutView;
    use serde_json::Value;

    const ABI: &str = include_str!("../abi/OblivionEscrow.json");
    const SIGNER: &str = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";
    const HASH: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";
    const KEY: &str = "0x2222222222222222222222222222222222222222222222222222222222222222";

    /// `name(type,...)` to selector, for every entry of `kind` in the ABI.
    fn abi_selectors(kind: &str) -> Vec<(String, [u8; 4])> {
        let abi: Value = serde_json::from_str(ABI).unwrap();
        abi["abi"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == kind)
            .map(|e| {
                let types: Vec<&str> = e["inputs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| {
                        let t = i["type"].as_str().unwrap();
                        assert!(!t.starts_with("tuple"), "tuples are not expected here");
                        t
                    })
                    .collect();
                let signature = format!("{}({})", e["name"].as_str().unwrap(), types.join(","));
                let hash = keccak256(signature.as_bytes());
                (signature, hash[..4].try_into().unwrap())
            })
            .collect()
    }

    #[test]
    fn selectors() {
        let functions = abi_selectors("function");
        for (signature, selector) in [
            (
                IOblivionEscrow::fundCall::SIGNATURE,
                IOblivionEscrow::fundCall::SELECTOR,
            ),
            (
                IOblivionEscrow::settleCall::SIGNATURE,
                IOblivionEscrow::settleCall::SELECTOR,
            ),
            (
                IOblivionEscrow::claimCall::SIGNATURE,
                IOblivionEscrow::claimCall::SELECTOR,
            ),
            (
                IOblivionEscrow::listCall::SIGNATURE,
                IOblivionEscrow::listCall::SELECTOR,
            ),
            (
                IOblivionEscrow::delistCall::SIGNATURE,
                IOblivionEscrow::delistCall::SELECTOR,
            ),
            (
                IOblivionEscrow::purchaseCall::SIGNATURE,
                IOblivionEscrow::purchaseCall::SELECTOR,
            ),
            (
                IOblivionEscrow::claimShareCall::SIGNATURE,
                IOblivionEscrow::claimShareCall::SELECTOR,
            ),
            (
                IOblivionEscrow::withdrawCall::SIGNATURE,
                IOblivionEscrow::withdrawCall::SELECTOR,
            ),
        ] {
            assert!(
                functions.contains(&(signature.to_string(), selector)),
                "{signature} is not in the escrow's ABI"
            );
        }
        let mut errors = abi_selectors("error");
        errors.sort();
        let mut ours: Vec<(String, [u8; 4])> = EscrowError::SIGNATURES
            .iter()
            .zip(EscrowError::SELECTORS)
            .map(|(s, sel)| (s.to_string(), *sel))
            .collect();
        ours.sort();
        assert_eq!(ours, errors, "the declared errors differ from the ABI's");
    }

    #[test]
    fn known_selectors() {
        // fund(uint256,address,bytes32,uint64) and friends, as `cast sig` gives them.
        assert_eq!(
            IOblivionEscrow::fundCall::SIGNATURE,
            "fund(uint256,address,bytes32,uint64)"
        );
        assert_eq!(
            IOblivionEscrow::claimCall::SIGNATURE,
            "claim(bytes32,uint256,address,uint256,bytes32[])"
        );
        assert_eq!(
            IOblivionEscrow::settleCall::SIGNATURE,
            "settle(bytes32,bytes32,uint256,bytes32,uint64,bytes)"
        );
    }

    #[test]
    fn fund_encodes() {
        let data = fund(JobId(7), SIGNER, HASH, 1_900_000_000).unwrap();
        assert_eq!(data[..4], IOblivionEscrow::fundCall::SELECTOR);
        let call = IOblivionEscrow::fundCall::abi_decode(&data).unwrap();
        assert_eq!(call.jobId, U256::from(7));
        assert_eq!(call.signer, SIGNER.parse::<Address>().unwrap());
        assert_eq!(call.specHash, HASH.parse::<B256>().unwrap());
        assert_eq!(call.deadline, 1_900_000_000);
        assert_eq!(data.len(), 4 + 4 * 32);
        assert!(data.to_string().starts_with("0x"));
    }

    #[test]
    fn fund_rejects_bad_inputs() {
        let e = fund(JobId(1), "0x1234", HASH, 1).unwrap_err();
        assert_eq!(e.field, "signer");
        assert!(e.to_string().contains("20 bytes"), "{e}");
        let e = fund(JobId(1), SIGNER, "1111", 1).unwrap_err();
        assert_eq!(e.field, "spec_hash");
        assert!(e.to_string().contains("0x hex"), "{e}");
        let e = fund(JobId(1), SIGNER, &HASH.replace('1', "g"), 1).unwrap_err();
        assert_eq!(e.field, "spec_hash");
    }

    fn settlement() -> SettlementView {
        SettlementView {
            root: HASH.into(),
            total: Wei::from(1_500_000_000_000_000_000),
            model_hash: KEY.into(),
            nonce: 0,
            issued_at: 1_800_000_000,
            signature: format!("0x{}1b", "ab".repeat(64)),
            payouts: vec![PayoutView {
                index: 0,
                account: SIGNER.into(),
                amount: Wei::from(1_500_000_000_000_000_000),
            }],
        }
    }

    #[test]
    fn settle_encodes() {
        let s = settlement();
        let data = settle(KEY, &s).unwrap();
        let call = IOblivionEscrow::settleCall::abi_decode(&data).unwrap();
        assert_eq!(call.job, KEY.parse::<B256>().unwrap());
        assert_eq!(call.root, HASH.parse::<B256>().unwrap());
        assert_eq!(call.total, U256::from(1_500_000_000_000_000_000u64));
        assert_eq!(call.modelHash, KEY.parse::<B256>().unwrap());
        assert_eq!(call.issuedAt, 1_800_000_000);
        assert_eq!(call.signature.len(), 65);
        assert_eq!(call.signature[64], 0x1b);
    }

    #[test]
    fn settle_rejects_bad_inputs() {
        let mut s = settlement();
        s.signature = "0xabcd".into();
        assert_eq!(settle(KEY, &s).unwrap_err().field, "signature");
        s.signature = "0xabc".into();
        assert_eq!(settle(KEY, &s).unwrap_err().field, "signature");
        // An amount that is not wei does not even read as a settlement.
        let mut json = serde_json::to_value(settlement()).unwrap();
        json["total"] = "1.5".into();
        let e = serde_json::from_value::<SettlementView>(json).unwrap_err();
        assert!(e.to_string().contains("whole number of wei"), "{e}");
    }

    #[test]
    fn claim_encodes() {
        let reward = RewardView {
            job_id: JobId(3),
            job_name: "iris".into(),
            job_key: KEY.into(),
            index: 2,
            account: SIGNER.into(),
            amount: Wei::from(250_000_000_000_000_000),
            proof: vec![HASH.into(), KEY.into()],
            settled: true,
            claimed: false,
        };
        let data = claim(&reward).unwrap();
        let call = IOblivionEscrow::claimCall::abi_decode(&data).unwrap();
        assert_eq!(call.job, KEY.parse::<B256>().unwrap());
        assert_eq!(call.index, U256::from(2));
        assert_eq!(call.account, SIGNER.parse::<Address>().unwrap());
        assert_eq!(call.amount, U256::from(250_000_000_000_000_000u64));
        assert_eq!(call.proof.len(), 2);
        let mut bad = reward;
        bad.proof[1] = "0x12".into();
        assert_eq!(claim(&bad).unwrap_err().field, "proof[1]");
    }

    #[test]
    fn amounts_convert_both_ways_to_the_full_word() {
        let max = wei(U256::MAX);
        assert_eq!(max.as_str(), U256::MAX.to_string());
        assert_eq!(u256(&max), U256::MAX);
        let one_and_a_half = Wei::parse("1500000000000000000").unwrap();
        assert_eq!(
            u256(&one_and_a_half),
            U256::from(1_500_000_000_000_000_000u64)
        );
        assert_eq!(wei(U256::ZERO), Wei::zero());
    }

    #[test]
    fn ether_parses() {
        let wei = |n: u64| U256::from(n);
        assert_eq!(parse_ether("0.25").unwrap(), wei(250_000_000_000_000_000));
        assert_eq!(parse_ether("1").unwrap(), wei(WEI_PER_ETHER));
        assert_eq!(
            parse_ether(" 1.5 ").unwrap(),
            wei(1_500_000_000_000_000_000)
        );
        assert_eq!(parse_ether(".5").unwrap(), wei(500_000_000_000_000_000));
        assert_eq!(parse_ether("2.").unwrap(), wei(2 * WEI_PER_ETHER));
        assert_eq!(parse_ether("0").unwrap(), U256::ZERO);
        assert_eq!(parse_ether("0.000000000000000001").unwrap(), wei(1));
        assert_eq!(
            parse_ether("1000000").unwrap(),
            U256::from(WEI_PER_ETHER) * U256::from(1_000_000)
        );
        for bad in ["", ".", "-1", "1,5", "abc", "1e3", "1.2.3", "0x1", "1 ETH"] {
            assert!(parse_ether(bad).is_err(), "{bad:?} parsed");
        }
        let e = parse_ether("0.0000000000000000001").unwrap_err();
        assert!(e.reason.contains("18 decimal places"), "{e}");
        assert!(
            parse_ether(&"9".repeat(80))
                .unwrap_err()
                .reason
                .contains("too large")
        );
    }

    #[test]
    fn ether_formats() {
        assert_eq!(format_ether(U256::ZERO), "0");
        assert_eq!(format_ether(U256::from(WEI_PER_ETHER)), "1");
        assert_eq!(
            format_ether(U256::from(1_500_000_000_000_000_000u64)),
            "1.5"
        );
        assert_eq!(format_ether(U256::from(1)), "0.000000000000000001");
        assert_eq!(
            format_ether(U256::from(WEI_PER_ETHER) * U256::from(1000)),
            "1000"
        );
        for typed in ["0.25", "1", "12.000000000000000001", "0.1"] {
            assert_eq!(format_ether(parse_ether(typed).unwrap()), typed);
        }
    }

    #[test]
    fn reverts_explained() {
        let data = IOblivionEscrow::TotalExceedsDeposit {
            total: U256::from(2u64 * WEI_PER_ETHER),
            deposit: U256::from(WEI_PER_ETHER),
        }
        .abi_encode();
        let hex = format!("0x{}", hex::encode(&data));
        assert_eq!(
            explain_revert(&hex).unwrap(),
            "the settlement pays 2 ETH but only 1 ETH was deposited"
        );
        // The selector alone tells the error.
        let selector = format!(
            "0x{}",
            hex::encode(IOblivionEscrow::AlreadyClaimed::SELECTOR)
        );
        assert_eq!(
            explain_revert(&selector).unwrap(),
            "this payout was claimed already"
        );
        let data = IOblivionEscrow::AlreadyClaimed {
            index: U256::from(3),
        }
        .abi_encode();
        assert_eq!(
            explain_revert(&format!("0x{}", hex::encode(data))).unwrap(),
            "payout 3 of this job was claimed already"
        );
        // As anvil words it: the selector, then the arguments as raw bytes.
        let message = "execution reverted: custom error 0xf4f970ec: \u{0}\u{0}\u{1}";
        assert_eq!(
            explain_revert_in(message).unwrap(),
            "the settlement deadline is not in the future: check this computer's clock"
        );
        let reentrant = format!(
            "0x{}",
            hex::encode(IOblivionEscrow::ReentrancyGuardReentrantCall::SELECTOR)
        );
        assert_eq!(
            explain_revert(&reentrant).unwrap(),
            "the escrow refused (ReentrancyGuardReentrantCall)"
        );
        let proof = format!("0x{}", hex::encode(IOblivionEscrow::InvalidProof::SELECTOR));
        let message = format!("execution reverted: custom error {proof}");
        assert_eq!(
            explain_revert_in(&message).unwrap(),
            "the payout proof does not match the settled payout tree"
        );
        let revert = alloy::sol_types::Revert::from("no luck").abi_encode();
        assert_eq!(
            explain_revert(&format!("0x{}", hex::encode(revert))).unwrap(),
            "the contract refused: no luck"
        );
        assert_eq!(explain_revert("0x12345678"), None);
        assert_eq!(explain_revert("0x12"), None);
        assert_eq!(
            explain_revert_in("insufficient funds for gas * price + value"),
            None
        );
    }
}
