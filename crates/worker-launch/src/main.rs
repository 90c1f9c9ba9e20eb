//! `slipway-worker-launch`: parse configuration, set up logging and tracing, run the launch
//! worker until SIGINT or SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = slipway_worker_launch::Config::parse();
    let _telemetry =
        slipway_shared::telemetry::start(config.common.log_format, "slipway-worker-launch");
    slipway_worker_launch::run(config, slipway_shared::shutdown_signal()).await?;
    Ok(())
}
