//! A paid job end to end against a real EVM node (anvil) and the real
//! escrow: the creator funds it, the coordinator opens it once the deposit
//! is confirmed, native workers (signed in, so paid) train it, the
//! coordinator signs the settlement, the creator's key sends it, and each
//! worker claims exactly its share; balances are checked on chain. Forged
//! proofs, second claims, a settlement signed for another job and a refund
//! before the deadline all revert. A creator who walks away after the work
//! cannot take the model, nor the deposit back: the settlement is sent
//! without them once its grace has passed, and the workers claim. A free
//! rider that posts the previous round's change instead of training is
//! paid nothing: a paid job has every shard trained twice by default. A
//! paid inference job pays its workers by rows, and its outputs wait for
//! the settlement.

use oblivion_protocol::{BlobId, JobId};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider};
use oblivion_chain::escrow::{self, OblivionEscrow};
use oblivion_chain::{Key, calls};
use oblivion_e2e::anvil::Anvil;
use oblivion_e2e::anvil::{SIGNER_KEY as SIGNER, chain_flags};
use oblivion_e2e::{Api, CREATOR_KEY, Network, ScriptedWorker, example, gaussian, map_params};
use oblivion_ml::params::Params;
use oblivion_protocol::api::{JobStatus, JobView, PaymentState, RewardView, SettlementView};
use serde_json::json;

/// anvil's development accounts #2 and #3: the workers.
const WORKER_A: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";
const WORKER_B: &str = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6";

