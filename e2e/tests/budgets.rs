//! Every budget is refused with a 4xx that names what was exceeded, and the
//! coordinator's memory stays bounded through all of them: a model of over
//! 100 M parameters, an evaluation too costly, too many shards x rounds,
//! too many unfinished jobs from one client, gzip bombs as a dataset and as
//! an update, a second upload for the same lease, and a lease kept alive by
//! heartbeats past its lifetime.

use std::io::Write;
use std::time::{Duration, Instant};

use oblivion_e2e::{Database, Network, ScriptedWorker, example, honest_update, peak_rss_kib};
use serde_json::json;
use tokio::io::AsyncWriteExt;

oblivion_e2e::on_both_databases!(
    every_budget_is_refused_by_name_and_memory_stays_bounded,
    one_upload_per_lease_at_a_time,
    a_lease_ends_at_its_lifetime_however_diligent_its_heartbeats,
    per_client_limits_answer_429_and_say_when_to_retry,
    update_metadata_out_of_range_is_refused,
);

/// Peak resident memory the coordinator may reach through this test, with
/// its default settings (README, "Limits").
const PEAK_RSS_BOUND_MIB: u64 = 256;

fn iris(rounds: u32) -> serde_json::Value {
    let mut spec = example("iris-mlp.json").unwrap();
    spec["rounds"] = rounds.into();
    spec
}

/// `n` zero bytes, gzip-compressed (about a thousandth of `n`).
fn gzip_bomb(n: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..n / chunk.len() {
        gz.write_all(&chunk).unwrap();
    }
    gz.finish().unwrap()
}

async fn refused(
    api: &oblivion_e2e::Api,
    spec: &serde_json::Value,
    status: u16,
    field: Option<&str>,
    says: &str,
) {
    let started = Instant::now();
    let (got, body) = api.post("/api/jobs", spec.to_string()).await.unwrap();
    assert_eq!(got, status, "{body}");
    assert_eq!(body["field"].as_str(), field, "{body}");
    assert!(body["error"].as_str().unwrap().contains(says), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused in {:?}",
        started.elapsed()
    );
}

async fn every_budget_is_refused_by_name_and_memory_stays_bounded(database: Database) {
    let net = Network::start_on(database, &["--max-jobs-in-flight", "2"]).unwrap();
    let api = net.api();

    // Eight hidden layers of 4,096 on MNIST: 120.7 M parameters.
    let mut huge = example("mnist-mlp.json").unwrap();
    huge["model"] = json!({"kind": "mlp", "hidden": vec![4096; 8]});
    refused(
        &api,
        &huge,
        422,
        Some("model"),
        "120725514 parameters exceed",
    )
    .await;

    // Few parameters, but 0.6 G multiply-adds per digit to evaluate.
    let mut heavy = example("mnist-cnn.json").unwrap();
    heavy["model"] = json!({"kind": "cnn", "channels": [256, 256], "kernel_size": 7, "hidden": []});
    refused(&api, &heavy, 422, Some("validation_split"), "max_eval_macs").await;

    let mut long = iris(1000);
    long["shards_per_round"] = 100.into();
    refused(
        &api,
        &long,
        422,
        Some("shards_per_round"),
        "max_shard_rounds",
    )
    .await;

    // 512 MiB of zeros in half a megabyte, as a dataset.
    let bomb = gzip_bomb(512 << 20);
    assert!(bomb.len() < 2 << 20);
    let (status, body) = api.post("/api/datasets", bomb.clone()).await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("larger than 134217728 bytes once decompressed"),
        "{body}"
    );

    // Two unfinished jobs per client here; a third is refused until one ends.
    let first = api.submit(&iris(2)).await.unwrap();
    api.submit(&iris(2)).await.unwrap();
    refused(&api, &iris(2), 429, None, "max_jobs_in_flight").await;
    let (status, _) = api
        .post(&format!("/api/jobs/{first}/cancel"), "")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let third = api.submit(&iris(2)).await.unwrap();

    // The same bomb as an update: refused for its size once decompressed
    // (sized to the model), and the shard goes on.
    let mut worker = ScriptedWorker::connect(&api.url, "bomber").await.unwrap();
    let lease = worker.next_lease().await.unwrap();
    let (status, body) = worker
        .post_update(&api, lease.lease_id, bomb)
        .await
        .unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("once decompressed"),
        "{body}"
    );
    // (Skipping the lease of the other job granted along with the first.)
    let mut again = worker.next_lease().await.unwrap();
    while (again.job_id, again.shard) != (lease.job_id, lease.shard) {
        again = worker.next_lease().await.unwrap();
    }
    assert_ne!(again.lease_id, lease.lease_id);
    let (status, body) = worker
        .post_update(&api, again.lease_id, honest_update(&again))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(third > first);

    let peak = peak_rss_kib(net.coordinator_pid().unwrap()).unwrap() / 1024;
    eprintln!("coordinator peak RSS through the budget test: {peak} MiB");
    assert!(
        peak < PEAK_RSS_BOUND_MIB,
        "peak RSS {peak} MiB over {PEAK_RSS_BOUND_MIB} MiB"
    );
}

