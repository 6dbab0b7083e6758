//! Races on a real coordinator process: the same update posted twice at
//! once, a cancel racing the last update of a round, a cancel landing
//! during aggregation. Whatever wins, each shard counts once and a
//! cancelled job stays cancelled, across a restart too (checked in the
//! database, including its log of status transitions).

use std::time::Duration;

use oblivion_e2e::{Database, Network, ScriptedWorker, example, honest_update};
use oblivion_protocol::api::JobStatus;
use oblivion_store::Db;

oblivion_e2e::on_both_databases!(
    the_same_update_posted_twice_at_once_counts_once,
    a_cancel_racing_the_last_update_stays_cancelled_across_a_restart,
    a_cancel_during_aggregation_is_not_undone,
);

fn iris(rounds: u32, shards: u32) -> serde_json::Value {
    let mut spec = example("iris-mlp.json").unwrap();
    spec["rounds"] = rounds.into();
    spec["shards_per_round"] = shards.into();
    spec
}

/// Statuses only move forward: pending, running, then one finished state.
fn assert_forward(path: &[(Option<JobStatus>, JobStatus)]) {
    let rank = |s: JobStatus| match s {
        JobStatus::Pending => 0,
        JobStatus::Running => 1,
        _ => 2,
    };
    for (from, to) in path {
        if let Some(from) = from {
            assert!(rank(*to) > rank(*from), "{from:?} -> {to:?} in {path:?}");
        }
    }
}

async fn the_same_update_posted_twice_at_once_counts_once(database: Database) {
    let net = Network::start_on(database, &[]).unwrap();
    let api = net.api();
    let id = api.submit(&iris(1, 2)).await.unwrap();
    let mut worker = ScriptedWorker::connect(&api.url, "twice").await.unwrap();
    let first = worker.next_lease().await.unwrap();
    let second = worker.next_lease().await.unwrap();
    let body = honest_update(&first);
    let (a, b) = tokio::join!(
        worker.post_update(&api, first.lease_id, body.clone()),
        worker.post_update(&api, first.lease_id, body)
    );
    let mut statuses = [a.unwrap().0, b.unwrap().0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);
    let (status, body) = worker
        .post_update(&api, second.lease_id, honest_update(&second))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let job = api
        .wait_finished(id, Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.history[0].updates, 2);
    assert_eq!(api.worker(worker.id).await.unwrap().accepted, 2);
    let db = Db::connect(net.database_url(), 1).await.unwrap();
    assert_eq!(db.round_updates(id, 1).await.unwrap().len(), 2);
}

async fn a_cancel_racing_the_last_update_stays_cancelled_across_a_restart(database: Database) {
    let mut net = Network::start_on(database, &[]).unwrap();
    let api = net.api();
    let mut jobs = Vec::new();
    for round in 0..4 {
        let id = api.submit(&iris(2, 2)).await.unwrap();
        let mut worker = ScriptedWorker::connect(&api.url, &format!("racer{round}"))
            .await
            .unwrap();
        let first = worker.next_lease().await.unwrap();
        let last = worker.next_lease().await.unwrap();
        let (status, _) = worker
            .post_update(&api, first.lease_id, honest_update(&first))
            .await
            .unwrap();
        assert_eq!(status, 200);
        // Give the update a head start of 0 to 3 ms, so that both orders
        // occur over the repetitions.
        let update = async {
            tokio::time::sleep(Duration::from_millis(round)).await;
            worker
                .post_update(&api, last.lease_id, honest_update(&last))
                .await
                .unwrap()
        };
        let cancel_path = format!("/api/jobs/{id}/cancel");
        let cancel = api.post(&cancel_path, "");
        let ((update_status, _), cancel) = tokio::join!(update, cancel);
        assert!([200, 409].contains(&update_status), "{update_status}");
        assert_eq!(cancel.unwrap().0, 200, "round 2 was still to train");
        jobs.push(id);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    net.restart_coordinator().unwrap();
    let api = net.api();
    let db = Db::connect(net.database_url(), 1).await.unwrap();
    for id in jobs {
        let job = api.job(id).await.unwrap();
        assert_eq!(job.status, JobStatus::Cancelled, "job {id}");
        assert!(job.history.len() <= 1);
        let updates = db.round_updates(id, 1).await.unwrap();
        let shards: Vec<u32> = updates.iter().map(|u| u.shard).collect();
        assert!(shards == [0] || shards == [0, 1], "{shards:?}");
        let path = db.transitions(id).await.unwrap();
        assert_forward(&path);
        assert_eq!(path.last().unwrap().1, JobStatus::Cancelled);
    }
}

async fn a_cancel_during_aggregation_is_not_undone(database: Database) {
    let mut net = Network::start_on(database, &[]).unwrap();
    let api = net.api();
    // A CNN on MNIST: evaluating its 1,600 held-out digits after the round
    // takes long enough for the cancel to land during aggregation.
    let mut spec = example("mnist-cnn.json").unwrap();
    spec["shards_per_round"] = 1.into();
    spec["rounds"] = 3.into();
    let id = api.submit(&spec).await.unwrap();
    let mut worker = ScriptedWorker::connect(&api.url, "last").await.unwrap();
    let lease = worker.next_lease().await.unwrap();
    let (status, body) = worker
        .post_update(&api, lease.lease_id, honest_update(&lease))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .post(&format!("/api/jobs/{id}/cancel"), "")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    // Whatever the aggregation was doing, it finishes and changes nothing:
    // the job stays cancelled, and a round is recorded whole or not at all.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = api.job(id).await.unwrap();
    assert_eq!(before.status, JobStatus::Cancelled);
    assert_eq!(before.round as usize, before.history.len() + 1);
    net.restart_coordinator().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = net.api().job(id).await.unwrap();
    assert_eq!(
        (after.status, after.round, after.history.len()),
        (JobStatus::Cancelled, before.round, before.history.len())
    );
    let db = Db::connect(net.database_url(), 1).await.unwrap();
    let path = db.transitions(id).await.unwrap();
    assert_forward(&path);
    assert_eq!(
        path.iter().map(|p| p.1).collect::<Vec<_>>(),
        [JobStatus::Pending, JobStatus::Running, JobStatus::Cancelled]
    );
    let (status, body) = api
        .post(&format!("/api/jobs/{id}/cancel"), "")
        .await
        .unwrap();
    assert_eq!(status, 409, "{body}");
}
