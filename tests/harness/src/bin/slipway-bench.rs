//! `slipway-bench`: runs every benchmark section against the local Redis, prints a table, then,
//! as the very last line, one JSON object of figures. Progress goes to stderr.

use clap::Parser;
use slipway_harness::bench::{BenchEnv, Report, SECTIONS};

#[derive(Parser, Debug)]
struct Args {
    #[arg(
        long,
        env = "SLIPWAY_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// Run only these sections (default: all).
    #[arg(long)]
    only: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let url = url_parts(&args.redis_url);
    let env = BenchEnv {
        redis_url: args.redis_url.clone(),
        redis_host: url.0,
        redis_port: url.1,
    };
    let mut report = Report::default();
    let mut failed = Vec::new();
    for (name, section) in SECTIONS {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == name) {
            continue;
        }
        eprintln!("== {name}");
        if let Err(e) = section(&env, &mut report).await {
            eprintln!("section {name} failed: {e:#}");
            report.note(name, "error", &format!("{e:#}"));
            failed.push(*name);
        }
    }
    print!("{}", report.table());
    println!("{}", report.json_line());
    anyhow::ensure!(failed.is_empty(), "sections failed: {failed:?}");
    Ok(())
}

/// Host and port of a `redis://host:port[/db]` URL (defaults 127.0.0.1:6379).
fn url_parts(url: &str) -> (String, u16) {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let hostport = authority.rsplit('@').next().unwrap_or(authority);
    match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse().unwrap_or(6379)),
        None => (hostport.to_owned(), 6379),
    }
}
