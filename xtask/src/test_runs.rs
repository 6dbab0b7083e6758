//! Runs the workspace's tests: every test binary cargo builds, several at
//! a time, the longest first.
//!
//! `cargo test` runs its binaries one after another, and many of ours
//! spend their time waiting on other processes (coordinators, workers, a
//! browser, a chain) more than computing. Each binary still takes its tests
//! one at a time (`--test-threads 1`): some set process-wide state, and
//! the end-to-end ones each start a whole network. The order comes from
//! the times of the last run, kept in the target directory; a binary never
//! timed goes first, the two that keep every core busy on their own
//! never run beside each other ([`HEAVY`]), and those that compare times
//! run alone ([`ALONE`]). A binary that outlives
//! [`BINARY_LIMIT`] is killed and counts as failed, so that a hang costs
//! minutes, not the whole CI run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The longest one test binary may run.
const BINARY_LIMIT: Duration = Duration::from_secs(20 * 60);

/// One test binary, as cargo built it, or another command that tests.
pub struct Binary {
    /// `package/kind/target`, unique in the workspace.
    pub key: String,
    pub exe: PathBuf,
    pub args: Vec<String>,
    /// The package's directory: cargo runs each test binary there.
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

/// What running one binary came to.
struct Outcome {
    key: String,
    passed: bool,
    seconds: f64,
    log: PathBuf,
}

/// Builds the test binaries with `build` (a `cargo test --no-run`
/// command) and returns them as cargo reports them.
fn build(build: &mut Command) -> Result<Vec<Binary>> {
    let out = build
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {build:?}"))?;
    if !out.status.success() {
        bail!("{build:?} failed with {}", out.status);
    }
    let mut binaries = Vec::new();
    for line in out.stdout.split(|&b| b == b'\n') {
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(exe), Some(true)) = (
            message["executable"].as_str(),
            message["profile"]["test"].as_bool(),
        ) else {
            continue;
        };
        let manifest = PathBuf::from(message["manifest_path"].as_str().unwrap_or_default());
        let package = message["package_id"]
            .as_str()
            .and_then(|id| id.rsplit('/').next())
            .and_then(|tail| tail.split(['#', '@']).next())
            .unwrap_or_default()
            .to_string();
        let name = message["target"]["name"].as_str().unwrap_or_default();
        let kind = message["target"]["kind"][0].as_str().unwrap_or_default();
        let binary = Binary {
            key: format!("{package}/{kind}/{name}"),
            exe: PathBuf::from(exe),
            args: vec!["--test-threads".into(), "1".into()],
            dir: manifest.parent().map(Path::to_path_buf).unwrap_or_default(),
            env: Vec::new(),
        };
        binaries.push(binary);
    }
    if binaries.is_empty() {
        bail!("cargo built no test binary");
    }
    Ok(binaries)
}

/// The seconds each binary took when last run.
fn load_times(path: &Path) -> HashMap<String, f64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (key, seconds) = l.split_once('\t')?;
            Some((key.to_string(), seconds.parse().ok()?))
        })
        .collect()
}

/// Writes `times`, updated with the binaries that passed, to `path`.
fn save_times(path: &Path, mut times: HashMap<String, f64>, outcomes: &[Outcome]) -> Result<()> {
    for o in outcomes.iter().filter(|o| o.passed) {
        times.insert(o.key.clone(), o.seconds);
    }
    let mut lines: Vec<String> = times.iter().map(|(k, s)| format!("{k}\t{s:.1}")).collect();
    lines.sort();
    std::fs::write(path, lines.join("\n") + "\n")?;
    Ok(())
}