fn ether(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

async fn mine(provider: &DynProvider, blocks: u64) {
    oblivion_e2e::anvil::mine(provider, blocks).await.unwrap();
}

/// Polls job `id` until `ready` holds (mining a block each time, so that
/// deposits and settlements gather confirmations).
async fn wait_job(
    api: &Api,
    provider: &DynProvider,
    id: JobId,
    what: &str,
    ready: impl Fn(&JobView) -> bool,
) -> JobView {
    until_mined(provider, what, Duration::from_secs(300), async || {
        let job = api.job(id).await.unwrap();
        if ready(&job) {
            Ok(job)
        } else {
            Err(format!("{job:?}"))
        }
    })
    .await
}

/// Calls `check` until it gives a value, mining a block between tries (so
/// that chain events gather confirmations); after `within`, panics with
/// `what` and the last try's account of what it saw.
async fn until_mined<T>(
    provider: &DynProvider,
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(Instant::now() < deadline, "{what}: {seen}"),
        }
        mine(provider, 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn paid_spec(seed: u64) -> serde_json::Value {
    let mut spec = example("iris-mlp.json").unwrap();
    spec["rounds"] = json!(3);
    spec["seed"] = json!(seed);
    spec["reward"] = json!({"amount": ether(1).to_string(), "deadline_hours": 24});
    spec
}

async fn fund(
    contract: &OblivionEscrow::OblivionEscrowInstance<&DynProvider>,
    job: &JobView,
    signer: Address,
) {
    fund_until(contract, job, signer, unix_now() + 24 * 3600).await
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Funds `job` with a deposit whose deadline is `deadline`.
async fn fund_until(
    contract: &OblivionEscrow::OblivionEscrowInstance<&DynProvider>,
    job: &JobView,
    signer: Address,
    deadline: u64,
) {
    let payment = job.payment.as_ref().unwrap();
    let receipt = contract
        .fund(
            U256::from(job.id.0),
            signer,
            payment.spec_hash.parse().unwrap(),
            deadline,
        )
        .value(calls::u256(&payment.amount))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
}

/// Deploys the escrow on the node at `url`, with a settlement grace of
/// `grace` seconds.
async fn deploy_escrow(url: &alloy::transports::http::reqwest::Url, grace: u64) -> Address {
    oblivion_e2e::anvil::deploy_escrow(url.as_str(), grace)
        .await
        .unwrap()
}

/// A network whose jobs are paid on the node at `rpc` with the escrow at
/// `escrow`, deposits counting after `confirmations` blocks; `extra` serve
/// flags after those.
fn paid_network(rpc: &str, escrow: Address, confirmations: u64, extra: &[&str]) -> Network {
    let mut flags = chain_flags(rpc, escrow, confirmations);
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Network::start(&flags).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paid_job_is_funded_trained_settled_and_claimed_on_chain() {
    let anvil = Anvil::start().unwrap();
    let url: alloy::transports::http::reqwest::Url = anvil.url.parse().unwrap();
    let escrow_address = deploy_escrow(&url, 86_400).await;
    let signer = Key::parse(SIGNER).unwrap();
    let mut net = paid_network(&anvil.url, escrow_address, 2, &[]);
    let api = net.api();

    let (status, info) = api.get("/api/chain").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(info["signer"], signer.address().to_lowercase());
    assert_eq!(info["chain_id"], 31337);

    // Created, but not trained until its deposit is confirmed.
    let id = api.submit(&paid_spec(11)).await.unwrap();
    let job = api.job(id).await.unwrap();
    assert_eq!(job.status, JobStatus::Funding);
    let payment = job.payment.clone().unwrap();
    assert_eq!(payment.state, PaymentState::AwaitingDeposit);
    net.add_paid_worker("paid-a", Some(WORKER_A)).unwrap();
    net.add_paid_worker("paid-b", Some(WORKER_B)).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(api.job(id).await.unwrap().status, JobStatus::Funding);

    // The creator's key funds it on chain.
    let creator = escrow::connect(url.clone(), &Key::parse(CREATOR_KEY).unwrap());
    let contract = escrow::at(escrow_address, &creator);
    fund(&contract, &job, signer.address_bytes()).await;
    let job = wait_job(&api, &creator, id, "the job to train to the end", |j| {
        j.status.is_finished()
    })
    .await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let payment = job.payment.clone().unwrap();
    assert_eq!(payment.deposit, Some(calls::wei(ether(1))));

    // The coordinator signs the settlement: the whole deposit, split by
    // credited work between the two paid workers.
    let job = wait_job(&api, &creator, id, "the settlement", |j| {
        j.payment.as_ref().is_some_and(|p| p.settlement.is_some())
    })
    .await;
    let s = job.payment.unwrap().settlement.unwrap();
    assert_eq!(s.total, calls::wei(ether(1)));
    assert_eq!(s.payouts.len(), 2, "{s:?}");
    let paid: U256 = s.payouts.iter().map(|p| calls::u256(&p.amount)).sum();
    assert_eq!(paid, ether(1));
    let key: B256 = payment.job_key.parse().unwrap();

    // The creator's key sends it.
    let signature: Bytes = s.signature.parse().unwrap();
    let receipt = send_settlement(&contract, key, &s).await;
    eprintln!("gas used by settle: {}", receipt.gas_used);
    wait_job(&api, &creator, id, "the settlement to be seen", |j| {
        j.payment
            .as_ref()
            .is_some_and(|p| p.state == PaymentState::Settled)
    })
    .await;

    // Each worker claims its own share from its own wallet.
    for worker in [WORKER_A, WORKER_B] {
        let key_w = Key::parse(worker).unwrap();
        let (status, body) = net.api_as(worker).get("/api/rewards").await.unwrap();
        assert_eq!(status, 200, "{body}");
        let rewards: Vec<RewardView> = serde_json::from_value(body).unwrap();
        assert_eq!(rewards.len(), 1, "{rewards:?}");
        let r = &rewards[0];
        assert!(r.settled && !r.claimed);
        assert_eq!(r.account, key_w.address().to_lowercase());
        let provider = escrow::connect(url.clone(), &key_w);
        let mine_contract = escrow::at(escrow_address, &provider);
        let proof: Vec<B256> = r.proof.iter().map(|h| h.parse().unwrap()).collect();
        let amount = calls::u256(&r.amount);
        // A forged proof (a larger amount) reverts.
        let err = mine_contract
            .claim(
                key,
                U256::from(r.index),
                key_w.address_bytes(),
                amount + U256::from(1),
                proof.clone(),
            )
            .send()
            .await
            .expect_err("a forged proof pays");
        assert!(
            err.as_decoded_error::<OblivionEscrow::InvalidProof>()
                .is_some(),
            "{err}"
        );
        assert_eq!(
            claim(&url, escrow_address, worker, key, r).await,
            amount,
            "{worker} got exactly its share"
        );

        // A second claim of the same leaf reverts.
        let err = mine_contract
            .claim(
                key,
                U256::from(r.index),
                key_w.address_bytes(),
                amount,
                proof.clone(),
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
    let on_chain = contract.jobs(key).call().await.unwrap();
    assert_eq!(on_chain.claimed, ether(1));
    assert_eq!(
        creator.get_balance(escrow_address).await.unwrap(),
        U256::ZERO,
        "the escrow paid out exactly the deposit"
    );
    let (_, body) = net.api_as(WORKER_A).get("/api/rewards").await.unwrap();
    let seen = wait_claimed(&net.api_as(WORKER_A), &creator, body).await;
    assert!(seen, "the coordinator saw the claim");

    // Verify: the settled model's stored weights hash, by keccak256, to the
    // model hash the escrow recorded.
    let (_, models) = api.get("/api/models").await.unwrap();
    let model = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["job"] == json!(id.0))
        .expect("the job's model is registered");
    let stored = api
        .get_bytes(&format!(
            "/api/artifacts/{}",
            model["weights_sha256"].as_str().unwrap()
        ))
        .await
        .unwrap();
    let record = contract.jobs(key).call().await.unwrap();
    assert_eq!(
        oblivion_chain::verify::weights_hash(&stored),
        format!("{:#x}", record.modelHash)
    );
    // Profiles: the creator's deposit and settlement, each worker's claim,
    // with their transactions.
    let creator_address = Key::parse(CREATOR_KEY).unwrap().address().to_lowercase();
    let (_, profile) = api
        .get(&format!("/api/accounts/{creator_address}"))
        .await
        .unwrap();
    let kinds: Vec<&str> = profile["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["job"] == json!(id.0) && e["tx"].as_str().is_some_and(|t| t.len() == 66))
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"funded") && kinds.contains(&"settled"),
        "{profile}"
    );
    for worker in [WORKER_A, WORKER_B] {
        let address = Key::parse(worker).unwrap().address().to_lowercase();
        // The claim is in the history once the watcher has read it (two
        // confirmations, so mine while waiting).
        let profile = until_mined(
            &creator,
            "the claim in the profile",
            Duration::from_secs(60),
            async || {
                let (_, profile) = api.get(&format!("/api/accounts/{address}")).await.unwrap();
                let claimed = profile["history"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["kind"] == "claimed" && e["job"] == json!(id.0));
                if claimed {
                    Ok(profile)
                } else {
                    Err(profile.to_string())
                }
            },
        )
        .await;
        assert!(
            profile["standing"]["samples"].as_u64().unwrap() > 0,
            "{profile}"
        );
    }

    // A second paid job: the first job's settlement signature does not
    // settle it, and it cannot be refunded before its deadline.
    let other = api.submit(&paid_spec(12)).await.unwrap();
    let other_job = api.job(other).await.unwrap();
    fund(&contract, &other_job, signer.address_bytes()).await;
    let other_key: B256 = other_job.payment.unwrap().job_key.parse().unwrap();
    let err = contract
        .settle(
            other_key,
            s.root.parse().unwrap(),
            calls::u256(&s.total),
            s.model_hash.parse().unwrap(),
            s.issued_at,
            signature,
        )
        .send()
        .await
        .expect_err("a settlement signed for another job settles");
    assert!(
        err.as_decoded_error::<OblivionEscrow::InvalidSignature>()
            .is_some(),
        "{err}"
    );
    let err = contract
        .refund(other_key)
        .send()
        .await
        .expect_err("a refund before the deadline pays");
    assert!(
        err.as_decoded_error::<OblivionEscrow::RefundNotOpen>()
            .is_some(),
        "{err}"
    );
}

/// Sends settlement `s` of job `key` from `contract`'s wallet; asserts it
/// succeeded and returns its receipt.
async fn send_settlement(
    contract: &OblivionEscrow::OblivionEscrowInstance<&DynProvider>,
    key: B256,
    s: &SettlementView,
) -> alloy::rpc::types::TransactionReceipt {
    let receipt = contract
        .settle(
            key,
            s.root.parse().unwrap(),
            calls::u256(&s.total),
            s.model_hash.parse().unwrap(),
            s.issued_at,
            s.signature.parse::<Bytes>().unwrap(),
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    receipt
}

/// A paid inference job: the same escrow, settlement and claims as
/// training, each worker paid by the rows it answered (credited once each).
/// Its outputs are what the creator pays for: refused until the settlement
/// is seen on chain, as a paid training job's model is.
#[tokio::test(flavor = "multi_thread")]
async fn a_paid_inference_job_pays_its_workers_by_rows() {
    let anvil = Anvil::start().unwrap();
    let url: alloy::transports::http::reqwest::Url = anvil.url.parse().unwrap();
    let escrow_address = deploy_escrow(&url, 86_400).await;
    let signer = Key::parse(SIGNER).unwrap();
    let mut net = paid_network(&anvil.url, escrow_address, 2, &[]);
    net.add_paid_worker("paid-a", Some(WORKER_A)).unwrap();
    net.add_paid_worker("paid-b", Some(WORKER_B)).unwrap();
    let api = net.api();
    let creator = escrow::connect(url.clone(), &Key::parse(CREATOR_KEY).unwrap());

    // The model: a free iris job.
    let mut train = example("iris-mlp.json").unwrap();
    train["rounds"] = json!(3);
    let model_job = api.submit(&train).await.unwrap();
    let trained = wait_job(&api, &creator, model_job, "the model", |j| {
        j.status.is_finished()
    })
    .await;
    assert_eq!(trained.status, JobStatus::Completed, "{trained:?}");

    // Its held-out rows, run by the network for 1 ETH.
    let spec = json!({
        "task": "inference",
        "name": "iris, paid",
        "model": {"job": model_job.0},
        "inputs": {"held_out_by": model_job.0},
        "shards": 4,
        "reward": {"amount": ether(1).to_string(), "deadline_hours": 24},
    });
    let id = api.submit(&spec).await.unwrap();
    let job = api.job(id).await.unwrap();
    assert_eq!(job.status, JobStatus::Funding);
    let contract = escrow::at(escrow_address, &creator);
    fund(&contract, &job, signer.address_bytes()).await;
    let job = wait_job(&api, &creator, id, "the inference to end", |j| {
        j.status.is_finished()
    })
    .await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let rows = job.outputs.as_ref().expect("outputs").rows;
    let outputs = format!("/api/jobs/{}/outputs?format=csv", id.0);
    let (status, body) = api.get(&outputs).await.unwrap();
    assert_eq!(status, 403, "the outputs before the settlement: {body}");

    // Every row credited once, and the deposit split by those rows.
    let job = wait_job(&api, &creator, id, "the settlement", |j| {
        j.payment.as_ref().is_some_and(|p| p.settlement.is_some())
    })
    .await;
    let address = |name: &str| {
        let key = if name == "paid-a" { WORKER_A } else { WORKER_B };
        Key::parse(key).unwrap().address_bytes()
    };
    let work: Vec<(Address, u64)> = job
        .contributors
        .iter()
        .map(|c| (address(&c.name), c.samples))
        .collect();
    assert_eq!(
        work.iter().map(|w| w.1).sum::<u64>(),
        rows,
        "{:?}",
        job.contributors
    );
    let payment = job.payment.unwrap();
    let s = payment.settlement.unwrap();
    assert_eq!(s.total, calls::wei(ether(1)));
    let expected: Vec<(String, U256)> = oblivion_chain::shares(ether(1), &work)
        .into_iter()
        .map(|(a, amount)| (format!("{a:#x}"), amount))
        .collect();
    let mut signed: Vec<(String, U256)> = s
        .payouts
        .iter()
        .map(|p| (p.account.clone(), calls::u256(&p.amount)))
        .collect();
    signed.sort();
    assert_eq!(signed, expected, "the settlement pays by rows");

    // The creator settles; the outputs are then its own, every row.
    let key: B256 = payment.job_key.parse().unwrap();
    send_settlement(&contract, key, &s).await;
    wait_job(&api, &creator, id, "the settlement to be seen", |j| {
        j.payment
            .as_ref()
            .is_some_and(|p| p.state == PaymentState::Settled)
    })
    .await;
    let csv = String::from_utf8(api.get_bytes(&outputs).await.unwrap()).unwrap();
    let data_lines = csv
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count() as u64;
    assert_eq!(data_lines, rows + 1, "a header and every row:\n{csv}");

    // Each worker claims exactly what the settlement names.
    for worker in [WORKER_A, WORKER_B] {
        let (status, body) = net.api_as(worker).get("/api/rewards").await.unwrap();
        assert_eq!(status, 200, "{body}");
        let rewards: Vec<RewardView> = serde_json::from_value(body).unwrap();
        for r in rewards.iter().filter(|r| r.job_id == id) {
            assert_eq!(
                claim(&url, escrow_address, worker, key, r).await,
                calls::u256(&r.amount),
                "{worker}"
            );
        }
    }
    assert_eq!(
        contract.jobs(key).call().await.unwrap().claimed,
        ether(1),
        "the deposit, all claimed"
    );
}

/// Waits until the rewards list shows the claim (the coordinator read the
/// `Claimed` event).
async fn wait_claimed(api: &Api, provider: &DynProvider, mut body: serde_json::Value) -> bool {
    for _ in 0..60 {
        if body[0]["claimed"] == json!(true) {
            return true;
        }
        mine(provider, 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        body = api.get("/api/rewards").await.unwrap().1;
    }
    false
}

/// The coordinator reads the chain through a proxy that is cut for a while:
/// a deposit made meanwhile opens the job once the node is back. A deposit
/// undone by a reorganisation shallower than the confirmation depth never
/// opens its job; made again, it does.
#[tokio::test(flavor = "multi_thread")]
async fn node_outages_and_shallow_reorgs_are_survived() {
    let anvil = Anvil::start().unwrap();
    let url: alloy::transports::http::reqwest::Url = anvil.url.parse().unwrap();
    let upstream: std::net::SocketAddr = anvil.url.trim_start_matches("http://").parse().unwrap();
    let proxy = oblivion_e2e::proxy::Proxy::start(upstream).await.unwrap();
    let escrow_address = deploy_escrow(&url, 86_400).await;
    let signer = Key::parse(SIGNER).unwrap();
    let net = paid_network(&proxy.url, escrow_address, 3, &[]);
    let api = net.api();
    let creator = escrow::connect(url.clone(), &Key::parse(CREATOR_KEY).unwrap());
    let contract = escrow::at(escrow_address, &creator);

    // The node goes away; a deposit is made and confirmed meanwhile.
    let id = api.submit(&paid_spec(21)).await.unwrap();
    let job = api.job(id).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set_up(false);
    fund(&contract, &job, signer.address_bytes()).await;
    mine(&creator, 4).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(api.job(id).await.unwrap().status, JobStatus::Funding);
    // Back: the job opens.
    proxy.set_up(true);
    wait_job(
        &api,
        &creator,
        id,
        "the job to open after the outage",
        |j| j.status != JobStatus::Funding,
    )
    .await;

    // A deposit in a block that a reorganisation removes before it is
    // three deep never opens its job.
    let id = api.submit(&paid_spec(22)).await.unwrap();
    let job = api.job(id).await.unwrap();
    let snapshot: U256 = creator
        .raw_request("evm_snapshot".into(), ())
        .await
        .unwrap();
    fund(&contract, &job, signer.address_bytes()).await;
    mine(&creator, 1).await;
    let reverted: bool = creator
        .raw_request("evm_revert".into(), (snapshot,))
        .await
        .unwrap();
    assert!(reverted);
    mine(&creator, 5).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let still = api.job(id).await.unwrap();
    assert_eq!(still.status, JobStatus::Funding, "{still:?}");
    assert_eq!(still.payment.unwrap().state, PaymentState::AwaitingDeposit);
    // Made again on the surviving chain, it counts.
    fund(&contract, &job, signer.address_bytes()).await;
    wait_job(&api, &creator, id, "the job to open after the reorg", |j| {
        j.status != JobStatus::Funding
    })
    .await;
}

/// A paid job nobody funds does not wait for ever: it is cancelled after
/// `--funding-timeout-secs`, and what it stored is collected.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_never_funded_is_cancelled() {
    let anvil = Anvil::start().unwrap();
    let url: alloy::transports::http::reqwest::Url = anvil.url.parse().unwrap();
    let escrow_address = deploy_escrow(&url, 86_400).await;
    let extra = ["--funding-timeout-secs", "2", "--gc-interval-secs", "1"];
    let net = paid_network(&anvil.url, escrow_address, 2, &extra);
    let api = net.api();
    let id = api.submit(&paid_spec(31)).await.unwrap();
    assert_eq!(api.job(id).await.unwrap().status, JobStatus::Funding);
    let job = api
        .wait_finished(id, Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Cancelled);
    assert!(
        job.error
            .as_deref()
            .is_some_and(|e| e.contains("not funded")),
        "{job:?}"
    );
}

/// Claims reward `r` of job `key` from `worker`'s wallet; returns what its
/// balance gained, gas put back.
async fn claim(
    url: &alloy::transports::http::reqwest::Url,
    escrow_address: Address,
    worker: &str,
    key: B256,
    r: &RewardView,
) -> U256 {
    let key_w = Key::parse(worker).unwrap();
    let provider = escrow::connect(url.clone(), &key_w);
    let before = provider.get_balance(key_w.address_bytes()).await.unwrap();
    let receipt = escrow::at(escrow_address, &provider)
        .claim(
            key,
            U256::from(r.index),
            key_w.address_bytes(),
            calls::u256(&r.amount),
            r.proof.iter().map(|h| h.parse().unwrap()).collect(),
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    eprintln!("gas used by a claim: {}", receipt.gas_used);
    let gas = U256::from(receipt.gas_used) * U256::from(receipt.effective_gas_price);
    provider.get_balance(key_w.address_bytes()).await.unwrap() + gas - before
}

/// Moves the chain's clock `secs` forward and mines a block there.
async fn warp(provider: &DynProvider, secs: u64) {
    let _: serde_json::Value = provider
        .raw_request("evm_increaseTime".into(), (secs,))
        .await
        .unwrap();
    mine(provider, 1).await;
}

/// The attack on payment: a creator funds a job, lets the network train
/// it, takes the model and refunds, so the workers are never paid. Here the
/// model is not released before settlement, the refund does not open while
/// a signed settlement can still be sent, the coordinator sends it itself
/// once the creator's grace has passed, and the workers claim their shares.
/// A deposit whose deadline leaves too little time for the job is refused
/// (naming the deadline), and so is a spec that asks for too short a one.
#[tokio::test(flavor = "multi_thread")]
async fn a_creator_who_walks_away_cannot_take_the_model_or_the_deposit() {
    const GRACE: u64 = 3_600;
    let anvil = Anvil::start().unwrap();
    let url: alloy::transports::http::reqwest::Url = anvil.url.parse().unwrap();
    let escrow_address = deploy_escrow(&url, GRACE).await;
    let signer = Key::parse(SIGNER).unwrap();
    let mut net = paid_network(&anvil.url, escrow_address, 1, &[]);
    let api = net.api();
    let creator = escrow::connect(url.clone(), &Key::parse(CREATOR_KEY).unwrap());
    let contract = escrow::at(escrow_address, &creator);

    // 3 rounds need 3 × 300 s, a lease's hour and 1800 s to settle: 2 h.
    let mut short = paid_spec(21);
    short["reward"]["deadline_hours"] = json!(1);
    let (status, body) = api.post("/api/jobs", short.to_string()).await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "reward.deadline_hours", "{body}");

    // A deposit whose deadline is an hour away is refused, naming it.
    let refused = api.submit(&paid_spec(22)).await.unwrap();
    let refused_job = api.job(refused).await.unwrap();
    fund_until(
        &contract,
        &refused_job,
        signer.address_bytes(),
        unix_now() + 3600,
    )
    .await;
    let seen = wait_job(&api, &creator, refused, "the refusal", |j| {
        j.payment.as_ref().is_some_and(|p| p.refusal.is_some())
    })
    .await;
    assert_eq!(seen.status, JobStatus::Funding);
    let why = seen.payment.unwrap().refusal.unwrap();
    assert!(why.starts_with("deadline:"), "{why}");

    // A job funded for a day trains to the end; its settlement is signed.
    let id = api.submit(&paid_spec(23)).await.unwrap();
    net.add_paid_worker("paid-a", Some(WORKER_A)).unwrap();
    net.add_paid_worker("paid-b", Some(WORKER_B)).unwrap();
    let job = api.job(id).await.unwrap();
    fund(&contract, &job, signer.address_bytes()).await;
    let job = wait_job(&api, &creator, id, "the settlement", |j| {
        j.payment.as_ref().is_some_and(|p| p.settlement.is_some())
    })
    .await;
    assert_eq!(job.status, JobStatus::Completed);
    let payment = job.payment.unwrap();
    let key: B256 = payment.job_key.parse().unwrap();
    let s = payment.settlement.unwrap();
    assert_eq!(s.total, calls::wei(ether(1)));

    // The creator cannot download the model, in any format.
    for format in ["safetensors", "onnx", "burn"] {
        let (status, body) = api
            .get(&format!("/api/jobs/{id}/model?format={format}"))
            .await
            .unwrap();
        assert_eq!(status, 403, "{format}: {body}");
        assert!(body.to_string().contains("settlement"), "{body}");
    }
    // Nor through the model registry, nor sell it there first.
    let (_, models) = api.get("/api/models").await.unwrap();
    let model = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["job"] == serde_json::json!(id.0))
        .expect("the completed job's model is registered")["id"]
        .clone();
    let (status, body) = api
        .get(&format!("/api/models/{model}/weights?format=safetensors"))
        .await
        .unwrap();
    assert_eq!(status, 403, "the registry releases it early: {body}");
    assert!(body.to_string().contains("settlement"), "{body}");
    let listing = serde_json::json!({"price": "1000", "contributors_bps": 0});
    let (status, body) = api
        .post(&format!("/api/models/{model}/listing"), listing.to_string())
        .await
        .unwrap();
    assert_eq!(
        status, 403,
        "the model is listed before its settlement: {body}"
    );
    // Nor refund: not before the deadline, not just after it.
    let refund_refused = |err: alloy::contract::Error| {
        assert!(
            err.as_decoded_error::<OblivionEscrow::RefundNotOpen>()
                .is_some()
                || err
                    .as_decoded_error::<OblivionEscrow::JobNotFunded>()
                    .is_some(),
            "{err}"
        );
    };
    refund_refused(contract.refund(key).send().await.expect_err("refunded"));
    // A worker cannot send the settlement during the creator's grace.
    let worker = escrow::connect(url.clone(), &Key::parse(WORKER_A).unwrap());
    let err = escrow::at(escrow_address, &worker)
        .settle(
            key,
            s.root.parse().unwrap(),
            calls::u256(&s.total),
            s.model_hash.parse().unwrap(),
            s.issued_at,
            s.signature.parse().unwrap(),
        )
        .send()
        .await
        .expect_err("a worker settled during the creator's grace");
    assert!(
        err.as_decoded_error::<OblivionEscrow::SettlementInGrace>()
            .is_some(),
        "{err}"
    );

    // The creator walks away. Past the deadline the refund is still shut,
    // and the coordinator sends the settlement itself.
    let deadline = payment.deadline.unwrap() as u64;
    let chain_now = creator
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap()
        .header
        .timestamp;
    warp(&creator, deadline + 1 - chain_now).await;
    refund_refused(contract.refund(key).send().await.expect_err("refunded"));
    wait_job(
        &api,
        &creator,
        id,
        "the settlement sent by the coordinator",
        |j| {
            j.payment
                .as_ref()
                .is_some_and(|p| p.state == PaymentState::Settled)
        },
    )
    .await;

    // Each worker claims its share.
    for worker in [WORKER_A, WORKER_B] {
        let (status, body) = net.api_as(worker).get("/api/rewards").await.unwrap();
        assert_eq!(status, 200, "{body}");
        let rewards: Vec<RewardView> = serde_json::from_value(body).unwrap();
        let r = rewards.iter().find(|r| r.job_id == id).unwrap();
        assert_eq!(
            claim(&url, escrow_address, worker, key, r).await,
            calls::u256(&r.amount)
        );
    }

    // Now the model is the creator's; the deposit is spent, for good.
    let model = api
        .get_bytes(&format!("/api/jobs/{id}/model"))
        .await
        .unwrap();
    assert!(!model.is_empty());
    warp(&creator, 2 * GRACE + 1).await;
    let err = contract.refund(key).send().await.expect_err("refunded");
    assert!(
        err.as_decoded_error::<OblivionEscrow::JobNotFunded>()
            .is_some(),
        "{err}"
    );
}

/// The free rider of the review: it trains nothing, and for each lease
/// posts the change between the last two global models it has seen,
/// scaled, with fresh noise (before it has seen two, noise alone). Returns
/// how many it posted.
async fn free_ride(
    worker: ScriptedWorker,
    api: Api,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> u32 {
    let mut worker = worker;
    let mut globals: Vec<(BlobId, Params)> = Vec::new();
    let mut posted = 0u32;
    loop {
        let task = tokio::select! {
            _ = &mut stop => break,
            task = worker.next_lease() => task,
        };
        let Ok(task) = task else { continue };
        let Ok(bytes) = worker.fetch(&api, task.weights).await else {
            continue;
        };
        let (global, _) = Params::from_safetensors(&bytes).unwrap();
        if globals.last().is_none_or(|(sha, _)| *sha != task.weights) {
            globals.push((task.weights, global));
        }
        let change = match globals.len() {
            n if n >= 2 => globals[n - 1].1.minus(&globals[n - 2].1),
            _ => globals[0].1.zeros_like(),
        };
        let values = change.tensors.iter().map(|t| t.values.len()).sum::<usize>();
        let rms = (change.l2_norm() / (values as f64).sqrt()).max(1e-4) as f32;
        // Fresh noise each post: another stretch of the noise sequence.
        let offset = (posted as usize + 1) * 1_000_003;
        let fake = map_params(&change, |i, v| 1.1 * v + 0.05 * rms * gaussian(offset + i));
        let meta = Some([("train_loss".to_string(), "0.3".to_string())].into());
        if worker
            .post_update(&api, task.lease_id, fake.to_compressed(meta))
            .await
            .is_ok_and(|(status, _)| status == 200)
        {
            posted += 1;
        }
    }
    posted
}

/// The attack on credit: on a paid job with default settings, a signed-in
/// worker that posts the previous round's global change, scaled, with
/// fresh noise, instead of training, is credited nothing; the honest
/// workers share the whole deposit.
#[tokio::test(flavor = "multi_thread")]
async fn a_free_rider_posting_the_previous_change_is_paid_nothing() {
    const RIDER_KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
    let anvil = Anvil::start().unwrap();
    let url: alloy::transports::http::reqwest::Url = anvil.url.parse().unwrap();
    let escrow_address = deploy_escrow(&url, 86_400).await;
    let signer = Key::parse(SIGNER).unwrap();
    // Accounts are established after ten agreed results, however new.
    let mut net = paid_network(&anvil.url, escrow_address, 1, &["--established-secs", "0"]);
    let api = net.api();
    net.add_paid_worker("paid-a", Some(WORKER_A)).unwrap();
    net.add_paid_worker("paid-b", Some(WORKER_B)).unwrap();
    let rider_api = Api::new(&api.url, Some(RIDER_KEY));
    let cookie = rider_api.cookie().await.unwrap();
    let rider_account = rider_api.account().unwrap();
    // It claims to be the fastest (which decides nothing).
    let rider = ScriptedWorker::connect_claiming(
        &api.url,
        "rider",
        cookie.as_deref(),
        Some(&rider_account),
        1e9,
    )
    .await
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let riding = tokio::spawn(free_ride(rider, rider_api, stopped));

    // The example as shipped, paid, with nothing said about verification.
    let mut spec = paid_spec(31);
    spec["rounds"] = json!(6);
    assert!(spec.get("replication").is_none());
    let id = api.submit(&spec).await.unwrap();
    let creator = escrow::connect(url.clone(), &Key::parse(CREATOR_KEY).unwrap());
    let contract = escrow::at(escrow_address, &creator);
    let job = api.job(id).await.unwrap();
    fund(&contract, &job, signer.address_bytes()).await;
    let job = wait_job(&api, &creator, id, "the settlement", |j| {
        j.payment.as_ref().is_some_and(|p| p.settlement.is_some())
    })
    .await;
    let _ = stop.send(());
    let posted = riding.await.unwrap();
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert!(posted >= 3, "the rider posted only {posted} updates");

    let settlement = job.payment.unwrap().settlement.unwrap();
    let seconds: f64 = job.history.iter().map(|r| r.seconds).sum();
    eprintln!(
        "free rider: {posted} updates posted, payouts {:?}, {} rounds in {seconds:.1} s",
        settlement.payouts, job.rounds
    );
    assert!(
        settlement
            .payouts
            .iter()
            .all(|p| !p.account.eq_ignore_ascii_case(&rider_account)),
        "the free rider is paid: {:?}",
        settlement.payouts
    );
    let paid: U256 = settlement
        .payouts
        .iter()
        .map(|p| calls::u256(&p.amount))
        .sum();
    assert_eq!(paid, ether(1), "the honest workers share the deposit");
    let accuracy = job.history.last().map_or(0.0, |r| r.accuracy);
    assert!(accuracy > 0.8, "{:?}", job.history);
}
