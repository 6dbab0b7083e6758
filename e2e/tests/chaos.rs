//! Chaos: the MNIST CNN example trains while coordinator instances are
//! killed (`kill -9`) at random moments and restarted, and half the workers
//! are killed and restarted in every round. On PostgreSQL and S3 with
//! three instances and six workers spread over them; on SQLite with one
//! instance. The job must finish within 1 point of a clean run's accuracy;
//! every aggregated round must have used exactly one accepted update per
//! shard, no accepted update may be lost, and no job's status may ever
//! have gone backwards (all checked in the database). On PostgreSQL, the
//! database server itself is also stopped at once (as in a crash) and
//! started again once, mid-job.

use oblivion_protocol::JobId;
use std::time::{Duration, Instant};

use oblivion_e2e::cluster::Cluster;
use oblivion_e2e::{Database, Network, Storage, example};
use oblivion_protocol::api::{JobStatus, JobView};
use oblivion_store::Db;
use sqlx::Row;

/// Fast failure detection, so that the test spends its time training.
const FLAGS: &[&str] = &[
    "--heartbeat-secs",
    "1",
    "--lease-ttl-secs",
    "3",
    "--instance-timeout-secs",
    "3",
];

/// A small deterministic random source (seeded from the clock, printed).
struct Dice(u64);

impl Dice {
    fn new() -> Dice {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        eprintln!("chaos seed {seed}");
        Dice(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// The example's accuracy without any failure (3 workers, SQLite), run
/// once for both tests.
async fn clean_accuracy() -> f64 {
    static CLEAN: tokio::sync::OnceCell<f64> = tokio::sync::OnceCell::const_new();
    *CLEAN.get_or_init(clean_run).await
}

async fn clean_run() -> f64 {
    let mut net = Network::start(&[]).unwrap();
    for i in 0..3 {
        net.add_worker(&format!("clean{i}")).unwrap();
    }
    let api = net.api();
    let id = api.submit(&job()).await.unwrap();
    let job = api
        .wait_finished(id, Duration::from_secs(300), |_| {})
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    job.history.last().unwrap().accuracy
}

/// The job as any live instance sees it.
async fn observe(cluster: &Cluster, id: JobId) -> Option<JobView> {
    for i in 0..cluster.instances() {
        if cluster.is_up(i)
            && let Ok(job) = cluster.api(i).job(id).await
        {
            return Some(job);
        }
    }
    None
}

/// The round at whose start a PostgreSQL server is restarted.
const DATABASE_RESTART_ROUND: u32 = 3;

/// The job trained under chaos, and cleanly to compare: the MNIST CNN
/// example, one local epoch a round to a target of 96% (about half the
/// example's training, which the test's chaos does not need: at least
/// two kills and a database restart happen within it).
fn job() -> serde_json::Value {
    let mut spec = example("mnist-cnn.json").unwrap();
    spec["local_epochs"] = 1.into();
    spec["target_accuracy"] = 0.96.into();
    spec
}

/// What chaos was done.
struct Done {
    /// Coordinator instances killed.
    kills: u32,
    /// Database server restarts.
    database_restarts: u32,
}

/// Trains the example under chaos; returns its final view.
async fn train_under_chaos(cluster: &mut Cluster, workers: usize) -> (JobId, JobView, Done) {
    let mut dice = Dice::new();
    let instances = cluster.instances();
    for w in 0..workers {
        cluster.add_worker(&format!("w{w}"), w % instances).unwrap();
    }
    let id = cluster.api(0).submit(&job()).await.unwrap();
    let started = Instant::now();
    let mut next_kill = Instant::now() + Duration::from_millis(2000 + dice.below(4000));
    let mut kills = 0;
    let mut database_restarts = 0;
    let mut round_seen = 0;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the job did not finish under chaos"
        );
        if let Some(job) = observe(cluster, id).await {
            if job.status.is_finished() {
                let done = Done {
                    kills,
                    database_restarts,
                };
                return (id, job, done);
            }
            if job.round > round_seen {
                // A new round: kill half the workers and start them again.
                round_seen = job.round;
                let mut victims: Vec<usize> = (0..workers).collect();
                for _ in 0..workers / 2 {
                    let v = victims.remove(dice.below(victims.len() as u64) as usize);
                    cluster.kill_worker(v).unwrap();
                    cluster.start_worker(v).unwrap();
                }
                if job.round == DATABASE_RESTART_ROUND
                    && let Some(postgres) = cluster.postgres()
                {
                    postgres.stop().unwrap();
                    tokio::time::sleep(Duration::from_millis(1000 + dice.below(2000))).await;
                    postgres.restart().unwrap();
                    database_restarts += 1;
                }
            }
        }
        if Instant::now() >= next_kill {
            // kill -9 an instance at a random moment, start it again soon.
            let victim = dice.below(instances as u64) as usize;
            cluster.kill_instance(victim).unwrap();
            kills += 1;
            tokio::time::sleep(Duration::from_millis(200 + dice.below(1500))).await;
            cluster.start_instance(victim).unwrap();
            next_kill = Instant::now() + Duration::from_millis(3000 + dice.below(6000));
        }
        tokio::time::sleep(Duration::from_millis(100 + dice.below(200))).await;
    }
}

/// What the database says about the job, checked whole.
async fn check_the_record(database_url: &str, id: JobId, shards: u32) {
    let db = Db::connect(database_url, 2).await.unwrap();
    let rounds = db.rounds(id).await.unwrap();
    assert!(!rounds.is_empty());
    for r in &rounds {
        assert_eq!(
            r.updates, shards,
            "round {} aggregated {} updates",
            r.round, r.updates
        );
        let updates = db.round_updates(id, r.round).await.unwrap();
        let got: Vec<u32> = updates.iter().map(|u| u.shard).collect();
        let want: Vec<u32> = (0..shards).collect();
        assert_eq!(
            got, want,
            "round {}: one accepted update per shard",
            r.round
        );
    }
    // No accepted update is lost: every completed lease has its update,
    // and every update its completed lease.
    let pool = sqlx::AnyPool::connect(database_url).await.unwrap();
    let orphans: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM leases l WHERE l.job_id = $1 AND l.status = 'completed' \
         AND NOT EXISTS (SELECT 1 FROM updates u WHERE u.lease_id = l.id)",
    )
    .bind(id.db())
    .fetch_one(&pool)
    .await
    .unwrap()
    .get("n");
    assert_eq!(orphans, 0, "completed leases without their update");
    let unbacked: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM updates u WHERE u.job_id = $1 AND NOT EXISTS \
         (SELECT 1 FROM leases l WHERE l.id = u.lease_id AND l.status = 'completed')",
    )
    .bind(id.db())
    .fetch_one(&pool)
    .await
    .unwrap()
    .get("n");
    assert_eq!(unbacked, 0, "updates without a completed lease");
    pool.close().await;
    // Statuses only moved forward.
    let path = db.transitions(id).await.unwrap();
    let rank = |s: JobStatus| match s {
        JobStatus::Pending => 0,
        JobStatus::Running => 1,
        _ => 2,
    };
    for (from, to) in &path {
        if let Some(from) = from {
            assert!(rank(*to) > rank(*from), "{path:?}");
        }
    }
    assert_eq!(path.last().unwrap().1, JobStatus::Completed, "{path:?}");
}

