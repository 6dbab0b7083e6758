//! A harness for whole-network tests and benchmarks: real
//! `oblivion-coordinator` and `oblivion-worker` processes on loopback, and
//! a small client of the coordinator's API.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oblivion_protocol::api::{JobView, WorkerView};
use oblivion_protocol::{JobId, LeaseId, WorkerId};

pub mod anvil;
pub mod cluster;
pub mod postgres;
pub mod proxy;
pub mod s3;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Path of a binary of this workspace, built in the same profile as the
/// running test (`target/<profile>/<name>`).
pub fn bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("no parent")?.to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is not built; run `cargo build --workspace --bins` first",
            path.display()
        );
    }
    Ok(path)
}

/// A scratch directory removed on drop.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    /// A fresh, empty directory.
    pub fn new(label: &str) -> Result<ScratchDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("oblivion-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A coordinator process and its workers.
pub struct Network {
    /// Base URL of the coordinator.
    pub url: String,
    /// Its data directory.
    pub data: ScratchDir,
    coordinator: Option<Child>,
    extra: Vec<String>,
    /// Worker processes, in start order.
    pub workers: Vec<Child>,
    database_url: String,
    env: Vec<(&'static str, String)>,
    /// Its PostgreSQL cluster, when it uses one (stopped after it).
    _cluster: Option<postgres::Postgres>,
    /// Its S3-compatible server, when it uses one.
    pub s3: Option<s3::S3Server>,
}

/// Runs each case, an `async fn(Database)`, as two tests: `case::sqlite`
/// and `case::postgres` (the same behaviour on both databases).
#[macro_export]
macro_rules! on_both_databases {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread")]
                async fn sqlite() {
                    super::$case($crate::Database::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread")]
                async fn postgres() {
                    super::$case($crate::Database::Postgres).await;
                }
            }
        )*
    };
}

/// Which database a test network's coordinator uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Database {
    /// SQLite in the data directory (the default).
    #[default]
    Sqlite,
    /// A throwaway PostgreSQL cluster of its own.
    Postgres,
}

/// The storage coordinators of a test share: the database (and its
/// PostgreSQL cluster, if any) and the artifact store (and its S3 server).
pub(crate) struct Backing {
    pub(crate) postgres: Option<postgres::Postgres>,
    pub(crate) database_url: String,
    pub(crate) s3: Option<s3::S3Server>,
    /// What a coordinator needs in its environment (S3 credentials).
    pub(crate) env: Vec<(&'static str, String)>,
    /// Its serve flags (`--database-url`, `--artifacts-url`).
    pub(crate) flags: Vec<String>,
}

impl Backing {
    /// Starts what `database` and `storage` need; SQLite lives in `data`.
    pub(crate) fn start(database: Database, storage: Storage, data: &Path) -> Result<Backing> {
        let (postgres, database_url) = match database {
            Database::Sqlite => (
                None,
                format!("sqlite://{}", data.join("oblivion.db").display()),
            ),
            Database::Postgres => {
                let cluster = postgres::Postgres::start()?;
                let url = cluster.database("oblivion")?;
                (Some(cluster), url)
            }
        };
        let mut flags = vec!["--database-url".to_string(), database_url.clone()];
        let (s3, env) = match storage {
            Storage::Dir => (None, Vec::new()),
            Storage::SharedDir => {
                let dir = data.join("artifacts").display().to_string();
                flags.extend(["--artifacts-url".to_string(), dir]);
                (None, Vec::new())
            }
            Storage::S3 => {
                let server = s3::S3Server::start()?;
                server.bucket("oblivion")?;
                flags.extend(["--artifacts-url".to_string(), "s3://oblivion/net".into()]);
                let env = server.env();
                (Some(server), env)
            }
        };
        Ok(Backing {
            postgres,
            database_url,
            s3,
            env,
            flags,
        })
    }
}

/// Where a test network's artifacts live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Storage {
    /// The data directory (the default).
    #[default]
    Dir,
    /// Bucket `oblivion` of a throwaway S3-compatible server of its own.
    S3,
    /// One directory that every instance of a cluster shares (as a network
    /// file system would be shared).
    SharedDir,
}

