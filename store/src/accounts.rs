//! Accounts in the database: single-use sign-in nonces, sessions, who
//! uploaded what, and who may read an artifact.

use oblivion_protocol::{BlobId, JobId};

use crate::columns::{Int, Text};
use crate::db::{Db, UNFINISHED, WriteOnce};
use crate::error::StoreError;

/// Who may read an artifact, from every job and upload that names it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Readers {
    /// Some public job names it: anyone may.
    pub public: bool,
    /// Owners of the private jobs and uploaders that name it.
    pub owners: Vec<String>,
    /// It is weights (a round's model or an update) of a paid job not yet
    /// settled on chain: only a worker whose lease needs it may read it,
    /// whatever the job's visibility, so that nobody, its creator least,
    /// takes the model before the contributors are paid.
    pub withheld: bool,
}

impl Db {
    /// Records a sign-in nonce valid until `expires_at`.
    pub async fn add_nonce(&self, nonce: &str, expires_at: f64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO auth_nonces (nonce, expires_at) VALUES ($1, $2)")
            .bind(nonce)
            .bind(expires_at)
            .write_once(self)
            .await?;
        Ok(())
    }

    /// Uses up `nonce`: true when it was issued, unexpired and unused. One
    /// `DELETE`, so of two concurrent sign-ins with one nonce exactly one
    /// wins, on any instance.
    pub async fn take_nonce(&self, nonce: &str, now: f64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM auth_nonces WHERE nonce = $1 AND expires_at > $2")
            .bind(nonce)
            .bind(now)
            .write_once(self)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Opens a session for `address`, known by the hash of its token.
    pub async fn add_session(
        &self,
        token_hash: &str,
        address: &str,
        now: f64,
        expires_at: f64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, address, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(address)
        .bind(now)
        .bind(expires_at)
        .write_once(self)
        .await?;
        Ok(())
    }

    /// The account and end of an unexpired session.
    pub async fn session(
        &self,
        token_hash: &str,
        now: f64,
    ) -> Result<Option<(String, f64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT address, expires_at FROM sessions WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Ends a session.
    pub async fn end_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .write_once(self)
            .await?;
        Ok(())
    }

    /// Forgets expired nonces and sessions; returns how many.
    pub async fn forget_expired_sign_ins(&self, now: f64) -> Result<u64, StoreError> {
        let nonces = sqlx::query("DELETE FROM auth_nonces WHERE expires_at <= $1")
            .bind(now)
            .write_once(self)
            .await?;
        let sessions = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .write_once(self)
            .await?;
        Ok(nonces.rows_affected() + sessions.rows_affected())
    }

    /// Records that `owner` uploaded the dataset file `blob`.
    pub async fn add_upload(&self, blob: BlobId, owner: &str, now: f64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO uploads (sha256, owner, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(blob.hex())
        .bind(owner)
        .bind(now)
        .write_once(self)
        .await?;
        Ok(())
    }

    /// Uploads made before `before` that no unfinished job names in its
    /// spec, oldest first, at most `limit`: `(file, owner)`.
    pub async fn unused_uploads(
        &self,
        before: f64,
        limit: u32,
    ) -> Result<Vec<(BlobId, String)>, StoreError> {
        let uploads: Vec<(Text<BlobId>, String)> = sqlx::query_as(&format!(
            "SELECT u.sha256 AS sha, u.owner AS owner FROM uploads u WHERE u.created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.status IN {UNFINISHED} \
                             AND j.spec LIKE '%' || u.sha256 || '%') \
             ORDER BY u.created_at LIMIT $2"
        ))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(uploads
            .into_iter()
            .map(|(file, owner)| (file.get(), owner))
            .collect())
    }

    /// Forgets an upload of `blob` by `owner`; returns whether anyone else
    /// still holds an upload of the same file.
    pub async fn forget_upload(&self, blob: BlobId, owner: &str) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM uploads WHERE sha256 = $1 AND owner = $2")
            .bind(blob.hex())
            .bind(owner)
            .write_once(self)
            .await?;
        Ok(
            sqlx::query("SELECT 1 AS one FROM uploads WHERE sha256 = $1")
                .bind(blob.hex())
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// Paid jobs still waiting for a deposit that were created before
    /// `before` (Unix seconds), at most `limit`.
    pub async fn unfunded_jobs(&self, before: f64, limit: u32) -> Result<Vec<JobId>, StoreError> {
        let jobs: Vec<Int<JobId>> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE status = 'funding' AND created_at < $1 ORDER BY id LIMIT $2",
        )
        .bind(before as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(jobs.into_iter().map(Int::get).collect())
    }

    /// Whether `owner` uploaded the dataset file `blob`.
    pub async fn uploaded_by(&self, blob: BlobId, owner: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT 1 AS one FROM uploads WHERE sha256 = $1 AND owner = $2")
                .bind(blob.hex())
                .bind(owner)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// Who may read artifact `blob`: from the jobs whose weights, data or
    /// updates it is, the uploads that are it, and the registry's models
    /// whose weights it is (their owners, and their buyers).
    pub async fn artifact_readers(&self, blob: BlobId) -> Result<Readers, StoreError> {
        // `unpaid`: 1 for the weights of a paid job whose payment is not
        // settled (BIGINT, so that both dialects agree on the type); not
        // for a model it started from or runs, which another job or an
        // owner made (it must not lock that model away).
        let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(
            "SELECT j.visibility, j.creator, \
                CAST(CASE WHEN j.global_sha = $1 AND p.state IS NOT NULL \
                AND p.state <> 'settled' AND NOT EXISTS (SELECT 1 FROM models m \
                WHERE m.weights_sha = $1 AND (m.job_id IS NULL OR m.job_id <> j.id)) \
                THEN 1 ELSE 0 END AS BIGINT) AS unpaid \
                FROM jobs j LEFT JOIN payments p ON p.job_id = j.id \
                WHERE j.global_sha = $1 OR j.validation_sha = $1 \
             UNION SELECT j.visibility, j.creator, \
                CAST(CASE WHEN p.state IS NOT NULL AND p.state <> 'settled' \
                AND NOT EXISTS (SELECT 1 FROM models m WHERE m.weights_sha = $1 \
                AND (m.job_id IS NULL OR m.job_id <> j.id)) \
                THEN 1 ELSE 0 END AS BIGINT) \
                FROM rounds r JOIN jobs j ON j.id = r.job_id \
                LEFT JOIN payments p ON p.job_id = j.id WHERE r.global_sha = $1 \
             UNION SELECT j.visibility, j.creator, CAST(0 AS BIGINT) FROM job_shards s \
                JOIN jobs j ON j.id = s.job_id WHERE s.data_sha = $1 \
             UNION SELECT j.visibility, j.creator, \
                CAST(CASE WHEN p.state IS NOT NULL AND p.state <> 'settled' \
                THEN 1 ELSE 0 END AS BIGINT) \
                FROM updates u JOIN jobs j ON j.id = u.job_id \
                LEFT JOIN payments p ON p.job_id = j.id WHERE u.update_sha = $1 \
             UNION SELECT 'private', owner, CAST(0 AS BIGINT) FROM uploads WHERE sha256 = $1 \
             UNION SELECT m.visibility, m.owner, CAST(0 AS BIGINT) FROM models m \
                WHERE m.weights_sha = $1 \
             UNION SELECT 'private', u.buyer, CAST(0 AS BIGINT) FROM purchases u \
                JOIN models m ON m.id = u.model_id WHERE m.weights_sha = $1",
        )
        .bind(blob.hex())
        .fetch_all(&self.pool)
        .await?;
        let mut readers = Readers::default();
        for (visibility, owner, unpaid) in rows {
            readers.withheld |= unpaid != 0;
            if visibility == "public" {
                readers.public = true;
            } else if let Some(owner) = owner {
                readers.owners.push(owner);
            }
        }
        Ok(readers)
    }

    /// Whether the worker whose token hashes to `token_hash` holds an
    /// active lease that needs artifact `blob` (its shard's data or its
    /// job's current weights).
    pub async fn lease_needs(&self, token_hash: &str, blob: BlobId) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "SELECT 1 AS one FROM leases l JOIN workers w ON w.id = l.worker_id \
             JOIN job_shards s ON s.job_id = l.job_id AND s.shard = COALESCE(l.base, l.shard) \
             JOIN jobs j ON j.id = l.job_id \
             WHERE w.token_hash = $1 AND l.status = 'active' \
               AND (s.data_sha = $2 OR j.global_sha = $2)",
        )
        .bind(token_hash)
        .bind(blob.hex())
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }
}
