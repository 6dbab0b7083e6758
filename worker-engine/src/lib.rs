//! The worker engine: everything a worker does between receiving a lease
//! and posting its update, with no I/O of its own, so the native binary and
//! the browser's Web Worker run the very same code.
//!
//! The host fetches the artifacts a lease names (see [`Engine::missing`]),
//! hands them over with [`Engine::insert`] (which checks their sha256), then
//! calls [`Engine::work`] (training, or inference over rows) and posts the
//! bytes [`Update::body`] holds.
//!
//! For federated jobs the host hands over its own data once
//! ([`Engine::set_local_data`]) and the contributor's privacy limits and
//! ledger ([`Engine::set_privacy`]): a lease on that data is priced first
//! (floors, ε of the job at sensitivity 2C, the total), trains only if the
//! contributor's limits admit it, then clips the update and adds the job's
//! noise before the update exists, and records the spend in the ledger, so
//! the host never holds an unprotected update, nor one unaccounted for. The
//! host keeps the ledger ([`Engine::privacy`]) before it posts the update.

mod benchmark;
mod cache;
pub mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use oblivion_ml::data::{Dataset, LocalData, decode_shard};
use oblivion_ml::dp::{SecureGaussian, privatize};
use oblivion_ml::inference::infer_async;
use oblivion_ml::model::Architecture;
use oblivion_ml::params::Params;
use oblivion_ml::train::{LocalTrainer, LocalTraining};
use oblivion_ml::{ComputeDevice, MlError};
use oblivion_privacy::contributor::Ask;
use oblivion_protocol::tab::ContributorPrivacy;
use oblivion_protocol::wire::{
    InferTask, LeaseTask, LeaseWork, LocalDataOffer, LocalTask, TrainTask, TrainingData,
    update_metadata,
};
use oblivion_protocol::{BlobId, LocalWork};

pub use benchmark::{SpeedTest, benchmark, inference_speed, training_speed};
use cache::Lru;

/// What can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// An artifact's bytes do not hash to the address they were fetched by.
    #[error("artifact {0} does not match its sha256")]
    Corrupt(BlobId),
    /// The lease names an artifact that was not inserted.
    #[error("artifact {0} is missing")]
    Missing(BlobId),
    /// A federated lease, and no local data fits it.
    #[error("local data: {0}")]
    Local(String),
    /// A federated lease beyond the contributor's privacy limits.
    #[error("privacy: {0}")]
    Privacy(String),
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

/// A lease's result, ready to post: a trained update, or outputs.
#[derive(Clone, Debug)]
pub struct Update {
    /// gzip(safetensors) of `trained - global`, with metadata; or of the
    /// outputs (see `oblivion_protocol::wire::outputs`).
    pub body: Vec<u8>,
    /// Samples processed (rows, for inference).
    pub samples: u64,
    /// Mean training loss (0 for inference).
    pub mean_loss: f64,
    /// L2 norm of the update (0 for inference).
    pub norm: f64,
    /// It was trained on the contributor's own data, and the ledger now
    /// counts it: the host keeps [`Engine::privacy`] before posting it.
    pub spent: bool,
}

/// On a GPU, steps between waits for the device (a browser's event loop
/// turns at each wait; the GPU queue stays short).
pub const GPU_SYNC_STEPS: usize = 8;

/// The engine: a device and caches of decoded artifacts.
pub struct Engine {
    device: ComputeDevice,
    weights: Lru<Arc<Params>>,
    data: Lru<Arc<Dataset>>,
    local: Option<LocalData>,
    /// The network its ledger names, and the contributor's privacy. Behind
    /// a lock so that training (`&self`) records its spend itself.
    privacy: Mutex<(String, ContributorPrivacy)>,
}

impl Engine {
    /// An engine training on `device`.
    pub fn new(device: ComputeDevice) -> Engine {
        Engine {
            device,
            weights: Lru::new(4),
            data: Lru::new(16),
            local: None,
            privacy: Mutex::new((String::new(), ContributorPrivacy::default())),
        }
    }

    /// Sets the contributor's privacy limits and ledger, for the jobs of
    /// `network` (the coordinator, as the ledger names it). Until then the
    /// default limits apply, to an empty ledger.
    pub fn set_privacy(&mut self, network: String, privacy: ContributorPrivacy) {
        self.privacy = Mutex::new((network, privacy));
    }

