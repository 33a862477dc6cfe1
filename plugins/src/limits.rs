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
/// exhausting the host thread's stack. 128 KiB holds thousands of frames; plugins keep their
/// data in linear memory (C's shadow stack included), not on this stack.
pub const STACK_BYTES: usize = 128 << 10;
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
    /// The most functions a module may define (imports aside). Checked before compiling, as
    /// are all the limits below but the deadline.
    pub functions_max: usize,
    /// The most locals one function may have, its parameters included.
    pub function_locals_max: usize,
    /// The most locals all functions together may have, parameters included.
    pub locals_max: usize,
    /// The deepest nesting of `block`, `loop`, `if` and `try_table` within one function.
    pub nesting_max: usize,
    /// The most locals (parameters included) times branches back to a loop in one
    /// function: what the compile time grows with the square of.
    pub loop_branch_locals_max: usize,
    /// The largest function body, in bytes (its locals and code).
    pub function_bytes_max: usize,
    /// The largest code section, in bytes: all function bodies together.
    pub code_bytes_max: usize,
    /// The most types (function signatures and others) a module may declare.
    pub types_max: usize,
    /// The most globals a module may define.
    pub globals_max: usize,
    /// The most data segments: each is copied into memory at every instantiation, and a
    /// tie-breaker is instantiated afresh for every call.
    pub data_segments_max: usize,
    /// The most element segments (table initialisers), for the same reason.
    pub element_segments_max: usize,
    /// The longest compilation, after the checks above passed. Past it the load is refused;
    /// the compilation, which cannot be interrupted, finishes in the background and is thrown
    /// away (the checks above bound how long it can run).
    pub compile_deadline: Duration,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            module_bytes_max: MODULE_BYTES_DEFAULT,
            memory_bytes_max: MEMORY_BYTES_DEFAULT,
            deadline: DEADLINE_DEFAULT,
            fuel: FUEL_DEFAULT,
            table_elements_max: TABLE_ELEMENTS_DEFAULT,
            functions_max: FUNCTIONS_DEFAULT,
            function_locals_max: FUNCTION_LOCALS_DEFAULT,
            locals_max: LOCALS_DEFAULT,
            nesting_max: NESTING_DEFAULT,
            loop_branch_locals_max: LOOP_BRANCH_LOCALS_DEFAULT,
            function_bytes_max: FUNCTION_BYTES_DEFAULT,
            code_bytes_max: CODE_BYTES_DEFAULT,
            types_max: TYPES_DEFAULT,
            globals_max: GLOBALS_DEFAULT,
            data_segments_max: DATA_SEGMENTS_DEFAULT,
            element_segments_max: ELEMENT_SEGMENTS_DEFAULT,
            compile_deadline: COMPILE_DEADLINE_DEFAULT,
        }
    }
}

/// The longest deadline per validator call a host may set: an hour (past it the epoch
/// arithmetic could overflow; no write should wait that long anyway).
pub const DEADLINE_MAX: Duration = Duration::from_secs(3600);
/// The most fuel per tie-breaker call a host may set: 10^12 units, minutes of work.
pub const FUEL_MAX: u64 = 1_000_000_000_000;

impl PluginLimits {
    /// Refuses limits the host cannot honour: a deadline over [`DEADLINE_MAX`] (2^64-1 ms
    /// overflowed wasmtime's epoch arithmetic and panicked the caller), fuel of 0 or over
    /// [`FUEL_MAX`].
    pub fn validate(&self) -> Result<(), crate::PluginError> {
        if self.deadline > DEADLINE_MAX {
            return Err(crate::PluginError::BadLimit {
                limit: "deadline",
                value: format!("{:?}", self.deadline),
                allowed: "at most an hour",
            });
        }
        if self.fuel == 0 || self.fuel > FUEL_MAX {
            return Err(crate::PluginError::BadLimit {
                limit: "fuel",
                value: self.fuel.to_string(),
                allowed: "1 to 10^12",
            });
        }
        Ok(())
    }

    /// The deadline in epoch ticks (at least one).
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let ticks = self.deadline.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }
}

// The load limits: what a module may contain before it is compiled (`precheck.rs`). The
// defaults admit the example plugins (under 1 KB each) and realistic C plugins (hundreds of
// functions, tens of locals each) with wide headroom, and keep the largest module they admit
// compiling within half of `COMPILE_DEADLINE_DEFAULT` in a release build: 10,000 functions
// took 0.76 s, so the default is 5,000 (plugins/README.md, "Load limits").

