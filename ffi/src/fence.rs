//! `fk_fence`: the storage side's durable fencing check.

use std::ffi::c_char;
use std::sync::atomic::AtomicBool;

use kernel::limits::{BATCH_MAX, KEY_LEN_MAX};
use std::collections::HashMap;
use std::sync::Arc;

use kernel::fence::validate_key_len;
use kernel::{Fence, FenceOptions, ResourceId, WalOptions, WriteVerdict};

use crate::boundary::{
    self, Failure, Handle, Out, bytes, with_handle, with_handle_out, with_handle_out_or_reject,
    without_handle_out,
};
use crate::policy::fk_policy;
use crate::status::*;
use crate::token::{fk_token, fk_verdict};

/// The longest resource key, in bytes.
pub const FK_KEY_LEN_MAX: usize = 256;
/// The most items in one `fk_fence_check_batch` call.
pub const FK_BATCH_MAX: usize = 4096;
const _: () = assert!(FK_KEY_LEN_MAX == KEY_LEN_MAX && FK_BATCH_MAX == BATCH_MAX);

/// A fence: the durable high-water mark of every resource of one storage. Open it with
/// `fk_fence_open`, free it with `fk_fence_free`.
pub struct fk_fence {
    pub(crate) fence: Fence,
    poison: AtomicBool,
}

impl Handle for fk_fence {
    fn poison(&self) -> &AtomicBool {
        &self.poison
    }
}

/// Options of `fk_fence_open`. Fill them with `fk_fence_options_default`, then change what
/// you need.
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct fk_fence_options {
    /// How many resources the fence can hold: 1 to 2^20. Memory for all of them is reserved
    /// at open (about 90 bytes each).
    pub max_resources: u64,
    /// Compact the log once it has grown this many bytes beyond its last snapshot: 4 KiB to
    /// 2^48 (which means never).
    pub compact_after_bytes: u64,
    /// Size of each log segment file: a multiple of 4096 from 64 KiB to 1 GiB.
    pub segment_size: u64,
}

/// One item of `fk_fence_check_batch`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct fk_check_item {
    /// A resource id from `fk_fence_register` on this fence (any other fails the batch with
    /// `FK_STATUS_INVALID_BATCH`, naming the item).
    pub resource: u32,
    /// Zero.
    pub reserved: u32,
    /// The token the write carries.
    pub token: fk_token,
}

/// What a fence decided for one resource since it was opened (not persisted).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct fk_counters {
    /// Checks answered `FK_VERDICT_ACCEPTED` while counting them was on (see
    /// `fk_fence_set_count_accepted`).
    pub accepted: u64,
    /// Checks answered `FK_VERDICT_ADVANCED`.
    pub advanced: u64,
    /// Checks answered `FK_VERDICT_STALE`.
    pub stale: u64,
    /// Conflicts met, however the tie-breaker settled them.
    pub conflicts: u64,
}

/// Writes the default options to `*out`.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `out` is NULL or points to writable memory for an `fk_fence_options`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_options_default(out: *mut fk_fence_options) -> fk_status {
    // SAFETY: `out` is NULL or writable (the caller's contract).
    let out = unsafe { Out::new(out) };
    without_handle_out(out, "out", || {
        let defaults = FenceOptions::default();
        Ok(fk_fence_options {
            max_resources: defaults.max_resources as u64,
            compact_after_bytes: defaults.compact_after_bytes,
            segment_size: defaults.wal.segment_size,
        })
    })
}

/// Opens (creating if needed) the fence whose log is in the directory `dir` (UTF-8, `dir_len`
/// bytes, no NUL needed), restoring every mark. `options` NULL means the defaults. On success
/// `*out` is the new fence, which the caller frees with `fk_fence_free`.
///
/// Fails with `FK_STATUS_LOCKED` if another open fence (in any process) holds the directory,
/// `FK_STATUS_CORRUPT` if its log is damaged before its tail.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `dir` points to `dir_len` readable bytes; `options` is NULL or readable; `out` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_open(
    dir: *const c_char,
    dir_len: usize,
    options: *const fk_fence_options,
    out: *mut *mut fk_fence,
) -> fk_status {
    // SAFETY: `out` is NULL or writable (the caller's contract).
    let out = unsafe { Out::new(out) };
    without_handle_out(out, "out", || {
        // SAFETY: `dir_len` readable bytes (the caller's contract).
        let dir = unsafe { boundary::directory(dir, dir_len, "fence") }?;
        // SAFETY: NULL or readable (the caller's contract).
        let options = match unsafe { options.as_ref() } {
            None => FenceOptions::default(),
            Some(o) => FenceOptions {
                max_resources: usize::try_from(o.max_resources).unwrap_or(usize::MAX),
                compact_after_bytes: o.compact_after_bytes,
                wal: WalOptions {
                    segment_size: o.segment_size,
                    ..WalOptions::default()
                },
                ..FenceOptions::default()
            },
        };
        let fence = Fence::open(dir, options)?;
        Ok(Box::into_raw(Box::new(fk_fence {
            fence,
            poison: AtomicBool::new(false),
        })))
    })
}

