//! Rounds: the database's view of a round taken in, the next round
//! started, replicas set, and rounds closed on their quorum.

use super::*;

impl Hub {
    /// Brings a job's round in line with the database, which other
    /// instances change too: `done` shards have an accepted update,
    /// `remote` ones an active lease granted by another instance, and any
    /// other shard that is not leased here is pending.
    pub fn sync_shards(
        &mut self,
        job: JobId,
        round: u32,
        done: &[(u32, WorkerId)],
        remote: &[(u32, WorkerId)],
    ) {
        let mut stale_leases = Vec::new();
        if let Some(j) = self.jobs.get_mut(&job)
            && j.round == round
        {
            for (i, s) in j.shards.iter_mut().enumerate() {
                let i = i as u32;
                if let Some(&(_, worker)) = done.iter().find(|(d, _)| *d == i) {
                    if let ShardState::Leased { lease, .. } = s.state {
                        stale_leases.push(lease);
                    }
                    stale_leases.extend(s.backup.take().map(|b| b.lease));
                    s.state = ShardState::Done { worker };
                } else if let Some(&(_, worker)) = remote.iter().find(|(r, _)| *r == i) {
                    if s.state == ShardState::Pending {
                        s.state = ShardState::Remote { worker };
                    }
                } else if matches!(s.state, ShardState::Remote { .. }) {
                    s.state = ShardState::Pending;
                }
            }
        }
        for lease in stale_leases {
            self.take_lease(lease);
        }
    }

    /// Starts the job's next round from new global weights.
    pub fn next_round(&mut self, job: JobId, round: u32, global: Weights, replicas: &[u32]) {
        if let Some(j) = self.jobs.get_mut(&job) {
            j.round = round;
            j.global = global;
            j.progress = RoundProgress::default();
            j.shards.truncate(j.base_shards);
            for s in &mut j.shards {
                s.state = ShardState::Pending;
                s.attempts = 0;
                s.refused_by.clear();
                s.backup = None;
            }
            j.set_replicas(replicas);
        }
    }

    /// Gives `job`'s `round` the replica slots `replicas` (a third opinion
    /// added to those it has).
    pub fn set_replicas(&mut self, job: JobId, round: u32, replicas: &[u32]) {
        if let Some(j) = self.jobs.get_mut(&job)
            && j.round == round
        {
            j.set_replicas(replicas);
        }
    }

    /// The rounds due to close on their quorum at `now`: their job's
    /// quorum has waited its time since the round's first lease, and
    /// enough of the round's slots are in (but not all). With the updates
    /// each needs.
    pub fn quorum_due(&self, now: f64) -> Vec<(JobId, u32, usize)> {
        self.jobs
            .values()
            .filter_map(|j| {
                let quorum = j.spec.training()?.quorum.as_ref()?;
                let waited = j
                    .progress
                    .opened
                    .is_some_and(|t| now - t >= quorum.after_secs as f64);
                let needed = quorum.needed(j.shards.len());
                (waited && !j.round_complete() && j.slots_done() >= needed)
                    .then_some((j.id, j.round, needed))
            })
            .collect()
    }

    /// Closes `job`'s `round` on its quorum (the database did): the leases
    /// still out end, revoked, and the round is complete.
    pub fn close_round(&mut self, job: JobId, round: u32) -> Vec<Ended> {
        let Some(j) = self.jobs.get_mut(&job).filter(|j| j.round == round) else {
            return Vec::new();
        };
        j.progress.closed = true;
        j.leases()
            .into_iter()
            .filter_map(|l| self.end(l, LeaseStatus::Revoked))
            .collect()
    }
}
