//! Artifacts on both backends (a local directory and S3-compatible object
//! storage, moto's server), and a whole job trained on PostgreSQL and S3.

use std::time::Duration;

use oblivion_e2e::s3::S3Server;
use oblivion_e2e::{Database, Network, ScratchDir, Storage, example, root};
use oblivion_protocol::BlobId;
use oblivion_protocol::api::JobStatus;
use oblivion_store::Artifacts;

async fn round_trip(store: &Artifacts) {
    let blob = store.put(b"weights".to_vec()).await.unwrap();
    use sha2::Digest;
    assert_eq!(
        blob.to_string(),
        hex::encode(sha2::Sha256::digest(b"weights"))
    );
    assert_eq!(
        store.put(b"weights".to_vec()).await.unwrap(),
        blob,
        "idempotent"
    );
    assert_eq!(store.get(blob).await.unwrap().unwrap(), b"weights");
    assert!(store.contains(blob).await);
    let other = BlobId::of(b"never stored");
    assert_eq!(store.get(other).await.unwrap(), None);
    store.delete(blob).await.unwrap();
    store.delete(blob).await.unwrap();
    assert!(!store.contains(blob).await);
    assert_eq!(store.get(blob).await.unwrap(), None);
}

#[tokio::test]
async fn both_artifact_backends_store_fetch_and_delete() {
    let dir = ScratchDir::new("artifacts").unwrap();
    round_trip(&Artifacts::open(&dir.0.display().to_string()).await.unwrap()).await;
    let s3 = S3Server::start().unwrap();
    s3.bucket("oblivion").unwrap();
    for (k, v) in s3.env() {
        // SAFETY: set before any other thread of this test reads them.
        unsafe { std::env::set_var(k, v) };
    }
    let store = Artifacts::open("s3://oblivion/unit").await.unwrap();
    round_trip(&store).await;
    let missing = Artifacts::open("s3://no-such-bucket/x").await;
    assert!(
        missing.is_err(),
        "an unreachable bucket is refused at start"
    );
}

