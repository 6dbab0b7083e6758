//! Training speed on synthetic data: a device's benchmark score, and the
//! in-browser benchmark's measurement.

use oblivion_ml::data::Dataset;
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
    /// Mini-batch size.
    pub batch: usize,
    /// Untimed steps first (kernel compilation, allocation).
    pub warmup: u32,
    /// Timed steps.
    pub steps: u32,
}

impl SpeedTest {
    /// The reference benchmark: a 784-128-10 MLP with Adam at batch 64.
    pub fn reference(steps: u32) -> SpeedTest {
        SpeedTest {
            model: ModelSpec::Mlp { hidden: vec![128] },
            input_shape: vec![784],
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
    let arch = Architecture::new(test.model.clone(), test.input_shape.clone(), 10)?;
    let n = 256;
    let len = arch.input_len();
    let data = Dataset {
        shape: test.input_shape.clone(),
        features: (0..n * len)
            .map(|i| ((i * 7919) % 255) as f32 / 255.0)
            .collect(),
        labels: (0..n as u32).map(|i| i % 10).collect(),
        classes: 10,
    };
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
