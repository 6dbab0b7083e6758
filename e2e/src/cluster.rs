//! Several coordinator instances sharing one database and one artifact
//! store, with native workers spread over them: for chaos tests that kill
//! instances and workers (`kill -9`) and start them again.

use std::process::{Child, Command};

use anyhow::Result;

use crate::postgres::{Postgres, free_port};
use crate::s3::S3Server;
use crate::{Api, Backing, Database, ScratchDir, Storage, bin, start_coordinator};

/// A coordinator instance: its address and data directory stay the same
/// across restarts.
struct Instance {
    listen: String,
    data: ScratchDir,
    process: Option<Child>,
}

/// A worker process and the coordinators it knows, its home first.
struct WorkerProcess {
    name: String,
    coordinators: String,
    process: Option<Child>,
}

/// The instances, their shared storage, and the workers.
pub struct Cluster {
    instances: Vec<Instance>,
    extra: Vec<String>,
    env: Vec<(&'static str, String)>,
    workers: Vec<WorkerProcess>,
    /// The shared database.
    pub database_url: String,
    postgres: Option<Postgres>,
    /// The shared object store, when there is one.
    pub s3: Option<S3Server>,
}

impl Cluster {
    /// Starts `instances` coordinators on `database` and `storage` (SQLite
    /// and a local directory only make sense for one), with `extra` flags.
    pub fn start(
        instances: usize,
        database: Database,
        storage: Storage,
        extra: &[&str],
    ) -> Result<Cluster> {
        let first = ScratchDir::new("cluster")?;
        let backing = Backing::start(database, storage, &first.0)?;
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        extra.extend(backing.flags.iter().cloned());
        let mut cluster = Cluster {
            instances: Vec::new(),
            extra,
            env: backing.env,
            workers: Vec::new(),
            database_url: backing.database_url,
            postgres: backing.postgres,
            s3: backing.s3,
        };
        for i in 0..instances {
            let data = if i == 0 {
                ScratchDir(first.0.clone())
            } else {
                ScratchDir::new("cluster")?
            };
            cluster.instances.push(Instance {
                listen: format!("127.0.0.1:{}", free_port()?),
                data,
                process: None,
            });
            cluster.start_instance(i)?;
        }
        std::mem::forget(first);
        Ok(cluster)
    }

    /// Instance `i`'s base URL.
    pub fn url(&self, i: usize) -> String {
        format!("http://{}", self.instances[i].listen)
    }

    /// An API client for instance `i`, signed in as the job creator.
    pub fn api(&self, i: usize) -> Api {
        Api::new(&self.url(i), Some(crate::CREATOR_KEY))
    }

    /// The PostgreSQL server the instances share, when they share one.
    pub fn postgres(&self) -> Option<&Postgres> {
        self.postgres.as_ref()
    }

    /// Number of instances.
    pub fn instances(&self) -> usize {
        self.instances.len()
    }

    /// Whether instance `i` runs.
    pub fn is_up(&self, i: usize) -> bool {
        self.instances[i].process.is_some()
    }

    /// Starts instance `i` (again), on its address and data directory.
    pub fn start_instance(&mut self, i: usize) -> Result<()> {
        let instance = &mut self.instances[i];
        let (child, _) =
            start_coordinator(&instance.data.0, &instance.listen, &self.extra, &self.env)?;
        instance.process = Some(child);
        Ok(())
    }

    /// Kills instance `i` abruptly (SIGKILL).
    pub fn kill_instance(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.instances[i].process.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Starts a native worker whose home is instance `home` (it moves on to
    /// the next instance when its connection is lost).
    pub fn add_worker(&mut self, name: &str, home: usize) -> Result<usize> {
        let n = self.instances.len();
        let coordinators: Vec<String> = (0..n).map(|k| self.url((home + k) % n)).collect();
        self.workers.push(WorkerProcess {
            name: name.to_string(),
            coordinators: coordinators.join(","),
            process: None,
        });
        let i = self.workers.len() - 1;
        self.start_worker(i)?;
        Ok(i)
    }

    /// Starts worker `i` (again).
    pub fn start_worker(&mut self, i: usize) -> Result<()> {
        let w = &mut self.workers[i];
        w.process = Some(
            Command::new(bin("oblivion-worker")?)
                .args(["--coordinator", &w.coordinators, "--name", &w.name])
                .env("RUST_LOG", "oblivion_worker=error")
                .spawn()?,
        );
        Ok(())
    }

    /// Kills worker `i` abruptly (SIGKILL).
    pub fn kill_worker(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.workers[i].process.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for w in &mut self.workers {
            if let Some(c) = w.process.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for i in &mut self.instances {
            if let Some(c) = i.process.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
