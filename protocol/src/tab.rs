//! Messages between the web app's page and its browser worker (a Web
//! Worker), as JSON text: [`TabCommand`] in, [`TabReport`] out.
//!
//! One message is not JSON: the contributor's local files for federated
//! jobs, sent before `Start` as an array of `Uint8Array`s (structured
//! clone, within the browser: the bytes never reach the network). The
//! worker answers [`TabReport::LocalData`].

use serde::{Deserialize, Serialize};

use oblivion_privacy::contributor::{ContributorLimits, Ledger};

use crate::ModelSpec;
use crate::ids::{JobId, LeaseId, WorkerId};
use crate::wire::{DeviceInfo, LocalDataOffer};

/// Which backend the tab should train on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendChoice {
    /// The faster device for each model, as measured: WebGPU or the CPU.
    /// A software (fallback) adapter starts on the CPU.
    Auto,
    /// The CPU (WebAssembly) only.
    Cpu,
    /// WebGPU whenever the browser offers an adapter, a software one too.
    Gpu,
}

/// How a tab connects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TabStart {
    /// The coordinator's base URL (`http(s)://host:port`).
    pub coordinator: String,
    /// Display name.
    pub name: String,
    /// Where rewards go.
    #[serde(default)]
    pub payout_address: Option<String>,
    /// Backend preference.
    pub backend: BackendChoice,
    /// Why the page forces the CPU (see [`WorkerBuild::choose`]), shown
    /// in reports.
    #[serde(default)]
    pub cpu_reason: Option<String>,
    /// The WebGPU adapter the page was offered, if any.
    #[serde(default)]
    pub adapter: Option<AdapterInfo>,
    /// The contributor's limits on its local data and what it has spent
    /// (kept in the tab's storage; the worker enforces and updates them).
    #[serde(default)]
    pub privacy: ContributorPrivacy,
}

/// A contributor's privacy settings and ledger, as kept together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContributorPrivacy {
    /// The least privacy it accepts.
    pub limits: ContributorLimits,
    /// What its data has spent.
    pub ledger: Ledger,
}

/// What the in-browser benchmark times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchTask {
    /// Training steps (Adam): samples a second.
    #[default]
    Train,
    /// Forward passes read back, as an inference lease runs: rows a second.
    Infer,
}

/// A speed measurement (the in-browser benchmark).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TabBench {
    /// Training (the default) or inference.
    #[serde(default)]
    pub task: BenchTask,
    /// The network.
    pub model: ModelSpec,
    /// Shape of one sample.
    pub input_shape: Vec<usize>,
    /// Classes the network tells apart (10 unless given).
    #[serde(default = "ten_classes")]
    pub classes: usize,
    /// `cpu` or `webgpu`.
    pub backend: String,
    /// Mini-batch size (training), or rows a forward pass (inference).
    pub batch: usize,
    /// Untimed steps (or batches).
    pub warmup: u32,
    /// Timed steps (or batches).
    pub steps: u32,
}

fn ten_classes() -> usize {
    10
}

/// Page to worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TabCommand {
    /// Connect and train until stopped.
    Start(TabStart),
    /// Stop: the current lease is abandoned (the coordinator re-issues it).
    Stop,
    /// Measure training speed.
    Bench(TabBench),
    /// Run a model over rows the visitor gave (a model page's sandbox):
    /// in the tab, on its CPU; only the weights are fetched, once.
    Predict(TabPredict),
}

/// A sandbox's request: a model and rows for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TabPredict {
    /// Where the weights are fetched from (a model download in
    /// safetensors, whose metadata declares the architecture); fetched
    /// once a page, then kept.
    pub weights_url: String,
    /// The rows, raw (a tabular model's own normalisation is applied), one
    /// after another, each of the model's input size.
    pub rows: Vec<f32>,
}

/// The WebGPU adapter the browser offered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AdapterInfo {
    /// Vendor, architecture and device, as the browser names them.
    pub name: String,
    /// A software or fallback adapter (slow).
    pub fallback: bool,
    /// `maxBufferSize`, bytes.
    pub max_buffer_size: f64,
    /// `maxStorageBufferBindingSize`, bytes.
    pub max_storage_binding: f64,
    /// `maxComputeWorkgroupStorageSize`, bytes.
    pub max_workgroup_storage: f64,
}

