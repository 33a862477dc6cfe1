//! `fk_buf`: bytes that fencekit allocated and hands to the caller.

use crate::boundary;

/// Bytes owned by the caller once returned: release them with `fk_buf_release`. `data[len]`
/// is a NUL byte (not counted in `len`), so text can be used as a C string directly.
#[repr(C)]
#[derive(Debug)]
pub struct fk_buf {
    /// The bytes; NULL for an empty, released buffer.
    pub data: *mut u8,
    /// How many bytes, not counting the NUL after them.
    pub len: usize,
}

impl fk_buf {
    pub(crate) fn new(mut bytes: Vec<u8>) -> fk_buf {
        let len = bytes.len();
        bytes.push(0);
        let data = Box::into_raw(bytes.into_boxed_slice()).cast::<u8>();
        fk_buf { data, len }
    }
}

/// Frees the bytes of `*buf` and sets it to `{NULL, 0}`, so releasing twice is harmless.
/// NULL, and a buffer whose `data` is NULL, are no-ops.
///
/// Thread safety: any thread, once per buffer.
///
/// # Safety
///
/// `buf` is NULL or points to an `fk_buf` that fencekit filled in (or one already released).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_buf_release(buf: *mut fk_buf) {
    boundary::infallible((), || {
        // SAFETY: NULL or a valid fk_buf (the caller's contract).
        let Some(buf) = (unsafe { buf.as_mut() }) else {
            return;
        };
        if !buf.data.is_null() {
            let slice = std::ptr::slice_from_raw_parts_mut(buf.data, buf.len + 1);
            // SAFETY: `data` and `len + 1` are those of the boxed slice `fk_buf::new` leaked.
            drop(unsafe { Box::from_raw(slice) });
        }
        buf.data = std::ptr::null_mut();
        buf.len = 0;
    })
}
