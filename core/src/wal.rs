//! The write-ahead generation log: the durable record of fence high-water marks now, and of
//! Raft's hard state and entries from the node on.
//!
//! - Records go into preallocated, zero-filled segment files (`segment.rs`), each checksummed
//!   together with its own position (`record.rs`).
//! - [`Wal::append`] only buffers; [`Wal::sync_through`] makes everything up to a position
//!   durable. Syncs are *group commits*: one thread writes and fdatasyncs everything buffered
//!   while the others wait, so concurrent appenders share one fdatasync.
//! - Opening recovers (`recovery.rs`): a torn tail is truncated, corruption before the tail is
//!   refused with the file and offset.
//! - [`Wal::compact`] replaces the whole log by a snapshot of the live state, crash-safely.
//! - An I/O failure while writing or syncing poisons the log: after a failed fdatasync the page
//!   cache no longer tells what is on disk, so the only safe next step is to reopen and recover.

mod record;
mod recovery;
mod segment;

use std::fmt;
use std::num::NonZeroU8;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::disk::DiskHandle;
use crate::error::Error;
use crate::limits::{RECORD_PAYLOAD_MAX, SEGMENT_SIZE_DEFAULT, SEGMENT_SIZE_MAX, SEGMENT_SIZE_MIN};
use record::{FLAG_SNAPSHOT_BASE, SEGMENT_HEADER_LEN, SegmentHeader};
use segment::{DirLock, SegmentFile};

/// What a record is, for the log's owner. The log stores any non-zero kind; owners refuse the
/// kinds they do not know when they replay. Kinds are numbered in blocks by owner, and a
/// retired number stays reserved.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct RecordKind(NonZeroU8);

impl RecordKind {
    /// A fence high-water mark (block 0x01..=0x0F: the fence).
    pub const FENCE_MARK: RecordKind = RecordKind(NonZeroU8::new(0x01).expect("non-zero"));
    /// Raft hard state: term, vote, commit (block 0x10..=0x1F: Raft storage).
    pub const RAFT_HARD_STATE: RecordKind = RecordKind(NonZeroU8::new(0x10).expect("non-zero"));
    /// Raft log entries.
    pub const RAFT_ENTRIES: RecordKind = RecordKind(NonZeroU8::new(0x11).expect("non-zero"));
    /// Raft configuration state.
    pub const RAFT_CONF_STATE: RecordKind = RecordKind(NonZeroU8::new(0x12).expect("non-zero"));
    /// Raft snapshot metadata.
    pub const RAFT_SNAPSHOT_META: RecordKind = RecordKind(NonZeroU8::new(0x13).expect("non-zero"));
    /// The cluster and node a Raft log belongs to.
    pub const RAFT_IDENTITY: RecordKind = RecordKind(NonZeroU8::new(0x14).expect("non-zero"));

    /// A kind from its byte; 0 is refused (an all-zero header marks the end of the log).
    pub const fn new(byte: u8) -> Option<RecordKind> {
        match NonZeroU8::new(byte) {
            Some(kind) => Some(RecordKind(kind)),
            None => None,
        }
    }

    /// The kind's byte.
    pub const fn get(self) -> u8 {
        self.0.get()
    }

    /// The kind's name for people ("fence-mark", "raft-entries", ...), or `None` for a kind
    /// this version does not know.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.get() {
            0x01 => "fence-mark",
            0x10 => "raft-hard-state",
            0x11 => "raft-entries",
            0x12 => "raft-conf-state",
            0x13 => "raft-snapshot-meta",
            0x14 => "raft-identity",
            _ => return None,
        })
    }
}

impl fmt::Debug for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordKind({:#04x})", self.get())
    }
}

/// A place in the log: a segment number and a byte offset in it. Positions order as the log
/// does. The position "through" which a sync reaches is the end of the last record covered.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position(u64);

impl Position {
    /// The position at `offset` of segment `segment`.
    pub const fn new(segment: u64, offset: u64) -> Position {
        debug_assert!(offset <= u32::MAX as u64);
        Position((segment << 32) | offset)
    }

    /// The segment number.
    pub const fn segment(self) -> u64 {
        self.0 >> 32
    }

    /// The byte offset in the segment.
    pub const fn offset(self) -> u64 {
        self.0 & 0xFFFF_FFFF
    }

    pub(crate) const fn as_u64(self) -> u64 {
        self.0
    }

    pub(crate) const fn from_u64(raw: u64) -> Position {
        Position(raw)
    }
}

/// A record handed to the owner during recovery.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Where it lies.
    pub position: Position,
    /// Its kind.
    pub kind: RecordKind,
    /// The generation it was written under.
    pub generation: u64,
    /// Its payload.
    pub payload: &'a [u8],
    /// The segment file holding it, for error messages.
    pub path: &'a Path,
}

