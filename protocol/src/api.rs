//! Shapes of the REST API's answers, shared by the coordinator, its CLI and the app.

use serde::{Deserialize, Serialize};

use crate::JobSpec;
use crate::blob::BlobId;
use crate::ids::{JobId, LeaseId, ModelId, WorkerId};
use crate::spec::{ModelSpec, Visibility};
use crate::wei::Wei;
use crate::wire::{ClientKind, DeviceInfo, LocalDataOffer};

/// Life of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// A paid job waiting for its deposit on chain; not trained yet.
    Funding,
    /// Accepted, not yet started.
    Pending,
    /// Rounds are being trained.
    Running,
    /// All rounds done, or the target accuracy reached.
    Completed,
    /// Stopped by an error (see the job's `error`).
    Failed,
    /// Stopped by its creator.
    Cancelled,
}

impl JobStatus {
    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Funding => "funding",
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Parses [`JobStatus::as_str`]'s output.
    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s {
            "funding" => JobStatus::Funding,
            "pending" => JobStatus::Pending,
            "running" => JobStatus::Running,
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }

    /// Whether the job will change no more.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// Every status, in the order a job may pass through them.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Funding,
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// Whether a job may move from this status to a different one:
    /// forward only, never out of a finished one, and a paid job trains
    /// only once funded. The databases' `jobs_status_forward` triggers hold
    /// the same rule (a test drives every pair of different statuses
    /// through both; writing a status over itself changes nothing, and
    /// both allow it).
    pub fn may_become(self, to: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, to),
            (Funding, Pending | Failed | Cancelled)
                | (Pending, Running | Completed | Failed | Cancelled)
                | (Running, Completed | Failed | Cancelled)
        )
    }
}

/// `POST /api/jobs` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Created {
    /// The new job's id.
    pub id: JobId,
}

/// Metrics of one finished round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundMetrics {
    /// Round number, from 1.
    pub round: u32,
    /// Validation loss of the aggregated model.
    pub loss: f64,
    /// Validation accuracy of the aggregated model, 0 to 1.
    pub accuracy: f64,
    /// Mean training loss the workers reported.
    pub train_loss: f64,
    /// Updates combined into the round (verified).
    pub updates: u32,
    /// Seconds from the round's start to its aggregation.
    pub seconds: f64,
    /// The longest time any one worker spent training in this round, in
    /// seconds, as the workers reported it (informative only).
    pub train_seconds: f64,
    /// Seconds the coordinator spent averaging and evaluating.
    pub aggregate_seconds: f64,
    /// Updates disputed (too large, or against the round): left out and
    /// held against their workers.
    #[serde(default)]
    pub disputed: u32,
    /// Updates that did no work (zero, or a copy): left out, uncredited.
    #[serde(default)]
    pub no_work: u32,
    /// For a job with differential privacy: the ε spent by the end of this
    /// round, at the spec's δ (Rényi-DP accountant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
}

/// Where a shard of the current round is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardStatus {
    /// Waiting for a worker.
    Pending,
    /// A worker holds it.
    Leased,
    /// Its update is in.
    Done,
}

impl ShardStatus {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ShardStatus::Pending => "pending",
            ShardStatus::Leased => "leased",
            ShardStatus::Done => "done",
        }
    }
}

impl std::fmt::Display for ShardStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a connected worker is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Holding no lease, taking new ones.
    #[default]
    Idle,
    /// Holding at least one lease.
    Training,
    /// Finishing what it holds, taking no new leases.
    Draining,
    /// Gone.
    Disconnected,
    /// Takes no leases and earns nothing: too many of its results were
    /// disputed (see [`WorkerView::quarantine`]).
    Quarantined,
}

