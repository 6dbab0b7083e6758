//! The database's guarded transitions, driven through every interleaving
//! that matters, one step at a time: whatever order a cancel, an update and
//! an aggregation land in, a finished job stays finished, a shard counts
//! once, and a round is recorded at most once. Each case runs on SQLite and
//! on a throwaway PostgreSQL cluster.

use oblivion_e2e::ScratchDir;
use oblivion_e2e::postgres::Postgres;
use oblivion_ml::screening::Verdict;
use oblivion_protocol::api::{JobStatus, RoundMetrics, WorkerView};
use oblivion_protocol::states::LeaseStatus;
use oblivion_protocol::wire::{ClientKind, DeviceInfo};
use oblivion_protocol::{BlobId, JobId, LeaseId, WorkerId};
use oblivion_scheduler::reputation::ReputationPolicy;
use oblivion_store::{
    Accepting, Db, JobData, JobRefusal, Judge, NewJob, NewLease, Record, RoundRow, UpdateRefusal,
    UpdateRow, UpdateVerdict, now,
};

/// A fresh, empty database; dropping it removes it.
struct Fresh {
    _dir: Option<ScratchDir>,
    _cluster: Option<Postgres>,
}

impl Fresh {
    fn sqlite() -> (Fresh, String) {
        let dir = ScratchDir::new("store").unwrap();
        let url = format!("sqlite://{}", dir.0.join("oblivion.db").display());
        let fresh = Fresh {
            _dir: Some(dir),
            _cluster: None,
        };
        (fresh, url)
    }

    fn postgres() -> (Fresh, String) {
        let cluster = Postgres::start().unwrap();
        let url = cluster.database("oblivion").unwrap();
        let fresh = Fresh {
            _dir: None,
            _cluster: Some(cluster),
        };
        (fresh, url)
    }
}

/// Runs a case on SQLite and on PostgreSQL, as two tests.
macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test]
                async fn sqlite() {
                    let (_db, url) = super::Fresh::sqlite();
                    super::$case(&url).await;
                }

                #[tokio::test]
                async fn postgres() {
                    let (_db, url) = super::Fresh::postgres();
                    super::$case(&url).await;
                }
            }
        )*
    };
}

on_both!(
    a_cancel_during_aggregation_wins_and_survives_a_restart,
    a_cancel_racing_the_last_update_counts_the_shard_at_most_once,
    the_same_update_twice_counts_once,
    a_shard_has_at_most_one_active_lease,
    a_slot_has_one_backup_lease_and_the_first_update_wins,
    a_round_closed_on_its_quorum_takes_no_more_work,
    exactly_one_claimant_aggregates_and_a_round_is_recorded_once,
    finished_jobs_stay_finished_even_against_raw_sql,
    the_schema_allows_exactly_the_status_moves_of_may_become,
    only_verified_work_is_credited_and_a_quarantine_outlives_the_connection,
    a_batch_records_each_update_as_it_would_alone,
);

fn spec(shards: u32, rounds: u32) -> oblivion_protocol::JobSpec {
    serde_json::from_value(serde_json::json!({
        "name": "t", "model": {"kind": "mlp", "hidden": []}, "dataset": {"builtin": "iris"},
        "rounds": rounds, "shards_per_round": shards, "batch_size": 8,
        "optimizer": {"kind": "adam", "learning_rate": 0.01}
    }))
    .unwrap()
}

/// A blob's address, for rows that name one.
fn blob(name: &str) -> BlobId {
    BlobId::of(name.as_bytes())
}

async fn job(db: &Db, shards: u32, rounds: u32) -> JobId {
    let row = job_row(shards, rounds);
    let shard_rows: Vec<_> = (0..shards)
        .map(|i| (Some(blob(&format!("d{i}"))), 10))
        .collect();
    db.insert_job(&row, &shard_rows).await.unwrap()
}

