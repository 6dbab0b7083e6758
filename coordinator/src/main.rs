use oblivion_coordinator::cli::{Cli, run};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "oblivion_coordinator=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse_layered()).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
