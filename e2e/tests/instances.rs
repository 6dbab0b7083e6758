//! Several coordinator instances serving together on one PostgreSQL and one
//! object store: a job created on one instance starts work on another's
//! workers at once, any instance takes an update for any lease, every
//! instance shows the whole network, and exactly one aggregates a round.

use std::time::{Duration, Instant};

use oblivion_e2e::cluster::Cluster;
use oblivion_e2e::{Database, ScriptedWorker, Storage, example, honest_update};
use oblivion_protocol::api::JobStatus;

#[tokio::test(flavor = "multi_thread")]
async fn instances_share_jobs_workers_updates_and_the_network_view() {
    let cluster = Cluster::start(2, Database::Postgres, Storage::S3, &[]).unwrap();
    let (a, b) = (cluster.api(0), cluster.api(1));
    // A worker of instance B only.
    let mut worker = ScriptedWorker::connect(&b.url, "on-b").await.unwrap();
    let mut spec = example("iris-mlp.json").unwrap();
    spec["rounds"] = 2.into();
    let submitted = Instant::now();
    let id = a.submit(&spec).await.unwrap();
    let first = worker.next_lease().await.unwrap();
    let waited = submitted.elapsed();
    eprintln!("a job created on A reached B's worker in {waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(first.job_id, id);
    let second = worker.next_lease().await.unwrap();

    // Instance A shows B's worker, in its list and in its live events.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let workers = a.workers().await.unwrap();
        if workers
            .iter()
            .any(|w| w.id == worker.id && w.leases.len() == 2)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A never showed B's worker: {workers:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut events = a
        .http
        .get(format!("{}/api/events", a.url))
        .send()
        .await
        .unwrap();
    let chunk = events.chunk().await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.contains("\"on-b\""), "{text}");
    drop(events);

    // B's worker posts one update to A and one to B: both are taken.
    for (api, lease) in [(&a, &first), (&b, &second)] {
        let (status, body) = worker
            .post_update(api, lease.lease_id, honest_update(lease))
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    // The round is aggregated once (by either), and round 2 reaches the
    // worker through B.
    let next = worker.next_lease().await.unwrap();
    assert_eq!((next.job_id, next.round), (id, 2));
    let other = worker.next_lease().await.unwrap();
    for lease in [&next, &other] {
        let (status, body) = worker
            .post_update(&a, lease.lease_id, honest_update(lease))
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let job = b
        .wait_finished(id, Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.history.len(), 2);
    assert_eq!(a.job(id).await.unwrap().history, job.history);
}
