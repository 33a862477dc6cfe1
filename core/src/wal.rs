//! The write-ahead generation log: the durable record of fence high-water marks now, and of
//! Raft's hard state and entries from the node on.
//!
//! - Records go into preallocated, zero-filled segment files (`segment.rs`), each checksummed
//!   together with the log's id and its own position (`record.rs`).
//! - A log knows who it is (`identity.rs`): each segment header carries the identity and a
//!   link to where the previous segment ended, and the superblock (`superblock.rs`) names the
//!   live segments, so a foreign, missing, swapped or shortened segment is refused.
//! - [`Wal::append`] only buffers; [`Wal::sync_through`] makes everything up to a position
//!   durable. Syncs are *group commits*: one thread writes and fdatasyncs everything buffered
//!   while the others wait, so concurrent appenders share one fdatasync.
//! - Opening recovers (`recovery.rs`): a torn tail is truncated, corruption before the tail is
//!   refused with the file and offset.
//! - [`Wal::compact`] replaces the whole log by a snapshot of the live state, crash-safely.
//! - An I/O failure while writing or syncing poisons the log: after a failed fdatasync the page
//!   cache no longer tells what is on disk, so the only safe next step is to reopen and recover.
//! - The directory itself is locked while the log is open, and checked before each sync to
//!   still be the one at its path; a log used in a child after `fork` refuses (`fork.rs`).

mod identity;
mod record;
mod recovery;
mod segment;
mod superblock;

pub use identity::{LogId, LogIdentity, LogOwner};
pub use superblock::Superblock;

use std::fmt;
use std::num::NonZeroU8;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::disk::DiskHandle;
use crate::error::{LogError, OutOfRange};
use crate::fork::OpenedIn;
use crate::limits::{
    RECORD_PAYLOAD_MAX, SEGMENT_SIZE_DEFAULT, SEGMENT_SIZE_MAX, SEGMENT_SIZE_MIN,
    SUPERBLOCK_DURABLE_EVERY_SYNCS,
};
use record::{FLAG_SNAPSHOT_BASE, SEGMENT_HEADER_LEN, Seed, SegmentHeader, SegmentLink};
use segment::{DirLock, SegmentFile};
use superblock::SuperblockFile;

/// What a record is, for the log's owner. The log stores any non-zero kind; owners refuse the
/// kinds they do not know when they replay. Kinds are numbered in blocks by owner, and a
/// retired number stays reserved.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct RecordKind(NonZeroU8);

impl RecordKind {
    /// A fence high-water mark (block 0x01..=0x0F: the fence).
    pub const FENCE_MARK: RecordKind = RecordKind(NonZeroU8::new(0x01).expect("non-zero"));
    /// A fence high-water mark of a token from a named source.
    pub const FENCE_SOURCED_MARK: RecordKind = RecordKind(NonZeroU8::new(0x02).expect("non-zero"));
    /// A resource moved to another token source by an operator.
    pub const FENCE_REBASE: RecordKind = RecordKind(NonZeroU8::new(0x03).expect("non-zero"));
    /// Raft hard state: term, vote, commit (block 0x10..=0x1F: Raft storage).
    pub const RAFT_HARD_STATE: RecordKind = RecordKind(NonZeroU8::new(0x10).expect("non-zero"));
    /// Raft log entries.
    pub const RAFT_ENTRIES: RecordKind = RecordKind(NonZeroU8::new(0x11).expect("non-zero"));
    /// Reserved: a Raft configuration state. Never written (membership travels in snapshots
    /// and entries) and refused on replay; `inspect` still names it.
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
            0x02 => "fence-sourced-mark",
            0x03 => "fence-rebase",
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
    pub fn corrupt(&self, reason: impl Into<String>) -> LogError {
        LogError::corrupt(self.path, self.position.offset(), reason)
    }
}

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The log's identity.
    pub identity: Option<LogIdentity>,
    /// What the superblock said when the log was opened.
    pub superblock: Option<Superblock>,
    /// How many of the superblock's copies were valid (all of them but after a torn update
    /// or damage).
    pub superblock_copies: usize,
    /// True if the log was created by this opening (the directory was empty).
    pub created: bool,
    /// Records handed to the owner.
    pub records: u64,
    /// Live segments after recovery.
    pub segments: usize,
    /// The live segments, in order, each verified to continue the one before it.
    pub chain: Vec<SegmentSummary>,
    /// Where a torn tail was cut off, if one was.
    pub torn_tail: Option<TornTail>,
    /// Segments removed (by [`Wal::inspect`]: that opening would remove): left over from a
    /// compaction, or created by a roll the superblock never recorded.
    pub removed_segments: Vec<PathBuf>,
    /// Temporary files of this log removed (or that opening would remove).
    pub removed_temps: Vec<PathBuf>,
}