impl WorkerState {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Idle => "idle",
            WorkerState::Training => "training",
            WorkerState::Draining => "draining",
            WorkerState::Disconnected => "disconnected",
            WorkerState::Quarantined => "quarantined",
        }
    }
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// State of one shard of the current round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardView {
    /// Index within the round.
    pub shard: u32,
    /// Where it is in the round.
    pub state: ShardStatus,
    /// Times it was leased (more than one means it was re-issued).
    pub attempts: u32,
    /// The worker holding it, or that did it.
    pub worker_id: Option<WorkerId>,
    /// Fraction trained, as the holder last reported it (1 once done).
    #[serde(default)]
    pub progress: f32,
}

/// A worker that contributed accepted updates to a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contributor {
    /// Worker (connection) id.
    pub worker_id: WorkerId,
    /// Its display name.
    pub name: String,
    /// Native or browser.
    pub client: ClientKind,
    /// Backend it trained on (`cpu`, `wgpu`, `webgpu`).
    pub backend: String,
    /// Updates of this job accepted from it.
    pub updates: u64,
    /// Samples credited for them.
    pub samples: u64,
}

/// `GET /api/jobs/{id}` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// Id.
    pub id: JobId,
    /// The spec's name.
    pub name: String,
    /// Life-cycle state.
    pub status: JobStatus,
    /// The round in progress (or the last one, once finished); 0 before the first.
    pub round: u32,
    /// Rounds asked for.
    pub rounds: u32,
    /// One entry per finished round.
    pub history: Vec<RoundMetrics>,
    /// Shards of the round in progress.
    pub shards: Vec<ShardView>,
    /// Workers holding a lease of this job now.
    #[serde(default)]
    pub active_workers: u32,
    /// Workers whose updates were accepted, most samples first (only in
    /// `GET /api/jobs/{id}`; empty in the list).
    #[serde(default)]
    pub contributors: Vec<Contributor>,
    /// Why the job failed.
    pub error: Option<String>,
    /// The spec as submitted.
    pub spec: JobSpec,
    /// Number of training and validation samples.
    pub train_samples: u64,
    /// Number of validation samples.
    pub validation_samples: u64,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// The account that created it (lower-case `0x` hex); `None` for jobs
    /// from before accounts existed.
    #[serde(default)]
    pub owner: Option<String>,
    /// A paid job's escrow; `None` for an unpaid job.
    #[serde(default)]
    pub payment: Option<PaymentView>,
    /// An inference job's outputs, once assembled (only in
    /// `GET /api/jobs/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<OutputsView>,
}

/// What an inference job's outputs came to: download them from
/// `GET /api/jobs/{id}/outputs?format=csv|jsonl|npy`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputsView {
    /// Rows answered.
    pub rows: u64,
    /// Classes of each.
    pub classes: u64,
    /// The share of rows predicted as labelled, when the rows are.
    pub accuracy: Option<f64>,
    /// When the rows are labelled: `confusion[label][predicted]`, rows
    /// counted.
    pub confusion: Option<Vec<Vec<u64>>>,
}

/// A model in the registry (`GET /api/models`, `GET /api/models/{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelView {
    /// Id.
    pub id: ModelId,
    /// The training job that made it; `None` for registered weights.
    pub job: Option<JobId>,
    /// Its name.
    pub name: String,
    /// The account that made or registered it.
    pub owner: Option<String>,
    /// Who may find, read and run it.
    pub visibility: Visibility,
    /// The architecture.
    pub architecture: ModelSpec,
    /// Shape of one input sample.
    pub input_shape: Vec<usize>,
    /// Classes it predicts.
    pub classes: usize,
    /// The sha256 of its weights (safetensors, as trained).
    pub weights_sha256: BlobId,
    /// What it was trained on: a built-in dataset's name, `csv`, `idx`,
    /// `federated` or `registered`.
    pub dataset: String,
    /// Accuracy on its validation split, when known.
    pub accuracy: Option<f64>,
    /// Loss on its validation split, when known.
    pub loss: Option<f64>,
    /// The ε its training spent, when private.
    pub epsilon: Option<f64>,
    /// Rounds it was trained for.
    pub rounds: u32,
    /// When it was made (Unix seconds).
    pub created_at: i64,
    /// The names of its tabular features, in order, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// Its lineage (only in `GET /api/models/{id}`): the rounds of its job.
    #[serde(default)]
    pub history: Vec<RoundMetrics>,
    /// Its lineage (only in `GET /api/models/{id}`): who trained it, with
    /// their verified work.
    #[serde(default)]
    pub contributors: Vec<Contributor>,
    /// Whether the viewer may read its weights (download, run, fine-tune):
    /// false for a model on sale it has not bought.
    #[serde(default)]
    pub readable: bool,
    /// Its listing, while on sale (and for its owner, once signed).
    #[serde(default)]
    pub listing: Option<crate::market::ListingView>,
    /// Its job's escrow, when paid (only in `GET /api/models/{id}`, to those
    /// who may read it): what a verifier compares the weights with.
    #[serde(default)]
    pub settlement: Option<ModelSettlement>,
}

