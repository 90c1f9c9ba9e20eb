//! A Redis that refuses Slipway's password: `QueueClient::connect` says so at once, naming the
//! setting, instead of retrying a connection that can never authenticate.

use slipway_shared::queue::{QueueClient, QueueError};
use slipway_shared::testing::PrivateRedis;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_refused_password_is_a_configuration_error_at_once() {
    let redis = PrivateRedis::start_with_password("right-password-123")
        .await
        .unwrap();
    // The server is the test's own and dies with it: no prefix to clean up.
    let prefix = "slipway-test";
    for url in [
        format!("redis://:wrong-password@127.0.0.1:{}", redis.port()),
        // No password at all: NOAUTH on the first command.
        format!("redis://127.0.0.1:{}", redis.port()),
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
    QueueClient::connect(&redis.url(), prefix).await.unwrap();
}