pub(crate) fn start_coordinator(
    data: &Path,
    listen: &str,
    extra: &[String],
    env: &[(&'static str, String)],
) -> Result<(Child, String)> {
    let mut child = Command::new(bin("oblivion-coordinator")?)
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data)
        .args(extra)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .env("RUST_LOG", "oblivion_coordinator=warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http://"))
        .with_context(|| format!("coordinator did not start: {line:?}"))?
        .to_string();
    Ok((child, url))
}

impl Network {
    /// Starts a coordinator on a free port with `extra` serve flags.
    pub fn start(extra: &[&str]) -> Result<Network> {
        Network::start_on(Database::Sqlite, extra)
    }

    /// Starts a coordinator on `database`, on a free port with `extra`
    /// serve flags.
    pub fn start_on(database: Database, extra: &[&str]) -> Result<Network> {
        Network::start_with(database, Storage::Dir, extra)
    }

    /// Starts a coordinator on `database` and `storage`, on a free port
    /// with `extra` serve flags.
    pub fn start_with(database: Database, storage: Storage, extra: &[&str]) -> Result<Network> {
        let data = ScratchDir::new("net")?;
        let backing = Backing::start(database, storage, &data.0)?;
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        extra.extend(backing.flags.iter().cloned());
        let (child, url) = start_coordinator(&data.0, "127.0.0.1:0", &extra, &backing.env)?;
        Ok(Network {
            url,
            data,
            coordinator: Some(child),
            extra,
            workers: Vec::new(),
            database_url: backing.database_url,
            env: backing.env,
            _cluster: backing.postgres,
            s3: backing.s3,
        })
    }

    /// Starts a native worker process (anonymous: unpaid).
    pub fn add_worker(&mut self, name: &str) -> Result<()> {
        self.add_paid_worker(name, None)
    }

    /// Starts a native worker process with more flags (`--max-cpu 10`:
    /// one ten times slower than the rest).
    pub fn add_worker_with_flags(&mut self, name: &str, flags: &[&str]) -> Result<()> {
        self.spawn_worker(name, None, &[], flags)
    }

    /// Starts a native worker process signed in as `key`'s account (its
    /// rewards go there).
    pub fn add_paid_worker(&mut self, name: &str, key: Option<&str>) -> Result<()> {
        self.spawn_worker(name, key, &[], &[])
    }

    /// Starts a native worker process holding local data for federated
    /// jobs (`--local-data` for each file), with the default privacy
    /// limits.
    pub fn add_worker_with_data(&mut self, name: &str, files: &[&Path]) -> Result<()> {
        self.spawn_worker(name, None, files, &[])
    }

    /// [`Network::add_worker_with_data`], with more flags (privacy limits).
    pub fn add_contributor(&mut self, name: &str, files: &[&Path], flags: &[&str]) -> Result<()> {
        self.spawn_worker(name, None, files, flags)
    }

    /// Worker `name`'s data directory (its privacy settings and ledger).
    pub fn worker_dir(&self, name: &str) -> PathBuf {
        self.data.0.join("workers").join(name)
    }

    fn spawn_worker(
        &mut self,
        name: &str,
        key: Option<&str>,
        files: &[&Path],
        flags: &[&str],
    ) -> Result<()> {
        let mut command = Command::new(bin("oblivion-worker")?);
        command
            .args(["--coordinator", &self.url, "--name", name])
            .arg("--data-dir")
            .arg(self.worker_dir(name))
            .args(flags)
            .env("RUST_LOG", "oblivion_worker=warn")
            .env_remove("OBLIVION_KEY");
        if let Some(key) = key {
            command.env("OBLIVION_KEY", key);
        }
        for file in files {
            command.arg("--local-data").arg(file);
        }
        self.workers.push(command.spawn()?);
        Ok(())
    }

