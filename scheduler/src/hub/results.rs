//! Results: who may post an update for a lease, and what an accepted or
//! rejected one does to its slot, its round and its worker.

use super::*;

impl Hub {
    /// Checks that the worker with `token` holds `lease`; returns what its
    /// update must match.
    pub fn update_context(&self, token: &str, lease: LeaseId) -> Result<UpdateContext, Refusal> {
        let worker = *self
            .workers_by_token
            .get(token)
            .ok_or(Refusal::UnknownWorker)?;
        let held = self
            .leases
            .get(&lease)
            .filter(|l| l.worker == worker)
            .ok_or(Refusal::NotHeld(lease))?;
        let job = self.jobs.get(&held.job).ok_or(Refusal::NotHeld(lease))?;
        let shard = &job.shards[held.shard as usize];
        Ok(UpdateContext {
            lease: held.clone(),
            arch: job.arch.clone(),
            global: job.global.params.clone(),
            samples: shard.samples,
            check: job
                .kind
                .result_check(shard.data)
                .ok_or(Refusal::NotHeld(lease))?,
        })
    }

    /// An update for `lease` failed validation: the lease ends and the
    /// shard goes to someone else.
    pub fn reject(&mut self, lease: LeaseId) -> Option<Ended> {
        let ended = self.end(lease, LeaseStatus::Rejected)?;
        if let Some(job) = self.jobs.get_mut(&ended.lease.job) {
            job.shards[ended.lease.shard as usize]
                .refused_by
                .push(ended.lease.worker);
        }
        if let Some(w) = self.workers.get_mut(&ended.lease.worker) {
            w.view.rejected += 1;
        }
        Some(ended)
    }

    /// An update for `lease` was accepted and recorded: its slot is done,
    /// and the other lease on the slot, if any, lost (see [`Backup`]).
    pub fn complete(&mut self, lease: LeaseId, now: f64) -> Option<Completed> {
        let lease = self.take_lease(lease)?;
        let job = self.jobs.get_mut(&lease.job)?;
        let shard = &mut job.shards[lease.shard as usize];
        // The slot's lease won: the backup on it lost.
        let lost_backup = shard
            .backup
            .filter(|b| b.lease != lease.id)
            .map(|b| b.worker);
        let other = shard.finish(lease.worker, lease.id);
        let samples = shard.samples;
        let round_done = job.round_complete();
        let superseded = other.and_then(|l| self.supersede(l, samples, now));
        if let Some(worker) = lost_backup {
            self.forget_backup(lease.job, worker);
        }
        let speed = samples as f64 / (now - lease.granted_at).max(1e-3);
        self.reindexed(lease.worker, |hub| {
            if let Some(w) = hub.workers.get_mut(&lease.worker) {
                w.measured = Some(match w.measured {
                    Some(m) => SPEED_SMOOTHING * speed + (1.0 - SPEED_SMOOTHING) * m,
                    None => speed,
                });
            }
        });
        if let Some(w) = self.workers.get_mut(&lease.worker) {
            w.view.active_leases = w.view.active_leases.saturating_sub(1);
            w.view.accepted += 1;
            // Throughput counts accepted work; the samples are credited
            // only once the round verifies the update (`credit`).
            w.credits.push_back((now, samples));
            while w
                .credits
                .front()
                .is_some_and(|(t, _)| *t < now - RATE_WINDOW)
            {
                w.credits.pop_front();
            }
        }
        Some(Completed {
            lease,
            round_done,
            superseded,
        })
    }

    /// Revokes a lease whose slot another worker's update completed. Its
    /// holder had not finished `samples` in the time it held the lease, so
    /// its measured speed is at most that: a straggler that always loses
    /// the race is not taken for a newcomer, served first for ever.
    pub(super) fn supersede(&mut self, lease: LeaseId, samples: u64, now: f64) -> Option<Ended> {
        let ended = self.end(lease, LeaseStatus::Revoked)?;
        let bound = samples as f64 / (now - ended.lease.granted_at).max(1e-3);
        let worker = ended.lease.worker;
        self.reindexed(worker, |hub| {
            if let Some(w) = hub.workers.get_mut(&worker) {
                w.measured = Some(w.measured.map_or(bound, |m| m.min(bound)));
            }
        });
        Some(ended)
    }

    /// Records a judged result of a connected worker: agreed ones credit
    /// their samples.
    pub fn record_result(&mut self, worker: WorkerId, agreed: bool, samples: u64) {
        self.reindexed(worker, |hub| {
            if let Some(w) = hub.workers.get_mut(&worker) {
                if agreed {
                    w.view.agreed += 1;
                    w.view.samples += samples;
                } else {
                    w.view.disputed += 1;
                    // Fast at posting what is not work is not fast: its
                    // speed is measured afresh.
                    w.measured = None;
                }
            }
        });
    }

    /// Marks a shard done whose update the database accepted after the
    /// hub had ended its lease (it expired while the update was checked).
    /// The database refuses any other lease on a shard with an update, and
    /// revoked any other lease on the slot with it: a lease the hub still
    /// has there (its backup, which took over) is revoked and returned.
    /// The update counts for its worker as accepted, as the database has it.
    pub fn shard_done(&mut self, lease: &Lease) -> Option<Ended> {
        if let Some(w) = self.workers.get_mut(&lease.worker) {
            w.view.accepted += 1;
        }
        let j = self
            .jobs
            .get_mut(&lease.job)
            .filter(|j| j.round == lease.round)?;
        let s = j.shards.get_mut(lease.shard as usize)?;
        if matches!(s.state, ShardState::Done { .. }) {
            return None;
        }
        let other = s.finish(lease.worker, lease.id);
        other.and_then(|l| self.end(l, LeaseStatus::Revoked))
    }
}
