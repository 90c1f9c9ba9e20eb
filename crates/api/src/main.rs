//! `slipway-api`: parse configuration, set up logging and tracing, serve until SIGINT or
//! SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Errors about a value from the environment name its SLIPWAY_* variable.
    let config: slipway_api::Config = slipway_shared::config::parse_or_exit();
    let _telemetry = slipway_shared::telemetry::start(config.common.log_format, "slipway-api");
    slipway_api::run(config, slipway_shared::shutdown_signal()).await
}
