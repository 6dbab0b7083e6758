//! A throwaway PostgreSQL cluster for tests: `initdb` into a scratch
//! directory, started on a free port of 127.0.0.1, stopped (immediate) and
//! removed on drop. The server refuses to run as root, so as root the
//! commands run as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::ScratchDir;

/// Where Debian's `postgresql-15` puts the server programs.
const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running cluster.
pub struct Postgres {
    dir: ScratchDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `pg_ctl start`'s server options.
    options: String,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Runs a server program, as `postgres` when we are root.
fn pg(program: &str, args: &[&str]) -> Result<()> {
    let path = Path::new(BIN).join(program);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&path);
        c
    } else {
        Command::new(&path)
    };
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", path.display()))?;
    if !out.status.success() {
        bail!(
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A port nobody listens on now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Postgres {
    /// Whether the server programs are installed.
    pub fn available() -> bool {
        Path::new(BIN).join("initdb").exists()
    }

    /// Creates and starts a cluster (about 2 s).
    pub fn start() -> Result<Postgres> {
        let dir = ScratchDir::new("pg")?;
        let data: PathBuf = dir.0.join("data");
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&dir.0)
                .status()?
                .success();
            if !ok {
                bail!("cannot hand {} to the postgres user", dir.0.display());
            }
        }
        let data_s = data.to_string_lossy().into_owned();
        pg(
            "initdb",
            &["-D", &data_s, "-A", "trust", "-U", "postgres", "--no-sync"],
        )?;
        let port = free_port()?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
            dir.0.display()
        );
        let cluster = Postgres { dir, port, options };
        cluster.start_server()?;
        Ok(cluster)
    }

    fn data(&self) -> String {
        self.dir.0.join("data").to_string_lossy().into_owned()
    }

    fn start_server(&self) -> Result<()> {
        let log = self.dir.0.join("server.log").to_string_lossy().into_owned();
        pg(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &self.options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        )
    }

    /// Stops the server at once (its connections break, as in a crash).
    pub fn stop(&self) -> Result<()> {
        pg(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )
    }

    /// Starts it again after [`Postgres::stop`] (crash recovery keeps
    /// every committed transaction).
    pub fn restart(&self) -> Result<()> {
        self.start_server()
    }

    /// Creates database `name`; returns its URL.
    pub fn database(&self, name: &str) -> Result<String> {
        let port = self.port.to_string();
        pg(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name],
        )?;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.port
        ))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
