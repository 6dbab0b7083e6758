//! Ctrl-C on a native worker: the shard in hand is finished and uploaded,
//! the queued one is returned at once, and the process exits cleanly.

use std::time::{Duration, Instant};

use oblivion_e2e::{Network, example};
use oblivion_protocol::api::ShardStatus;

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_finishes_the_current_shard_and_returns_the_queued_one() {
    let mut net = Network::start(&[]).unwrap();
    let api = net.api();
    let mut spec = example("mnist-cnn.json").unwrap();
    spec["shards_per_round"] = 2.into();
    spec["rounds"] = 1.into();
    spec["local_epochs"] = 4.into();
    let id = api.submit(&spec).await.unwrap();
    net.add_worker("stopping").unwrap();
    // The worker takes both shards (lease cap 2): one trains, one waits.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = api.job(id).await.unwrap();
        if job.shards.iter().all(|s| s.state == ShardStatus::Leased) {
            break;
        }
        assert!(Instant::now() < deadline, "no leases: {job:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = net.workers[0].id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );

    let status = tokio::task::block_in_place(|| net.workers[0].wait()).unwrap();
    assert!(status.success(), "the worker exits cleanly: {status}");
    let job = api.job(id).await.unwrap();
    let states: Vec<&str> = job.shards.iter().map(|s| s.state.as_str()).collect();
    let done = states.iter().filter(|s| **s == "done").count();
    let pending = states.iter().filter(|s| **s == "pending").count();
    assert_eq!(
        (done, pending),
        (1, 1),
        "one finished, one returned: {states:?}"
    );

    // Another worker picks up the returned shard and the job completes.
    net.add_worker("after").unwrap();
    let job = api
        .wait_finished(id, Duration::from_secs(300), |_| {})
        .await
        .unwrap();
    assert_eq!(job.status.as_str(), "completed");
}
