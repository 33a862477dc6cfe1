//! The plumbing every export goes through: the panic boundary, the thread's last error, and
//! the checks that turn C pointers into Rust references.
//!
//! Every export begins with one of the prologues below, after at most borrowing its pointer
//! arguments (`let (fence, out) = unsafe { (fence.as_ref(), Out::new(out)) };`; `tests/abi.rs`
//! checks every export for it). Each does, in this one place, what every export would
//! otherwise write again: take the handle (NULL is
//! `FK_STATUS_NULL_ARGUMENT` naming it, a poisoned one `FK_STATUS_POISONED`), check the
//! out-pointer, run the body inside the panic boundary, record a failure's message for
//! `fk_last_error_message` and return the status.
//!
//! | prologue                       | handle | what a call writes to `*out`                  |
//! |--------------------------------|--------|-----------------------------------------------|
//! | [`with_handle`]                | yes    | nothing (or what the body writes itself)      |
//! | [`with_handle_out`]            | yes    | the body's answer, only on success            |
//! | [`with_handle_out_or_reject`]  | yes    | the answer on success, all zero on failure    |
//! | [`without_handle`]             | no     | nothing                                       |
//! | [`without_handle_out`]         | no     | the body's answer, only on success            |
//! | [`infallible`]                 | no     | a value returned, not a status                |
//!
//! Every prologue checks in one order, so the status of a call with several bad arguments does
//! not depend on the export: the handle, then the out-pointer, then (in the body) the inputs.
//!
//! A panic never crosses into C (unwinding into a C frame is undefined behaviour): it is caught
//! here and becomes `FK_STATUS_PANIC`, and the handle the call was made on is *poisoned*. A
//! poisoned handle refuses every later call with `FK_STATUS_POISONED`, so a fence whose state
//! a bug may have left half-changed never accepts another write (I7: fail closed).
//!
//! An out-pointer is written through [`Out`], whose one `unsafe` write is argued once, from the
//! contract of [`Out::new`]; only `fk_fence_check_batch`'s array of verdicts is written by
//! index.

use std::any::Any;
use std::ffi::c_char;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use kernel::{FenceError, LogError, NodeError, TransportError};

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

/// A kernel error of any layer: the status of its kind, and its message.
macro_rules! failure_from {
    ($($error:ty),*) => {$(
        impl From<$error> for Failure {
            fn from(error: $error) -> Failure {
                Failure::new(status::of(error.kind()), error.to_string())
            }
        }
    )*};
}
failure_from!(NodeError, FenceError, LogError, TransportError);

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

/// Runs `body` on `handle`, the argument called `name`: `None` (a NULL pointer) gives
/// `FK_STATUS_NULL_ARGUMENT` naming the argument, a poisoned handle `FK_STATUS_POISONED`, a
/// panic `FK_STATUS_PANIC` (and poisons the handle).
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

/// [`with_handle`] for a body that answers: its answer is written to `out` (the argument
/// called `out_name`; `None` is NULL) when the call succeeds, and nothing is written when it
/// fails.
#[inline(always)]
pub(crate) fn with_handle_out<H: Handle, T>(
    handle: Option<&H>,
    name: &str,
    out: Option<Out<'_, T>>,
    out_name: &str,
    body: impl FnOnce(&H) -> Result<T, Failure>,
) -> fk_status {
    with_handle(handle, name, |h| answer_into(out, out_name, || body(h)))
}

/// [`with_handle_out`] for an answer that says whether a write may land: a call that fails,
/// whatever the reason (a NULL or poisoned handle, bad input, an I/O error, a panic), writes
/// `T::default()`, a rejection, to a non-NULL `out`, so that an output reused from an earlier
/// call never says "accepted" after a call that failed (I7). Always inlined: the fence check
/// across the ABI is measured in nanoseconds.
#[inline(always)]
pub(crate) fn with_handle_out_or_reject<H: Handle, T: Default>(
    handle: Option<&H>,
    name: &str,
    mut out: Option<Out<'_, T>>,
    out_name: &str,
    body: impl FnOnce(&H) -> Result<T, Failure>,
) -> fk_status {
    // The boundary answers a NULL or poisoned handle, and a panic, without running the body,
    // so the rejection is written out here, after it. Nothing out here can panic.
    infallible(FK_STATUS_PANIC, || {
        let status = with_handle_out(
            handle,
            name,
            out.as_mut().map(Out::reborrow),
            out_name,
            body,
        );
        if status != FK_STATUS_OK
            && let Some(out) = out
        {
            out.write(T::default());
        }
        status
    })
}

/// Checks `out`, the argument called `out_name`, then runs `body` and writes its answer: the
/// body never runs with nowhere to put its answer (leaving its side effects unreported).
#[inline(always)]
fn answer_into<T>(
    out: Option<Out<'_, T>>,
    out_name: &str,
    body: impl FnOnce() -> Result<T, Failure>,
) -> Result<(), Failure> {
    let out = out.ok_or_else(|| Failure::null(out_name))?;
    out.write(body()?);
    Ok(())
}

/// Runs `body`, which has no handle to poison (constructors, inspection).
#[inline(always)]
pub(crate) fn without_handle(body: impl FnOnce() -> Result<(), Failure>) -> fk_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => FK_STATUS_OK,
        Ok(Err(failure)) => record(failure),
        Err(payload) => record(Failure::new(FK_STATUS_PANIC, panic_message(&*payload))),
    }
}