/// A paid job's model's escrow, for verifying it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSettlement {
    /// The job's key in the escrow.
    pub job_key: String,
    /// The model hash of the coordinator's signed settlement, once signed.
    #[serde(default)]
    pub model_hash: Option<String>,
}

/// `GET /api/leaderboard`: who did the network's verified work, and the
/// best models of each dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Leaderboard {
    /// The job the standings are of, when only one.
    pub job: Option<JobId>,
    /// Contributors, in the order asked for; identities in quarantine are
    /// left out, their work with them.
    pub contributors: Vec<ContributorStanding>,
    /// Each dataset's models, most accurate first (not for one job).
    pub models: Vec<DatasetModels>,
}

/// A contributor's standing: its verified work, its rewards and its
/// record. An identity is a payout account, else one worker connection
/// (`worker:<id>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContributorStanding {
    /// The account (lower-case hex), or `worker:<id>`.
    pub identity: String,
    /// Training samples of its verified updates.
    pub samples: u64,
    /// Inference rows of its verified outputs.
    pub rows: u64,
    /// Verified work (samples and rows) a day, averaged with a weekly
    /// half-life, as BOINC's recent average credit: a day's work counts
    /// half as much a week later.
    pub recent: f64,
    /// Rewards signed to it.
    pub earned: Wei,
    /// Rewards it claimed on chain.
    pub claimed: Wei,
    /// Results that agreed with their round.
    pub agreed: u64,
    /// Results disputed or refused.
    pub disputed: u64,
    /// Results refuted by replicas.
    pub refuted: u64,
}

/// One dataset's models, most accurate first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetModels {
    /// What they were trained on (see [`ModelView::dataset`]).
    pub dataset: String,
    /// Its models.
    pub models: Vec<ModelView>,
}

/// Headers of an outputs download naming where the outputs came from.
pub mod outputs_headers {
    /// The sha256 of the model's weights (safetensors).
    pub const MODEL_SHA256: &str = "x-oblivion-model-sha256";
    /// The sha256 of the rows.
    pub const INPUTS_SHA256: &str = "x-oblivion-inputs-sha256";
}

