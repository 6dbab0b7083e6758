//! Operator settings, each declared once: the field below is the setting,
//! and its attributes give its flag, its config-file key (the argument's
//! id), its default and its help. Its `OBLIVION_*` variable is named after
//! its key ([`with_env`]). Settings come from defaults, then a TOML file
//! ([`with_file`]), then the environment, then flags: the file's values
//! become the arguments' defaults, so clap's own order does the rest.
//! `README.md`'s table of settings is checked against this declaration.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Command, FromArgMatches};
use oblivion_scheduler::reputation::ReputationPolicy;

/// Everything `serve` can be told, in groups of settings (each group
/// flattened: its settings are flags and keys of their own).
#[derive(Clone, Debug, PartialEq, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Folder of the built web app to serve at `/` (default: `./dist` when
    /// it holds an `index.html`).
    #[arg(long)]
    pub web_dir: Option<PathBuf>,
    /// Where the state lives.
    #[command(flatten)]
    pub storage: Storage,
    /// How long work is held: leases, and the claims of an instance presumed dead.
    #[command(flatten)]
    pub leases: LeaseSettings,
    /// What an upload may be, and what its decoding may hold.
    #[command(flatten)]
    pub uploads: UploadLimits,
    /// What one client address, and all of them, may hold or ask.
    #[command(flatten)]
    pub quotas: Quotas,
    /// What is kept, and for how long.
    #[command(flatten)]
    pub collection: Collection,
    /// Sign-in and sessions.
    #[command(flatten)]
    pub sign_in: SignIn,
    /// What a job may cost; refused at creation beyond it.
    #[command(flatten)]
    pub budgets: JobBudgets,
    /// When a worker is quarantined for disputed results.
    #[command(flatten)]
    pub quarantine: QuarantineSettings,
    /// Where paid jobs are escrowed (see [`Config::chain`]).
    #[command(flatten)]
    pub chain_settings: ChainSettings,
}

/// Where the state lives.
#[derive(Clone, Debug, PartialEq, Args)]
pub struct Storage {
    /// Directory for the database and artifacts.
    #[arg(long, default_value = "oblivion-data")]
    pub data_dir: PathBuf,
    /// Database: `sqlite://PATH` or `postgres://USER@HOST/DB` (default:
    /// SQLite under the data directory).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Artifacts: a directory, or `s3://BUCKET/PREFIX` with the endpoint
    /// and credentials from `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and `AWS_REGION` (default: `artifacts/`
    /// under the data directory).
    #[arg(long)]
    pub artifacts_url: Option<String>,
    /// Most updates recorded with one commit, up to 1,000: updates that
    /// arrive while a batch commits wait and go together in the next (group
    /// commit).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub update_batch: u32,
}

/// How long work is held: leases, and the claims of an instance presumed dead.
#[derive(Clone, Debug, PartialEq, Args)]
pub struct LeaseSettings {
    /// Most leases one worker holds at once.
    #[arg(long, default_value_t = 2)]
    pub lease_cap: u32,
    /// Seconds between worker heartbeats.
    #[arg(long = "heartbeat-secs", id = "heartbeat_secs", value_parser = seconds, value_name = "SECS", default_value = "15")]
    pub heartbeat: Duration,
    /// Seconds without a heartbeat before a lease expires and its shard is
    /// re-issued.
    #[arg(long = "lease-ttl-secs", id = "lease_ttl_secs", value_parser = seconds, value_name = "SECS", default_value = "45")]
    pub lease_ttl: Duration,
    /// Seconds a lease may live, whatever its heartbeats.
    #[arg(long = "lease-max-lifetime-secs", id = "lease_max_lifetime_secs", value_parser = seconds, value_name = "SECS", default_value = "3600")]
    pub lease_max_lifetime: Duration,
    /// Seconds a lease may go without its reported progress growing before
    /// it ends, counted against its worker.
    #[arg(long = "lease-stall-secs", id = "lease_stall_secs", value_parser = seconds, value_name = "SECS", default_value = "600")]
    pub lease_stall: Duration,
    /// Seconds after which another instance takes over a round's
    /// aggregation (its claimant is presumed dead).
    #[arg(long = "aggregation-timeout-secs", id = "aggregation_timeout_secs", value_parser = seconds, value_name = "SECS", default_value = "600")]
    pub aggregation_timeout: Duration,
    /// Seconds after which an instance not seen alive is presumed dead: the
    /// others end its leases and release its claims.
    #[arg(long = "instance-timeout-secs", id = "instance_timeout_secs", value_parser = seconds, value_name = "SECS", default_value = "10")]
    pub instance_timeout: Duration,
}

