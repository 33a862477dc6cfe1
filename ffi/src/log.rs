//! `fk_log`: read-only inspection of a write-ahead log directory (a fence's or a node's).

use std::ffi::{CString, c_char};
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use kernel::wal::Wal;
use kernel::{RecordKind, RecoveryReport};

use crate::boundary::{self, Failure, Handle, Out, with_handle_out, without_handle_out};
use crate::status::*;

/// The records of a log, read and verified by `fk_log_inspect`. Free it with `fk_log_free`.
pub struct fk_log {
    records: Vec<Owned>,
    report: RecoveryReport,
    poison: AtomicBool,
}

impl Handle for fk_log {
    fn poison(&self) -> &AtomicBool {
        &self.poison
    }
}

struct Owned {
    kind: u8,
    generation: u64,
    segment: u64,
    offset: u64,
    payload: Box<[u8]>,
}

/// One record of an inspected log.
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct fk_log_record {
    /// Its kind (`fk_log_kind_name` names it).
    pub kind: u32,
    /// Zero.
    pub reserved: u32,
    /// The generation it was written under.
    pub generation: u64,
    /// The segment file's number.
    pub segment: u64,
    /// Its byte offset in that segment.
    pub offset: u64,
    /// Its payload, valid until `fk_log_free`.
    pub payload: *const u8,
    /// The payload's length.
    pub payload_len: usize,
}

/// What inspecting a log found.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct fk_log_summary {
    /// Live records.
    pub records: u64,
    /// Live segment files.
    pub segments: u64,
    /// 1 if the log ends in a torn tail (a write cut short by a crash, never acknowledged),
    /// which opening the log will cut off; 0 if not.
    pub torn_tail: u32,
    /// Zero.
    pub reserved: u32,
    /// Where the torn tail starts, in the last live segment.
    pub torn_tail_offset: u64,
    /// Non-zero bytes the torn tail holds.
    pub torn_tail_bytes: u64,
    /// Segment files that opening the log will remove (left over from a compaction, or after
    /// the torn tail).
    pub segments_to_remove: u64,
}

/// Reads and verifies the log in directory `dir` (UTF-8, `dir_len` bytes) without changing
/// it and without taking its lock, so a running node's or fence's log can be inspected. On
/// success `*out` holds every live record. Fails with `FK_STATUS_CORRUPT`, naming the file and
/// offset, if the log is damaged before its tail or the directory holds no log.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `dir` points to `dir_len` readable bytes; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_log_inspect(
    dir: *const c_char,
    dir_len: usize,
    out: *mut *mut fk_log,
) -> fk_status {
    // SAFETY: `out` is NULL or writable (the caller's contract).
    let out = unsafe { Out::new(out) };
    without_handle_out(out, "out", || {
        // SAFETY: `dir_len` readable bytes (the caller's contract).
        let dir = unsafe { boundary::directory(dir, dir_len, "log") }?;
        let mut records = Vec::new();
        let report = Wal::inspect(dir, &Default::default(), &mut |r| {
            records.push(Owned {
                kind: r.kind.get(),
                generation: r.generation,
                segment: r.position.segment(),
                offset: r.position.offset(),
                payload: r.payload.into(),
            });
            Ok(())
        })?;
        Ok(Box::into_raw(Box::new(fk_log {
            records,
            report,
            poison: AtomicBool::new(false),
        })))
    })
}

/// Frees an inspected log and its records' payloads. NULL is a no-op.
///
/// Thread safety: call once, after every other call on this log has returned.
///
/// # Safety
///
/// `log` is NULL or a log from `fk_log_inspect` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_log_free(log: *mut fk_log) {
    // SAFETY: NULL or a live log from fk_log_inspect, freed once (the caller's contract).
    unsafe { boundary::free(log) }
}

/// Writes what the inspection found to `*out`.
///
/// Thread safety: any thread, concurrently with any call but `fk_log_free`.
///
/// # Safety
///
/// `log` is NULL or live; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_log_get_summary(
    log: *const fk_log,
    out: *mut fk_log_summary,
) -> fk_status {
    // SAFETY: `log` is NULL or live; `out` is NULL or writable (the caller's contract).
    let (log, out) = unsafe { (log.as_ref(), Out::new(out)) };
    with_handle_out(log, "log", out, "out", |log| {
        let report = &log.report;
        let torn = report.torn_tail.as_ref();
        Ok(fk_log_summary {
            records: log.records.len() as u64,
            segments: report.segments as u64,
            torn_tail: u32::from(torn.is_some()),
            reserved: 0,
            torn_tail_offset: torn.map_or(0, |t| t.offset),
            torn_tail_bytes: torn.map_or(0, |t| t.discarded_bytes),
            segments_to_remove: report.removed_segments.len() as u64,
        })
    })
}

