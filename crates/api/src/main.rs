//! `slipway-api`: parse configuration, set up logging, serve until SIGINT or SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = slipway_api::Config::parse();
    slipway_shared::telemetry::init(config.common.log_format, "slipway-api");
    slipway_api::run(config, slipway_shared::shutdown_signal()).await
}
