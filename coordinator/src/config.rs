//! Operator settings: defaults, overridden by a TOML file, then by
//! environment variables (`OBLIVION_*`), then by command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::reputation::ReputationPolicy;
use serde::Deserialize;

/// Everything `serve` can be told.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Database and artifacts live here.
    pub data_dir: PathBuf,
    /// Most leases one worker holds at once.
    pub lease_cap: u32,
    /// How often workers send heartbeats.
    pub heartbeat: Duration,
    /// A lease without a heartbeat for this long expires and is re-issued.
    pub lease_ttl: Duration,
    /// Largest dataset upload, bytes.
    pub max_upload_bytes: usize,
    /// Largest update upload, bytes.
    pub max_update_bytes: usize,
    /// Longest an update or dataset upload may take in all.
    pub upload_deadline: Duration,
    /// Longest any request body may go without a byte arriving.
    pub upload_idle: Duration,
    /// Built web app to serve at `/` (the `dist/` folder), if any.
    pub web_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://…`; `None`: SQLite under `data_dir`.
    pub database_url: Option<String>,
    /// A directory or `s3://BUCKET/PREFIX`; `None`: `artifacts/` under
    /// `data_dir`.
    pub artifacts_url: Option<String>,
    /// A lease ends this long after it was granted, whatever its heartbeats.
    pub lease_max_lifetime: Duration,
    /// A lease whose progress has not grown for this long ends, and counts
    /// against its holder.
    pub lease_stall: Duration,
    /// An aggregation claim older than this is taken over by another
    /// instance (its claimant is presumed dead).
    pub aggregation_timeout: Duration,
    /// An instance not seen alive for this long is presumed dead: the
    /// others end its leases and release its claims.
    pub instance_timeout: Duration,
    /// What a job may cost; refused at creation beyond it.
    pub budgets: JobBudgets,
    /// Most jobs one client (address) may have pending or running.
    pub max_jobs_in_flight: u32,
    /// Largest dataset once decompressed, bytes.
    pub max_dataset_bytes: usize,
    /// Decoded datasets kept in memory for new jobs.
    pub dataset_cache_entries: usize,
    /// Worker connections one client address may hold.
    pub max_workers_per_client: u32,
    /// Worker connections this instance serves in all.
    pub max_workers: u32,
    /// Event streams (`GET /api/events`) one client address may hold.
    pub max_event_streams_per_client: u32,
    /// Event streams this instance serves in all.
    pub max_event_streams: u32,
    /// Uploads (job specs, datasets) per client address per minute.
    pub max_uploads_per_minute: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How often unreferenced artifacts are collected (zero: never).
    pub gc_interval: Duration,
    /// Artifacts written more recently than this are never collected.
    pub gc_grace: Duration,
    /// Round weights kept for a finished job (its current model always).
    pub keep_rounds: u32,
    /// A paid job not funded this long after it was created is cancelled
    /// (and its data collected).
    pub funding_timeout: Duration,
    /// An uploaded dataset no unfinished job names is collected this long
    /// after its upload.
    pub unused_upload_ttl: Duration,
    /// The origin users reach this coordinator at (`https://host[:port]`):
    /// sign-in messages must name its host, and sessions are sent only over
    /// HTTPS when it is one. `None`: the request's `Host`, over plain HTTP.
    pub public_url: Option<String>,
    /// A session lasts this long after sign-in.
    pub session_ttl: Duration,
    /// A sign-in nonce (and the message carrying it) lasts this long.
    pub sign_in_ttl: Duration,
    /// Sign-in attempts (nonces asked for) per client address per minute.
    pub max_sign_ins_per_minute: u32,
    /// When a worker is quarantined for disputed results.
    pub reputation: ReputationPolicy,
    /// Where paid jobs are escrowed (see [`Config::chain`]).
    pub chain_settings: ChainSettings,
}

/// The chain settings as given: all four of URL, id, escrow and key, or
/// none (jobs then run unpaid).
#[derive(Clone, Debug, PartialEq)]
pub struct ChainSettings {
    /// JSON-RPC endpoint.
    pub rpc_url: Option<String>,
    /// The chain's id.
    pub chain_id: Option<u64>,
    /// The escrow contract.
    pub escrow: Option<String>,
    /// The settlement signing key.
    pub signer_key: Option<String>,
    /// Blocks on top of a deposit before it counts.
    pub confirmations: u64,
    /// How often the chain is read.
    pub poll: Duration,
    /// Time a paid job's deadline must allow per round.
    pub round_time: Duration,
    /// Time kept free before a paid job's deadline: no lease is granted in
    /// it, beyond the lease lifetime.
    pub deadline_margin: Duration,
}