impl AdapterInfo {
    /// Whether it renders in software: the browser says so, or it is
    /// SwiftShader (which Chromium does not always flag). On one, our MLP
    /// trains over 100 times slower than on the CPU.
    pub fn software(&self) -> bool {
        self.fallback || self.name.to_lowercase().contains("swiftshader")
    }
}

/// The two builds of the browser worker: one with WebGPU (wgpu and burn's
/// GPU kernels) and one for the CPU alone, a fraction of its size, which a
/// tab that will not train on a GPU loads instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerBuild {
    /// May train on WebGPU; times both devices on each model when left to
    /// choose.
    WebGpu,
    /// The CPU build, and why (shown on the page).
    Cpu(String),
}

impl WorkerBuild {
    /// Which build pool worker `index` loads. `crashed`: why the GPU is
    /// not to be used again (it crashed the worker before); `adapter`: the
    /// page's request for a WebGPU adapter, or why there is none.
    pub fn choose(
        choice: BackendChoice,
        index: usize,
        crashed: Option<&str>,
        adapter: &Result<AdapterInfo, String>,
    ) -> Self {
        if let Some(reason) = crashed {
            return WorkerBuild::Cpu(reason.to_string());
        }
        if index > 0 {
            // One GPU device per tab: the first pool worker holds it.
            return WorkerBuild::Cpu("the first pool worker holds the GPU".into());
        }
        match (choice, adapter) {
            (BackendChoice::Cpu, _) => WorkerBuild::Cpu("the CPU was chosen".into()),
            (_, Err(reason)) => WorkerBuild::Cpu(reason.clone()),
            (BackendChoice::Auto, Ok(a)) if a.software() => WorkerBuild::Cpu(format!(
                "the only WebGPU adapter is a software one ({}), slower than this CPU",
                a.name
            )),
            _ => WorkerBuild::WebGpu,
        }
    }
}