/// Closes the fence and frees it. NULL is a no-op. Every mark it reported is already durable.
///
/// Thread safety: call once, after every other call on this fence has returned.
///
/// # Safety
///
/// `fence` is NULL or a fence from `fk_fence_open` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_free(fence: *mut fk_fence) {
    // SAFETY: NULL or a live fence from fk_fence_open, freed once (the caller's contract).
    unsafe { boundary::free(fence) }
}

/// Registers the resource named `key` (1 to `FK_KEY_LEN_MAX` bytes) and writes its id to
/// `*out_resource`. Registering a key again gives the same id. Ids are valid only with this
/// fence, and only until it is freed; keys are what lasts.
///
/// Thread safety: any thread, concurrently with any call but `fk_fence_free`.
///
/// # Safety
///
/// `fence` is NULL or live; `key` points to `key_len` readable bytes; `out_resource` is NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_register(
    fence: *const fk_fence,
    key: *const u8,
    key_len: usize,
    out_resource: *mut u32,
) -> fk_status {
    // SAFETY: `fence` is NULL or live; `out_resource` is NULL or writable (the caller's
    // contract).
    let (fence, out_resource) = unsafe { (fence.as_ref(), Out::new(out_resource)) };
    with_handle_out(fence, "fence", out_resource, "out_resource", |f| {
        validate_key_len(key_len)?;
        // SAFETY: `key_len` readable bytes (the caller's contract).
        let key = unsafe { bytes(key, key_len, "key") }?;
        Ok(f.fence.register(key)?.as_u32())
    })
}

/// Writes the id of the resource named `key` to `*out_resource`. Fails with
/// `FK_STATUS_INVALID_KEY` for a key no fence can hold (empty, or longer than
/// `FK_KEY_LEN_MAX`), as `fk_fence_register` does, and with `FK_STATUS_UNKNOWN_RESOURCE` for
/// a valid key that is not registered.
///
/// Thread safety: any thread, concurrently with any call but `fk_fence_free`.
///
/// # Safety
///
/// As for `fk_fence_register`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_lookup(
    fence: *const fk_fence,
    key: *const u8,
    key_len: usize,
    out_resource: *mut u32,
) -> fk_status {
    // SAFETY: `fence` is NULL or live; `out_resource` is NULL or writable (the caller's
    // contract).
    let (fence, out_resource) = unsafe { (fence.as_ref(), Out::new(out_resource)) };
    with_handle_out(fence, "fence", out_resource, "out_resource", |f| {
        // A bad key is bad, not unregistered: the same answer as registering it.
        validate_key_len(key_len)?;
        // SAFETY: `key_len` readable bytes (the caller's contract).
        let key = unsafe { bytes(key, key_len, "key") }?;
        let id = f.fence.lookup(key).ok_or_else(|| {
            Failure::new(
                FK_STATUS_UNKNOWN_RESOURCE,
                format!(
                    "no resource is registered under the key {:?}",
                    String::from_utf8_lossy(key)
                ),
            )
        })?;
        Ok(id.as_u32())
    })
}

/// Checks `token` for `resource` and writes the verdict to `*out`. The hot path: when the
/// token is the current mark this is a few atomic loads, with no allocation, lock or syscall.
/// An advance makes the new mark durable (fdatasync) before it returns.
///
/// Only `FK_VERDICT_ACCEPTED` and `FK_VERDICT_ADVANCED` let the write land. Any status but
/// `FK_STATUS_OK` is a rejection too, and writes `FK_VERDICT_NONE` (all zero) to `*out`, so
/// that a verdict reused from an earlier call never reads "accepted" after a failed one.
///
/// Thread safety: any thread, concurrently with any call but `fk_fence_free`.
///
/// # Safety
///
/// `fence` is NULL or live; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_check(
    fence: *const fk_fence,
    resource: u32,
    token: fk_token,
    out: *mut fk_verdict,
) -> fk_status {
    // SAFETY: `fence` is NULL or live; `out` is NULL or writable (the caller's contract).
    let (fence, out) = unsafe { (fence.as_ref(), Out::new(out)) };
    with_handle_out_or_reject(fence, "fence", out, "out", |f| {
        let token = token.to_kernel()?;
        answer(f.fence.check(ResourceId::from_u32(resource), token), token)
    })
}

