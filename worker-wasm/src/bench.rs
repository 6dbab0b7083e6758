//! The in-browser benchmark (`TabCommand::Bench`): training or inference.

use oblivion_ml::ComputeDevice;
use oblivion_protocol::tab::{BenchTask, TabBench, TabReport};
use oblivion_worker_engine::{SpeedTest, inference_speed, training_speed};

use crate::gpu;
use crate::net::precise_ms;

/// Measures training or inference speed as the command asks.
pub async fn run(test: TabBench) -> TabReport {
    let result = measure(&test).await;
    TabReport::BenchResult {
        samples_per_second: result.as_ref().ok().copied(),
        error: result.err(),
        backend: test.backend,
    }
}

async fn measure(test: &TabBench) -> Result<f64, String> {
    let device = match test.backend.as_str() {
        "cpu" => ComputeDevice::Cpu,
        "webgpu" => gpu::webgpu().await?,
        other => return Err(format!("unknown backend {other:?}; use cpu or webgpu")),
    };
    let speed = SpeedTest {
        model: test.model.clone(),
        input_shape: test.input_shape.clone(),
        classes: test.classes,
        batch: test.batch,
        warmup: test.warmup,
        steps: test.steps,
    };
    match test.task {
        BenchTask::Train => training_speed(&speed, device, &precise_ms).await,
        BenchTask::Infer => inference_speed(&speed, device, &precise_ms).await,
    }
    .map_err(|e| e.to_string())
}
