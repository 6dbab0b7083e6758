//! End to end on a local chain: deploy the escrow on anvil, fund a job, settle
//! it with a coordinator-signed payout tree built by the payout rule, claim
//! every leaf, and check that the escrow refuses forged proofs, double claims,
//! a signature for another job and an early refund.
//!
//! anvil comes from the contracts' npm packages (`npm ci` in `contracts/`);
//! without it the test says so and passes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::node_bindings::Anvil;
use alloy::primitives::{Address, Bytes, U256, keccak256};
use alloy::providers::Provider;
use alloy::rpc::types::BlockNumberOrTag;
use oblivion_chain::escrow::{self, OblivionEscrow};
use oblivion_chain::{Key, PayoutTree, Settlement, settlement, shares};
use oblivion_protocol::JobId;

const ETHER: u128 = 1_000_000_000_000_000_000;
const DAY: u64 = 24 * 60 * 60;
const HOUR: u64 = 60 * 60;

/// The anvil binary of `contracts/node_modules`: the platform package's
/// executable if there is one, else the npm launcher.
fn anvil_binary() -> Option<PathBuf> {
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts/node_modules");
    let platform = std::fs::read_dir(modules.join("@foundry-rs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("anvil-"))
        .map(|e| e.path().join("bin/anvil"))
        .find(|p| p.is_file());
    platform.or_else(|| Some(modules.join(".bin/anvil")).filter(|p| p.is_file()))
}

fn ether(n: u128) -> U256 {
    U256::from(n * ETHER)
}

#[tokio::test]
async fn escrow_settles_and_pays_the_payout_tree() {
    on_anvil(scenario).await;
}

/// Runs `scenario` with anvil's binary, within two minutes (a transaction
/// that is never mined would otherwise hang the test); says it skipped
/// without anvil.
async fn on_anvil<F: std::future::Future<Output = ()>>(scenario: impl FnOnce(PathBuf) -> F) {
    let Some(binary) = anvil_binary() else {
        eprintln!(
            "SKIPPED: no anvil in contracts/node_modules (run `npm ci` in contracts/ to install it)"
        );
        return;
    };
    tokio::time::timeout(Duration::from_secs(120), scenario(binary))
        .await
        .expect("the scenario finishes within two minutes");
}

async fn scenario(binary: PathBuf) {
    let anvil = Anvil::at(&binary).try_spawn().expect("anvil starts");
    let creator = Key::parse(&alloy::hex::encode(anvil.keys()[0].to_bytes())).unwrap();
    let coordinator = Key::parse(&format!("{:064x}", 0xC0FFEE)).unwrap();
    let provider = escrow::connect(anvil.endpoint_url(), &creator);
    let chain_id = provider.get_chain_id().await.unwrap();

    let contract = escrow::deploy(provider.clone(), DAY, HOUR)
        .await
        .expect("deploys");
    let at = *contract.address();
    assert_eq!(contract.claimWindow().call().await.unwrap(), DAY);
    assert_eq!(contract.settleGrace().call().await.unwrap(), HOUR);

    let now = provider
        .get_block_by_number(BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .expect("a latest block")
        .header
        .timestamp;
    let deadline = now + DAY;
    let spec = keccak256("spec: anvil test");
    let model = keccak256("model: anvil test");

    // Fund job 1 with 10 ether; the coordinator key signs its settlement.
    let fund = |job_id: u64| {
        contract
            .fund(
                U256::from(job_id),
                coordinator.address_bytes(),
                spec,
                deadline,
            )
            .value(ether(10))
    };
    let receipt = fund(1).send().await.unwrap().get_receipt().await.unwrap();
    assert!(receipt.status());
    let job = settlement::job_key(
        creator.address_bytes(),
        coordinator.address_bytes(),
        JobId(1),
    );
    assert_eq!(
        contract
            .jobKey(
                creator.address_bytes(),
                coordinator.address_bytes(),
                U256::from(1)
            )
            .call()
            .await
            .unwrap(),
        job
    );

    // Three contributors, 9 ether among them by the payout rule.
    let accounts = [0xa1, 0xa2, 0xa3].map(Address::repeat_byte);
    let total = ether(9);
    let split = shares(
        total,
        &[(accounts[0], 500), (accounts[1], 300), (accounts[2], 7)],
    );
    assert_eq!(split.len(), 3);
    let tree = PayoutTree::from_shares(&split).unwrap();
    assert_eq!(tree.total(), total);

    let nonce = contract.nonces(job).call().await.unwrap();
    assert_eq!(nonce, U256::ZERO);
    let statement = Settlement {
        job,
        root: tree.root(),
        total,
        modelHash: model,
        nonce,
        issuedAt: now,
    };
    assert_eq!(
        contract
            .settlementDigest(job, tree.root(), total, model, nonce, now)
            .call()
            .await
            .unwrap(),
        settlement::digest(&statement, chain_id, at),
        "the contract and the crate agree on the digest"
    );
    let signature = Bytes::from(settlement::sign(&coordinator, &statement, chain_id, at).unwrap());

    // A second job: job 1's signature cannot settle it, nor can it be
    // refunded before its deadline.
    fund(2).send().await.unwrap().get_receipt().await.unwrap();
    let job2 = settlement::job_key(
        creator.address_bytes(),
        coordinator.address_bytes(),
        JobId(2),
    );
    let err = contract
        .settle(job2, tree.root(), total, model, now, signature.clone())
        .send()
        .await
        .expect_err("a signature for another job settles");
    assert!(
        err.as_decoded_error::<OblivionEscrow::InvalidSignature>()
            .is_some(),
        "{err}"
    );
    let err = contract
        .refund(job2)
        .send()
        .await
        .expect_err("a refund before the deadline");
    assert!(
        err.as_decoded_error::<OblivionEscrow::RefundNotOpen>()
            .is_some(),
        "{err}"
    );

    // Settle job 1: the 1 ether above the total goes back to the creator.
    let receipt = contract
        .settle(job, tree.root(), total, model, now, signature)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    eprintln!("gas used by settle: {}", receipt.gas_used);
    assert_eq!(contract.nonces(job).call().await.unwrap(), U256::from(1));
    // Job 2's deposit and job 1's total remain.
    assert_eq!(provider.get_balance(at).await.unwrap(), ether(19));

    // A forged proof: leaf 0 claiming one wei more, or with leaf 1's proof.
    let first = tree.payouts()[0];
    for (amount, proof) in [
        (first.amount + U256::from(1), tree.proof(0).unwrap()),
        (first.amount, tree.proof(1).unwrap()),
    ] {
        let err = contract
            .claim(job, U256::from(0), first.account, amount, proof)
            .send()
            .await
            .expect_err("a forged proof pays");
        assert!(
            err.as_decoded_error::<OblivionEscrow::InvalidProof>()
                .is_some(),
            "{err}"
        );
    }

    // Every leaf pays its account exactly its amount (the creator sends the
    // claims and pays their gas).
    for p in tree.payouts() {
        let before = provider.get_balance(p.account).await.unwrap();
        let receipt = contract
            .claim(
                job,
                U256::from(p.index),
                p.account,
                p.amount,
                tree.proof(p.index).unwrap(),
            )
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(receipt.status());
        if p.index == 0 {
            eprintln!("gas used by a claim: {}", receipt.gas_used);
        }
        let after = provider.get_balance(p.account).await.unwrap();
        assert_eq!(after - before, p.amount, "leaf {}", p.index);
    }
    let state = contract.jobs(job).call().await.unwrap();
    assert_eq!(state.claimed, total);
    assert_eq!(provider.get_balance(at).await.unwrap(), ether(10));

    // No leaf pays twice.
    let err = contract
        .claim(
            job,
            U256::from(first.index),
            first.account,
            first.amount,
            tree.proof(first.index).unwrap(),
        )
        .send()
        .await
        .expect_err("a second claim pays");
    assert!(
        err.as_decoded_error::<OblivionEscrow::AlreadyClaimed>()
            .is_some(),
        "{err}"
    );
}

#[tokio::test]
async fn market_sells_a_model_and_splits_its_sales_by_shares() {
    on_anvil(market).await;
}

async fn market(binary: PathBuf) {
    use oblivion_chain::listing::{self, Listing};
    use oblivion_protocol::ModelId;

    let anvil = Anvil::at(&binary).try_spawn().expect("anvil starts");
    let key = |i: usize| Key::parse(&alloy::hex::encode(anvil.keys()[i].to_bytes())).unwrap();
    let (owner, buyer) = (key(0), key(1));
    let coordinator = Key::parse(&format!("{:064x}", 0xC0FFEE)).unwrap();
    let as_owner = escrow::connect(anvil.endpoint_url(), &owner);
    let as_buyer = escrow::connect(anvil.endpoint_url(), &buyer);
    let chain_id = as_owner.get_chain_id().await.unwrap();
    let contract = escrow::deploy(as_owner.clone(), DAY, HOUR).await.unwrap();
    let at = *contract.address();

    // Three contributors whose verified work was 5, 3 and 2 samples.
    let accounts = [0xb1, 0xb2, 0xb3].map(Address::repeat_byte);
    let weights = listing::share_weights(&[(accounts[0], 5), (accounts[1], 3), (accounts[2], 2)]);
    let tree = PayoutTree::from_shares(&weights).unwrap();
    let model = keccak256("model: sold weights");
    let terms = Listing {
        modelId: U256::from(7),
        owner: owner.address_bytes(),
        modelHash: model,
        price: ether(1),
        contributorsBps: 2_500,
        sharesRoot: tree.root(),
        nonce: U256::ZERO,
    };
    assert_eq!(
        contract
            .listingDigest(
                terms.modelId,
                terms.owner,
                model,
                terms.price,
                terms.contributorsBps,
                terms.sharesRoot,
                terms.nonce
            )
            .call()
            .await
            .unwrap(),
        listing::digest(&terms, chain_id, at),
        "the contract and the crate agree on the listing digest"
    );
    let signature = listing::sign(&coordinator, &terms, chain_id, at).unwrap();
    let receipt = contract
        .list(
            terms.modelId,
            coordinator.address_bytes(),
            model,
            terms.price,
            terms.contributorsBps,
            terms.sharesRoot,
            Bytes::copy_from_slice(&signature),
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    let key = listing::listing_key(
        owner.address_bytes(),
        coordinator.address_bytes(),
        ModelId(7),
    );

    let bought = escrow::at(at, &as_buyer)
        .purchase(key)
        .value(ether(1))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(bought.status());
    assert!(
        contract
            .hasBought(key, buyer.address_bytes())
            .call()
            .await
            .unwrap()
    );

    // Each contributor claims its weight of the 0.25 ether pool.
    for (i, payout) in tree.payouts().iter().enumerate() {
        let proof = tree.proof(payout.index).unwrap();
        contract
            .claimShare(
                key,
                U256::from(payout.index),
                payout.account,
                payout.amount,
                proof,
            )
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        let got = as_owner.get_balance(payout.account).await.unwrap();
        let owed = listing::share_owed(ether(1) / U256::from(4), payout.amount.to());
        assert_eq!(got, owed, "contributor {i}");
    }
    assert_eq!(
        contract
            .proceeds(owner.address_bytes())
            .call()
            .await
            .unwrap(),
        ether(1) * U256::from(3) / U256::from(4),
        "the owner is owed the rest"
    );
}
