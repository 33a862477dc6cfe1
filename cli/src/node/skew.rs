//! A clock whose rate can be changed while it runs: the demo skews a node's clock within the
//! drift bound the lease allows for.

use std::sync::Mutex;

use fencekit::time::{Clock, Instant, MonotonicClock};

/// The system's monotonic clock run at `rate` (1.0: true time). Changing the rate re-anchors
/// the clock, so it never jumps and never goes backwards.
#[derive(Debug)]
pub(crate) struct SkewedClock {
    real: MonotonicClock,
    state: Mutex<Anchor>,
}

#[derive(Debug, Clone, Copy)]
struct Anchor {
    real: u64,
    skewed: u64,
    rate: f64,
}

impl SkewedClock {
    pub(crate) fn new() -> SkewedClock {
        SkewedClock {
            real: MonotonicClock::new(),
            state: Mutex::new(Anchor {
                real: 0,
                skewed: 0,
                rate: 1.0,
            }),
        }
    }

    fn at(anchor: Anchor, real: u64) -> u64 {
        let elapsed = real.saturating_sub(anchor.real) as f64 * anchor.rate;
        anchor.skewed.saturating_add(elapsed as u64)
    }

    /// Runs the clock at `rate` from now on.
    pub(crate) fn set_rate(&self, rate: f64) {
        let real = self.real.now().as_nanos();
        let mut anchor = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let skewed = Self::at(*anchor, real);
        *anchor = Anchor { real, skewed, rate };
    }

    /// The current rate.
    pub(crate) fn rate(&self) -> f64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).rate
    }
}

impl Clock for SkewedClock {
    fn now(&self) -> Instant {
        let anchor = *self.state.lock().unwrap_or_else(|e| e.into_inner());
        Instant::from_nanos(Self::at(anchor, self.real.now().as_nanos()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_change_neither_jumps_nor_goes_back() {
        let clock = SkewedClock::new();
        let before = clock.now();
        clock.set_rate(0.5);
        let after = clock.now();
        assert!(after >= before);
        clock.set_rate(1.05);
        assert!(clock.now() >= after);
        assert_eq!(clock.rate(), 1.05);
        let anchor = Anchor {
            real: 1_000,
            skewed: 500,
            rate: 1.1,
        };
        assert_eq!(SkewedClock::at(anchor, 2_000), 1_600);
    }
}