/// What an upload may be, and what its decoding may hold.
#[derive(Clone, Debug, PartialEq, Args)]
pub struct UploadLimits {
    /// Largest dataset upload, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_upload_bytes: usize,
    /// Largest update upload, in bytes.
    #[arg(long, default_value_t = oblivion_protocol::wire::MAX_UPDATE_BYTES)]
    pub max_update_bytes: usize,
    /// Seconds an update or dataset upload may take in all; a slower one is
    /// refused (408), and a slow update ends its lease.
    #[arg(long = "upload-secs", id = "upload_secs", value_parser = seconds, value_name = "SECS", default_value = "300")]
    pub upload_deadline: Duration,
    /// Seconds any request body may go without a byte before it is refused
    /// (408).
    #[arg(long = "upload-idle-secs", id = "upload_idle_secs", value_parser = seconds, value_name = "SECS", default_value = "15")]
    pub upload_idle: Duration,
    /// Largest dataset once decompressed, in bytes.
    #[arg(long, default_value_t = 128 << 20)]
    pub max_dataset_bytes: usize,
    /// Decoded datasets kept in memory for new jobs.
    #[arg(long, default_value_t = 8)]
    pub dataset_cache_entries: usize,
}

/// What one client address, and all of them, may hold or ask.
#[derive(Clone, Debug, PartialEq, Args)]
pub struct Quotas {
    /// Most unfinished jobs per client address.
    #[arg(long, default_value_t = 8)]
    pub max_jobs_in_flight: u32,
    /// Worker connections per client address.
    #[arg(long, default_value_t = 256)]
    pub max_workers_per_client: u32,
    /// Worker connections this instance serves in all.
    #[arg(long, default_value_t = 20_000)]
    pub max_workers: u32,
    /// Event streams (`GET /api/events`) per client address.
    #[arg(long, default_value_t = 16)]
    pub max_event_streams_per_client: u32,
    /// Event streams this instance serves in all.
    #[arg(long, default_value_t = 1024)]
    pub max_event_streams: u32,
    /// Uploads (job specs, datasets) per client address per minute.
    #[arg(long, default_value_t = 60)]
    pub max_uploads_per_minute: u32,
    /// Sign-in nonces per client address per minute.
    #[arg(long, default_value_t = 30)]
    pub max_sign_ins_per_minute: u32,
    /// Addresses of reverse proxies in front of this coordinator,
    /// comma-separated: per-address limits then count the client their
    /// `X-Forwarded-For` names (default: none; the header is ignored).
    #[arg(long, value_delimiter = ',')]
    pub trusted_proxies: Vec<IpAddr>,
}