/// The kernel's answer to `token` as the ABI writes it. The verdict is converted here, straight
/// from the kernel's result: moved first into a `Result` of another layout, it was copied
/// through the stack in pieces whose reload stalled on store forwarding (measured: 10.5 ns a
/// check instead of 6).
#[inline(always)]
pub(crate) fn answer(
    result: Result<kernel::Verdict, kernel::FenceError>,
    token: kernel::Token,
) -> Result<fk_verdict, Failure> {
    match result {
        Ok(verdict) => Ok(fk_verdict::new(verdict, token)),
        Err(e) => Err(e.into()),
    }
}

/// `fk_fence_check` for the resource named `key`, registering the key if it is new.
///
/// Thread safety: any thread, concurrently with any call but `fk_fence_free`.
///
/// # Safety
///
/// `fence` is NULL or live; `key` points to `key_len` readable bytes; `out` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_check_key(
    fence: *const fk_fence,
    key: *const u8,
    key_len: usize,
    token: fk_token,
    out: *mut fk_verdict,
) -> fk_status {
    // SAFETY: `fence` is NULL or live; `out` is NULL or writable (the caller's contract).
    let (fence, out) = unsafe { (fence.as_ref(), Out::new(out)) };
    with_handle_out_or_reject(fence, "fence", out, "out", |f| {
        let token = token.to_kernel()?;
        validate_key_len(key_len)?;
        // SAFETY: `key_len` readable bytes (the caller's contract).
        let key = unsafe { bytes(key, key_len, "key") }?;
        answer(f.fence.check_key(key, token), token)
    })
}

/// Checks `len` items (at most `FK_BATCH_MAX`) and writes their verdicts to `verdicts[0..len]`
/// in order: one crossing of the ABI for many writes. No allocation, no lock beyond the
/// checks' own.
///
/// Every item is validated first: a resource id this fence never handed out, or a token that
/// is not valid, fails the whole batch with `FK_STATUS_INVALID_BATCH` and nothing checked; the
/// message begins `item <index>: ` (counting from 0) and says what is wrong with that item,
/// such as `item 2: unknown resource id 4242: ...`. An I/O error during an advance stops the
/// batch; the items before it took effect (a mark they advanced stays advanced, and checking
/// them again accepts them).
///
/// The one exception to "outputs only on success": a call that fails, whatever the reason (a
/// NULL or poisoned fence, NULL `items`, `len` over `FK_BATCH_MAX`, a bad item, an I/O error, a
/// panic), writes `FK_VERDICT_NONE`, a rejection, to every one of the `len` verdicts, those of
/// items checked before the failure included. So an array reused from an earlier call never
/// says "accepted" after a call that failed. Only a NULL `verdicts`, or a `len` no array can
/// have (`len * sizeof(fk_verdict)` over `PTRDIFF_MAX`), leaves the verdicts unwritten.
///
/// Thread safety: any thread, concurrently with any call but `fk_fence_free`.
///
/// # Safety
///
/// `fence` is NULL or live; `items` points to `len` readable items; `verdicts` is NULL or
/// points to room for `len` verdicts, whatever `len` is (a failed call writes them all, even
/// when `len` is over `FK_BATCH_MAX`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_check_batch(
    fence: *const fk_fence,
    items: *const fk_check_item,
    verdicts: *mut fk_verdict,
    len: usize,
) -> fk_status {
    // `with_handle` answers a NULL or poisoned fence, and a panic, without the body, so the
    // verdicts are rejected out here, after it, whatever failed. Nothing out here can panic.
    boundary::infallible(FK_STATUS_PANIC, || {
        // SAFETY: `fence` is NULL or live (the caller's contract).
        let fence = unsafe { fence.as_ref() };
        let status = with_handle(fence, "fence", |f| {
            if len > FK_BATCH_MAX {
                return Err(Failure::new(
                    FK_STATUS_INVALID_BATCH,
                    format!("{len} items; a batch holds at most {FK_BATCH_MAX}"),
                ));
            }
            if len == 0 {
                return Ok(());
            }
            if items.is_null() {
                return Err(Failure::null("items"));
            }
            if verdicts.is_null() {
                return Err(Failure::null("verdicts"));
            }
            // SAFETY: non-NULL, `len` (at most FK_BATCH_MAX) readable items (the caller's
            // contract).
            let items = unsafe { std::slice::from_raw_parts(items, len) };
            f.fence.check_batch_by(
                len,
                |i| {
                    Ok((
                        ResourceId::from_u32(items[i].resource),
                        items[i].token.to_kernel()?,
                    ))
                },
                |i, token, verdict| {
                    // SAFETY: room for `len` verdicts (the caller's contract); i < len.
                    unsafe { verdicts.add(i).write(fk_verdict::new(verdict, token)) };
                },
            )?;
            Ok(())
        });
        if status != FK_STATUS_OK {
            // SAFETY: `verdicts` is NULL or has room for `len` verdicts (the caller's
            // contract).
            unsafe { reject_all(verdicts, len) };
        }
        status
    })
}