/// Worker to page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TabReport {
    /// The module is loaded; commands may be sent.
    Ready,
    /// The device chosen, and why.
    Device {
        /// What the coordinator is told.
        device: DeviceInfo,
        /// The WebGPU adapter, when there is one.
        adapter: Option<AdapterInfo>,
        /// Why training is on the CPU, when it is.
        cpu_reason: Option<String>,
        /// Reference benchmark, samples/s.
        benchmark: f64,
    },
    /// The devices were timed on a model, and the faster one chosen for it.
    DeviceChoice {
        /// The model, in words.
        model: String,
        /// Samples a second on the CPU.
        cpu: f64,
        /// Samples a second on WebGPU.
        gpu: f64,
        /// `cpu` or `webgpu`.
        chosen: String,
    },
    /// Connected to the coordinator.
    Connected {
        /// This connection's worker id.
        worker_id: WorkerId,
    },
    /// Connection lost; retrying after a pause.
    Disconnected {
        /// What happened.
        reason: String,
        /// Milliseconds until the next attempt.
        retry_in_ms: u32,
    },
    /// Started a lease.
    Lease {
        /// Lease id.
        lease_id: LeaseId,
        /// Job.
        job_id: JobId,
        /// Round.
        round: u32,
        /// Shard.
        shard: u32,
        /// Backend training it (`webgpu` or `cpu`).
        backend: String,
    },
    /// Training progress on the current lease.
    Progress {
        /// Lease id.
        lease_id: LeaseId,
        /// Fraction done.
        progress: f32,
        /// Samples per second so far on this shard.
        samples_per_second: f64,
    },
    /// A lease ended.
    Done {
        /// Lease id.
        lease_id: LeaseId,
        /// Whether the coordinator accepted the update.
        accepted: bool,
        /// Why not, when it did not.
        error: Option<String>,
        /// Shards trained since the start.
        shards_done: u64,
        /// Updates accepted since the start.
        accepted_total: u64,
        /// Updates rejected since the start.
        rejected_total: u64,
        /// Samples credited by the coordinator since the start.
        credit: u64,
        /// Samples per second on this shard.
        samples_per_second: f64,
    },
    /// The coordinator revoked the lease being trained.
    Revoked {
        /// Lease id.
        lease_id: LeaseId,
        /// Why.
        reason: String,
    },
    /// Training moved from the GPU to the CPU.
    Fallback {
        /// Why.
        reason: String,
        /// For this shard only (too big for the adapter), or for good.
        shard_only: bool,
    },
    /// Something worth showing that changes nothing.
    Warning {
        /// What.
        message: String,
    },
    /// The session ended (Stop, or a fatal error).
    Stopped {
        /// Why.
        reason: String,
    },
    /// The module panicked and must be restarted.
    Panic {
        /// The panic message.
        message: String,
    },
    /// A federated job was declined: the contributor's privacy limits
    /// refuse it.
    Declined {
        /// The job.
        job_id: JobId,
        /// Which limit, in words.
        reason: String,
    },
    /// An update of the contributor's own data is about to leave: what its
    /// data has spent now, for the page to keep before the update is sent.
    Spent {
        /// The whole ledger.
        ledger: Ledger,
    },
    /// The local files were read (or could not be): what the coordinator
    /// will be told of them.
    LocalData {
        /// Their shape and size, when they could be read.
        offer: Option<LocalDataOffer>,
        /// Why not, when they could not.
        error: Option<String>,
    },
    /// Result of a [`TabCommand::Predict`]: each row's class
    /// probabilities, one row after another, or why not.
    Prediction {
        /// `[rows, classes]`, row-major.
        probabilities: Vec<f32>,
        /// Classes of each row.
        classes: usize,
        /// Why there is none, when it failed.
        error: Option<String>,
    },
    /// Result of a [`TabCommand::Bench`].
    BenchResult {
        /// Samples (training) or rows (inference) per second, or the
        /// error.
        samples_per_second: Option<f64>,
        /// The error, when it failed.
        error: Option<String>,
        /// Backend used.
        backend: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bench_command_trains_on_ten_classes_unless_told() {
        let old = r#"{"type":"bench","model":{"kind":"mlp","hidden":[128]},"input_shape":[784],"backend":"cpu","batch":64,"warmup":2,"steps":5}"#;
        let Ok(TabCommand::Bench(test)) = serde_json::from_str(old) else {
            panic!("{old} is a bench command");
        };
        assert_eq!((test.task, test.classes), (BenchTask::Train, 10));
        let infer = old.replace(
            r#""input_shape""#,
            r#""task":"infer","classes":3,"input_shape""#,
        );
        let Ok(TabCommand::Bench(test)) = serde_json::from_str(&infer) else {
            panic!("{infer} is a bench command");
        };
        assert_eq!((test.task, test.classes), (BenchTask::Infer, 3));
    }

    fn adapter(name: &str, fallback: bool) -> Result<AdapterInfo, String> {
        Ok(AdapterInfo {
            name: name.into(),
            fallback,
            ..AdapterInfo::default()
        })
    }

    #[test]
    fn only_a_first_pool_worker_offered_a_hardware_adapter_loads_webgpu() {
        let gpu = adapter("nvidia ampere", false);
        let auto = BackendChoice::Auto;
        assert_eq!(
            WorkerBuild::choose(auto, 0, None, &gpu),
            WorkerBuild::WebGpu
        );
        assert_eq!(
            WorkerBuild::choose(BackendChoice::Gpu, 0, None, &gpu),
            WorkerBuild::WebGpu
        );
        let cpu = |choice, index, crashed, adapter: &Result<AdapterInfo, String>| {
            match WorkerBuild::choose(choice, index, crashed, adapter) {
                WorkerBuild::Cpu(reason) => reason,
                WorkerBuild::WebGpu => panic!("{choice:?} {index} {crashed:?} {adapter:?}"),
            }
        };
        assert!(cpu(auto, 1, None, &gpu).contains("first pool worker"));
        assert_eq!(cpu(BackendChoice::Cpu, 0, None, &gpu), "the CPU was chosen");
        assert!(cpu(auto, 0, Some("WebGPU crashed"), &gpu).contains("crashed"));
        let none = Err("this browser has no WebGPU".to_string());
        assert_eq!(
            cpu(BackendChoice::Gpu, 0, None, &none),
            "this browser has no WebGPU"
        );
        // A software adapter: the CPU unless WebGPU is asked for by name,
        // whether the browser flags it or it is SwiftShader unflagged.
        let soft = adapter("Google SwiftShader", false);
        assert!(cpu(auto, 0, None, &soft).contains("software one (Google SwiftShader)"));
        assert!(cpu(auto, 0, None, &adapter("llvmpipe", true)).contains("software"));
        assert_eq!(
            WorkerBuild::choose(BackendChoice::Gpu, 0, None, &soft),
            WorkerBuild::WebGpu
        );
    }
}