/// What is kept, and for how long.
#[derive(Clone, Debug, PartialEq, Args)]
pub struct Collection {
    /// Seconds between collections of unreferenced artifacts, 0 for never.
    #[arg(long = "gc-interval-secs", id = "gc_interval_secs", value_parser = seconds, value_name = "SECS", default_value = "60")]
    pub gc_interval: Duration,
    /// Artifacts younger than this many seconds are never collected.
    #[arg(long = "gc-grace-secs", id = "gc_grace_secs", value_parser = seconds, value_name = "SECS", default_value = secs(oblivion_store::COLLECTION_GRACE))]
    pub gc_grace: Duration,
    /// Round weights kept for a finished job, besides its model.
    #[arg(long, default_value_t = 3)]
    pub keep_rounds: u32,
    /// Seconds a paid job may wait for its deposit before it is cancelled
    /// (and its data collected).
    #[arg(long = "funding-timeout-secs", id = "funding_timeout_secs", value_parser = seconds, value_name = "SECS", default_value = secs(WEEK))]
    pub funding_timeout: Duration,
    /// Seconds after which an uploaded dataset no unfinished job names is
    /// deleted.
    #[arg(long = "unused-upload-secs", id = "unused_upload_secs", value_parser = seconds, value_name = "SECS", default_value = secs(WEEK))]
    pub unused_upload_ttl: Duration,
}

/// Sign-in and sessions.
#[derive(Clone, Debug, PartialEq, Args)]
pub struct SignIn {
    /// The origin users reach this coordinator at, e.g.
    /// `https://oblivion.example`: sign-in messages must name its host, and
    /// sessions are sent only over HTTPS when it is one (default: the
    /// request's `Host`, over HTTP, and only a local one).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Seconds a session lasts after sign-in.
    #[arg(long = "session-secs", id = "session_secs", value_parser = seconds, value_name = "SECS", default_value = "86400")]
    pub session_ttl: Duration,
    /// Seconds a sign-in nonce (and the message carrying it) lasts.
    #[arg(long = "sign-in-secs", id = "sign_in_secs", value_parser = seconds, value_name = "SECS", default_value = "600")]
    pub sign_in_ttl: Duration,
}

/// A week, in the settings' defaults.
const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

/// A setting in whole seconds.
fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("{text:?} is not a whole number of seconds"))
}

/// `d` as a default for a setting in seconds.
fn secs(d: Duration) -> String {
    d.as_secs().to_string()
}

/// Limits on what one job may cost, checked when it is created.
#[derive(Clone, Copy, Debug, PartialEq, Args)]
pub struct JobBudgets {
    /// Most trainable parameters of a job's model (what a browser tab can
    /// train).
    #[arg(long, default_value_t = 16_000_000)]
    pub max_params: u64,
    /// Most multiply-adds of one evaluation of the validation split (run
    /// after every round, on the coordinator).
    #[arg(long, default_value_t = 50_000_000_000)]
    pub max_eval_macs: u64,
    /// Most `shards_per_round × rounds` of one job: leases and stored
    /// updates over the job.
    #[arg(long, default_value_t = 25_000)]
    pub max_shard_rounds: u64,
    /// Most memory one round's aggregation may hold, in bytes: slots ×
    /// parameters × 4 bytes × 4 copies (see `budget::aggregation_bytes`).
    #[arg(long, default_value_t = 2 << 30)]
    pub max_aggregation_bytes: u64,
}

/// When a worker is quarantined, as the operator sets it; the scheduling
/// core's [`ReputationPolicy`] holds the defaults and applies the rule.
#[derive(Clone, Copy, Debug, PartialEq, Args)]
pub struct QuarantineSettings {
    /// Quarantine a worker whose share of agreed results (smoothed) falls
    /// below this (0 to 1)...
    #[arg(long, default_value_t = ReputationPolicy::default().min_score)]
    pub quarantine_below: f64,
    /// ...once it has this many results on record.
    #[arg(long, default_value_t = ReputationPolicy::default().min_results)]
    pub quarantine_after: u64,
    /// Quarantine a worker once this many of its results are refuted by
    /// replicas.
    #[arg(long, default_value_t = ReputationPolicy::default().max_refuted)]
    pub quarantine_refuted: u64,
    /// Seconds a quarantine lasts; the worker's record then starts afresh.
    #[arg(long = "quarantine-secs", id = "quarantine_secs", value_parser = seconds, value_name = "SECS", default_value = secs(ReputationPolicy::default().quarantine_for))]
    pub quarantine_for: Duration,
    /// Agreed results an account needs before its results, with another
    /// such account's, may refute a third...
    #[arg(long, default_value_t = ReputationPolicy::default().established_after)]
    pub established_after: u64,
    /// ...and whose first result came at least this many seconds ago.
    #[arg(long = "established-secs", id = "established_secs", value_parser = seconds, value_name = "SECS", default_value = secs(ReputationPolicy::default().established_age))]
    pub established_age: Duration,
}

