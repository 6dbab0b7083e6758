//! An inference job's assembled outputs, recorded with its one round (see
//! [`crate::RoundRow::outputs`]) and read by whoever may download them.

use oblivion_protocol::{BlobId, JobId};

use crate::columns::Text;
use sqlx::{Any, Transaction};

use crate::db::Db;
use crate::error::StoreError;

/// What an inference job's outputs came to.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct InferenceResult {
    /// Every row's class probabilities and predicted class, in row order
    /// (uncompressed safetensors, as `oblivion_ml::inference::Outputs`).
    #[sqlx(try_from = "Text<BlobId>")]
    pub outputs_sha: BlobId,
    /// Rows.
    #[sqlx(try_from = "i64")]
    pub rows: u64,
    /// Classes.
    #[sqlx(try_from = "i64")]
    pub classes: u64,
    /// The share of rows predicted as labelled, when the rows are.
    pub accuracy: Option<f64>,
    /// When the rows are labelled: `confusion[label][predicted]`, rows
    /// counted.
    #[sqlx(try_from = "OptionalConfusion")]
    pub confusion: Option<Vec<Vec<u64>>>,
}

/// A nullable confusion matrix column.
#[derive(sqlx::Type)]
#[sqlx(transparent)]
pub(crate) struct OptionalConfusion(Option<String>);

impl TryFrom<OptionalConfusion> for Option<Vec<Vec<u64>>> {
    type Error = serde_json::Error;

    fn try_from(c: OptionalConfusion) -> Result<Self, Self::Error> {
        c.0.as_deref().map(serde_json::from_str).transpose()
    }
}

impl Db {
    /// Records `job`'s outputs, in the transaction that finishes its round.
    pub(crate) async fn insert_inference_result(
        &self,
        tx: &mut Transaction<'static, Any>,
        job: JobId,
        result: &InferenceResult,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO inference_results (job_id, outputs_sha, rows, classes, accuracy, \
             confusion) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(job.db())
        .bind(result.outputs_sha.hex())
        .bind(result.rows as i64)
        .bind(result.classes as i64)
        .bind(result.accuracy)
        .bind(
            result
                .confusion
                .as_ref()
                .map(serde_json::to_string)
                .transpose()?,
        )
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// `job`'s outputs, once its round is recorded.
    pub async fn inference_result(
        &self,
        job: JobId,
    ) -> Result<Option<InferenceResult>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT outputs_sha, rows, classes, accuracy, confusion FROM inference_results \
             WHERE job_id = $1",
        )
        .bind(job.db())
        .fetch_optional(&self.pool)
        .await?)
    }
}
