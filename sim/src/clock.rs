//! A node's monotonic clock on the global time line: a rate that drifts, and (beyond the
//! drift bound) jumps.

use fencekit::time::Instant;

/// A piecewise-linear clock: local = anchor_local + rate × (global − anchor_global), never
/// going backwards (as fencekit's real clock guards against).
#[derive(Clone, Debug)]
pub struct SimClock {
    anchor_global: u64,
    anchor_local: f64,
    rate: f64,
    /// The latest reading: a clock set back reads this until it catches up.
    floor: u64,
}

impl SimClock {
    /// A clock that reads `global` (nanoseconds) at rate 1.
    pub fn new(global: u64) -> SimClock {
        SimClock {
            anchor_global: global,
            anchor_local: global as f64,
            rate: 1.0,
            floor: 0,
        }
    }

    fn raw(&self, global: u64) -> f64 {
        self.anchor_local + self.rate * (global.saturating_sub(self.anchor_global)) as f64
    }

    /// The reading at `global`.
    pub fn read(&mut self, global: u64) -> Instant {
        let local = (self.raw(global) as u64).max(self.floor);
        self.floor = local;
        Instant::from_nanos(local)
    }

    /// The reading at `global`, without moving the floor.
    pub fn peek(&self, global: u64) -> Instant {
        Instant::from_nanos((self.raw(global) as u64).max(self.floor))
    }

    /// The global time (ns, rounded up) at which this clock, running at its current rate,
    /// reads `local`; `u64::MAX` for a stopped clock.
    pub fn global_at(&self, local: Instant) -> u64 {
        if self.rate <= 0.0 {
            return u64::MAX;
        }
        let ahead = (local.as_nanos() as f64 - self.anchor_local) / self.rate;
        (self.anchor_global as f64 + ahead).max(0.0).ceil() as u64
    }

    /// The current rate (local seconds per global second).
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// From `global` on, runs at `rate`.
    pub fn set_rate(&mut self, global: u64, rate: f64) {
        self.anchor_local = self.raw(global);
        self.anchor_global = global;
        self.rate = rate;
    }

    /// Jumps by `delta_ns` at `global`: forward at once, or (negative) back, which the
    /// monotonic guard turns into a clock that stands still until it catches up.
    pub fn jump(&mut self, global: u64, delta_ns: i64) {
        self.anchor_local = self.raw(global) + delta_ns as f64;
        self.anchor_global = global;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_jumps_keep_the_clock_monotonic() {
        let mut c = SimClock::new(1_000);
        assert_eq!(c.read(2_000).as_nanos(), 2_000);
        c.set_rate(2_000, 2.0);
        assert_eq!(c.read(3_000).as_nanos(), 4_000);
        c.jump(3_000, -1_500);
        assert_eq!(c.read(3_500).as_nanos(), 4_000, "stands still while behind");
        assert_eq!(c.read(4_000).as_nanos(), 4_500);
        c.jump(4_000, 10_000);
        assert_eq!(c.read(4_000).as_nanos(), 14_500);
    }
}
