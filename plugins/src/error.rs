//! Why a plugin was refused at load.

/// A plugin that cannot be loaded, and why. Calls never fail with it: a plugin that misbehaves
/// during a call answers with a rejection instead (fail closed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The module is larger than the limit.
    #[error("the module is {len} bytes; the limit is {max} (PluginLimits::module_bytes_max)")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The module exceeds a load limit: refused before compiling.
    #[error("{what} is {found}, over the limit of {max} (PluginLimits::{limit})")]
    OverLimit {
        /// The `PluginLimits` field.
        limit: &'static str,
        /// What was counted, in words.
        what: String,
        /// What the module has.
        found: u64,
        /// The limit.
        max: usize,
    },
    /// Compiling the module took longer than the limit.
    #[error(
        "compiling took more than {}: the module is refused (PluginLimits::compile_deadline); \
         its compilation finishes in the background and is thrown away",
        seconds(*deadline)
    )]
    CompileDeadline {
        /// The limit.
        deadline: std::time::Duration,
    },
    /// An earlier module's compilation ran past its deadline and still ran when this load's
    /// deadline passed: no module is compiled beside it, so hostile modules hold one core at
    /// most.
    #[error(
        "an earlier module's compilation ran past its deadline and was still running when \
         this load's deadline passed: try again later (PluginLimits::compile_deadline)"
    )]
    CompileBusy,
    /// A limit is outside what the host can honour (a deadline of 2^64-1 ms overflowed).
    #[error("PluginLimits::{limit} = {value}: {allowed}")]
    BadLimit {
        /// The field.
        limit: &'static str,
        /// Its value, in words.
        value: String,
        /// What it may be.
        allowed: &'static str,
    },
    /// The bytes are not a valid WebAssembly module (or WAT text).
    #[error("not a valid WebAssembly module: {0}")]
    Invalid(String),
    /// The module imports something the host does not provide.
    #[error(
        "the module imports {module}.{name} ({ty}); a plugin may import only fencekit.log(i32, i32)"
    )]
    Import {
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
        /// Its type.
        ty: String,
    },
    /// A required export is missing or has the wrong type.
    #[error("export {name}: {problem}")]
    Export {
        /// The export's name.
        name: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The module reports another ABI version.
    #[error("the module implements plugin ABI {found}; this host implements ABI {expected}")]
    AbiVersion {
        /// What it reported.
        found: i32,
        /// What the host implements.
        expected: i32,
    },
    /// The module's input buffer does not lie inside its memory, or is too small.
    #[error("input buffer: {0}")]
    Buffer(String),
    /// Instantiating the module failed (a start function that traps, memory over the limit).
    #[error("instantiation failed: {0}")]
    Instantiate(String),
    /// The module cache could not be used.
    #[error("module cache {path}: {reason}")]
    Cache {
        /// The cache directory or file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// A duration for a sentence: "1 s", "1.5 s", "250 ms".
fn seconds(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} s", d.as_secs_f64())
    }
}
