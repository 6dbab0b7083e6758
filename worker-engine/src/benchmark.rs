//! Training and inference speed on synthetic data: a device's benchmark
//! score, and the in-browser benchmark's measurements.

use oblivion_ml::data::Dataset;
use oblivion_ml::inference::infer_async;
use oblivion_ml::model::Architecture;
use oblivion_ml::train::{LocalTrainer, LocalTraining};
use oblivion_ml::weights::initial_params;
use oblivion_ml::{ComputeDevice, MlError, try_read_sync};
use oblivion_protocol::{LocalWork, ModelSpec, OptimizerSpec};

use crate::GPU_SYNC_STEPS;

/// What to time: a model, its input, the batch size and the step counts.
#[derive(Clone, Debug)]
pub struct SpeedTest {
    /// The network.
    pub model: ModelSpec,
    /// Shape of one sample.
    pub input_shape: Vec<usize>,
    /// Classes the model tells apart.
    pub classes: usize,
    /// Mini-batch size (training), or rows a forward pass (inference).
    pub batch: usize,
    /// Untimed steps (or batches) first: kernel compilation, allocation.
    pub warmup: u32,
    /// Timed steps (or batches).
    pub steps: u32,
}

impl SpeedTest {
    /// The reference benchmark: a 784-128-10 MLP with Adam at batch 64.
    pub fn reference(steps: u32) -> SpeedTest {
        SpeedTest {
            model: ModelSpec::Mlp { hidden: vec![128] },
            input_shape: vec![784],
            classes: 10,
            batch: 64,
            warmup: 2,
            steps,
        }
    }
}

/// Samples per second training `test` on `device` with Adam (lr 1e-3) on
/// 256 synthetic samples; every step has finished on the device when the
/// clock stops. `elapsed_millis` reads a clock (f64: browsers' clocks
/// resolve below a millisecond).
pub async fn training_speed(
    test: &SpeedTest,
    device: ComputeDevice,
    elapsed_millis: &dyn Fn() -> f64,
) -> Result<f64, MlError> {
    let arch = Architecture::new(test.model.clone(), test.input_shape.clone(), test.classes)?;
    let data = synthetic(&arch, 256);
    let params = initial_params(&arch, 0)?;
    let config = LocalTraining {
        optimizer: OptimizerSpec::Adam {
            learning_rate: 1e-3,
        },
        batch_size: test.batch,
        work: LocalWork::Steps(test.warmup + test.steps),
        seed: 0,
    };
    let mut trainer = LocalTrainer::new(&arch, &params, &data, &config, device)?;
    for _ in 0..test.warmup {
        trainer.step();
    }
    trainer.sync().await?;
    let start = elapsed_millis();
    let on_gpu = device != ComputeDevice::Cpu;
    while trainer.step() {
        if on_gpu && trainer.steps_done() % GPU_SYNC_STEPS == 0 {
            trainer.sync().await?;
        }
    }
    trainer.sync().await?;
    let millis = (elapsed_millis() - start).max(1e-3);
    Ok((test.steps as usize * test.batch) as f64 * 1000.0 / millis)
}

/// Rows per second `test`'s model answers on `device`, in forward passes
/// of `test.batch` rows, each read back as a worker reads a shard's
/// outputs (softmax included), after `test.warmup` untimed batches. The
/// weights are initial ones: a forward pass costs the same whatever they
/// are.
pub async fn inference_speed(
    test: &SpeedTest,
    device: ComputeDevice,
    elapsed_millis: &dyn Fn() -> f64,
) -> Result<f64, MlError> {
    let arch = Architecture::new(test.model.clone(), test.input_shape.clone(), test.classes)?;
    let params = initial_params(&arch, 0)?;
    let batch = test.batch.max(1);
    let mut go_on = async |_| true;
    if test.warmup > 0 {
        let warmup = synthetic(&arch, test.warmup as usize * batch);
        infer_async(&arch, &params, &warmup, device, batch, &mut go_on).await?;
    }
    let rows = test.steps as usize * batch;
    let timed = synthetic(&arch, rows);
    let start = elapsed_millis();
    infer_async(&arch, &params, &timed, device, batch, &mut go_on).await?;
    let millis = (elapsed_millis() - start).max(1e-3);
    Ok(rows as f64 * 1000.0 / millis)
}

/// `n` deterministic samples for `arch`: values in [0, 1], labels cycling
/// through the classes.
fn synthetic(arch: &Architecture, n: usize) -> Dataset {
    let len = arch.input_len();
    Dataset {
        shape: arch.input_shape.clone(),
        features: (0..n * len)
            .map(|i| ((i * 7919) % 255) as f32 / 255.0)
            .collect(),
        labels: (0..n).map(|i| (i % arch.classes.max(1)) as u32).collect(),
        classes: arch.classes,
    }
}

/// The reference benchmark's score, in samples/s, blocking (natively, or
/// on a browser's CPU). `elapsed_millis` reads a clock.
pub fn benchmark(
    device: ComputeDevice,
    steps: u32,
    elapsed_millis: &dyn Fn() -> f64,
) -> Result<f64, MlError> {
    try_read_sync(training_speed(
        &SpeedTest::reference(steps),
        device,
        elapsed_millis,
    ))
    .unwrap_or_else(|| {
        Err(MlError::Backend(
            "this device reads back asynchronously: use training_speed".into(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> impl Fn() -> f64 {
        let start = std::time::Instant::now();
        move || start.elapsed().as_secs_f64() * 1e3
    }

    #[test]
    fn inference_is_timed_on_the_model_asked_for() {
        let elapsed = clock();
        let iris = SpeedTest {
            model: ModelSpec::Mlp { hidden: vec![16] },
            input_shape: vec![4],
            classes: 3,
            batch: 32,
            warmup: 1,
            steps: 4,
        };
        let rate = try_read_sync(inference_speed(&iris, ComputeDevice::Cpu, &elapsed));
        assert!(matches!(rate, Some(Ok(r)) if r > 0.0), "{rate:?}");
        // A shape the model cannot take is an error, not a figure.
        let wrong = SpeedTest {
            model: ModelSpec::Cnn {
                channels: [8, 16],
                kernel_size: 5,
                hidden: vec![],
            },
            input_shape: vec![4],
            ..iris
        };
        let rate = try_read_sync(inference_speed(&wrong, ComputeDevice::Cpu, &elapsed));
        assert!(matches!(rate, Some(Err(_))), "{rate:?}");
    }
}
