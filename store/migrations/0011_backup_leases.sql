-- A slot may be held twice at once: by its lease and by one backup lease,
-- granted to an idle worker when the slot is among the last of its round
-- (the first valid update wins; the other lease is revoked). So at most one
-- active lease per slot and kind.
ALTER TABLE leases ADD COLUMN backup INTEGER NOT NULL DEFAULT 0;
DROP INDEX leases_one_active_per_shard;
CREATE UNIQUE INDEX leases_one_active_per_slot
    ON leases (job_id, round, shard, backup) WHERE status = 'active';
