//! The shutdown scenarios every binary is tested in (real processes, SIGTERM): its Redis
//! stopped, its Redis connection stalled, its Postgres cut or stalled. The binary reaches
//! Redis and Postgres only through what the scenario gives it (a private `redis-server`, or a
//! [`TcpProxy`] in front of the shared server), so no outage touches anything shared.

use super::{PrivateRedis, Process, TcpProxy, eventually, free_port};
use crate::queue::QueueClient;
use slipway_core::JobKind;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One test per [`Outage`], each calling `$run(outage).await` (a binary's SIGTERM scenario),
/// named `with_<outage>_exits_within_5s`; put it in a module named after the scenario.
#[macro_export]
macro_rules! outage_tests {
    ($run:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn with_redis_stopped_exits_within_5s() {
            $run($crate::testing::shutdown::Outage::RedisStopped).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn with_redis_stalled_exits_within_5s() {
            $run($crate::testing::shutdown::Outage::RedisStalled).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn with_postgres_cut_exits_within_5s() {
            $run($crate::testing::shutdown::Outage::PostgresCut).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn with_postgres_stalled_exits_within_5s() {
            $run($crate::testing::shutdown::Outage::PostgresStalled).await;
        }
    };
}

/// What goes wrong before the SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Redis killed (SIGKILL): connections reset, new ones refused.
    RedisStopped,
    /// Redis connections held open, nothing forwarded any more (a dead link).
    RedisStalled,
    /// Postgres connections closed, new ones refused.
    PostgresCut,
    /// Postgres connections held open, nothing forwarded any more.
    PostgresStalled,
}

impl Outage {
    pub const ALL: [Outage; 4] = [
        Outage::RedisStopped,
        Outage::RedisStalled,
        Outage::PostgresCut,
        Outage::PostgresStalled,
    ];
}

/// Where the binary under test finds its dependencies.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub redis_url: String,
    pub database_url: String,
    /// Its HTTP listener (probes; the API itself).
    pub listen: SocketAddr,
}

impl Endpoints {
    /// Point an idle worker's arguments at these endpoints, with the default grace period of
    /// 30 s: an idle worker must not spend it.
    pub fn idle_worker_args(&self, args: &mut Vec<String>) {
        use super::process::set_arg;
        set_arg(args, "--redis-url", &self.redis_url);
        set_arg(args, "--database-url", &self.database_url);
        set_arg(args, "--listen", &self.listen.to_string());
        set_arg(args, "--grace-period-secs", "30");
    }
}

/// The status of `GET path` on `addr` (HTTP/1.0, so the server closes), `None` when nothing
/// answers.
pub async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut head = [0u8; 64];
        let mut got = 0;
        while got < 12 {
            let n = s.read(&mut head[got..]).await.ok()?;
            if n == 0 {
                break;
            }
            got += n;
        }
        std::str::from_utf8(&head[..got])
            .ok()?
            .split(' ')
            .nth(1)?
            .parse()
            .ok()
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
}

/// Waits until `process` answers `/readyz` with 200. If it exits first (a start-up error, e.g.
/// its port taken meanwhile) or `timeout` passes, panics with its output, so the cause shows.
async fn until_ready(process: &mut Process, listen: SocketAddr, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while http_status(listen, "/readyz").await != Some(200) {
        if let Some(status) = process.exited() {
            panic!(
                "the binary exited ({status}) before it was ready; output:\n{}",
                process.output()
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the binary to be ready; output:\n{}",
            process.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Start the binary `command(endpoints)` builds, wait until it is ready (its `/readyz` says 200
/// and, for a worker of `kind`, its consumer is registered in Redis), bring `outage` about,
/// SIGTERM it and return how long it took to exit; panics (with its output) if it does not
/// exit within `bound` (it is given a minute, to measure) or exits unsuccessfully.
pub async fn sigterm_during(
    outage: Outage,
    bound: Duration,
    database_url: &str,
    redis_url: &str,
    prefix: &str,
    kind: Option<JobKind>,
    command: impl FnOnce(&Endpoints) -> Command,
) -> Duration {
    let mut private_redis = None;
    let mut redis_proxy = None;
    let redis_url = match outage {
        Outage::RedisStopped => {
            let r = PrivateRedis::start().await.expect("a private redis-server");
            let url = r.url();
            private_redis = Some(r);
            url
        }
        _ => {
            let p = TcpProxy::start(socket_of(redis_url)).await.expect("proxy");
            let url = p.url_for(redis_url);
            redis_proxy = Some(p);
            url
        }
    };
    let pg_proxy = TcpProxy::start(socket_of(database_url))
        .await
        .expect("proxy");
    let endpoints = Endpoints {
        database_url: pg_proxy.url_for(database_url),
        redis_url: redis_url.clone(),
        listen: SocketAddr::from(([127, 0, 0, 1], free_port().expect("a free port"))),
    };
    let mut process = Process::spawn(command(&endpoints)).expect("start the binary");
    let listen = endpoints.listen;
    until_ready(&mut process, listen, Duration::from_secs(60)).await;
    if let Some(kind) = kind {
        let q = QueueClient::connect(&redis_url, prefix)
            .await
            .expect("queue client");
        eventually(
            Duration::from_secs(30),
            "the worker to register",
            || async { (q.workers(kind).await.ok()?.len() == 1).then_some(()) },
        )
        .await;
        q.close().await;
    }
    match outage {
        Outage::RedisStopped => {
            if let Some(r) = private_redis.as_mut() {
                r.stop();
            }
        }
        Outage::RedisStalled => {
            if let Some(p) = &redis_proxy {
                p.stall();
            }
        }
        Outage::PostgresCut => pg_proxy.cut(),
        Outage::PostgresStalled => pg_proxy.stall(),
    }
    if matches!(outage, Outage::RedisStopped | Outage::PostgresCut) {
        // The outage is seen (a refused connection answers at once) before the signal.
        eventually(Duration::from_secs(30), "readiness to fail", || async {
            (http_status(listen, "/readyz").await == Some(503)).then_some(())
        })
        .await;
    }
    let (took, status) = process.terminate(Duration::from_secs(60)).await;
    let output = process.output();
    eprintln!("{outage:?}: exited {took:?} after SIGTERM");
    match status {
        Some(s) if s.success() && took < bound => took,
        Some(s) if s.success() => {
            panic!("{outage:?}: exited {took:?} after SIGTERM (bound {bound:?}); output:\n{output}")
        }
        Some(s) => panic!("{outage:?}: exited with {s} after {took:?}; output:\n{output}"),
        None => panic!("{outage:?}: still running {took:?} after SIGTERM; output:\n{output}"),
    }
}

fn socket_of(url: &str) -> SocketAddr {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else if url.starts_with("postgres") {
        format!("{host_port}:5432")
    } else {
        format!("{host_port}:6379")
    };
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port
        .parse()
        .unwrap_or_else(|e| panic!("{host_port}: not an ip:port ({e})"))
}

/// How a busy binary stopped: how long after SIGTERM its `/readyz` first said 503 (`None`:
/// never seen before it exited) and when it exited.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    pub not_ready_after: Option<Duration>,
    pub exited_after: Duration,
}

/// SIGTERM `process` (serving on `listen`), watch its readiness until it exits (at most a
/// minute; panics with its output if it does not exit, or exits unsuccessfully).
pub async fn sigterm_watching_readiness(process: &mut Process, listen: SocketAddr) -> Stopped {
    let sent = std::time::Instant::now();
    process.sigterm().expect("SIGTERM");
    let mut not_ready_after = None;
    let status = loop {
        if let Some(status) = process.exited() {
            break Some(status);
        }
        if sent.elapsed() > Duration::from_secs(60) {
            break None;
        }
        if not_ready_after.is_none() && http_status(listen, "/readyz").await == Some(503) {
            not_ready_after = Some(sent.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let exited_after = sent.elapsed();
    eprintln!("busy: not ready after {not_ready_after:?}, exited {exited_after:?} after SIGTERM");
    match status {
        Some(s) if s.success() => Stopped {
            not_ready_after,
            exited_after,
        },
        other => panic!(
            "{other:?} {exited_after:?} after SIGTERM; output:\n{}",
            process.output()
        ),
    }
}
