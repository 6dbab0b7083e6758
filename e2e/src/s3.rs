//! A throwaway S3-compatible server for tests: moto's server mode (from
//! PyPI, installed in the test Python environment with `moto[server]`), on
//! a free port of 127.0.0.1, killed on drop. moto is used because it
//! installs here in seconds from a wheel and implements the S3 calls the
//! coordinator makes (HEAD, GET, PUT, DELETE of objects) with the usual
//! request signing; it keeps objects in memory.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::postgres::free_port;

/// A running S3-compatible server.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    port: u16,
}

/// `moto_server` beside the test Python (`$OBLIVION_PYTHON`).
fn moto_server() -> Result<PathBuf> {
    let python = std::env::var("OBLIVION_PYTHON")
        .context("OBLIVION_PYTHON must name the test Python (cargo xtask test sets it)")?;
    let path = PathBuf::from(python)
        .parent()
        .context("OBLIVION_PYTHON has no directory")?
        .join("moto_server");
    if !path.exists() {
        bail!("{} is missing: install moto[server]", path.display());
    }
    Ok(path)
}

/// One plain HTTP request; returns the status code.
fn http(port: u16, method: &str, path: &str) -> Result<u16> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    reply
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status in {reply:?}"))
}

impl S3Server {
    /// Starts a server and waits until it answers.
    pub fn start() -> Result<S3Server> {
        let port = free_port()?;
        let child = Command::new(moto_server()?)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(port, "GET", "/").is_err() {
            if Instant::now() > deadline {
                bail!("moto_server did not answer on port {port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// Creates bucket `name`.
    pub fn bucket(&self, name: &str) -> Result<()> {
        let status = http(self.port, "PUT", &format!("/{name}"))?;
        if status != 200 {
            bail!("creating bucket {name}: {status}");
        }
        Ok(())
    }

    /// The environment a client of this server needs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "oblivion-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "oblivion-test-secret".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Stops the server (SIGSTOP): connections are accepted by the kernel
    /// and then hang, as with a stalled object store.
    pub fn pause(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// Resumes a paused server (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, which: &str) -> Result<()> {
        let status = Command::new("kill")
            .args([which, &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill {which} failed");
        Ok(())
    }

    /// Number of objects under `prefix` in `bucket` (from a listing).
    pub fn count(&self, bucket: &str, prefix: &str) -> Result<usize> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        write!(
            stream,
            "GET /{bucket}?prefix={prefix} HTTP/1.1\r\nhost: 127.0.0.1:{}\r\nconnection: close\r\n\r\n",
            self.port
        )?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply.matches("<Key>").count())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
