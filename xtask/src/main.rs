//! Project commands.
//!
//! - `cargo xtask dev [--workers N] [--listen ADDR]`: builds everything and
//!   starts a local network (a coordinator on embedded defaults and N
//!   native workers) until Ctrl-C.
//! - `cargo xtask test`: installs what the tests need (wasm target,
//!   wasm-bindgen-cli, Trunk, Chromium, PostgreSQL, npm packages, a Python
//!   environment with onnxruntime), then runs every check and test.
//! - `cargo xtask bench`: the network benchmark (time to 97% accuracy).
//! - `cargo xtask trust-bench`: accuracy against ε under differential
//!   privacy, and the compute replication costs.
//! - `cargo xtask load-bench`: the coordinator under 10,000 simulated
//!   workers (lease grants per second, grant latency, updates per second).
//! - `cargo xtask inference-bench`: rows a second per model on the native
//!   engine, and what checking a shard costs the coordinator.
//! - `cargo xtask web`: builds the web app and the browser worker into
//!   `dist/` (Trunk), gives the worker's files content-hashed names, and
//!   writes a brotli and a gzip copy of every file.

mod dist;
mod file_cycles;
mod source_times;
mod test_runs;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

fn root() -> PathBuf {
    // `cargo run` names the checkout it runs from; the path compiled in
    // may be another clone's when clones share a target directory (cargo
    // then takes the binary as up to date).
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The cargo that runs this command.
fn cargo_program() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| "cargo".into(), PathBuf::from)
}

fn cargo() -> Command {
    let mut c = Command::new(cargo_program());
    c.current_dir(root());
    c
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let started = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    eprintln!("  ({:.0} s)", started.elapsed().as_secs_f64());
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("dev") => dev(&args[1..]),
        Some("test") => test(),
        Some("bench") => bench(&args[1..]),
        Some("load-bench") => load_bench(&args[1..]),
        Some("inference-bench") => inference_bench(&args[1..]),
        Some("trust-bench") => trust_bench(&args[1..]),
        Some("web") => web(),
        _ => {
            eprintln!(
                "usage: cargo xtask dev [--workers N] [--listen ADDR] | test | bench | trust-bench | load-bench | inference-bench | web"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The Python used to cross-check exported models, with onnxruntime,
/// numpy and safetensors installed in a virtual environment (`.venv`, or
/// `$OBLIVION_VENV`); skipped when already there.
fn python_env() -> Result<PathBuf> {
    let venv = std::env::var_os("OBLIVION_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv"));
    let python = venv.join("bin/python");
    let ready = python.exists()
        && Command::new(&python)
            .args([
                "-c",
                "import onnxruntime, numpy, safetensors, moto.server, dp_accounting",
            ])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(root().join("tests/python/requirements.txt")))?;
    }
    Ok(python)
}

fn wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup")?;
    if !String::from_utf8_lossy(&installed.stdout).contains("wasm32-unknown-unknown") {
        run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    }
    Ok(())
}

/// Debian's Chromium for the browser tests (installed when missing).
fn chromium() -> Result<()> {
    debian_package("/usr/bin/chromium", "chromium")
}

/// Debian's PostgreSQL 15 server programs, for the tests that run the
/// coordinator on PostgreSQL (installed when missing).
fn postgres() -> Result<()> {
    debian_package("/usr/lib/postgresql/15/bin/initdb", "postgresql-15")
}

/// Installs Debian `package` unless `marker` (a file it provides) exists.
fn debian_package(marker: &str, package: &str) -> Result<()> {
    if Path::new(marker).exists() {
        return Ok(());
    }
    let sudo = |args: &[&str]| {
        let mut c = if Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"))
        {
            Command::new(args[0])
        } else {
            let mut c = Command::new("sudo");
            c.arg(args[0]);
            c
        };
        c.args(&args[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run(&mut sudo(&["apt-get", "update", "-qq"]))?;
    run(&mut sudo(&["apt-get", "install", "-y", "-qq", package]))
}

/// The browser tests' and the web build's npm packages (playwright-core, tfjs,
/// binaryen), pinned by package-lock.json.
fn node_modules() -> Result<()> {
    let has = |package: &str| {
        root()
            .join("node_modules")
            .join(package)
            .join("package.json")
            .exists()
    };
    if !has("playwright-core") || !has("binaryen") {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(root()))?;
    }
    Ok(())
}

/// Foundry (forge, anvil), solc-js and OpenZeppelin for `contracts/`, from
/// npm, pinned by its package-lock.json.
fn contracts_node_modules() -> Result<()> {
    let dir = root().join("contracts");
    if !dir.join("node_modules/.bin/forge").exists() {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir))?;
    }
    Ok(())
}

