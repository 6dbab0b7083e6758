//! Dispatch: which worker takes which slot, and backups for a round's
//! last slots; then applying what the database recorded.

use super::*;

impl Hub {
    /// Proposes leases for pending shards at `now`, without changing
    /// anything: shards of all jobs still open to leases interleaved (oldest job first within each turn);
    /// each to the eligible worker with the fewest active leases (then the
    /// best benchmark, then the lowest id), never past the per-worker cap,
    /// and to a worker whose update for that shard was rejected only when
    /// no one else can take it.
    pub fn plan(&self, now: f64) -> Vec<Grant> {
        let mut queue: Vec<(usize, JobId, u32)> = Vec::new();
        let open = |j: &&LiveJob| j.open_at(now);
        for job in self.jobs.values().filter(open) {
            let mut turn = 0;
            for (i, shard) in job.shards.iter().enumerate() {
                if shard.state == ShardState::Pending {
                    queue.push((turn, job.id, i as u32));
                    turn += 1;
                }
            }
        }
        if self.with_room.is_empty() {
            return Vec::new();
        }
        queue.sort_unstable();
        // A private copy of the dispatch order, advanced as grants are
        // planned; `room` is each planned worker's remaining room.
        let mut order = self.with_room.clone();
        let mut room: HashMap<WorkerId, u32> = HashMap::new();
        let mut grants: Vec<Grant> = Vec::new();
        for (_, job_id, shard_index) in queue {
            let Some(job) = self.jobs.get(&job_id) else {
                continue;
            };
            let slot = &job.shards[shard_index as usize];
            let refused = &slot.refused_by;
            // Every slot of one shard goes to a different worker (a
            // replica is worth nothing from the same one), counting the
            // grants planned so far. Only a round with replicas needs the
            // check, so that dispatch stays O(pending × log workers)
            // without them. Some kinds take one slot a round per worker
            // (see `JobKind::one_slot_each`). `exclusive` says which slots
            // a worker may hold only one of.
            let one_each = job.kind.one_slot_each();
            let exclusive = |base: u32| one_each || base == slot.base;
            let busy: Vec<WorkerId> = if one_each || job.has_replicas() {
                let mut busy = job.holders(exclusive);
                busy.extend(
                    grants
                        .iter()
                        .filter(|g| g.job == job_id && exclusive(g.base))
                        .map(|g| g.worker),
                );
                busy
            } else {
                Vec::new()
            };
            let fits = |worker: WorkerId| self.workers.get(&worker).is_some_and(|w| job.admits(w));
            let free = |k: &&RoomKey| !busy.contains(&k.2) && fits(k.2);
            let pick = order
                .iter()
                .filter(free)
                .find(|k| !refused.contains(&k.2))
                .or_else(|| order.iter().find(free))
                .copied();
            let Some(key) = pick else {
                continue;
            };
            let worker = key.2;
            order.remove(&key);
            let left = room.entry(worker).or_insert_with(|| {
                let w = &self.workers[&worker];
                self.policy.cap.min(w.max_leases) - key.0
            });
            *left -= 1;
            if *left > 0 {
                order.insert((key.0 + 1, key.1, key.2));
            }
            grants.push(Grant {
                job: job_id,
                round: job.round,
                shard: shard_index,
                base: slot.base,
                worker,
                backup: false,
            });
        }
        let backups = self.plan_backups(now, &order);
        grants.extend(backups);
        grants
    }

