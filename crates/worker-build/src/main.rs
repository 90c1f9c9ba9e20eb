//! `slipway-worker-build`: parse configuration, set up logging and tracing, run builds until
//! SIGINT or SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = slipway_worker_build::Config::parse();
    let _telemetry =
        slipway_shared::telemetry::start(config.common.log_format, "slipway-worker-build");
    slipway_worker_build::run(config, slipway_shared::shutdown_signal()).await?;
    Ok(())
}
