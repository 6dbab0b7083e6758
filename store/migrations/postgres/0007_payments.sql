-- Paid jobs: a job with a reward waits in 'funding' until the escrow's
-- Funded event for it is confirmed on chain; then it is 'pending' as any.
CREATE OR REPLACE FUNCTION jobs_status_forward() RETURNS trigger AS $$
BEGIN
    IF NEW.status <> OLD.status THEN
        IF NOT (
            (OLD.status = 'funding' AND NEW.status IN ('pending', 'failed', 'cancelled'))
            OR (OLD.status = 'pending' AND NEW.status IN ('running', 'completed', 'failed', 'cancelled'))
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

-- A paid job's escrow: its key on chain (keccak256 of creator, signer and
-- job id), the spec hash the deposit must name, what was asked and what
-- the chain shows. Amounts are decimal strings of wei (256 bits).
CREATE TABLE payments (
    job_id BIGINT PRIMARY KEY,
    job_key TEXT NOT NULL UNIQUE,
    spec_hash TEXT NOT NULL,
    amount TEXT NOT NULL,
    state TEXT NOT NULL,
    deposit TEXT,
    deadline BIGINT,
    funded_block BIGINT,
    funded_tx TEXT
);

-- What the coordinator signed for a job: the payout tree's root, the
-- total, the model's hash and the escrow nonce, with the signature; and
-- every leaf of the tree.
CREATE TABLE settlements (
    job_id BIGINT PRIMARY KEY,
    root TEXT NOT NULL,
    total TEXT NOT NULL,
    model_hash TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    signature TEXT NOT NULL,
    signed_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE payouts (
    job_id BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    account TEXT NOT NULL,
    amount TEXT NOT NULL,
    claimed BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX payouts_by_account ON payouts (account);

-- How far the chain has been read: the last block taken (at the
-- confirmation depth) and its hash, to notice a deeper reorganisation.
CREATE TABLE chain_cursor (
    chain_id BIGINT PRIMARY KEY,
    block BIGINT NOT NULL,
    block_hash TEXT NOT NULL
);
