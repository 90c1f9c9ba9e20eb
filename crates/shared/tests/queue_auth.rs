//! A Redis that refuses Slipway's password: `QueueClient::connect` says so at once, naming the
//! setting, instead of retrying a connection that can never authenticate.

use slipway_shared::queue::{QueueClient, QueueError};
use std::time::{Duration, Instant};

/// A private `redis-server` with `requirepass`, killed on drop.
struct PasswordRedis {
    port: u16,
    child: std::process::Child,
}

impl PasswordRedis {
    async fn start(password: &str) -> PasswordRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                password,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        let url = format!("redis://:{password}@127.0.0.1:{port}");
        slipway_shared::testing::eventually(Duration::from_secs(10), "redis-server", || {
            let url = url.clone();
            async move {
                redis::Client::open(url.as_str())
                    .and_then(|c| c.get_connection())
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                    .ok()
            }
        })
        .await;
        PasswordRedis { port, child }
    }
}

impl Drop for PasswordRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_refused_password_is_a_configuration_error_at_once() {
    let redis = PasswordRedis::start("right-password-123").await;
    // The server is the test's own and dies with it: no prefix to clean up.
    let prefix = "slipway-test";
    for url in [
        format!("redis://:wrong-password@127.0.0.1:{}", redis.port),
        // No password at all: NOAUTH on the first command.
        format!("redis://127.0.0.1:{}", redis.port),
    ] {
        let started = Instant::now();
        let err = match QueueClient::connect(&url, prefix).await {
            Ok(_) => panic!("connected to {url} without the password"),
            Err(e) => e,
        };
        // Generous: the engine's own retries took about 45 s here.
        assert!(started.elapsed() < Duration::from_secs(10), "{url}: {err}");
        assert!(matches!(err, QueueError::Config(_)), "{url}: {err:?}");
        let text = err.to_string();
        assert!(text.contains("SLIPWAY_REDIS_URL"), "{text}");
        assert!(
            !text.contains("wrong-password"),
            "the error never repeats the password: {text}"
        );
    }
    // The right password connects.
    let url = format!("redis://:right-password-123@127.0.0.1:{}", redis.port);
    QueueClient::connect(&url, prefix).await.unwrap();
}
