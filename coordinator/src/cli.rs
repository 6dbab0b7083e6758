//! The operator CLI: `serve`, and `job …` / `workers` against a running
//! coordinator's API.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use oblivion_chain::calls;
use oblivion_protocol::api::{ChainInfo, Created, JobView, ModelView, WorkerView, outputs_headers};
use oblivion_protocol::market::{ListingView, MAX_CONTRIBUTORS_BPS};
use oblivion_protocol::{JobId, ModelId};

use oblivion_chain::{Key, sign_in_over_http};

use crate::config::{self, Config};

/// Oblivion coordinator.
#[derive(Debug, Parser)]
#[command(name = "oblivion-coordinator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the coordinator.
    Serve {
        /// TOML file with any of the settings below, by key: under the
        /// environment and flags, over the defaults.
        #[arg(long, env = "OBLIVION_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<Config>,
    },
    /// Submits, inspects, downloads or cancels jobs.
    Job {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Lists, shows, downloads, registers or sells models of the registry.
    Model {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Lists connected workers.
    Workers {
        #[command(flatten)]
        target: Target,
    },
    /// Deploys the job escrow on an EVM chain; prints its address.
    DeployEscrow {
        /// JSON-RPC URL of the chain.
        #[arg(long, env = "OBLIVION_CHAIN_RPC_URL")]
        rpc_url: String,
        /// Private key (hex) of the deploying account (pays the gas).
        #[arg(long, env = "OBLIVION_KEY", hide_env_values = true)]
        key: String,
        /// Seconds after a settlement during which contributors claim.
        #[arg(long, default_value_t = 30 * 24 * 3600)]
        claim_window_secs: u64,
        /// Seconds after a settlement is issued during which only the job's
        /// creator may send it; anyone may after. The refund opens two of
        /// these after a job's deadline.
        #[arg(long, default_value_t = 24 * 3600)]
        settle_grace_secs: u64,
    },
}

#[derive(Debug, clap::Args)]
struct Target {
    /// Coordinator URL.
    #[arg(
        long,
        global = true,
        env = "OBLIVION_COORDINATOR",
        default_value = "http://127.0.0.1:8080"
    )]
    coordinator: String,
    /// Private key (hex) of the account to act as: every command signs in
    /// with it first (Sign-In with Ethereum). Without it, commands run
    /// anonymously (reading public jobs only).
    #[arg(long, global = true, env = "OBLIVION_KEY", hide_env_values = true)]
    key: Option<String>,
}

impl Target {
    /// An HTTP client, signed in as `--key` when one is given.
    async fn client(&self) -> Result<reqwest::Client, String> {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .map_err(|e| e.to_string())?;
        if let Some(key) = &self.key {
            let key = Key::parse(key).map_err(|e| format!("--key (OBLIVION_KEY): {e}"))?;
            sign_in_over_http(&http, &self.coordinator, &key).await?;
        }
        Ok(http)
    }
}