async fn chaos(instances: usize, database: Database, storage: Storage, clean: f64) {
    let mut cluster = Cluster::start(instances, database, storage, FLAGS).unwrap();
    let (id, job, done) = train_under_chaos(&mut cluster, 6).await;
    let Done {
        kills,
        database_restarts,
    } = done;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    let accuracy = job.history.last().unwrap().accuracy;
    eprintln!(
        "chaos on {instances} instance(s), {database:?}, {storage:?}: {} rounds, accuracy {accuracy:.4} \
         (clean {clean:.4}), {kills} coordinator kills, {database_restarts} database restarts",
        job.history.len()
    );
    assert!(kills >= 2, "the coordinator was killed {kills} times");
    if database == Database::Postgres {
        assert_eq!(database_restarts, 1, "the database restarted mid-job");
    }
    assert!(
        (accuracy - clean).abs() <= 0.01,
        "accuracy {accuracy} vs clean {clean}"
    );
    check_the_record(
        &cluster.database_url,
        id,
        job.spec.training().unwrap().shards_per_round,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_on_postgresql_and_s3_survive_kill_9() {
    let clean = clean_accuracy().await;
    chaos(3, Database::Postgres, Storage::S3, clean).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_instance_on_sqlite_survives_kill_9() {
    let clean = clean_accuracy().await;
    chaos(1, Database::Sqlite, Storage::Dir, clean).await;
}