/// [`without_handle`] for a body that answers: its answer is written to `out` (the argument
/// called `out_name`; `None` is NULL) when the call succeeds, and nothing is written when it
/// fails.
pub(crate) fn without_handle_out<T>(
    out: Option<Out<'_, T>>,
    out_name: &str,
    body: impl FnOnce() -> Result<T, Failure>,
) -> fk_status {
    without_handle(|| answer_into(out, out_name, body))
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

/// A C out-pointer that is not NULL, to memory for a `T` (perhaps uninitialised) that is
/// writable while `'a` lasts. Making one from the raw pointer is the only `unsafe` step (the
/// contract of [`Out::new`]); writing through it is safe, and consumes it. It writes through
/// the raw pointer and makes no reference to the memory, so it claims no more of the memory
/// than C's own store to it would.
pub(crate) struct Out<'a, T> {
    ptr: NonNull<T>,
    memory: PhantomData<&'a mut T>,
}

impl<'a, T> Out<'a, T> {
    /// The out-pointer `ptr`, or `None` for NULL.
    ///
    /// # Safety
    ///
    /// `ptr` is NULL or points to memory writable for a `T`, suitably aligned, while `'a`
    /// lasts (the `# Safety` of every export that takes an out-pointer says so of it). The
    /// memory may be uninitialised: it is never read.
    #[inline(always)]
    pub(crate) unsafe fn new(ptr: *mut T) -> Option<Out<'a, T>> {
        NonNull::new(ptr).map(|ptr| Out {
            ptr,
            memory: PhantomData,
        })
    }

    /// Writes `value` without reading or dropping what the memory held (C may hand us
    /// uninitialised memory).
    #[inline(always)]
    pub(crate) fn write(self, value: T) {
        // SAFETY: the one place an out-pointer is written. Not NULL (checked by `new`);
        // writable and aligned for a `T` while `'a` lasts (the contract of `new`, which every
        // export forwards from its own `# Safety`).
        unsafe { self.ptr.as_ptr().write(value) }
    }

    /// The same out-pointer for a shorter while, leaving this one to write after it.
    #[inline(always)]
    pub(crate) fn reborrow(&mut self) -> Out<'_, T> {
        Out {
            ptr: self.ptr,
            memory: PhantomData,
        }
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
        // SAFETY: NULL is never written.
        assert!(unsafe { Out::<u32>::new(std::ptr::null_mut()) }.is_none());
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

    /// The out-pointer of `answer`, as an export makes it from its argument.
    fn out_of(answer: &mut u64) -> Option<Out<'_, u64>> {
        // SAFETY: a reference is writable, aligned and ours alone while it lives.
        unsafe { Out::new(answer) }
    }

    /// An answer reaches `*out` only when the call succeeds; a NULL out-pointer is refused by
    /// name before the body runs (its side effects included).
    #[test]
    fn an_answer_is_written_only_on_success_and_a_null_output_runs_nothing() {
        let thing = Thing(AtomicBool::new(false));
        let mut answer = 7u64;
        let status = with_handle_out(Some(&thing), "thing", out_of(&mut answer), "out", |_| {
            Ok(42)
        });
        assert_eq!((status, answer), (FK_STATUS_OK, 42));
        let status = with_handle_out(Some(&thing), "thing", out_of(&mut answer), "out", |_| {
            Err::<u64, _>(Failure::new(FK_STATUS_IO, "planted"))
        });
        assert_eq!(
            (status, answer),
            (FK_STATUS_IO, 42),
            "a failure writes nothing"
        );
        let mut ran = false;
        let status = with_handle_out(Some(&thing), "thing", None::<Out<'_, u64>>, "out_x", |_| {
            ran = true;
            Ok(1)
        });
        assert_eq!(status, FK_STATUS_NULL_ARGUMENT);
        assert!(last_message().contains("`out_x`"), "{}", last_message());
        assert!(!ran, "the body ran with nowhere to put its answer");
        let status = without_handle_out(out_of(&mut answer), "out", || Ok(5));
        assert_eq!((status, answer), (FK_STATUS_OK, 5));
    }

    /// What failed, the handle, the body, and the status it must give.
    type Case<'a> = (
        &'a str,
        Option<&'a Thing>,
        fn(&Thing) -> Result<u64, Failure>,
        fk_status,
    );

    /// I7: whatever makes a call that answers "may the write land" fail (a NULL handle, bad
    /// input, a panic, the poison the panic left), a reused output reads as a rejection.
    #[test]
    fn every_failure_of_an_answer_that_may_accept_writes_a_rejection() {
        let thing = Thing(AtomicBool::new(false));
        let failures: [Case<'_>; 4] = [
            ("a NULL handle", None, |_| Ok(1), FK_STATUS_NULL_ARGUMENT),
            (
                "bad input",
                Some(&thing),
                |_| Err(Failure::null("key")),
                FK_STATUS_NULL_ARGUMENT,
            ),
            (
                "a panic",
                Some(&thing),
                |_| panic!("planted"),
                FK_STATUS_PANIC,
            ),
            ("the poison", Some(&thing), |_| Ok(1), FK_STATUS_POISONED),
        ];
        for (what, handle, body, expected) in failures {
            let mut answer = 1u64;
            let status =
                with_handle_out_or_reject(handle, "thing", out_of(&mut answer), "out", body);
            assert_eq!((status, answer), (expected, 0), "{what}");
        }
    }
}