    /// Backup leases (see [`Backup`]) for the rounds with nothing left
    /// pending, to the workers still idle in `order` (no lease held or
    /// planned), the fastest as measured first, for the oldest leases
    /// first. Only to a worker whose speed was measured on this connection
    /// (a new connection gets none, so reconnecting buys no backup); never
    /// to a worker holding any slot of the same shard, whose update for
    /// the slot was rejected, or whose identity had a backup lease of the
    /// round already (see [`LiveJob::backed_up_by`]); never for a slot of
    /// a kind that is not backed up (see [`JobKind::backs_up`]).
    pub(super) fn plan_backups(&self, now: f64, order: &BTreeSet<RoomKey>) -> Vec<Grant> {
        let mut idle: Vec<WorkerId> = order
            .iter()
            .filter(|k| k.0 == 0)
            .map(|k| k.2)
            .filter(|w| self.workers.get(w).is_some_and(|w| w.measured.is_some()))
            .collect();
        if idle.is_empty() {
            return Vec::new();
        }
        let mut slots: Vec<(f64, JobId, u32)> = Vec::new();
        for job in self.jobs.values() {
            if !job.open_at(now) || !job.kind.backs_up() {
                continue;
            }
            if job.shards.iter().any(|s| s.state == ShardState::Pending) {
                continue;
            }
            for (i, shard) in job.shards.iter().enumerate() {
                if let (ShardState::Leased { lease, .. }, None) = (shard.state, shard.backup)
                    && let Some(l) = self.leases.get(&lease)
                {
                    slots.push((l.granted_at, job.id, i as u32));
                }
            }
        }
        slots.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        let mut grants: Vec<Grant> = Vec::new();
        // Identities planned a backup in this batch, by job.
        let mut planned: Vec<(JobId, String)> = Vec::new();
        for (_, job_id, slot_index) in slots {
            let job = &self.jobs[&job_id];
            let slot = &job.shards[slot_index as usize];
            let mut busy = job.holders(|base| base == slot.base);
            busy.extend(
                grants
                    .iter()
                    .filter(|g| g.job == job_id && g.base == slot.base)
                    .map(|g| g.worker),
            );
            let eligible = |worker: &WorkerId| {
                let Some(w) = self.workers.get(worker) else {
                    return false;
                };
                let identity = w.identity();
                !busy.contains(worker)
                    && !slot.refused_by.contains(worker)
                    && !job.progress.backed_up_by.contains(&identity)
                    && !planned.contains(&(job_id, identity))
                    && job.admits(w)
            };
            let Some(at) = idle.iter().position(eligible) else {
                continue;
            };
            if let Some(w) = self.workers.get(&idle[at]) {
                planned.push((job_id, w.identity()));
            }
            grants.push(Grant {
                job: job_id,
                round: job.round,
                shard: slot_index,
                base: slot.base,
                worker: idle.remove(at),
                backup: true,
            });
            if idle.is_empty() {
                break;
            }
        }
        grants
    }

    /// Applies a lease the database recorded (as `id`). Returns `None`
    /// when the hub moved on meanwhile (the job, round, shard or worker is
    /// gone or taken): the caller then ends the recorded lease.
    pub fn grant(&mut self, grant: Grant, id: LeaseId, now: f64) -> Option<Lease> {
        let job = self.jobs.get(&grant.job)?;
        let shard = job.shards.get(grant.shard as usize)?;
        let identity = self.workers.get(&grant.worker)?.identity();
        let open = if grant.backup {
            matches!(shard.state, ShardState::Leased { worker, .. } if worker != grant.worker)
                && shard.backup.is_none()
                && !job.progress.backed_up_by.contains(&identity)
        } else {
            shard.state == ShardState::Pending
        };
        if job.round != grant.round || !open {
            return None;
        }
        self.room_key(grant.worker)?;
        let lease = Lease {
            id,
            job: grant.job,
            round: grant.round,
            shard: grant.shard,
            worker: grant.worker,
            expires_at: now + self.policy.ttl.as_secs_f64(),
            overdue_at: now + self.policy.max_lifetime.as_secs_f64(),
            progress: 0.0,
            progressed_at: now,
            granted_at: now,
        };
        self.reindexed(grant.worker, |hub| {
            hub.leases.insert(id, lease.clone());
            hub.leases_by_worker
                .entry(grant.worker)
                .or_default()
                .insert(id);
        });
        if let Some(job) = self.jobs.get_mut(&grant.job) {
            job.status = JobStatus::Running;
            job.progress.opened.get_or_insert(now);
            let shard = &mut job.shards[grant.shard as usize];
            if grant.backup {
                shard.backup = Some(Backup {
                    lease: id,
                    worker: grant.worker,
                });
                job.progress.backed_up_by.push(identity);
            } else {
                shard.state = ShardState::Leased {
                    lease: id,
                    worker: grant.worker,
                };
            }
            shard.attempts += 1;
        }
        if let Some(w) = self.workers.get_mut(&grant.worker) {
            w.view.active_leases += 1;
        }
        Some(lease)
    }

    /// The message telling a worker what to do for `lease`.
    pub fn task(&self, lease: &Lease) -> Option<LeaseTask> {
        let job = self.jobs.get(&lease.job)?;
        let shard = job.shards.get(lease.shard as usize)?;
        Some(LeaseTask {
            lease_id: lease.id,
            job_id: job.id,
            round: lease.round,
            shard: shard.base,
            model: job.arch.model.clone(),
            input_shape: job.arch.input_shape.clone(),
            classes: job.arch.classes,
            weights: job.global.blob,
            work: job
                .kind
                .lease_work(lease.round, shard.base, shard.data, job.scaling.as_ref())?,
            expires_in_secs: self.policy.ttl.as_secs(),
        })
    }
}
