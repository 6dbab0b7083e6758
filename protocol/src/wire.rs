//! Messages between a worker and the coordinator.
//!
//! One WebSocket per worker (`GET /api/workers/connect`) carries JSON text
//! frames: [`WorkerMessage`] up, [`CoordinatorMessage`] down. Bulk bytes do
//! not travel on it: weights and data shards are fetched by sha256 from
//! `GET /api/artifacts/{sha256}` (immutable, cacheable), and an update is
//! posted to `POST /api/leases/{lease}/update` with the worker's token in
//! the [`WORKER_TOKEN_HEADER`] header.

use serde::{Deserialize, Serialize};

use crate::blob::BlobId;
use crate::ids::{JobId, LeaseId, WorkerId};
use crate::spec::{LocalWork, ModelSpec, OptimizerSpec};

/// Version of this protocol; a worker that speaks another is refused.
pub const PROTOCOL_VERSION: u32 = 3;

/// Header carrying the secret a worker received in [`CoordinatorMessage::Welcome`].
pub const WORKER_TOKEN_HEADER: &str = "x-oblivion-worker-token";

/// One coordinator as a worker reaches it: the URLs of the worker
/// protocol, built here alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    base: String,
}

impl Endpoint {
    /// The coordinator at `base` (`http://host:port` or `https://…`, a
    /// trailing `/` or not).
    pub fn new(base: &str) -> Endpoint {
        Endpoint {
            base: base.trim().trim_end_matches('/').to_string(),
        }
    }

    /// Its base URL, without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The worker socket: `ws://…` (or `wss://`) `/api/workers/connect`.
    pub fn connect_url(&self) -> String {
        format!(
            "{}/api/workers/connect",
            self.base.replacen("http", "ws", 1)
        )
    }

    /// Where the artifact is fetched.
    pub fn artifact_url(&self, blob: BlobId) -> String {
        format!("{}/api/artifacts/{blob}", self.base)
    }

    /// Where a lease's update is posted.
    pub fn update_url(&self, lease_id: LeaseId) -> String {
        format!("{}/api/leases/{lease_id}/update", self.base)
    }
}

/// Largest accepted update upload, in bytes (compressed).
pub const MAX_UPDATE_BYTES: usize = 64 * 1024 * 1024;

/// Keys of the metadata carried inside an update's safetensors header.
pub mod update_metadata {
    /// Samples the worker says it trained on (informative only: credit is
    /// computed from the shard, never from this claim).
    pub const SAMPLES: &str = "samples";
    /// Mean training loss over the local steps.
    pub const TRAIN_LOSS: &str = "train_loss";
    /// Milliseconds spent training.
    pub const TRAIN_MILLIS: &str = "train_millis";
}

/// What the worker runs on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `cpu` or `wgpu`.
    pub backend: String,
    /// Adapter or CPU name, as the platform reports it.
    pub name: String,
    /// Why this backend (e.g. why the GPU was not used), or adapter limits.
    #[serde(default)]
    pub detail: String,
}

/// Where the worker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// The native `oblivion-worker` binary.
    Native,
    /// A browser tab.
    Browser,
}

/// A worker's progress on one lease.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseProgress {
    /// The lease.
    pub lease_id: LeaseId,
    /// Fraction done, 0 to 1.
    pub progress: f32,
}

/// Worker to coordinator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    /// First message on a connection.
    Hello {
        /// Must equal [`PROTOCOL_VERSION`].
        protocol: u32,
        /// A display name.
        name: String,
        /// Native binary or browser.
        client: ClientKind,
        /// The device it trains on.
        device: DeviceInfo,
        /// Training samples per second on the reference benchmark.
        benchmark: f64,
        /// Where rewards go, if the worker has an address.
        #[serde(default)]
        payout_address: Option<String>,
        /// Most leases it wants at once (the coordinator's cap applies
        /// too): a browser tab trains one shard at a time, so holding a
        /// second would only delay it for the network.
        #[serde(default)]
        max_leases: Option<u32>,
        /// The local data it offers to federated jobs (described, never
        /// sent): it is leased their work when its shape fits.
        #[serde(default)]
        local_data: Option<LocalDataOffer>,
    },
    /// Keeps the worker's leases alive and reports progress.
    Heartbeat {
        /// Progress of each lease the worker is working on.
        leases: Vec<LeaseProgress>,
    },
    /// The worker gives a lease back unfinished (shutting down, or failed).
    ReturnLease {
        /// The lease.
        lease_id: LeaseId,
        /// Why, for the operator.
        reason: String,
        /// The worker will not train this job at all (its contributor's
        /// privacy limits refuse it): offer it no more of its work.
        #[serde(default)]
        decline_job: bool,
    },
    /// The worker takes no new leases (it finishes those it holds).
    Drain,
}

