//! The API's Postgres ceiling: `pgbench` running single-row insert transactions into the
//! `jobs` table (the API's own schema, every index included) of a throw-away database on the
//! same Postgres, with as many clients as the API section has. What the enqueue path could
//! reach if it did nothing but commit its row.
//!
//! pgbench ships with the server package on Debian 12 (`postgresql-15`:
//! `/usr/lib/postgresql/15/bin/pgbench`; `/usr/bin/pgbench` is postgresql-client-common's
//! wrapper, which fails without it); `make services` installs it.

use slipway_shared::testing::TestDb;
use tokio::process::Command;

/// Seconds pgbench runs (a time-based run, so the figure does not depend on the host's speed).
const SECONDS: u32 = 10;

/// One transaction: one job row, shaped as the API's (a build payload, a commit, the budget).
/// The casts matter: with `-M prepared` the variable is a parameter whose type `to_hex`'s
/// overloads cannot tell, and a statement that fails to prepare aborts every client.
const SCRIPT: &str = "\\set n random(1, 2000000000)\n\
INSERT INTO jobs (id, kind, state, commit_sha, payload, max_attempts) \
VALUES (gen_random_uuid(), 'build', 'queued', lpad(to_hex(:n::bigint), 40, '0'), \
jsonb_build_object('repository', 'https://github.com/org/app.git', \
'commit', lpad(to_hex(:n::bigint), 40, '0'), 'image', 'org/app', 'platforms', jsonb_build_array('linux/amd64')), 3);\n";

/// `pgbench --version`, or an error saying how to install it.
pub async fn check_installed() -> anyhow::Result<String> {
    let hint = "pgbench is missing: on Debian 12 it ships with the server package \
                postgresql-15 (`make services` installs it; /usr/bin/pgbench alone is a wrapper)";
    let out = Command::new("pgbench")
        .arg("--version")
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("{hint}: {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{hint}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Parse `tps = 5402.866883 (without initial connection time)` from pgbench's report.
pub fn parse_tps(report: &str) -> Option<f64> {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Transactions per second of `clients` pgbench clients inserting job rows.
pub async fn insert_tps(clients: usize) -> anyhow::Result<f64> {
    check_installed().await?;
    // A migrated database of our own, dropped when `db` goes.
    let db = TestDb::new().await?;
    let dir = tempfile_dir()?;
    let script = dir.join("insert-job.sql");
    std::fs::write(&script, SCRIPT)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(clients));
    let out = Command::new("pgbench")
        // -n: no vacuum of pgbench's own tables (there are none); prepared statements, as sqlx.
        .args(["-n", "-M", "prepared"])
        .args(["-c", &clients.to_string(), "-j", &threads.to_string()])
        .args(["-T", &SECONDS.to_string()])
        .arg("-f")
        .arg(&script)
        // libpq takes a connection URI where the database name goes.
        .arg(db.url())
        .output()
        .await?;
    let _ = std::fs::remove_dir_all(&dir);
    let report = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "pgbench failed ({}): {}{}",
        out.status,
        report,
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(
        report.contains("number of failed transactions: 0 "),
        "pgbench had failed transactions: {report}"
    );
    parse_tps(&report).ok_or_else(|| anyhow::anyhow!("cannot parse pgbench's report {report:?}"))
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("slipway-pgbench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::parse_tps;

    #[test]
    fn parses_the_report() {
        let report = "pgbench (15.20 (Debian 15.20-0+deb12u1))\n\
                      transaction type: insert-job.sql\n\
                      number of failed transactions: 0 (0.000%)\n\
                      latency average = 5.923 ms\n\
                      initial connection time = 195.623 ms\n\
                      tps = 5402.866883 (without initial connection time)\n";
        assert_eq!(parse_tps(report), Some(5402.866883));
        assert_eq!(parse_tps("nothing"), None);
    }
}
