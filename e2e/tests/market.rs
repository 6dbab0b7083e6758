//! The model market end to end on anvil, with the real escrow: two paid
//! workers train a private model; its owner asks the coordinator to sign a
//! listing and lists it from its own wallet; a second account buys it and
//! may then download it and run it, while an account that did not buy is
//! refused; each contributor is paid its share of the sale, by verified
//! work, and the owner withdraws the rest, exact to the wei. Listings the
//! coordinator would not sign (someone else's model, a part over the cap
//! or under the floor, no price) are refused, as are a public job reading
//! the bought model and a copy of it registered again.

use std::time::{Duration, Instant};

use alloy::primitives::{B256, U256};
use alloy::providers::{DynProvider, Provider};
use oblivion_chain::escrow::{self, OblivionEscrow};
use oblivion_chain::listing::share_owed;
use oblivion_chain::{Key, calls};
use oblivion_e2e::anvil::{Anvil, chain_flags, deploy_escrow, mine, mined};
use oblivion_e2e::{Api, CREATOR_KEY, Network, OTHER_KEY, example};
use oblivion_protocol::market::{ListingState, ListingView, MarketAccount};
use oblivion_protocol::{JobId, ModelId};
use serde_json::json;

/// anvil's development accounts #2 and #3 (the workers, paid to their
/// accounts), #4 (relays the contributors' claims, so that their balances
/// move by exactly their shares) and #5 (signed in, buys nothing).
const WORKER_A: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";
const WORKER_B: &str = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6";
const RELAYER: &str = "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a";
const STRANGER: &str = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba";

fn milli_ether(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(15))
}