/// A power cut between a blob's rename and its batch's flush can leave its
/// name over incomplete contents; no row names it (rows commit after the
/// flush). The next writer of the same bytes must not take that file for
/// the blob.
#[tokio::test]
async fn a_blob_left_incomplete_under_its_name_is_written_again() {
    let dir = ScratchDir::new("artifacts").unwrap();
    let store = Artifacts::open(&dir.0.display().to_string()).await.unwrap();
    let bytes = b"an update's weights".to_vec();
    let id = BlobId::of(&bytes);
    let hex = id.to_string();
    let path = dir.0.join(&hex[..2]).join(&hex);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &bytes[..5]).unwrap();
    assert_eq!(store.put(bytes.clone()).await.unwrap(), id);
    assert_eq!(store.get(id).await.unwrap().unwrap(), bytes);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_trains_on_postgresql_and_s3() {
    let mut net = Network::start_with(Database::Postgres, Storage::S3, &[]).unwrap();
    net.add_worker("a").unwrap();
    net.add_worker("b").unwrap();
    let api = net.api();
    let id = api
        .submit(&example("iris-mlp.json").unwrap())
        .await
        .unwrap();
    let job = api
        .wait_finished(id, Duration::from_secs(120), |_| {})
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert!(
        job.history.last().unwrap().accuracy > 0.8,
        "{:?}",
        job.history
    );
    let onnx = api
        .get_bytes(&format!("/api/jobs/{id}/model?format=onnx"))
        .await
        .unwrap();
    assert!(onnx.len() > 100);
    // Everything went to the bucket, nothing to the data directory.
    let s3 = net.s3.as_ref().unwrap();
    let objects = s3.count("oblivion", "net/").unwrap();
    assert!(
        objects >= 2 + 2 + 10,
        "shards, weights and updates: {objects}"
    );
    assert!(!net.data.0.join("artifacts").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_nobody_needs_are_collected() {
    use oblivion_e2e::{ScriptedWorker, honest_update};
    let net = Network::start(&[
        "--gc-interval-secs",
        "1",
        "--gc-grace-secs",
        "0",
        "--keep-rounds",
        "1",
        "--unused-upload-secs",
        "2",
    ])
    .unwrap();
    let api = net.api();
    // Two uploads: the unfinished job below names one; nothing names the
    // other, which goes once it is two seconds old.
    let upload = |name: &str| {
        let api = api.clone();
        let bytes = std::fs::read(root().join("../shared/datasets/tabular").join(name)).unwrap();
        async move {
            let (status, body) = api.post("/api/datasets", bytes).await.unwrap();
            assert_eq!(status, 201, "{body}");
            body["sha256"].as_str().unwrap().to_string()
        }
    };
    let (named, unused) = (upload("iris.csv").await, upload("wine.csv").await);
    let mut spec = example("iris-mlp.json").unwrap();
    spec["rounds"] = 3.into();
    let id = api.submit(&spec).await.unwrap();
    let mut worker = ScriptedWorker::connect(&api.url, "gc").await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..6 {
        let lease = worker.next_lease().await.unwrap();
        let body = honest_update(&lease);
        let (status, reply) = worker
            .post_update(&api, lease.lease_id, body.clone())
            .await
            .unwrap();
        assert_eq!(status, 200, "{reply}");
        seen.push((lease, body));
    }
    let job = api
        .wait_finished(id, Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    // Another job stays unfinished: a worker holds one of its shards.
    spec["seed"] = 99.into();
    spec["dataset"] = serde_json::json!({ "csv": named });
    let running = api.submit(&spec).await.unwrap();
    let held = worker.next_lease().await.unwrap();
    assert_eq!(held.job_id, running);
    tokio::time::sleep(Duration::from_secs(4)).await;

    let status = |sha: String| {
        let api = api.clone();
        async move {
            api.http
                .get(format!("{}/api/artifacts/{sha}", api.url))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    use sha2::Digest;
    for (lease, body) in &seen {
        let update = hex::encode(sha2::Sha256::digest(body));
        assert_eq!(status(update).await, 404, "update of round {}", lease.round);
        assert_eq!(
            status(lease.data_blob().unwrap().to_string()).await,
            404,
            "shard of a finished job"
        );
        if lease.round == 2 {
            // The weights after round 1: beyond the one round kept.
            assert_eq!(status(lease.weights.to_string()).await, 404);
        }
    }
    // The finished job's model, and the unfinished job's shard, stay.
    let model = api
        .get_bytes(&format!("/api/jobs/{id}/model?format=safetensors"))
        .await
        .unwrap();
    assert!(!model.is_empty());
    assert_eq!(status(held.data_blob().unwrap().to_string()).await, 200);
    assert_eq!(status(held.weights.to_string()).await, 200);
    // The upload a job names stays its owner's; the other is gone.
    assert_eq!(
        api.get(&format!("/api/artifacts/{named}")).await.unwrap().0,
        200
    );
    let (gone, _) = api.get(&format!("/api/artifacts/{unused}")).await.unwrap();
    assert_ne!(gone, 200, "an upload nobody used outlived its time");
    let on_disk = |sha: &str| {
        net.data
            .0
            .join("artifacts")
            .join(&sha[..2])
            .join(sha)
            .exists()
    };
    assert!(on_disk(&named) && !on_disk(&unused));
}

/// Trains a 30-round job on two workers and, once three rounds are done,
/// takes a part of the coordinator's storage away for 10 s (`away(true)`,
/// then `away(false)`): the job must complete all its rounds.
async fn survives_ten_seconds_without(
    mut net: Network,
    away: impl Fn(&Network, bool),
) -> oblivion_protocol::api::JobView {
    net.add_worker("a").unwrap();
    net.add_worker("b").unwrap();
    let api = net.api();
    let mut spec = example("iris-mlp.json").unwrap();
    spec["rounds"] = 30.into();
    spec["local_epochs"] = 100.into();
    let id = api.submit(&spec).await.unwrap();
    loop {
        let job = api.job(id).await.unwrap();
        if job.history.len() >= 3 {
            break;
        }
        assert!(!job.status.is_finished(), "{job:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    away(&net, true);
    tokio::time::sleep(Duration::from_secs(10)).await;
    away(&net, false);
    let job = api
        .wait_finished(id, Duration::from_secs(300), |_| {})
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!(job.history.len(), 30);
    job
}

/// The object store stalls for 10 s while rounds are trained and
/// aggregated: the rounds wait for it, and the job completes.
#[tokio::test(flavor = "multi_thread")]
async fn an_s3_outage_of_ten_seconds_delays_the_job_and_fails_nothing() {
    let net = Network::start_with(Database::Sqlite, Storage::S3, &[]).unwrap();
    let job = survives_ten_seconds_without(net, |net, away| {
        let s3 = net.s3.as_ref().unwrap();
        if away { s3.pause() } else { s3.resume() }.unwrap()
    })
    .await;
    let longest = job.history.iter().map(|r| r.seconds).fold(0.0, f64::max);
    eprintln!("the longest round took {longest:.1} s");
    assert!(longest >= 9.0, "the outage fell on no round: {longest} s");
}

/// The database goes away for 10 s while rounds are trained and
/// aggregated (PostgreSQL stopped at once, as in a crash, then started
/// again): whatever it interrupts is tried again, and the job completes.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_of_ten_seconds_delays_the_job_and_fails_nothing() {
    let net = Network::start_with(Database::Postgres, Storage::Dir, &[]).unwrap();
    survives_ten_seconds_without(net, |net, away| {
        let postgres = net.postgres().unwrap();
        if away {
            postgres.stop()
        } else {
            postgres.restart()
        }
        .unwrap()
    })
    .await;
}
