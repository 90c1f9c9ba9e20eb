//! A real Prometheus server for the metrics tests (Debian's `prometheus` package, the one that
//! also has `promtool`, see `slipway_shared::testing::check_metrics`): it scrapes the stack and
//! answers PromQL over its HTTP API. With `SLIPWAY_REQUIRE_PROMTOOL` set (the Makefile sets it)
//! a missing binary is a failure, so a run without it cannot pass by skipping.

use slipway_shared::testing::prometheus_tool;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// A Prometheus server of our own on a free loopback port, with its configuration and storage
/// in a temporary directory; killed on drop. Never the packaged service on :9090.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts one scraping every `targets` (job name, address) each second. `None` (test
    /// skipped) when `prometheus` is missing and not required.
    pub fn start(targets: &[(&str, SocketAddr)]) -> Option<Prometheus> {
        let binary = prometheus_tool("prometheus")?;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, addr) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n"
            ));
        }
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).expect("config written");
        // A free port: bind :0, read it, let it go (Prometheus binds it a moment later).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        Some(Prometheus {
            child,
            addr,
            _dir: dir,
        })
    }

    /// What Prometheus logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The result vector of an instant PromQL query; `None` while Prometheus is not up yet or
    /// the query errs.
    pub async fn query(
        &self,
        http: &reqwest::Client,
        promql: &str,
    ) -> Option<Vec<serde_json::Value>> {
        let resp = http
            .get(format!("http://{}/api/v1/query", self.addr))
            .query(&[("query", promql)])
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = resp.json().await.ok()?;
        if body["status"] != "success" {
            return None;
        }
        body["data"]["result"].as_array().cloned()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
