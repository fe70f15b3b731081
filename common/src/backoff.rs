//! The one exponential backoff of the workspace: the wait before retry `n` is `base × 2ⁿ`,
//! capped at `max`. Every retry in diffprobe counts its attempts somewhere durable or local
//! (a unit's failures in the state database, a local worker's restarts, consecutive Slurm
//! errors, a worker's calls to an unreachable coordinator), so the backoff is a pure function
//! of that count rather than an iterator that would have to be rebuilt from it.

use std::time::Duration;

/// Exponential backoff: `base × 2ⁿ` before retry `n` (0 = the first), never over `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// Doubling from `base` up to `max`.
    pub const fn new(base: Duration, max: Duration) -> Backoff {
        Backoff { base, max }
    }

    /// The wait before retry `n` (0 = the first): `base × 2ⁿ`, at most `max`.
    pub fn delay(&self, n: u32) -> Duration {
        // 2^31 × any base already exceeds every cap used here; saturate rather than overflow.
        self.base.saturating_mul(1u32 << n.min(31)).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_base_and_stops_at_max() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let waits: Vec<u128> = (0..7).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(2), "no overflow however many tries");
        let zero = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(zero.delay(5), Duration::ZERO);
    }
}
