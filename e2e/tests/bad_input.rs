//! Bad input gets a clear 4xx, and does no harm to running jobs.

use oblivion_e2e::{Database, Network, ScriptedWorker, example, honest_update, uniform_update};
use oblivion_protocol::LeaseId;
use serde_json::json;

oblivion_e2e::on_both_databases!(
    invalid_specs_are_refused_naming_the_field,
    uploads_are_checked_and_limited,
    bad_updates_are_refused_and_the_job_still_completes,
    a_restarted_coordinator_resumes_its_jobs,
    leases_without_heartbeats_expire_and_are_reissued,
);

fn iris(rounds: u32) -> serde_json::Value {
    let mut spec = example("iris-mlp.json").unwrap();
    spec["rounds"] = rounds.into();
    spec
}

async fn invalid_specs_are_refused_naming_the_field(database: Database) {
    let net = Network::start_on(database, &[]).unwrap();
    let api = net.api();
    let (status, body) = api.post("/api/jobs", "{\"name\": ").await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(!body["error"].as_str().unwrap().is_empty());

    let cases = [
        ("model", json!({"kind": "transformer"}), "unknown variant"),
        ("dataset", json!({"builtin": "cifar"}), "unknown dataset"),
        ("rounds", json!(0), "between 1 and"),
        ("rounds", json!(-2), "invalid value"),
        (
            "dataset",
            json!({"csv": "ab".repeat(32)}),
            "no uploaded file",
        ),
        (
            "reward",
            json!({"amount": "12.5", "deadline_hours": 24}),
            "whole number of wei",
        ),
        (
            "reward",
            json!({"amount": "1000", "deadline_hours": 0}),
            "between 1 and",
        ),
        (
            "reward",
            json!({"amount": "1000", "deadline_hours": 24}),
            "settles on no chain",
        ),
    ];
    for (key, value, says) in cases {
        let mut spec = iris(2);
        spec[key] = value.clone();
        let (status, body) = api.post("/api/jobs", spec.to_string()).await.unwrap();
        assert_eq!(status, 422, "{key}={value}: {body}");
        assert!(body["field"].as_str().unwrap().starts_with(key), "{body}");
        assert!(body["error"].as_str().unwrap().contains(says), "{body}");
    }
    let (status, _) = api.get("/api/jobs/999").await.unwrap();
    assert_eq!(status, 404);
    let id = api.submit(&iris(1)).await.unwrap();
    let (status, body) = api
        .get(&format!("/api/jobs/{id}/model?format=pickle"))
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("onnx, safetensors or burn")
    );
    let (status, _) = api.post("/api/jobs", "x".repeat(300 * 1024)).await.unwrap();
    assert_eq!(status, 413);
}

async fn uploads_are_checked_and_limited(database: Database) {
    let net = Network::start_on(
        database,
        &["--max-upload-bytes", "8192", "--max-update-bytes", "4096"],
    )
    .unwrap();
    let api = net.api();
    let (status, body) = api.post("/api/datasets", vec![b'1'; 9000]).await.unwrap();
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("8192"), "{body}");
    let (status, body) = api.post("/api/datasets", "just some words").await.unwrap();
    assert_eq!(status, 422, "{body}");
    let iris = std::fs::read(oblivion_e2e::root().join("datasets/tabular/iris.csv")).unwrap();
    let (status, body) = api.post("/api/datasets", iris).await.unwrap();
    assert_eq!(
        (status, body["kind"].as_str(), body["rows"].as_u64()),
        (201, Some("csv"), Some(150))
    );
    // A job on the uploaded file runs like one on a built-in.
    let mut spec = iris_spec_for(body["sha256"].as_str().unwrap());
    spec["rounds"] = 1.into();
    let id = api.submit(&spec).await.unwrap();
    let mut worker = ScriptedWorker::connect(&api.url, "scripted").await.unwrap();
    let lease = worker.next_lease().await.unwrap();
    assert_eq!(lease.job_id, id);
    let (status, body) = worker
        .post_update(&api, lease.lease_id, vec![0; 5000])
        .await
        .unwrap();
    assert_eq!(status, 413, "{body}");
}

fn iris_spec_for(sha: &str) -> serde_json::Value {
    let mut spec = iris(1);
    spec["dataset"] = json!({"csv": sha});
    spec
}

