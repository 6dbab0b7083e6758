-- Garbage collection of artifacts nobody references any more: what has
-- been collected is marked, so each pass only looks at what is new.
ALTER TABLE updates ADD COLUMN collected {bigint} NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN collected_at {float};
CREATE INDEX updates_to_collect ON updates (job_id, round) WHERE collected = 0;
CREATE INDEX job_shards_by_sha ON job_shards (data_sha);
CREATE INDEX rounds_by_sha ON rounds (global_sha);
CREATE INDEX updates_by_sha ON updates (update_sha);
