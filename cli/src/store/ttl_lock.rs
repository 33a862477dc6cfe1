//! The naive side of the demo: a lock with a time to live, as a lease service hands out (the
//! etcd session of the first seed document). Whoever holds it believes it may act until its
//! own clock says the TTL ran out; nothing stops a holder that was paused past it.

use std::time::{Duration, Instant};

use crate::store_api::LockAnswer;

/// The lock: its holder and when its TTL ends, on the store's clock.
#[derive(Debug, Default)]
pub(crate) struct TtlLock {
    held: Option<(u64, Instant)>,
}

impl TtlLock {
    /// Takes the lock for `holder` if it is free, expired or already theirs (a renewal).
    pub(crate) fn acquire(&mut self, holder: u64, ttl: Duration, now: Instant) -> LockAnswer {
        let free = match self.held {
            None => true,
            Some((current, expires)) => current == holder || expires <= now,
        };
        if free {
            self.held = Some((holder, now + ttl));
        }
        let (current, expires) = self.held.unwrap_or((holder, now));
        LockAnswer {
            held: current == holder,
            holder: Some(current),
            remaining_ms: u64::try_from(expires.saturating_duration_since(now).as_millis())
                .unwrap_or(u64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_passes_on_only_when_its_ttl_ran_out() {
        let mut lock = TtlLock::default();
        let t0 = Instant::now();
        let ttl = Duration::from_millis(100);
        assert!(lock.acquire(1, ttl, t0).held);
        let taken = lock.acquire(2, ttl, t0 + Duration::from_millis(50));
        assert!(!taken.held);
        assert_eq!(taken.holder, Some(1));
        assert_eq!(taken.remaining_ms, 50);
        assert!(
            lock.acquire(1, ttl, t0 + Duration::from_millis(90)).held,
            "renewed"
        );
        assert!(!lock.acquire(2, ttl, t0 + Duration::from_millis(150)).held);
        assert!(lock.acquire(2, ttl, t0 + Duration::from_millis(190)).held);
    }
}