impl QuarantineSettings {
    /// The rule these settings make.
    pub fn policy(&self) -> ReputationPolicy {
        ReputationPolicy {
            min_score: self.quarantine_below,
            min_results: self.quarantine_after,
            max_refuted: self.quarantine_refuted,
            quarantine_for: self.quarantine_for,
            established_after: self.established_after,
            established_age: self.established_age,
        }
    }
}

/// The chain settings as given: all four of URL, id, escrow and key, or
/// none (jobs then run unpaid).
#[derive(Clone, Debug, PartialEq, Args)]
pub struct ChainSettings {
    /// JSON-RPC URL of the chain paid jobs settle on; with `chain_id`,
    /// `escrow_address` and `signer_key` (default: none, jobs run unpaid).
    #[arg(long = "chain-rpc-url", id = "chain_rpc_url", value_name = "URL")]
    pub rpc_url: Option<String>,
    /// Id of that chain, e.g. 31337 (anvil), 80002 (Polygon Amoy).
    #[arg(long)]
    pub chain_id: Option<u64>,
    /// Address of the escrow contract on that chain.
    #[arg(long = "escrow-address", id = "escrow_address", value_name = "ADDRESS")]
    pub escrow: Option<String>,
    /// Private key (hex) that signs settlements; prefer the environment or
    /// the file to a flag.
    #[arg(long, hide_env_values = true)]
    pub signer_key: Option<String>,
    /// Blocks on top of a deposit before it counts and the job opens.
    #[arg(long, default_value_t = 2)]
    pub confirmations: u64,
    /// Seconds between reads of the chain.
    #[arg(long = "chain-poll-secs", id = "chain_poll_secs", value_parser = seconds, value_name = "SECS", default_value = "2")]
    pub poll: Duration,
    /// Seconds a paid job's deadline must allow per round; a deposit whose
    /// deadline allows less is refused.
    #[arg(long = "deadline-round-secs", id = "deadline_round_secs", value_parser = seconds, value_name = "SECS", default_value = "300")]
    pub round_time: Duration,
    /// Seconds before a paid job's deadline, beyond a lease's lifetime, in
    /// which no lease is granted (a settlement must be issued by then).
    #[arg(long = "deadline-margin-secs", id = "deadline_margin_secs", value_parser = seconds, value_name = "SECS", default_value = "1800")]
    pub deadline_margin: Duration,
    /// Least part of each sale, in basis points (at most 5000), that a
    /// listing gives the contributors of a model they trained.
    #[arg(long, default_value_t = 1000)]
    pub min_contributors_bps: u16,
}

/// Settings `T` at their defaults: nothing from the environment, a file or
/// flags.
fn defaults<T: Args + FromArgMatches>() -> T {
    let matches = T::augment_args(Command::new("defaults"))
        .try_get_matches_from(["defaults"])
        .unwrap_or_else(|e| panic!("a setting's default does not parse: {e}"));
    T::from_arg_matches(&matches).unwrap_or_else(|e| panic!("{e}"))
}

impl Default for Config {
    fn default() -> Config {
        defaults()
    }
}

impl Default for JobBudgets {
    fn default() -> JobBudgets {
        defaults()
    }
}

/// The `OBLIVION_*` variable of the setting whose key is `id`.
fn env_name(id: &str) -> String {
    format!("OBLIVION_{}", id.to_ascii_uppercase())
}