/// Polls `check` until it returns something, mining a block each time so
/// that chain events gather their confirmation.
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    provider: &DynProvider,
    what: &str,
    check: impl Fn() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(t) = check().await {
            return t;
        }
        assert!(Instant::now() < deadline, "waited too long for {what}");
        mine(provider, 1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn market_account(api: &Api) -> MarketAccount {
    let (status, body) = api.get("/api/market/account").await.unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

/// The model job `job` made, as its owner lists them.
async fn model_of(api: &Api, job: JobId) -> ModelId {
    let (status, body) = api.get("/api/models").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let models = body.as_array().unwrap();
    let model = models
        .iter()
        .find(|m| m["job"] == json!(job.0))
        .unwrap_or_else(|| panic!("no model of job {job}: {body}"));
    ModelId(model["id"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listed_model_is_bought_read_and_its_sale_paid_to_owner_and_contributors() {
    let anvil = Anvil::start().unwrap();
    let escrow_address = deploy_escrow(&anvil.url, 86_400).await.unwrap();
    let flags = chain_flags(&anvil.url, escrow_address, 1);
    let mut net = Network::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    net.add_paid_worker("paid-a", Some(WORKER_A)).unwrap();
    net.add_paid_worker("paid-b", Some(WORKER_B)).unwrap();
    let url: alloy::transports::http::reqwest::Url = anvil.url.parse().unwrap();
    let connect = |key: &str| escrow::connect(url.clone(), &Key::parse(key).unwrap());
    let (as_owner, as_buyer, as_relayer) =
        (connect(CREATOR_KEY), connect(OTHER_KEY), connect(RELAYER));

    // A private model, trained by the two paid workers.
    let owner = net.api();
    let buyer = net.api_as(OTHER_KEY);
    let stranger = net.api_as(STRANGER);
    let mut spec = example("iris-mlp.json").unwrap();
    spec["rounds"] = json!(3);
    spec["visibility"] = json!("private");
    spec["trainers"] =
        json!([WORKER_A, WORKER_B].map(|k| Key::parse(k).unwrap().address().to_lowercase()));
    let job = owner.submit(&spec).await.unwrap();
    let done = owner
        .wait_finished(job, Duration::from_secs(300), |_| {})
        .await
        .unwrap();
    assert_eq!(done.status.as_str(), "completed", "{done:?}");
    let model = model_of(&owner, job).await;
    let path = format!("/api/models/{model}");
    let (status, _) = stranger.get(&path).await.unwrap();
    assert_eq!(status, 403, "a private model is hidden before it is listed");

    // Terms the coordinator refuses to sign.
    let terms =
        |price: U256, bps: u16| json!({"price": price.to_string(), "contributors_bps": bps});
    let listing_path = format!("{path}/listing");
    let (status, body) = stranger
        .post(&listing_path, terms(milli_ether(1000), 3000).to_string())
        .await
        .unwrap();
    assert_eq!(status, 403, "someone else's model: {body}");
    let (status, body) = owner
        .post(&listing_path, terms(milli_ether(1000), 6000).to_string())
        .await
        .unwrap();
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "contributors_bps", "{body}");
    let (status, body) = owner
        .post(&listing_path, terms(U256::ZERO, 3000).to_string())
        .await
        .unwrap();
    assert_eq!(status, 422, "{body}");
    // The contributors' part has a floor as well as a cap.
    let (status, body) = owner
        .post(&listing_path, terms(milli_ether(1000), 500).to_string())
        .await
        .unwrap();
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "contributors_bps", "{body}");

    // The owner's terms: 1 ETH, 30 % to the contributors.
    let price = milli_ether(1000);
    let (status, body) = owner
        .post(&listing_path, terms(price, 3000).to_string())
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let offer: ListingView = serde_json::from_value(body).unwrap();
    assert_eq!(offer.state, ListingState::Offered);
    assert_eq!(offer.shares.len(), 2, "both workers share: {offer:?}");
    assert_eq!(
        offer.shares.iter().map(|s| s.weight).sum::<u64>(),
        1_000_000
    );
    let escrow_as_owner = escrow::at(escrow_address, &as_owner);
    // Listed from the command line, as the owner.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(oblivion_e2e::bin("oblivion-coordinator").unwrap())
            .args(args)
            .args(["--coordinator", &net.url])
            .env("OBLIVION_KEY", CREATOR_KEY)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{args:?}: {err}");
        text
    };
    let model_arg = model.0.to_string();
    let said = cli(&[
        "model",
        "list-for-sale",
        &model_arg,
        "--price",
        "1",
        "--contributors-percent",
        "30",
        "--rpc-url",
        &anvil.url,
    ]);
    assert!(said.contains(&offer.key), "{said}");
    let key: B256 = offer.key.parse().unwrap();

    // On sale: everyone sees the card, nobody else reads the weights.
    let seen = until(&as_owner, "the listing to be seen", || async {
        let (status, body) = stranger.get(&path).await.unwrap();
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(seen["readable"], false, "{seen}");
    assert_eq!(seen["listing"]["state"], "listed", "{seen}");
    assert_eq!(seen["listing"]["listed_price"], price.to_string(), "{seen}");
    let on_sale = cli(&["model", "list", "--for-sale"]);
    assert!(
        on_sale
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("{model} ")) && l.contains(" 1 ")),
        "{on_sale}"
    );
    let weights = format!("{path}/weights?format=safetensors");
    for api in [&buyer, &stranger] {
        let (status, body) = api.get(&weights).await.unwrap();
        assert_eq!(status, 403, "{body}");
    }

    // The buyer pays exactly the price: a wrong amount reverts.
    let escrow_as_buyer = escrow::at(escrow_address, &as_buyer);
    let err = escrow_as_buyer
        .purchase(key)
        .value(price - U256::from(1))
        .send()
        .await
        .expect_err("an underpayment buys");
    assert!(
        err.as_decoded_error::<OblivionEscrow::WrongPayment>()
            .is_some(),
        "{err}"
    );
    let receipt = mined(escrow_as_buyer.purchase(key).value(price))
        .await
        .unwrap();
    let tx = format!("{:#x}", receipt.transaction_hash);

    // The buyer may now download it, the same bytes as its owner's.
    until(&as_owner, "the purchase to be seen", || async {
        let (status, _) = buyer.get(&weights).await.unwrap();
        (status == 200).then_some(())
    })
    .await;
    assert_eq!(
        buyer.get_bytes(&weights).await.unwrap(),
        owner.get_bytes(&weights).await.unwrap()
    );
    let library = market_account(&buyer).await;
    assert_eq!(library.purchases.len(), 1, "{library:?}");
    assert_eq!(library.purchases[0].model_id, model);
    assert_eq!(library.purchases[0].tx, tx);
    assert_eq!(library.purchases[0].price, calls::wei(price));

    // ... and run it, in a private job: a public one would hand the weights
    // to everyone. The stranger may do neither.
    let mut inference = json!({"task": "inference", "name": "bought", "model": {"model": model.0},
        "inputs": {"builtin": "iris"}, "shards": 2});
    let (status, body) = buyer
        .post("/api/jobs", inference.to_string())
        .await
        .unwrap();
    assert_eq!(
        status, 422,
        "a public job on a bought private model: {body}"
    );
    assert_eq!(body["field"], "visibility", "{body}");
    inference["visibility"] = json!("private");
    let (status, body) = buyer
        .post("/api/jobs", inference.to_string())
        .await
        .unwrap();
    assert_eq!(status, 201, "the buyer runs the model: {body}");
    // Nor may the buyer register a copy of it, to list it as its own.
    let copy = buyer.get_bytes(&weights).await.unwrap();
    let (status, body) = buyer
        .post("/api/models?name=mine&visibility=private", copy)
        .await
        .unwrap();
    assert_eq!(status, 409, "a copy registered again: {body}");
    let (status, body) = stranger
        .post("/api/jobs", inference.to_string())
        .await
        .unwrap();
    assert_eq!(status, 403, "{body}");
    let (status, body) = stranger.get(&weights).await.unwrap();
    assert_eq!(status, 403, "{body}");

    // Each contributor's share, claimed for it by a relayer: its balance
    // moves by exactly its weight of the 0.3 ETH pool.
    let pool = price * U256::from(3000) / U256::from(10_000);
    let escrow_as_relayer = escrow::at(escrow_address, &as_relayer);
    let mut paid_to_contributors = U256::ZERO;
    for worker in [WORKER_A, WORKER_B] {
        let contributor = net.api_as(worker);
        let account = Key::parse(worker).unwrap().address_bytes();
        let shares = market_account(&contributor).await.shares;
        assert_eq!(shares.len(), 1, "{shares:?}");
        let share = &shares[0];
        let owed = share_owed(pool, share.leaf.weight);
        assert_eq!(calls::u256(&share.claimable), owed);
        let before = as_owner.get_balance(account).await.unwrap();
        let proof: Vec<B256> = share.proof.iter().map(|p| p.parse().unwrap()).collect();
        mined(escrow_as_relayer.claimShare(
            key,
            U256::from(share.leaf.index),
            account,
            U256::from(share.leaf.weight),
            proof,
        ))
        .await
        .unwrap();
        let after = as_owner.get_balance(account).await.unwrap();
        assert_eq!(after - before, owed, "paid exactly its share");
        paid_to_contributors += owed;
        let seen = until(&as_owner, "the claim to be seen", || async {
            let s = market_account(&contributor).await.shares.remove(0);
            s.claimable.is_zero().then_some(s)
        })
        .await;
        assert_eq!(calls::u256(&seen.paid), owed);
    }

    // The owner withdraws the rest: 0.7 ETH, less its gas.
    let proceeds = calls::u256(&market_account(&owner).await.proceeds);
    assert_eq!(proceeds, price - pool);
    let account = Key::parse(CREATOR_KEY).unwrap().address_bytes();
    let before = as_owner.get_balance(account).await.unwrap();
    let receipt = mined(escrow_as_owner.withdraw()).await.unwrap();
    let gas = U256::from(receipt.gas_used) * U256::from(receipt.effective_gas_price);
    let after = as_owner.get_balance(account).await.unwrap();
    assert_eq!(
        after + gas - before,
        price - pool,
        "the owner's part, exactly"
    );
    until(&as_owner, "the withdrawal to be seen", || async {
        market_account(&owner)
            .await
            .proceeds
            .is_zero()
            .then_some(())
    })
    .await;

    // A paid job that runs the model, never funded, does not lock the
    // model's weights away as if they were its own unpaid work.
    let mut paid_run = inference.clone();
    paid_run["reward"] = json!({"amount": "1000000", "deadline_hours": 24});
    let (status, body) = owner.post("/api/jobs", paid_run.to_string()).await.unwrap();
    assert_eq!(status, 201, "{body}");

    // Verify: the buyer fetches the stored weights, whose keccak256 is the
    // hash the listing sold on chain; the stranger may not fetch them.
    let card = buyer.get(&path).await.unwrap().1;
    let blob = format!(
        "/api/artifacts/{}",
        card["weights_sha256"].as_str().unwrap()
    );
    let stored = buyer.get_bytes(&blob).await.unwrap();
    let on_chain = escrow_as_owner.listings(key).call().await.unwrap();
    assert_eq!(
        oblivion_chain::verify::weights_hash(&stored),
        format!("{:#x}", on_chain.modelHash),
        "the weights are the ones sold"
    );
    assert_eq!(stranger.get(&blob).await.unwrap().0, 403);

    // Profiles: each account's escrow transactions, with their hashes.
    let history = |address: String| {
        let api = owner.clone();
        async move {
            let (status, body) = api.get(&format!("/api/accounts/{address}")).await.unwrap();
            assert_eq!(status, 200, "{body}");
            body["history"].as_array().unwrap().clone()
        }
    };
    let address = |k: &str| Key::parse(k).unwrap().address().to_lowercase();
    let bought = history(address(OTHER_KEY)).await;
    assert!(
        bought
            .iter()
            .any(|e| e["kind"] == "bought" && e["tx"] == tx.as_str()),
        "{bought:?}"
    );
    // The watcher records the withdrawal once it is confirmed.
    let sold = until(
        &as_owner,
        "the withdrawal in the owner's history",
        || async {
            let events = history(address(CREATOR_KEY)).await;
            events
                .iter()
                .any(|e| e["kind"] == "withdrawal")
                .then_some(events)
        },
    )
    .await;
    assert!(
        sold.iter()
            .any(|e| e["kind"] == "sold" && e["tx"] == tx.as_str()),
        "{sold:?}"
    );
    assert!(sold.iter().any(|e| e["kind"] == "withdrawal"), "{sold:?}");
    let shared = history(address(WORKER_A)).await;
    assert!(shared.iter().any(|e| e["kind"] == "share"), "{shared:?}");

    // Everything the sale paid went to someone; what rounding left is
    // under a wei per share.
    let left = as_owner.get_balance(escrow_address).await.unwrap();
    assert_eq!(paid_to_contributors + (price - pool) + left, price);
    assert!(left < U256::from(2), "{left} wei left");
}
