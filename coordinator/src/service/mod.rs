//! The coordinator's services: the database's decisions carried out
//! against the artifact store and the workers' connections.
//!
//! The database decides every state change (one guarded transaction each);
//! the hub is this instance's derived, in-memory view for fast dispatch,
//! updated only after the database accepted a change, and rebuilt from it
//! at start-up.
//!
//! Each service holds what it uses and the services below it, never one
//! above (so they form no cycle):
//!
//! - `dispatch`: workers and their leases; owns the hub.
//! - `rounds`: a job's rounds in the hub: updates, quorums, aggregation,
//!   a job's start and end; over dispatch.
//! - `jobs` (and `gc`): creating within budgets, reading, cancelling,
//!   downloading; datasets and stored blobs; over rounds and dispatch.
//! - `payments`: deposits, settlements and rewards on chain, and the
//!   chain watcher; over rounds, dispatch and market.
//! - `sync`: jobs other instances changed (PostgreSQL); over rounds and
//!   dispatch.
//! - `events`: the live snapshot pages watch; over dispatch.
//! - `accounts`: sign-in and sessions; alone.
//! - `market`: listings and what the chain shows of their sales; alone.
//! - `models`: the model registry; over market (a buyer may read).
//! - `leaderboard`: standings of contributors and models; alone.
//!
//! [`Coordinator`] only builds them and runs their tasks.

mod accounts;
mod budget;
mod chain_link;
mod dispatch;
mod events;
mod gc;
mod jobs;
mod leaderboard;
mod market;
mod models;
mod payments;
mod rounds;
mod shared;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::limits::ClientLimits;
use oblivion_store::{Artifacts, Backend, Db};

pub use accounts::{Accounts, Viewer};
pub use dispatch::Dispatch;
pub use events::Events;
pub use jobs::{Jobs, OutputsFormat};
pub use leaderboard::{ContributorOrder, Leaderboards};
pub use market::Market;
pub use models::{ModelFormat, ModelOrder, Models};
pub use payments::Payments;
pub use rounds::Rounds;

use chain_link::ChainLink;
use shared::{JobsVersion, Parts};
use sync::PeerSync;

/// The running coordinator: its settings, the per-client limits the API
/// applies, and its services.
pub struct Coordinator {
    /// Settings.
    pub config: Arc<Config>,
    /// The per-client limits.
    pub limits: ClientLimits,
    /// Sign-in and sessions.
    pub accounts: Accounts,
    /// Workers and leases.
    pub dispatch: Arc<Dispatch>,
    /// Rounds: updates and aggregation.
    pub rounds: Arc<Rounds>,
    /// Jobs, datasets and blobs.
    pub jobs: Arc<Jobs>,
    /// The model registry.
    pub models: Models,
    pub market: Arc<Market>,
    /// Standings of contributors and models.
    pub leaderboards: Leaderboards,
    /// Paid jobs on chain.
    pub payments: Arc<Payments>,
    /// The live snapshot.
    pub events: Arc<Events>,
    /// Jobs other instances changed (PostgreSQL only).
    sync: Option<Arc<PeerSync>>,
}

impl Coordinator {
    /// Opens storage, builds the services, resumes unfinished jobs and
    /// starts the services' tasks.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Coordinator>> {
        tokio::fs::create_dir_all(&config.storage.data_dir).await?;
        let db = Db::connect(&config.database_url(), 8)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))?;
        let artifacts = Artifacts::open(&config.artifacts_url())
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the artifact store: {e}"))?;
        let mut stale = 0;
        if db.backend() == Backend::Sqlite {
            // Only one instance uses an SQLite file: whatever the last
            // process held died with it.
            stale = db.end_all_active_leases("coordinator restarted").await?;
            db.release_all_aggregations().await?;
        }
        let chain = config
            .chain()
            .and_then(|c| c.map(ChainLink::new).transpose())
            .map_err(anyhow::Error::msg)?
            .map(Arc::new);
        let limits = ClientLimits::new(&config);
        let config = Arc::new(config);
        let instance: Arc<str> = Arc::from(hex::encode(rand::random::<[u8; 8]>()));
        let jobs_version = Arc::new(JobsVersion::default());
        let parts = Parts {
            config: config.clone(),
            db: db.clone(),
            artifacts,
            instance: instance.clone(),
            jobs_version: jobs_version.clone(),
            chain: chain.clone(),
        };
        let dispatch = Arc::new(Dispatch::new(&parts));
        let rounds = Arc::new(Rounds::new(&parts, dispatch.clone()));
        let market = Arc::new(Market::new(
            db.clone(),
            parts.artifacts.clone(),
            chain.clone(),
            parts.jobs_version.clone(),
        ));
        let coordinator = Arc::new(Coordinator {
            accounts: Accounts::new(&parts),
            models: Models::new(&parts, market.clone()),
            leaderboards: Leaderboards::new(&parts),
            jobs: Arc::new(Jobs::new(&parts, rounds.clone(), dispatch.clone())),
            payments: Arc::new(Payments::new(
                &parts,
                rounds.clone(),
                dispatch.clone(),
                market.clone(),
            )),
            market,
            events: Arc::new(Events::new(dispatch.clone(), jobs_version)),
            sync: (db.backend() == Backend::Postgres)
                .then(|| Arc::new(PeerSync::new(rounds.clone(), dispatch.clone()))),
            dispatch,
            rounds,
            limits,
            config,
        });
        db.register_instance(&instance).await?;
        let mut resumed = 0;
        for row in db.unfinished_jobs().await? {
            let id = row.id;
            match coordinator.rounds.resume(row).await {
                Ok(()) => resumed += 1,
                Err(e) => coordinator.rounds.fail(id, &e.message).await,
            }
        }
        tracing::info!(resumed, stale_leases = stale, %instance, "state loaded");
        coordinator.run_tasks(chain);
        Ok(coordinator)
    }

    /// Starts the services' tasks, which run for as long as the process.
    fn run_tasks(self: &Arc<Self>, chain: Option<Arc<ChainLink>>) {
        if let Some(sync) = &self.sync {
            tokio::spawn(sync.clone().listen(self.config.database_url()));
            tokio::spawn(sync.clone().apply_changes());
        }
        tokio::spawn(self.dispatch.clone().pump_loop());
        if let Some(link) = chain {
            tokio::spawn(self.payments.clone().watch_chain(link));
        }
        let jobs = self.jobs.clone();
        tokio::spawn(async move { jobs.collect_garbage_forever().await });
        tokio::spawn(self.events.clone().publish_forever());
        let this = self.clone();
        tokio::spawn(async move { this.keep_time().await });
    }

    /// Every half second, what is due: expired leases, and less often this
    /// instance's heartbeat, closed and complete rounds, a resync with the
    /// other instances, and forgetting idle clients and expired sign-ins.
    async fn keep_time(&self) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        for n in 0u64.. {
            tick.tick().await;
            self.dispatch.reap().await;
            if n % 2 == 0 {
                self.dispatch.keep_alive().await;
                self.rounds.tick().await;
                // A shard another instance held may be free now.
                self.dispatch.request_pump();
            }
            if n % 10 == 5
                && let Some(sync) = &self.sync
            {
                sync.resync_all();
            }
            if n % 120 == 0 {
                self.limits.uploads.forget_idle();
                self.limits.sign_ins.forget_idle();
                self.accounts.forget_expired().await;
            }
        }
    }
}