/// `forge`, run in `contracts/` (its `solc` front is found relative to it).
fn forge(args: &[&str]) -> Result<()> {
    contracts_node_modules()?;
    let dir = root().join("contracts");
    run(Command::new(dir.join("node_modules/.bin/forge"))
        .args(args)
        .current_dir(&dir))
}

fn test() -> Result<()> {
    if std::env::var_os("OBLIVION_CI").is_some() {
        let (kept, changed) =
            source_times::restore(&root(), &target_dir().join("source-times.tsv"))?;
        eprintln!("source times: {kept} files as at the last run, {changed} new or changed");
    }
    let python = python_env()?;
    chromium()?;
    postgres()?;
    node_modules()?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    layers_hold()?;
    files_acyclic()?;
    // The escrow's unit, fuzz and invariant tests (solc-js; no network).
    forge(&["test"])?;
    // The browser build is also the proof that the ML core and the worker
    // engine compile for wasm32, and their lint there (see `web`).
    web()?;
    // The native build is the native lint too, as the browser build is
    // for wasm: clippy's driver compiles the workspace's own crates, so no
    // second pass checks every dependency again (`cargo clippy` took 218 s
    // of a fresh CI run). The tests run the same build: with the same
    // wrapper, nothing is compiled twice. Run beside the tool installs and
    // the web build (cargo locks a target directory per profile and
    // target), it saved nothing on 2 cores: each keeps both busy.
    run(linting(cargo().args([
        "build",
        "--workspace",
        "--all-targets",
    ])))?;
    let jobs = std::env::var("OBLIVION_TEST_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(2);
    let doc_tests = test_runs::Binary {
        key: "doc-tests".into(),
        exe: cargo_program(),
        args: ["test", "--workspace", "--doc", "--", "--test-threads", "1"]
            .map(String::from)
            .to_vec(),
        dir: root(),
        env: LINTING
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .to_vec(),
    };
    test_runs::run_all(
        linting(cargo().args(["test", "--workspace", "--no-run"])),
        vec![doc_tests],
        &[("OBLIVION_PYTHON", &python)],
        jobs,
        &target_dir(),
    )?;
    eprintln!("all checks and tests passed");
    Ok(())
}

/// `cmd`, a cargo build, compiling the workspace's own crates with
/// clippy's driver and every warning an error, as `cargo clippy -- -D
/// warnings` does.
fn linting(cmd: &mut Command) -> &mut Command {
    cmd.envs(LINTING)
}

/// The environment of [`linting`].
const LINTING: [(&str, &str); 2] = [
    ("RUSTC_WORKSPACE_WRAPPER", "clippy-driver"),
    (
        "CLIPPY_ARGS",
        "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__",
    ),
];

/// The layers, as crates that must never depend on others, however
/// indirectly: the scheduling core owns no runtime, database or HTTP
/// server (scheduler/README.md), and the store knows nothing of
/// scheduling or HTTP (store/README.md).
const LAYERS: [(&str, &[&str]); 2] = [
    ("oblivion-scheduler", &["tokio", "sqlx", "axum"]),
    ("oblivion-store", &["oblivion-scheduler", "axum"]),
];

/// Fails if a crate of [`LAYERS`] depends on one it must not, as `cargo
/// tree` shows it.
fn layers_hold() -> Result<()> {
    for (krate, forbidden) in LAYERS {
        let out = cargo()
            .args([
                "tree",
                "-p",
                krate,
                "-e",
                "normal,build",
                "--prefix",
                "none",
            ])
            .output()
            .context("cannot run cargo tree")?;
        if !out.status.success() {
            bail!(
                "cargo tree failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        let mut found: Vec<&str> = tree
            .lines()
            .filter_map(|l| l.split(' ').next())
            .filter(|name| forbidden.contains(name))
            .collect();
        found.dedup();
        if !found.is_empty() {
            bail!("{krate} depends on {found:?}; it must build without them");
        }
        eprintln!("{krate}: no {forbidden:?} in its tree");
    }
    Ok(())
}

/// Fails if the files of a crate of the workspace use one another in a
/// cycle (see `file_cycles`).
fn files_acyclic() -> Result<()> {
    let mut found = Vec::new();
    let mut crates = 0;
    for entry in std::fs::read_dir(root())? {
        let dir = entry?.path();
        if !dir.join("Cargo.toml").exists() || !dir.join("src").is_dir() {
            continue;
        }
        crates += 1;
        for cycle in file_cycles::in_crate(&dir.join("src"))? {
            let name = dir.file_name().unwrap_or_default().to_string_lossy();
            found.push(format!("{name}/src: {}", cycle.join(", ")));
        }
    }
    if !found.is_empty() {
        bail!(
            "files that use one another in a cycle:\n  {}",
            found.join("\n  ")
        );
    }
    eprintln!("{crates} crates: no cycle between the files of any");
    Ok(())
}

/// Version of wasm-bindgen the wasm crates are built against (pinned in
/// their Cargo.toml); the CLI must match it exactly.
const WASM_BINDGEN: &str = "0.2.130";

/// Trunk, which builds the web app (pinned: newer ones need a newer rustc).
const TRUNK: &str = "0.21.14";

/// Installs a cargo-installed tool at `version` unless `bin --version`
/// already says so. Without link-time optimisation and with parallel code
/// generation, whatever the tool's own release profile asks: trunk's asks
/// for fat LTO and one codegen unit, and installs in 359 s instead of 581
/// on 2 cores without them (wasm-bindgen-cli: 145 s instead of 198). The
/// tools' own speed costs CI seconds where their build costs minutes.
/// `opt_level` is the tool's optimisation level (its profile's when
/// `None`).
fn cargo_tool(
    bin: &str,
    krate: &str,
    version: &str,
    extra: &[&str],
    opt_level: Option<&str>,
) -> Result<()> {
    let current = Command::new(bin).arg("--version").output();
    if !current.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(version)) {
        let mut install = cargo();
        install
            .args(["install", krate, "--version", version])
            .args(extra)
            .env("CARGO_PROFILE_RELEASE_LTO", "off")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16");
        if let Some(level) = opt_level {
            install.env("CARGO_PROFILE_RELEASE_OPT_LEVEL", level);
        }
        run(&mut install)?;
    }
    Ok(())
}

/// Builds the web app and the browser worker into `dist/` with Trunk
/// (`index.html`, `Trunk.toml`).
fn web() -> Result<()> {
    wasm_target()?;
    // Without --locked: its lock names a crate version the registry lacks.
    // At its own level: at 1 it built in 139 s instead of 145, and ran 8%
    // slower on the WebGPU worker (7.8 s instead of 7.2).
    cargo_tool("wasm-bindgen", "wasm-bindgen-cli", WASM_BINDGEN, &[], None)?;
    // Trunk only runs cargo and wasm-bindgen, hashes and copies files, and
    // never fetches anything here (`offline`): without its TLS stacks and
    // update check, at optimisation level 1, it builds in 579 s of CPU
    // instead of 726.
    cargo_tool(
        "trunk",
        "trunk",
        TRUNK,
        &["--locked", "--no-default-features"],
        Some("1"),
    )?;
    node_modules()?;
    // Trunk's cargo compiles the workspace's own crates with clippy's
    // driver, as `cargo clippy` does: the release build is also the wasm
    // lint, instead of a second pass over every dependency (it took 9 of
    // CI's minutes). Clippy lints the worker's CPU build too.
    run(linting(&mut Command::new("trunk"))
        .args(["build", "--release"])
        .current_dir(root()))?;
    let dir = root().join("dist");
    let mut cache = dist::Cache::open(target_dir().join("dist-cache"))?;
    for worker in dist::WORKERS {
        let started = Instant::now();
        let wasm_opt = root().join("node_modules/.bin/wasm-opt");
        dist::strip_worker(&dir, worker, &wasm_opt, &mut cache)?;
        println!(
            "{worker}: stripped in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        dist::hash_worker(&dir, worker)?;
    }
    let started = Instant::now();
    for (name, bytes, br, gz) in dist::precompress(&dir, &mut cache)? {
        println!("dist/{name}: {bytes} bytes, {br} brotli, {gz} gzip");
    }
    cache.prune()?;
    println!("precompressed in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn bench(args: &[String]) -> Result<()> {
    run(cargo().args(["build", "--workspace", "--bins"]))?;
    run(cargo()
        .args([
            "run",
            "--quiet",
            "-p",
            "oblivion-e2e",
            "--bin",
            "network-bench",
            "--",
        ])
        .args(args))
}

/// The trust benchmark (see `e2e/src/bin/trust-bench.rs`).
fn trust_bench(args: &[String]) -> Result<()> {
    run(cargo().args(["build", "--workspace", "--bins"]))?;
    run(Command::new(target_dir().join("debug/trust-bench")).args(args))
}

/// The coordinator load benchmark: simulated workers against one SQLite
/// instance and three PostgreSQL instances (see `e2e/src/bin/load-bench.rs`),
/// built in release as a coordinator is deployed.
fn load_bench(args: &[String]) -> Result<()> {
    postgres()?;
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "oblivion-coordinator",
        "-p",
        "oblivion-e2e",
        "--bin",
        "oblivion-coordinator",
        "--bin",
        "load-bench",
    ]))?;
    run(Command::new(target_dir().join("release/load-bench")).args(args))
}

/// The inference benchmark: rows a second per model on the native engine,
/// and the coordinator's CPU to check a shard (see
/// `e2e/src/bin/inference-bench.rs`), built in release.
fn inference_bench(args: &[String]) -> Result<()> {
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "oblivion-e2e",
        "--bin",
        "inference-bench",
    ]))?;
    run(Command::new(target_dir().join("release/inference-bench")).args(args))
}

struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// anvil's development accounts (public test keys, funded only on the
/// local dev chain): #0 creates jobs, #1..#3 are the native workers' payout
/// accounts, #8 deploys the escrow, #9 signs settlements.
const DEV_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];
const DEV_KEY: &str = DEV_KEYS[0];

/// Where the dev chain listens.
const DEV_CHAIN: &str = "127.0.0.1:8545";

/// anvil's own executable from `contracts/node_modules` (the npm launcher
/// in `.bin` would leave it running when stopped).
fn anvil_binary() -> Result<PathBuf> {
    let modules = root().join("contracts/node_modules/@foundry-rs");
    std::fs::read_dir(&modules)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("anvil-"))
        .map(|e| e.path().join("bin/anvil"))
        .find(|p| p.is_file())
        .with_context(|| format!("no anvil under {}", modules.display()))
}

fn wait_listening(addr: &str, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not start listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn dev(args: &[String]) -> Result<()> {
    let mut workers = 3usize;
    let mut listen = "127.0.0.1:8080".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--workers" => workers = it.next().context("--workers needs a number")?.parse()?,
            "--listen" => listen = it.next().context("--listen needs an address")?.clone(),
            other => bail!("unknown option {other}"),
        }
    }
    web()?;
    contracts_node_modules()?;
    run(cargo().args(["build", "--workspace", "--bins"]))?;
    let bin = target_dir().join("debug");
    let url = format!("http://{listen}");
    let data = root().join("data");
    std::fs::create_dir_all(&data)?;
    let mut children = Children(Vec::new());
    // The dev chain: a block a second (deposits gather confirmations), its
    // state kept in ./data beside the coordinator's.
    let (chain_host, chain_port) = DEV_CHAIN.split_once(':').context("chain address")?;
    children.0.push(
        Command::new(anvil_binary()?)
            .args([
                "--host",
                chain_host,
                "--port",
                chain_port,
                "--block-time",
                "1",
            ])
            .arg("--state")
            .arg(data.join("anvil-state.json"))
            .args(["--state-interval", "5", "--silent"])
            .spawn()
            .context("cannot start anvil")?,
    );
    wait_listening(DEV_CHAIN, "anvil")?;
    let rpc = format!("http://{DEV_CHAIN}");
    // The escrow: deployed once; the same deployer's first contract has the
    // same address on every fresh chain, and a kept chain already has it.
    // The file is named for the escrow's interface: a kept chain with an
    // older escrow gets the current one deployed beside it.
    let escrow_file = data.join("escrow-settle-grace-address");
    let escrow = match std::fs::read_to_string(&escrow_file) {
        Ok(a) if !a.trim().is_empty() => a.trim().to_string(),
        _ => {
            let out = Command::new(bin.join("oblivion-coordinator"))
                .args(["deploy-escrow", "--rpc-url", &rpc, "--key", DEV_KEYS[8]])
                // Short enough to watch a contributor-side settlement happen.
                .args(["--settle-grace-secs", "300"])
                .output()
                .context("cannot run deploy-escrow")?;
            if !out.status.success() {
                bail!(
                    "deploying the escrow: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let a = String::from_utf8_lossy(&out.stdout).trim().to_string();
            std::fs::write(&escrow_file, &a)?;
            a
        }
    };
    children.0.push(
        Command::new(bin.join("oblivion-coordinator"))
            .args(["serve", "--listen", &listen, "--data-dir"])
            .arg(&data)
            .arg("--web-dir")
            .arg(root().join("dist"))
            .args(["--chain-rpc-url", &rpc, "--chain-id", "31337"])
            .args(["--escrow-address", &escrow, "--confirmations", "2"])
            .env("OBLIVION_SIGNER_KEY", DEV_KEYS[9])
            .spawn()
            .context("cannot start the coordinator")?,
    );
    wait_listening(&listen, "the coordinator")?;
    for i in 1..=workers {
        let mut worker = Command::new(bin.join("oblivion-worker"));
        worker.args(["--coordinator", &url, "--name", &format!("local-{i}")]);
        // The first three are paid, to dev accounts #1 to #3.
        if let Some(key) = DEV_KEYS[1..=3].get(i - 1) {
            worker.env("OBLIVION_KEY", key);
        }
        children
            .0
            .push(worker.spawn().context("cannot start a worker")?);
    }
    let coordinator = bin.join("oblivion-coordinator");
    eprintln!(
        "\nlocal network up: coordinator {url}, {workers} workers, dev chain {rpc} \
         (id 31337, escrow {escrow}), data in ./data\n\
         dev accounts (anvil's, 10,000 ETH each on this chain only):\n  \
         creator    0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266 key {DEV_KEY}\n  \
         workers    #1 to #3 of anvil's list (rewards of local-1 to local-3)\n  \
         signer     #9 (signs settlements)\n\
         in the browser, add a wallet network for {rpc} (chain 31337) and import the \
         creator's key, then sign in\n\
         open {url}/ and press Start to train in a browser tab too\n\
         sign in with a development key (anvil's first account) and try:\n  \
         export OBLIVION_KEY={DEV_KEY}\n  \
         {c} job submit examples/jobs/mnist-cnn.json --coordinator {url}\n  \
         {c} job status 1 --watch --coordinator {url}\n  \
         {c} job download 1 --format onnx --coordinator {url}\n  \
         a paid job: add \"reward\": {{\"amount\": \"1000000000000000000\", \
         \"deadline_hours\": 24}} to a spec, submit it from the web app's form \
         (it funds it), settle it from its page (or let the escrow's 5-minute grace \
         pass: the coordinator then sends it), claim on Rewards\n  \
         a federated job: pick a CSV under \"Your data\" on two Contribute tabs (or run \
         {w} --coordinator {url} --local-data FILE --data-dir DIR), then choose \
         \"Contributors (federated)\" in the form, with a privacy budget within the \
         contributors' limits (by default ε 10 a job, set on the Contribute page)\n\
         Ctrl-C stops everything.\n",
        c = coordinator.display(),
        w = bin.join("oblivion-worker").display()
    );
    // Wait for Ctrl-C (delivered to the whole process group) or a child's exit.
    loop {
        for c in &mut children.0 {
            if let Some(status) = c.try_wait()? {
                bail!("a process of the local network exited: {status}");
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
