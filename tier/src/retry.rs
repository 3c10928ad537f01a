//! Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And
//! Jitter"): before attempt n+1 sleep a uniform draw from `[0, min(max, base · 2^(n-1))]`.
//! Full jitter spreads the retries of many clients hit by the same 503 so they do not come back
//! in step, which is what a throttled S3 prefix needs to recover.

use std::time::Duration;

use rand::Rng;

use crate::config::RetryPolicy;

impl RetryPolicy {
    /// The upper end of the range the backoff after failed attempt `n` (1-based) is drawn from.
    pub fn ceiling(&self, n: u32) -> Duration {
        let shift = n.saturating_sub(1).min(31);
        self.base_delay
            .saturating_mul(1u32 << shift)
            .min(self.max_delay)
    }

    /// The backoff after failed attempt `n` (1-based): uniform in `[0, ceiling(n)]`.
    pub fn backoff(&self, n: u32, rng: &mut impl Rng) -> Duration {
        let top = self.ceiling(n).as_micros().min(u64::MAX as u128) as u64;
        Duration::from_micros(rng.gen_range(0..=top))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap_and_draws_stay_inside() {
        let p = RetryPolicy {
            max_attempts: 40,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let ms: Vec<u128> = (1..=6).map(|n| p.ceiling(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.ceiling(1000), Duration::from_secs(1));
        let mut rng = rand::thread_rng();
        let draws: Vec<Duration> = (0..200).map(|_| p.backoff(3, &mut rng)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(400)));
        // Jitter: the draws are spread, not one value.
        let low = draws
            .iter()
            .filter(|d| **d < Duration::from_millis(200))
            .count();
        assert!((20..180).contains(&low), "{low} of 200 in the lower half");
    }
}