/// The most functions a module may define by default.
pub const FUNCTIONS_DEFAULT: usize = 5_000;
/// The most locals of one function by default, parameters included.
pub const FUNCTION_LOCALS_DEFAULT: usize = 1_000;
/// The most locals of all functions together by default.
pub const LOCALS_DEFAULT: usize = 100_000;
/// The deepest control-flow nesting in a function by default.
pub const NESTING_DEFAULT: usize = 128;
/// The largest function body by default: 64 KiB.
pub const FUNCTION_BYTES_DEFAULT: usize = 64 << 10;
/// The largest code section by default: 1 MiB.
pub const CODE_BYTES_DEFAULT: usize = 1 << 20;
/// The most types by default.
pub const TYPES_DEFAULT: usize = 1_000;
/// The most globals by default.
pub const GLOBALS_DEFAULT: usize = 1_000;
/// The most data segments by default.
pub const DATA_SEGMENTS_DEFAULT: usize = 1_000;
/// The most element segments by default.
pub const ELEMENT_SEGMENTS_DEFAULT: usize = 1_000;
/// The most locals times branches back to a loop in one function by default. Every back edge
/// carries every local into the loop's header, and the compile time grows with the square of
/// their product: a 6 KB module of 1,000 locals under 127 nested loops, inside every other
/// limit, compiled for minutes. Measured in a debug build (a release one is about 15 times
/// quicker): 2,000 took 1 s, 4,000 took 3.5 s (plugins/README.md, "Load limits").
pub const LOOP_BRANCH_LOCALS_DEFAULT: usize = 4_000;
/// The longest compilation by default.
pub const COMPILE_DEADLINE_DEFAULT: Duration = Duration::from_secs(1);

const _: () = assert!(FUNCTION_LOCALS_DEFAULT <= LOCALS_DEFAULT);
const _: () = assert!(FUNCTION_BYTES_DEFAULT <= CODE_BYTES_DEFAULT);
const _: () = assert!(CODE_BYTES_DEFAULT <= MODULE_BYTES_DEFAULT);

/// Host stack a call needs beyond the wasm stack: the host frames between the call's start
/// and the wasm code (wasmtime's entry, in a debug build), the frames of a host function
/// called from the deepest wasm frame (`fencekit.log` and the process's logger) and the trap
/// handler. Measured at 4.6 KiB (unbounded recursion) and 10.8 KiB (recursion that logs
/// every frame through a formatting logger), both in a debug build; 64 KiB leaves room for a
/// heavier logger.
pub const HOST_STACK_MARGIN: usize = 64 << 10;
/// The stack a call needs on its thread: a thread with less left runs the call on a thread
/// of its own (see `FALLBACK_THREAD_STACK_BYTES`).
pub const CALL_STACK_BYTES: usize = STACK_BYTES + HOST_STACK_MARGIN;
/// The stack of a thread started for one call when the calling thread's is too small: what
/// the call needs, plus the thread's own start frames and thread-locals.
pub const FALLBACK_THREAD_STACK_BYTES: usize = CALL_STACK_BYTES + (64 << 10);
/// The most bytes of one `fencekit.log` line; the rest of a longer line is cut off.
pub const LOG_LINE_BYTES: usize = 1 << 10;
/// The most `fencekit.log` lines of one call; later lines are dropped and counted, and the
/// count is logged once at the end of the call.
pub const LOG_LINES_PER_CALL: u32 = 8;
/// The most `fencekit.log` bytes of one call; a line that would pass it is cut off there.
pub const LOG_BYTES_PER_CALL: usize = 2 << 10;
/// The fuel a tie-breaker pays for each `fencekit.log` call, logged or dropped: a call into
/// the host costs about 65 ns, against about 1 ns for a wasm instruction (one unit of fuel),
/// rounded up.
pub const LOG_FUEL_BASE: u64 = 100;
/// The fuel a tie-breaker pays per byte of a `fencekit.log` line (up to `LOG_LINE_BYTES`):
/// reading, converting and formatting it costs about 1 ns per byte.
pub const LOG_FUEL_PER_BYTE: u64 = 1;

const _: () = assert!(FALLBACK_THREAD_STACK_BYTES > CALL_STACK_BYTES);
const _: () = assert!(CALL_STACK_BYTES > STACK_BYTES);
const _: () = assert!(LOG_LINE_BYTES <= LOG_BYTES_PER_CALL);
const _: () = assert!(LOG_LINES_PER_CALL > 0);
