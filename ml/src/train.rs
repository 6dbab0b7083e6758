//! Local training of one shard, and evaluation.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use oblivion_protocol::{LocalWork, OptimizerSpec};

use crate::data::{Dataset, shuffle};
use crate::model::{Architecture, Network};
use crate::params::Params;
use crate::weights::{network_with, read_params_async};
use crate::{ComputeDevice, MlError};

/// How a worker trains its shard.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalTraining {
    /// The optimizer, fresh for each shard.
    pub optimizer: OptimizerSpec,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Epochs or steps.
    pub work: LocalWork,
    /// Seed of the shuffle.
    pub seed: u64,
}

/// What one shard's training produced.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOutcome {
    /// The trained weights.
    pub params: Params,
    /// Samples processed (counting repeats across epochs).
    pub samples: u64,
    /// Mini-batch steps taken.
    pub steps: u64,
    /// Mean training loss over the steps.
    pub mean_loss: f64,
}

/// Validation results.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// Samples evaluated.
    pub samples: usize,
}

pub(crate) fn image_shape(arch: &Architecture) -> Option<[usize; 3]> {
    match arch.input_shape.as_slice() {
        [c, h, w] => Some([*c, *h, *w]),
        _ => None,
    }
}

pub(crate) fn batch_tensors(
    data: &Dataset,
    indices: &[usize],
    device: &Device,
) -> (Tensor<2>, Tensor<1, Int>) {
    let per = data.sample_len();
    let mut x = Vec::with_capacity(indices.len() * per);
    let mut y = Vec::with_capacity(indices.len());
    for &i in indices {
        x.extend_from_slice(&data.features[i * per..(i + 1) * per]);
        y.push(i64::from(data.labels[i]));
    }
    (
        Tensor::from_data(TensorData::new(x, [indices.len(), per]), device),
        Tensor::from_data(TensorData::new(y, [indices.len()]), device),
    )
}

/// The order of mini-batches for a shard: seeded shuffles, epoch after epoch.
fn plan_batches(n: usize, batch: usize, work: LocalWork, seed: u64) -> Vec<Vec<usize>> {
    let batch = batch.clamp(1, n.max(1));
    let mut batches = Vec::new();
    let mut epoch = 0u64;
    loop {
        let mut order: Vec<usize> = (0..n).collect();
        shuffle(
            &mut order,
            seed.wrapping_add(epoch.wrapping_mul(0x2545_F491_4F6C_DD1D)),
        );
        for chunk in order.chunks(batch) {
            if let LocalWork::Steps(s) = work
                && batches.len() >= s as usize
            {
                return batches;
            }
            batches.push(chunk.to_vec());
        }
        epoch += 1;
        match work {
            LocalWork::Epochs(e) if epoch >= u64::from(e) => return batches,
            _ if n == 0 => return batches,
            _ => {}
        }
    }
}

/// Training of one shard, step by step, so a caller can report progress,
/// stop early, or read results asynchronously (as a browser must).
pub struct LocalTrainer<'a> {
    arch: &'a Architecture,
    data: &'a Dataset,
    device: Device,
    network: Network,
    optimizer: ModuleOptimizer,
    learning_rate: f64,
    batches: Vec<Vec<usize>>,
    next: usize,
    samples: u64,
    loss_sum: Option<Tensor<1>>,
}

impl<'a> LocalTrainer<'a> {
    /// Prepares training from `start` weights on `data`.
    pub fn new(
        arch: &'a Architecture,
        start: &Params,
        data: &'a Dataset,
        config: &LocalTraining,
        device: ComputeDevice,
    ) -> Result<LocalTrainer<'a>, MlError> {
        Self::with_device(arch, start, data, config, device.device_for(arch)?)
    }

    /// Like [`LocalTrainer::new`], on an explicit burn device.
    pub fn with_device(
        arch: &'a Architecture,
        start: &Params,
        data: &'a Dataset,
        config: &LocalTraining,
        device: Device,
    ) -> Result<LocalTrainer<'a>, MlError> {
        if data.shape != arch.input_shape || data.classes > arch.classes {
            return Err(MlError::Data(format!(
                "shard has samples {:?} with {} classes; the model expects {:?} with {}",
                data.shape, data.classes, arch.input_shape, arch.classes
            )));
        }
        let device = device.autodiff();
        let network = network_with(arch, start, &device)?;
        let optimizer = match config.optimizer {
            OptimizerSpec::Adam { .. } => AdamConfig::new().init(),
            OptimizerSpec::Sgd { momentum, .. } if momentum > 0.0 => SgdConfig::new()
                .with_momentum(Some(
                    MomentumConfig::new()
                        .with_momentum(momentum)
                        .with_dampening(0.0),
                ))
                .init(),
            OptimizerSpec::Sgd { .. } => SgdConfig::new().init(),
        };
        Ok(LocalTrainer {
            arch,
            data,
            network,
            optimizer,
            learning_rate: config.optimizer.learning_rate(),
            batches: plan_batches(data.len(), config.batch_size, config.work, config.seed),
            next: 0,
            samples: 0,
            loss_sum: None,
            device,
        })
    }

    /// Total steps planned.
    pub fn total_steps(&self) -> usize {
        self.batches.len()
    }

    /// Steps done so far.
    pub fn steps_done(&self) -> usize {
        self.next
    }

    /// Takes one mini-batch step; false once all are done.
    pub fn step(&mut self) -> bool {
        let Some(batch) = self.batches.get(self.next) else {
            return false;
        };
        let (x, y) = batch_tensors(self.data, batch, &self.device);
        let logits = self.network.forward(x, image_shape(self.arch));
        let loss = CrossEntropyLossConfig::new()
            .init(&self.device)
            .forward(logits, y);
        let grads = GradientsParams::from_grads(loss.backward(), &self.network);
        self.network = self
            .optimizer
            .step(self.learning_rate, self.network.clone(), grads);
        let detached = loss.detach();
        self.loss_sum = Some(match self.loss_sum.take() {
            Some(sum) => sum + detached,
            None => detached,
        });
        self.samples += batch.len() as u64;
        self.next += 1;
        true
    }

    /// Waits until the device has run every step taken so far; returns the
    /// mean training loss so far. On a GPU, steps only queue work: a browser
    /// must await this now and then to keep the queue short and its event
    /// loop turning (readback is asynchronous there).
    pub async fn sync(&self) -> Result<f64, MlError> {
        let Some(sum) = &self.loss_sum else {
            return Ok(f64::NAN);
        };
        let data = sum
            .to_data_async()
            .await
            .map_err(|e| MlError::Backend(format!("{e:?}")))?;
        let v = data
            .try_into_vec_as::<f32>()
            .map_err(|e| MlError::Backend(format!("{e:?}")))?;
        Ok(f64::from(v.first().copied().unwrap_or(f32::NAN)) / self.next.max(1) as f64)
    }

    /// The trained weights and statistics, read back asynchronously.
    pub async fn finish_async(self) -> Result<TrainOutcome, MlError> {
        let mean_loss = self.sync().await?;
        Ok(TrainOutcome {
            params: read_params_async(&self.network.valid()).await?,
            samples: self.samples,
            steps: self.next as u64,
            mean_loss,
        })
    }

    /// The trained weights and statistics (reads them back synchronously).
    pub fn finish(self) -> Result<TrainOutcome, MlError> {
        burn::tensor::try_read_sync(self.finish_async()).unwrap_or_else(|| {
            Err(MlError::Backend(
                "this device reads back asynchronously: use finish_async".into(),
            ))
        })
    }
}

