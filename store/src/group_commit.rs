//! Group commit of accepted updates: updates that arrive while a batch is
//! being committed wait and go together in the next batch, which makes
//! their blobs durable (one flush of their filesystem) and then
//! records them all in one transaction with one commit
//! ([`Db::accept_updates`]). Each update's sender hears its own outcome
//! once the batch has committed, so an update is only ever acknowledged
//! when it is durable: a `kill -9` still loses nothing accepted.
//!
//! The batches run on a task of their own: a sender that goes away (its
//! client disconnected) cannot cut a transaction off, and its update is
//! recorded or refused all the same.

use tokio::sync::{mpsc, oneshot};

use crate::artifacts::{Stored, sync_stored};
use crate::db::Db;
use crate::error::{ErrorKind, StoreError};
use crate::updates::{Acceptance, Accepting};

/// An update waiting for the next batch.
struct Queued {
    accepting: Accepting,
    blob: Stored,
    outcome: oneshot::Sender<Result<Acceptance, StoreError>>,
}

/// Hands updates to the group committer and hears back. Cloned freely;
/// the committer stops when the last handle is dropped.
#[derive(Clone, Debug)]
pub struct UpdateCommitter {
    queue: mpsc::Sender<Queued>,
}

impl UpdateCommitter {
    /// Starts committing for `db`, at most `max_batch` updates a batch
    /// (and as many waiting, beyond which senders wait for room). Must be
    /// called within a tokio runtime.
    pub fn start(db: Db, max_batch: usize) -> UpdateCommitter {
        let max_batch = max_batch.max(1);
        let (queue, waiting) = mpsc::channel(max_batch);
        tokio::spawn(commit_batches(db, waiting, max_batch));
        UpdateCommitter { queue }
    }

    /// Records `accepting`, whose blob is `blob` (written, its name perhaps
    /// not yet durable), with the batch it joins; answers once that batch
    /// is committed, with what [`Db::accept_update`] would have.
    pub async fn accept(
        &self,
        accepting: Accepting,
        blob: Stored,
    ) -> Result<Acceptance, StoreError> {
        let (outcome, heard) = oneshot::channel();
        let stopped = || StoreError::new(ErrorKind::Other, "the update committer stopped");
        self.queue
            .send(Queued {
                accepting,
                blob,
                outcome,
            })
            .await
            .map_err(|_| stopped())?;
        heard.await.map_err(|_| stopped())?
    }
}

/// The committer's loop: takes whatever is waiting (up to `max_batch`),
/// commits it as one batch, answers each sender, and again.
async fn commit_batches(db: Db, mut waiting: mpsc::Receiver<Queued>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while waiting.recv_many(&mut batch, max_batch).await > 0 {
        let mut accepting = Vec::with_capacity(batch.len());
        let mut blobs = Vec::with_capacity(batch.len());
        let mut senders = Vec::with_capacity(batch.len());
        for q in batch.drain(..) {
            accepting.push(q.accepting);
            blobs.push(q.blob);
            senders.push(q.outcome);
        }
        let outcomes = commit(&db, &accepting, blobs).await;
        for (sender, outcome) in senders.into_iter().zip(outcomes) {
            // A sender that went away does not hear; its update stands.
            let _ = sender.send(outcome);
        }
    }
}

/// One batch: its blobs made durable, then its rows in one
/// transaction. One outcome per update, in order; a failure of the whole
/// batch is every update's (each sender may try again).
async fn commit(
    db: &Db,
    accepting: &[Accepting],
    blobs: Vec<Stored>,
) -> Vec<Result<Acceptance, StoreError>> {
    let synced = tokio::task::spawn_blocking(move || sync_stored(&blobs))
        .await
        .map_err(|e| StoreError::new(ErrorKind::Other, e))
        .and_then(|r| r.map_err(StoreError::from));
    let recorded = match synced {
        Ok(()) => db.accept_updates(accepting).await,
        Err(e) => Err(e),
    };
    match recorded {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        Err(e) => accepting.iter().map(|_| Err(e.shared())).collect(),
    }
}