fn job_row(shards: u32, rounds: u32) -> NewJob {
    NewJob {
        spec: spec(shards, rounds),
        status: JobStatus::Pending,
        global_sha: blob("g1"),
        data: JobData {
            model: oblivion_protocol::ModelSpec::Mlp { hidden: vec![] },
            input_shape: vec![4],
            classes: 3,
            normalization: None,
            validation_sha: blob("v"),
            train_samples: 100,
            validation_samples: 20,
        },
        round_started_at: now(),
        created_at: now() as i64,
        creator: Some("127.0.0.1".into()),
        round_replicas: Vec::new(),
    }
}

async fn worker(db: &Db) -> WorkerId {
    paid_worker(db, None).await
}

/// A worker paid to `payout` (anonymous when `None`).
async fn paid_worker(db: &Db, payout: Option<&str>) -> WorkerId {
    let view = WorkerView::connected(
        "w".into(),
        ClientKind::Native,
        DeviceInfo {
            backend: "cpu".into(),
            name: "test".into(),
            detail: String::new(),
        },
        1.0,
    );
    db.insert_worker(&view, payout, "hash", "test")
        .await
        .unwrap()
}

/// Grants shard `shard` of `round` to `worker`; the lease id, if granted.
async fn lease(db: &Db, job: JobId, round: u32, shard: u32, worker: WorkerId) -> Option<LeaseId> {
    grant(db, job, round, shard, worker, false).await
}

/// The default reputation policy's rule, as the coordinator applies it.
fn default_rule(r: &Record<'_>) -> Option<String> {
    ReputationPolicy::default().quarantine_reason(r.agreed, r.disputed, r.refuted, r.last_dispute)
}

/// Judges records by the default policy, now.
fn judge() -> Judge<'static> {
    let now = now();
    Judge {
        rule: &default_rule,
        now,
        released_before: now - ReputationPolicy::default().quarantine_for.as_secs_f64(),
    }
}

/// Grants a lease, or a backup lease, on a slot; the lease id, if granted.
async fn grant(
    db: &Db,
    job: JobId,
    round: u32,
    shard: u32,
    worker: WorkerId,
    backup: bool,
) -> Option<LeaseId> {
    let g = NewLease {
        job,
        round,
        shard,
        base: shard,
        worker,
        backup,
    };
    db.grant_leases(&[g], "test")
        .await
        .unwrap()
        .first()
        .map(|g| g.id)
}

fn update(shard: u32, worker: WorkerId, lease: LeaseId) -> UpdateRow {
    UpdateRow {
        shard,
        worker_id: worker,
        lease_id: lease,
        update_sha: blob(&format!("u{lease}")),
        samples: 10,
        train_loss: 0.5,
        norm: 1.0,
        train_millis: 5,
        accepted_at: 0.0,
    }
}

fn round_row(round: u32) -> RoundRow {
    RoundRow {
        metrics: RoundMetrics {
            round,
            loss: 0.3,
            accuracy: 0.9,
            train_loss: 0.5,
            updates: 1,
            seconds: 1.0,
            train_seconds: 0.5,
            aggregate_seconds: 0.1,
            disputed: 0,
            no_work: 0,
            epsilon: None,
        },
        global_sha: blob(&format!("g{}", round + 1)),
        verdicts: Vec::new(),
        next_replicas: Vec::new(),
        outputs: None,
        model: None,
    }
}

async fn status(db: &Db, job: JobId) -> JobStatus {
    db.job(job).await.unwrap().unwrap().status
}

/// The statuses a job went through, from its log.
async fn path(db: &Db, job: JobId) -> Vec<JobStatus> {
    db.transitions(job)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, to)| to)
        .collect()
}

