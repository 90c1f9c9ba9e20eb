//! Time as the client sees it: the wall clock for token expiry and `X-RateLimit-Reset`, and
//! sleeping for back-off. Injected so tests can check that a rate limit of a minute is waited
//! out, and that a token is renewed after it expires, without waiting for real.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A boxed future, as the object-safe [`Clock::sleep`] returns.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The current time and a way to wait.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    fn sleep(&self, d: Duration) -> Sleep<'_>;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, d: Duration) -> Sleep<'_> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A virtual clock for tests: `sleep` records the wait, advances `now` by it and yields at
/// once; `advance` moves time forward by hand.
#[derive(Debug)]
pub struct ManualClock {
    inner: Mutex<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    now: DateTime<Utc>,
    sleeps: Vec<Duration>,
}

impl ManualClock {
    /// Starts at the real current time (servers compare timestamps with theirs).
    pub fn new() -> Self {
        ManualClock {
            inner: Mutex::new(ManualInner {
                now: Utc::now(),
                sleeps: Vec::new(),
            }),
        }
    }

    pub fn advance(&self, d: Duration) {
        let mut g = self.lock();
        g.now += chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero());
    }

    /// Every wait asked of this clock so far.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.lock().sleeps.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ManualInner> {
        // A panic while holding this lock leaves plain data behind, still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.lock().now
    }

    fn sleep(&self, d: Duration) -> Sleep<'_> {
        {
            let mut g = self.lock();
            g.sleeps.push(d);
            g.now += chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero());
        }
        Box::pin(tokio::task::yield_now())
    }
}
