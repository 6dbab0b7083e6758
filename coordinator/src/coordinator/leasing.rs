//! Worker connections and leases: planning in the hub, recording in the
//! database, then telling the workers; expiry and re-issue.

use oblivion_protocol::{JobId, LeaseId, WorkerId};
use std::sync::Arc;

use oblivion_protocol::api::WorkerView;
use oblivion_protocol::wire::{CoordinatorMessage, LeaseProgress};
use tokio::sync::mpsc::UnboundedSender;

use super::{Coordinator, lock};
use crate::error::AppError;
use crate::hub::{Ended, Grant, Worker};
use crate::states::LeaseStatus;
use oblivion_store::{Backend, Judge, NewLease, Quarantined, Record, now};

/// How a worker's or a session's token is stored (so that any instance
/// can check it, and a database dump does not hand it out).
pub(super) fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
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

impl Coordinator {
    /// Why a worker's record is quarantined, under this coordinator's
    /// reputation policy (the store applies it as results come in).
    pub(super) fn quarantine_rule(&self) -> impl Fn(&Record<'_>) -> Option<String> + Sync + '_ {
        |r| {
            let policy = self.config.reputation();
            policy.quarantine_reason(r.agreed, r.disputed, r.refuted, r.last_dispute)
        }
    }

    /// The store's judge of records under `rule` (see
    /// [`Coordinator::quarantine_rule`]), now.
    pub(super) fn judge<'a>(
        &self,
        rule: &'a (dyn Fn(&Record<'_>) -> Option<String> + Sync),
    ) -> Judge<'a> {
        let now = now();
        Judge {
            rule,
            now,
            released_before: now - self.config.reputation().quarantine_for.as_secs_f64(),
        }
    }

    /// Workers connected now, to this instance and (as they last
    /// published them) to the others sharing its database.
    pub fn workers(&self) -> Vec<WorkerView> {
        let mut workers = self.hub().worker_views(self.clock());
        workers.extend(lock(&self.peers.workers).iter().cloned());
        workers.sort_by_key(|w| w.id);
        workers
    }

    /// Registers a worker connection; returns its id and token.
    pub async fn connect_worker(
        self: &Arc<Self>,
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
    /// releases the claims of instances that died; re-tries dispatch (a
    /// shard another instance held may be free now) and the aggregation
    /// of complete rounds nobody is aggregating.
    pub(super) async fn keep_alive(self: &Arc<Self>) {
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
        self.close_rounds_on_quorum().await;
        let complete: Vec<(JobId, u32)> = self
            .hub()
            .jobs
            .values()
            .filter(|j| j.round_complete())
            .map(|j| (j.id, j.round))
            .collect();
        for (job, round) in complete {
            if !lock(&self.in_flight.aggregating).contains(&job) {
                tokio::spawn(self.clone().aggregate(job, round));
            }
        }
        self.request_pump();
    }

    /// Closes the rounds whose quorum is in and has waited its time (see
    /// [`oblivion_protocol::aggregation::QuorumSpec`]): in the database
    /// first, then here; their leases still out are revoked, and they are
    /// aggregated with the updates they have.
    async fn close_rounds_on_quorum(self: &Arc<Self>) {
        let due = self.hub().quorum_due(self.clock());
        for (job, round, needed) in due {
            match self
                .db
                .close_round_on_quorum(job, round, needed as u32)
                .await
            {
                Ok(true) => {
                    tracing::info!(%job, round, "round closed on its quorum");
                    let ended = self.hub().close_round(job, round);
                    self.settle_ended(ended, "the round closed on its quorum")
                        .await;
                    self.jobs_changed();
                }
                Ok(false) => {}
                Err(e) => tracing::error!(%job, round, "closing a round on its quorum: {e}"),
            }
        }
    }

    /// Asks for a dispatch pass soon. Passes run one at a time on their own
    /// task, so that requests made while one runs are served together by
    /// the next (one transaction for all the leases they grant).
    pub(super) fn request_pump(&self) {
        self.in_flight.pump.notify_one();
    }

    /// Runs dispatch passes as they are requested, forever.
    pub(super) async fn pump_loop(self: Arc<Self>) {
        loop {
            self.in_flight.pump.notified().await;
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
            self.jobs_changed();
        }
    }
}
