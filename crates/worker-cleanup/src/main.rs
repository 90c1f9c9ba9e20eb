//! `slipway-worker-cleanup`: parse configuration, set up logging and tracing, run the cleanup
//! worker (teardowns and sweeps) until SIGINT or SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Errors about a value from the environment name its SLIPWAY_* variable.
    let config: slipway_worker_cleanup::Config = slipway_shared::config::parse_or_exit();
    let _telemetry =
        slipway_shared::telemetry::start(config.common.log_format, "slipway-worker-cleanup");
    slipway_worker_cleanup::run(config, slipway_shared::shutdown_signal()).await?;
    Ok(())
}