impl Default for ChainSettings {
    fn default() -> ChainSettings {
        ChainSettings {
            rpc_url: None,
            chain_id: None,
            escrow: None,
            signer_key: None,
            confirmations: 2,
            poll: Duration::from_secs(2),
            round_time: Duration::from_secs(300),
            deadline_margin: Duration::from_secs(1800),
        }
    }
}

/// The chain paid jobs settle on: any EVM chain with the escrow deployed
/// (anvil, Polygon Amoy, Shardeum, ...).
#[derive(Clone, Debug)]
pub struct ChainConfig {
    /// JSON-RPC endpoint.
    pub rpc_url: String,
    /// The chain's id (checked against the node at start-up).
    pub chain_id: u64,
    /// The escrow contract, `0x` hex.
    pub escrow: String,
    /// The key that signs settlements (its address is the signer creators
    /// name when they fund a job), hex.
    pub signer_key: String,
    /// Blocks on top of a deposit before it counts.
    pub confirmations: u64,
    /// How often the chain is read.
    pub poll: Duration,
    /// Time a paid job's deadline must allow per round.
    pub round_time: Duration,
    /// Time kept free before a paid job's deadline: no lease is granted in
    /// it, beyond the lease lifetime.
    pub deadline_margin: Duration,
}

impl ChainConfig {
    /// The least time from a deposit to its job's deadline: `round_time`
    /// per round, then a lease's lifetime and the margin, in which no lease
    /// is granted (a settlement must be issued by the deadline).
    pub fn time_needed(&self, rounds: u32, lease_lifetime: Duration) -> Duration {
        self.round_time * rounds + lease_lifetime + self.deadline_margin
    }

    /// The last moment (Unix seconds) a lease of a job whose deadline is
    /// `deadline` may be granted: its work must be in, aggregated and
    /// settled before the deadline.
    pub fn leases_until(&self, deadline: i64, lease_lifetime: Duration) -> f64 {
        deadline as f64 - (lease_lifetime + self.deadline_margin).as_secs_f64()
    }
}

/// Limits on what one job may cost, checked when it is created.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JobBudgets {
    /// Trainable parameters of the model (default: what a browser tab can
    /// train, 16 M).
    pub max_params: u64,
    /// Multiply-adds of one evaluation of the validation split (run after
    /// every round, on the coordinator).
    pub max_eval_macs: u64,
    /// `shards_per_round × rounds`: leases and stored updates over the job.
    pub max_shard_rounds: u64,
    /// Memory one round's aggregation may hold, bytes (see
    /// `budget::aggregation_bytes`).
    pub max_aggregation_bytes: u64,
}

impl Default for JobBudgets {
    fn default() -> JobBudgets {
        JobBudgets {
            max_params: 16_000_000,
            max_eval_macs: 50_000_000_000,
            max_shard_rounds: 25_000,
            max_aggregation_bytes: 2 << 30,
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("oblivion-data"),
            lease_cap: 2,
            heartbeat: Duration::from_secs(15),
            lease_ttl: Duration::from_secs(45),
            max_upload_bytes: 64 * 1024 * 1024,
            max_update_bytes: oblivion_protocol::wire::MAX_UPDATE_BYTES,
            upload_deadline: Duration::from_secs(300),
            upload_idle: Duration::from_secs(15),
            web_dir: None,
            database_url: None,
            artifacts_url: None,
            lease_max_lifetime: Duration::from_secs(3600),
            lease_stall: Duration::from_secs(600),
            aggregation_timeout: Duration::from_secs(600),
            instance_timeout: Duration::from_secs(10),
            budgets: JobBudgets::default(),
            max_jobs_in_flight: 8,
            max_dataset_bytes: 128 * 1024 * 1024,
            dataset_cache_entries: 8,
            max_workers_per_client: 256,
            max_workers: 20_000,
            max_event_streams_per_client: 16,
            max_event_streams: 1024,
            max_uploads_per_minute: 60,
            trusted_proxies: Vec::new(),
            gc_interval: Duration::from_secs(60),
            gc_grace: crate::coordinator::GC_GRACE,
            keep_rounds: 3,
            funding_timeout: Duration::from_secs(7 * 24 * 3600),
            unused_upload_ttl: Duration::from_secs(7 * 24 * 3600),
            public_url: None,
            session_ttl: Duration::from_secs(86_400),
            sign_in_ttl: Duration::from_secs(600),
            max_sign_ins_per_minute: 30,
            reputation: ReputationPolicy::default(),
            chain_settings: ChainSettings::default(),
        }
    }
}

