//! WebAssembly policy plugins for fencekit: storage validators and tie-breakers, sandboxed.
//!
//! A plugin is a core WebAssembly module with no imports but an optional host log function,
//! exporting plugin ABI v1 (`plugins/README.md`, `plugins/sdk/fencekit_plugin.h`):
//!
//! 1. Load it once: [`Plugin::validator`] or [`Plugin::tie_breaker`] check its size and shape
//!    (functions, locals, nesting, code size: the load limits), compile it within a deadline,
//!    refuse any other import (naming it), and instantiate it to check its exports, ABI
//!    version and input buffer.
//! 2. Wrap it: [`WasmValidator`] implements `fencekit::WriteValidator` (attach it with
//!    `Fence::set_validator`); [`WasmTieBreaker`] implements `fencekit::TieBreaker` (for a
//!    fence's conflicts and a node's election priority).
//! 3. Call it from any thread: each thread has its own instance, kept warm.
//! 4. Optionally keep compiled modules on disk with a [`ModuleCache`], private to the user.
//!
//! Limits ([`PluginLimits`]): module size, memory, a deadline per validator call (epoch
//! interruption), fuel per tie-breaker call. A trap, a deadline, a bad answer or a failure to
//! instantiate is a rejection (or, for a tie-breaker, the conservative answer), never an
//! acceptance; the instance is thrown away and the next call gets a fresh one.

pub mod abi;
mod cache;
mod engine;
mod error;
mod instance;
pub mod limits;
mod plugin;
mod precheck;
mod tie_breaker;
mod validator;

pub use cache::ModuleCache;
pub use engine::Kind;
pub use error::PluginError;
pub use limits::PluginLimits;
pub use plugin::{Plugin, PluginInfo};
pub use precheck::export_names;
pub use tie_breaker::WasmTieBreaker;
pub use validator::WasmValidator;