/// Runs one binary to its end or [`BINARY_LIMIT`], its output to `log`.
fn run_one(binary: &Binary, env: &[(&str, &Path)], log: PathBuf) -> Outcome {
    let started = Instant::now();
    let passed = (|| -> Result<bool> {
        let file = std::fs::File::create(&log)?;
        let mut child = Command::new(&binary.exe)
            .args(&binary.args)
            .current_dir(&binary.dir)
            .envs(env.iter().copied())
            .envs(binary.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot run {}", binary.exe.display()))?;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            if started.elapsed() > BINARY_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                use std::io::Write;
                let mut file = std::fs::OpenOptions::new().append(true).open(&log)?;
                writeln!(file, "\nkilled: still running after {BINARY_LIMIT:?}")?;
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })();
    let passed = match passed {
        Ok(passed) => passed,
        Err(e) => {
            let _ = std::fs::write(&log, format!("{e:#}\n"));
            false
        }
    };
    Outcome {
        key: binary.key.clone(),
        passed,
        seconds: started.elapsed().as_secs_f64(),
        log,
    }
}

/// The binaries that keep both cores of a 2-core machine busy on their
/// own, each training the CNN example end to end: measured alone, `chaos`
/// took 435 s of CPU in 266 s and `training` 229 s in 122 s. They never
/// run beside each other: side by side, `chaos` took 594 s, since its
/// workers' 1 s heartbeats and 3 s leases then lapse and work is redone.
/// Beside the others, which mostly wait on processes, both keep their pace.
const HEAVY: [&str; 2] = ["e2e/test/chaos", "e2e/test/training"];

fn is_heavy(binary: &Binary) -> bool {
    HEAVY.contains(&binary.key.as_str())
}

/// The binaries that compare times, or race a server's answer, and so run
/// with nothing beside them: `stragglers` compares rounds with and without
/// a slow worker (1.36x against a bound of 1.3 once, beside `chaos`), and
/// `attacks` holds 400 uploads open while rounds run.
const ALONE: [&str; 2] = ["e2e/test/stragglers", "e2e/test/attacks"];

fn is_alone(binary: &Binary) -> bool {
    ALONE.contains(&binary.key.as_str())
}

/// The binaries not yet started, in the order to start them, and what
/// runs now.
struct Queue<'a> {
    waiting: std::collections::VecDeque<&'a Binary>,
    running: usize,
    heavy_running: bool,
    alone_running: bool,
}

enum Take<'a> {
    Run(&'a Binary),
    /// Only binaries that must not start yet are left.
    Wait,
    Done,
}

impl<'a> Queue<'a> {
    /// The first waiting binary that may start now.
    fn take(&mut self) -> Take<'a> {
        if self.waiting.is_empty() {
            return Take::Done;
        }
        if self.alone_running {
            return Take::Wait;
        }
        let may_start = |b: &Binary| {
            if is_alone(b) {
                self.running == 0
            } else {
                !(self.heavy_running && is_heavy(b))
            }
        };
        let Some(i) = self.waiting.iter().position(|b| may_start(b)) else {
            return Take::Wait;
        };
        let Some(binary) = self.waiting.remove(i) else {
            return Take::Wait;
        };
        self.running += 1;
        self.heavy_running |= is_heavy(binary);
        self.alone_running |= is_alone(binary);
        Take::Run(binary)
    }

    /// `binary` has ended.
    fn ended(&mut self, binary: &Binary) {
        self.running -= 1;
        if is_heavy(binary) {
            self.heavy_running = false;
        }
        if is_alone(binary) {
            self.alone_running = false;
        }
    }
}

