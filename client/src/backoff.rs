//! Exponential backoff: how long to wait before the n-th retry.
//!
//! Deterministic on purpose (no jitter): the client talks to a handful of brokers, and
//! tests can then assert exact schedules. The delay doubles from `initial` up to `max`.

use std::time::Duration;

/// A doubling delay with a ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub initial_ms: u64,
    pub max_ms: u64,
}

impl Backoff {
    pub(crate) fn new(initial_ms: u64, max_ms: u64) -> Self {
        Self { initial_ms, max_ms }
    }

    /// The wait after `failures` consecutive failures (1 for the first failure).
    /// Zero failures means no wait.
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        // Past 2^32 the ceiling has long been reached; clamp the shift so it cannot
        // overflow.
        let factor = 1u64 << (failures - 1).min(32);
        Duration::from_millis(self.initial_ms.saturating_mul(factor).min(self.max_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The delay doubles from the initial value, stops at the ceiling and never
    /// overflows however many failures are counted.
    #[test]
    fn doubles_up_to_the_ceiling() {
        let backoff = Backoff::new(50, 1_000);
        let delays: Vec<u64> = (0..8)
            .map(|failures| backoff.delay(failures).as_millis() as u64)
            .collect();
        assert_eq!(delays, [0, 50, 100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_millis(1_000));
    }
}
