//! The thread's last error message: the reason behind the latest failing status.

use std::cell::RefCell;
use std::ffi::{CString, c_char};

use crate::boundary::{Failure, infallible};
use crate::status::fk_status;

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

pub(crate) fn record(failure: Failure) -> fk_status {
    // A message is text for people: an interior NUL (from a path, say) would cut it short.
    let message = CString::new(failure.message.replace('\0', "\\0"))
        .unwrap_or_else(|_| c"(unprintable message)".to_owned());
    // A thread being torn down has no storage left; the status still says what happened.
    let _ = LAST_ERROR.try_with(|last| *last.borrow_mut() = Some(message));
    failure.status
}

/// The message of the latest failed call on this thread, or "" if none failed yet. Success
/// does not clear it. The pointer stays valid until the next failing call on this thread;
/// copy the text to keep it. Never free it.
///
/// Thread safety: any thread; each thread has its own message.
#[unsafe(no_mangle)]
pub extern "C" fn fk_last_error_message() -> *const c_char {
    infallible(c"".as_ptr(), || {
        LAST_ERROR
            .try_with(|last| match &*last.borrow() {
                Some(message) => message.as_ptr(),
                None => c"".as_ptr(),
            })
            .unwrap_or(c"".as_ptr())
    })
}