/// What a worker says of the data it holds for federated jobs: enough to
/// match it to a job, nothing of its content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalDataOffer {
    /// Shape of one sample (`[F]` for CSV rows, `[1, H, W]` for images).
    pub shape: Vec<usize>,
    /// One more than its largest label.
    pub classes: usize,
    /// Number of samples.
    pub samples: u64,
    /// The names of a CSV's feature columns, in order; `None` for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
}

impl LocalDataOffer {
    /// Whether a job with these inputs, classes and (when both sides name
    /// them) feature columns can train on it.
    pub fn fits(&self, input_shape: &[usize], classes: usize, columns: Option<&[String]>) -> bool {
        let same_columns = match (&self.columns, columns) {
            (Some(mine), Some(theirs)) => mine.as_slice() == theirs,
            _ => true,
        };
        self.shape == input_shape && self.classes <= classes && self.samples > 0 && same_columns
    }
}

/// Per-feature scaling of a job's tabular data, `(x - mean) / std`: the
/// statistics of its training split, stored with the job and built into
/// its exported model. In federated mode they are the validation data's,
/// and every contributor's lease carries them so that all scale alike.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureScaling {
    /// Subtracted from each feature.
    pub mean: Vec<f32>,
    /// Then divided by (never zero).
    pub std: Vec<f32>,
    /// The features' names, in order, when the job's data has a header:
    /// local data must have the same columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
}

impl LocalTask {
    /// The feature columns the job expects, when it names them.
    pub fn columns(&self) -> Option<&[String]> {
        self.scaling.as_ref()?.columns.as_deref()
    }
}

/// What a worker does with its update before sending it, in federated
/// mode: the coordinator never sees an unclipped or noiseless update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalTask {
    /// Tabular features are scaled by this; `None` for images.
    pub scaling: Option<FeatureScaling>,
    /// The update is clipped to this L2 norm...
    pub clip_norm: f64,
    /// ...then gets Gaussian noise of this standard deviation in every
    /// coordinate.
    pub noise_std: f64,
    /// The job's rounds: how many updates it may ask of this data (the
    /// contributor's worker prices the whole job before the first).
    #[serde(default)]
    pub rounds: u32,
}

/// The data a lease trains on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainingData {
    /// A data shard, fetched by its address.
    Shard(BlobId),
    /// The worker's own local data (federated mode). Boxed: it is much
    /// larger than a shard's address.
    Local(Box<LocalTask>),
}

impl TrainingData {
    /// The shard's address, for a lease on one.
    pub fn shard(&self) -> Option<BlobId> {
        match self {
            TrainingData::Shard(blob) => Some(*blob),
            TrainingData::Local(_) => None,
        }
    }
}

/// Everything a worker needs for one slot of a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseTask {
    /// The lease; quote it when posting the result.
    pub lease_id: LeaseId,
    /// The job.
    pub job_id: JobId,
    /// The round (from 1).
    pub round: u32,
    /// The shard within the round (from 0).
    pub shard: u32,
    /// Architecture.
    pub model: ModelSpec,
    /// Shape of one input sample (e.g. `[1, 28, 28]` or `[4]`).
    pub input_shape: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
    /// The model's weights (safetensors): the round's global weights.
    pub weights: BlobId,
    /// What to do with them.
    pub work: LeaseWork,
    /// Seconds until the lease expires without a heartbeat.
    pub expires_in_secs: u64,
}

impl LeaseTask {
    /// The data the lease names to fetch: a training shard, or the rows
    /// to run; `None` for a worker's own data.
    pub fn data_blob(&self) -> Option<BlobId> {
        match &self.work {
            LeaseWork::Train(t) => t.data.shard(),
            LeaseWork::Infer(i) => Some(i.rows),
        }
    }