async fn one_upload_per_lease_at_a_time(database: Database) {
    let net = Network::start_on(database, &[]).unwrap();
    let api = net.api();
    api.submit(&iris(1)).await.unwrap();
    let mut worker = ScriptedWorker::connect(&api.url, "slow").await.unwrap();
    let lease = worker.next_lease().await.unwrap();
    // A slow upload: headers and a few bytes of a 1,000-byte body.
    let addr = api.url.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/leases/{}/update HTTP/1.1\r\nhost: {addr}\r\n\
         x-oblivion-worker-token: {}\r\ncontent-length: 1000\r\n\r\n0123456789",
        lease.lease_id, worker.token
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = worker
        .post_update(&api, lease.lease_id, honest_update(&lease))
        .await
        .unwrap();
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("already being uploaded"),
        "{body}"
    );
    drop(slow);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = worker
        .post_update(&api, lease.lease_id, honest_update(&lease))
        .await
        .unwrap();
    assert_eq!(status, 200, "once the first upload is gone: {body}");
}

async fn a_lease_ends_at_its_lifetime_however_diligent_its_heartbeats(database: Database) {
    use oblivion_protocol::wire::CoordinatorMessage;
    let net = Network::start_on(
        database,
        &[
            "--heartbeat-secs",
            "1",
            "--lease-ttl-secs",
            "2",
            "--lease-max-lifetime-secs",
            "4",
        ],
    )
    .unwrap();
    let api = net.api();
    api.submit(&iris(1)).await.unwrap();
    let mut worker = ScriptedWorker::connect(&api.url, "stalling").await.unwrap();
    let first = worker.next_lease().await.unwrap();
    let second = worker.next_lease().await.unwrap();
    let started = Instant::now();
    let mut revoked = Vec::new();
    while revoked.len() < 2 {
        worker
            .heartbeat(&[first.lease_id, second.lease_id])
            .await
            .unwrap();
        let msg = tokio::time::timeout(Duration::from_millis(500), worker.next_message()).await;
        if let Ok(Ok(CoordinatorMessage::Revoke { lease_id, reason })) = msg {
            assert!(reason.starts_with("overdue"), "{reason}");
            revoked.push(lease_id);
        }
        assert!(started.elapsed() < Duration::from_secs(15), "never revoked");
    }
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

async fn per_client_limits_answer_429_and_say_when_to_retry(database: Database) {
    let net = Network::start_on(
        database,
        &[
            "--max-event-streams-per-client",
            "2",
            "--max-workers-per-client",
            "2",
            "--max-uploads-per-minute",
            "3",
        ],
    )
    .unwrap();
    let api = net.api();

    // Event streams: two per address, each sent the snapshot at once.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut r = api
            .http
            .get(format!("{}/api/events", api.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let first = tokio::time::timeout(Duration::from_secs(5), r.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&first).contains("event: snapshot"));
        streams.push(r);
    }
    let (status, body) = api.get("/api/events").await.unwrap();
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("max_event_streams_per_client"),
        "{body}"
    );
    drop(streams);

    // Worker connections: two per address.
    let _a = ScriptedWorker::connect(&api.url, "a").await.unwrap();
    let _b = ScriptedWorker::connect(&api.url, "b").await.unwrap();
    let third = ScriptedWorker::connect(&api.url, "c").await;
    let e = format!("{:#}", third.err().expect("a third connection is refused"));
    assert!(e.contains("429"), "{e}");

    // Uploads: three a minute, then 429 with Retry-After.
    let iris = std::fs::read(oblivion_e2e::root().join("datasets/tabular/iris.csv")).unwrap();
    for _ in 0..3 {
        let (status, body) = api.post("/api/datasets", iris.clone()).await.unwrap();
        assert_eq!(status, 201, "{body}");
    }
    let r = api
        .http
        .post(format!("{}/api/datasets", api.url))
        .body(iris)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("max_uploads_per_minute"),
        "{body}"
    );
}

async fn update_metadata_out_of_range_is_refused(database: Database) {
    use oblivion_e2e::update_with_metadata;
    let net = Network::start_on(database, &["--quarantine-after", "100"]).unwrap();
    let api = net.api();
    api.submit(&iris(1)).await.unwrap();
    let mut worker = ScriptedWorker::connect(&api.url, "liar").await.unwrap();
    let cases: [&[(&str, &str)]; 6] = [
        &[("train_loss", "1e300")],
        &[("train_loss", "-1")],
        &[("train_loss", "inf")],
        &[("train_loss", "0.5"), ("train_millis", "-5")],
        &[
            ("train_loss", "0.5"),
            ("train_millis", "99999999999999999999"),
        ],
        &[("train_loss", "0.5"), ("train_millis", "1e3")],
    ];
    for metadata in cases {
        let lease = worker.next_lease().await.unwrap();
        let (status, body) = worker
            .post_update(
                &api,
                lease.lease_id,
                update_with_metadata(&lease, 0.0, metadata),
            )
            .await
            .unwrap();
        assert_eq!(status, 422, "{metadata:?}: {body}");
        let key = metadata.last().unwrap().0;
        assert!(body["error"].as_str().unwrap().contains(key), "{body}");
    }
    let me = api.worker(worker.id).await.unwrap();
    assert_eq!((me.accepted, me.rejected), (0, 6));
}