    /// The contributor's limits and ledger as they stand.
    pub fn privacy(&self) -> ContributorPrivacy {
        self.privacy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// What a lease on the local data asks of it, for the ledger.
    fn ask(&self, task: &LeaseTask, train: &TrainTask, local: &LocalTask, network: &str) -> Ask {
        let held = self.local.as_ref().map_or(0, |l| l.data.len()) as u64;
        let records = match train.local_work {
            LocalWork::Epochs(_) => held,
            LocalWork::Steps(s) => {
                held.min(u64::from(s).saturating_mul(u64::from(train.batch_size)))
            }
        };
        Ask {
            network: network.to_string(),
            job: task.job_id.0,
            noise_multiplier: local.noise_std / local.clip_norm,
            rounds: local.rounds,
            batch_size: train.batch_size,
            records,
        }
    }

    /// Whether the contributor's limits admit `task`: always for a shard
    /// of the coordinator's; for its own data, the floors and ε limits of
    /// [`oblivion_privacy::contributor`]. Checked again by training; a host
    /// asks first to return a lease before fetching anything for it.
    pub fn admit(&self, task: &LeaseTask) -> Result<(), EngineError> {
        let Some(train) = task.training() else {
            return Ok(());
        };
        let TrainingData::Local(local) = &train.data else {
            return Ok(());
        };
        let guard = self.privacy.lock().unwrap_or_else(|p| p.into_inner());
        let (network, privacy) = &*guard;
        privacy
            .ledger
            .admit(&privacy.limits, &self.ask(task, train, local, network))
            .map(|_| ())
            .map_err(EngineError::Privacy)
    }

    /// Sets (or clears) the data this worker trains federated jobs on.
    pub fn set_local_data(&mut self, data: Option<LocalData>) {
        self.local = data;
    }

    /// What to tell the coordinator of the local data: its shape, size and
    /// column names.
    pub fn local_offer(&self) -> Option<LocalDataOffer> {
        self.local.as_ref().map(LocalData::offer)
    }

    /// The local data, checked against a lease and scaled as it says.
    fn local_for(&self, task: &LeaseTask, local: &LocalTask) -> Result<Arc<Dataset>, EngineError> {
        let held = self
            .local
            .as_ref()
            .ok_or_else(|| EngineError::Local("this worker holds none".into()))?;
        let data = &held.data;
        // The contributor's protection is checked here, not taken on trust.
        if !(local.clip_norm.is_finite() && local.clip_norm > 0.0) {
            return Err(EngineError::Local(format!(
                "the lease's clip norm {} is not a positive number",
                local.clip_norm
            )));
        }
        if !(local.noise_std.is_finite() && local.noise_std > 0.0) {
            return Err(EngineError::Local(format!(
                "the lease adds no noise (standard deviation {}): the update would not be \
                 private",
                local.noise_std
            )));
        }
        if !held
            .offer()
            .fits(&task.input_shape, task.classes, local.columns())
        {
            return Err(EngineError::Local(format!(
                "samples of shape {:?} with {} classes (columns {:?}) do not fit a job on {:?} \
                 with {} (columns {:?})",
                data.shape,
                data.classes,
                held.columns,
                task.input_shape,
                task.classes,
                local.columns()
            )));
        }
        Ok(match &local.scaling {
            Some(s) if s.mean.len() == data.sample_len() && s.std.len() == data.sample_len() => {
                let mut scaled = Dataset::clone(data.as_ref());
                scaled.classes = task.classes;
                scaled.normalize(s);
                Arc::new(scaled)
            }
            Some(_) => {
                return Err(EngineError::Local(
                    "the job's feature scaling does not match the data's columns".into(),
                ));
            }
            None => data.clone(),
        })
    }

    fn data_for(&self, task: &LeaseTask, train: &TrainTask) -> Result<Arc<Dataset>, EngineError> {
        match &train.data {
            TrainingData::Shard(shard) => self.data.get(*shard).ok_or(EngineError::Missing(*shard)),
            TrainingData::Local(local) => self.local_for(task, local),
        }
    }

    /// Artifacts `task` needs that are not cached yet.
    pub fn missing(&self, task: &LeaseTask) -> Vec<(ArtifactKind, BlobId)> {
        let mut out = Vec::new();
        if !self.weights.contains(task.weights) {
            out.push((ArtifactKind::Weights, task.weights));
        }
        if let Some(shard) = task.data_blob()
            && !self.data.contains(shard)
        {
            out.push((ArtifactKind::Data, shard));
        }
        out
    }

    /// Checks and decodes a fetched artifact, and caches it.
    pub fn insert(
        &mut self,
        kind: ArtifactKind,
        address: BlobId,
        bytes: &[u8],
    ) -> Result<(), EngineError> {
        if BlobId::of(bytes) != address {
            return Err(EngineError::Corrupt(address));
        }
        match kind {
            ArtifactKind::Weights => {
                let (params, _) = Params::from_safetensors(bytes)?;
                self.weights.insert(address, Arc::new(params));
            }
            ArtifactKind::Data => {
                self.data.insert(address, Arc::new(decode_shard(bytes)?));
            }
        }
        Ok(())
    }

    /// Samples the lease's work will process (for progress rates): rows
    /// for inference; `None` until its data is inserted.
    pub fn planned_samples(&self, task: &LeaseTask) -> Option<u64> {
        let train = match &task.work {
            LeaseWork::Train(t) => t,
            LeaseWork::Infer(i) => return Some(self.data.get(i.rows)?.len() as u64),
        };
        let n = match &train.data {
            TrainingData::Shard(shard) => self.data.get(*shard)?.len(),
            TrainingData::Local(_) => self.local.as_ref()?.data.len(),
        } as u64;
        Some(match train.local_work {
            LocalWork::Epochs(e) => n * u64::from(e),
            LocalWork::Steps(s) => u64::from(s) * u64::from(train.batch_size).min(n),
        })
    }

    /// Moves training to another device (a browser falls back to the CPU
    /// when its GPU fails).
    pub fn set_device(&mut self, device: ComputeDevice) {
        self.device = device;
    }

    /// Does the lease's work (trains its shard, or runs the model over its
    /// rows); `progress` gets the fraction done and returns false to
    /// abandon (then nothing is produced). `elapsed_millis` reads a clock
    /// (hosts differ: wasm has no `Instant`). Blocks until done: natively,
    /// and on a browser's CPU.
    pub fn work(
        &self,
        task: &LeaseTask,
        progress: &mut dyn FnMut(f32) -> bool,
        elapsed_millis: &dyn Fn() -> u64,
    ) -> Result<Option<Update>, EngineError> {
        let mut progress = async |p| progress(p);
        oblivion_ml::try_read_sync(self.work_async(task, &mut progress, elapsed_millis))
            .unwrap_or_else(|| {
                Err(EngineError::Ml(MlError::Backend(
                    "this device reads back asynchronously: use work_async".into(),
                )))
            })
    }

    /// [`Engine::work`] for hosts that must not block (a browser): on a
    /// GPU it awaits the device every [`GPU_SYNC_STEPS`] steps (every batch
    /// of rows, for inference), and `progress` may await too (to let the
    /// host's event loop turn).
    pub async fn work_async(
        &self,
        task: &LeaseTask,
        progress: &mut impl AsyncFnMut(f32) -> bool,
        elapsed_millis: &dyn Fn() -> u64,
    ) -> Result<Option<Update>, EngineError> {
        match &task.work {
            LeaseWork::Train(train) => {
                self.train_async(task, train, progress, elapsed_millis)
                    .await
            }
            LeaseWork::Infer(infer) => self.infer_async(task, infer, progress).await,
        }
    }

    /// Runs the model over the lease's rows: the outputs, in row order.
    async fn infer_async(
        &self,
        task: &LeaseTask,
        infer: &InferTask,
        progress: &mut impl AsyncFnMut(f32) -> bool,
    ) -> Result<Option<Update>, EngineError> {
        let weights = self
            .weights
            .get(task.weights)
            .ok_or(EngineError::Missing(task.weights))?;
        let rows = self
            .data
            .get(infer.rows)
            .ok_or(EngineError::Missing(infer.rows))?;
        let arch = Architecture::new(task.model.clone(), task.input_shape.clone(), task.classes)?;
        let batch = infer.batch_size.max(1) as usize;
        let Some(outputs) =
            infer_async(&arch, &weights, &rows, self.device, batch, progress).await?
        else {
            return Ok(None);
        };
        Ok(Some(Update {
            body: outputs.to_compressed(),
            samples: outputs.rows() as u64,
            mean_loss: 0.0,
            norm: 0.0,
            spent: false,
        }))
    }

    async fn train_async(
        &self,
        task: &LeaseTask,
        train: &TrainTask,
        progress: &mut impl AsyncFnMut(f32) -> bool,
        elapsed_millis: &dyn Fn() -> u64,
    ) -> Result<Option<Update>, EngineError> {
        let global = self
            .weights
            .get(task.weights)
            .ok_or(EngineError::Missing(task.weights))?;
        let data = self.data_for(task, train)?;
        self.admit(task)?;
        let arch = Architecture::new(task.model.clone(), task.input_shape.clone(), task.classes)?;
        let config = LocalTraining {
            optimizer: train.optimizer.clone(),
            batch_size: train.batch_size as usize,
            work: train.local_work,
            seed: train.seed,
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
        let mut delta = outcome.params.minus(&global);
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
        if let TrainingData::Local(local) = &train.data {
            let mut secure = SecureGaussian::new();
            delta = privatize(&delta, local.clip_norm, local.noise_std, &mut || {
                secure.draw()
            });
            // Never send an update without its noise.
            secure.finish()?;
            // Nor without counting it: priced again under the lock, as the
            // ledger may have moved while this trained.
            let mut guard = self.privacy.lock().unwrap_or_else(|p| p.into_inner());
            let (network, privacy) = &mut *guard;
            let ask = self.ask(task, train, local, network);
            privacy
                .ledger
                .admit(&privacy.limits, &ask)
                .map_err(EngineError::Privacy)?;
            privacy.ledger.spend(&ask);
        }
        let millis = elapsed_millis().saturating_sub(start);
        // A contributor's update says nothing but the noised change: its
        // loss, sample count and training time are figures of its data,
        // and no noise covers them.
        let federated = matches!(train.data, TrainingData::Local(_));
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
            body: delta.to_compressed((!federated).then_some(metadata)),
            samples: outcome.samples,
            mean_loss: outcome.mean_loss,
            spent: federated,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oblivion_ml::weights::initial_params;
    use oblivion_privacy::contributor::{ContributorLimits, Ledger};
    use oblivion_protocol::OptimizerSpec;
    use oblivion_protocol::spec::ModelSpec;

    fn local_data() -> LocalData {
        LocalData {
            data: Arc::new(Dataset {
                shape: vec![2],
                features: (0..80).map(|i| (i % 9) as f32).collect(),
                labels: (0..40).map(|i| i % 2).collect(),
                classes: 2,
            }),
            columns: Some(vec!["c0".into(), "c1".into()]),
        }
    }

    fn names(n: usize, prefix: &str) -> Option<Vec<String>> {
        Some((0..n).map(|i| format!("{prefix}{i}")).collect())
    }

    /// An engine holding local data and the global weights of a
    /// federated lease, and that lease.
    fn federated(noise_std: f64, input: usize) -> (Engine, LeaseTask) {
        let arch = Architecture::new(ModelSpec::Mlp { hidden: vec![] }, vec![input], 3).unwrap();
        let weights = initial_params(&arch, 1).unwrap().to_safetensors(None);
        let address = BlobId::of(&weights);
        let mut engine = Engine::new(ComputeDevice::Cpu);
        engine
            .insert(ArtifactKind::Weights, address, &weights)
            .unwrap();
        engine.set_local_data(Some(local_data()));
        let task = LeaseTask {
            lease_id: oblivion_protocol::LeaseId(1),
            job_id: oblivion_protocol::JobId(1),
            round: 1,
            shard: 0,
            model: ModelSpec::Mlp { hidden: vec![] },
            input_shape: vec![input],
            classes: 3,
            weights: address,
            work: LeaseWork::Train(TrainTask {
                optimizer: OptimizerSpec::Sgd {
                    learning_rate: 0.1,
                    momentum: 0.0,
                },
                batch_size: 8,
                local_work: LocalWork::Epochs(2),
                seed: 1,
                data: TrainingData::Local(Box::new(LocalTask {
                    scaling: Some(oblivion_ml::data::FeatureScaling {
                        mean: vec![4.0; input],
                        std: vec![2.0; input],
                        columns: names(input, "c"),
                    }),
                    clip_norm: 0.5,
                    noise_std,
                    rounds: 3,
                })),
            }),
            expires_in_secs: 60,
        };
        // Limits loose enough for what these tests look at; the defaults
        // have a test of their own.
        engine.set_privacy(
            "test".into(),
            ContributorPrivacy {
                limits: ContributorLimits {
                    job_epsilon: f64::MAX,
                    total_epsilon: f64::MAX,
                    min_noise_multiplier: 1e-9,
                    min_batch_size: 1,
                    min_records: 1,
                    ..ContributorLimits::default()
                },
                ledger: Ledger::default(),
            },
        );
        (engine, task)
    }

    fn train(engine: &Engine, task: &LeaseTask) -> Result<Option<Update>, EngineError> {
        engine.work(task, &mut |_| true, &|| 0)
    }

    /// The lease's training, to change.
    fn training(task: &mut LeaseTask) -> &mut TrainTask {
        match &mut task.work {
            LeaseWork::Train(t) => t,
            LeaseWork::Infer(_) => panic!("not a training lease"),
        }
    }

    #[test]
    fn a_federated_update_is_clipped_and_noised_before_it_exists() {
        let (engine, task) = federated(1e-6, 2);
        assert_eq!(
            engine.missing(&task),
            vec![],
            "nothing to fetch but weights"
        );
        assert_eq!(
            engine.local_offer(),
            Some(LocalDataOffer {
                shape: vec![2],
                classes: 2,
                samples: 40,
                columns: names(2, "c"),
            })
        );
        let quiet = train(&engine, &task).unwrap().unwrap();
        assert!(
            quiet.norm <= 0.5 + 1e-3,
            "clipped to the lease's bound: {}",
            quiet.norm
        );
        let (_, figures) = Params::from_compressed(&quiet.body).unwrap();
        assert!(
            figures.is_empty(),
            "no loss, sample count or time leaves with it: {figures:?}"
        );
        let (engine, task) = federated(10.0, 2);
        let loud = train(&engine, &task).unwrap().unwrap();
        assert!(
            loud.norm > 10.0,
            "the noise is in the update: {}",
            loud.norm
        );
    }

    #[test]
    fn a_lease_without_noise_or_for_other_data_is_refused() {
        let (engine, task) = federated(0.0, 2);
        let err = train(&engine, &task).unwrap_err().to_string();
        assert!(err.contains("no noise"), "{err}");
        let (engine, task) = federated(0.1, 3);
        let err = train(&engine, &task).unwrap_err().to_string();
        assert!(err.contains("do not fit"), "{err}");
        let (engine, mut task) = federated(0.1, 2);
        if let TrainingData::Local(local) = &mut training(&mut task).data {
            local.scaling.as_mut().unwrap().columns = names(2, "other");
        }
        let err = train(&engine, &task).unwrap_err().to_string();
        assert!(err.contains("do not fit"), "other columns: {err}");
        let (mut engine, task) = federated(0.1, 2);
        engine.set_local_data(None);
        let err = train(&engine, &task).unwrap_err().to_string();
        assert!(err.contains("holds none"), "{err}");
    }

    #[test]
    fn the_default_limits_refuse_the_reconstruction_attack_and_count_what_they_admit() {
        // The attack: almost no noise, a huge clip, batch 1, one step.
        let (mut engine, mut task) = federated(1e-12, 2);
        engine.set_privacy("http://c".into(), ContributorPrivacy::default());
        training(&mut task).batch_size = 1;
        training(&mut task).local_work = LocalWork::Steps(1);
        if let TrainingData::Local(local) = &mut training(&mut task).data {
            local.clip_norm = 1e6;
        }
        let err = engine.admit(&task).unwrap_err().to_string();
        assert!(err.contains("min_noise_multiplier"), "{err}");
        let err = train(&engine, &task).unwrap_err().to_string();
        assert!(
            err.starts_with("privacy:"),
            "refused by training too: {err}"
        );
        assert_eq!(engine.privacy().ledger, Ledger::default(), "nothing spent");

        // A job within the defaults: σ = 8, batch 16 over 40 records.
        let (mut engine, mut task) = federated(4.0, 2);
        engine.set_privacy("http://c".into(), ContributorPrivacy::default());
        training(&mut task).batch_size = 16;
        let update = train(&engine, &task).unwrap().unwrap();
        assert!(update.spent);
        let ledger = engine.privacy().ledger;
        assert_eq!(ledger.spends.len(), 1, "{ledger:?}");
        assert_eq!((ledger.spends[0].job, ledger.spends[0].rounds), (1, 1));
        assert_eq!(ledger.spends[0].noise_multiplier, 8.0);
        assert_eq!(ledger.spends[0].network, "http://c");
    }
}
