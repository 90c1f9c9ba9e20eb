//! `fake-github`: runs the fake GitHub API as a process, for end-to-end tests and demos that
//! start Slipway's binaries. Prints `listening on http://<addr>` once it accepts connections,
//! then serves until interrupted. Controls are under `/_fake/...` (see the library docs).

use std::net::SocketAddr;

use clap::Parser;
use fake_github::{FakeConfig, FakeGithub};

#[derive(Parser)]
#[command(about = "A fake GitHub REST API for Slipway's tests")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "FAKE_GITHUB_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Plain tokens to accept (repeatable).
    #[arg(long = "token", env = "FAKE_GITHUB_TOKENS", value_delimiter = ',')]
    tokens: Vec<String>,
    /// Comments per page at most.
    #[arg(long, default_value_t = 3)]
    page_size: usize,
    /// Serve the API under this path, like GitHub Enterprise Server's `/api/v3`.
    #[arg(long, default_value = "")]
    path_prefix: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let cfg = FakeConfig {
        page_size: args.page_size,
        path_prefix: args.path_prefix,
        tokens: args.tokens,
        ..FakeConfig::default()
    };
    let fake = FakeGithub::start_with(cfg, args.listen).await?;
    println!("listening on {}", fake.url());
    println!("controls at http://{}/_fake/", fake.addr());
    tokio::signal::ctrl_c().await?;
    drop(fake);
    Ok(())
}
