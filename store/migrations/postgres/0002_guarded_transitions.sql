-- The database is the one source of truth: transitions are guarded here,
-- not only in the code, and every change of a job's status is logged.
-- (The same rules as migrations/sqlite/0002, in PostgreSQL's dialect.)

ALTER TABLE jobs ADD COLUMN aggregation_claim TEXT;
ALTER TABLE jobs ADD COLUMN aggregation_claimed_at DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN creator TEXT;
ALTER TABLE leases ADD COLUMN instance TEXT;

UPDATE leases SET status = 'disconnected', reason = 'coordinator upgraded',
    ended_at = extract(epoch FROM clock_timestamp())
    WHERE status = 'active';

CREATE UNIQUE INDEX leases_one_active_per_shard
    ON leases (job_id, round, shard) WHERE status = 'active';
CREATE INDEX leases_active_by_worker ON leases (worker_id) WHERE status = 'active';
CREATE INDEX updates_by_worker ON updates (worker_id);

CREATE TABLE job_transitions (
    id BIGSERIAL PRIMARY KEY,
    job_id BIGINT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX job_transitions_by_job ON job_transitions (job_id, id);

INSERT INTO job_transitions (job_id, from_status, to_status, at)
    SELECT id, NULL, status, extract(epoch FROM clock_timestamp()) FROM jobs;

CREATE FUNCTION jobs_log_insert() RETURNS trigger AS $$
BEGIN
    INSERT INTO job_transitions (job_id, from_status, to_status, at)
    VALUES (NEW.id, NULL, NEW.status, extract(epoch FROM clock_timestamp()));
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER jobs_log_insert AFTER INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_log_insert();

-- A status only moves forward: pending -> running -> one of completed,
-- failed, cancelled; a finished job never changes again.
CREATE FUNCTION jobs_status_forward() RETURNS trigger AS $$
BEGIN
    IF NEW.status <> OLD.status THEN
        IF NOT (
            (OLD.status = 'pending' AND NEW.status IN ('running', 'completed', 'failed', 'cancelled'))
            OR (OLD.status = 'running' AND NEW.status IN ('completed', 'failed', 'cancelled'))
        ) THEN
            RAISE EXCEPTION 'job status may not go from a finished state or backwards';
        END IF;
        INSERT INTO job_transitions (job_id, from_status, to_status, at)
        VALUES (NEW.id, OLD.status, NEW.status, extract(epoch FROM clock_timestamp()));
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER jobs_status_forward BEFORE UPDATE OF status ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_status_forward();
