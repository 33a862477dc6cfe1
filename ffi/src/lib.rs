//! The C ABI of fencekit: `libfencekit.so`, `libfencekit.a` and `include/fencekit.h`.
//!
//! The conventions (stated for users in `ffi/README.md`): every name starts with `fk_`/`FK_`;
//! functions are `fk_<type>_<verb>`; handles are opaque, made by `_open`/`_start` and released
//! by `_free` (NULL is a no-op); every fallible function returns an `fk_status` and writes its
//! outputs through out-pointers only on success; bytes are a pointer and a length; every
//! pointer is checked for NULL; the reason for a failure is `fk_last_error_message()` on the
//! same thread. Every export runs inside the panic boundary of `boundary.rs`.

#![allow(
    non_camel_case_types,
    reason = "the C names of the types are the Rust names, so that cbindgen needs no renaming"
)]

// The simulator's planted bugs (core/src/planted.rs) exist only in its own build of the kernel
// (sim/kernel/): a libfencekit that had them, whatever the cargo command, would not compile.
const _: () = assert!(
    !kernel::PLANTED_COMPILED_IN,
    "libfencekit must not contain the simulator's planted bugs"
);

#[cfg(test)]
mod alloc_count;
mod boundary;
pub mod buf;
pub mod clock;
pub mod dev_certs;
pub mod fence;
pub mod last_error;
pub mod log;
pub mod logging;
pub mod node;
mod node_config;
pub mod policy;
pub mod source;
pub mod status;
pub mod token;
pub mod version;
