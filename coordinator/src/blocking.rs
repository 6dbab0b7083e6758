//! Heavy work off the async runtime.

use crate::error::AppError;

/// Runs CPU-heavy work (decoding, hashing, averaging, evaluation) on
/// tokio's blocking threads (at most 512), off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AppError::internal(format!("worker thread failed: {e}")))?
}
