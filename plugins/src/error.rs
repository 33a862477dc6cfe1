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