/// The most verdicts an array can hold: no object is larger than `isize::MAX` bytes. A longer
/// `len` is no array's length, so nothing is written for it.
const VERDICTS_MAX: usize = isize::MAX as usize / std::mem::size_of::<fk_verdict>();

/// Writes `FK_VERDICT_NONE` to `verdicts[0..len]`, without reading what they held (C may hand
/// us uninitialised memory): I7, a failed batch leaves no verdict that reads as acceptance.
///
/// # Safety
///
/// `verdicts` is NULL or points to room for `len` verdicts.
unsafe fn reject_all(verdicts: *mut fk_verdict, len: usize) {
    if verdicts.is_null() || len > VERDICTS_MAX {
        return;
    }
    for i in 0..len {
        // SAFETY: room for `len` verdicts (the caller's contract); i < len.
        unsafe { verdicts.add(i).write(fk_verdict::default()) };
    }
}

/// Writes the current mark of `resource` to `*out`: the all-zero token if it has none yet.
///
/// Thread safety: any thread, concurrently with any call but `fk_fence_free`.
///
/// # Safety
///
/// `fence` is NULL or live; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_mark(
    fence: *const fk_fence,
    resource: u32,
    out: *mut fk_token,
) -> fk_status {
    // SAFETY: `fence` is NULL or live; `out` is NULL or writable (the caller's contract).
    let (fence, out) = unsafe { (fence.as_ref(), Out::new(out)) };
    with_handle_out(fence, "fence", out, "out", |f| {
        let mark = f.fence.mark(ResourceId::from_u32(resource))?;
        Ok(fk_token::from_kernel(mark))
    })
}

/// Writes what the fence decided for `resource` since it was opened to `*out`.
///
/// Thread safety: any thread, concurrently with any call but `fk_fence_free`.
///
/// # Safety
///
/// `fence` is NULL or live; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_counters(
    fence: *const fk_fence,
    resource: u32,
    out: *mut fk_counters,
) -> fk_status {
    // SAFETY: `fence` is NULL or live; `out` is NULL or writable (the caller's contract).
    let (fence, out) = unsafe { (fence.as_ref(), Out::new(out)) };
    with_handle_out(fence, "fence", out, "out", |f| {
        let c = f.fence.counters(ResourceId::from_u32(resource))?;
        Ok(fk_counters {
            accepted: c.accepted,
            advanced: c.advanced,
            stale: c.stale,
            conflicts: c.conflicts,
        })
    })
}

/// Turns the counting of accepted checks (`fk_counters.accepted`) on (`on` true) or off; it
/// is on when a fence opens. A host that never reads that count turns it off to take its cost
/// off the hot path of `fk_fence_check`; the other counts are kept either way, and so are the
/// accepted checks counted so far.
///
/// Thread safety: any thread, concurrently with any call but `fk_fence_free`.
///
/// # Safety
///
/// `fence` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_set_count_accepted(
    fence: *const fk_fence,
    on: bool,
) -> fk_status {
    // SAFETY: `fence` is NULL or live (the caller's contract).
    let fence = unsafe { fence.as_ref() };
    with_handle(fence, "fence", |f| {
        f.fence.set_count_accepted(on);
        Ok(())
    })
}

/// Writes the number of registered resources to `*out`. Their ids are `0 .. *out`.
///
/// Thread safety: any thread, concurrently with any call but `fk_fence_free`.
///
/// # Safety
///
/// `fence` is NULL or live; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_len(fence: *const fk_fence, out: *mut usize) -> fk_status {
    // SAFETY: `fence` is NULL or live; `out` is NULL or writable (the caller's contract).
    let (fence, out) = unsafe { (fence.as_ref(), Out::new(out)) };
    with_handle_out(fence, "fence", out, "out", |f| Ok(f.fence.len()))
}

/// Rewrites the fence's log as one snapshot of the current marks. It also runs by itself as
/// the log grows; checks go on meanwhile, advances wait.
///
/// Thread safety: any thread, concurrently with any call but `fk_fence_free`.
///
/// # Safety
///
/// `fence` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_compact(fence: *const fk_fence) -> fk_status {
    // SAFETY: `fence` is NULL or live (the caller's contract).
    let fence = unsafe { fence.as_ref() };
    with_handle(fence, "fence", |f| Ok(f.fence.compact()?))
}

/// The answer to `fk_fence_check_write`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct fk_write_verdict {
    /// The fence's verdict on the token (as `fk_fence_check` gives it).
    pub fence: fk_verdict,
    /// 1 when the write may land: the fence accepted the token and the validator, if any, the
    /// payload. 0 otherwise.
    pub accepted: u32,
    /// When the fence accepted the token but the validator refused the payload: its reason
    /// code (1 to 65535 from the plugin, or 65536 and up when the plugin itself failed:
    /// 65536 trapped, 65537 deadline, 65538 bad answer, 65539 too large, 65540 failed).
    /// 0 otherwise.
    pub rejection_code: u32,
}

