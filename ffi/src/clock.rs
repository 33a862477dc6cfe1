//! `fk_now_ns`: the clock of every lease deadline the library reports.

use std::sync::LazyLock;

use kernel::time::{Clock, MonotonicClock};

use crate::boundary;

/// The process's reading of the clock nodes use: CLOCK_BOOTTIME, guarded against going back.
pub(crate) static CLOCK: LazyLock<std::sync::Arc<MonotonicClock>> =
    LazyLock::new(|| std::sync::Arc::new(MonotonicClock::since_boot()));

/// The clock of `lease_deadline_ns`, in nanoseconds: on Linux `CLOCK_BOOTTIME` itself (what
/// `clock_gettime(CLOCK_BOOTTIME)` reads, which keeps counting while the machine is
/// suspended), so a host may compare a deadline with its own reading. Act on a lease only
/// while this is before its deadline.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn fk_now_ns() -> u64 {
    boundary::infallible(u64::MAX, || CLOCK.now().as_nanos())
}
