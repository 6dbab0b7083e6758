//! Dispatch: the workers connected to this instance and the leases they
//! hold. Plans in the hub, records in the database, then tells the workers;
//! expiry, faults and quarantines end leases, and their holders are told.
//! Owns the hub and the workers' queues; calls no other service.

use oblivion_protocol::{LeaseId, WorkerId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use oblivion_protocol::api::{LiveJobView, WorkerView};
use oblivion_protocol::wire::{CoordinatorMessage, LeaseProgress};
use tokio::sync::mpsc::UnboundedSender;

use super::shared::{JobsVersion, Parts, judge, lock, quarantine_rule, token_hash};
use crate::config::Config;
use crate::error::AppError;
use crate::hub::{Ended, Grant, Hub, LeasePolicy, Worker};
use crate::states::LeaseStatus;
use oblivion_store::{Backend, Db, NewLease, Quarantined, now};

/// This instance's workers and leases: the hub, the workers' queues, and
/// what the other instances last published of theirs.
pub struct Dispatch {
    config: Arc<Config>,
    db: Db,
    /// This process's name in the database.
    instance: Arc<str>,
    hub: Mutex<Hub>,
    /// Each connected worker's outgoing queue, by worker id: the hub owns
    /// no connections. Locked only while the hub is (hub first), so that a
    /// worker's messages leave in the order the hub decided them.
    links: Mutex<HashMap<WorkerId, UnboundedSender<CoordinatorMessage>>>,
    /// Origin of the monotonic clock the hub's deadlines use.
    started: Instant,
    /// Wakes the dispatch task (one planner at a time, so that two plans
    /// never race for a shard; the database would refuse the loser anyway).
    wake: tokio::sync::Notify,
    /// Workers connected to the other instances, as they last published.
    peer_workers: Mutex<Vec<WorkerView>>,
    jobs_version: Arc<JobsVersion>,
}

/// Longest reason a worker may give for returning a lease that is kept,
/// in characters (the rest is dropped).
pub const MAX_RETURN_REASON_CHARS: usize = 256;

/// The lease the store records for a planned grant.
fn new_lease(g: &Grant) -> NewLease {
    NewLease {
        job: g.job,
        round: g.round,
        shard: g.shard,
        base: g.base,
        worker: g.worker,
        backup: g.backup,
    }
}

impl Dispatch {
    /// Dispatch under the configured lease policy, with no workers and no
    /// jobs.
    pub(super) fn new(parts: &Parts) -> Dispatch {
        let Parts {
            config,
            db,
            instance,
            jobs_version,
            ..
        } = parts.clone();
        let policy = LeasePolicy {
            cap: config.leases.lease_cap,
            ttl: config.leases.lease_ttl,
            max_lifetime: config.leases.lease_max_lifetime,
            stall: config.leases.lease_stall,
        };
        Dispatch {
            config,
            db,
            instance,
            hub: Mutex::new(Hub::new(policy)),
            links: Mutex::new(HashMap::new()),
            started: Instant::now(),
            wake: tokio::sync::Notify::new(),
            peer_workers: Mutex::new(Vec::new()),
            jobs_version,
        }
    }

    /// The hub, locked. Never held across a call that locks it again
    /// (`settle_ended` does): the lock is not re-entrant.
    pub(super) fn hub(&self) -> MutexGuard<'_, Hub> {
        lock(&self.hub)
    }

    /// The workers' outgoing queues; take the hub's lock first.
    fn links(&self) -> MutexGuard<'_, HashMap<WorkerId, UnboundedSender<CoordinatorMessage>>> {
        lock(&self.links)
    }

    /// Seconds on this process's monotonic clock (for deadlines).
    pub(super) fn clock(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Workers connected now, to this instance and (as they last
    /// published them) to the others sharing its database.
    pub fn workers(&self) -> Vec<WorkerView> {
        self.all_workers(&self.hub())
    }

    fn all_workers(&self, hub: &Hub) -> Vec<WorkerView> {
        let mut workers = hub.worker_views(self.clock());
        workers.extend(lock(&self.peer_workers).iter().cloned());
        workers.sort_by_key(|w| w.id);
        workers
    }

    /// The network as pages see it: every worker (this instance's and, as
    /// last published, the others') and every live job, read under one
    /// lock of the hub so that the two agree.
    pub(super) fn network(&self) -> (Vec<WorkerView>, Vec<LiveJobView>) {
        let hub = self.hub();
        (self.all_workers(&hub), hub.live_jobs())
    }

    /// Registers a worker connection; returns its id and token.
    pub async fn connect_worker(
        &self,
        mut view: WorkerView,
        payout: Option<String>,
        max_leases: u32,
        tx: UnboundedSender<CoordinatorMessage>,
    ) -> Result<(WorkerId, String), AppError> {
        let token = hex::encode(rand::random::<[u8; 24]>());
        view.payout_address = payout.clone();
        view.id = self
            .db
            .insert_worker(
                &view,
                payout.as_deref(),
                &token_hash(&token),
                &self.instance,
            )
            .await
            .map_err(AppError::db)?;
        let id = view.id;
        // A quarantine outlives the connection: it is kept under the
        // worker's account.
        let identity = crate::reputation::identity(payout.as_deref(), id);
        let released_before =
            oblivion_store::now() - self.config.reputation().quarantine_for.as_secs_f64();
        self.db
            .release_quarantine(&identity, released_before)
            .await
            .map_err(AppError::db)?;
        let record = self
            .db
            .reputation(&identity)
            .await
            .map_err(AppError::db)?
            .unwrap_or_default();
        view.agreed = record.agreed;
        view.disputed = record.disputed;
        let quarantine = record.quarantined;
        let now = self.clock();
        {
            let mut hub = self.hub();
            hub.add_worker(Worker::new(view, token.clone(), max_leases, now));
            self.links().insert(id, tx);
            if let Some(reason) = &quarantine {
                hub.quarantine(&identity, reason);
            }
        }
        tracing::info!(
            worker = %id,
            quarantined = quarantine.is_some(),
            "worker connected"
        );
        Ok((id, token))
    }

    /// Hands out work to a worker whose connection is ready.
    pub async fn worker_ready(&self) {
        self.request_pump();
    }

    /// Forgets a disconnected worker; its leases go back to pending.
    pub async fn disconnect_worker(&self, id: WorkerId) {
        let (worker, ended) = {
            let mut hub = self.hub();
            self.links().remove(&id);
            hub.remove_worker(id)
        };
        if worker.is_some() {
            tracing::info!(worker = %id, leases = ended.len(), "worker disconnected");
        }
        self.settle_ended(ended, "worker disconnected").await;
        if let Err(e) = self.db.forget_idle_worker(id).await {
            tracing::warn!(worker = %id, "forgetting an idle worker: {e}");
        }
        self.request_pump();
    }

    /// Renews a worker's leases.
    pub fn heartbeat(&self, id: WorkerId, progress: &[LeaseProgress]) {
        let now = self.clock();
        self.hub().heartbeat(id, progress, now);
    }

    /// A worker gives a lease back.
    pub async fn return_lease(
        &self,
        id: WorkerId,
        lease: LeaseId,
        reason: &str,
        decline_job: bool,
    ) {
        let ended = self.hub().return_lease(id, lease, decline_job);
        // The worker's words, stored with every return: bounded.
        let reason: String = reason.chars().take(MAX_RETURN_REASON_CHARS).collect();
        self.settle_ended(ended.into_iter().collect(), &reason)
            .await;
        self.request_pump();
    }

    /// Puts newly quarantined identities' connected workers in quarantine
    /// (their leases end and go to others).
    pub(super) async fn apply_quarantines(&self, quarantined: &[Quarantined]) {
        for q in quarantined {
            tracing::warn!(
                identity = q.identity,
                reason = q.reason,
                "worker quarantined"
            );
            let ended = self.hub().quarantine(&q.identity, &q.reason);
            self.settle_ended(ended, "worker quarantined").await;
        }
    }

    /// A worker takes no more leases.
    pub fn drain(&self, id: WorkerId) {
        self.hub().drain(id);
    }

    /// Records leases the hub ended and tells their holders.
    pub(super) async fn settle_ended(&self, ended: Vec<Ended>, reason: &str) {
        if ended.is_empty() {
            return;
        }
        let records: Vec<(LeaseId, LeaseStatus)> =
            ended.iter().map(|e| (e.lease.id, e.status)).collect();
        if let Err(err) = self.db.end_leases(&records, reason).await {
            tracing::error!("recording {} ended lease(s): {err}", records.len());
        }
        // Under the hub's lock: a Revoke then never overtakes the Lease it
        // ends, which the pump sends under the same lock.
        let _hub = self.hub();
        let links = self.links();
        for e in &ended {
            tracing::info!(
                lease = %e.lease.id,
                job = %e.lease.job,
                shard = e.lease.shard,
                status = e.status.as_str(),
                "lease ended"
            );
            if let Some(link) = links.get(&e.lease.worker) {
                let _ = link.send(CoordinatorMessage::Revoke {
                    lease_id: e.lease.id,
                    reason: format!("{}: {reason}", e.status.as_str()),
                });
            }
        }
    }

    /// Expires leases whose holders stopped sending heartbeats, or that
    /// outlived the lease lifetime.
    pub(super) async fn reap(&self) {
        let now = self.clock();
        let ended = self.hub().expire(now);
        if !ended.is_empty() {
            // Held to its lifetime, or without progress: the holder's fault
            // (a vanished worker's leases expire instead, at no cost).
            let overdue: Vec<(LeaseId, WorkerId)> = ended
                .iter()
                .filter(|e| e.status == LeaseStatus::Overdue)
                .map(|e| (e.lease.id, e.lease.worker))
                .collect();
            self.settle_ended(
                ended,
                "no heartbeat before the deadline, past the lease lifetime, or no progress",
            )
            .await;
            for (lease, worker) in overdue {
                self.count_against(
                    worker,
                    &format!("lease {lease} held past its lifetime or without progress"),
                )
                .await;
            }
            self.request_pump();
        }
    }

    /// Once a second: records this instance as alive; ends the leases and
    /// releases the claims of instances that died; on PostgreSQL, trades
    /// worker lists with the other instances.
    pub(super) async fn keep_alive(&self) {
        if let Err(e) = self.db.instance_seen(&self.instance).await {
            tracing::error!("recording this instance as alive: {e}");
        }
        let stale_before = now() - self.config.leases.instance_timeout.as_secs_f64();
        match self.db.reap_instances(stale_before).await {
            Ok(jobs) if !jobs.is_empty() => {
                tracing::warn!(?jobs, "ended the leases and claims of a stopped instance");
            }
            Ok(_) => {}
            Err(e) => tracing::error!("reaping stopped instances: {e}"),
        }
        if self.db.backend() == Backend::Postgres {
            self.exchange_workers().await;
        }
    }

    /// Asks for a dispatch pass soon. Passes run one at a time on their own
    /// task, so that requests made while one runs are served together by
    /// the next (one transaction for all the leases they grant).
    pub(super) fn request_pump(&self) {
        self.wake.notify_one();
    }

    /// Runs dispatch passes as they are requested, forever.
    pub(super) async fn pump_loop(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            self.pump().await;
        }
    }

    /// Hands pending shards to workers with room: plans in the hub, records
    /// the leases the database accepts, then sends them. A lease reaches a
    /// worker only once its row is committed.
    async fn pump(&self) {
        let plan = self.hub().plan(now());
        if plan.is_empty() {
            return;
        }
        let leases: Vec<NewLease> = plan.iter().map(new_lease).collect();
        let granted = match self.db.grant_leases(&leases, &self.instance).await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("recording {} lease(s): {e}", plan.len());
                return;
            }
        };
        let mut orphans = Vec::new();
        let mut started = false;
        {
            let mut hub = self.hub();
            let links = self.links();
            let now = self.clock();
            for g in granted {
                started |= g.started_job;
                match hub.grant(plan[g.index], g.id, now) {
                    Some(lease) => {
                        if let (Some(task), Some(link)) =
                            (hub.task(&lease), links.get(&lease.worker))
                        {
                            let _ = link.send(CoordinatorMessage::Lease(task));
                        }
                    }
                    None => orphans.push((g.id, LeaseStatus::Revoked)),
                }
            }
        }
        if !orphans.is_empty()
            && let Err(e) = self
                .db
                .end_leases(&orphans, "its worker or job went away while it was granted")
                .await
        {
            tracing::error!("ending {} orphaned lease(s): {e}", orphans.len());
        }
        if started {
            self.jobs_version.bump();
        }
    }

    /// Ends `lease`, held by `worker`, for a fault of the worker's
    /// (`reason`): the shard is re-issued, and the fault is a disputed
    /// result on the worker's record.
    pub async fn fault_lease(&self, lease: LeaseId, worker: WorkerId, reason: &str) {
        let ended = self.hub().reject(lease);
        self.settle_ended(ended.into_iter().collect(), reason).await;
        self.count_against(worker, reason).await;
        self.request_pump();
        tracing::warn!(%lease, "lease ended: {reason}");
    }

    /// Puts a disputed result on `worker`'s record for `reason`, and
    /// quarantines it if the policy says so.
    pub(super) async fn count_against(&self, worker: WorkerId, reason: &str) {
        self.hub().record_result(worker, false, 0);
        let rule = quarantine_rule(&self.config);
        match self
            .db
            .record_rejection(worker, reason, &judge(&self.config, &rule))
            .await
        {
            Ok(q) => {
                self.apply_quarantines(&q.into_iter().collect::<Vec<_>>())
                    .await
            }
            Err(e) => tracing::error!(%worker, "recording a fault: {e}"),
        }
    }

    /// Publishes this instance's workers and reads the other instances'.
    async fn exchange_workers(&self) {
        let mine = self.hub().worker_views(self.clock());
        match serde_json::to_string(&mine) {
            Ok(json) => {
                if let Err(e) = self.db.publish_workers(&self.instance, &json).await {
                    tracing::error!("publishing this instance's workers: {e}");
                }
            }
            Err(e) => tracing::error!("encoding this instance's workers: {e}"),
        }
        let stale_before = now() - self.config.leases.instance_timeout.as_secs_f64();
        match self
            .db
            .other_instances_workers(&self.instance, stale_before)
            .await
        {
            Ok(lists) => {
                let others: Vec<WorkerView> = lists
                    .iter()
                    .filter_map(|json| serde_json::from_str::<Vec<WorkerView>>(json).ok())
                    .flatten()
                    .collect();
                *lock(&self.peer_workers) = others;
            }
            Err(e) => tracing::error!("reading the other instances' workers: {e}"),
        }
    }
}
