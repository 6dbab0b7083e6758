//! The Oblivion coordinator: jobs, rounds, shards, leases, aggregation and
//! storage behind an HTTP API and the worker WebSocket, plus the operator
//! CLI that drives it.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use oblivion_coordinator::{Config, serve};
//! serve(Config::default()).await
//! # }
//! ```

// The scheduling core, under the names the service has always used.
use oblivion_scheduler::kind::{self, federated};
use oblivion_scheduler::{assembly, hub, replication, reputation, round, states, verification};

mod api;
mod blocking;
pub mod cli;
mod config;
mod datasets;
mod error;
mod limits;
mod service;
mod siwe;

pub use config::Config;
pub use service::Coordinator;

/// Runs the coordinator until Ctrl-C or SIGTERM.
pub async fn serve(mut config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    // The port it got (when asked for port 0) is the one sign-in trusts.
    config.listen = addr;
    if config.sign_in.public_url.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            "serving on {addr} over plain HTTP without --public-url: sign-in accepts only \
             http://{addr} and loopback, and session cookies travel unencrypted"
        );
    }
    let coordinator = Coordinator::start(config).await?;
    tracing::info!("coordinator listening on http://{addr}");
    println!("oblivion-coordinator listening on http://{addr}");
    axum::serve(
        listener,
        api::router(coordinator).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
