//! The run's time base: milliseconds since the run began, on the harness's clock (real time),
//! which every record of the history uses.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// When the run began, as an instant and as Unix time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunClock {
    began: Instant,
    began_unix_ms: u64,
}

impl RunClock {
    /// Starts the clock now.
    pub(crate) fn start() -> RunClock {
        RunClock {
            began: Instant::now(),
            began_unix_ms: unix_ms(),
        }
    }

    /// Milliseconds since the run began, rounded down.
    pub(crate) fn now_ms(&self) -> i64 {
        i64::try_from(self.began.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Milliseconds since the run began, rounded up: the end of an interval measured with
    /// [`RunClock::now_ms`] at its start, so that the interval never looks shorter than it was.
    pub(crate) fn now_ms_ceil(&self) -> i64 {
        let micros = self.began.elapsed().as_micros();
        i64::try_from(micros.div_ceil(1000)).unwrap_or(i64::MAX)
    }

    /// A Unix time in milliseconds, as milliseconds since the run began.
    pub(crate) fn since_began(&self, unix_ms: u64) -> i64 {
        i64::try_from(unix_ms).unwrap_or(i64::MAX)
            - i64::try_from(self.began_unix_ms).unwrap_or(i64::MAX)
    }

    /// The Unix time, in milliseconds, `ms` after the run began.
    pub(crate) fn unix_ms_at(&self, ms: u64) -> u64 {
        self.began_unix_ms + ms
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