async fn a_cancel_during_aggregation_wins_and_survives_a_restart(url: &str) {
    let db = Db::connect(url, 4).await.unwrap();
    let (j, w) = (job(&db, 1, 3).await, worker(&db).await);
    let l = lease(&db, j, 1, 0, w).await.unwrap();
    assert_eq!(
        db.accept_update(j, 1, &update(0, w, l)).await.unwrap(),
        Ok(true)
    );
    assert!(db.claim_aggregation(j, 1, "a", 0.0).await.unwrap());
    // The cancel lands while the round is being aggregated ...
    assert_eq!(
        db.finish_job(j, JobStatus::Cancelled, None).await.unwrap(),
        Ok(())
    );
    // ... so the aggregation's result is discarded, not written.
    assert!(!recorded(&db, j, "a", 1, 2, JobStatus::Running).await);
    assert!(db.rounds(j).await.unwrap().is_empty());
    drop(db);
    let db = Db::connect(url, 4).await.unwrap();
    assert_eq!(status(&db, j).await, JobStatus::Cancelled);
    assert_eq!(
        path(&db, j).await,
        [JobStatus::Pending, JobStatus::Running, JobStatus::Cancelled]
    );
    assert!(db.unfinished_jobs().await.unwrap().is_empty());
}

async fn a_cancel_racing_the_last_update_counts_the_shard_at_most_once(url: &str) {
    let db = Db::connect(url, 4).await.unwrap();
    let w = worker(&db).await;

    // The update commits first: it counts, the round is complete, then the
    // cancel ends the job and nobody can claim the aggregation.
    let j = job(&db, 1, 2).await;
    let l = lease(&db, j, 1, 0, w).await.unwrap();
    assert_eq!(
        db.accept_update(j, 1, &update(0, w, l)).await.unwrap(),
        Ok(true)
    );
    assert_eq!(
        db.finish_job(j, JobStatus::Cancelled, None).await.unwrap(),
        Ok(())
    );
    assert!(!db.claim_aggregation(j, 1, "a", 0.0).await.unwrap());
    assert_eq!(db.round_updates(j, 1).await.unwrap().len(), 1);

    // The cancel commits first: the job is over (and the lease revoked
    // with it), so the update is refused and nothing is counted.
    let j = job(&db, 1, 2).await;
    let l = lease(&db, j, 1, 0, w).await.unwrap();
    assert_eq!(
        db.finish_job(j, JobStatus::Cancelled, None).await.unwrap(),
        Ok(())
    );
    assert_eq!(
        db.accept_update(j, 1, &update(0, w, l)).await.unwrap(),
        Err(UpdateRefusal::JobMovedOn)
    );
    assert!(db.round_updates(j, 1).await.unwrap().is_empty());
    assert_eq!(status(&db, j).await, JobStatus::Cancelled);
}

async fn the_same_update_twice_counts_once(url: &str) {
    let db = Db::connect(url, 4).await.unwrap();
    let (j, w) = (job(&db, 2, 1).await, worker(&db).await);
    let l = lease(&db, j, 1, 0, w).await.unwrap();
    let u = update(0, w, l);
    let (a, b) = tokio::join!(db.accept_update(j, 1, &u), db.accept_update(j, 1, &u));
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| o.is_err());
    assert_eq!(
        outcomes,
        [Ok(false), Err(UpdateRefusal::LeaseNotActive)],
        "one accepted (round not complete yet), one refused"
    );
    assert_eq!(db.round_updates(j, 1).await.unwrap().len(), 1);
    // A shard with an update is never leased again in that round.
    assert_eq!(lease(&db, j, 1, 0, w).await, None);
}

async fn a_shard_has_at_most_one_active_lease(url: &str) {
    let db = Db::connect(url, 4).await.unwrap();
    let (j, a, b) = (job(&db, 1, 1).await, worker(&db).await, worker(&db).await);
    let first = lease(&db, j, 1, 0, a).await.unwrap();
    assert_eq!(lease(&db, j, 1, 0, b).await, None);
    assert_eq!(
        db.end_leases(&[(first, LeaseStatus::Expired)], "test")
            .await
            .unwrap(),
        1
    );
    let second = lease(&db, j, 1, 0, b).await.unwrap();
    assert!(second > first, "ids are never reused");
    assert_eq!(
        db.accept_update(j, 1, &update(0, a, first)).await.unwrap(),
        Err(UpdateRefusal::LeaseNotActive),
        "an expired lease's update is refused"
    );
    // Leases of another round, or of a finished job, are not granted.
    assert_eq!(lease(&db, j, 2, 0, a).await, None);
}

