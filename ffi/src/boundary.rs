//! The plumbing every export goes through: the panic boundary, the thread's last error, and
//! the checks that turn C pointers into Rust references.
//!
//! Every export runs its body inside [`with_handle`], [`without_handle`] or [`infallible`].
//! A panic never crosses into C (unwinding into a C frame is undefined behaviour): it is caught
//! here and becomes `FK_STATUS_PANIC`, and the handle the call was made on is *poisoned*. A
//! poisoned handle refuses every later call with `FK_STATUS_POISONED`, so a fence whose state
//! a bug may have left half-changed never accepts another write (I7: fail closed).

use std::any::Any;
use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};

use kernel::Error;

use crate::last_error::record;
use crate::status::{self, *};

/// Why a call failed: its status and the message `fk_last_error_message` will give.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: fk_status,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: fk_status, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn null(argument: &str) -> Failure {
        Failure::new(
            FK_STATUS_NULL_ARGUMENT,
            format!("`{argument}` is NULL; it must point to valid memory"),
        )
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::new(status::of(&error), error.to_string())
    }
}

/// A handle that a caught panic poisons.
pub(crate) trait Handle {
    fn poison(&self) -> &AtomicBool;
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    let detail = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    format!(
        "a bug in fencekit panicked: {detail}; the handle is poisoned and refuses every call but _free"
    )
}

/// Runs `body` on `handle`: `None` (a NULL pointer) gives `FK_STATUS_NULL_ARGUMENT` naming
/// the argument, a poisoned handle `FK_STATUS_POISONED`, a panic `FK_STATUS_PANIC` (and
/// poisons the handle).
#[inline(always)]
pub(crate) fn with_handle<H: Handle>(
    handle: Option<&H>,
    name: &str,
    body: impl FnOnce(&H) -> Result<(), Failure>,
) -> fk_status {
    let Some(handle) = handle else {
        return record(Failure::null(name));
    };
    if handle.poison().load(Ordering::Acquire) {
        return record(Failure::new(
            FK_STATUS_POISONED,
            format!("this {name} is poisoned by an earlier panic: it refuses every call but _free"),
        ));
    }
    match catch_unwind(AssertUnwindSafe(|| body(handle))) {
        Ok(Ok(())) => FK_STATUS_OK,
        Ok(Err(failure)) => record(failure),
        Err(payload) => {
            handle.poison().store(true, Ordering::Release);
            record(Failure::new(FK_STATUS_PANIC, panic_message(&*payload)))
        }
    }
}

/// Runs `body`, which has no handle to poison (constructors, inspection).
pub(crate) fn without_handle(body: impl FnOnce() -> Result<(), Failure>) -> fk_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => FK_STATUS_OK,
        Ok(Err(failure)) => record(failure),
        Err(payload) => record(Failure::new(FK_STATUS_PANIC, panic_message(&*payload))),
    }
}

/// Runs `body`, which returns a value rather than a status; `fallback` if it panics.
pub(crate) fn infallible<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// Frees a handle made by `Box::into_raw`; NULL is a no-op. A panic while dropping it (a bug)
/// leaks it instead of unwinding into C.
///
/// # Safety
///
/// `handle` is NULL or a live handle of type `T` from `Box::into_raw`, freed once.
pub(crate) unsafe fn free<T>(handle: *mut T) {
    infallible((), || {
        if !handle.is_null() {
            // SAFETY: a live handle from Box::into_raw, freed once (the caller's contract).
            drop(unsafe { Box::from_raw(handle) });
        }
    })
}

/// Checks that an out-pointer is not NULL.
pub(crate) fn out<T>(ptr: *mut T, name: &str) -> Result<Out<T>, Failure> {
    if ptr.is_null() {
        Err(Failure::null(name))
    } else {
        Ok(Out(ptr))
    }
}

/// A checked, non-NULL out-pointer. Written once, on success.
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    /// Writes `value` without reading or dropping what the memory held (C may hand us
    /// uninitialised memory).
    ///
    /// # Safety
    ///
    /// The pointer given to [`out`] points to writable memory for a `T`, suitably aligned.
    #[inline(always)]
    pub(crate) unsafe fn write(self, value: T) {
        // SAFETY: non-NULL (checked by `out`); writable and aligned (the caller's contract).
        unsafe { self.0.write(value) }
    }
}