impl Record<'_> {
    /// A corruption error at this record, for an owner that finds its payload malformed.
    pub fn corrupt(&self, reason: impl Into<String>) -> Error {
        Error::corrupt(self.path, self.position.offset(), reason)
    }
}

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Records handed to the owner.
    pub records: u64,
    /// Live segments after recovery.
    pub segments: usize,
    /// Where a torn tail was cut off, if one was.
    pub torn_tail: Option<TornTail>,
    /// Segments removed (by [`Wal::inspect`]: that opening would remove): left over from a
    /// compaction, or past a torn tail.
    pub removed_segments: Vec<PathBuf>,
}

/// A torn tail that recovery discarded: it was never acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment it was in.
    pub path: PathBuf,
    /// Where the log now ends.
    pub offset: u64,
    /// Non-zero bytes zeroed from there on.
    pub discarded_bytes: u64,
}

/// Options of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    /// Size of each segment file, preallocated at creation. Between
    /// [`SEGMENT_SIZE_MIN`] and [`SEGMENT_SIZE_MAX`], a multiple of 4096.
    pub segment_size: u64,
    /// The file system the log lives on: the operating system's unless a simulator's.
    pub disk: DiskHandle,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: SEGMENT_SIZE_DEFAULT,
            disk: DiskHandle::default(),
        }
    }
}

impl WalOptions {
    fn validate(&self) -> Result<(), Error> {
        if !(SEGMENT_SIZE_MIN..=SEGMENT_SIZE_MAX).contains(&self.segment_size)
            || !self.segment_size.is_multiple_of(4096)
        {
            return Err(Error::InvalidOption {
                field: "WalOptions::segment_size",
                value: self.segment_size,
                expected: "a multiple of 4096 from 64 KiB to 1 GiB",
            });
        }
        Ok(())
    }

    /// The largest payload a record may carry in a segment of this size.
    pub fn payload_max(&self) -> usize {
        let room = (self.segment_size - SEGMENT_HEADER_LEN) as usize - record::RECORD_HEADER_LEN;
        room.min(RECORD_PAYLOAD_MAX)
    }
}

/// Encoded records not yet handed to the file, all in one segment, contiguous.
#[derive(Debug)]
struct Chunk {
    segment: u64,
    offset: u64,
    bytes: Vec<u8>,
}

#[derive(Debug)]
struct State {
    /// Where the next record goes.
    next: Position,
    /// Size of segment `next.segment()`.
    segment_end: u64,
    /// Appended, not yet written. Invariant: in position order, ending at `next`.
    pending: Vec<Chunk>,
    /// Everything before this position is durable. Invariant: `durable <= next`.
    durable: Position,
    /// A thread is writing and syncing a batch; the others wait for it.
    syncing: bool,
    /// Why the log refuses writes, after an I/O failure.
    failed: Option<String>,
    /// Record bytes since the last snapshot base.
    live_bytes: u64,
}