async fn a_slot_has_one_backup_lease_and_the_first_update_wins(url: &str) {
    let db = Db::connect(url, 4).await.unwrap();
    let j = job(&db, 2, 1).await;
    let (a, b, c) = (worker(&db).await, worker(&db).await, worker(&db).await);
    let held = lease(&db, j, 1, 0, a).await.unwrap();
    let backup = grant(&db, j, 1, 0, b, true).await.unwrap();
    assert_eq!(
        grant(&db, j, 1, 0, c, true).await,
        None,
        "one backup a slot"
    );
    // The backup's update comes first: it counts, and the lease it backed
    // up ends with it, in the same transaction.
    assert_eq!(
        db.accept_update(j, 1, &update(0, b, backup)).await.unwrap(),
        Ok(false)
    );
    assert_eq!(
        db.accept_update(j, 1, &update(0, a, held)).await.unwrap(),
        Err(UpdateRefusal::LeaseNotActive),
        "the slower update is refused"
    );
    assert_eq!(
        db.end_leases(&[(held, LeaseStatus::Revoked)], "test")
            .await
            .unwrap(),
        0,
        "already revoked with the winning update"
    );
    let updates = db.round_updates(j, 1).await.unwrap();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].worker_id, b);
    // A slot with an update gets no lease of either kind.
    assert_eq!(grant(&db, j, 1, 0, c, true).await, None);
    assert_eq!(lease(&db, j, 1, 0, c).await, None);
    // One backup a worker a round, even once the first has ended: b, which
    // won slot 0 as a backup, may not back up slot 1 as well; c may.
    lease(&db, j, 1, 1, a).await.unwrap();
    assert_eq!(
        grant(&db, j, 1, 1, b, true).await,
        None,
        "b had its backup of round 1"
    );
    assert_eq!(
        db.round_backup_identities(j, 1).await.unwrap(),
        vec![format!("worker:{b}")]
    );
    assert!(grant(&db, j, 1, 1, c, true).await.is_some());
    // Keyed on the account, not the connection: a second connection of an
    // account that had its backup gets none.
    let account = "0x00000000000000000000000000000000000000cc";
    let (first, second) = (
        paid_worker(&db, Some(account)).await,
        paid_worker(&db, Some(account)).await,
    );
    let k = job(&db, 2, 1).await;
    lease(&db, k, 1, 0, a).await.unwrap();
    lease(&db, k, 1, 1, a).await.unwrap();
    assert!(grant(&db, k, 1, 0, first, true).await.is_some());
    assert_eq!(
        grant(&db, k, 1, 1, second, true).await,
        None,
        "the account had its backup of round 1"
    );
    assert_eq!(
        db.round_backup_identities(k, 1).await.unwrap(),
        vec![account.to_string()]
    );
}

async fn a_round_closed_on_its_quorum_takes_no_more_work(url: &str) {
    let db = Db::connect(url, 4).await.unwrap();
    let j = job(&db, 4, 2).await;
    let mut leases = Vec::new();
    for shard in 0..4 {
        let w = worker(&db).await;
        leases.push((w, lease(&db, j, 1, shard, w).await.unwrap()));
    }
    for (shard, &(w, l)) in leases.iter().enumerate().take(2) {
        db.accept_update(j, 1, &update(shard as u32, w, l))
            .await
            .unwrap()
            .unwrap();
    }
    assert!(
        !db.close_round_on_quorum(j, 1, 3).await.unwrap(),
        "two of three"
    );
    let (w, l) = leases[2];
    db.accept_update(j, 1, &update(2, w, l))
        .await
        .unwrap()
        .unwrap();
    assert!(db.close_round_on_quorum(j, 1, 3).await.unwrap());
    assert!(!db.close_round_on_quorum(j, 1, 3).await.unwrap(), "once");
    assert_eq!(db.round_slots(j).await.unwrap(), 3);
    // The straggler's lease was revoked with it: its update is refused,
    // and its shard is not leased again this round.
    let (w, l) = leases[3];
    assert!(
        db.accept_update(j, 1, &update(3, w, l))
            .await
            .unwrap()
            .is_err()
    );
    assert_eq!(lease(&db, j, 1, 3, worker(&db).await).await, None);
    assert_eq!(db.round_updates(j, 1).await.unwrap().len(), 3);
    assert!(db.claim_aggregation(j, 1, "a", 0.0).await.unwrap());
}