/// The `len` bytes at `ptr`. A zero length is an empty slice whatever `ptr` is.
///
/// # Safety
///
/// `ptr` is NULL or points to `len` readable bytes that stay unchanged during the call.
pub(crate) unsafe fn bytes<'a>(
    ptr: *const u8,
    len: usize,
    name: &str,
) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::null(name));
    }
    if len > isize::MAX as usize {
        return Err(Failure::new(
            FK_STATUS_INVALID_ARGUMENT,
            format!("`{name}` is {len} bytes long: no object is that large"),
        ));
    }
    // SAFETY: non-NULL, `len` readable bytes (the caller's contract), len <= isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The text of `len` bytes at `ptr`, which must be UTF-8.
///
/// # Safety
///
/// As for [`bytes`].
pub(crate) unsafe fn text<'a>(
    ptr: *const c_char,
    len: usize,
    name: &str,
) -> Result<&'a str, Failure> {
    // SAFETY: forwarded from the caller.
    let raw = unsafe { bytes(ptr.cast(), len, name) }?;
    std::str::from_utf8(raw).map_err(|e| {
        Failure::new(
            FK_STATUS_INVALID_UTF8,
            format!("`{name}` is not valid UTF-8: {e}"),
        )
    })
}

/// A directory argument: UTF-8 text that is not empty.
///
/// # Safety
///
/// As for [`bytes`].
pub(crate) unsafe fn directory<'a>(
    ptr: *const c_char,
    len: usize,
    whose: &str,
) -> Result<&'a str, Failure> {
    // SAFETY: forwarded from the caller.
    let dir = unsafe { text(ptr, len, "dir") }?;
    if dir.is_empty() {
        return Err(Failure::new(
            FK_STATUS_INVALID_ARGUMENT,
            format!("`dir` is empty: name the {whose}'s directory"),
        ));
    }
    Ok(dir)
}

/// Passes `status` on and, if it is a failure (whatever the reason: a NULL or poisoned fence,
/// bad input, an I/O error, a panic), writes a rejection (all zero) to `*out` unless `out` is
/// NULL, so that an output reused from an earlier call never says "accepted" after a call
/// that failed. Nothing here can panic.
///
/// # Safety
///
/// `out` is NULL or writable.
pub(crate) unsafe fn reject_on_failure<T: Default>(status: fk_status, out: *mut T) -> fk_status {
    if status != FK_STATUS_OK && !out.is_null() {
        // SAFETY: non-NULL and writable (the caller's contract).
        unsafe { out.write(T::default()) };
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Thing(AtomicBool);

    impl Handle for Thing {
        fn poison(&self) -> &AtomicBool {
            &self.0
        }
    }

    fn last_message() -> String {
        // SAFETY: fk_last_error_message returns a valid NUL-terminated string.
        unsafe { std::ffi::CStr::from_ptr(crate::last_error::fk_last_error_message()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_and_poisons_the_handle_for_good() {
        let thing = Thing(AtomicBool::new(false));
        let status = with_handle(Some(&thing), "thing", |_| panic!("planted"));
        assert_eq!(status, FK_STATUS_PANIC);
        assert!(last_message().contains("planted"), "{}", last_message());
        let mut ran = false;
        let status = with_handle(Some(&thing), "thing", |_| {
            ran = true;
            Ok(())
        });
        assert_eq!(status, FK_STATUS_POISONED);
        assert!(!ran, "a poisoned handle must not run anything");
    }

    #[test]
    fn null_handles_and_pointers_are_refused_by_name() {
        let status = with_handle::<Thing>(None, "fence", |_| Ok(()));
        assert_eq!(status, FK_STATUS_NULL_ARGUMENT);
        assert!(last_message().contains("`fence`"));
        assert!(out::<u32>(std::ptr::null_mut(), "out_id").is_err());
        // SAFETY: a NULL pointer with a non-zero length is refused before any read.
        assert!(unsafe { bytes(std::ptr::null(), 3, "key") }.is_err());
        // SAFETY: zero length reads nothing.
        assert_eq!(unsafe { bytes(std::ptr::null(), 0, "key") }.unwrap(), b"");
    }

    #[test]
    fn messages_survive_interior_nul_and_bad_utf8_is_named() {
        record(Failure::new(FK_STATUS_IO, "a\0b"));
        assert_eq!(last_message(), "a\\0b");
        let bad = [b'o', 0xFF];
        // SAFETY: `bad` is two readable bytes.
        let err = unsafe { text(bad.as_ptr().cast(), 2, "path") }.unwrap_err();
        assert_eq!(err.status, FK_STATUS_INVALID_UTF8);
        assert!(err.message.contains("`path`"));
    }
}
