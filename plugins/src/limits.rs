//! What a plugin may use. Every limit has a safe default and can be changed per plugin.

use std::time::Duration;

/// The largest module accepted by default: 4 MiB.
pub const MODULE_BYTES_DEFAULT: usize = 4 << 20;
/// The most linear memory an instance may have by default: 16 MiB.
pub const MEMORY_BYTES_DEFAULT: usize = 16 << 20;
/// A validator's default time per call.
pub const DEADLINE_DEFAULT: Duration = Duration::from_millis(10);
/// A tie-breaker's default fuel per call (about one unit per instruction).
pub const FUEL_DEFAULT: u64 = 10_000_000;
/// The wasm stack of every plugin (an engine-wide setting): deep recursion traps instead of
/// exhausting the host thread's stack.
pub const STACK_BYTES: usize = 256 << 10;
/// The most table elements an instance may have by default.
pub const TABLE_ELEMENTS_DEFAULT: usize = 10_000;
/// How often the validators' epoch advances: the deadline's granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Limits of one plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginLimits {
    /// The largest module (`.wasm` or `.wat` bytes) accepted at load.
    pub module_bytes_max: usize,
    /// The most linear memory an instance may grow to. For tie-breakers memory is fixed at
    /// the module's declared minimum whatever this says: a grow that succeeded on one replica
    /// and failed on another would make them decide differently.
    pub memory_bytes_max: usize,
    /// A validator's time per call (rounded up to whole epoch ticks of 1 ms).
    pub deadline: Duration,
    /// A tie-breaker's fuel per call.
    pub fuel: u64,
    /// The most table elements.
    pub table_elements_max: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            module_bytes_max: MODULE_BYTES_DEFAULT,
            memory_bytes_max: MEMORY_BYTES_DEFAULT,
            deadline: DEADLINE_DEFAULT,
            fuel: FUEL_DEFAULT,
            table_elements_max: TABLE_ELEMENTS_DEFAULT,
        }
    }
}

impl PluginLimits {
    /// The deadline in epoch ticks (at least one).
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let ticks = self.deadline.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }
}