/// Builds the test binaries with `build_cmd`, then runs them and `more`
/// `jobs` at a time with `env`; logs and times go under `target`. Fails if
/// any test failed, after all have run, printing the failed ones' whole
/// output.
pub fn run_all(
    build_cmd: &mut Command,
    more: Vec<Binary>,
    env: &[(&str, &Path)],
    jobs: usize,
    target: &Path,
) -> Result<()> {
    let mut binaries = build(build_cmd)?;
    binaries.extend(more);
    let logs = target.join("test-logs");
    std::fs::create_dir_all(&logs)?;
    let times_path = target.join("test-times.tsv");
    let times = load_times(&times_path);
    // Longest first; never timed counts as longest.
    let expected = |b: &Binary| times.get(&b.key).copied().unwrap_or(f64::INFINITY);
    binaries.sort_by(|a, b| expected(b).total_cmp(&expected(a)));
    eprintln!("running {} test binaries, {jobs} at a time", binaries.len());
    let started = Instant::now();
    let queue = Mutex::new(Queue {
        waiting: binaries.iter().collect(),
        running: 0,
        heavy_running: false,
        alone_running: false,
    });
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| {
                loop {
                    let next = queue.lock().map(|mut q| q.take());
                    let binary = match next {
                        Ok(Take::Run(binary)) => binary,
                        Ok(Take::Wait) => {
                            std::thread::sleep(Duration::from_millis(200));
                            continue;
                        }
                        Ok(Take::Done) | Err(_) => break,
                    };
                    let log = logs.join(binary.key.replace('/', "."));
                    let outcome = run_one(binary, env, log);
                    if let Ok(mut q) = queue.lock() {
                        q.ended(binary);
                    }
                    eprintln!(
                        "{} {} ({:.1} s)",
                        if outcome.passed { "ok    " } else { "FAILED" },
                        outcome.key,
                        outcome.seconds
                    );
                    if let Ok(mut all) = outcomes.lock() {
                        all.push(outcome);
                    }
                }
            });
        }
    });
    let outcomes = outcomes.into_inner().unwrap_or_default();
    save_times(&times_path, times, &outcomes)?;
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.passed).collect();
    for o in &failed {
        eprintln!("\n===== {} =====", o.key);
        eprintln!(
            "{}",
            std::fs::read_to_string(&o.log).unwrap_or_else(|e| format!("(no log: {e})"))
        );
    }
    let busy: f64 = outcomes.iter().map(|o| o.seconds).sum();
    eprintln!(
        "test binaries: {} passed, {} failed, in {:.0} s ({busy:.0} s of running binaries)",
        outcomes.len() - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        let keys: Vec<&str> = failed.iter().map(|o| o.key.as_str()).collect();
        bail!("tests failed in {keys:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(key: &str) -> Binary {
        Binary {
            key: key.into(),
            exe: PathBuf::new(),
            args: Vec::new(),
            dir: PathBuf::new(),
            env: Vec::new(),
        }
    }

    fn key(take: Take) -> String {
        match take {
            Take::Run(b) => b.key.clone(),
            Take::Wait => "wait".into(),
            Take::Done => "done".into(),
        }
    }

    #[test]
    fn heavy_binaries_never_run_side_by_side() {
        let order = [binary(HEAVY[0]), binary(HEAVY[1]), binary("light")];
        let mut queue = Queue {
            waiting: order.iter().collect(),
            running: 0,
            heavy_running: false,
            alone_running: false,
        };
        assert_eq!(key(queue.take()), HEAVY[0]);
        // The second heavy one waits; the light one goes past it.
        assert_eq!(key(queue.take()), "light");
        assert_eq!(key(queue.take()), "wait");
        queue.ended(&order[0]);
        assert_eq!(key(queue.take()), HEAVY[1]);
        assert_eq!(key(queue.take()), "done");
    }

    #[test]
    fn a_binary_that_times_things_runs_alone() {
        let order = [binary("light"), binary(ALONE[0]), binary("other")];
        let mut queue = Queue {
            waiting: order.iter().collect(),
            running: 0,
            heavy_running: false,
            alone_running: false,
        };
        assert_eq!(key(queue.take()), "light");
        // Not while another runs; the next one goes past it.
        assert_eq!(key(queue.take()), "other");
        assert_eq!(key(queue.take()), "wait");
        queue.ended(&order[0]);
        assert_eq!(key(queue.take()), "wait");
        queue.ended(&order[2]);
        assert_eq!(key(queue.take()), ALONE[0]);
        queue.ended(&order[1]);
        assert_eq!(key(queue.take()), "done");
    }
}