/// Attaches `policy` (a validator) to the fence: `fk_fence_check_write` asks it about every
/// payload whose token the fence accepts. NULL detaches the validator. The fence keeps its own
/// reference; every validator ever attached stays in memory until the fence is freed, so
/// attach rarely (at start, on a policy reload), not per request.
///
/// Thread safety: any thread, concurrently with any call but `fk_fence_free`.
///
/// # Safety
///
/// `fence` is NULL or live; `policy` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_set_validator(
    fence: *const fk_fence,
    policy: *const fk_policy,
) -> fk_status {
    // SAFETY: `fence` is NULL or live (the caller's contract).
    let fence = unsafe { fence.as_ref() };
    with_handle(fence, "fence", |f| {
        // SAFETY: NULL or live (the caller's contract).
        let validator = match unsafe { policy.as_ref() } {
            None => None,
            Some(p) => Some(
                p.validator
                    .clone()
                    .ok_or_else(crate::policy::not_a_validator)?,
            ),
        };
        f.fence.set_validator(validator);
        Ok(())
    })
}

/// Attaches `policy` (a tie-breaker) to the fence: it settles conflicts (two holders of one
/// generation) from then on. NULL restores the default, which rejects every conflict.
///
/// Thread safety: any thread, concurrently with any call but `fk_fence_free`.
///
/// # Safety
///
/// `fence` is NULL or live; `policy` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_set_tie_breaker(
    fence: *const fk_fence,
    policy: *const fk_policy,
) -> fk_status {
    // SAFETY: `fence` is NULL or live (the caller's contract).
    let fence = unsafe { fence.as_ref() };
    with_handle(fence, "fence", |f| {
        // SAFETY: NULL or live (the caller's contract).
        let tie_breaker = match unsafe { policy.as_ref() } {
            None => Arc::new(kernel::RejectConflicts),
            Some(p) => p.tie_breaker_with(HashMap::new())?,
        };
        f.fence.set_tie_breaker(tie_breaker);
        Ok(())
    })
}

