//! Recovery over damaged, copied, swapped, cut, forged and stray files (DESIGN.md I6). A
//! valid log of several segments is built once on the simulated disk (records of several
//! kinds appended and synced, rolling 3 to 6 segments; in some scenarios a compaction; then
//! closed), and its files are written onto a fresh disk for each input; then the input's
//! mutations are applied: bytes flipped, set or zeroed in any file (the superblock too), files
//! cut, extended, deleted, segments renamed onto other numbers, files replaced by a segment or
//! the superblock of another log, by an older image of themselves or by another file of the
//! log, stray files added, and fields of the superblock, a segment header or a record changed
//! with their checksums written again (what no bit rot makes, but a bug or a hand might).
//! Then:
//!
//! - neither `Wal::inspect` nor `Wal::open` panics, and they agree (the same records, or both
//!   refuse, or the directory held no log and opening made a new one);
//! - every record handed out is valid where it lies, by the documented layout recomputed
//!   here (`wal_check.rs`), for a log id that a valid superblock copy and the segment's header
//!   name, and that the opened log reports; the records follow each other without gaps;
//! - nothing acknowledged is lost where no acknowledged byte was touched: when the mutations
//!   only add or change stray files, or only change bytes of the last segment after its last
//!   acknowledged record, or only change the superblock, a log that opens hands out every
//!   acknowledged record, in order (and no other, unless the segment bytes changed); with
//!   stray files alone, it must open and leave the strays of other programs alone;
//! - nothing acknowledged is lost, whatever happened to the segments, while the superblock is
//!   the one the clean close left (copies may be broken, none replaced by another valid one)
//!   and no segment bytes were forged: it names the last record, so zeroing, cutting, rolling
//!   back or swapping segments must make opening refuse;
//! - a log that opened survives a reboot (`wal_check::assert_reboot`).

#![no_main]

mod wal_check;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use fencekit::disk::Disk as _;
use fencekit::wal::{Position, RecordKind, SnapshotWriter, Wal};
use fencekit_sim::disk::SimDisk;
use libfuzzer_sys::fuzz_target;
use wal_check::{
    FIRST_RECORD, RECORD_HEADER, SEGMENT_HEADER, SEGMENT_SIZE, STRANGE_KIND, Seen, assert_log,
    assert_reboot, assert_records, dir, encoded_len, header_checksum, segment_name, superblock_ids,
    u32_at, u64_at,
};

// --- the logs, built once -----------------------------------------------------------------

/// A log as it was left after its last acknowledged record.
struct Built {
    files: BTreeMap<String, Vec<u8>>,
    /// Images of the log's files at earlier moments (each time a sync reached a new segment,
    /// and after a compaction), oldest first.
    history: Vec<BTreeMap<String, Vec<u8>>>,
    /// Every acknowledged (synced) record of the live log, in order.
    acked: Vec<Seen>,
    id: [u8; 16],
    /// The live segments.
    first: u64,
    last: u64,
    /// Where the last acknowledged record of the last segment ends.
    tail_end: usize,
}

const KINDS: [u8; 6] = [0x01, 0x10, 0x11, 0x12, 0x13, STRANGE_KIND];

struct Builder {
    disk: SimDisk,
    wal: Wal,
    rng: u64,
    generation: u64,
    acked: Vec<Seen>,
    pending: Vec<Seen>,
    history: Vec<BTreeMap<String, Vec<u8>>>,
    synced_segment: u64,
    end: Position,
}

impl Builder {
    fn new(disk: SimDisk, seed: u64) -> Builder {
        let (wal, records) = wal_check::open(&disk).expect("a new log");
        assert!(records.is_empty());
        let end = wal.durable();
        Builder {
            disk,
            wal,
            rng: seed | 1,
            generation: 0,
            acked: Vec::new(),
            pending: Vec::new(),
            history: Vec::new(),
            synced_segment: end.segment(),
            end,
        }
    }

    /// xorshift64*: deterministic, good enough for sizes and bytes.
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn append(&mut self, kind: u8, payload: Vec<u8>) {
        self.generation += 1;
        let end = self
            .wal
            .append(
                RecordKind::new(kind).expect("non-zero"),
                self.generation,
                &payload,
            )
            .expect("append");
        let start = Position::new(
            end.segment(),
            end.offset() - encoded_len(payload.len()) as u64,
        );
        self.pending.push(Seen {
            position: start,
            kind,
            generation: self.generation,
            payload,
            path: dir().join(segment_name(end.segment())),
        });
        self.end = end;
    }