async fn exactly_one_claimant_aggregates_and_a_round_is_recorded_once(url: &str) {
    let db = Db::connect(url, 4).await.unwrap();
    let (j, w) = (job(&db, 1, 2).await, worker(&db).await);
    let l = lease(&db, j, 1, 0, w).await.unwrap();
    db.accept_update(j, 1, &update(0, w, l))
        .await
        .unwrap()
        .unwrap();
    let (a, b) = tokio::join!(
        db.claim_aggregation(j, 1, "a", 0.0),
        db.claim_aggregation(j, 1, "b", 0.0)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a ^ b, "exactly one claim wins");
    let (winner, loser) = if a { ("a", "b") } else { ("b", "a") };
    assert!(
        !db.claim_aggregation(j, 1, winner, 0.0).await.unwrap(),
        "a live claim is not taken again"
    );
    assert!(
        !recorded(&db, j, loser, 1, 2, JobStatus::Running).await,
        "only the holder records the round"
    );
    assert!(recorded(&db, j, winner, 1, 2, JobStatus::Running).await);
    assert!(
        !recorded(&db, j, winner, 1, 2, JobStatus::Running).await,
        "and only once"
    );
    assert_eq!(db.rounds(j).await.unwrap().len(), 1);
    assert_eq!(db.job(j).await.unwrap().unwrap().round, 2);
    // A claim whose holder died is taken over once stale.
    let l = lease(&db, j, 2, 0, w).await.unwrap();
    db.accept_update(j, 2, &update(0, w, l))
        .await
        .unwrap()
        .unwrap();
    assert!(db.claim_aggregation(j, 2, "dead", 0.0).await.unwrap());
    assert!(!db.claim_aggregation(j, 2, "c", now() - 60.0).await.unwrap());
    assert!(db.claim_aggregation(j, 2, "c", now() + 1.0).await.unwrap());
    assert!(recorded(&db, j, "c", 2, 2, JobStatus::Completed).await);
    assert_eq!(status(&db, j).await, JobStatus::Completed);
}

async fn finished_jobs_stay_finished_even_against_raw_sql(url: &str) {
    let db = Db::connect(url, 4).await.unwrap();
    let j = job(&db, 1, 1).await;
    assert_eq!(
        db.finish_job(j, JobStatus::Failed, Some("boom"))
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        db.finish_job(j, JobStatus::Cancelled, None).await.unwrap(),
        Err(JobRefusal::State(JobStatus::Failed))
    );
    assert_eq!(
        db.finish_job(JobId(9999), JobStatus::Cancelled, None)
            .await
            .unwrap(),
        Err(JobRefusal::Missing)
    );
    drop(db);
    // Even a statement that bypasses the guards is stopped by the schema.
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    for to in ["running", "pending", "completed"] {
        let r = sqlx::query("UPDATE jobs SET status = $1 WHERE id = $2")
            .bind(to)
            .bind(j.db())
            .execute(&pool)
            .await;
        assert!(r.is_err(), "failed -> {to} must be refused");
    }
    pool.close().await;
    let db = Db::connect(url, 4).await.unwrap();
    assert_eq!(status(&db, j).await, JobStatus::Failed);
    assert_eq!(path(&db, j).await, [JobStatus::Pending, JobStatus::Failed]);
}