#[derive(Debug, Subcommand)]
enum JobCommand {
    /// Submits a JSON job spec; prints the new job's id.
    Submit {
        /// The spec file.
        file: PathBuf,
    },
    /// Shows a job's status and rounds.
    Status {
        /// Job id.
        id: JobId,
        /// Keep refreshing until the job ends.
        #[arg(long)]
        watch: bool,
    },
    /// Lists jobs.
    List,
    /// Cancels a job.
    Cancel {
        /// Job id.
        id: JobId,
    },
    /// Downloads the job's current model.
    Download {
        /// Job id.
        id: JobId,
        /// onnx, safetensors or burn.
        #[arg(long, default_value = "onnx")]
        format: String,
        /// Where to write it [default: the server's file name].
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Downloads an inference job's outputs, and beside them
    /// (`<file>.json`) the hashes of the model and the rows they came from.
    Results {
        /// Job id.
        id: JobId,
        /// csv, jsonl or npy.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Where to write them [default: the server's file name].
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

impl Cli {
    /// The command line, as [`Parser::parse`] reads it, with `serve`'s
    /// settings also read from their `OBLIVION_*` variables and from its
    /// `--config` file (see [`config`]). Exits on a bad command line or
    /// file, with clap's one-line error.
    pub fn parse_layered() -> Cli {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        Cli::try_parse_layered(&args).unwrap_or_else(|e| e.exit())
    }

    fn try_parse_layered(args: &[std::ffi::OsString]) -> Result<Cli, clap::Error> {
        let cmd = Cli::command().mut_subcommand("serve", config::with_env);
        let matches = cmd.clone().try_get_matches_from(args)?;
        let file = matches
            .subcommand_matches("serve")
            .and_then(|serve| serve.get_one::<PathBuf>("config"));
        let matches = match file {
            None => matches,
            Some(path) => {
                let mut failure = None;
                let cmd = cmd.mut_subcommand("serve", |serve| {
                    config::with_file(serve.clone(), path).unwrap_or_else(|e| {
                        failure = Some(e);
                        serve
                    })
                });
                if let Some(e) = failure {
                    return Err(clap::Error::raw(
                        clap::error::ErrorKind::InvalidValue,
                        e + "\n",
                    ));
                }
                cmd.try_get_matches_from(args)?
            }
        };
        Cli::from_arg_matches(&matches)
    }
}

/// Runs the CLI; errors come back as one readable line.
pub async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve { settings, .. } => {
            let config = settings.finish()?;
            crate::serve(config).await.map_err(|e| format!("{e:#}"))
        }
        Command::Workers { target } => {
            let http = target.client().await?;
            let workers: Vec<WorkerView> = get_json(&http, &target, "/api/workers").await?;
            println!(
                "{:>5}  {:<20} {:<8} {:<6} {:>10} {:>6} {:>8} {:>8}",
                "id", "name", "client", "device", "samples/s", "leases", "accepted", "rejected"
            );
            for w in workers {
                println!(
                    "{:>5}  {:<20} {:<8} {:<6} {:>10.0} {:>6} {:>8} {:>8}",
                    w.id,
                    w.name,
                    format!("{:?}", w.client).to_lowercase(),
                    w.device.backend,
                    w.benchmark,
                    w.active_leases,
                    w.accepted,
                    w.rejected
                );
            }
            Ok(())
        }
        Command::Job { target, command } => job(&target, command).await,
        Command::Model { target, command } => model(&target, command).await,
        Command::DeployEscrow {
            rpc_url,
            key,
            claim_window_secs,
            settle_grace_secs,
        } => {
            let key = Key::parse(&key).map_err(|e| format!("--key (OBLIVION_KEY): {e}"))?;
            let url = rpc_url
                .parse()
                .map_err(|e| format!("--rpc-url {rpc_url:?}: {e}"))?;
            let escrow = oblivion_chain::escrow::deploy(
                oblivion_chain::escrow::connect(url, &key),
                claim_window_secs,
                settle_grace_secs,
            )
            .await
            .map_err(|e| format!("deploying the escrow on {rpc_url}: {e}"))?;
            println!("{:#x}", escrow.address());
            Ok(())
        }
    }
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Lists the models this account may read.
    List {
        /// Only those whose name holds this.
        #[arg(long)]
        search: Option<String>,
        /// newest, accuracy or name.
        #[arg(long, default_value = "newest")]
        sort: String,
        /// Only the models on sale, with their prices.
        #[arg(long)]
        for_sale: bool,
    },
    /// Shows a model's card and lineage (JSON).
    Show {
        /// Model id.
        id: ModelId,
    },
    /// Downloads a model's weights.
    Download {
        /// Model id.
        id: ModelId,
        /// onnx, safetensors or burn.
        #[arg(long, default_value = "onnx")]
        format: String,
        /// Where to write it [default: the server's file name].
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Registers weights: a safetensors file in the form `model download
    /// --format safetensors` writes (its metadata declares the
    /// architecture); prints the new model's id.
    Register {
        /// The file.
        file: PathBuf,
        /// Its name.
        #[arg(long)]
        name: String,
        /// public or private.
        #[arg(long, default_value = "public")]
        visibility: String,
    },
    /// Lists a private model of this account (`--key`) for sale: the
    /// coordinator signs the terms and this account sends them to the
    /// escrow; prints the listing's key and transaction.
    ListForSale {
        /// Model id.
        id: ModelId,
        /// The price of one purchase, in ETH (as 0.25).
        #[arg(long)]
        price: String,
        /// The part of each sale that goes to the model's contributors, by
        /// verified work, in percent (at most 50).
        #[arg(long, default_value_t = 20.0)]
        contributors_percent: f64,
        /// JSON-RPC URL of the chain the coordinator settles on.
        #[arg(long, env = "OBLIVION_CHAIN_RPC_URL")]
        rpc_url: String,
    },
}

async fn model(target: &Target, command: ModelCommand) -> Result<(), String> {
    let http = target.client().await?;
    match command {
        ModelCommand::List { for_sale: true, .. } => {
            let listings: Vec<ListingView> = get_json(&http, target, "/api/market").await?;
            println!(
                "{:>5}  {:<28} {:>14} {:>13} {:>6}  seller",
                "id", "name", "price (ETH)", "contributors", "sales"
            );
            for l in listings {
                let price =
                    calls::format_ether(calls::u256(l.listed_price.as_ref().unwrap_or(&l.price)));
                let part = format!(
                    "{}%",
                    f64::from(l.listed_bps.unwrap_or(l.contributors_bps)) / 100.0
                );
                println!(
                    "{:>5}  {:<28} {:>14} {:>13} {:>6}  {}",
                    l.model_id, l.model_name, price, part, l.sales, l.owner
                );
            }
            Ok(())
        }
        ModelCommand::List { search, sort, .. } => {
            let mut pairs = vec![("sort", sort.as_str())];
            if let Some(q) = &search {
                pairs.push(("q", q));
            }
            let path = with_query("/api/models", &pairs);
            let models: Vec<ModelView> = get_json(&http, target, &path).await?;
            println!(
                "{:>5}  {:<28} {:<12} {:>9} {:>6}  job",
                "id", "name", "dataset", "accuracy", "rounds"
            );
            for m in models {
                let accuracy = m
                    .accuracy
                    .map_or("-".to_string(), |a| format!("{:.2}%", a * 100.0));
                let job = m
                    .job
                    .map_or("registered".to_string(), |j| format!("job {j}"));
                println!(
                    "{:>5}  {:<28} {:<12} {:>9} {:>6}  {job}",
                    m.id, m.name, m.dataset, accuracy, m.rounds
                );
            }
            Ok(())
        }
        ModelCommand::Show { id } => {
            let model: ModelView = get_json(&http, target, &format!("/api/models/{id}")).await?;
            let text = serde_json::to_string_pretty(&model).map_err(|e| e.to_string())?;
            println!("{text}");
            Ok(())
        }
        ModelCommand::Download { id, format, output } => {
            let path = format!("/api/models/{id}/weights?format={format}");
            let fallback = format!("model-{id}.{format}");
            let (path, bytes, _) = download(&http, target, &path, output, &fallback).await?;
            println!("{} ({} bytes)", path.display(), bytes);
            Ok(())
        }
        ModelCommand::Register {
            file,
            name,
            visibility,
        } => {
            let bytes =
                std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let path = with_query(
                "/api/models",
                &[("name", &name), ("visibility", &visibility)],
            );
            let response = http
                .post(url(target, &path))
                .body(bytes)
                .send()
                .await
                .map_err(|e| unreachable_line(target, e))?;
            let created: serde_json::Value = decode(response).await?;
            println!("{}", created["id"]);
            Ok(())
        }
        ModelCommand::ListForSale {
            id,
            price,
            contributors_percent,
            rpc_url,
        } => {
            let key = target
                .key
                .as_deref()
                .ok_or("model list-for-sale needs --key (OBLIVION_KEY): the model owner's")?;
            let key = Key::parse(key).map_err(|e| format!("--key (OBLIVION_KEY): {e}"))?;
            let wei = calls::parse_ether(&price).map_err(|e| format!("--price: {}", e.reason))?;
            let most = f64::from(MAX_CONTRIBUTORS_BPS) / 100.0;
            if !(0.0..=most).contains(&contributors_percent) {
                return Err(format!(
                    "--contributors-percent: {contributors_percent} is not between 0 and {most}"
                ));
            }
            let terms = serde_json::json!({
                "price": wei.to_string(),
                "contributors_bps": (contributors_percent * 100.0).round() as u16,
            });
            let response = http
                .post(url(target, &format!("/api/models/{id}/listing")))
                .header("content-type", "application/json")
                .body(terms.to_string())
                .send()
                .await
                .map_err(|e| unreachable_line(target, e))?;
            let offer: ListingView = decode(response).await?;
            let chain: ChainInfo = get_json(&http, target, "/api/chain").await?;
            let url = rpc_url
                .parse()
                .map_err(|e| format!("--rpc-url {rpc_url:?}: {e}"))?;
            let escrow_address = chain.escrow.parse().map_err(|_| {
                format!(
                    "the coordinator's escrow {:?} is not an address",
                    chain.escrow
                )
            })?;
            let provider = oblivion_chain::escrow::connect(url, &key);
            let escrow = oblivion_chain::escrow::at(escrow_address, &provider);
            let malformed =
                |what: &str| format!("the coordinator's listing has a malformed {what}");
            let call = escrow.list(
                alloy::primitives::U256::from(id.0),
                offer.signer.parse().map_err(|_| malformed("signer"))?,
                offer
                    .model_hash
                    .parse()
                    .map_err(|_| malformed("model hash"))?,
                calls::u256(&offer.price),
                offer.contributors_bps,
                offer
                    .shares_root
                    .parse()
                    .map_err(|_| malformed("shares root"))?,
                offer
                    .signature
                    .parse::<alloy::primitives::Bytes>()
                    .map_err(|_| malformed("signature"))?,
            );
            let refused = |e: String| match calls::explain_revert_in(&e) {
                Some(reason) => format!("the escrow refused the listing: {reason}"),
                None => format!("sending the listing on {rpc_url}: {e}"),
            };
            let receipt = call
                .send()
                .await
                .map_err(|e| refused(e.to_string()))?
                .get_receipt()
                .await
                .map_err(|e| refused(e.to_string()))?;
            if !receipt.status() {
                return Err(format!(
                    "the escrow refused the listing (transaction {:#x} reverted)",
                    receipt.transaction_hash
                ));
            }
            println!(
                "listed model {id} at {} ETH, {contributors_percent}% of each sale to its {} contributors: listing {}, transaction {:#x}",
                calls::format_ether(wei),
                offer.shares.len(),
                offer.key,
                receipt.transaction_hash
            );
            Ok(())
        }
    }
}

/// `path` with `pairs` as its query, encoded.
fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://query.invalid").expect("a valid URL");
    url.set_path(path);
    url.query_pairs_mut().extend_pairs(pairs);
    format!("{}?{}", url.path(), url.query().unwrap_or_default())
}

async fn job(target: &Target, command: JobCommand) -> Result<(), String> {
    // Signed in once for the whole command (`status --watch` polls).
    let http = target.client().await?;
    match command {
        JobCommand::Submit { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let response = http
                .post(url(target, "/api/jobs"))
                .header("content-type", "application/json")
                .body(text)
                .send()
                .await
                .map_err(|e| unreachable_line(target, e))?;
            let created: Created = decode(response).await?;
            println!("{}", created.id);
            Ok(())
        }
        JobCommand::Status { id, watch } => loop {
            let job: JobView = get_json(&http, target, &format!("/api/jobs/{id}")).await?;
            print_status(&job);
            if !watch || job.status.is_finished() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        },
        JobCommand::List => {
            let jobs: Vec<JobView> = get_json(&http, target, "/api/jobs").await?;
            for j in jobs {
                let acc = j
                    .history
                    .last()
                    .map_or("-".to_string(), |r| format!("{:.2}%", r.accuracy * 100.0));
                println!(
                    "{:>5}  {:<24} {:<10} round {}/{}  accuracy {acc}",
                    j.id,
                    j.name,
                    j.status.as_str(),
                    j.round,
                    j.rounds
                );
            }
            Ok(())
        }
        JobCommand::Cancel { id } => {
            let response = http
                .post(url(target, &format!("/api/jobs/{id}/cancel")))
                .send()
                .await
                .map_err(|e| unreachable_line(target, e))?;
            let job: JobView = decode(response).await?;
            println!("job {} {}", job.id, job.status.as_str());
            Ok(())
        }
        JobCommand::Download { id, format, output } => {
            let path = format!("/api/jobs/{id}/model?format={format}");
            let (path, bytes, _) =
                download(&http, target, &path, output, &format!("job-{id}.{format}")).await?;
            println!("{} ({} bytes)", path.display(), bytes);
            Ok(())
        }
        JobCommand::Results { id, format, output } => {
            let path = format!("/api/jobs/{id}/outputs?format={format}");
            let name = format!("job-{id}-outputs.{format}");
            let (path, bytes, headers) = download(&http, target, &path, output, &name).await?;
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            let provenance = serde_json::json!({
                "job": id,
                "file": path.file_name().map(|n| n.to_string_lossy().to_string()),
                "model_sha256": header(outputs_headers::MODEL_SHA256),
                "inputs_sha256": header(outputs_headers::INPUTS_SHA256),
            });
            let beside = PathBuf::from(format!("{}.json", path.display()));
            std::fs::write(&beside, format!("{provenance:#}\n"))
                .map_err(|e| format!("cannot write {}: {e}", beside.display()))?;
            println!(
                "{} ({bytes} bytes); model sha256 {}, inputs sha256 {} (in {})",
                path.display(),
                header(outputs_headers::MODEL_SHA256),
                header(outputs_headers::INPUTS_SHA256),
                beside.display()
            );
            Ok(())
        }
    }
}

/// Downloads `path` to `output`, else to the server's file name, else to
/// `fallback`; returns where, how many bytes, and the answer's headers.
async fn download(
    http: &reqwest::Client,
    target: &Target,
    path: &str,
    output: Option<PathBuf>,
    fallback: &str,
) -> Result<(PathBuf, usize, reqwest::header::HeaderMap), String> {
    let response = http
        .get(url(target, path))
        .send()
        .await
        .map_err(|e| unreachable_line(target, e))?;
    if !response.status().is_success() {
        return Err(error_line(response).await);
    }
    let headers = response.headers().clone();
    let name = headers
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("filename=\"").nth(1))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap_or_else(|| fallback.to_string());
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    let path = output.unwrap_or_else(|| PathBuf::from(name));
    std::fs::write(&path, &bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((path, bytes.len(), headers))
}

fn print_status(job: &JobView) {
    const WIDTH: usize = 30;
    let finished_rounds = job.history.len();
    let fraction = if job.status.is_finished() && job.status.as_str() == "completed" {
        1.0
    } else {
        finished_rounds as f64 / f64::from(job.rounds.max(1))
    };
    let filled = (fraction * WIDTH as f64).round() as usize;
    let last = job.history.last();
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "job {} {:<10} [{}{}] round {}/{}  loss {}  accuracy {}",
        job.id,
        job.status.as_str(),
        "#".repeat(filled.min(WIDTH)),
        ".".repeat(WIDTH - filled.min(WIDTH)),
        job.round,
        job.rounds,
        last.map_or("-".into(), |r| format!("{:.4}", r.loss)),
        last.map_or("-".into(), |r| format!("{:.2}%", r.accuracy * 100.0)),
    );
    if let Some(e) = &job.error {
        let _ = writeln!(out, "error: {e}");
    }
}

fn url(target: &Target, path: &str) -> String {
    format!("{}{path}", target.coordinator.trim_end_matches('/'))
}

fn unreachable_line(target: &Target, e: reqwest::Error) -> String {
    format!(
        "cannot reach the coordinator at {}: {e}",
        target.coordinator
    )
}

async fn error_line(response: reqwest::Response) -> String {
    let status = response.status();
    let line = oblivion_chain::error_line(response).await;
    if status == reqwest::StatusCode::UNAUTHORIZED {
        format!("{line} (give the account's key with --key or OBLIVION_KEY)")
    } else {
        line
    }
}

async fn decode<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> Result<T, String> {
    if !response.status().is_success() {
        return Err(error_line(response).await);
    }
    response
        .json()
        .await
        .map_err(|e| format!("unexpected answer: {e}"))
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    target: &Target,
    path: &str,
) -> Result<T, String> {
    let response = http
        .get(url(target, path))
        .send()
        .await
        .map_err(|e| unreachable_line(target, e))?;
    decode(response).await
}
