//! `slipway-migrate`: applies the embedded migrations and exits. Safe to run from many
//! processes at once (an advisory lock serialises them); the concurrent-migration test and
//! operators (e.g. a Helm pre-install hook) use it.

use clap::Parser;
use slipway_shared::config::SecretUrl;
use slipway_shared::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "slipway-migrate",
    about = "Apply Slipway's database migrations and exit"
)]
struct Cli {
    /// Postgres URL.
    #[arg(long = "database-url", env = "SLIPWAY_DATABASE_URL")]
    database_url: SecretUrl,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = async {
        let store = Store::connect_with(cli.database_url.expose(), 1).await?;
        store.migrate().await
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slipway-migrate: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