/// One live segment, as recovery found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Its number.
    pub number: u64,
    /// True if it begins with a snapshot (the first live segment).
    pub base: bool,
    /// Records in it.
    pub records: u64,
    /// Where its records end.
    pub end: u64,
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
    /// Checks the options: the segment size's range and alignment.
    pub fn validate(&self) -> Result<(), LogError> {
        if !(SEGMENT_SIZE_MIN..=SEGMENT_SIZE_MAX).contains(&self.segment_size)
            || !self.segment_size.is_multiple_of(4096)
        {
            return Err(LogError::Option(
                OutOfRange::new(
                    "WalOptions::segment_size",
                    self.segment_size,
                    SEGMENT_SIZE_MIN,
                    SEGMENT_SIZE_MAX,
                )
                .multiple_of(4096),
            ));
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
    /// For the first chunk of a new segment: where the previous one ended, for its header.
    opens: Option<SegmentLink>,
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
    /// The header checksum of the record that ends at `durable` (0 at a segment's start).
    durable_checksum: u32,
    /// A thread is writing and syncing a batch; the others wait for it.
    syncing: bool,
    /// Threads waiting for a sync to finish.
    waiters: usize,
    /// The last sync woke waiting threads (which may be about to append again).
    woke: bool,
    /// Why the log refuses writes, after an I/O failure.
    failed: Option<String>,
    /// Record bytes since the last snapshot base.
    live_bytes: u64,
    /// The header checksum of the last record appended to segment `next.segment()` (0 when
    /// it has none): the link its successor will carry.
    last_checksum: u32,
}

/// What the one syncing thread holds: the segment being written and the superblock.
#[derive(Debug)]
struct Io {
    segment: SegmentFile,
    superblock: SuperblockFile,
    /// Syncs since the superblock last recorded how far the log is durable.
    syncs_unrecorded: u32,
}

/// The write-ahead generation log of one directory. `Send + Sync`: share it by reference.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    options: WalOptions,
    identity: LogIdentity,
    seed: Seed,
    state: Mutex<State>,
    synced: Condvar,
    /// Held by the one thread that syncs (or compacts).
    io: Mutex<Io>,
    report: RecoveryReport,
    lock: DirLock,
    opened_in: OpenedIn,
}

impl Wal {
    /// Opens the log of `owner` in `dir`, handing every live record to `visit` in order; in
    /// an empty (or missing) directory, creates a new log. Refuses a directory another open
    /// log holds, a log of another owner, a directory with other files and no log, and a log
    /// that is damaged before its tail, misses a segment or holds one of another log.
    pub fn open(
        dir: impl AsRef<Path>,
        owner: LogOwner,
        options: WalOptions,
        visit: &mut dyn FnMut(Record<'_>) -> Result<(), LogError>,
    ) -> Result<Wal, LogError> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let disk = &*options.disk;
        disk.create_dir_all(&dir)
            .map_err(|e| LogError::io("create data directory", &dir, e))?;
        let lock = DirLock::acquire(disk, &dir)?;
        let mode = recovery::Mode::Repair {
            owner,
            segment_size: options.segment_size,
        };
        let recovered = recovery::recover(disk, &dir, mode, visit)?;
        let (Some(tail), Some(superblock)) = (recovered.tail, recovered.superblock) else {
            unreachable!("a repairing recovery always opens the tail and the superblock")
        };
        let next = Position::new(tail.number(), recovered.next);
        let state = State {
            next,
            segment_end: tail.header.size,
            pending: Vec::new(),
            durable: next,
            durable_checksum: recovered.last_checksum,
            syncing: false,
            waiters: 0,
            woke: false,
            failed: None,
            live_bytes: recovered.live_bytes,
            last_checksum: recovered.last_checksum,
        };
        Ok(Wal {
            dir,
            options,
            identity: recovered.identity,
            seed: Seed::of(recovered.identity.id),
            state: Mutex::new(state),
            synced: Condvar::new(),
            io: Mutex::new(Io {
                segment: tail,
                superblock,
                syncs_unrecorded: 0,
            }),
            report: recovered.report,
            lock,
            opened_in: OpenedIn::here(),
        })
    }

