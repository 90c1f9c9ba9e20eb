//! The ceiling: raw LPUSH and RPOP rates of the same Redis in the same run, measured with
//! `redis-benchmark -q -n 200000 -P 1` on a key of our own.

use super::{BenchEnv, Report};
use tokio::process::Command;

/// Parse `... : 123456.79 requests per second ...` from quiet output.
pub fn parse_rps(output: &str) -> Option<f64> {
    // Quiet mode redraws progress with carriage returns; the figure is on the last segment.
    let last = output
        .split(['\r', '\n'])
        .rfind(|l| l.contains("requests per second"))?;
    let before = last.split("requests per second").next()?;
    before
        .rsplit(|c: char| c == ':' || c.is_whitespace())
        .find(|t| !t.is_empty())?
        .parse()
        .ok()
}

async fn bench(env: &BenchEnv, cmd: &[&str]) -> anyhow::Result<f64> {
    let out = Command::new("redis-benchmark")
        .args(["-h", &env.redis_host, "-p", &env.redis_port.to_string()])
        .args(["-q", "-n", "200000", "-P", "1"])
        .args(cmd)
        .output()
        .await?;
    anyhow::ensure!(out.status.success(), "redis-benchmark failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    parse_rps(&text).ok_or_else(|| anyhow::anyhow!("cannot parse redis-benchmark output {text:?}"))
}

pub async fn run(env: &BenchEnv, report: &mut Report) -> anyhow::Result<()> {
    let prefix = slipway_shared::testing::RedisPrefix::on(&env.redis_url);
    let key = format!("{}:ceiling-list", prefix.name);
    let lpush = bench(env, &["LPUSH", &key, "x"]).await;
    let rpop = bench(env, &["RPOP", &key]).await;
    // Whatever is left (RPOP drains it; a failed run may not) goes when `prefix` drops.
    report.figure(
        "redis",
        "redis_lpush_per_s",
        "LPUSH (redis-benchmark, -P 1)",
        lpush?,
        "ops/s",
    );
    report.figure(
        "redis",
        "redis_rpop_per_s",
        "RPOP (redis-benchmark, -P 1)",
        rpop?,
        "ops/s",
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_rps;

    #[test]
    fn parses_quiet_output() {
        let out = "LPUSH k x: rps=0.0 (overall: nan) avg_msec=nan (overall: nan)\r\
                   LPUSH k x: 98765.43 requests per second, p50=0.247 msec                    \n";
        assert_eq!(parse_rps(out), Some(98765.43));
        assert_eq!(
            parse_rps("RPOP k: 1234.00 requests per second\n"),
            Some(1234.0)
        );
        assert_eq!(parse_rps("nothing"), None);
    }
}