    /// Kills worker `i` abruptly (SIGKILL: no goodbye, as when a machine dies).
    pub fn kill_worker(&mut self, i: usize) -> Result<()> {
        self.workers[i].kill()?;
        self.workers[i].wait()?;
        Ok(())
    }

    /// Stops the coordinator (SIGKILL) and starts it again on the same
    /// address and data directory.
    pub fn restart_coordinator(&mut self) -> Result<()> {
        if let Some(mut c) = self.coordinator.take() {
            c.kill()?;
            c.wait()?;
        }
        let listen = self.url.trim_start_matches("http://").to_string();
        let (child, url) = start_coordinator(&self.data.0, &listen, &self.extra, &self.env)?;
        self.coordinator = Some(child);
        self.url = url;
        Ok(())
    }

    /// The coordinator's process id.
    pub fn coordinator_pid(&self) -> Option<u32> {
        self.coordinator.as_ref().map(Child::id)
    }

    /// Its PostgreSQL cluster, when it runs on one.
    pub fn postgres(&self) -> Option<&postgres::Postgres> {
        self._cluster.as_ref()
    }

    /// The coordinator's database.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// An API client for this network, signed in (on first use) as the
    /// job creator's account [`CREATOR_KEY`].
    pub fn api(&self) -> Api {
        Api::new(&self.url, Some(CREATOR_KEY))
    }

    /// An API client signed in as the account of `key`.
    pub fn api_as(&self, key: &str) -> Api {
        Api::new(&self.url, Some(key))
    }

