-- The first schema, as on SQLite (integers are BIGINT: the code reads i64).
CREATE TABLE IF NOT EXISTS jobs (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    round BIGINT NOT NULL,
    global_sha TEXT NOT NULL,
    input_shape TEXT NOT NULL,
    classes BIGINT NOT NULL,
    normalization TEXT,
    validation_sha TEXT NOT NULL,
    train_samples BIGINT NOT NULL,
    validation_samples BIGINT NOT NULL,
    round_started_at DOUBLE PRECISION NOT NULL,
    error TEXT,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS job_shards (
    job_id BIGINT NOT NULL,
    shard BIGINT NOT NULL,
    data_sha TEXT NOT NULL,
    samples BIGINT NOT NULL,
    PRIMARY KEY (job_id, shard)
);
CREATE TABLE IF NOT EXISTS rounds (
    job_id BIGINT NOT NULL,
    round BIGINT NOT NULL,
    global_sha TEXT NOT NULL,
    loss DOUBLE PRECISION NOT NULL,
    accuracy DOUBLE PRECISION NOT NULL,
    train_loss DOUBLE PRECISION NOT NULL,
    updates BIGINT NOT NULL,
    seconds DOUBLE PRECISION NOT NULL,
    train_seconds DOUBLE PRECISION NOT NULL,
    aggregate_seconds DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (job_id, round)
);
CREATE TABLE IF NOT EXISTS leases (
    id BIGSERIAL PRIMARY KEY,
    job_id BIGINT NOT NULL,
    round BIGINT NOT NULL,
    shard BIGINT NOT NULL,
    worker_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    issued_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS updates (
    job_id BIGINT NOT NULL,
    round BIGINT NOT NULL,
    shard BIGINT NOT NULL,
    lease_id BIGINT NOT NULL,
    worker_id BIGINT NOT NULL,
    update_sha TEXT NOT NULL,
    samples BIGINT NOT NULL,
    train_loss DOUBLE PRECISION NOT NULL,
    norm DOUBLE PRECISION NOT NULL,
    train_millis BIGINT NOT NULL,
    PRIMARY KEY (job_id, round, shard)
);
CREATE TABLE IF NOT EXISTS workers (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    client TEXT NOT NULL,
    device TEXT NOT NULL,
    benchmark DOUBLE PRECISION NOT NULL,
    payout_address TEXT,
    accepted BIGINT NOT NULL DEFAULT 0,
    rejected BIGINT NOT NULL DEFAULT 0,
    lost BIGINT NOT NULL DEFAULT 0,
    samples BIGINT NOT NULL DEFAULT 0,
    connected_at DOUBLE PRECISION NOT NULL
);