/// The keys of [`Config`]'s settings.
fn setting_ids() -> Vec<String> {
    Config::augment_args(Command::new("settings"))
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect()
}

/// `cmd` (a command holding [`Config`]'s arguments) with each setting
/// readable from its `OBLIVION_*` variable.
pub fn with_env(cmd: Command) -> Command {
    setting_ids().into_iter().fold(cmd, |cmd, id| {
        let name = env_name(&id);
        cmd.mut_arg(id, |a| a.env(name))
    })
}

/// `cmd` (a command holding [`Config`]'s arguments) with the TOML file at
/// `path` as the settings' defaults: what the environment and flags do not
/// say, the file does. An unknown key, or a value its setting would
/// refuse, is an error that names the file and the key.
pub fn with_file(cmd: Command, path: &Path) -> Result<Command, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("config file {}: {}", path.display(), e.message()))?;
    let ids = setting_ids();
    let mut cmd = cmd;
    for (key, value) in table {
        let here = |what: String| format!("config file {}: {key}: {what}", path.display());
        if !ids.contains(&key) {
            return Err(here("no such setting".into()));
        }
        let values = match value {
            toml::Value::Array(items) => items.into_iter().map(toml_text).collect(),
            one => vec![toml_text(one)],
        };
        let values = values
            .into_iter()
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| {
                here("expected a string, a number, a boolean or a list of them".into())
            })?;
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id() == key.as_str())
            .ok_or_else(|| here("no such setting".into()))?;
        // Each value parsed as its flag would be, so the file's errors name
        // the file.
        let long = format!("--{}", arg.get_long().unwrap_or(key.as_str()));
        let alone = Command::new("file").no_binary_name(true).arg(arg.clone());
        for v in &values {
            alone
                .clone()
                .try_get_matches_from([long.as_str(), v.as_str()])
                .map_err(|e| here(format!("{v:?}: {}", clap_reason(&e))))?;
        }
        cmd = cmd.mut_arg(key, |a| a.default_values(values));
    }
    Ok(cmd)
}

/// A scalar TOML value as a flag would give it.
fn toml_text(value: toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What a clap error says was wrong with a value, without its usage text.
fn clap_reason(e: &clap::Error) -> String {
    use std::error::Error as _;
    e.source()
        .map(|s| s.to_string())
        .unwrap_or_else(|| e.kind().to_string())
}

/// `README.md`'s table of settings, as the declaration above makes it.
#[cfg(test)]
fn settings_table() -> String {
    let cmd = with_env(Config::augment_args(Command::new("serve")));
    let mut table = String::from(
        "| setting (file key) | flag | variable | default | what it sets |\n| --- | --- | --- | --- \
         | --- |\n",
    );
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        let flag = arg.get_long().map_or(String::new(), |l| format!("`--{l}`"));
        let default: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = if default.is_empty() {
            "none".to_string()
        } else {
            format!("`{}`", default.join(","))
        };
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string().replace('\n', " ").replace('|', "\\|"))
            .unwrap_or_default();
        table.push_str(&format!(
            "| `{id}` | {flag} | `{}` | {default} | {help} |\n",
            env_name(id)
        ));
    }
    table
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
    /// Least part of each sale a listing gives a model's contributors.
    pub min_contributors_bps: u16,
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

impl Config {
    /// Where artifacts live: the configured place, or under `data_dir`.
    pub fn artifacts_url(&self) -> String {
        self.storage.artifacts_url.clone().unwrap_or_else(|| {
            self.storage
                .data_dir
                .join("artifacts")
                .display()
                .to_string()
        })
    }