    /// Reads and verifies the log in `dir` without changing anything, opening no file for
    /// writing and taking no lock (it may be open elsewhere), handing every live record to
    /// `visit` in order. The report gives the identity, the superblock and the segment chain,
    /// and says what opening would do: the torn tail it would cut off and the files it would
    /// remove. Refuses what opening refuses, and a directory with no log.
    pub fn inspect(
        dir: impl AsRef<Path>,
        disk: &DiskHandle,
        visit: &mut dyn FnMut(Record<'_>) -> Result<(), LogError>,
    ) -> Result<RecoveryReport, LogError> {
        let recovered = recovery::recover(&**disk, dir.as_ref(), recovery::Mode::ReadOnly, visit)?;
        Ok(recovered.report)
    }

    /// The log's identity.
    pub fn identity(&self) -> LogIdentity {
        self.identity
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

    /// Closes the log: records in the superblock how far it is durable, so that its last
    /// records cannot go missing unseen while it is closed (recovery.rs), and refuses every
    /// write from then on. Dropping the log does the same; call this where the log is shared
    /// and may outlive the wish to use it (a server stopping). Nothing is written after a
    /// failure, a close, or in a child after fork.
    pub fn close(&self) -> Result<(), LogError> {
        if !self.opened_in.is_here() {
            return Ok(());
        }
        let mut state = self.lock_state_idle();
        if state.failed.is_some() {
            return Ok(());
        }
        state.failed = Some("the log was closed".into());
        let durable = (state.durable, state.durable_checksum);
        self.lock_io().superblock.record_durable(durable)
    }

    /// Records in the superblock, now, how far the log is durable (which it otherwise does
    /// every [`SUPERBLOCK_DURABLE_EVERY_SYNCS`] syncs): a record synced before this call can
    /// then not go missing unseen, even where damage would pass for a torn tail (recovery.rs).
    /// For rare records that must never be lost quietly, such as a fence's rebase.
    pub fn record_durable_now(&self) -> Result<(), LogError> {
        let state = self.lock_state_idle();
        if let Some(reason) = &state.failed {
            return Err(LogError::Poisoned(reason.clone()));
        }
        let durable = (state.durable, state.durable_checksum);
        let mut io = self.lock_io();
        io.syncs_unrecorded = 0;
        io.superblock.record_durable(durable)
    }

    /// Why the log refuses writes, after an I/O failure or [`Wal::close`] (`None` while it
    /// works).
    pub fn failure(&self) -> Option<String> {
        self.lock_state().failed.clone()
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
    ) -> Result<Position, LogError> {
        let max = self.options.payload_max();
        if payload.len() > max {
            return Err(LogError::RecordTooLarge {
                len: payload.len(),
                max,
            });
        }
        self.opened_in.check("log")?;
        let len = record::encoded_len(payload.len()) as u64;
        let mut state = self.lock_state();
        if let Some(reason) = &state.failed {
            return Err(LogError::Poisoned(reason.clone()));
        }
        let mut opens = None;
        if state.next.offset() + len > state.segment_end {
            opens = Some(SegmentLink {
                end: state.next.offset(),
                last_checksum: state.last_checksum,
            });
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
                    opens,
                });
                state.pending.last_mut().expect("just pushed")
            }
        };
        let checksum = record::encode(
            &mut chunk.bytes,
            self.seed,
            at,
            kind,
            generation,
            durable,
            payload,
        );
        state.last_checksum = checksum;
        state.next = Position::new(at.segment(), at.offset() + len);
        state.live_bytes += len;
        Ok(state.next)
    }

    /// Makes every record before `through` durable (written and fdatasynced). Concurrent
    /// callers share syncs: while one thread syncs, the others' records gather, and the next
    /// sync takes them all.
    pub fn sync_through(&self, through: Position) -> Result<(), LogError> {
        self.opened_in.check("log")?;
        let mut state = self.lock_state();
        loop {
            if let Some(reason) = &state.failed {
                return Err(LogError::Poisoned(reason.clone()));
            }
            if state.durable >= through {
                return Ok(());
            }
            if state.syncing {
                state.waiters += 1;
                state = self
                    .synced
                    .wait(state)
                    .unwrap_or_else(|poison| poison.into_inner());
                state.waiters -= 1;
                continue;
            }
            state.syncing = true;
            // Threads woken by the previous sync are about to append: let them, so that this
            // sync carries their records too instead of leaving them for the next one. With
            // no one woken (one appender, or a node's log) the yield would only cost a syscall.
            if std::mem::take(&mut state.woke) {
                drop(state);
                std::thread::yield_now();
                state = self.lock_state();
            }
            let batch = std::mem::take(&mut state.pending);
            let (end, end_checksum) = (state.next, state.last_checksum);
            drop(state);
            let result = self.write_and_sync(batch, (end, end_checksum));
            state = self.lock_state();
            state.syncing = false;
            match &result {
                Ok(()) => {
                    state.durable = end;
                    state.durable_checksum = end_checksum;
                }
                Err(e) => state.failed = Some(e.to_string()),
            }
            state.woke = state.waiters > 0;
            self.synced.notify_all();
            result?;
        }
    }

    /// Makes everything appended so far durable.
    pub fn sync(&self) -> Result<(), LogError> {
        let next = self.lock_state().next;
        self.sync_through(next)
    }

    /// Appends one record and waits until it is durable.
    pub fn append_sync(
        &self,
        kind: RecordKind,
        generation: u64,
        payload: &[u8],
    ) -> Result<Position, LogError> {
        let end = self.append(kind, generation, payload)?;
        self.sync_through(end)?;
        Ok(end)
    }

    fn write_and_sync(&self, batch: Vec<Chunk>, end: (Position, u32)) -> Result<(), LogError> {
        self.write_and_sync_locked(&mut self.lock_io(), batch, end)
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
        snapshot: &mut dyn FnMut(&mut SnapshotWriter) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        self.opened_in.check("log")?;
        let mut state = self.lock_state_idle();
        if let Some(reason) = &state.failed {
            return Err(LogError::Poisoned(reason.clone()));
        }
        let mut io = self.lock_io();
        // Flush what is buffered first, so that the old log is complete on disk.
        let batch = std::mem::take(&mut state.pending);
        let end = (state.next, state.last_checksum);
        if let Err(e) = self.write_and_sync_locked(&mut io, batch, end) {
            state.failed = Some(e.to_string());
            return Err(e);
        }
        state.durable = state.next;
        state.durable_checksum = state.last_checksum;

        let number = state.next.segment() + 1;
        let mut writer = SnapshotWriter {
            seed: self.seed,
            segment: number,
            bytes: Vec::new(),
            payload_max: RECORD_PAYLOAD_MAX,
            last_checksum: 0,
        };
        snapshot(&mut writer)?;
        let used = SEGMENT_HEADER_LEN + writer.bytes.len() as u64;
        // The snapshot segment is as large as it must be, with room for as much again.
        let size = self
            .options
            .segment_size
            .max((used * 2).next_multiple_of(4096));
        if size > SEGMENT_SIZE_MAX {
            // A snapshot must fit in one segment.
            return Err(LogError::Option(OutOfRange::new(
                "snapshot segment size",
                size,
                0,
                SEGMENT_SIZE_MAX,
            )));
        }
        let header = SegmentHeader {
            number,
            size,
            flags: FLAG_SNAPSHOT_BASE,
            identity: self.identity,
            link: SegmentLink {
                end: state.next.offset(),
                last_checksum: state.last_checksum,
            },
        };
        // Before the rename, a failure leaves the old log whole and in use.
        let base = SegmentFile::create(&*self.options.disk, &self.dir, header, &writer.bytes)?;
        let old_first = io.superblock.current().first;
        io.segment = base;
        state.next = Position::new(number, used);
        state.segment_end = size;
        state.durable = state.next;
        state.live_bytes = writer.bytes.len() as u64;
        state.last_checksum = writer.last_checksum;
        state.durable_checksum = writer.last_checksum;
        // Renamed into place, the base is the log (recovery adopts a base the superblock does
        // not name yet); the superblock now says so, so that the old segments can go.
        let (durable, durable_checksum) = (state.durable, state.durable_checksum);
        if let Err(e) = io.superblock.update(|s| {
            s.first = number;
            s.last = number;
            s.first_checksum = header.checksum();
            s.durable = durable;
            s.durable_checksum = durable_checksum;
        }) {
            state.failed = Some(e.to_string());
            return Err(e);
        }
        drop(io);
        drop(state);
        // The new base is durable; what is older is garbage whatever happens now.
        let disk = &*self.options.disk;
        for old in old_first..number {
            let path = segment::segment_path(&self.dir, old);
            segment::remove(disk, &path, "remove compacted segment")?;
        }
        segment::sync_dir(disk, &self.dir)
    }

    /// Writes and syncs `batch`. A roll to a new segment syncs the old one whole, creates the
    /// new one (its header linking to where the old one ended) and records it in the
    /// superblock before any record goes into it, so the new segment's records are never
    /// acknowledged while the superblock could forget the segment.
    ///
    /// Every [`SUPERBLOCK_DURABLE_EVERY_SYNCS`] syncs, the superblock also records how far the
    /// log is now durable (`end`: the position and the checksum of the record ending there),
    /// so that a crash leaves at most that many syncs' records where damage could pass for a
    /// torn tail (recovery.rs).
    fn write_and_sync_locked(
        &self,
        io: &mut Io,
        batch: Vec<Chunk>,
        end: (Position, u32),
    ) -> Result<(), LogError> {
        for chunk in batch {
            if chunk.segment != io.segment.number() {
                assert_eq!(
                    chunk.segment,
                    io.segment.number() + 1,
                    "segments are written in order"
                );
                let link = chunk
                    .opens
                    .expect("the first chunk of a segment carries its link");
                io.segment.sync()?;
                let header = SegmentHeader {
                    number: chunk.segment,
                    size: self.options.segment_size,
                    flags: 0,
                    identity: self.identity,
                    link,
                };
                io.segment = SegmentFile::create(&*self.options.disk, &self.dir, header, &[])?;
                self.lock.verify()?;
                io.superblock.update(|s| {
                    s.last = chunk.segment;
                    s.durable = Position::new(chunk.segment, SEGMENT_HEADER_LEN);
                    s.durable_checksum = 0;
                })?;
            }
            io.segment.write_at(chunk.offset, &chunk.bytes)?;
        }
        self.lock.verify()?;
        io.segment.sync()?;
        io.syncs_unrecorded += 1;
        if io.syncs_unrecorded >= SUPERBLOCK_DURABLE_EVERY_SYNCS {
            io.syncs_unrecorded = 0;
            io.superblock.record_durable(end)?;
        }
        Ok(())
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // State changes are completed before any call that could panic, so a poisoned lock
        // still guards consistent state.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The state, once no thread is writing and syncing a batch.
    fn lock_state_idle(&self) -> MutexGuard<'_, State> {
        let mut state = self.lock_state();
        while state.syncing {
            state = self
                .synced
                .wait(state)
                .unwrap_or_else(|poison| poison.into_inner());
        }
        state
    }

    fn lock_io(&self) -> MutexGuard<'_, Io> {
        self.io.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::warn!("closing the log in {}: {e}", self.dir.display());
        }
    }
}

/// Writes the records of a snapshot, in [`Wal::compact`].
#[derive(Debug)]
pub struct SnapshotWriter {
    seed: Seed,
    segment: u64,
    bytes: Vec<u8>,
    payload_max: usize,
    last_checksum: u32,
}

impl SnapshotWriter {
    /// Adds one record to the snapshot.
    pub fn push(
        &mut self,
        kind: RecordKind,
        generation: u64,
        payload: &[u8],
    ) -> Result<(), LogError> {
        if payload.len() > self.payload_max {
            return Err(LogError::RecordTooLarge {
                len: payload.len(),
                max: self.payload_max,
            });
        }
        let at = Position::new(self.segment, SEGMENT_HEADER_LEN + self.bytes.len() as u64);
        // Nothing in the new segment is durable until it is renamed into place.
        let durable = Position::new(self.segment, SEGMENT_HEADER_LEN);
        self.last_checksum = record::encode(
            &mut self.bytes,
            self.seed,
            at,
            kind,
            generation,
            durable,
            payload,
        );
        Ok(())
    }
}
