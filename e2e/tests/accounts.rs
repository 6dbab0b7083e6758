//! Accounts: Sign-In with Ethereum refuses what it must, jobs and uploads
//! have owners, private jobs are read by their owner alone, and a worker's
//! payout address is proven by signing in.

use oblivion_chain::{Key, sign_in};
use oblivion_e2e::{Api, CREATOR_KEY, Database, Network, OTHER_KEY, ScriptedWorker, example, root};
use oblivion_protocol::JobId;
use oblivion_protocol::auth::{SignIn, SignInChallenge};
use serde_json::json;

oblivion_e2e::on_both_databases!(
    sign_in_refuses_forged_replayed_expired_and_foreign_messages,
    owners_alone_cancel_and_read_private_jobs,
);

async fn challenge(api: &Api) -> SignInChallenge {
    let (status, body) = api.post("/api/auth/nonce", "").await.unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

async fn login(api: &Api, answer: &SignIn) -> (u16, String) {
    let (status, body) = api
        .post("/api/auth/login", serde_json::to_string(answer).unwrap())
        .await
        .unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

async fn sign_in_refuses_forged_replayed_expired_and_foreign_messages(database: Database) {
    let net = Network::start_on(database, &["--sign-in-secs", "2"]).unwrap();
    let api = net.anonymous();
    let creator = Key::parse(CREATOR_KEY).unwrap();
    let other = Key::parse(OTHER_KEY).unwrap();

    // Not signed in: no session, and no job may be created.
    assert_eq!(api.get("/api/auth/session").await.unwrap().0, 401);
    let (status, body) = api
        .post("/api/jobs", example("iris-mlp.json").unwrap().to_string())
        .await
        .unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("sign in"),
        "{body}"
    );

    // A forged signature: the message names the creator, another key signed.
    let c = challenge(&api).await;
    let message = c.message(&creator.address(), 1);
    let forged = SignIn {
        signature: other.sign_message(&message).unwrap(),
        message,
    };
    let (status, error) = login(&api, &forged).await;
    assert_eq!(status, 401);
    assert!(error.contains("not made by"), "{error}");

    // Another domain.
    let mut c = challenge(&api).await;
    c.domain = "evil.example".into();
    c.uri = "https://evil.example".into();
    let (status, error) = login(&api, &sign_in(&c, &creator, 1).unwrap()).await;
    assert_eq!(status, 401);
    assert!(error.contains("evil.example"), "{error}");

    // A good one works once; replayed, its nonce is spent.
    let good = sign_in(&challenge(&api).await, &creator, 1).unwrap();
    assert_eq!(login(&api, &good).await.0, 200);
    let (status, body) = api.get("/api/auth/session").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["address"], creator.address().to_lowercase());
    let replay = Api::new(&net.url, None);
    let (status, error) = login(&replay, &good).await;
    assert_eq!(status, 401);
    assert!(error.contains("already used"), "{error}");
    assert_eq!(replay.get("/api/auth/session").await.unwrap().0, 401);

    // Expired: signed after its two seconds ran out.
    let c = challenge(&replay).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (status, error) = login(&replay, &sign_in(&c, &creator, 1).unwrap()).await;
    assert_eq!(status, 401);
    assert!(error.contains("expired"), "{error}");

    // Signing out ends the session.
    assert_eq!(api.post("/api/auth/logout", "").await.unwrap().0, 204);
    assert_eq!(api.get("/api/auth/session").await.unwrap().0, 401);

    // A cross-site request with the session is refused.
    let signed = net.api();
    signed.get("/api/auth/session").await.unwrap();
    let r = signed
        .http
        .post(format!("{}/api/jobs/1/cancel", net.url))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

async fn owners_alone_cancel_and_read_private_jobs(database: Database) {
    let net = Network::start_on(database, &[]).unwrap();
    let owner = net.api();
    let other = net.api_as(OTHER_KEY);
    let anonymous = net.anonymous();

    let mut spec = example("iris-mlp.json").unwrap();
    spec["visibility"] = json!("private");
    // Another seed: content-addressed shards and weights equal to a public
    // job's are public anyway.
    spec["seed"] = json!(4242);
    let private = owner.submit(&spec).await.unwrap();
    let public = owner
        .submit(&example("iris-mlp.json").unwrap())
        .await
        .unwrap();

    // The owner sees both, with itself as owner; others see the public one.
    let mine: Vec<JobId> = ids(&owner).await;
    assert!(mine.contains(&private) && mine.contains(&public));
    let job = owner.job(private).await.unwrap();
    assert_eq!(job.owner, owner.account());
    for api in [&other, &anonymous] {
        assert_eq!(ids(api).await, vec![public]);
        let (status, body) = api.get(&format!("/api/jobs/{private}")).await.unwrap();
        assert_eq!(status, 403, "{body}");
        assert!(body["error"].as_str().unwrap().contains("private"));
        let (status, _) = api
            .get(&format!("/api/jobs/{private}/model?format=safetensors"))
            .await
            .unwrap();
        assert_eq!(status, 403);
        // Public jobs stay readable without signing in: status and model.
        assert_eq!(api.job(public).await.unwrap().id, public);
        api.get_bytes(&format!("/api/jobs/{public}/model?format=onnx"))
            .await
            .unwrap();
    }
    owner
        .get_bytes(&format!("/api/jobs/{private}/model?format=safetensors"))
        .await
        .unwrap();

    // An anonymous worker is leased the public job's work, never the
    // private job's: it takes what it is given, returns it, and asks again.
    let mut stranger = ScriptedWorker::connect(&net.url, "anonymous")
        .await
        .unwrap();
    for _ in 0..6 {
        let lease = stranger.next_lease().await.unwrap();
        assert_eq!(lease.job_id, public, "a private job leased to a stranger");
        stranger.return_lease(lease.lease_id).await.unwrap();
    }
    drop(stranger);

    // The private job's data and weights: the owner and the worker leasing
    // the shard (signed in as the owner), nobody else.
    let cookie = owner.cookie().await.unwrap().unwrap();
    let mut worker = ScriptedWorker::connect_as(&net.url, "w", Some(&cookie), None)
        .await
        .unwrap();
    let lease = loop {
        let lease = worker.next_lease().await.unwrap();
        if lease.job_id == private {
            break lease;
        }
    };
    let shard = lease.data_blob().expect("a lease on a shard");
    for blob in [shard, lease.weights] {
        let path = format!("/api/artifacts/{blob}");
        assert_eq!(anonymous.get(&path).await.unwrap().0, 403);
        assert_eq!(other.get(&path).await.unwrap().0, 403);
        owner.get_bytes(&path).await.unwrap();
        let r = anonymous
            .http
            .get(format!("{}{path}", net.url))
            .header(oblivion_protocol::wire::WORKER_TOKEN_HEADER, &worker.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["cache-control"]
                .to_str()
                .unwrap()
                .starts_with("private")
        );
    }

    // Cancel: 401 anonymous, 403 another account, 200 the owner.
    let path = format!("/api/jobs/{public}/cancel");
    assert_eq!(anonymous.post(&path, "").await.unwrap().0, 401);
    let (status, body) = other.post(&path, "").await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(!owner.job(public).await.unwrap().status.is_finished());
    let (status, body) = owner.post(&path, "").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled");

    // Uploads have owners: another account may not train on them.
    let iris = std::fs::read(root().join("../shared/datasets/tabular/iris.csv")).unwrap();
    assert_eq!(
        anonymous
            .post("/api/datasets", iris.clone())
            .await
            .unwrap()
            .0,
        401
    );
    let (status, body) = owner.post("/api/datasets", iris).await.unwrap();
    assert_eq!(status, 201, "{body}");
    let sha = body["sha256"].as_str().unwrap().to_string();
    assert_eq!(
        other.get(&format!("/api/artifacts/{sha}")).await.unwrap().0,
        403
    );
    let mut spec = example("iris-mlp.json").unwrap();
    spec["dataset"] = json!({ "csv": sha });
    let (status, body) = other.post("/api/jobs", spec.to_string()).await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["field"], "dataset");
    owner.submit(&spec).await.unwrap();
}

