-- Accounts (Sign-In with Ethereum): single-use nonces, sessions, who owns
-- each job and upload, and who may read a job. `jobs.creator` holds the
-- owner's address (lower-case 0x hex) from now on; older rows hold the
-- submitting client's IP address and so have no owner.
CREATE TABLE auth_nonces (
    nonce TEXT PRIMARY KEY,
    expires_at {float} NOT NULL
);
CREATE INDEX auth_nonces_by_expiry ON auth_nonces (expires_at);

-- A session is known by the hash of its token; the token itself lives only
-- in the client's HTTP-only cookie.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    created_at {float} NOT NULL,
    expires_at {float} NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

ALTER TABLE jobs ADD COLUMN visibility TEXT NOT NULL DEFAULT 'public';
CREATE INDEX jobs_by_creator ON jobs (creator);
CREATE INDEX jobs_by_global_sha ON jobs (global_sha);
CREATE INDEX jobs_by_validation_sha ON jobs (validation_sha);

-- Who uploaded each dataset file (one file may have several uploaders).
CREATE TABLE uploads (
    sha256 TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at {float} NOT NULL,
    PRIMARY KEY (sha256, owner)
);