/// The same settings, all optional: one layer (file, or flags and environment).
#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ConfigLayer {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "OBLIVION_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the database and artifacts [default: ./oblivion-data].
    #[arg(long, env = "OBLIVION_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Most leases one worker holds at once [default: 2].
    #[arg(long, env = "OBLIVION_LEASE_CAP")]
    pub lease_cap: Option<u32>,
    /// Seconds between worker heartbeats [default: 15].
    #[arg(long, env = "OBLIVION_HEARTBEAT_SECS")]
    pub heartbeat_secs: Option<u64>,
    /// Seconds without a heartbeat before a lease expires [default: 45].
    #[arg(long, env = "OBLIVION_LEASE_TTL_SECS")]
    pub lease_ttl_secs: Option<u64>,
    /// Largest dataset upload in bytes [default: 64 MiB].
    #[arg(long, env = "OBLIVION_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<usize>,
    /// Largest update upload in bytes [default: 64 MiB].
    #[arg(long, env = "OBLIVION_MAX_UPDATE_BYTES")]
    pub max_update_bytes: Option<usize>,
    /// Seconds an update or dataset upload may take in all; a slower one is refused (408), and a slow update ends its lease [default: 300].
    #[arg(long, env = "OBLIVION_UPLOAD_SECS")]
    pub upload_secs: Option<u64>,
    /// Seconds any request body may go without a byte before it is refused (408) [default: 15].
    #[arg(long, env = "OBLIVION_UPLOAD_IDLE_SECS")]
    pub upload_idle_secs: Option<u64>,
    /// Folder of the built web app to serve at / [default: ./dist if present].
    #[arg(long, env = "OBLIVION_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// Database: sqlite://PATH or postgres://USER@HOST/DB [default: sqlite under the data directory].
    #[arg(long, env = "OBLIVION_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Artifacts: a directory, or s3://BUCKET/PREFIX with the endpoint and credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION [default: artifacts/ under the data directory].
    #[arg(long, env = "OBLIVION_ARTIFACTS_URL")]
    pub artifacts_url: Option<String>,
    /// Seconds a lease may live, whatever its heartbeats [default: 3600].
    #[arg(long, env = "OBLIVION_LEASE_MAX_LIFETIME_SECS")]
    pub lease_max_lifetime_secs: Option<u64>,
    /// Seconds a lease may go without its reported progress growing before it ends, counted against its worker [default: 600].
    #[arg(long, env = "OBLIVION_LEASE_STALL_SECS")]
    pub lease_stall_secs: Option<u64>,
    /// Seconds after which another instance takes over a round's aggregation [default: 600].
    #[arg(long, env = "OBLIVION_AGGREGATION_TIMEOUT_SECS")]
    pub aggregation_timeout_secs: Option<u64>,
    /// Seconds after which an instance not seen alive is presumed dead [default: 10].
    #[arg(long, env = "OBLIVION_INSTANCE_TIMEOUT_SECS")]
    pub instance_timeout_secs: Option<u64>,
    /// Most trainable parameters of a job's model [default: 16000000].
    #[arg(long, env = "OBLIVION_MAX_PARAMS")]
    pub max_params: Option<u64>,
    /// Most multiply-adds of one evaluation round [default: 50000000000].
    #[arg(long, env = "OBLIVION_MAX_EVAL_MACS")]
    pub max_eval_macs: Option<u64>,
    /// Most shards_per_round x rounds of one job [default: 25000].
    #[arg(long, env = "OBLIVION_MAX_SHARD_ROUNDS")]
    pub max_shard_rounds: Option<u64>,
    /// Most memory one round's aggregation may hold, in bytes: slots x parameters x 4 bytes x 4 copies [default: 2 GiB].
    #[arg(long, env = "OBLIVION_MAX_AGGREGATION_BYTES")]
    pub max_aggregation_bytes: Option<u64>,
    /// Most unfinished jobs per client address [default: 8].
    #[arg(long, env = "OBLIVION_MAX_JOBS_IN_FLIGHT")]
    pub max_jobs_in_flight: Option<u32>,
    /// Largest dataset once decompressed, in bytes [default: 128 MiB].
    #[arg(long, env = "OBLIVION_MAX_DATASET_BYTES")]
    pub max_dataset_bytes: Option<usize>,
    /// Decoded datasets kept in memory [default: 8].
    #[arg(long, env = "OBLIVION_DATASET_CACHE_ENTRIES")]
    pub dataset_cache_entries: Option<usize>,
    /// Worker connections per client address [default: 256].
    #[arg(long, env = "OBLIVION_MAX_WORKERS_PER_CLIENT")]
    pub max_workers_per_client: Option<u32>,
    /// Worker connections in all [default: 20000].
    #[arg(long, env = "OBLIVION_MAX_WORKERS")]
    pub max_workers: Option<u32>,
    /// Event streams per client address [default: 16].
    #[arg(long, env = "OBLIVION_MAX_EVENT_STREAMS_PER_CLIENT")]
    pub max_event_streams_per_client: Option<u32>,
    /// Event streams in all [default: 1024].
    #[arg(long, env = "OBLIVION_MAX_EVENT_STREAMS")]
    pub max_event_streams: Option<u32>,
    /// Uploads (job specs, datasets) per client address per minute [default: 60].
    #[arg(long, env = "OBLIVION_MAX_UPLOADS_PER_MINUTE")]
    pub max_uploads_per_minute: Option<u32>,
    /// Addresses of reverse proxies in front of this coordinator, comma-separated: per-address limits then count the client their X-Forwarded-For names [default: none; the header is ignored].
    #[arg(long, env = "OBLIVION_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<std::net::IpAddr>>,
    /// Seconds between collections of unreferenced artifacts, 0 for never [default: 60].
    #[arg(long, env = "OBLIVION_GC_INTERVAL_SECS")]
    pub gc_interval_secs: Option<u64>,
    /// Artifacts younger than this many seconds are never collected [default: 120].
    #[arg(long, env = "OBLIVION_GC_GRACE_SECS")]
    pub gc_grace_secs: Option<u64>,
    /// Round weights kept for a finished job, besides its model [default: 3].
    #[arg(long, env = "OBLIVION_KEEP_ROUNDS")]
    pub keep_rounds: Option<u32>,
    /// Seconds a paid job may wait for its deposit before it is cancelled [default: 604800, a week].
    #[arg(long, env = "OBLIVION_FUNDING_TIMEOUT_SECS")]
    pub funding_timeout_secs: Option<u64>,
    /// Seconds after which an uploaded dataset no unfinished job names is deleted [default: 604800, a week].
    #[arg(long, env = "OBLIVION_UNUSED_UPLOAD_SECS")]
    pub unused_upload_secs: Option<u64>,
    /// The origin users reach this coordinator at, e.g. https://oblivion.example [default: the request's Host, over HTTP].
    #[arg(long, env = "OBLIVION_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seconds a session lasts after sign-in [default: 86400].
    #[arg(long, env = "OBLIVION_SESSION_SECS")]
    pub session_secs: Option<u64>,
    /// Seconds a sign-in nonce lasts [default: 600].
    #[arg(long, env = "OBLIVION_SIGN_IN_SECS")]
    pub sign_in_secs: Option<u64>,
    /// Sign-in nonces per client address per minute [default: 30].
    #[arg(long, env = "OBLIVION_MAX_SIGN_INS_PER_MINUTE")]
    pub max_sign_ins_per_minute: Option<u32>,
    /// Quarantine a worker whose share of agreed results (smoothed) falls below this [default: 0.5].
    #[arg(long, env = "OBLIVION_QUARANTINE_BELOW")]
    pub quarantine_below: Option<f64>,
    /// ...once it has this many results on record [default: 2].
    #[arg(long, env = "OBLIVION_QUARANTINE_AFTER")]
    pub quarantine_after: Option<u64>,
    /// Quarantine a worker once this many of its results are refuted by replicas [default: 2].
    #[arg(long, env = "OBLIVION_QUARANTINE_REFUTED")]
    pub quarantine_refuted: Option<u64>,
    /// Seconds a quarantine lasts; the worker's record then starts afresh [default: 604800, a week].
    #[arg(long, env = "OBLIVION_QUARANTINE_SECS")]
    pub quarantine_secs: Option<u64>,
    /// Agreed results an account needs before its results, with another such account's, may refute a third [default: 10].
    #[arg(long, env = "OBLIVION_ESTABLISHED_AFTER")]
    pub established_after: Option<u64>,
    /// ...and whose first result came at least this many seconds ago [default: 86400, a day].
    #[arg(long, env = "OBLIVION_ESTABLISHED_SECS")]
    pub established_secs: Option<u64>,
    /// JSON-RPC URL of the chain paid jobs settle on; with chain_id, escrow_address and signer_key [default: none, jobs run unpaid].
    #[arg(long, env = "OBLIVION_CHAIN_RPC_URL")]
    pub chain_rpc_url: Option<String>,
    /// Id of that chain, e.g. 31337 (anvil), 80002 (Polygon Amoy).
    #[arg(long, env = "OBLIVION_CHAIN_ID")]
    pub chain_id: Option<u64>,
    /// Address of the escrow contract on that chain.
    #[arg(long, env = "OBLIVION_ESCROW_ADDRESS")]
    pub escrow_address: Option<String>,
    /// Private key (hex) that signs settlements; prefer the environment to a flag.
    #[arg(long, env = "OBLIVION_SIGNER_KEY", hide_env_values = true)]
    pub signer_key: Option<String>,
    /// Blocks on top of a deposit before the job opens [default: 2].
    #[arg(long, env = "OBLIVION_CONFIRMATIONS")]
    pub confirmations: Option<u64>,
    /// Seconds between reads of the chain [default: 2].
    #[arg(long, env = "OBLIVION_CHAIN_POLL_SECS")]
    pub chain_poll_secs: Option<u64>,
    /// Seconds a paid job's deadline must allow per round; a deposit whose deadline allows less is refused [default: 300].
    #[arg(long, env = "OBLIVION_DEADLINE_ROUND_SECS")]
    pub deadline_round_secs: Option<u64>,
    /// Seconds before a paid job's deadline, beyond a lease's lifetime, in which no lease is granted [default: 1800].
    #[arg(long, env = "OBLIVION_DEADLINE_MARGIN_SECS")]
    pub deadline_margin_secs: Option<u64>,
}