async fn ids(api: &Api) -> Vec<JobId> {
    let (status, body) = api.get("/api/jobs").await.unwrap();
    assert_eq!(status, 200);
    body.as_array()
        .unwrap()
        .iter()
        .map(|j| JobId(j["id"].as_u64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payout_address_is_proven_by_signing_in() {
    let net = Network::start(&[]).unwrap();
    let worker_key = Key::parse(OTHER_KEY).unwrap();
    let address = worker_key.address();

    // Claimed without a session: refused.
    let err = ScriptedWorker::connect_as(&net.url, "claims", None, Some(&address))
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("not proven"), "{err:#}");

    // Claimed with another account's session: refused.
    let cookie = net.api().cookie().await.unwrap().unwrap();
    let err = ScriptedWorker::connect_as(&net.url, "claims", Some(&cookie), Some(&address))
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("not proven"), "{err:#}");

    // Signed in as the address: accepted and recorded.
    let cookie = net.api_as(OTHER_KEY).cookie().await.unwrap().unwrap();
    let worker = ScriptedWorker::connect_as(&net.url, "paid", Some(&cookie), Some(&address))
        .await
        .unwrap();
    let view = net.anonymous().worker(worker.id).await.unwrap();
    assert_eq!(view.payout_address, Some(address.to_lowercase()));

    // Anonymous workers contribute unpaid.
    let anon = ScriptedWorker::connect(&net.url, "unpaid").await.unwrap();
    assert_eq!(
        net.anonymous()
            .worker(anon.id)
            .await
            .unwrap()
            .payout_address,
        None
    );
}

/// The phishing attack on sign-in: a site of the attacker's asks this
/// coordinator for a challenge under its own `Host`, has the victim sign
/// it there (the wallet sees nothing wrong: the message names the site it
/// is on), and posts the signature back under the same `Host`. The session
/// would be the victim's. Refused at both steps; and a page on another
/// origin cannot open a worker socket with a visitor's cookie.
#[tokio::test(flavor = "multi_thread")]
async fn a_phishing_site_cannot_sign_a_victim_in_through_its_host_header() {
    let net = Network::start(&[]).unwrap();
    let victim = Key::parse(CREATOR_KEY).unwrap();
    let attacker = reqwest::Client::new();
    let evil = "evil.example";

    // The challenge, asked for under the phishing site's Host.
    let r = attacker
        .post(format!("{}/api/auth/nonce", net.url))
        .header("host", evil)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("evil.example"),
        "{body}"
    );

    // A real challenge rewritten for the phishing site and signed there by
    // the victim, posted under its Host: refused, and no cookie is set.
    let mut c = challenge(&net.anonymous()).await;
    c.domain = evil.into();
    c.uri = format!("http://{evil}");
    let answer = sign_in(&c, &victim, 1).unwrap();
    let r = attacker
        .post(format!("{}/api/auth/login", net.url))
        .header("host", evil)
        .json(&answer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    assert!(r.headers().get("set-cookie").is_none());
    // Nor under the coordinator's own Host: the message names another site.
    let (status, error) = login(&net.anonymous(), &answer).await;
    assert_eq!(status, 401);
    assert!(error.contains("evil.example"), "{error}");

    // Loopback names work (the user may type either).
    let local = net.url.replace("127.0.0.1", "localhost");
    let r = attacker
        .post(format!("{local}/api/auth/nonce"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The worker socket: a page on another origin, with the victim's cookie.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let cookie = net.api().cookie().await.unwrap().unwrap();
    let ws = format!("{}/api/workers/connect", net.url.replacen("http", "ws", 1));
    let mut request = ws.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    request
        .headers_mut()
        .insert("origin", "http://sibling.localhost:8080".parse().unwrap());
    let err = tokio_tungstenite::connect_async(request).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    // From its own origin it connects.
    let mut request = ws.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", net.url.parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap();
}
