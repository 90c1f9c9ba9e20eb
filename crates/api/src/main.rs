//! `slipway-api`: parse configuration, set up logging and tracing, serve until SIGINT or
//! SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = slipway_api::Config::parse();
    let _telemetry = slipway_shared::telemetry::start(config.common.log_format, "slipway-api");
    slipway_api::run(config, slipway_shared::shutdown_signal()).await
}
