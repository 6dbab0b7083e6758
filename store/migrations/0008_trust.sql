-- Trust: every accepted update is judged when its round is aggregated
-- ('pending' until then). Only 'verified' updates are combined, credited
-- and paid; 'no_work' ones (zero, or a copy) are not; 'disputed' ones
-- (too large, or against the round) and 'refuted' ones (contradicted by
-- replicas of their shard) count against their worker. Updates
-- from before this version were all combined and credited.
ALTER TABLE updates ADD COLUMN verdict TEXT NOT NULL DEFAULT 'verified'
    CHECK (verdict IN ('pending', 'verified', 'no_work', 'disputed', 'refuted'));
ALTER TABLE updates ADD COLUMN verdict_reason TEXT;
-- When it was accepted: of an update and its copy, the later is the copy.
ALTER TABLE updates ADD COLUMN accepted_at {float} NOT NULL DEFAULT 0;

ALTER TABLE rounds ADD COLUMN disputed {bigint} NOT NULL DEFAULT 0;
ALTER TABLE rounds ADD COLUMN no_work {bigint} NOT NULL DEFAULT 0;
-- The ε a job with differential privacy had spent by the end of the round.
ALTER TABLE rounds ADD COLUMN epsilon {float};

-- A worker's record, by the account it is paid to (or, for an anonymous
-- worker, its connection): results that agreed with their round, results
-- disputed (or rejected), and when and why it was quarantined (no more
-- leases, no pay). Kept across reconnections.
CREATE TABLE reputations (
    identity TEXT PRIMARY KEY,
    agreed {bigint} NOT NULL DEFAULT 0,
    disputed {bigint} NOT NULL DEFAULT 0,
    refuted {bigint} NOT NULL DEFAULT 0,
    last_dispute TEXT,
    quarantined_at {float},
    reason TEXT
);

-- Replicas: a round's work is its shards plus replica slots (a shard
-- trained again by another worker, to compare the two). round_slots counts
-- them all; round_replicas lists, as JSON, the shard each slot beyond the
-- shards copies. A lease names its slot (shard) and the data shard it
-- trains (base; NULL: the slot's own).
ALTER TABLE jobs ADD COLUMN round_slots {bigint} NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN round_replicas TEXT NOT NULL DEFAULT '[]';
UPDATE jobs SET round_slots = (SELECT COUNT(*) FROM job_shards WHERE job_shards.job_id = jobs.id);
ALTER TABLE leases ADD COLUMN base {bigint};