/// Every (from, to) pair of job statuses, tried with a raw statement that
/// bypasses every guard of the store: the schema allows exactly what
/// `JobStatus::may_become` does.
async fn the_schema_allows_exactly_the_status_moves_of_may_become(url: &str) {
    let db = Db::connect(url, 4).await.unwrap();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let set = |j: JobId, to: JobStatus| {
        sqlx::query("UPDATE jobs SET status = $1 WHERE id = $2")
            .bind(to.as_str())
            .bind(j.db())
            .execute(&pool)
    };
    for from in JobStatus::ALL {
        for to in JobStatus::ALL.into_iter().filter(|&to| to != from) {
            // A job at `from`, by an allowed path: a paid job starts in
            // funding, any other in pending; a finished one trained first.
            let j = if from == JobStatus::Funding {
                funding_job(&db).await
            } else {
                job(&db, 1, 1).await
            };
            if from.is_finished() {
                set(j, JobStatus::Running).await.unwrap();
            }
            if from != JobStatus::Funding && from != JobStatus::Pending {
                set(j, from).await.unwrap();
            }
            let allowed = match set(j, to).await {
                Ok(done) => {
                    assert_eq!(done.rows_affected(), 1);
                    true
                }
                // Refused by the trigger, and for nothing else.
                Err(e) if e.to_string().contains("may not go from") => false,
                Err(e) => panic!("{} -> {}: {e}", from.as_str(), to.as_str()),
            };
            check_move(allowed, from, to);
            let now_at = if allowed { to } else { from };
            assert_eq!(status(&db, j).await, now_at);
        }
    }
    pool.close().await;
}

fn check_move(allowed: bool, from: JobStatus, to: JobStatus) {
    assert_eq!(
        allowed,
        from.may_become(to),
        "{} -> {}: the schema {} it",
        from.as_str(),
        to.as_str(),
        if allowed { "allows" } else { "refuses" }
    );
}

/// A paid job's row as it is created, waiting for its deposit.
async fn funding_job(db: &Db) -> JobId {
    let row = NewJob {
        status: JobStatus::Funding,
        ..job_row(1, 1)
    };
    db.insert_job(&row, &[(Some(blob("d0")), 10)])
        .await
        .unwrap()
}

/// The schema of the builds before versioned migrations, as they created it.
const SCHEMA_BEFORE_MIGRATIONS: &str =
    include_str!("../../store/migrations/sqlite/0001_initial.sql");

#[tokio::test]
async fn a_data_directory_from_before_migrations_upgrades_in_place() {
    let (_db, url) = Fresh::sqlite();
    let url = url.as_str();
    {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&format!("{url}?mode=rwc"))
            .await
            .unwrap();
        sqlx::raw_sql(SCHEMA_BEFORE_MIGRATIONS)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO jobs (id, name, spec, status, round, global_sha, input_shape, classes, \
             validation_sha, train_samples, validation_samples, round_started_at, created_at) \
             VALUES (1, 't', $1, 'running', 2, $2, '[4]', 3, $3, 100, 20, 0, 0)",
        )
        .bind(serde_json::to_string(&spec(1, 3)).unwrap())
        .bind(blob("g").to_string())
        .bind(blob("v").to_string())
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO job_shards (job_id, shard, data_sha, samples) VALUES (1, 0, $1, 10)",
        )
        .bind(blob("d0").to_string())
        .execute(&pool)
        .await
        .unwrap();
        for id in [1, 2] {
            // Two leases left active on one shard by a killed old process.
            sqlx::query(
                "INSERT INTO leases (id, job_id, round, shard, worker_id, status, issued_at) \
                 VALUES ($1, 1, 2, 0, 1, 'active', 0)",
            )
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
    let db = Db::connect(url, 4).await.unwrap();
    let row = db.job(JobId(1)).await.unwrap().unwrap();
    assert_eq!((row.status, row.round), (JobStatus::Running, 2));
    assert_eq!(db.unfinished_jobs().await.unwrap().len(), 1);
    assert_eq!(path(&db, JobId(1)).await, [JobStatus::Running]);
    let w = worker(&db).await;
    assert!(
        lease(&db, JobId(1), 2, 0, w).await.is_some(),
        "old leases ended"
    );
    // And it opens again without re-running anything.
    drop(db);
    Db::connect(url, 4).await.unwrap();
}

