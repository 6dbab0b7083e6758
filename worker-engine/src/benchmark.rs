//! A short, fixed training benchmark: a device's score in samples/s.

use oblivion_ml::data::Dataset;
use oblivion_ml::model::Architecture;
use oblivion_ml::train::{LocalTraining, train};
use oblivion_ml::weights::initial_params;
use oblivion_ml::{ComputeDevice, MlError};
use oblivion_protocol::{LocalWork, ModelSpec, OptimizerSpec};

/// Samples per second training a 784-128-10 MLP with Adam at batch 64 on
/// synthetic data for `steps` steps. `elapsed_millis` reads a clock.
pub fn benchmark(
    device: ComputeDevice,
    steps: u32,
    elapsed_millis: &dyn Fn() -> u64,
) -> Result<f64, MlError> {
    let arch = Architecture::new(ModelSpec::Mlp { hidden: vec![128] }, vec![784], 10)?;
    let n = 256;
    let data = Dataset {
        shape: vec![784],
        features: (0..n * 784)
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
        batch_size: 64,
        work: LocalWork::Steps(steps),
        seed: 0,
    };
    let start = elapsed_millis();
    let out = train(&arch, &params, &data, &config, device, &mut |_| true)?;
    let millis = elapsed_millis().saturating_sub(start).max(1);
    Ok(out.samples as f64 * 1000.0 / millis as f64)
}