    fn random_record(&mut self) {
        let kind = KINDS[(self.next() % KINDS.len() as u64) as usize];
        let len = match self.next() % 8 {
            0 => 0,
            1..=4 => (self.next() % 64) as usize,
            _ => (self.next() % 3000) as usize,
        };
        let payload = (0..len).map(|_| self.next() as u8).collect();
        self.append(kind, payload);
    }

    fn sync(&mut self) {
        self.wal.sync().expect("sync");
        self.acked.append(&mut self.pending);
        let segment = self.wal.durable().segment();
        if segment != self.synced_segment {
            self.synced_segment = segment;
            self.history.push(wal_check::files(&self.disk));
        }
    }

    /// Appends (syncing now and then) until segment `last` holds a few records.
    fn fill_until(&mut self, last: u64) {
        loop {
            self.random_record();
            if self.next().is_multiple_of(3) {
                self.sync();
            }
            let in_last = self
                .acked
                .iter()
                .chain(&self.pending)
                .filter(|r| r.position.segment() == last)
                .count();
            if in_last >= 3 {
                break;
            }
        }
        self.sync();
    }

    /// Fills the rest of the current segment with one record, to its last byte.
    fn fill_segment(&mut self) {
        let room = SEGMENT_SIZE - self.end.offset() - wal_check::RECORD_HEADER as u64;
        let payload = vec![0xA5; room as usize];
        self.append(0x11, payload);
        self.sync();
        assert_eq!(self.end.offset(), SEGMENT_SIZE, "the segment is full");
    }

    /// Compacts to a snapshot of the last `keep` acknowledged records.
    fn compact(&mut self, keep: usize) {
        self.sync();
        let base = self.wal.durable().segment() + 1;
        let kept: Vec<Seen> = self.acked[self.acked.len().saturating_sub(keep)..].to_vec();
        self.wal
            .compact(&mut |w: &mut SnapshotWriter| {
                for r in &kept {
                    w.push(
                        RecordKind::new(r.kind).expect("non-zero"),
                        r.generation,
                        &r.payload,
                    )?;
                }
                Ok(())
            })
            .expect("compact");
        let mut offset = FIRST_RECORD as u64;
        self.acked = kept
            .into_iter()
            .map(|r| {
                let position = Position::new(base, offset);
                offset += encoded_len(r.payload.len()) as u64;
                Seen {
                    position,
                    path: dir().join(segment_name(base)),
                    ..r
                }
            })
            .collect();
        self.end = Position::new(base, offset);
        self.synced_segment = base;
        self.history.push(wal_check::files(&self.disk));
    }

    fn finish(self) -> Built {
        let Builder {
            disk,
            wal,
            acked,
            history,
            pending,
            ..
        } = self;
        assert!(pending.is_empty());
        drop(wal);
        let files = wal_check::files(&disk);
        let ids = superblock_ids(&files["superblock"]);
        let [id] = ids[..] else {
            panic!("the built log's superblock names {ids:02x?}")
        };
        let segments: Vec<u64> = files
            .keys()
            .filter_map(|n| n.strip_suffix(".wal"))
            .map(|n| u64::from_str_radix(n, 16).expect("a segment name"))
            .collect();
        let (first, last) = (segments[0], *segments.last().expect("a segment"));
        let tail_end = acked
            .iter()
            .rfind(|r| r.position.segment() == last)
            .map_or(FIRST_RECORD, |r| {
                r.position.offset() as usize + encoded_len(r.payload.len())
            });
        // The build itself is checked: what was acknowledged is what recovery hands out.
        assert_log(&files, &ids, &acked);
        let (_, seen) = wal_check::inspect(&disk).expect("the built log inspects");
        assert_records(
            &seen,
            &acked,
            true,
            true,
            "the built log does not hand out what was acknowledged",
        );
        Built {
            files,
            history,
            acked,
            id,
            first,
            last,
            tail_end,
        }
    }
}

struct Logs {
    scenarios: Vec<Built>,
    /// Another log, with another id: its files are what an operator might copy in by mistake.
    foreign: Built,
}

fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let plain = {
            let mut b = Builder::new(SimDisk::new(), 1);
            b.fill_until(4);
            b.finish()
        };
        let compacted = {
            let mut b = Builder::new(SimDisk::new(), 2);
            b.fill_until(3);
            b.compact(5);
            b.fill_until(6);
            b.finish()
        };
        let compacted_last = {
            let mut b = Builder::new(SimDisk::new(), 3);
            b.fill_until(3);
            b.compact(3);
            b.finish()
        };
        let full = {
            let mut b = Builder::new(SimDisk::new(), 4);
            b.fill_until(3);
            b.fill_segment();
            b.finish()
        };
        let foreign = {
            let disk = SimDisk::new();
            // The simulated disk draws log ids from a counter: skip one, so that this log's
            // id differs from the others'.
            disk.new_log_id().expect("an id");
            let mut b = Builder::new(disk, 5);
            b.fill_until(4);
            b.finish()
        };
        for built in [&plain, &compacted, &compacted_last, &full] {
            assert_ne!(built.id, foreign.id);
        }
        Logs {
            scenarios: vec![plain, compacted, compacted_last, full],
            foreign,
        }
    })
}

// --- the mutations ------------------------------------------------------------------------

/// A segment number, near the live ones or any.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum SegNum {
    /// From the first live segment up to two past the last.
    Live(u8),
    /// Just below the first live one (left over from a compaction).
    Below(u8),
    Raw(u64),
}