/// Whether `instance`'s aggregation of `round` (with no verdicts) is
/// recorded, moving the job to `next` in `status`.
async fn recorded(
    db: &Db,
    job: JobId,
    instance: &str,
    round: u32,
    next: u32,
    status: JobStatus,
) -> bool {
    db.finish_round(job, instance, &round_row(round), next, status, &judge())
        .await
        .unwrap()
        .is_some()
}

/// Records `round` of `job` with `verdicts`; the quarantines it causes.
async fn judged_round(
    db: &Db,
    job: JobId,
    round: u32,
    verdicts: &[UpdateVerdict],
) -> Vec<oblivion_store::Quarantined> {
    assert!(db.claim_aggregation(job, round, "a", 0.0).await.unwrap());
    let row = RoundRow {
        verdicts: verdicts.to_vec(),
        ..round_row(round)
    };
    db.finish_round(job, "a", &row, round + 1, JobStatus::Running, &judge())
        .await
        .unwrap()
        .expect("the round is recorded")
}

async fn only_verified_work_is_credited_and_a_quarantine_outlives_the_connection(url: &str) {
    let db = Db::connect(url, 4).await.unwrap();
    let j = job(&db, 2, 3).await;
    let (honest, liar) = (
        "0x00000000000000000000000000000000000000aa",
        "0x00000000000000000000000000000000000000bb",
    );
    let h = paid_worker(&db, Some(honest)).await;
    let b = paid_worker(&db, Some(liar)).await;
    let verdict = |shard, worker, verdict| UpdateVerdict {
        shard,
        worker_id: worker,
        samples: 10,
        verdict,
    };
    for round in 1..=2 {
        for (shard, w) in [(0, h), (1, b)] {
            let l = lease(&db, j, round, shard, w).await.unwrap();
            db.accept_update(j, round, &update(shard, w, l))
                .await
                .unwrap()
                .unwrap();
        }
        let quarantined = judged_round(
            &db,
            j,
            round,
            &[
                verdict(0, h, Verdict::Verified),
                verdict(1, b, Verdict::Disputed("points away".into())),
            ],
        )
        .await;
        if round == 1 {
            assert!(quarantined.is_empty(), "one result decides nothing");
        } else {
            assert_eq!(quarantined.len(), 1, "{quarantined:?}");
            assert_eq!(quarantined[0].identity, liar);
            assert!(
                quarantined[0].reason.contains("2 of 2 results disputed"),
                "{quarantined:?}"
            );
            assert!(
                quarantined[0].reason.contains("points away"),
                "{quarantined:?}"
            );
        }
    }
    assert_eq!(
        db.paid_work(j).await.unwrap(),
        vec![(honest.to_string(), 20)]
    );
    let credited: Vec<(WorkerId, u64)> = db
        .contributors(j)
        .await
        .unwrap()
        .iter()
        .map(|c| (c.worker_id, c.samples))
        .collect();
    assert_eq!(credited, vec![(h, 20), (b, 0)]);
    let rounds = db.rounds(j).await.unwrap();
    assert_eq!(rounds.len(), 2);
    // What the leaderboards are made of: the verified work alone.
    let work: Vec<(String, u64, u64)> = db
        .verified_work(None)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.identity, d.samples, d.rows))
        .collect();
    assert_eq!(work, vec![(honest.to_string(), 20, 0)]);
    assert_eq!(db.verified_work(Some(j)).await.unwrap().len(), 1);
    let records = db.standings().await.unwrap();
    assert!(
        records.iter().any(|r| r.identity == liar && r.quarantined),
        "{records:?}"
    );

    // A new connection under the same account is still quarantined, and
    // no instance takes its update.
    let again = paid_worker(&db, Some(liar)).await;
    let record = db.reputation(liar).await.unwrap().unwrap();
    assert_eq!((record.agreed, record.disputed), (0, 2));
    assert!(record.quarantined.is_some());
    let l = lease(&db, j, 3, 1, again).await.unwrap();
    let refused = db.accept_update(j, 3, &update(1, again, l)).await.unwrap();
    assert!(
        matches!(refused, Err(UpdateRefusal::Quarantined(_))),
        "{refused:?}"
    );
    let honest_record = db.reputation(honest).await.unwrap().unwrap();
    assert_eq!((honest_record.agreed, honest_record.disputed), (2, 0));
    assert!(honest_record.quarantined.is_none());

    // Updates rejected on arrival count too, for anonymous workers by
    // their connection.
    let anonymous = worker(&db).await;
    assert!(
        db.record_rejection(anonymous, "NaN", &judge())
            .await
            .unwrap()
            .is_none()
    );
    let q = db
        .record_rejection(anonymous, "NaN", &judge())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(q.identity, format!("worker:{anonymous}"));
}