/// Checks a write: `token` against the mark of `resource` (as `fk_fence_check`), then, if the
/// fence accepts, the `payload_len` bytes of `payload` with the attached validator. The write
/// may land only when `out->accepted` is 1. A failed call writes all zero to `*out` (not
/// accepted, `FK_VERDICT_NONE`).
///
/// Thread safety: any thread, concurrently with any call but `fk_fence_free`.
///
/// # Safety
///
/// `fence` is NULL or live; `payload` points to `payload_len` readable bytes; `out` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_check_write(
    fence: *const fk_fence,
    resource: u32,
    token: fk_token,
    payload: *const u8,
    payload_len: usize,
    out: *mut fk_write_verdict,
) -> fk_status {
    // SAFETY: `fence` is NULL or live; `out` is NULL or writable (the caller's contract).
    let (fence, out) = unsafe { (fence.as_ref(), Out::new(out)) };
    with_handle_out_or_reject(fence, "fence", out, "out", |f| {
        // SAFETY: `payload_len` readable bytes (the caller's contract).
        let payload = unsafe { bytes(payload, payload_len, "payload") }?;
        let token = token.to_kernel()?;
        let answer = f
            .fence
            .check_write(ResourceId::from_u32(resource), token, payload)?;
        let (accepted, rejection_code) = match &answer {
            WriteVerdict::Accepted(_) => (1, 0),
            WriteVerdict::Fenced(_) => (0, 0),
            WriteVerdict::Invalid { rejection, .. } => (0, rejection.code.max(1)),
        };
        Ok(fk_write_verdict {
            fence: fk_verdict::new(answer.fence_verdict(), token),
            accepted,
            rejection_code,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{FK_VERDICT_ACCEPTED, FK_VERDICT_ADVANCED, FK_VERDICT_NONE};

    /// A fence open in a new temporary directory (which the first item keeps), with the
    /// resource "jobs" registered: its id is the third item.
    fn open_with_jobs() -> (tempfile::TempDir, *mut fk_fence, u32) {
        let dir = tempfile::tempdir().unwrap();
        let fence = open(dir.path());
        let id = register(fence, b"jobs");
        (dir, fence, id)
    }

    fn open(dir: &std::path::Path) -> *mut fk_fence {
        let path = dir.to_str().expect("UTF-8 temp dir");
        let mut fence = std::ptr::null_mut();
        // SAFETY: a valid path and out-pointer.
        let status = unsafe {
            fk_fence_open(
                path.as_ptr().cast(),
                path.len(),
                std::ptr::null(),
                &mut fence,
            )
        };
        assert_eq!(status, FK_STATUS_OK);
        fence
    }

    fn register(fence: *const fk_fence, key: &[u8]) -> u32 {
        let mut id = u32::MAX;
        // SAFETY: a live fence, a valid key and out-pointer.
        let status = unsafe { fk_fence_register(fence, key.as_ptr(), key.len(), &mut id) };
        assert_eq!(status, FK_STATUS_OK);
        id
    }

    const TOKEN: fk_token = fk_token {
        generation: 3,
        holder: 1,
    };

    /// I7: after a panic inside a call on a fence, the fence rejects every later check, even
    /// one of the token that is its current mark.
    #[test]
    fn a_fence_poisoned_by_a_panic_rejects_every_later_check() {
        let (_dir, fence, id) = open_with_jobs();
        let mut verdict = fk_verdict::default();
        // SAFETY: a live fence and a valid out-pointer.
        let status = unsafe { fk_fence_check(fence, id, TOKEN, &mut verdict) };
        assert_eq!((status, verdict.kind), (FK_STATUS_OK, FK_VERDICT_ADVANCED));

        // SAFETY: `fence` is live.
        let handle = unsafe { fence.as_ref() };
        let status = with_handle(handle, "fence", |_| panic!("planted bug"));
        assert_eq!(status, FK_STATUS_PANIC);

        let mut verdict = fk_verdict::default();
        // SAFETY: as above.
        let status = unsafe { fk_fence_check(fence, id, TOKEN, &mut verdict) };
        assert_eq!(status, FK_STATUS_POISONED);
        assert_eq!(verdict.kind, FK_VERDICT_NONE, "no verdict is written");
        let item = fk_check_item {
            resource: id,
            reserved: 0,
            token: TOKEN,
        };
        // An array reused from a call that accepted: the poisoned call rejects its slot.
        let mut verdicts = [fk_verdict {
            kind: FK_VERDICT_ACCEPTED,
            ..fk_verdict::default()
        }];
        // SAFETY: one readable item, room for one verdict.
        let status = unsafe { fk_fence_check_batch(fence, &item, verdicts.as_mut_ptr(), 1) };
        assert_eq!(status, FK_STATUS_POISONED);
        assert_eq!(verdicts[0].kind, FK_VERDICT_NONE);
        let key = b"jobs";
        // SAFETY: as above.
        let status =
            unsafe { fk_fence_check_key(fence, key.as_ptr(), key.len(), TOKEN, &mut verdict) };
        assert_eq!(status, FK_STATUS_POISONED);
        // SAFETY: freed once; freeing a poisoned fence is allowed.
        unsafe { fk_fence_free(fence) };
    }

    /// The hot path allocates nothing: a check of the current mark, one by one or in a batch.
    /// The failing call at the end proves the counter sees allocations (its message is one).
    #[test]
    fn checking_the_current_mark_allocates_nothing() {
        let (_dir, fence, id) = open_with_jobs();
        let mut verdict = fk_verdict::default();
        // SAFETY: a live fence and a valid out-pointer (this first check advances the mark).
        let status = unsafe { fk_fence_check(fence, id, TOKEN, &mut verdict) };
        assert_eq!(status, FK_STATUS_OK);
        let items = [fk_check_item {
            resource: id,
            reserved: 0,
            token: TOKEN,
        }; 64];
        let mut verdicts = [fk_verdict::default(); 64];
        let allocations = crate::alloc_count::allocations_during(|| {
            for _ in 0..1000 {
                // SAFETY: as above.
                let status = unsafe { fk_fence_check(fence, id, TOKEN, &mut verdict) };
                assert_eq!((status, verdict.kind), (FK_STATUS_OK, FK_VERDICT_ACCEPTED));
                // SAFETY: 64 readable items, room for 64 verdicts.
                let status = unsafe {
                    fk_fence_check_batch(fence, items.as_ptr(), verdicts.as_mut_ptr(), 64)
                };
                assert_eq!(status, FK_STATUS_OK);
            }
        });
        assert_eq!(allocations, 0, "the hot path allocated");
        let zero = fk_token::default();
        let allocations = crate::alloc_count::allocations_during(|| {
            // SAFETY: as above.
            let status = unsafe { fk_fence_check(fence, id, zero, &mut verdict) };
            assert_eq!(status, FK_STATUS_INVALID_TOKEN);
        });
        assert!(
            allocations > 0,
            "the counter missed the error message's allocation"
        );
        // SAFETY: freed once.
        unsafe { fk_fence_free(fence) };
    }

    #[test]
    fn a_bad_batch_item_checks_nothing_and_leaves_only_rejections() {
        let (_dir, fence, id) = open_with_jobs();
        let mut items = [fk_check_item {
            resource: id,
            reserved: 0,
            token: TOKEN,
        }; 3];
        items[2].token.generation = 0;
        let mut verdicts = [fk_verdict {
            kind: FK_VERDICT_ADVANCED,
            ..fk_verdict::default()
        }; 3];
        // SAFETY: three readable items, room for three verdicts.
        let status =
            unsafe { fk_fence_check_batch(fence, items.as_ptr(), verdicts.as_mut_ptr(), 3) };
        assert_eq!(status, FK_STATUS_INVALID_BATCH);
        assert!(verdicts.iter().all(|v| v.kind == FK_VERDICT_NONE));
        let mut mark = fk_token {
            generation: 9,
            holder: 9,
        };
        // SAFETY: a live fence and a valid out-pointer.
        assert_eq!(unsafe { fk_fence_mark(fence, id, &mut mark) }, FK_STATUS_OK);
        assert_eq!(mark, fk_token::default(), "nothing was checked");
        // SAFETY: freed once.
        unsafe { fk_fence_free(fence) };
    }

    /// A length no key, source name or "who did it" can have is refused with its own status
    /// before a byte is read. The buffer is far shorter than the lengths claimed, so reading
    /// it would fault: a check by key used to hash every claimed byte first.
    #[test]
    fn a_length_over_its_limit_is_refused_before_a_byte_is_read() {
        let (_dir, fence, _) = open_with_jobs();
        let short = b"jobs";
        use kernel::limits::{KEY_LEN_MAX, REBASED_BY_MAX, SOURCE_NAME_MAX};
        let over_every_limit = KEY_LEN_MAX.max(REBASED_BY_MAX).max(SOURCE_NAME_MAX) + 1;
        for len in [over_every_limit, 1 << 40, usize::MAX] {
            let (mut verdict, mut resource, mut source) = (fk_verdict::default(), 0, 0);
            // SAFETY: a live fence and valid out-pointers; the lengths are refused before
            // the short buffers are read, which is what this test shows.
            unsafe {
                let key = short.as_ptr();
                assert_eq!(
                    fk_fence_check_key(fence, key, len, TOKEN, &mut verdict),
                    FK_STATUS_INVALID_KEY
                );
                assert_eq!(verdict.kind, FK_VERDICT_NONE);
                assert_eq!(
                    fk_fence_register(fence, key, len, &mut resource),
                    FK_STATUS_INVALID_KEY
                );
                assert_eq!(
                    fk_fence_lookup(fence, key, len, &mut resource),
                    FK_STATUS_INVALID_KEY
                );
                assert_eq!(
                    crate::source::fk_fence_source_id(fence, key.cast(), len, &mut source),
                    FK_STATUS_INVALID_SOURCE
                );
                let to = b"etcd:x";
                assert_eq!(
                    crate::source::fk_fence_rebase(
                        fence,
                        key,
                        short.len(),
                        to.as_ptr().cast(),
                        to.len(),
                        key.cast(),
                        len,
                        std::ptr::null_mut(),
                    ),
                    FK_STATUS_REBASE_REFUSED
                );
            }
        }
    }

    /// I7: a single check that fails writes a rejection over a verdict reused from a call
    /// that accepted, whatever failed.
    #[test]
    fn a_failed_single_check_rejects_a_reused_verdict() {
        let (_dir, fence, id) = open_with_jobs();
        let bad = fk_token {
            generation: 0,
            holder: 1,
        };
        let mut verdict = fk_verdict::default();
        let mut write = fk_write_verdict::default();
        let accept = |verdict: &mut fk_verdict, write: &mut fk_write_verdict| {
            // SAFETY: a live fence, a valid payload and out-pointers.
            unsafe {
                assert_eq!(fk_fence_check(fence, id, TOKEN, verdict), FK_STATUS_OK);
                assert_eq!(
                    fk_fence_check_write(fence, id, TOKEN, b"x".as_ptr(), 1, write),
                    FK_STATUS_OK
                );
            }
            assert!(matches!(
                verdict.kind,
                FK_VERDICT_ACCEPTED | FK_VERDICT_ADVANCED
            ));
            assert_eq!(write.accepted, 1);
        };
        for failure in 0..4 {
            accept(&mut verdict, &mut write);
            // SAFETY: a live fence or NULL, keys and payloads valid or NULL with their
            // lengths as the failure needs, valid out-pointers.
            let (status, status_write) = unsafe {
                match failure {
                    0 => (
                        fk_fence_check(std::ptr::null(), id, TOKEN, &mut verdict),
                        fk_fence_check_write(
                            std::ptr::null(),
                            id,
                            TOKEN,
                            b"x".as_ptr(),
                            1,
                            &mut write,
                        ),
                    ),
                    1 => (
                        fk_fence_check(fence, id, bad, &mut verdict),
                        fk_fence_check_write(fence, id, bad, b"x".as_ptr(), 1, &mut write),
                    ),
                    2 => (
                        fk_fence_check(fence, 999, TOKEN, &mut verdict),
                        fk_fence_check_write(fence, 999, TOKEN, b"x".as_ptr(), 1, &mut write),
                    ),
                    _ => (
                        fk_fence_check_key(fence, std::ptr::null(), 4, TOKEN, &mut verdict),
                        fk_fence_check_write(fence, id, TOKEN, std::ptr::null(), 1, &mut write),
                    ),
                }
            };
            assert_ne!(status, FK_STATUS_OK, "failure {failure}");
            assert_ne!(status_write, FK_STATUS_OK, "failure {failure}");
            assert_eq!(verdict, fk_verdict::default(), "failure {failure}");
            assert_eq!(write.accepted, 0, "failure {failure}");
            assert_eq!(write.fence, fk_verdict::default(), "failure {failure}");
        }
        // SAFETY: a fence of `open`, freed once.
        unsafe { fk_fence_free(fence) };
    }

    /// I7: a batch that fails, whatever the reason, leaves `FK_VERDICT_NONE` in every slot of
    /// a verdict array reused from a call that accepted, so that reading the array without
    /// the status never finds an acceptance.
    #[test]
    fn a_failed_batch_rejects_every_slot_of_a_reused_array() {
        let (_dir, fence, id) = open_with_jobs();
        const N: usize = FK_BATCH_MAX + 1;
        let mut items = vec![
            fk_check_item {
                resource: id,
                reserved: 0,
                token: TOKEN,
            };
            N
        ];
        let mut verdicts = vec![fk_verdict::default(); N];
        // Fills every slot with an acceptance from a call that succeeded.
        let accept_all = |items: &[fk_check_item], verdicts: &mut [fk_verdict]| {
            for chunk in verdicts.chunks_mut(FK_BATCH_MAX) {
                // SAFETY: `chunk.len()` readable items, room for as many verdicts.
                let status = unsafe {
                    fk_fence_check_batch(fence, items.as_ptr(), chunk.as_mut_ptr(), chunk.len())
                };
                assert_eq!(status, FK_STATUS_OK);
            }
            assert!(
                verdicts
                    .iter()
                    .all(|v| v.kind == FK_VERDICT_ACCEPTED || v.kind == FK_VERDICT_ADVANCED)
            );
        };
        let none = |verdicts: &[fk_verdict]| verdicts.iter().all(|v| *v == fk_verdict::default());

        accept_all(&items, &mut verdicts);
        // SAFETY: N readable items, room for N verdicts.
        let status =
            unsafe { fk_fence_check_batch(fence, items.as_ptr(), verdicts.as_mut_ptr(), N) };
        assert_eq!(status, FK_STATUS_INVALID_BATCH, "too many items");
        assert!(
            none(&verdicts),
            "every one of the N slots, beyond FK_BATCH_MAX too"
        );

        accept_all(&items, &mut verdicts);
        // SAFETY: a NULL fence is refused; room for 3 verdicts.
        let status = unsafe {
            fk_fence_check_batch(std::ptr::null(), items.as_ptr(), verdicts.as_mut_ptr(), 3)
        };
        assert_eq!(status, FK_STATUS_NULL_ARGUMENT);
        assert!(none(&verdicts[..3]) && verdicts[3].kind == FK_VERDICT_ACCEPTED);

        accept_all(&items, &mut verdicts);
        // SAFETY: NULL items are refused; room for 3 verdicts.
        let status =
            unsafe { fk_fence_check_batch(fence, std::ptr::null(), verdicts.as_mut_ptr(), 3) };
        assert_eq!(status, FK_STATUS_NULL_ARGUMENT);
        assert!(none(&verdicts[..3]) && verdicts[3].kind == FK_VERDICT_ACCEPTED);

        accept_all(&items, &mut verdicts);
        items[2].resource = 4242;
        // SAFETY: 3 readable items, room for 3 verdicts.
        let status =
            unsafe { fk_fence_check_batch(fence, items.as_ptr(), verdicts.as_mut_ptr(), 3) };
        assert_eq!(
            status, FK_STATUS_INVALID_BATCH,
            "an unknown id is a bad item"
        );
        assert!(none(&verdicts[..3]));
        items[2].resource = id;

        // A length no array can have is refused without writing (writing would crash).
        accept_all(&items, &mut verdicts);
        // SAFETY: refused before anything is read or written.
        let status = unsafe {
            fk_fence_check_batch(fence, items.as_ptr(), verdicts.as_mut_ptr(), usize::MAX)
        };
        assert_eq!(status, FK_STATUS_INVALID_BATCH);
        assert_eq!(verdicts[0].kind, FK_VERDICT_ACCEPTED, "not written");
        // SAFETY: NULL verdicts are refused, nothing is written.
        let status =
            unsafe { fk_fence_check_batch(fence, items.as_ptr(), std::ptr::null_mut(), 3) };
        assert_eq!(status, FK_STATUS_NULL_ARGUMENT);
        // SAFETY: freed once.
        unsafe { fk_fence_free(fence) };
    }
}