impl Config {
    /// Applies `layer` over `self`.
    pub fn apply(mut self, layer: &ConfigLayer) -> Config {
        let l = layer.clone();
        self.listen = l.listen.unwrap_or(self.listen);
        self.data_dir = l.data_dir.unwrap_or(self.data_dir);
        self.lease_cap = l.lease_cap.unwrap_or(self.lease_cap);
        self.heartbeat = l.heartbeat_secs.map_or(self.heartbeat, Duration::from_secs);
        self.lease_ttl = l.lease_ttl_secs.map_or(self.lease_ttl, Duration::from_secs);
        self.max_upload_bytes = l.max_upload_bytes.unwrap_or(self.max_upload_bytes);
        self.max_update_bytes = l.max_update_bytes.unwrap_or(self.max_update_bytes);
        self.upload_deadline = l
            .upload_secs
            .map_or(self.upload_deadline, Duration::from_secs);
        self.upload_idle = l
            .upload_idle_secs
            .map_or(self.upload_idle, Duration::from_secs);
        self.web_dir = l.web_dir.or(self.web_dir);
        self.database_url = l.database_url.or(self.database_url);
        self.artifacts_url = l.artifacts_url.or(self.artifacts_url);
        self.lease_max_lifetime = l
            .lease_max_lifetime_secs
            .map_or(self.lease_max_lifetime, Duration::from_secs);
        self.lease_stall = l
            .lease_stall_secs
            .map_or(self.lease_stall, Duration::from_secs);
        self.aggregation_timeout = l
            .aggregation_timeout_secs
            .map_or(self.aggregation_timeout, Duration::from_secs);
        self.instance_timeout = l
            .instance_timeout_secs
            .map_or(self.instance_timeout, Duration::from_secs);
        self.budgets.max_params = l.max_params.unwrap_or(self.budgets.max_params);
        self.budgets.max_eval_macs = l.max_eval_macs.unwrap_or(self.budgets.max_eval_macs);
        self.budgets.max_shard_rounds = l.max_shard_rounds.unwrap_or(self.budgets.max_shard_rounds);
        self.budgets.max_aggregation_bytes = l
            .max_aggregation_bytes
            .unwrap_or(self.budgets.max_aggregation_bytes);
        self.max_jobs_in_flight = l.max_jobs_in_flight.unwrap_or(self.max_jobs_in_flight);
        self.max_dataset_bytes = l.max_dataset_bytes.unwrap_or(self.max_dataset_bytes);
        self.dataset_cache_entries = l
            .dataset_cache_entries
            .unwrap_or(self.dataset_cache_entries);
        self.max_workers_per_client = l
            .max_workers_per_client
            .unwrap_or(self.max_workers_per_client);
        self.max_workers = l.max_workers.unwrap_or(self.max_workers);
        self.max_event_streams_per_client = l
            .max_event_streams_per_client
            .unwrap_or(self.max_event_streams_per_client);
        self.max_event_streams = l.max_event_streams.unwrap_or(self.max_event_streams);
        self.max_uploads_per_minute = l
            .max_uploads_per_minute
            .unwrap_or(self.max_uploads_per_minute);
        self.trusted_proxies = l.trusted_proxies.unwrap_or(self.trusted_proxies);
        self.gc_interval = l
            .gc_interval_secs
            .map_or(self.gc_interval, Duration::from_secs);
        self.gc_grace = l.gc_grace_secs.map_or(self.gc_grace, Duration::from_secs);
        self.keep_rounds = l.keep_rounds.unwrap_or(self.keep_rounds);
        self.funding_timeout = l
            .funding_timeout_secs
            .map_or(self.funding_timeout, Duration::from_secs);
        self.unused_upload_ttl = l
            .unused_upload_secs
            .map_or(self.unused_upload_ttl, Duration::from_secs);
        self.public_url = l.public_url.or(self.public_url);
        self.session_ttl = l.session_secs.map_or(self.session_ttl, Duration::from_secs);
        self.sign_in_ttl = l.sign_in_secs.map_or(self.sign_in_ttl, Duration::from_secs);
        self.max_sign_ins_per_minute = l
            .max_sign_ins_per_minute
            .unwrap_or(self.max_sign_ins_per_minute);
        self.reputation.min_score = l.quarantine_below.unwrap_or(self.reputation.min_score);
        self.reputation.min_results = l.quarantine_after.unwrap_or(self.reputation.min_results);
        self.reputation.max_refuted = l.quarantine_refuted.unwrap_or(self.reputation.max_refuted);
        self.reputation.quarantine_for = l
            .quarantine_secs
            .map_or(self.reputation.quarantine_for, Duration::from_secs);
        self.reputation.established_after = l
            .established_after
            .unwrap_or(self.reputation.established_after);
        self.reputation.established_age = l
            .established_secs
            .map_or(self.reputation.established_age, Duration::from_secs);
        let c = &mut self.chain_settings;
        c.rpc_url = l.chain_rpc_url.or(c.rpc_url.take());
        c.chain_id = l.chain_id.or(c.chain_id);
        c.escrow = l.escrow_address.or(c.escrow.take());
        c.signer_key = l.signer_key.or(c.signer_key.take());
        c.confirmations = l.confirmations.unwrap_or(c.confirmations);
        c.poll = l.chain_poll_secs.map_or(c.poll, Duration::from_secs);
        c.round_time = l
            .deadline_round_secs
            .map_or(c.round_time, Duration::from_secs);
        c.deadline_margin = l
            .deadline_margin_secs
            .map_or(c.deadline_margin, Duration::from_secs);
        self
    }