/// `GET /api/workers` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerView {
    /// Id of this connection.
    pub id: WorkerId,
    /// Display name.
    pub name: String,
    /// Native or browser.
    pub client: ClientKind,
    /// Device.
    pub device: DeviceInfo,
    /// Benchmark score (samples/s).
    pub benchmark: f64,
    /// Whether it is connected now.
    pub connected: bool,
    /// Leases it holds now.
    pub active_leases: u32,
    /// Updates accepted.
    pub accepted: u64,
    /// Updates rejected.
    pub rejected: u64,
    /// Leases lost by expiry or disconnection.
    pub lost: u64,
    /// Samples credited: those of its updates that their rounds verified
    /// (the shards' sizes, never its claims).
    pub samples: u64,
    /// What it is doing.
    #[serde(default)]
    pub state: WorkerState,
    /// Samples of its accepted updates per second over the last minute (or
    /// since it connected, if later): measured by the coordinator, not
    /// claimed.
    #[serde(default)]
    pub samples_per_second: f64,
    /// Its active leases of public jobs. Which shard each trains is not
    /// shown: two workers on one shard would give away a replica.
    #[serde(default)]
    pub leases: Vec<WorkerLease>,
    /// The account its rewards go to, proven by signing in (lower-case
    /// `0x` hex); `None` for an anonymous, unpaid worker.
    #[serde(default)]
    pub payout_address: Option<String>,
    /// Results of its account (or, anonymous, of this connection) that
    /// agreed with their rounds: its reputation, with `disputed`.
    #[serde(default)]
    pub agreed: u64,
    /// Results disputed, refuted by replicas, or refused on arrival.
    #[serde(default)]
    pub disputed: u64,
    /// Why it is quarantined (state `quarantined`), if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
    /// The local data it offers federated jobs (its shape and size only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_data: Option<LocalDataOffer>,
}

impl WorkerView {
    /// A newly connected worker: no leases, zero counters, idle (its id is
    /// assigned when it is recorded).
    pub fn connected(
        name: String,
        client: ClientKind,
        device: DeviceInfo,
        benchmark: f64,
    ) -> WorkerView {
        WorkerView {
            id: WorkerId(0),
            name,
            client,
            device,
            benchmark,
            connected: true,
            active_leases: 0,
            accepted: 0,
            rejected: 0,
            lost: 0,
            samples: 0,
            state: WorkerState::Idle,
            samples_per_second: 0.0,
            leases: Vec::new(),
            payout_address: None,
            agreed: 0,
            disputed: 0,
            quarantine: None,
            local_data: None,
        }
    }
}

/// A lease a worker holds, for the API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerLease {
    /// Lease id.
    pub lease_id: LeaseId,
    /// Job.
    pub job_id: JobId,
    /// Round.
    pub round: u32,
    /// Fraction done, as last reported.
    pub progress: f32,
}

/// A running job in a [`NetworkSnapshot`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveJobView {
    /// Id.
    pub id: JobId,
    /// The spec's name.
    pub name: String,
    /// `pending` or `running`.
    pub status: JobStatus,
    /// Current round.
    pub round: u32,
    /// Rounds asked for.
    pub rounds: u32,
    /// Shards of the current round.
    pub shards: Vec<ShardView>,
    /// Whether the round is being aggregated.
    pub aggregating: bool,
}

/// What `GET /api/events` pushes (as server-sent event `snapshot`) whenever
/// it changes: the live state of the whole network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkSnapshot {
    /// Connected workers.
    pub workers: Vec<WorkerView>,
    /// Jobs being trained.
    pub jobs: Vec<LiveJobView>,
    /// Sum of the workers' `samples_per_second`.
    pub samples_per_second: f64,
    /// Bumped whenever stored job state changes (a job submitted, a round
    /// aggregated, a job ended): time to refetch `GET /api/jobs`.
    pub jobs_version: u64,
}

/// `POST /api/datasets` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UploadedDataset {
    /// Content address to use in a spec.
    pub sha256: BlobId,
    /// `csv`, `idx-images` or `idx-labels`.
    pub kind: String,
    /// Rows (samples) in the file.
    pub rows: u64,
}

/// Body of every 4xx/5xx answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// What is wrong, in one line.
    pub error: String,
    /// The spec field at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `GET /api/chain`: where this coordinator's paid jobs settle (404 when
/// nowhere: its jobs run unpaid).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainInfo {
    /// The chain's id.
    pub chain_id: u64,
    /// The escrow contract, `0x` hex.
    pub escrow: String,
    /// The coordinator's settlement signer: the address a creator names
    /// when funding a job.
    pub signer: String,
    /// Blocks on top of a deposit before the job opens.
    pub confirmations: u64,
    /// The escrow's settlement grace: seconds after a settlement is issued
    /// during which only the job's creator may send it (0 while unknown).
    #[serde(default)]
    pub settle_grace_secs: u64,
}

