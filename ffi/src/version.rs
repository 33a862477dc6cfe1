//! Versions: of the library, and of its ABI.

use std::ffi::c_char;

use crate::boundary;

/// The ABI version this header describes. It changes when an existing function, struct or
/// code changes meaning; additions keep it. Compare it with `fk_abi_version()` at start-up.
/// 2: lease deadlines are on CLOCK_BOOTTIME itself, not counted from the node's start; the
/// status codes of a few bad inputs changed (a lookup's bad key, a batch's unknown id, a
/// transfer to a non-voter).
pub const FK_ABI_VERSION: u32 = 2;

/// The library's version, "MAJOR.MINOR.PATCH". Static: never free it.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn fk_version() -> *const c_char {
    boundary::infallible(c"".as_ptr(), || {
        const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
        VERSION.as_ptr().cast()
    })
}

/// The ABI version of the loaded library: `FK_ABI_VERSION` of the header it was built with.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn fk_abi_version() -> u32 {
    boundary::infallible(0, || FK_ABI_VERSION)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soname_carries_the_abi_version() {
        assert_eq!(
            env!("FENCEKIT_SONAME"),
            format!("libfencekit.so.{}", super::FK_ABI_VERSION)
        );
    }
}
