//! The worker engine: everything a worker does between receiving a lease
//! and posting its update, with no I/O of its own, so the native binary and
//! the browser's Web Worker run the very same code.
//!
//! The host fetches the artifacts a lease names (see [`Engine::missing`]),
//! hands them over with [`Engine::insert`] (which checks their sha256), then
//! calls [`Engine::train`] and posts the bytes [`Update::body`] holds.

mod benchmark;
mod cache;

use std::collections::HashMap;
use std::sync::Arc;

use oblivion_ml::data::{Dataset, decode_shard};
use oblivion_ml::model::Architecture;
use oblivion_ml::params::Params;
use oblivion_ml::train::{LocalTrainer, LocalTraining};
use oblivion_ml::{ComputeDevice, MlError};
use oblivion_protocol::LocalWork;
use oblivion_protocol::wire::{LeaseTask, update_metadata};
use sha2::{Digest, Sha256};

pub use benchmark::{SpeedTest, benchmark, training_speed};
use cache::Lru;

/// What can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// An artifact's bytes do not hash to the address they were fetched by.
    #[error("artifact {0} does not match its sha256")]
    Corrupt(String),
    /// The lease names an artifact that was not inserted.
    #[error("artifact {0} is missing")]
    Missing(String),
    /// Training or decoding failed.
    #[error(transparent)]
    Ml(#[from] MlError),
}

/// Which role an artifact plays in a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArtifactKind {
    /// Global weights (safetensors).
    Weights,
    /// A data shard.
    Data,
}

/// A trained update, ready to post.
#[derive(Clone, Debug)]
pub struct Update {
    /// gzip(safetensors) of `trained - global`, with metadata.
    pub body: Vec<u8>,
    /// Samples processed.
    pub samples: u64,
    /// Mean training loss.
    pub mean_loss: f64,
    /// L2 norm of the update.
    pub norm: f64,
}

/// On a GPU, steps between waits for the device (a browser's event loop
/// turns at each wait; the GPU queue stays short).
pub const GPU_SYNC_STEPS: usize = 8;

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The engine: a device and caches of decoded artifacts.
pub struct Engine {
    device: ComputeDevice,
    weights: Lru<Arc<Params>>,
    data: Lru<Arc<Dataset>>,
}

impl Engine {
    /// An engine training on `device`.
    pub fn new(device: ComputeDevice) -> Engine {
        Engine {
            device,
            weights: Lru::new(4),
            data: Lru::new(16),
        }
    }

    /// Artifacts `task` needs that are not cached yet.
    pub fn missing(&self, task: &LeaseTask) -> Vec<(ArtifactKind, String)> {
        let mut out = Vec::new();
        if !self.weights.contains(&task.weights) {
            out.push((ArtifactKind::Weights, task.weights.clone()));
        }
        if !self.data.contains(&task.data) {
            out.push((ArtifactKind::Data, task.data.clone()));
        }
        out
    }

    /// Checks and decodes a fetched artifact, and caches it.
    pub fn insert(
        &mut self,
        kind: ArtifactKind,
        sha: &str,
        bytes: &[u8],
    ) -> Result<(), EngineError> {
        if sha256_hex(bytes) != sha {
            return Err(EngineError::Corrupt(sha.to_string()));
        }
        match kind {
            ArtifactKind::Weights => {
                let (params, _) = Params::from_safetensors(bytes)?;
                self.weights.insert(sha.to_string(), Arc::new(params));
            }
            ArtifactKind::Data => {
                self.data
                    .insert(sha.to_string(), Arc::new(decode_shard(bytes)?));
            }
        }
        Ok(())
    }

    /// Samples the lease's training will process (for progress rates);
    /// `None` until its data is inserted.
    pub fn planned_samples(&self, task: &LeaseTask) -> Option<u64> {
        let n = self.data.get(&task.data)?.len() as u64;
        Some(match task.work {
            LocalWork::Epochs(e) => n * u64::from(e),
            LocalWork::Steps(s) => u64::from(s) * u64::from(task.batch_size).min(n),
        })
    }

    /// Moves training to another device (a browser falls back to the CPU
    /// when its GPU fails).
    pub fn set_device(&mut self, device: ComputeDevice) {
        self.device = device;
    }

    /// Trains the lease's shard; `progress` gets the fraction done and
    /// returns false to abandon (then no update is produced).
    /// `elapsed_millis` reads a clock (hosts differ: wasm has no `Instant`).
    /// Blocks until done: natively, and on a browser's CPU.
    pub fn train(
        &self,
        task: &LeaseTask,
        progress: &mut dyn FnMut(f32) -> bool,
        elapsed_millis: &dyn Fn() -> u64,
    ) -> Result<Option<Update>, EngineError> {
        let mut progress = async |p| progress(p);
        oblivion_ml::try_read_sync(self.train_async(task, &mut progress, elapsed_millis))
            .unwrap_or_else(|| {
                Err(EngineError::Ml(MlError::Backend(
                    "this device reads back asynchronously: use train_async".into(),
                )))
            })
    }

    /// [`Engine::train`] for hosts that must not block (a browser): on a
    /// GPU it awaits the device every [`GPU_SYNC_STEPS`] steps, and
    /// `progress` may await too (to let the host's event loop turn).
    pub async fn train_async(
        &self,
        task: &LeaseTask,
        progress: &mut impl AsyncFnMut(f32) -> bool,
        elapsed_millis: &dyn Fn() -> u64,
    ) -> Result<Option<Update>, EngineError> {
        let global = self
            .weights
            .get(&task.weights)
            .ok_or_else(|| EngineError::Missing(task.weights.clone()))?;
        let data = self
            .data
            .get(&task.data)
            .ok_or_else(|| EngineError::Missing(task.data.clone()))?;
        let arch = Architecture::new(task.model.clone(), task.input_shape.clone(), task.classes)?;
        let config = LocalTraining {
            optimizer: task.optimizer.clone(),
            batch_size: task.batch_size as usize,
            work: task.work,
            seed: task.seed,
        };
        let start = elapsed_millis();
        let mut trainer = LocalTrainer::new(&arch, &global, &data, &config, self.device)?;
        let total = trainer.total_steps().max(1) as f32;
        let on_gpu = self.device != ComputeDevice::Cpu;
        while trainer.step() {
            if on_gpu && trainer.steps_done() % GPU_SYNC_STEPS == 0 {
                trainer.sync().await?;
            }
            if !progress(trainer.steps_done() as f32 / total).await {
                return Ok(None);
            }
        }
        let outcome = trainer.finish_async().await?;
        let delta = outcome.params.minus(&global);
        if !delta
            .tensors
            .iter()
            .all(|t| t.values.iter().all(|v| v.is_finite()))
        {
            // A failing GPU can produce garbage; never post it.
            return Err(EngineError::Ml(MlError::Backend(
                "training produced non-finite weights".into(),
            )));
        }
        let millis = elapsed_millis().saturating_sub(start);
        let metadata = HashMap::from([
            (
                update_metadata::SAMPLES.to_string(),
                outcome.samples.to_string(),
            ),
            (
                update_metadata::TRAIN_LOSS.to_string(),
                outcome.mean_loss.to_string(),
            ),
            (
                update_metadata::TRAIN_MILLIS.to_string(),
                millis.to_string(),
            ),
        ]);
        Ok(Some(Update {
            norm: delta.l2_norm(),
            body: delta.to_compressed(Some(metadata)),
            samples: outcome.samples,
            mean_loss: outcome.mean_loss,
        }))
    }
}
