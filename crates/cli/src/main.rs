//! `slipway`: the operator CLI. Parses arguments and hands over to the library.

use clap::Parser;
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = slipway_cli::Cli::parse();
    let mut stdout = std::io::stdout().lock();
    match slipway_cli::run(cli, &mut stdout).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slipway: {e}");
            e.exit_code()
        }
    }
}
