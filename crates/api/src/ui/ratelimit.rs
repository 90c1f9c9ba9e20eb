//! The limit on failed dashboard sign-ins (`POST /ui/login` is a token-guessing surface): two
//! token buckets in memory, one per client address and one for all clients of this API
//! replica. Each failed sign-in takes a token from both; while either is empty, sign-in is
//! refused (429, `Retry-After`) *before* the presented token is checked, so a guess made while
//! limited learns nothing. Successful sign-ins take nothing.
//!
//! The client address is the TCP peer: `X-Forwarded-For` and `Forwarded` are not trusted (any
//! client can send them). Behind a proxy every client shares the proxy's address, so its
//! bucket then limits all of them together, like the global one. The state is per replica and
//! lost on restart: with n replicas the limits are n times as high.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Client addresses tracked at most; past it, addresses whose bucket has refilled are
/// forgotten, and a new one beyond that is limited by the global bucket alone.
const MAX_TRACKED: usize = 10_000;

/// A token bucket: `capacity` tokens, refilled at `capacity` per minute.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(capacity),
            at: now,
        }
    }

    /// Brings the bucket to `now`.
    fn refill(&mut self, capacity: u32, now: Instant) {
        let per_sec = f64::from(capacity) / 60.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(f64::from(capacity));
        self.at = now;
    }

    /// How long until it holds a whole token (zero when it does).
    fn wait(&self, capacity: u32) -> Duration {
        if self.tokens >= 1.0 || capacity == 0 {
            return Duration::ZERO;
        }
        let per_sec = f64::from(capacity) / 60.0;
        Duration::from_secs_f64((1.0 - self.tokens) / per_sec)
    }

    fn take(&mut self) {
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

/// Failed sign-ins allowed per minute (and in a burst), per client address and in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    pub per_client: u32,
    pub global: u32,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_client: 10,
            global: 100,
        }
    }
}

/// The failed sign-in buckets of one API replica.
pub struct LoginLimiter {
    limits: LoginLimits,
    state: Mutex<State>,
}

struct State {
    global: Bucket,
    clients: HashMap<IpAddr, Bucket>,
}

/// The key of a client address: IPv6 addresses by their /64 (one host usually holds a whole
/// /64), IPv4 addresses whole.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits, now: Instant) -> LoginLimiter {
        LoginLimiter {
            limits,
            state: Mutex::new(State {
                global: Bucket::full(limits.global, now),
                clients: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Some(wait)` when a sign-in from `client` must be refused now, `wait` being how long
    /// until it may try again (at least a second); `None` when it may proceed.
    pub fn refused(&self, client: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let LoginLimits { per_client, global } = self.limits;
        let mut s = self.lock();
        s.global.refill(global, now);
        let mut wait = s.global.wait(global);
        if let Some(b) = client.and_then(|ip| s.clients.get_mut(&client_key(ip))) {
            b.refill(per_client, now);
            wait = wait.max(b.wait(per_client));
        }
        (!wait.is_zero()).then(|| wait.max(Duration::from_secs(1)))
    }

    /// Counts a failed sign-in from `client`.
    pub fn failed(&self, client: Option<IpAddr>, now: Instant) {
        let LoginLimits { per_client, global } = self.limits;
        let mut s = self.lock();
        s.global.refill(global, now);
        s.global.take();
        let Some(key) = client.map(client_key) else {
            return;
        };
        if !s.clients.contains_key(&key) && s.clients.len() >= MAX_TRACKED {
            // Forget the clients whose bucket has refilled: they are as if never seen.
            s.clients.retain(|_, b| {
                b.refill(per_client, now);
                b.tokens < f64::from(per_client)
            });
            if s.clients.len() >= MAX_TRACKED {
                return;
            }
        }
        let b = s
            .clients
            .entry(key)
            .or_insert_with(|| Bucket::full(per_client, now));
        b.refill(per_client, now);
        b.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_client_is_refused_after_its_burst_and_let_in_again_as_it_refills() {
        let t0 = Instant::now();
        let l = LoginLimiter::new(
            LoginLimits {
                per_client: 3,
                global: 100,
            },
            t0,
        );
        for _ in 0..3 {
            assert_eq!(l.refused(ip("10.0.0.1"), t0), None);
            l.failed(ip("10.0.0.1"), t0);
        }
        // 3 a minute: the next token in 20 s.
        assert_eq!(l.refused(ip("10.0.0.1"), t0), Some(Duration::from_secs(20)));
        assert_eq!(l.refused(ip("10.0.0.2"), t0), None, "another client is not limited");
        let later = t0 + Duration::from_secs(15);
        let wait = l.refused(ip("10.0.0.1"), later).unwrap();
        assert!((4_900..=5_100).contains(&wait.as_millis()), "{wait:?}");
        assert_eq!(l.refused(ip("10.0.0.1"), t0 + Duration::from_secs(20)), None);
    }

    #[test]
    fn the_global_bucket_limits_every_client_together() {
        let t0 = Instant::now();
        let l = LoginLimiter::new(
            LoginLimits {
                per_client: 10,
                global: 4,
            },
            t0,
        );
        for i in 0..4 {
            let c = ip(&format!("10.0.1.{i}"));
            assert_eq!(l.refused(c, t0), None);
            l.failed(c, t0);
        }
        assert_eq!(l.refused(ip("10.0.1.200"), t0), Some(Duration::from_secs(15)));
        assert_eq!(l.refused(None, t0), Some(Duration::from_secs(15)));
        assert_eq!(l.refused(ip("10.0.1.200"), t0 + Duration::from_secs(15)), None);
    }

    #[test]
    fn waits_are_at_least_a_second_and_ipv6_clients_are_keyed_by_their_64() {
        let t0 = Instant::now();
        let l = LoginLimiter::new(
            LoginLimits {
                per_client: 600,
                global: 10_000,
            },
            t0,
        );
        for _ in 0..600 {
            l.failed(ip("2001:db8:1:2::1"), t0);
        }
        // 600 a minute refills one in 100 ms; Retry-After counts whole seconds.
        assert_eq!(
            l.refused(ip("2001:db8:1:2:ffff::9"), t0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(l.refused(ip("2001:db8:1:3::1"), t0), None);
        assert_eq!(
            client_key("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn the_tracked_clients_are_bounded() {
        let t0 = Instant::now();
        let l = LoginLimiter::new(
            LoginLimits {
                per_client: 1,
                global: u32::MAX,
            },
            t0,
        );
        for i in 0..(MAX_TRACKED as u32 + 5) {
            l.failed(Some(IpAddr::V4(i.into())), t0);
        }
        assert_eq!(l.lock().clients.len(), MAX_TRACKED);
        // A minute later every bucket has refilled: the old ones make room for a new client.
        let later = t0 + Duration::from_secs(61);
        l.failed(ip("192.0.2.1"), later);
        assert_eq!(l.lock().clients.len(), 1);
        assert!(l.refused(ip("192.0.2.1"), later).is_some());
    }
}
