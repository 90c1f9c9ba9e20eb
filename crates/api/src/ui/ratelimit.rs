//! The limit on failed dashboard sign-ins (`POST /ui/login` is a token-guessing surface): two
//! token buckets in memory, one per client address and one for all clients of this API
//! replica. Each failed sign-in takes a token from both; while either is empty, sign-in is
//! refused (429, `Retry-After`) *before* the presented token is checked, so a guess made while
//! limited learns nothing. Successful sign-ins take nothing.
//!
//! The client address is the TCP peer: `X-Forwarded-For` is believed only from the proxies
//! the operator names ([`TrustedProxies`], `SLIPWAY_UI_TRUSTED_PROXIES`), and then only up to
//! the first hop that is not one of them (any client can send the header). Behind an untrusted
//! proxy every client shares the proxy's address, so its bucket limits all of them together,
//! like the global one. The state is per replica and lost on restart: with n replicas the
//! limits are n times as high.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The proxies whose `X-Forwarded-For` is believed: address ranges (`10.0.0.0/8`,
/// `fd00::/8`, or one address), comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

/// A `SLIPWAY_UI_TRUSTED_PROXIES` entry that is not an address or address range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "SLIPWAY_UI_TRUSTED_PROXIES: {entry:?} is not an IP address or CIDR range (such as 10.0.0.0/8)"
)]
pub struct TrustedProxiesError {
    entry: String,
}

impl FromStr for TrustedProxies {
    type Err = TrustedProxiesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut ranges = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || TrustedProxiesError {
                entry: entry.to_owned(),
            };
            let (addr, len) = match entry.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (entry, None),
            };
            let addr: IpAddr = addr.parse().map_err(|_| bad())?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len = match len {
                None => max,
                Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(bad)?,
            };
            ranges.push((addr, len));
        }
        Ok(TrustedProxies(ranges))
    }
}

/// The first `len` bits of `ip`, as a number (IPv4 addresses as their IPv4-mapped IPv6 form).
fn prefix(ip: IpAddr, len: u8, v4: bool) -> u128 {
    let (bits, width) = match ip {
        IpAddr::V4(a) if v4 => (u128::from(u32::from(a)), 32),
        IpAddr::V4(a) => (u128::from(a.to_ipv6_mapped()), 128),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    if len == 0 {
        0
    } else {
        bits >> (width - u32::from(len))
    }
}

impl TrustedProxies {
    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|(net, len)| {
            net.is_ipv4() == ip.is_ipv4()
                && prefix(*net, *len, net.is_ipv4()) == prefix(ip, *len, ip.is_ipv4())
        })
    }

    /// The client of a request from `peer`: `peer` itself unless it is a trusted proxy; then
    /// the `X-Forwarded-For` entries read from the right, up to the first that is not a
    /// trusted proxy (an entry that is not an address stops the walk at the hop before it).
    pub fn client(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
        let mut client = peer;
        if !self.contains(peer) {
            return client;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.into_iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                break;
            };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

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
        assert_eq!(
            l.refused(ip("10.0.0.2"), t0),
            None,
            "another client is not limited"
        );
        let later = t0 + Duration::from_secs(15);
        let wait = l.refused(ip("10.0.0.1"), later).unwrap();
        assert!((4_900..=5_100).contains(&wait.as_millis()), "{wait:?}");
        assert_eq!(
            l.refused(ip("10.0.0.1"), t0 + Duration::from_secs(20)),
            None
        );
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
        assert_eq!(
            l.refused(ip("10.0.1.200"), t0),
            Some(Duration::from_secs(15))
        );
        assert_eq!(l.refused(None, t0), Some(Duration::from_secs(15)));
        assert_eq!(
            l.refused(ip("10.0.1.200"), t0 + Duration::from_secs(15)),
            None
        );
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
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        use axum::http::{HeaderMap, HeaderValue};
        let trusted: TrustedProxies = "10.0.0.0/8, 192.0.2.7 ,fd00::/8".parse().unwrap();
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.1, 203.0.113.5"),
        );
        h.append("x-forwarded-for", HeaderValue::from_static("10.1.2.3"));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // An untrusted peer: the header is ignored.
        assert_eq!(trusted.client(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        // From a trusted proxy: right to left past the trusted hops (10.1.2.3) to the client;
        // what is left of it (198.51.100.1) the client may have made up.
        assert_eq!(trusted.client(ip("10.9.9.9"), &h), ip("203.0.113.5"));
        assert_eq!(trusted.client(ip("192.0.2.7"), &h), ip("203.0.113.5"));
        assert_eq!(trusted.client(ip("::ffff:10.0.0.1"), &h), ip("203.0.113.5"));
        assert_eq!(trusted.client(ip("fd12::1"), &h), ip("203.0.113.5"));
        assert_eq!(trusted.client(ip("192.0.2.8"), &h), ip("192.0.2.8"));
        // No header, or garbage: the last trusted hop.
        assert_eq!(
            trusted.client(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        let mut g = HeaderMap::new();
        g.insert(
            "x-forwarded-for",
            HeaderValue::from_static("unknown, 10.0.0.2"),
        );
        assert_eq!(trusted.client(ip("10.0.0.1"), &g), ip("10.0.0.2"));
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &h),
            ip("10.0.0.1")
        );

        assert_eq!(
            "".parse::<TrustedProxies>().unwrap(),
            TrustedProxies::default()
        );
        assert_eq!(
            "0.0.0.0/0"
                .parse::<TrustedProxies>()
                .unwrap()
                .client(ip("1.2.3.4"), &h),
            ip("198.51.100.1")
        );
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "example.com",
            "10.0.0.0/",
            "10.0.0.0/x",
        ] {
            let e = bad.parse::<TrustedProxies>().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
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