    /// Samples (or rows) its worker runs through the model at once.
    pub fn batch_size(&self) -> u32 {
        match &self.work {
            LeaseWork::Train(t) => t.batch_size,
            LeaseWork::Infer(i) => i.batch_size,
        }
    }

    /// The training this lease asks for, if it is training.
    pub fn training(&self) -> Option<&TrainTask> {
        match &self.work {
            LeaseWork::Train(t) => Some(t),
            LeaseWork::Infer(_) => None,
        }
    }
}

/// What a lease asks of its worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum LeaseWork {
    /// Train the weights on data; post the change to them.
    Train(TrainTask),
    /// Run the model over rows; post its outputs.
    Infer(InferTask),
}

/// A training lease's work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainTask {
    /// Local optimizer.
    pub optimizer: OptimizerSpec,
    /// Mini-batch size.
    pub batch_size: u32,
    /// How long to train.
    pub local_work: LocalWork,
    /// Seed for the local shuffle.
    pub seed: u64,
    /// The data: a shard, or the worker's own.
    pub data: TrainingData,
}

/// An inference lease's work: every row of `rows`, in order, through the
/// model; the outputs are posted as [`outputs`] says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InferTask {
    /// The rows (a data shard, already scaled, labels withheld).
    pub rows: BlobId,
    /// Rows run at once.
    pub batch_size: u32,
}

/// The outputs of an inference lease: gzip of safetensors holding
/// [`outputs::PROBABILITIES`] (`f32`, `[rows, classes]`, each row the
/// softmax of the model's logits) and [`outputs::PREDICTED`] (`u32`,
/// `[rows]`, each row's most probable class).
pub mod outputs {
    /// The tensor of class probabilities.
    pub const PROBABILITIES: &str = "probabilities";
    /// The tensor of predicted classes.
    pub const PREDICTED: &str = "predicted";
}

/// Coordinator to worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CoordinatorMessage {
    /// Reply to `Hello`.
    Welcome {
        /// The worker's id for this connection.
        worker_id: WorkerId,
        /// Secret to send with updates.
        token: String,
        /// How often to send a heartbeat.
        heartbeat_secs: u64,
        /// How many leases the worker may hold at once.
        lease_cap: u32,
    },
    /// A new piece of work.
    Lease(LeaseTask),
    /// Stop working on a lease: it expired, or its job was cancelled.
    Revoke {
        /// The lease.
        lease_id: LeaseId,
        /// Why.
        reason: String,
    },
    /// The connection is being refused or closed, and why.
    Error {
        /// What is wrong.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_builds_the_worker_urls() {
        let e = Endpoint::new("https://oblivion.example:8443/");
        assert_eq!(
            e.connect_url(),
            "wss://oblivion.example:8443/api/workers/connect"
        );
        assert_eq!(
            e.update_url(LeaseId(7)),
            "https://oblivion.example:8443/api/leases/7/update"
        );
        let blob = BlobId::of(b"weights");
        assert_eq!(
            Endpoint::new("http://127.0.0.1:8080").artifact_url(blob),
            format!("http://127.0.0.1:8080/api/artifacts/{blob}")
        );
    }

    #[test]
    fn messages_round_trip_with_a_type_tag() {
        let msg = WorkerMessage::ReturnLease {
            lease_id: LeaseId(7),
            reason: "shutting down".into(),
            decline_job: false,
        };
        let text = serde_json::to_string(&msg).unwrap();
        assert_eq!(
            text,
            r#"{"type":"return_lease","lease_id":7,"reason":"shutting down","decline_job":false}"#
        );
        assert_eq!(serde_json::from_str::<WorkerMessage>(&text).unwrap(), msg);
        // Older workers say nothing of declining.
        let old = r#"{"type":"return_lease","lease_id":7,"reason":"shutting down"}"#;
        assert_eq!(serde_json::from_str::<WorkerMessage>(old).unwrap(), msg);
    }
}

/// The coordinator's answer to an accepted update
/// (`POST /api/leases/{lease}/update`); a refusal is a 4xx with an error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateReceipt {
    /// Always true (refusals are 4xx answers).
    pub accepted: bool,
    /// Samples credited to the worker: the shard's size, never its claim.
    pub credited_samples: u64,
}