/// Trains `start` on `data`; `progress` gets the fraction done after each
/// step and returns false to stop (the result then covers the steps taken).
///
/// ```
/// use oblivion_ml::{ComputeDevice, data::Dataset, model::Architecture, train::*, weights::initial_params};
/// use oblivion_protocol::{LocalWork, ModelSpec, OptimizerSpec};
/// let data = Dataset { shape: vec![2], features: vec![0.0, 1.0, 1.0, 0.0], labels: vec![0, 1], classes: 2 };
/// let arch = Architecture::new(ModelSpec::Mlp { hidden: vec![4] }, vec![2], 2).unwrap();
/// let start = initial_params(&arch, 1).unwrap();
/// let config = LocalTraining {
///     optimizer: OptimizerSpec::Adam { learning_rate: 0.05 },
///     batch_size: 2,
///     work: LocalWork::Steps(50),
///     seed: 0,
/// };
/// let out = train(&arch, &start, &data, &config, ComputeDevice::Cpu, &mut |_| true).unwrap();
/// assert_eq!(out.steps, 50);
/// assert_eq!(evaluate(&arch, &out.params, &data, ComputeDevice::Cpu).unwrap().accuracy, 1.0);
/// ```
pub fn train(
    arch: &Architecture,
    start: &Params,
    data: &Dataset,
    config: &LocalTraining,
    device: ComputeDevice,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Result<TrainOutcome, MlError> {
    let mut trainer = LocalTrainer::new(arch, start, data, config, device)?;
    let total = trainer.total_steps().max(1) as f32;
    while trainer.step() {
        if !progress(trainer.steps_done() as f32 / total) {
            break;
        }
    }
    trainer.finish()
}

const EVAL_BATCH: usize = 512;

/// Logits `[len, classes]`, row-major, for every sample of `data`.
pub fn predict(
    arch: &Architecture,
    params: &Params,
    data: &Dataset,
    device: ComputeDevice,
) -> Result<Vec<f32>, MlError> {
    let device = device.device_for(arch)?;
    let network = network_with(arch, params, &device)?;
    let mut out = Vec::with_capacity(data.len() * arch.classes);
    let all: Vec<usize> = (0..data.len()).collect();
    for chunk in all.chunks(EVAL_BATCH) {
        let (x, _) = batch_tensors(data, chunk, &device);
        let logits = network.forward(x, image_shape(arch));
        out.extend(
            logits
                .try_into_vec_as::<f32>()
                .map_err(|e| MlError::Backend(format!("{e:?}")))?,
        );
    }
    Ok(out)
}

/// Mean cross-entropy and accuracy of `params` on `data`.
pub fn evaluate(
    arch: &Architecture,
    params: &Params,
    data: &Dataset,
    device: ComputeDevice,
) -> Result<Evaluation, MlError> {
    let logits = predict(arch, params, data, device)?;
    let (mut loss, mut correct) = (0f64, 0usize);
    for (row, &label) in logits.chunks_exact(arch.classes).zip(&data.labels) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_sum = f64::from(max)
            + row
                .iter()
                .map(|v| f64::from(v - max).exp())
                .sum::<f64>()
                .ln();
        loss += log_sum - f64::from(row[label as usize]);
        let best = row
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        correct += usize::from(best == Some(label as usize));
    }
    let n = data.len().max(1) as f64;
    Ok(Evaluation {
        loss: loss / n,
        accuracy: correct as f64 / n,
        samples: data.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_plan_follows_epochs_and_steps() {
        let e = plan_batches(10, 4, LocalWork::Epochs(2), 1);
        assert_eq!(e.len(), 6);
        assert_eq!(e.iter().map(Vec::len).sum::<usize>(), 20);
        let s = plan_batches(10, 4, LocalWork::Steps(7), 1);
        assert_eq!(s.len(), 7);
        assert_ne!(e[0], e[3], "each epoch is shuffled anew");
    }
}