/// Group commit: a batch of updates is recorded in one transaction, each
/// as it would be alone and in order (the second update for a slot is
/// refused); a refused one leaves no trace, and the others stand.
async fn a_batch_records_each_update_as_it_would_alone(url: &str) {
    let db = Db::connect(url, 4).await.unwrap();
    let j = job(&db, 3, 1).await;
    let (a, b, c) = (worker(&db).await, worker(&db).await, worker(&db).await);
    let first = lease(&db, j, 1, 0, a).await.unwrap();
    let backup = grant(&db, j, 1, 0, b, true).await.unwrap();
    let second = lease(&db, j, 1, 1, c).await.unwrap();
    let last = lease(&db, j, 1, 2, a).await.unwrap();
    let cancelled = job(&db, 1, 1).await;
    let gone = lease(&db, cancelled, 1, 0, b).await.unwrap();
    assert_eq!(
        db.finish_job(cancelled, JobStatus::Cancelled, None)
            .await
            .unwrap(),
        Ok(())
    );
    let at = |job: JobId, update: UpdateRow| Accepting {
        job,
        round: 1,
        update,
    };
    let outcomes = db
        .accept_updates(&[
            at(j, update(0, a, first)),
            at(j, update(0, b, backup)),
            at(cancelled, update(0, b, gone)),
            at(j, update(1, c, second)),
            at(j, update(1, c, second)),
            at(j, update(2, a, last)),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            Ok(false),
            Err(UpdateRefusal::LeaseNotActive),
            Err(UpdateRefusal::JobMovedOn),
            Ok(false),
            Err(UpdateRefusal::LeaseNotActive),
            Ok(true),
        ],
        "the backup's lease ended with the slot's first update, the cancelled job takes none, \
         the same update twice counts once, and the last slot completes the round"
    );
    let stored: Vec<LeaseId> = db
        .round_updates(j, 1)
        .await
        .unwrap()
        .iter()
        .map(|u| u.lease_id)
        .collect();
    assert_eq!(stored, [first, second, last]);
    assert!(db.round_updates(cancelled, 1).await.unwrap().is_empty());

    // An update refused because its slot already has one (on PostgreSQL,
    // another instance's, committed after this lease was checked) leaves
    // its lease as it was: still active, still its holder's.
    let k = job(&db, 2, 1).await;
    let held = lease(&db, k, 1, 0, c).await.unwrap();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    sqlx::query(
        "INSERT INTO updates (job_id, round, shard, lease_id, worker_id, update_sha, samples, \
         train_loss, norm, train_millis, accepted_at, verdict) \
         VALUES ($1, 1, 0, $2, $3, 'other', 10, 0.5, 1.0, 5, 0.0, 'pending')",
    )
    .bind(k.db())
    .bind(held.db() + 1000)
    .bind(a.db())
    .execute(&pool)
    .await
    .unwrap();
    let outcomes = db
        .accept_updates(&[at(k, update(0, c, held)), at(j, update(2, a, last))])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            Err(UpdateRefusal::Duplicate),
            Err(UpdateRefusal::JobMovedOn)
        ]
    );
    assert_eq!(
        db.held_lease(held, "hash").await.unwrap(),
        Some((k, 1, 0, c)),
        "the refused update's lease is untouched"
    );
}
