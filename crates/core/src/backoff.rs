//! Retry spacing: exponential backoff with full jitter (DESIGN.md: base 2 s, factor 4, cap
//! 60 s). Full jitter spreads retries of a burst of failures evenly instead of in waves.

use rand::Rng;
use std::time::Duration;

/// Exponential backoff with full jitter: the delay before retry `n` (1-based count of failed
/// attempts) is uniform in `[0, min(cap, base * factor^(n-1))]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    pub base: Duration,
    pub factor: u32,
    pub cap: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_secs(2),
            factor: 4,
            cap: Duration::from_secs(60),
        }
    }
}

impl BackoffPolicy {
    /// The upper bound of the delay after `failed_attempts` failures (at least 1).
    pub fn ceiling(&self, failed_attempts: u32) -> Duration {
        let exp = failed_attempts.saturating_sub(1).min(32);
        let mult = u64::from(self.factor.max(1)).saturating_pow(exp);
        let ms = (self.base.as_millis() as u64).saturating_mul(mult);
        Duration::from_millis(ms).min(self.cap)
    }

    /// A jittered delay drawn from `rng`.
    pub fn delay_with<R: Rng + ?Sized>(&self, failed_attempts: u32, rng: &mut R) -> Duration {
        let ceiling = self.ceiling(failed_attempts).as_millis() as u64;
        Duration::from_millis(rng.random_range(0..=ceiling))
    }

    /// A jittered delay from the thread's random generator.
    pub fn delay(&self, failed_attempts: u32) -> Duration {
        self.delay_with(failed_attempts, &mut rand::rng())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_grows_by_factor_until_cap() {
        let p = BackoffPolicy::default();
        assert_eq!(p.ceiling(1), Duration::from_secs(2));
        assert_eq!(p.ceiling(2), Duration::from_secs(8));
        assert_eq!(p.ceiling(3), Duration::from_secs(32));
        assert_eq!(p.ceiling(4), Duration::from_secs(60));
        assert_eq!(p.ceiling(1000), Duration::from_secs(60));
    }

    #[test]
    fn jittered_delay_stays_within_ceiling_and_varies() {
        let p = BackoffPolicy::default();
        let delays: Vec<_> = (0..200).map(|_| p.delay(2)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(8)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 50, "full jitter should spread delays");
    }
}
