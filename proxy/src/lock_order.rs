//! The order of client transactions in the nodes' wait-die (see
//! [`mycelium_protocol::NodeSession::set_lock_order`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Gives each transaction a priority: when it began, in microseconds since the Unix epoch,
/// bumped where needed so that no two of this proxy's transactions share one. Across proxies
/// clocks are close enough for age to mean something, and a tie only makes both die.
#[derive(Default)]
pub(crate) struct LockClock {
    last: AtomicU64,
}

impl LockClock {
    pub fn next(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let previous = self
            .last
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or(now);
        now.max(previous + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::LockClock;

    #[test]
    fn priorities_increase_strictly_even_within_one_microsecond() {
        let clock = LockClock::default();
        let priorities: Vec<u64> = (0..1000).map(|_| clock.next()).collect();
        assert!(priorities.windows(2).all(|w| w[0] < w[1]), "{priorities:?}");
        assert!(priorities[0] > 1_700_000_000_000_000, "{}", priorities[0]);
    }
}