    /// An anonymous API client.
    pub fn anonymous(&self) -> Api {
        Api::new(&self.url, None)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for c in self.workers.iter_mut().chain(self.coordinator.as_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A reply: status code and JSON body.
pub type Reply = (u16, serde_json::Value);

/// anvil's first development account: creates jobs in the tests (a
/// well-known test key, never funded outside a dev chain).
pub const CREATOR_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// anvil's second development account: someone else.
pub const OTHER_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// Client of the coordinator's REST API, anonymous or signed in as one
/// account (Sign-In with Ethereum, before its first request).
#[derive(Clone)]
pub struct Api {
    /// Base URL.
    pub url: String,
    /// HTTP client (keeps the session cookie).
    pub http: reqwest::Client,
    key: Option<oblivion_chain::Key>,
    signed_in: std::sync::Arc<tokio::sync::OnceCell<()>>,
    cookies: std::sync::Arc<reqwest::cookie::Jar>,
}

async fn reply(r: reqwest::Response) -> Result<Reply> {
    let status = r.status().as_u16();
    let body = r.bytes().await?;
    Ok((
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    ))
}

impl Api {
    /// A client of the coordinator at `url`, signed in as `key` if given.
    pub fn new(url: &str, key: Option<&str>) -> Api {
        let cookies = std::sync::Arc::new(reqwest::cookie::Jar::default());
        Api {
            url: url.to_string(),
            http: reqwest::Client::builder()
                .cookie_provider(cookies.clone())
                .build()
                .unwrap_or_default(),
            key: key.map(|k| oblivion_chain::Key::parse(k).expect("a valid test key")),
            signed_in: Default::default(),
            cookies,
        }
    }

    /// The `Cookie` header this client sends (its session), after signing in.
    pub async fn cookie(&self) -> Result<Option<String>> {
        use reqwest::cookie::CookieStore;
        self.session().await?;
        Ok(self
            .cookies
            .cookies(&self.url.parse()?)
            .and_then(|v| v.to_str().ok().map(str::to_string)))
    }

    /// The signed-in account (lower-case hex), if any.
    pub fn account(&self) -> Option<String> {
        self.key.as_ref().map(|k| k.address().to_lowercase())
    }

    /// Signs in once, before the first request.
    async fn session(&self) -> Result<()> {
        if let Some(key) = &self.key {
            self.signed_in
                .get_or_try_init(|| async {
                    oblivion_chain::sign_in_over_http(&self.http, &self.url, key)
                        .await
                        .map(|_| ())
                        .map_err(anyhow::Error::msg)
                })
                .await?;
        }
        Ok(())
    }

    /// POSTs raw bytes.
    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> Result<Reply> {
        self.session().await?;
        reply(
            self.http
                .post(format!("{}{path}", self.url))
                .body(body)
                .send()
                .await?,
        )
        .await
    }

    /// GETs JSON.
    pub async fn get(&self, path: &str) -> Result<Reply> {
        self.session().await?;
        reply(self.http.get(format!("{}{path}", self.url)).send().await?).await
    }

    /// GETs raw bytes; fails on a non-2xx status. A GET is retried once
    /// when the connection fails under it: a pooled connection the server
    /// has just closed fails the request that reused it.
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        self.session().await?;
        let url = format!("{}{path}", self.url);
        let r = match self.http.get(&url).send().await {
            Ok(r) => r,
            Err(e) if e.is_request() || e.is_connect() => self.http.get(&url).send().await?,
            Err(e) => return Err(e.into()),
        };
        if !r.status().is_success() {
            bail!("GET {path}: {}", r.status());
        }
        Ok(r.bytes().await?.to_vec())
    }

    /// Submits a spec; returns the job id.
    pub async fn submit(&self, spec: &serde_json::Value) -> Result<JobId> {
        let (status, body) = self.post("/api/jobs", spec.to_string()).await?;
        if status != 201 {
            bail!("submit answered {status}: {body}");
        }
        body["id"].as_u64().map(JobId).context("no id")
    }

    /// A job's view.
    pub async fn job(&self, id: JobId) -> Result<JobView> {
        let (status, body) = self.get(&format!("/api/jobs/{id}")).await?;
        if status != 200 {
            bail!("job {id}: {status} {body}");
        }
        Ok(serde_json::from_value(body)?)
    }

    /// Connected workers.
    pub async fn workers(&self) -> Result<Vec<WorkerView>> {
        Ok(serde_json::from_value(self.get("/api/workers").await?.1)?)
    }

    /// One connected worker.
    pub async fn worker(&self, id: WorkerId) -> Result<WorkerView> {
        self.workers()
            .await?
            .into_iter()
            .find(|w| w.id == id)
            .with_context(|| format!("worker {id} is not connected"))
    }

    /// Polls until the job ends or `timeout` passes; `each` sees every poll.
    pub async fn wait_finished(
        &self,
        id: JobId,
        timeout: Duration,
        mut each: impl FnMut(&JobView),
    ) -> Result<JobView> {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.job(id).await?;
            each(&job);
            if job.status.is_finished() {
                return Ok(job);
            }
            if Instant::now() > deadline {
                bail!("job {id} did not finish in {timeout:?}: {job:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Submits the example spec `name` and waits until it ends, which must
    /// be completed; its id and its view.
    pub async fn train_example(&self, name: &str, timeout: Duration) -> Result<(JobId, JobView)> {
        let id = self.submit(&example(name)?).await?;
        let job = self.wait_finished(id, timeout, |_| {}).await?;
        if job.status.as_str() != "completed" {
            bail!("job {id} ended {}: {job:?}", job.status.as_str());
        }
        Ok((id, job))
    }
}

/// Runs `tests/python/<script>` on `dir` for rows of `shape` (`1,28,28`)
/// and `classes` classes, with the Python `OBLIVION_PYTHON` names (one
/// with onnxruntime: `cargo xtask test` sets it); its report, or a failed
/// assertion showing it.
pub fn python_check(script: &str, dir: &ScratchDir, shape: &str, classes: usize) -> String {
    let python = std::env::var("OBLIVION_PYTHON")
        .expect("OBLIVION_PYTHON must name a Python with onnxruntime (cargo xtask test sets it)");
    let out = std::process::Command::new(python)
        .arg(root().join("tests/python").join(script))
        .arg(&dir.0)
        .args(["--input-shape", shape, "--classes", &classes.to_string()])
        .output()
        .expect("running Python");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

/// Saves in `dir` what `tests/python/check_outputs.py` compares: the ONNX
/// model of training job `model` and the outputs (`.npy` and CSV) of
/// inference job `run`.
pub async fn save_outputs(api: &Api, model: JobId, run: JobId, dir: &ScratchDir) -> Result<()> {
    let onnx = api
        .get_bytes(&format!("/api/jobs/{model}/model?format=onnx"))
        .await?;
    std::fs::write(dir.0.join("model.onnx"), onnx)?;
    for format in ["npy", "csv"] {
        let bytes = api
            .get_bytes(&format!("/api/jobs/{run}/outputs?format={format}"))
            .await?;
        std::fs::write(dir.0.join(format!("outputs.{format}")), bytes)?;
    }
    Ok(())
}

/// A process's peak resident memory (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/PID/status")
}

/// Iris split three ways for federated tests, written under `dir` as
/// `validation.csv` (every third row: the job creator's), `alice.csv`
/// (the rest of classes 0 and half of 1) and `bob.csv` (class 2 and the
/// other half of 1): neither contributor holds every class.
pub fn split_iris_federated(dir: &Path) -> Result<[PathBuf; 3]> {
    let text = std::fs::read_to_string(root().join("../shared/datasets/tabular/iris.csv"))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().context("iris.csv is empty")?.to_string();
    let (mut val, mut a, mut b) = (vec![header.clone()], vec![header.clone()], vec![header]);
    let mut ones = 0;
    for (i, line) in lines.enumerate() {
        let label = line.rsplit(',').next().unwrap_or_default().trim();
        if label == "1" && i % 3 != 0 {
            ones += 1;
        }
        if i % 3 == 0 {
            val.push(line.to_string());
        } else if label == "0" || (label == "1" && ones % 2 == 0) {
            a.push(line.to_string());
        } else {
            b.push(line.to_string());
        }
    }
    let paths = ["validation.csv", "alice.csv", "bob.csv"].map(|n| dir.join(n));
    for (path, rows) in paths.iter().zip([val, a, b]) {
        std::fs::write(path, rows.join("\n") + "\n")?;
    }
    Ok(paths)
}

/// Reads an example spec from `examples/jobs/`.
pub fn example(name: &str) -> Result<serde_json::Value> {
    let path = root().join("examples/jobs").join(name);
    Ok(serde_json::from_str(&std::fs::read_to_string(&path)?)?)
}

/// A worker speaking the protocol by hand, for tests that need to send
/// exactly the update they want (including bad ones).
pub struct ScriptedWorker {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// Its id.
    pub id: WorkerId,
    /// Its token.
    pub token: String,
}

impl ScriptedWorker {
    /// Connects anonymously and says hello.
    pub async fn connect(url: &str, name: &str) -> Result<ScriptedWorker> {
        Self::connect_as(url, name, None, None).await
    }

    /// Connects with a session cookie (see [`Api::cookie`]), naming a payout
    /// address, and says hello.
    pub async fn connect_as(
        url: &str,
        name: &str,
        cookie: Option<&str>,
        payout_address: Option<&str>,
    ) -> Result<ScriptedWorker> {
        Self::connect_claiming(url, name, cookie, payout_address, 1.0).await
    }

    /// [`ScriptedWorker::connect_as`], claiming a benchmark score (a liar
    /// claims to be fast, to be picked first).
    pub async fn connect_claiming(
        url: &str,
        name: &str,
        cookie: Option<&str>,
        payout_address: Option<&str>,
        benchmark: f64,
    ) -> Result<ScriptedWorker> {
        Self::connect_with(url, name, cookie, payout_address, benchmark, None).await
    }

    /// Connects anonymously offering local data of this shape for
    /// federated jobs (it holds none: it only says so).
    pub async fn connect_offering(
        url: &str,
        name: &str,
        offer: oblivion_protocol::wire::LocalDataOffer,
    ) -> Result<ScriptedWorker> {
        Self::connect_with(url, name, None, None, 1.0, Some(offer)).await
    }

    async fn connect_with(
        url: &str,
        name: &str,
        cookie: Option<&str>,
        payout_address: Option<&str>,
        benchmark: f64,
        local_data: Option<oblivion_protocol::wire::LocalDataOffer>,
    ) -> Result<ScriptedWorker> {
        use futures_util::{SinkExt, StreamExt};
        use oblivion_protocol::wire::{ClientKind, CoordinatorMessage, DeviceInfo, Endpoint};
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = Endpoint::new(url).connect_url().into_client_request()?;
        if let Some(cookie) = cookie {
            request.headers_mut().insert("cookie", cookie.parse()?);
        }
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
        let hello = oblivion_worker_engine::session::Profile {
            name: name.into(),
            client: ClientKind::Native,
            device: DeviceInfo {
                backend: "cpu".into(),
                name: "scripted".into(),
                detail: String::new(),
            },
            benchmark,
            payout_address: payout_address.map(str::to_string),
            max_leases: None,
            local_data,
        }
        .hello();
        socket
            .send(tokio_tungstenite::tungstenite::Message::Text(
                serde_json::to_string(&hello)?.into(),
            ))
            .await?;
        let reply = socket.next().await.context("closed")??;
        match serde_json::from_str(reply.to_text()?)? {
            CoordinatorMessage::Welcome {
                worker_id, token, ..
            } => Ok(ScriptedWorker {
                socket,
                id: worker_id,
                token,
            }),
            other => bail!("expected a welcome, got {other:?}"),
        }
    }

    /// Waits for the next message from the coordinator.
    pub async fn next_message(&mut self) -> Result<oblivion_protocol::wire::CoordinatorMessage> {
        use futures_util::StreamExt;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await
                .context("no message within 30 s")?
                .context("connection closed")??;
            if let Ok(text) = msg.to_text()
                && !text.is_empty()
            {
                return Ok(serde_json::from_str(text)?);
            }
        }
    }

    /// Sends a heartbeat for `leases` (progress 0.5 each).
    pub async fn heartbeat(&mut self, leases: &[LeaseId]) -> Result<()> {
        use futures_util::SinkExt;
        use oblivion_protocol::wire::{LeaseProgress, WorkerMessage};
        let msg = WorkerMessage::Heartbeat {
            leases: leases
                .iter()
                .map(|&lease_id| LeaseProgress {
                    lease_id,
                    progress: 0.5,
                })
                .collect(),
        };
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Text(
                serde_json::to_string(&msg)?.into(),
            ))
            .await?;
        Ok(())
    }

    /// Gives lease `lease` back, as a worker that cannot train it does.
    pub async fn return_lease(&mut self, lease: LeaseId) -> Result<()> {
        use futures_util::SinkExt;
        use oblivion_protocol::wire::WorkerMessage;
        let msg = WorkerMessage::ReturnLease {
            lease_id: lease,
            reason: "returned".into(),
            decline_job: false,
        };
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Text(
                serde_json::to_string(&msg)?.into(),
            ))
            .await?;
        Ok(())
    }

    /// Waits for the next lease (skipping other messages).
    pub async fn next_lease(&mut self) -> Result<oblivion_protocol::wire::LeaseTask> {
        use oblivion_protocol::wire::CoordinatorMessage;
        loop {
            if let CoordinatorMessage::Lease(task) = self.next_message().await? {
                return Ok(task);
            }
        }
    }

    /// Fetches artifact `blob` as this worker (its token shows which of
    /// its leases needs it); fails on a non-2xx status.
    pub async fn fetch(&self, api: &Api, blob: oblivion_protocol::BlobId) -> Result<Vec<u8>> {
        let r = api
            .http
            .get(oblivion_protocol::wire::Endpoint::new(&api.url).artifact_url(blob))
            .header(oblivion_protocol::wire::WORKER_TOKEN_HEADER, &self.token)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("GET artifact {blob}: {}", r.status());
        }
        Ok(r.bytes().await?.to_vec())
    }

    /// Posts an update body for `lease`.
    pub async fn post_update(&self, api: &Api, lease: LeaseId, body: Vec<u8>) -> Result<Reply> {
        reply(
            api.http
                .post(oblivion_protocol::wire::Endpoint::new(&api.url).update_url(lease))
                .header(oblivion_protocol::wire::WORKER_TOKEN_HEADER, &self.token)
                .body(body)
                .send()
                .await?,
        )
        .await
    }
}

/// `p` with each value `v` at flat index `i` (from 1) replaced by `f(i, v)`.
pub fn map_params(
    p: &oblivion_ml::params::Params,
    f: impl Fn(usize, f32) -> f32,
) -> oblivion_ml::params::Params {
    let mut index = 0;
    oblivion_ml::params::Params {
        tensors: p
            .tensors
            .iter()
            .map(|t| {
                let values = t
                    .values
                    .iter()
                    .map(|v| {
                        index += 1;
                        f(index, *v)
                    })
                    .collect();
                oblivion_ml::params::NamedTensor {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    values,
                }
            })
            .collect(),
    }
}

/// A standard normal value for `index` (Box-Muller over a hash).
pub fn gaussian(index: usize) -> f32 {
    let hash = |x: u64| {
        let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let (u, v) = (
        hash(2 * index as u64).max(1e-12),
        hash(2 * index as u64 + 1),
    );
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

/// A small update for `task` that screening takes as honest work: a
/// shared direction (every value positive) plus a pattern of its own for
/// the shard and round, so that the updates of one round agree without
/// being copies of each other.
pub fn honest_update(task: &oblivion_protocol::wire::LeaseTask) -> Vec<u8> {
    let seed = u64::from(task.round) << 32 | u64::from(task.shard);
    shaped_update(task, &[("train_loss", "0.5")], |i| {
        // SplitMix64 of (seed, index): a sign for each value.
        let mut z = (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i as u64)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let sign = if (z ^ (z >> 31)) & 1 == 1 { 1.0 } else { -1.0 };
        1e-4 * (1.0 + 0.5 * sign)
    })
}

/// An update for `task` whose every value is `value` (0: no change).
pub fn uniform_update(task: &oblivion_protocol::wire::LeaseTask, value: f32) -> Vec<u8> {
    update_with_metadata(task, value, &[("train_loss", "0.5")])
}

/// An update for `task` whose every value is `value`, carrying `metadata`.
pub fn update_with_metadata(
    task: &oblivion_protocol::wire::LeaseTask,
    value: f32,
    metadata: &[(&str, &str)],
) -> Vec<u8> {
    shaped_update(task, metadata, |_| value)
}

/// An update for `task` whose value at each flat index is `value(index)`,
/// carrying `metadata`.
pub fn shaped_update(
    task: &oblivion_protocol::wire::LeaseTask,
    metadata: &[(&str, &str)],
    value: impl Fn(usize) -> f32,
) -> Vec<u8> {
    use oblivion_ml::params::{NamedTensor, Params};
    let arch = oblivion_ml::model::Architecture::new(
        task.model.clone(),
        task.input_shape.clone(),
        task.classes,
    )
    .expect("task describes a valid model");
    let mut index = 0;
    let params = Params {
        tensors: arch
            .param_shapes()
            .into_iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let values = (index..index + n).map(&value).collect();
                index += n;
                NamedTensor {
                    values,
                    name,
                    shape,
                }
            })
            .collect(),
    };
    let meta = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    params.to_compressed(Some(meta))
}
