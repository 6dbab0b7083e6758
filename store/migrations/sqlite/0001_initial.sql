CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    round INTEGER NOT NULL,
    global_sha TEXT NOT NULL,
    input_shape TEXT NOT NULL,
    classes INTEGER NOT NULL,
    normalization TEXT,
    validation_sha TEXT NOT NULL,
    train_samples INTEGER NOT NULL,
    validation_samples INTEGER NOT NULL,
    round_started_at REAL NOT NULL,
    error TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS job_shards (
    job_id INTEGER NOT NULL,
    shard INTEGER NOT NULL,
    data_sha TEXT NOT NULL,
    samples INTEGER NOT NULL,
    PRIMARY KEY (job_id, shard)
);
CREATE TABLE IF NOT EXISTS rounds (
    job_id INTEGER NOT NULL,
    round INTEGER NOT NULL,
    global_sha TEXT NOT NULL,
    loss REAL NOT NULL,
    accuracy REAL NOT NULL,
    train_loss REAL NOT NULL,
    updates INTEGER NOT NULL,
    seconds REAL NOT NULL,
    train_seconds REAL NOT NULL,
    aggregate_seconds REAL NOT NULL,
    PRIMARY KEY (job_id, round)
);
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL,
    round INTEGER NOT NULL,
    shard INTEGER NOT NULL,
    worker_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    issued_at REAL NOT NULL,
    ended_at REAL
);
CREATE TABLE IF NOT EXISTS updates (
    job_id INTEGER NOT NULL,
    round INTEGER NOT NULL,
    shard INTEGER NOT NULL,
    lease_id INTEGER NOT NULL,
    worker_id INTEGER NOT NULL,
    update_sha TEXT NOT NULL,
    samples INTEGER NOT NULL,
    train_loss REAL NOT NULL,
    norm REAL NOT NULL,
    train_millis INTEGER NOT NULL,
    PRIMARY KEY (job_id, round, shard)
);
CREATE TABLE IF NOT EXISTS workers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    client TEXT NOT NULL,
    device TEXT NOT NULL,
    benchmark REAL NOT NULL,
    payout_address TEXT,
    accepted INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    lost INTEGER NOT NULL DEFAULT 0,
    samples INTEGER NOT NULL DEFAULT 0,
    connected_at REAL NOT NULL
);