/// Writes record `index` (0 to records − 1, in log order) to `*out`.
///
/// Thread safety: any thread, concurrently with any call but `fk_log_free`.
///
/// # Safety
///
/// `log` is NULL or live; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_log_get_record(
    log: *const fk_log,
    index: usize,
    out: *mut fk_log_record,
) -> fk_status {
    // SAFETY: `log` is NULL or live; `out` is NULL or writable (the caller's contract).
    let (log, out) = unsafe { (log.as_ref(), Out::new(out)) };
    with_handle_out(log, "log", out, "out", |log| {
        let record = log.records.get(index).ok_or_else(|| {
            Failure::new(
                FK_STATUS_INVALID_ARGUMENT,
                format!(
                    "record {index} does not exist; the log holds {}",
                    log.records.len()
                ),
            )
        })?;
        Ok(fk_log_record {
            kind: record.kind.into(),
            reserved: 0,
            generation: record.generation,
            segment: record.segment,
            offset: record.offset,
            payload: record.payload.as_ptr(),
            payload_len: record.payload.len(),
        })
    })
}

/// The name of a record kind ("fence-mark", "raft-entries", ...), or "unknown". Static:
/// never free it.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn fk_log_kind_name(kind: u32) -> *const c_char {
    boundary::infallible(c"unknown".as_ptr(), || {
        // NUL-terminated copies of the kernel's names, made once.
        static NAMES: OnceLock<Vec<(u32, CString)>> = OnceLock::new();
        let names = NAMES.get_or_init(|| {
            (1..=u8::MAX)
                .filter_map(|byte| {
                    let name = RecordKind::new(byte)?.name()?;
                    Some((u32::from(byte), CString::new(name).ok()?))
                })
                .collect()
        });
        names
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(c"unknown".as_ptr(), |(_, name)| name.as_ptr())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fence::{fk_fence_free, fk_fence_open};

    /// I7 for every handle: a log on which a call panicked refuses every later call but
    /// `fk_log_free`, as a fence, a node and a policy do. (Its calls once ran outside the
    /// handle prologue and checked no poison: a panic in one was caught, then forgotten.)
    #[test]
    fn a_log_poisoned_by_a_panic_refuses_every_later_call() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().expect("UTF-8 temp dir");
        let mut fence = std::ptr::null_mut();
        let mut log = std::ptr::null_mut();
        // SAFETY: a valid path and out-pointers; the fence is freed once.
        unsafe {
            let status = fk_fence_open(
                path.as_ptr().cast(),
                path.len(),
                std::ptr::null(),
                &mut fence,
            );
            assert_eq!(status, FK_STATUS_OK);
            fk_fence_free(fence);
            let status = fk_log_inspect(path.as_ptr().cast(), path.len(), &mut log);
            assert_eq!(status, FK_STATUS_OK);
        }
        let mut summary = fk_log_summary::default();
        // SAFETY: a live log and a writable summary.
        let status = unsafe { fk_log_get_summary(log, &mut summary) };
        assert_eq!(status, FK_STATUS_OK);

        // SAFETY: `log` is live.
        let handle = unsafe { log.as_ref() };
        let status = boundary::with_handle(handle, "log", |_| panic!("planted bug"));
        assert_eq!(status, FK_STATUS_PANIC);

        // SAFETY: as above.
        let status = unsafe { fk_log_get_summary(log, &mut summary) };
        assert_eq!(status, FK_STATUS_POISONED);
        let mut record = std::mem::MaybeUninit::<fk_log_record>::uninit();
        // SAFETY: a live log and room for a record.
        let status = unsafe { fk_log_get_record(log, 0, record.as_mut_ptr()) };
        assert_eq!(status, FK_STATUS_POISONED);
        // SAFETY: freed once; freeing a poisoned log is allowed.
        unsafe { fk_log_free(log) };
    }
}
