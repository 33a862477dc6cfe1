//! `fk_policy`: a WebAssembly policy plugin (plugin ABI v1, `plugins/README.md`), attached to
//! a fence as its validator or tie-breaker, or given to a node as its tie-breaker.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use kernel::{TieBreaker, WriteValidator};

use crate::boundary::{self, Failure, Handle, Out, bytes, without_handle_out};
use crate::status::*;

// The WebAssembly host (wasmtime) is the `plugins` feature, on by default. Without it the
// library is a fraction of the size and every call that needs a plugin answers
// FK_STATUS_PLUGINS_DISABLED.
#[cfg(feature = "plugins")]
#[path = "policy/wasm_host.rs"]
mod host;
#[cfg(not(feature = "plugins"))]
#[path = "policy/no_host.rs"]
mod host;

/// What a policy decides: a `uint32_t` with the `FK_POLICY_*` values.
pub type fk_policy_kind = u32;
/// A storage validator (exports `fk_validate`).
pub const FK_POLICY_VALIDATOR: fk_policy_kind = 1;
/// A tie-breaker (exports `fk_election_priority` and `fk_resolve_conflict`).
pub const FK_POLICY_TIE_BREAKER: fk_policy_kind = 2;

/// A loaded policy plugin. Load it with `fk_policy_load_wasm`, free it with `fk_policy_free`
/// (fences and nodes it is attached to keep their own reference).
pub struct fk_policy {
    plugin: host::Plugin,
    /// For a validator: the plugin as the fence's validator.
    pub(crate) validator: Option<Arc<dyn WriteValidator>>,
    poison: AtomicBool,
}

impl Handle for fk_policy {
    fn poison(&self) -> &AtomicBool {
        &self.poison
    }
}

impl fk_policy {
    /// The tie-breaker with `descriptors` for the candidates.
    pub(crate) fn tie_breaker_with(
        &self,
        descriptors: HashMap<kernel::NodeId, Vec<u8>>,
    ) -> Result<Arc<dyn TieBreaker>, Failure> {
        host::tie_breaker(&self.plugin, descriptors)
    }
}

pub(crate) fn not_a_validator() -> Failure {
    Failure::new(
        FK_STATUS_INVALID_ARGUMENT,
        "this policy is a tie-breaker; load it with FK_POLICY_VALIDATOR",
    )
}

/// The limits of one policy (`fk_policy_limits_default` fills the defaults).
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct fk_policy_limits {
    /// The largest module accepted, in bytes.
    pub module_bytes_max: u64,
    /// The most linear memory an instance may grow to (validators; a tie-breaker's memory is
    /// fixed at its declared size).
    pub memory_bytes_max: u64,
    /// A validator's time per call, in microseconds (whole milliseconds in effect).
    pub deadline_us: u64,
    /// A tie-breaker's fuel per call.
    pub fuel: u64,
    /// The most table elements.
    pub table_elements_max: u64,
}

/// Writes the default limits to `*out` (`FK_STATUS_PLUGINS_DISABLED` from a library built
/// without the plugin host).
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_policy_limits_default(out: *mut fk_policy_limits) -> fk_status {
    // SAFETY: `out` is NULL or writable (the caller's contract).
    let out = unsafe { Out::new(out) };
    without_handle_out(out, "out", host::limits_default)
}

/// Loads a policy plugin from `len` bytes of a `.wasm` module (or WAT text) as `kind`, under
/// `limits` (NULL: the defaults). The module is compiled, checked against plugin ABI v1 and
/// instantiated once; a module that imports anything but the host log, lacks an export, or
/// breaks a limit fails with `FK_STATUS_POLICY_REFUSED`, and the message names the cause. A
/// library built without the plugin host answers `FK_STATUS_PLUGINS_DISABLED`.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `module` points to `len` readable bytes; `limits` is NULL or readable; `out` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_policy_load_wasm(
    module: *const u8,
    len: usize,
    kind: fk_policy_kind,
    limits: *const fk_policy_limits,
    out: *mut *mut fk_policy,
) -> fk_status {
    // SAFETY: `out` is NULL or writable (the caller's contract).
    let out = unsafe { Out::new(out) };
    without_handle_out(out, "out", || {
        // SAFETY: `len` readable bytes (the caller's contract).
        let module = unsafe { bytes(module, len, "module") }?;
        if module.is_empty() {
            return Err(Failure::new(
                FK_STATUS_INVALID_ARGUMENT,
                "`module` is empty",
            ));
        }
        if kind != FK_POLICY_VALIDATOR && kind != FK_POLICY_TIE_BREAKER {
            return Err(Failure::new(
                FK_STATUS_INVALID_ARGUMENT,
                format!("kind {kind}: FK_POLICY_VALIDATOR (1) or FK_POLICY_TIE_BREAKER (2)"),
            ));
        }
        // SAFETY: NULL or readable (the caller's contract).
        let limits = unsafe { limits.as_ref() };
        let (plugin, validator) = host::load(kind, module, limits)?;
        Ok(Box::into_raw(Box::new(fk_policy {
            plugin,
            validator,
            poison: AtomicBool::new(false),
        })))
    })
}

/// Frees the policy. NULL is a no-op. Fences and nodes it was attached to keep using it.
///
/// Thread safety: call once, after every other call on this policy has returned.
///
/// # Safety
///
/// `policy` is NULL or a policy from `fk_policy_load_wasm` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_policy_free(policy: *mut fk_policy) {
    // SAFETY: NULL or a live policy from fk_policy_load_wasm, freed once (the caller's contract).
    unsafe { boundary::free(policy) }
}
