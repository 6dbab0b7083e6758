-- The database is the one source of truth: transitions are guarded here,
-- not only in the code, and every change of a job's status is logged.

-- Who aggregates the current round (an instance id), and since when; a
-- claim is taken by a guarded UPDATE, so exactly one instance aggregates.
ALTER TABLE jobs ADD COLUMN aggregation_claim TEXT;
ALTER TABLE jobs ADD COLUMN aggregation_claimed_at REAL;
-- Who submitted the job (the client's address until accounts exist).
ALTER TABLE jobs ADD COLUMN creator TEXT;

-- Which coordinator instance granted the lease (it tracks the lease's
-- deadline on its own monotonic clock).
ALTER TABLE leases ADD COLUMN instance TEXT;

-- At most one active lease per shard of a round. Leases left active by a
-- stopped process end first (their connections died with it).
UPDATE leases SET status = 'disconnected', reason = 'coordinator upgraded',
    ended_at = (julianday('now') - 2440587.5) * 86400.0
    WHERE status = 'active';
CREATE UNIQUE INDEX leases_one_active_per_shard
    ON leases (job_id, round, shard) WHERE status = 'active';
CREATE INDEX leases_active_by_worker ON leases (worker_id) WHERE status = 'active';
CREATE INDEX updates_by_worker ON updates (worker_id);

CREATE TABLE job_transitions (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX job_transitions_by_job ON job_transitions (job_id, id);

INSERT INTO job_transitions (job_id, from_status, to_status, at)
    SELECT id, NULL, status, (julianday('now') - 2440587.5) * 86400.0 FROM jobs;

CREATE TRIGGER jobs_log_insert AFTER INSERT ON jobs
BEGIN
    INSERT INTO job_transitions (job_id, from_status, to_status, at)
    VALUES (NEW.id, NULL, NEW.status, (julianday('now') - 2440587.5) * 86400.0);
END;

-- A status only moves forward: pending -> running -> one of completed,
-- failed, cancelled; a finished job never changes again.
CREATE TRIGGER jobs_status_forward BEFORE UPDATE OF status ON jobs
WHEN NEW.status <> OLD.status AND NOT (
    (OLD.status = 'pending' AND NEW.status IN ('running', 'completed', 'failed', 'cancelled'))
    OR (OLD.status = 'running' AND NEW.status IN ('completed', 'failed', 'cancelled'))
)
BEGIN
    SELECT RAISE(ABORT, 'job status may not go from a finished state or backwards');
END;

CREATE TRIGGER jobs_log_status AFTER UPDATE OF status ON jobs
WHEN NEW.status <> OLD.status
BEGIN
    INSERT INTO job_transitions (job_id, from_status, to_status, at)
    VALUES (NEW.id, OLD.status, NEW.status, (julianday('now') - 2440587.5) * 86400.0);
END;
