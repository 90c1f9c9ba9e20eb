//! `queue-worker`: a real worker process over the Slipway runtime with a scripted handler. The
//! crash tests and the benchmark spawn it, SIGKILL it, or SIGTERM it.

use clap::Parser;
use slipway_core::JobKind;
use slipway_harness::scripted::Scripted;
use slipway_shared::runtime::{self, WorkerArgs};
use std::sync::Arc;

#[derive(Parser, Debug)]
struct Args {
    #[arg(
        long,
        env = "SLIPWAY_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    #[arg(long, env = "SLIPWAY_QUEUE_PREFIX", default_value = "slipway")]
    prefix: String,
    #[arg(long, default_value = "build")]
    kind: JobKind,
    #[arg(long, default_value = "queue-worker")]
    name: String,
    /// No per-job lines on stdout.
    #[arg(long)]
    quiet: bool,
    /// Record attempts in this Postgres job store (migrated already).
    #[arg(long)]
    database_url: Option<String>,
    #[command(flatten)]
    worker: WorkerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut cfg = args
        .worker
        .into_config(args.kind, args.redis_url, args.prefix);
    cfg.worker_name = args.name;
    let shutdown = slipway_shared::shutdown_signal();
    let handler = Arc::new(Scripted { quiet: args.quiet });
    println!("ready {}", std::process::id());
    match args.database_url {
        Some(url) => {
            let store = slipway_shared::store::Store::connect_with(&url, 4).await?;
            runtime::run_with_store(cfg, store, handler, shutdown).await?;
        }
        None => runtime::run(cfg, handler, shutdown).await?,
    }
    println!("stopped {}", std::process::id());
    Ok(())
}