    /// Where artifacts live: the configured place, or under `data_dir`.
    pub fn artifacts_url(&self) -> String {
        self.artifacts_url
            .clone()
            .unwrap_or_else(|| self.data_dir.join("artifacts").display().to_string())
    }

    /// The database URL: the configured one, or SQLite under `data_dir`.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("oblivion.db").display()))
    }

    /// The chain paid jobs settle on, when configured; an error names what
    /// is missing or malformed.
    pub fn chain(&self) -> Result<Option<ChainConfig>, String> {
        let c = &self.chain_settings;
        match (&c.rpc_url, c.chain_id, &c.escrow, &c.signer_key) {
            (None, None, None, None) => Ok(None),
            (Some(rpc_url), Some(chain_id), Some(escrow), Some(signer_key)) => {
                if oblivion_protocol::auth::normalize_address(escrow).is_none() {
                    return Err(format!("escrow_address {escrow:?} is not a 0x address"));
                }
                if oblivion_chain::Key::parse(signer_key).is_err() {
                    return Err("signer_key is not a 32-byte hex private key".into());
                }
                if !(rpc_url.starts_with("http://") || rpc_url.starts_with("https://")) {
                    return Err(format!("chain_rpc_url {rpc_url:?} is not an http(s) URL"));
                }
                Ok(Some(ChainConfig {
                    rpc_url: rpc_url.clone(),
                    chain_id,
                    escrow: escrow.clone(),
                    signer_key: signer_key.clone(),
                    confirmations: c.confirmations,
                    poll: c.poll,
                    round_time: c.round_time,
                    deadline_margin: c.deadline_margin,
                }))
            }
            _ => Err(
                "paid jobs need all of chain_rpc_url, chain_id, escrow_address and signer_key \
                 (or none of them)"
                    .into(),
            ),
        }
    }

    /// Whether `authority` (a request's `Host`) names this coordinator
    /// at an address it serves on: loopback, or the address it listens
    /// on, with its port. Only these are trusted as a sign-in domain when
    /// no `public_url` is set: any other `Host` is the client's word, and a
    /// phishing site could name its own (see `docs/threat-model.md`).
    pub fn serves_at(&self, authority: &str) -> bool {
        // `[::1]:8080`, `127.0.0.1:8080`, `localhost` (port 80).
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => match p.parse::<u16>() {
                Ok(p) => (h, p),
                Err(_) => return false,
            },
            _ => (authority, 80),
        };
        if port != self.listen.port() {
            return false;
        }
        let host = host.to_ascii_lowercase();
        let listening = match self.listen.ip() {
            ip if ip.is_unspecified() => None,
            std::net::IpAddr::V4(ip) => Some(ip.to_string()),
            std::net::IpAddr::V6(ip) => Some(format!("[{ip}]")),
        };
        matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]")
            || listening.is_some_and(|l| l == host)
    }

    /// `(scheme, authority)` of `public_url`, when set and well formed.
    pub fn public_origin(&self) -> Option<(&str, &str)> {
        let url = self.public_url.as_deref()?.trim_end_matches('/');
        let (scheme, authority) = url.split_once("://")?;
        let ok = matches!(scheme, "http" | "https")
            && !authority.is_empty()
            && !authority.contains(['/', '?', '#', '@']);
        ok.then_some((scheme, authority))
    }

    /// Defaults, then the TOML file (if given), then `overrides`; checked.
    pub fn load(file: Option<&Path>, overrides: &ConfigLayer) -> Result<Config, String> {
        let mut config = Config::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
            let layer: ConfigLayer = toml::from_str(&text)
                .map_err(|e| format!("config file {}: {}", path.display(), e.message()))?;
            config = config.apply(&layer);
        }
        config = config.apply(overrides);
        if config.web_dir.is_none() && Path::new("dist/index.html").exists() {
            config.web_dir = Some(PathBuf::from("dist"));
        }
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.lease_cap == 0 {
            return Err("lease_cap must be at least 1".into());
        }
        if self.heartbeat.is_zero() {
            return Err("heartbeat_secs must be at least 1".into());
        }
        if self.lease_ttl <= self.heartbeat {
            return Err("lease_ttl_secs must be longer than heartbeat_secs".into());
        }
        if self.lease_stall <= self.heartbeat {
            return Err("lease_stall_secs must be longer than heartbeat_secs".into());
        }
        if self.lease_max_lifetime < self.lease_ttl {
            return Err("lease_max_lifetime_secs must be at least lease_ttl_secs".into());
        }
        if self.instance_timeout < Duration::from_secs(3) {
            return Err("instance_timeout_secs must be at least 3".into());
        }
        if self.upload_idle.is_zero() || self.upload_deadline < self.upload_idle {
            return Err(
                "upload_idle_secs must be at least 1, and upload_secs at least as long".into(),
            );
        }
        if self.max_uploads_per_minute == 0 {
            return Err("max_uploads_per_minute must be at least 1".into());
        }
        if self.max_sign_ins_per_minute == 0 {
            return Err("max_sign_ins_per_minute must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.reputation.min_score) {
            return Err("quarantine_below must be between 0 and 1".into());
        }
        if self.reputation.min_results == 0 {
            return Err("quarantine_after must be at least 1".into());
        }
        if self.reputation.max_refuted == 0 {
            return Err("quarantine_refuted must be at least 1".into());
        }
        if self.reputation.quarantine_for.is_zero() {
            return Err("quarantine_secs must be at least 1".into());
        }
        if self.session_ttl.is_zero() || self.sign_in_ttl.is_zero() {
            return Err("session_secs and sign_in_secs must be at least 1".into());
        }
        if let Some(url) = &self.public_url {
            self.public_origin()
                .ok_or_else(|| format!("public_url {url:?} is not http(s)://HOST[:PORT]"))?;
        } else if self.listen.ip().is_unspecified() {
            // Which of the machine's names would sign-in trust? Not the
            // request's word for it (a phishing site names its own).
            return Err(format!(
                "listening on {} (every interface) needs public_url, the origin users reach \
                 this coordinator at (e.g. --public-url https://oblivion.example): sign-in \
                 messages must name it",
                self.listen
            ));
        }
        self.chain()?;
        if self.chain_settings.poll.is_zero() {
            return Err("chain_poll_secs must be at least 1".into());
        }
        if let Some(url) = &self.database_url {
            oblivion_store::Backend::of(url)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order_and_are_checked() {
        let dir = std::env::temp_dir().join(format!("oblivion-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "lease_cap = 5\nheartbeat_secs = 2\nlease_ttl_secs = 6\n",
        )
        .unwrap();
        let flags = ConfigLayer {
            lease_cap: Some(3),
            ..ConfigLayer::default()
        };
        let c = Config::load(Some(&file), &flags).unwrap();
        assert_eq!(
            (c.lease_cap, c.heartbeat.as_secs(), c.lease_ttl.as_secs()),
            (3, 2, 6)
        );
        std::fs::write(&file, "lease_cap = 5\nbogus = 1\n").unwrap();
        assert!(
            Config::load(Some(&file), &ConfigLayer::default())
                .unwrap_err()
                .contains("bogus")
        );
        let bad = ConfigLayer {
            lease_ttl_secs: Some(1),
            ..ConfigLayer::default()
        };
        assert!(Config::load(None, &bad).is_err());
    }

    #[test]
    fn only_local_addresses_are_trusted_as_the_sign_in_domain() {
        let local = Config::default();
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
        ] {
            assert!(local.serves_at(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1:9999",
            "127.0.0.1",
            "localhost.evil.example:8080",
            "10.0.0.5:8080",
            "127.0.0.1:8080:8080",
            "",
        ] {
            assert!(!local.serves_at(bad), "{bad}");
        }
        let lan = Config {
            listen: "10.0.0.5:8080".parse().unwrap(),
            ..Config::default()
        };
        assert!(lan.serves_at("10.0.0.5:8080"));
        assert!(!lan.serves_at("10.0.0.6:8080"));
        let v6 = Config {
            listen: "[fd00::5]:80".parse().unwrap(),
            ..Config::default()
        };
        assert!(v6.serves_at("[fd00::5]"));
        assert!(v6.serves_at("[FD00::5]:80"));

        // Every interface, without a public URL: which name is ours? Refused.
        let any = ConfigLayer {
            listen: Some("0.0.0.0:8080".parse().unwrap()),
            ..ConfigLayer::default()
        };
        assert!(Config::load(None, &any).unwrap_err().contains("public_url"));
        let named = ConfigLayer {
            public_url: Some("https://oblivion.example".into()),
            ..any
        };
        assert!(Config::load(None, &named).is_ok());
    }
}