async fn bad_updates_are_refused_and_the_job_still_completes(database: Database) {
    // One worker posts every kind of bad update, then finishes the job:
    // this is about refusal, so its record is not allowed to quarantine it.
    let net = Network::start_on(database, &["--quarantine-after", "100"]).unwrap();
    let api = net.api();
    let id = api.submit(&iris(3)).await.unwrap();
    let mut worker = ScriptedWorker::connect(&api.url, "scripted").await.unwrap();
    let mut lease = worker.next_lease().await.unwrap();

    let (status, body) = worker
        .post_update(&api, LeaseId(9999), uniform_update(&lease, 0.0))
        .await
        .unwrap();
    assert_eq!(status, 409, "a lease not held: {body}");
    let r = api
        .http
        .post(format!("{}/api/leases/{}/update", api.url, lease.lease_id))
        .header("x-oblivion-worker-token", "forged")
        .body(uniform_update(&lease, 0.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "a forged token");

    let mut wrong_shape = lease.clone();
    wrong_shape.input_shape = vec![5];
    let bad_updates = [
        (uniform_update(&lease, f32::NAN), "non-finite"),
        (uniform_update(&wrong_shape, 0.0), "wrong shape"),
        (uniform_update(&lease, 1e6), "norm"),
        (b"not an update".to_vec(), "update rejected"),
    ];
    for (body, says) in bad_updates {
        let (status, reply) = worker
            .post_update(&api, lease.lease_id, body)
            .await
            .unwrap();
        assert_eq!(status, 422, "{says}: {reply}");
        assert!(reply["error"].as_str().unwrap().contains(says), "{reply}");
        // The lease is over; the same update is now for a lease not held.
        let (status, _) = worker
            .post_update(&api, lease.lease_id, honest_update(&lease))
            .await
            .unwrap();
        assert_eq!(status, 409);
        // The shard is issued again (to the only worker there is).
        lease = worker.next_lease().await.unwrap();
    }
    // Good updates finish the job (3 rounds of 2 shards): nothing above harmed it.
    for accepted in 1..=6 {
        let (status, body) = worker
            .post_update(&api, lease.lease_id, honest_update(&lease))
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        if accepted < 6 {
            lease = worker.next_lease().await.unwrap();
        }
    }
    let job = api
        .wait_finished(id, std::time::Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    assert_eq!(job.status.as_str(), "completed");
    assert_eq!(job.history.len(), 3);
    let me = api.worker(worker.id).await.unwrap();
    assert_eq!((me.accepted, me.rejected), (6, 4));
}

async fn a_restarted_coordinator_resumes_its_jobs(database: Database) {
    let mut net = Network::start_on(database, &[]).unwrap();
    let api = net.api();
    let id = api.submit(&iris(3)).await.unwrap();
    let mut worker = ScriptedWorker::connect(&api.url, "before").await.unwrap();
    // Round 1 in full, and one shard of round 2.
    for _ in 0..3 {
        let lease = worker.next_lease().await.unwrap();
        let (status, body) = worker
            .post_update(&api, lease.lease_id, honest_update(&lease))
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let before = api.job(id).await.unwrap();
    assert_eq!((before.round, before.history.len()), (2, 1));
    drop(worker);
    net.restart_coordinator().unwrap();
    let api = net.api();
    let after = api.job(id).await.unwrap();
    assert_eq!(after.status.as_str(), "running");
    assert_eq!((after.round, after.history.len()), (2, 1));
    let states: Vec<&str> = after.shards.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(
        states.iter().filter(|s| **s == "done").count(),
        1,
        "{states:?}"
    );
    let mut worker = ScriptedWorker::connect(&api.url, "after").await.unwrap();
    for _ in 0..3 {
        let lease = worker.next_lease().await.unwrap();
        assert!(lease.round >= 2, "no finished work is redone");
        let (status, body) = worker
            .post_update(&api, lease.lease_id, honest_update(&lease))
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let job = api
        .wait_finished(id, std::time::Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    assert_eq!((job.status.as_str(), job.history.len()), ("completed", 3));
}

async fn leases_without_heartbeats_expire_and_are_reissued(database: Database) {
    use oblivion_protocol::wire::CoordinatorMessage;
    let net = Network::start_on(
        database,
        &["--heartbeat-secs", "1", "--lease-ttl-secs", "2"],
    )
    .unwrap();
    let api = net.api();
    let id = api.submit(&iris(1)).await.unwrap();
    // This worker takes both shards and then goes silent: no heartbeats.
    let mut silent = ScriptedWorker::connect(&api.url, "silent").await.unwrap();
    let first = [
        silent.next_lease().await.unwrap(),
        silent.next_lease().await.unwrap(),
    ];
    let mut revoked = Vec::new();
    while revoked.len() < 2 {
        if let CoordinatorMessage::Revoke { lease_id, reason } =
            silent.next_message().await.unwrap()
        {
            assert!(reason.starts_with("expired"), "{reason}");
            revoked.push(lease_id);
        }
    }
    revoked.sort_unstable();
    assert_eq!(revoked, vec![first[0].lease_id, first[1].lease_id]);
    let (status, _) = silent
        .post_update(&api, first[0].lease_id, honest_update(&first[0]))
        .await
        .unwrap();
    assert_eq!(status, 409, "an expired lease takes no update");
    let me = api.worker(silent.id).await.unwrap();
    assert!(me.lost >= 2, "{me:?}");
    // Both shards are issued again, under new lease ids (by the dispatch
    // pass the expiry asks for, which may not have run yet).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let job = api.job(id).await.unwrap();
        if job.shards.iter().all(|s| s.attempts >= 2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not re-issued: {:?}",
            job.shards
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