/// The write-ahead generation log of one directory. `Send + Sync`: share it by reference.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    options: WalOptions,
    state: Mutex<State>,
    synced: Condvar,
    /// The segment being written; held by the one thread that syncs (or compacts).
    io: Mutex<SegmentFile>,
    report: RecoveryReport,
    _lock: DirLock,
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`, handing every live record to `visit` in
    /// order. Refuses a directory another open log holds, and a log damaged before its tail.
    pub fn open(
        dir: impl AsRef<Path>,
        options: WalOptions,
        visit: &mut dyn FnMut(Record<'_>) -> Result<(), Error>,
    ) -> Result<Wal, Error> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let disk = &*options.disk;
        disk.create_dir_all(&dir)
            .map_err(|e| Error::io("create data directory", &dir, e))?;
        let lock = DirLock::acquire(disk, &dir)?;
        let recovered = recovery::recover(
            disk,
            &dir,
            options.segment_size,
            recovery::Mode::Repair,
            visit,
        )?;
        let Some(tail) = recovered.tail else {
            unreachable!("a repairing recovery always opens the tail")
        };
        let next = Position::new(tail.number(), recovered.next);
        let state = State {
            next,
            segment_end: tail.header.size,
            pending: Vec::new(),
            durable: next,
            syncing: false,
            failed: None,
            live_bytes: recovered.live_bytes,
        };
        Ok(Wal {
            dir,
            options,
            state: Mutex::new(state),
            synced: Condvar::new(),
            io: Mutex::new(tail),
            report: recovered.report,
            _lock: lock,
        })
    }

    /// Reads and verifies the log in `dir` without changing anything and without taking its
    /// lock (it may be open elsewhere), handing every live record to `visit` in order. The
    /// report says what opening it would do: the torn tail it would cut off and the segments
    /// it would remove. Refuses a log damaged before its tail, and a directory with no log.
    pub fn inspect(
        dir: impl AsRef<Path>,
        disk: &DiskHandle,
        visit: &mut dyn FnMut(Record<'_>) -> Result<(), Error>,
    ) -> Result<RecoveryReport, Error> {
        let recovered = recovery::recover(
            &**disk,
            dir.as_ref(),
            SEGMENT_SIZE_DEFAULT,
            recovery::Mode::ReadOnly,
            visit,
        )?;
        Ok(recovered.report)
    }

    /// The directory of this log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The largest payload one record of this log may carry.
    pub fn payload_max(&self) -> usize {
        self.options.payload_max()
    }

    /// What recovery found when this log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Record bytes written since the last snapshot base (the log's size, for deciding when
    /// to compact).
    pub fn live_bytes(&self) -> u64 {
        self.lock_state().live_bytes
    }

    /// Everything before this position is durable.
    pub fn durable(&self) -> Position {
        self.lock_state().durable
    }

    /// Buffers one record and returns the position a [`Wal::sync_through`] must reach for
    /// it to be durable. Nothing is durable, or even written, until then.
    pub fn append(
        &self,
        kind: RecordKind,
        generation: u64,
        payload: &[u8],
    ) -> Result<Position, Error> {
        let max = self.options.payload_max();
        if payload.len() > max {
            return Err(Error::RecordTooLarge {
                len: payload.len(),
                max,
            });
        }
        let len = record::encoded_len(payload.len()) as u64;
        let mut state = self.lock_state();
        if let Some(reason) = &state.failed {
            return Err(Error::Poisoned(reason.clone()));
        }
        if state.next.offset() + len > state.segment_end {
            state.next = Position::new(state.next.segment() + 1, SEGMENT_HEADER_LEN);
            state.segment_end = self.options.segment_size;
        }
        let at = state.next;
        let durable = state.durable;
        let chunk = match state.pending.last_mut() {
            Some(chunk)
                if chunk.segment == at.segment()
                    && chunk.offset + chunk.bytes.len() as u64 == at.offset() =>
            {
                chunk
            }
            _ => {
                state.pending.push(Chunk {
                    segment: at.segment(),
                    offset: at.offset(),
                    bytes: Vec::with_capacity(4096),
                });
                state.pending.last_mut().expect("just pushed")
            }
        };
        record::encode(&mut chunk.bytes, at, kind, generation, durable, payload);
        state.next = Position::new(at.segment(), at.offset() + len);
        state.live_bytes += len;
        Ok(state.next)
    }

    /// Makes every record before `through` durable (written and fdatasynced). Concurrent
    /// callers share syncs: while one thread syncs, the others' records gather, and the next
    /// sync takes them all.
    pub fn sync_through(&self, through: Position) -> Result<(), Error> {
        let mut state = self.lock_state();
        loop {
            if let Some(reason) = &state.failed {
                return Err(Error::Poisoned(reason.clone()));
            }
            if state.durable >= through {
                return Ok(());
            }
            if state.syncing {
                state = self
                    .synced
                    .wait(state)
                    .unwrap_or_else(|poison| poison.into_inner());
                continue;
            }
            state.syncing = true;
            // Threads woken by the previous sync are about to append: let them, so that this
            // sync carries their records too instead of leaving them for the next one.
            drop(state);
            std::thread::yield_now();
            state = self.lock_state();
            let batch = std::mem::take(&mut state.pending);
            let end = state.next;
            drop(state);
            let result = self.write_and_sync(batch);
            state = self.lock_state();
            state.syncing = false;
            match &result {
                Ok(()) => state.durable = end,
                Err(e) => state.failed = Some(e.to_string()),
            }
            self.synced.notify_all();
            result?;
        }
    }

    /// Makes everything appended so far durable.
    pub fn sync(&self) -> Result<(), Error> {
        let next = self.lock_state().next;
        self.sync_through(next)
    }

    /// Appends one record and waits until it is durable.
    pub fn append_sync(
        &self,
        kind: RecordKind,
        generation: u64,
        payload: &[u8],
    ) -> Result<Position, Error> {
        let end = self.append(kind, generation, payload)?;
        self.sync_through(end)?;
        Ok(end)
    }

    fn write_and_sync(&self, batch: Vec<Chunk>) -> Result<(), Error> {
        self.write_and_sync_locked(&mut self.lock_io(), batch)
    }

    /// Replaces the log by a snapshot: `snapshot` is called once, with appends blocked, to
    /// write the live state through [`SnapshotWriter::push`]; the records go into a new
    /// segment flagged as the base, and every older segment is removed.
    ///
    /// Crash-safe at every step: the new segment is written under a temporary name, synced,
    /// renamed into place and the directory synced before any old segment is removed; until
    /// the rename, recovery sees the old log, after it the new base (and removes what is older).
    ///
    /// The caller must make sure `snapshot` sees every record appended before this call.
    pub fn compact(
        &self,
        snapshot: &mut dyn FnMut(&mut SnapshotWriter) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut state = self.lock_state();
        while state.syncing {
            state = self
                .synced
                .wait(state)
                .unwrap_or_else(|poison| poison.into_inner());
        }
        if let Some(reason) = &state.failed {
            return Err(Error::Poisoned(reason.clone()));
        }
        let mut current = self.lock_io();
        // Flush what is buffered first, so that the old log is complete on disk.
        let batch = std::mem::take(&mut state.pending);
        if let Err(e) = self.write_and_sync_locked(&mut current, batch) {
            state.failed = Some(e.to_string());
            return Err(e);
        }
        state.durable = state.next;

        let number = state.next.segment() + 1;
        let mut writer = SnapshotWriter {
            segment: number,
            bytes: Vec::new(),
            payload_max: RECORD_PAYLOAD_MAX,
        };
        snapshot(&mut writer)?;
        let used = SEGMENT_HEADER_LEN + writer.bytes.len() as u64;
        // The snapshot segment is as large as it must be, with room for as much again.
        let size = self
            .options
            .segment_size
            .max((used * 2).next_multiple_of(4096));
        if size > SEGMENT_SIZE_MAX {
            return Err(Error::InvalidOption {
                field: "snapshot size",
                value: used,
                expected: "a snapshot must fit in one segment of at most 1 GiB",
            });
        }
        let header = SegmentHeader {
            number,
            size,
            flags: FLAG_SNAPSHOT_BASE,
        };
        // Before the rename, a failure leaves the old log whole and in use.
        let base = SegmentFile::create(&*self.options.disk, &self.dir, header, &writer.bytes)?;
        let old_first = self.first_segment_before(number)?;
        *current = base;
        state.next = Position::new(number, used);
        state.segment_end = size;
        state.durable = state.next;
        state.live_bytes = writer.bytes.len() as u64;
        drop(current);
        drop(state);
        // The new base is durable; what is older is garbage whatever happens now.
        let disk = &*self.options.disk;
        for old in old_first..number {
            let path = segment::segment_path(&self.dir, old);
            segment::remove(disk, &path, "remove compacted segment")?;
        }
        segment::sync_dir(disk, &self.dir)
    }

    fn write_and_sync_locked(
        &self,
        current: &mut SegmentFile,
        batch: Vec<Chunk>,
    ) -> Result<(), Error> {
        for chunk in batch {
            if chunk.segment != current.number() {
                assert_eq!(
                    chunk.segment,
                    current.number() + 1,
                    "segments are written in order"
                );
                current.sync()?;
                let header = SegmentHeader {
                    number: chunk.segment,
                    size: self.options.segment_size,
                    flags: 0,
                };
                *current = SegmentFile::create(&*self.options.disk, &self.dir, header, &[])?;
            }
            current.write_at(chunk.offset, &chunk.bytes)?;
        }
        current.sync()
    }

    /// The lowest segment number present below `number`.
    fn first_segment_before(&self, number: u64) -> Result<u64, Error> {
        let names = self
            .options
            .disk
            .list(&self.dir)
            .map_err(|e| Error::io("list log directory", &self.dir, e))?;
        let mut first = number;
        for name in names {
            if let segment::EntryName::Segment(n) = segment::classify(&name) {
                first = first.min(n);
            }
        }
        Ok(first)
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // State changes are completed before any call that could panic, so a poisoned lock
        // still guards consistent state.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn lock_io(&self) -> MutexGuard<'_, SegmentFile> {
        self.io.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Writes the records of a snapshot, in [`Wal::compact`].
#[derive(Debug)]
pub struct SnapshotWriter {
    segment: u64,
    bytes: Vec<u8>,
    payload_max: usize,
}

impl SnapshotWriter {
    /// Adds one record to the snapshot.
    pub fn push(&mut self, kind: RecordKind, generation: u64, payload: &[u8]) -> Result<(), Error> {
        if payload.len() > self.payload_max {
            return Err(Error::RecordTooLarge {
                len: payload.len(),
                max: self.payload_max,
            });
        }
        let at = Position::new(self.segment, SEGMENT_HEADER_LEN + self.bytes.len() as u64);
        // Nothing in the new segment is durable until it is renamed into place.
        let durable = Position::new(self.segment, SEGMENT_HEADER_LEN);
        record::encode(&mut self.bytes, at, kind, generation, durable, payload);
        Ok(())
    }
}