impl SegNum {
    fn number(self, b: &Built) -> u64 {
        match self {
            SegNum::Live(k) => b.first + u64::from(k) % (b.last - b.first + 3),
            SegNum::Below(k) => b.first.saturating_sub(1 + u64::from(k) % 3),
            SegNum::Raw(n) => n,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FileSel {
    Superblock,
    /// The last live segment.
    Last,
    Segment(SegNum),
    /// Whatever file the directory lists at this index now.
    Listed(u8),
}

impl FileSel {
    fn name(self, b: &Built, disk: &SimDisk) -> String {
        match self {
            FileSel::Superblock => "superblock".into(),
            FileSel::Last => segment_name(b.last),
            FileSel::Segment(n) => segment_name(n.number(b)),
            FileSel::Listed(k) => {
                let mut names = disk.list(dir()).expect("list");
                names.sort();
                if names.is_empty() {
                    "superblock".into()
                } else {
                    names.swap_remove(usize::from(k) % names.len())
                }
            }
        }
    }
}

/// A byte offset in a file, near the places that matter or any.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Offset {
    Raw(u16),
    /// From the end of the last acknowledged record of the last segment.
    Tail(i16),
    /// From the start of an acknowledged record (in whatever file is mutated).
    Record(u8, i8),
    /// Back from the end of the file.
    FromEnd(u16),
    /// In the segment header.
    Header(u8),
}

impl Offset {
    fn at(self, b: &Built, len: usize) -> usize {
        match self {
            Offset::Raw(v) => usize::from(v),
            Offset::Tail(d) => b.tail_end.saturating_add_signed(isize::from(d)),
            Offset::Record(i, d) => {
                let start = b.acked.get(usize::from(i) % b.acked.len().max(1));
                let start = start.map_or(b.tail_end, |r| r.position.offset() as usize);
                start.saturating_add_signed(isize::from(d))
            }
            Offset::FromEnd(d) => len.saturating_sub(1 + usize::from(d) % len.max(1)),
            Offset::Header(k) => usize::from(k) % 128,
        }
    }
}

/// Where replacement bytes come from.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Source {
    /// A file of this log, as it is now.
    Own(FileSel),
    /// A segment (by index among its live ones) or the superblock of the other log.
    ForeignSegment(u8),
    ForeignSuperblock,
    /// A file of this log as it was at an earlier moment.
    Old {
        moment: u8,
        file: FileSel,
    },
}

impl Source {
    fn bytes(self, b: &Built, foreign: &Built, disk: &SimDisk) -> Option<Vec<u8>> {
        match self {
            Source::Own(file) => disk.read(&dir().join(file.name(b, disk))).ok(),
            Source::ForeignSegment(k) => {
                let n = foreign.first + u64::from(k) % (foreign.last - foreign.first + 1);
                foreign.files.get(&segment_name(n)).cloned()
            }
            Source::ForeignSuperblock => foreign.files.get("superblock").cloned(),
            Source::Old { moment, file } => {
                let image = b
                    .history
                    .get(usize::from(moment) % b.history.len().max(1))?;
                image.get(&file.name(b, disk)).cloned()
            }
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum StrayName {
    /// A temporary file name of the log's own kind.
    Temp(SegNum),
    SuperblockTemp,
    Other(u8),
}

/// Names no log file has, some close to one.
const OTHER_NAMES: [&str; 8] = [
    "LOCK",
    "notes.txt",
    "superblock.bak",
    "0000000000000001.wal.bak",
    "1.wal",
    "SUPERBLOCK",
    "0000000000000002.WAL",
    ".0000000000000003.wal.swp",
];

impl StrayName {
    fn name(self, b: &Built) -> String {
        match self {
            StrayName::Temp(n) => format!("{:016x}.wal.tmp", n.number(b)),
            StrayName::SuperblockTemp => "superblock.tmp".into(),
            StrayName::Other(k) => OTHER_NAMES[usize::from(k) % OTHER_NAMES.len()].into(),
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum StrayContent {
    Empty,
    Zeros(u16),
    Bytes(Vec<u8>),
    Copy(Source),
}

#[derive(Arbitrary, Debug, Clone)]
enum Mutation {
    Flip {
        file: FileSel,
        at: Offset,
        mask: u8,
    },
    Set {
        file: FileSel,
        at: Offset,
        bytes: Vec<u8>,
    },
    Zero {
        file: FileSel,
        at: Offset,
        len: u16,
    },
    Truncate {
        file: FileSel,
        at: Offset,
    },
    Extend {
        file: FileSel,
        by: u16,
        fill: u8,
    },
    Delete {
        file: FileSel,
    },
    Rename {
        from: FileSel,
        to: SegNum,
    },
    Copy {
        from: Source,
        to: FileSel,
    },
    Stray {
        name: StrayName,
        content: StrayContent,
    },
    /// Changes a field of some superblock copies (a bit mask; none means all) and writes
    /// their checksums again: a superblock that is wrong yet valid.
    ForgeSuperblock {
        copies: u8,
        field: SuperblockField,
        value: Value,
    },
    /// Sets the superblock's first-segment checksum (in every copy) to the header checksum of
    /// the segment it names, as it is now.
    RelinkSuperblock,
    /// Changes a field of a segment header and writes its checksum again.
    ForgeSegment {
        file: FileSel,
        field: SegmentField,
        value: Value,
    },
    /// Changes a field of an acknowledged record where it lies, and writes its checksums
    /// again: a record that is wrong yet valid.
    ForgeRecord {
        record: u8,
        field: RecordField,
        value: Value,
    },
    /// Writes a valid record of this log into the last segment, `gap` records' worth of
    /// 8 bytes after the last acknowledged one.
    ForgeAfterTail {
        gap: u8,
        kind: u8,
        durable: Value,
        len: u8,
    },
}

/// A new value for a field, from its old one.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Value {
    Delta(i8),
    Bit(u8),
    Raw(u64),
    Zero,
    Max,
    /// Just below the largest value.
    BelowMax(u8),
    /// Just below or above 2^32 (a segment number or offset that no longer fits 32 bits).
    Around32(i8),
}

impl Value {
    fn of(self, old: u64) -> u64 {
        match self {
            Value::Delta(d) => old.wrapping_add_signed(i64::from(d)),
            Value::Bit(bit) => old ^ (1 << (bit % 64)),
            Value::Raw(v) => v,
            Value::Zero => 0,
            Value::Max => u64::MAX,
            Value::BelowMax(k) => u64::MAX - u64::from(k),
            Value::Around32(d) => (1u64 << 32).wrapping_add_signed(i64::from(d)),
        }
    }
}

/// Superblock copy fields: (offset in the copy, width), superblock.rs.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum SuperblockField {
    Version,
    CopyIndex,
    Sequence,
    IdByte(u8),
    Owner,
    Cluster,
    First,
    Last,
    FirstChecksum,
    Reserved,
    Durable,
    DurableOffset,
    Tail(u8),
}

impl SuperblockField {
    fn place(self) -> (usize, usize) {
        match self {
            SuperblockField::Version => (8, 4),
            SuperblockField::CopyIndex => (12, 4),
            SuperblockField::Sequence => (16, 8),
            SuperblockField::IdByte(k) => (24 + usize::from(k % 16), 1),
            SuperblockField::Owner => (40, 1),
            SuperblockField::Cluster => (48, 8),
            SuperblockField::First => (64, 8),
            SuperblockField::Last => (72, 8),
            SuperblockField::FirstChecksum => (80, 4),
            SuperblockField::Reserved => (84, 4),
            SuperblockField::Durable => (88, 8),
            SuperblockField::DurableOffset => (88, 4),
            SuperblockField::Tail(k) => (96 + usize::from(k) % 412, 1),
        }
    }
}

/// Segment header fields: (offset, width), record.rs.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum SegmentField {
    Version,
    Flags,
    Number,
    Size,
    IdByte(u8),
    Owner,
    Cluster,
    LinkEnd,
    LinkChecksum,
    Reserved(u8),
}

impl SegmentField {
    fn place(self) -> (usize, usize) {
        match self {
            SegmentField::Version => (8, 4),
            SegmentField::Flags => (12, 4),
            SegmentField::Number => (16, 8),
            SegmentField::Size => (24, 8),
            SegmentField::IdByte(k) => (32 + usize::from(k % 16), 1),
            SegmentField::Owner => (48, 1),
            SegmentField::Cluster => (56, 8),
            SegmentField::LinkEnd => (72, 8),
            SegmentField::LinkChecksum => (80, 4),
            SegmentField::Reserved(k) => (84 + usize::from(k % 40), 1),
        }
    }
}

/// Record header fields and payload bytes: (offset in the record, width), record.rs.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum RecordField {
    Length,
    Kind,
    Reserved,
    Generation,
    Durable,
    DurableOffset,
    Payload(u16),
}

impl RecordField {
    fn place(self) -> (usize, usize) {
        match self {
            RecordField::Length => (4, 4),
            RecordField::Kind => (8, 1),
            RecordField::Reserved => (9, 1),
            RecordField::Generation => (16, 8),
            RecordField::Durable => (24, 8),
            RecordField::DurableOffset => (24, 4),
            RecordField::Payload(k) => (RECORD_HEADER + usize::from(k), 1),
        }
    }
}

/// Changes the little-endian field `width` bytes wide at `at` of `bytes` by `value`; false
/// if it lies past the end.
fn forge_field(bytes: &mut [u8], at: usize, width: usize, value: Value) -> bool {
    let Some(field) = bytes.get_mut(at..at + width) else {
        return false;
    };
    let mut word = [0u8; 8];
    word[..width].copy_from_slice(field);
    let new = value.of(u64::from_le_bytes(word)).to_le_bytes();
    field.copy_from_slice(&new[..width]);
    true
}

/// Writes the record checksums at `offset` of segment `segment`'s bytes again: the
/// payload's (as far as the length field reaches within the file), then the header's.
fn reseal_record(data: &mut [u8], id: &[u8; 16], segment: u64, offset: usize) {
    let Some(len) = data.get(offset + 4..offset + 8) else {
        return;
    };
    let len = u32::from_le_bytes(len.try_into().expect("4")) as usize;
    let end = offset.saturating_add(encoded_len(len.min(data.len())));
    if len <= data.len() && end <= data.len() {
        let crc = crc32c::crc32c(&data[offset + RECORD_HEADER..end]);
        data[offset + 12..offset + 16].copy_from_slice(&crc.to_le_bytes());
    }
    if offset + RECORD_HEADER <= data.len() {
        let crc = header_checksum(
            id,
            segment,
            offset as u64,
            &data[offset + 4..offset + RECORD_HEADER],
        );
        data[offset..offset + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// What a mutation may touch, from the most to the least harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reach {
    /// Files that are not the log's (strays, added or changed).
    Strays,
    /// The superblock alone.
    Superblock,
    /// Bytes of the last segment after its last acknowledged record.
    AfterTail,
    /// Anything else: acknowledged bytes may be gone.
    Anything,
}

fn is_segment_name(name: &str) -> bool {
    name.strip_suffix(".wal")
        .is_some_and(|stem| stem.len() == 16 && u64::from_str_radix(stem, 16).is_ok())
}

/// What writing bytes `start..` of file `name` may touch.
fn reach_of_write(b: &Built, name: &str, start: usize) -> Reach {
    if name == "superblock" {
        Reach::Superblock
    } else if is_segment_name(name) {
        if name == segment_name(b.last) && start >= b.tail_end {
            Reach::AfterTail
        } else {
            Reach::Anything
        }
    } else {
        Reach::Strays
    }
}

/// What replacing, cutting or deleting file `name` may touch.
fn reach_of_replace(name: &str) -> Reach {
    if name == "superblock" {
        Reach::Superblock
    } else if is_segment_name(name) {
        Reach::Anything
    } else {
        Reach::Strays
    }
}

/// Writes `bytes` at `at` of an existing file, within its length.
fn write_within(disk: &SimDisk, name: &str, at: usize, bytes: &[u8]) {
    let path = dir().join(name);
    let Ok(data) = disk.read(&path) else { return };
    if at >= data.len() {
        return;
    }
    let n = bytes.len().min(data.len() - at);
    let file = disk.open(&path).expect("open");
    file.write_at(&bytes[..n], at as u64).expect("write");
    file.sync_data().expect("sync");
}

/// Replaces (or creates) file `name` with `bytes`.
fn replace(disk: &SimDisk, name: &str, bytes: &[u8]) {
    let file = disk.create(&dir().join(name)).expect("create");
    file.write_at(bytes, 0).expect("write");
    file.sync_data().expect("sync");
    disk.sync_dir(dir()).expect("sync dir");
}

/// Applies `m` and says what it may have touched.
fn apply(m: &Mutation, b: &Built, foreign: &Built, disk: &SimDisk) -> Reach {
    let len_of = |name: &str| disk.read(&dir().join(name)).map_or(0, |d| d.len());
    match m {
        Mutation::Flip { file, at, mask } => {
            let name = file.name(b, disk);
            let at = at.at(b, len_of(&name));
            let Ok(data) = disk.read(&dir().join(&name)) else {
                return Reach::Strays;
            };
            if let Some(&byte) = data.get(at) {
                write_within(disk, &name, at, &[byte ^ (*mask).max(1)]);
            }
            reach_of_write(b, &name, at)
        }
        Mutation::Set { file, at, bytes } => {
            let name = file.name(b, disk);
            let at = at.at(b, len_of(&name));
            write_within(disk, &name, at, &bytes[..bytes.len().min(16)]);
            reach_of_write(b, &name, at)
        }
        Mutation::Zero { file, at, len } => {
            let name = file.name(b, disk);
            let at = at.at(b, len_of(&name));
            write_within(disk, &name, at, &vec![0; usize::from(*len) + 1]);
            reach_of_write(b, &name, at)
        }
        Mutation::Truncate { file, at } => {
            let name = file.name(b, disk);
            let Ok(data) = disk.read(&dir().join(&name)) else {
                return Reach::Strays;
            };
            let at = at.at(b, data.len()).min(data.len());
            replace(disk, &name, &data[..at]);
            reach_of_replace(&name)
        }
        Mutation::Extend { file, by, fill } => {
            let name = file.name(b, disk);
            let Ok(mut data) = disk.read(&dir().join(&name)) else {
                return Reach::Strays;
            };
            data.resize(data.len() + usize::from(*by) + 1, *fill);
            replace(disk, &name, &data);
            reach_of_replace(&name)
        }
        Mutation::Delete { file } => {
            let name = file.name(b, disk);
            if disk.remove(&dir().join(&name)).is_ok() {
                disk.sync_dir(dir()).expect("sync dir");
            }
            reach_of_replace(&name)
        }
        Mutation::Rename { from, to } => {
            let name = from.name(b, disk);
            let to = segment_name(to.number(b));
            if disk.rename(&dir().join(&name), &dir().join(&to)).is_ok() {
                disk.sync_dir(dir()).expect("sync dir");
            }
            Reach::Anything
        }
        Mutation::Copy { from, to } => {
            let name = to.name(b, disk);
            if let Some(bytes) = from.bytes(b, foreign, disk) {
                replace(disk, &name, &bytes);
            }
            reach_of_replace(&name)
        }
        Mutation::Stray { name, content } => {
            let name = name.name(b);
            let bytes = match content {
                StrayContent::Empty => Vec::new(),
                StrayContent::Zeros(n) => vec![0; usize::from(*n)],
                StrayContent::Bytes(bytes) => bytes.clone(),
                StrayContent::Copy(source) => source.bytes(b, foreign, disk).unwrap_or_default(),
            };
            replace(disk, &name, &bytes);
            Reach::Strays
        }
        Mutation::ForgeSuperblock {
            copies,
            field,
            value,
        } => {
            let Ok(mut data) = disk.read(&dir().join("superblock")) else {
                return Reach::Superblock;
            };
            let (at, width) = field.place();
            for copy in 0..4 {
                let chosen = copies & 15 == 0 || copies & (1 << copy) != 0;
                let Some(bytes) = data.get_mut(copy * 512..(copy + 1) * 512) else {
                    continue;
                };
                if chosen && forge_field(bytes, at, width, *value) {
                    let crc = crc32c::crc32c(&bytes[..508]);
                    bytes[508..].copy_from_slice(&crc.to_le_bytes());
                }
            }
            replace(disk, "superblock", &data);
            Reach::Superblock
        }
        Mutation::RelinkSuperblock => {
            let Ok(mut data) = disk.read(&dir().join("superblock")) else {
                return Reach::Superblock;
            };
            for copy in 0..4 {
                let Some(bytes) = data.get_mut(copy * 512..(copy + 1) * 512) else {
                    continue;
                };
                let first = u64_at(bytes, 64);
                let Ok(segment) = disk.read(&dir().join(segment_name(first))) else {
                    continue;
                };
                if let Some(checksum) = segment.get(124..128) {
                    bytes[80..84].copy_from_slice(checksum);
                    let crc = crc32c::crc32c(&bytes[..508]);
                    bytes[508..].copy_from_slice(&crc.to_le_bytes());
                }
            }
            replace(disk, "superblock", &data);
            Reach::Superblock
        }
        Mutation::ForgeSegment { file, field, value } => {
            let name = file.name(b, disk);
            let Ok(mut data) = disk.read(&dir().join(&name)) else {
                return Reach::Strays;
            };
            let (at, width) = field.place();
            if data.len() >= SEGMENT_HEADER && forge_field(&mut data, at, width, *value) {
                let crc = crc32c::crc32c(&data[..124]);
                data[124..128].copy_from_slice(&crc.to_le_bytes());
                replace(disk, &name, &data);
            }
            reach_of_replace(&name)
        }
        Mutation::ForgeRecord {
            record,
            field,
            value,
        } => {
            let Some(r) = b.acked.get(usize::from(*record) % b.acked.len().max(1)) else {
                return Reach::Strays;
            };
            let (segment, offset) = (r.position.segment(), r.position.offset() as usize);
            let name = segment_name(segment);
            let Ok(mut data) = disk.read(&dir().join(&name)) else {
                return Reach::Strays;
            };
            let (at, width) = field.place();
            if forge_field(&mut data, offset + at, width, *value) {
                reseal_record(&mut data, &b.id, segment, offset);
                replace(disk, &name, &data);
            }
            Reach::Anything
        }
        Mutation::ForgeAfterTail {
            gap,
            kind,
            durable,
            len,
        } => {
            let name = segment_name(b.last);
            let Ok(mut data) = disk.read(&dir().join(&name)) else {
                return Reach::Strays;
            };
            let offset = b.tail_end + 8 * usize::from(*gap);
            let payload = vec![0x3C; usize::from(*len)];
            let end = offset + encoded_len(payload.len());
            if end <= data.len() {
                let tail = (b.last << 32) | b.tail_end as u64;
                let record = &mut data[offset..end];
                record.fill(0);
                record[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
                record[8] = (*kind).max(1);
                record[16..24].copy_from_slice(&1_000_000u64.to_le_bytes());
                record[24..32].copy_from_slice(&durable.of(tail).to_le_bytes());
                record[RECORD_HEADER..RECORD_HEADER + payload.len()].copy_from_slice(&payload);
                reseal_record(&mut data, &b.id, b.last, offset);
                replace(disk, &name, &data);
            }
            Reach::AfterTail
        }
    }
}

/// True if every superblock copy that still validates (magic and checksum) is the one the
/// log left in its place: damage may have broken copies, but none was replaced by another
/// valid one (an older image, another log's, a forged one). A missing superblock counts as
/// intact: nothing replaced it.
fn superblock_intact(original: &[u8], now: Option<&Vec<u8>>) -> bool {
    let Some(now) = now else { return true };
    (0..4).all(|copy| {
        let Some(c) = now.get(copy * 512..(copy + 1) * 512) else {
            return true;
        };
        let valid = &c[..8] == b"FKWALSUP" && u32_at(c, 508) == crc32c::crc32c(&c[..508]);
        !valid || original.get(copy * 512..(copy + 1) * 512) == Some(c)
    })
}

/// Mutations applied from one input, at most.
const MUTATIONS_MAX: usize = 8;

#[derive(Arbitrary, Debug)]
struct Input {
    scenario: u8,
    mutations: Vec<Mutation>,
}

fuzz_target!(|input: Input| {
    let logs = logs();
    let b = &logs.scenarios[usize::from(input.scenario) % logs.scenarios.len()];
    let disk = wal_check::materialize(&b.files);
    let mut reach = Reach::Strays;
    for m in input.mutations.iter().take(MUTATIONS_MAX) {
        reach = reach.max(apply(m, b, &logs.foreign, &disk));
    }

    let files = wal_check::files(&disk);
    let ids = files
        .get("superblock")
        .map_or_else(Vec::new, |s| superblock_ids(s));
    let inspected = wal_check::inspect(&disk);
    let opened = wal_check::open(&disk);
    if let Ok((_, records)) = &inspected {
        assert_log(&files, &ids, records);
    }
    if let Ok((wal, records)) = &opened
        && let Some(id) = assert_log(&files, &ids, records)
    {
        assert_eq!(wal.identity().id.bytes(), id, "records of another log");
    }
    match (&inspected, &opened) {
        (Ok((_, a)), Ok((_, b))) => {
            assert_records(b, a, true, true, "inspect and open hand out other records")
        }
        (Err(_), Err(_)) => {}
        // No log there: opening makes one (and an inspection has nothing to read).
        (Err(_), Ok((wal, records))) if wal.recovery_report().created => {
            assert!(records.is_empty());
        }
        (a, b) => panic!(
            "inspect and open disagree: inspect {:?}, open {:?}",
            a.as_ref().map(|(_, r)| r.len()),
            b.as_ref().map(|(_, r)| r.len())
        ),
    }
    // The built log was closed cleanly, so its superblock names the last record: unless the
    // superblock itself was replaced (an older copy of it restored, another valid one forged)
    // or valid records were forged, no damage to the segments may lose an acknowledged
    // record without opening refusing (superblock.rs; DESIGN.md I6).
    let forged = input.mutations.iter().take(MUTATIONS_MAX).any(|m| {
        matches!(
            m,
            Mutation::ForgeSegment { .. } | Mutation::ForgeRecord { .. }
        )
    });
    let trusted = !forged && superblock_intact(&b.files["superblock"], files.get("superblock"));
    if let Ok((wal, records)) = &opened {
        let created = wal.recovery_report().created;
        assert!(
            !(created && reach < Reach::Anything),
            "a new log made where one was ({reach:?})"
        );
        if !created && (reach < Reach::Anything || trusted) {
            assert_eq!(wal.identity().id.bytes(), b.id, "the log opened as another");
            let what = format!(
                "acknowledged records lost or changed ({reach:?}, superblock as it was: {trusted})"
            );
            assert_records(records, &b.acked, false, false, &what);
        }
        if reach < Reach::AfterTail {
            assert_records(records, &b.acked, true, false, "records appeared");
        }
    }
    if reach == Reach::Strays {
        assert!(
            opened.is_ok(),
            "stray files alone stop the log from opening: {:?}",
            opened.as_ref().err()
        );
        let now = wal_check::files(&disk);
        for name in files.keys() {
            if OTHER_NAMES.contains(&name.as_str()) {
                assert!(now.contains_key(name), "opening removed {name}");
            }
        }
    }
    if let Ok((wal, records)) = opened {
        let id = wal.identity().id.bytes();
        drop(wal);
        assert_reboot(&disk, &id, &records);
    }
});
