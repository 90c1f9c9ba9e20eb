//! `slipway-worker-launch`: parse configuration, set up logging and tracing, run the launch
//! worker until SIGINT or SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Errors about a value from the environment name its SLIPWAY_* variable.
    let config: slipway_worker_launch::Config = slipway_shared::config::parse_or_exit();
    let _telemetry =
        slipway_shared::telemetry::start(config.common.log_format, "slipway-worker-launch");
    slipway_worker_launch::run(config, slipway_shared::shutdown_signal()).await?;
    Ok(())
}
