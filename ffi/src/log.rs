//! `fk_log`: read-only inspection of a write-ahead log directory (a fence's or a node's).

use std::ffi::{CString, c_char};
use std::sync::OnceLock;

use kernel::wal::Wal;
use kernel::{RecordKind, RecoveryReport};

use crate::boundary::{self, Failure, without_handle};
use crate::status::*;

/// The records of a log, read and verified by `fk_log_inspect`. Free it with `fk_log_free`.
pub struct fk_log {
    records: Vec<Owned>,
    report: RecoveryReport,
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
    without_handle(|| {
        let out = boundary::out(out, "out")?;
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
        // SAFETY: checked non-NULL; writable (the caller's contract).
        unsafe { out.write(Box::into_raw(Box::new(fk_log { records, report }))) };
        Ok(())
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
    without_handle(|| {
        // SAFETY: NULL or live (the caller's contract).
        let log = unsafe { log.as_ref() }.ok_or_else(|| Failure::null("log"))?;
        let out = boundary::out(out, "out")?;
        let report = &log.report;
        let torn = report.torn_tail.as_ref();
        // SAFETY: checked non-NULL; writable (the caller's contract).
        unsafe {
            out.write(fk_log_summary {
                records: log.records.len() as u64,
                segments: report.segments as u64,
                torn_tail: u32::from(torn.is_some()),
                reserved: 0,
                torn_tail_offset: torn.map_or(0, |t| t.offset),
                torn_tail_bytes: torn.map_or(0, |t| t.discarded_bytes),
                segments_to_remove: report.removed_segments.len() as u64,
            })
        };
        Ok(())
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
    without_handle(|| {
        // SAFETY: NULL or live (the caller's contract).
        let log = unsafe { log.as_ref() }.ok_or_else(|| Failure::null("log"))?;
        let out = boundary::out(out, "out")?;
        let record = log.records.get(index).ok_or_else(|| {
            Failure::new(
                FK_STATUS_INVALID_ARGUMENT,
                format!(
                    "record {index} does not exist; the log holds {}",
                    log.records.len()
                ),
            )
        })?;
        // SAFETY: checked non-NULL; writable (the caller's contract).
        unsafe {
            out.write(fk_log_record {
                kind: record.kind.into(),
                reserved: 0,
                generation: record.generation,
                segment: record.segment,
                offset: record.offset,
                payload: record.payload.as_ptr(),
                payload_len: record.payload.len(),
            })
        };
        Ok(())
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