    /// The database URL: the configured one, or SQLite under `data_dir`.
    pub fn database_url(&self) -> String {
        self.storage.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.storage.data_dir.join("oblivion.db").display()
            )
        })
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
                let cap = oblivion_protocol::market::MAX_CONTRIBUTORS_BPS;
                if c.min_contributors_bps > cap {
                    return Err(format!(
                        "min_contributors_bps {} is above the escrow's cap of {cap}",
                        c.min_contributors_bps
                    ));
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
                    min_contributors_bps: c.min_contributors_bps,
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
        let url = self.sign_in.public_url.as_deref()?.trim_end_matches('/');
        let (scheme, authority) = url.split_once("://")?;
        let ok = matches!(scheme, "http" | "https")
            && !authority.is_empty()
            && !authority.contains(['/', '?', '#', '@']);
        ok.then_some((scheme, authority))
    }

    /// The reputation rule the quarantine settings make.
    pub fn reputation(&self) -> ReputationPolicy {
        self.quarantine.policy()
    }

    /// The settings as parsed, completed and checked: the web app is
    /// served from `./dist` when none is named and one is built there.
    pub fn finish(mut self) -> Result<Config, String> {
        if self.web_dir.is_none() && Path::new("dist/index.html").exists() {
            self.web_dir = Some(PathBuf::from("dist"));
        }
        self.check()?;
        Ok(self)
    }

    /// `serve`'s settings from the TOML file at `file` (if any), the
    /// environment and `flags`, in that order of precedence upwards;
    /// completed and checked.
    pub fn from_flags(file: Option<&Path>, flags: &[&str]) -> Result<Config, String> {
        let mut cmd = with_env(Config::augment_args(Command::new("serve")));
        if let Some(path) = file {
            cmd = with_file(cmd, path)?;
        }
        let matches = cmd
            .try_get_matches_from(std::iter::once("serve").chain(flags.iter().copied()))
            .map_err(|e| clap_reason(&e))?;
        Config::from_arg_matches(&matches)
            .map_err(|e| clap_reason(&e))?
            .finish()
    }

    fn check(&self) -> Result<(), String> {
        if self.leases.lease_cap == 0 {
            return Err("lease_cap must be at least 1".into());
        }
        if self.leases.heartbeat.is_zero() {
            return Err("heartbeat_secs must be at least 1".into());
        }
        if self.leases.lease_ttl <= self.leases.heartbeat {
            return Err("lease_ttl_secs must be longer than heartbeat_secs".into());
        }
        if self.leases.lease_stall <= self.leases.heartbeat {
            return Err("lease_stall_secs must be longer than heartbeat_secs".into());
        }
        if self.leases.lease_max_lifetime < self.leases.lease_ttl {
            return Err("lease_max_lifetime_secs must be at least lease_ttl_secs".into());
        }
        if self.leases.instance_timeout < Duration::from_secs(3) {
            return Err("instance_timeout_secs must be at least 3".into());
        }
        if self.uploads.upload_idle.is_zero()
            || self.uploads.upload_deadline < self.uploads.upload_idle
        {
            return Err(
                "upload_idle_secs must be at least 1, and upload_secs at least as long".into(),
            );
        }
        if self.quotas.max_uploads_per_minute == 0 {
            return Err("max_uploads_per_minute must be at least 1".into());
        }
        if self.quotas.max_sign_ins_per_minute == 0 {
            return Err("max_sign_ins_per_minute must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.quarantine.quarantine_below) {
            return Err("quarantine_below must be between 0 and 1".into());
        }
        if self.quarantine.quarantine_after == 0 {
            return Err("quarantine_after must be at least 1".into());
        }
        if self.quarantine.quarantine_refuted == 0 {
            return Err("quarantine_refuted must be at least 1".into());
        }
        if self.quarantine.quarantine_for.is_zero() {
            return Err("quarantine_secs must be at least 1".into());
        }
        if self.sign_in.session_ttl.is_zero() || self.sign_in.sign_in_ttl.is_zero() {
            return Err("session_secs and sign_in_secs must be at least 1".into());
        }
        if let Some(url) = &self.sign_in.public_url {
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
        if let Some(url) = &self.storage.database_url {
            oblivion_store::Backend::of(url)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