/// Where a paid job's escrow stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// No confirmed deposit yet: the job waits (status `funding`).
    AwaitingDeposit,
    /// Deposited; the job trains, and is settled once done.
    Funded,
    /// The creator settled it on chain: contributors claim.
    Settled,
    /// Refunded to the creator (never settled by its deadline).
    Refunded,
}

impl PaymentState {
    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::AwaitingDeposit => "awaiting_deposit",
            PaymentState::Funded => "funded",
            PaymentState::Settled => "settled",
            PaymentState::Refunded => "refunded",
        }
    }

    /// Parses [`PaymentState::as_str`]'s output.
    pub fn parse(s: &str) -> Option<PaymentState> {
        Some(match s {
            "awaiting_deposit" => PaymentState::AwaitingDeposit,
            "funded" => PaymentState::Funded,
            "settled" => PaymentState::Settled,
            "refunded" => PaymentState::Refunded,
            _ => return None,
        })
    }
}

/// A paid job's escrow, in [`JobView::payment`]. Amounts in [`Wei`];
/// hashes and keys `0x` hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentView {
    /// The job's key in the escrow: keccak256(abi.encode(creator, signer,
    /// job id)).
    pub job_key: String,
    /// What the deposit must name as the spec's hash (keccak256 of the
    /// spec's JSON as stored).
    pub spec_hash: String,
    /// The deposit asked for.
    pub amount: Wei,
    /// Where the escrow stands.
    pub state: PaymentState,
    /// What was deposited, once seen.
    #[serde(default)]
    pub deposit: Option<Wei>,
    /// The settlement deadline on chain (Unix seconds), once funded.
    #[serde(default)]
    pub deadline: Option<i64>,
    /// What the coordinator signed, once the job is done.
    #[serde(default)]
    pub settlement: Option<SettlementView>,
    /// Why the coordinator refused a deposit it saw for this job (its
    /// deadline too near, too small, another spec), naming the field.
    #[serde(default)]
    pub refusal: Option<String>,
}

/// The coordinator's signed settlement of a job: what the creator's wallet
/// sends to the escrow's `settle`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementView {
    /// Root of the payout tree.
    pub root: String,
    /// Sum of the payouts.
    pub total: Wei,
    /// keccak256 of the final model (its safetensors file).
    pub model_hash: String,
    /// The escrow's settlement nonce it was signed for.
    pub nonce: u64,
    /// When it was issued (chain time, Unix seconds): the creator may send
    /// it at once, anyone once the escrow's settlement grace has passed.
    #[serde(default)]
    pub issued_at: u64,
    /// The signer's EIP-712 signature, 65 bytes.
    pub signature: String,
    /// Every leaf of the payout tree.
    pub payouts: Vec<PayoutView>,
}

/// One leaf of a payout tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutView {
    /// Leaf index (the claim bitmap's bit).
    pub index: u64,
    /// Who is paid, lower-case `0x` hex.
    pub account: String,
    /// How much.
    pub amount: Wei,
}

/// `GET /api/rewards` entry: something the signed-in account may claim, with
/// all the escrow's `claim` needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardView {
    /// The job.
    pub job_id: JobId,
    /// Its name.
    pub job_name: String,
    /// Its key in the escrow.
    pub job_key: String,
    /// Leaf index.
    pub index: u64,
    /// The account paid.
    pub account: String,
    /// How much.
    pub amount: Wei,
    /// Merkle proof of the leaf, `0x` hex hashes.
    pub proof: Vec<String>,
    /// Whether the creator has settled the job on chain (claims open).
    pub settled: bool,
    /// Whether the escrow has paid it already.
    pub claimed: bool,
}
