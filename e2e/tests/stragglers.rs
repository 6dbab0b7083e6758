//! Rounds do not wait for a straggler: with one worker ten times slower
//! than the rest, idle workers back up its last shards, the first update
//! wins, and a round takes about as long as without it.

use std::time::Duration;

use oblivion_e2e::Network;
use oblivion_protocol::api::JobView;

const TIMEOUT: Duration = Duration::from_secs(600);

/// The MNIST MLP example on three native workers, plus `slow` ones that
/// train a tenth of the time (`--max-cpu 10`); the finished job and the
/// slow workers' accepted updates.
async fn train(slow: usize) -> (JobView, u64) {
    let mut net = Network::start(&[]).unwrap();
    for i in 0..3 {
        net.add_worker(&format!("fast{i}")).unwrap();
    }
    for i in 0..slow {
        net.add_worker_with_flags(&format!("slow{i}"), &["--max-cpu", "10"])
            .unwrap();
    }
    let api = net.api();
    let (_, job) = api.train_example("mnist-mlp.json", TIMEOUT).await.unwrap();
    let slow_accepted = api
        .workers()
        .await
        .unwrap()
        .iter()
        .filter(|w| w.name.starts_with("slow"))
        .map(|w| w.accepted)
        .sum();
    (job, slow_accepted)
}

/// Median of the rounds' wall times, seconds.
fn median_round(jobs: &[&JobView]) -> f64 {
    let mut seconds: Vec<f64> = jobs
        .iter()
        .flat_map(|j| j.history.iter().map(|r| r.seconds))
        .collect();
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

#[tokio::test(flavor = "multi_thread")]
async fn one_worker_ten_times_slower_does_not_slow_the_rounds() {
    // Alternated, so that both see the machine alike.
    let (base_a, _) = train(0).await;
    let (with_a, slow_a) = train(1).await;
    let (base_b, _) = train(0).await;
    let (with_b, slow_b) = train(1).await;
    let (base, with) = (
        median_round(&[&base_a, &base_b]),
        median_round(&[&with_a, &with_b]),
    );
    let accuracy = |j: &JobView| j.history.last().map_or(0.0, |r| r.accuracy);
    let rounds = with_a.history.len() as u64;
    eprintln!(
        "median round: {base:.2} s with three workers, {with:.2} s with a fourth ten times \
         slower ({:.2}x); accuracy {:.3} {:.3} vs {:.3} {:.3}; the slow worker's updates \
         taken: {slow_a} and {slow_b} of {rounds} rounds",
        with / base,
        accuracy(&base_a),
        accuracy(&base_b),
        accuracy(&with_a),
        accuracy(&with_b),
    );
    assert!(
        with <= 1.3 * base,
        "a round took {with:.2} s with the straggler, {base:.2} s without"
    );
    // It was given work, and backups beat it to most of it.
    assert!(slow_a + slow_b < rounds, "{slow_a} + {slow_b} of {rounds}");
    for j in [&with_a, &with_b] {
        let best = accuracy(&base_a).max(accuracy(&base_b));
        assert!(
            accuracy(j) >= best - 0.02,
            "same model quality: {} vs {best}",
            accuracy(j)
        );
    }
}
