//! Monotonic time, behind a trait so the simulator can drift, jump and pause clocks.
//!
//! Lease and timeout arithmetic only ever uses [`Instant`]s from a [`Clock`]; wall-clock time
//! decides nothing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A point on one clock's monotonic time line, in nanoseconds since that clock's origin.
/// Instants of different clocks must not be compared.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The clock's origin.
    pub const ZERO: Instant = Instant(0);

    /// An instant `nanos` after the origin.
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The instant `d` later, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_nanos(d)))
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A source of monotonic instants. `now` never returns an instant earlier than one it
/// returned before.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The operating system's monotonic clock, guarded so that it never goes backwards even if the
/// platform's clock does: a reading earlier than the latest one returned is replaced by the
/// latest.
///
/// On Linux it reads `CLOCK_BOOTTIME`, which keeps counting while the machine is suspended.
/// `CLOCK_MONOTONIC` (behind `std::time::Instant`) stops during a suspend: a leader whose VM
/// or laptop was suspended for a minute would wake believing only microseconds had passed, and
/// act on a lease its followers' clocks ended long ago.
#[derive(Debug)]
pub struct MonotonicClock {
    origin: u64,
    latest: AtomicU64,
}

#[cfg(target_os = "linux")]
fn os_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists on every Linux since
    // 2.6.39, and clock_gettime writes only through the pointer it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return std_nanos();
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(not(target_os = "linux"))]
fn os_nanos() -> u64 {
    std_nanos()
}

/// `std::time::Instant` against a process-wide origin, where `CLOCK_BOOTTIME` is unavailable.
fn std_nanos() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    duration_nanos(ORIGIN.get_or_init(std::time::Instant::now).elapsed())
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> MonotonicClock {
        MonotonicClock {
            origin: os_nanos(),
            latest: AtomicU64::new(0),
        }
    }

    /// A clock whose instants are the operating system's own readings: nanoseconds since boot
    /// (`CLOCK_BOOTTIME`) on Linux, so that a host can compare a lease deadline with what it
    /// reads itself (`clock_gettime(CLOCK_BOOTTIME)`). Elsewhere, nanoseconds since the
    /// process first read a clock.
    pub fn since_boot() -> MonotonicClock {
        MonotonicClock {
            origin: 0,
            latest: AtomicU64::new(0),
        }
    }

    /// The guard itself, separated so that tests can feed it a reading that goes backwards.
    fn observe(&self, reading: u64) -> Instant {
        // fetch_max returns the previous maximum; the result is the larger of the two, so every
        // caller sees a value at least as late as any value returned before its call.
        let previous = self.latest.fetch_max(reading, Ordering::AcqRel);
        Instant(previous.max(reading))
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        self.observe(os_nanos().saturating_sub(self.origin))
    }
}

/// A clock that moves only when told to: for tests and the simulator.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: Mutex<Instant>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Instant) -> ManualClock {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|poison| poison.into_inner());
        *now = now.saturating_add(d);
    }

    /// Sets the clock to `to`; an instant earlier than now is ignored, since a clock never
    /// goes back.
    pub fn set(&self, to: Instant) {
        let mut now = self.now.lock().unwrap_or_else(|poison| poison.into_inner());
        *now = (*now).max(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.now.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_clock_refuses_to_go_backwards() {
        let clock = MonotonicClock::new();
        assert_eq!(clock.observe(1_000), Instant::from_nanos(1_000));
        // The platform clock stepping back must not move our time line back.
        assert_eq!(clock.observe(400), Instant::from_nanos(1_000));
        assert_eq!(clock.observe(1_500), Instant::from_nanos(1_500));
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn since_boot_reads_clock_boottime_itself() {
        let boottime = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: a valid, writable timespec.
            let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
            assert_eq!(rc, 0);
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        };
        let before = boottime();
        let ours = MonotonicClock::since_boot().now().as_nanos();
        let after = boottime();
        assert!(before <= ours && ours <= after, "{before} {ours} {after}");
    }

    #[test]
    fn manual_clock_moves_only_forward() {
        let clock = ManualClock::new(Instant::from_nanos(10));
        clock.advance(Duration::from_nanos(5));
        assert_eq!(clock.now(), Instant::from_nanos(15));
        clock.set(Instant::from_nanos(3));
        assert_eq!(clock.now(), Instant::from_nanos(15));
        clock.set(Instant::from_nanos(40));
        assert_eq!(clock.now(), Instant::from_nanos(40));
        assert_eq!(
            clock
                .now()
                .saturating_duration_since(Instant::from_nanos(50)),
            Duration::ZERO
        );
    }
}
