//! What the log fuzzers share: a log on the simulator's in-memory disk, the records recovery
//! hands out, and an independent check of each one against the bytes of its file, computed
//! from the layout documented in `core/src/wal/record.rs` and `superblock.rs` (not from the
//! kernel's own decoder), so that a record the decoder accepts by mistake is caught.

#![allow(dead_code, reason = "each target uses a part of the shared helpers")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fencekit::LogError;
use fencekit::disk::{Disk as _, DiskHandle};
use fencekit::wal::{LogOwner, Position, Record, RecordKind, RecoveryReport, Wal, WalOptions};
use fencekit_sim::disk::SimDisk;

/// The log's directory on the simulated disk.
pub const DIR: &str = "/log";
/// The segment size of the fuzzed logs: the smallest the log takes, so that a few records
/// roll it and each run reads little.
pub const SEGMENT_SIZE: u64 = 64 << 10;
/// Bytes of a segment header (record.rs).
pub const SEGMENT_HEADER: usize = 128;
/// Bytes of a record header (record.rs).
pub const RECORD_HEADER: usize = 32;
/// Where a fresh log's first record goes.
pub const FIRST_RECORD: usize = SEGMENT_HEADER;

pub fn dir() -> &'static Path {
    Path::new(DIR)
}

pub fn options(disk: &SimDisk) -> WalOptions {
    WalOptions {
        segment_size: SEGMENT_SIZE,
        disk: DiskHandle::new(disk.clone()),
    }
}

pub fn segment_name(number: u64) -> String {
    format!("{number:016x}.wal")
}

/// A record as recovery handed it to the owner, copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub position: Position,
    pub kind: u8,
    pub generation: u64,
    pub payload: Vec<u8>,
    pub path: PathBuf,
}

impl Seen {
    /// The same record without the file it was read from (for comparing with what was
    /// appended).
    pub fn key(&self) -> (Position, u8, u64, &[u8]) {
        (self.position, self.kind, self.generation, &self.payload)
    }

    /// What a failure message shows of it: where, kind, generation, payload length.
    fn brief(&self) -> (u64, u64, u8, u64, usize) {
        let p = self.position;
        (
            p.segment(),
            p.offset(),
            self.kind,
            self.generation,
            self.payload.len(),
        )
    }
}

/// Asserts that `found` begins with `expected` (files aside, when `paths` is false), and
/// when `exact`, holds nothing more; a failure names the first record that differs.
pub fn assert_records(found: &[Seen], expected: &[Seen], exact: bool, paths: bool, what: &str) {
    let same = |a: &Seen, b: &Seen| a.key() == b.key() && (!paths || a.path == b.path);
    let first_difference = found
        .iter()
        .zip(expected)
        .position(|(a, b)| !same(a, b))
        .or_else(|| (found.len() < expected.len()).then_some(found.len()))
        .or_else(|| (exact && found.len() > expected.len()).then_some(expected.len()));
    if let Some(at) = first_difference {
        panic!(
            "{what}: {} records where {} were expected; first difference at record {at}: \
             {:?} instead of {:?} (segment, offset, kind, generation, payload length)",
            found.len(),
            expected.len(),
            found.get(at).map(Seen::brief),
            expected.get(at).map(Seen::brief)
        );
    }
}

fn visitor(seen: &mut Vec<Seen>) -> impl FnMut(Record<'_>) -> Result<(), LogError> + '_ {
    |r: Record<'_>| {
        seen.push(Seen {
            position: r.position,
            kind: r.kind.get(),
            generation: r.generation,
            payload: r.payload.to_vec(),
            path: r.path.to_path_buf(),
        });
        Ok(())
    }
}

/// `Wal::inspect`, with the records it visited.
pub fn inspect(disk: &SimDisk) -> Result<(RecoveryReport, Vec<Seen>), LogError> {
    let mut seen = Vec::new();
    let handle = DiskHandle::new(disk.clone());
    let report = Wal::inspect(dir(), &handle, &mut visitor(&mut seen))?;
    Ok((report, seen))
}

/// `Wal::open` as a fence's log, with the records it visited.
pub fn open(disk: &SimDisk) -> Result<(Wal, Vec<Seen>), LogError> {
    let mut seen = Vec::new();
    let wal = Wal::open(
        dir(),
        LogOwner::Fence,
        options(disk),
        &mut visitor(&mut seen),
    )?;
    Ok((wal, seen))
}

/// True if `bytes` are all zero, read by words (a byte loop costs a traced comparison per
/// byte under the fuzzer's instrumentation).
pub fn all_zero(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    words.all(|w| u64::from_ne_bytes(w.try_into().expect("8")) == 0)
        && words.remainder().iter().all(|&b| b == 0)
}

/// Every file of the log's directory, by name.
pub fn files(disk: &SimDisk) -> BTreeMap<String, Vec<u8>> {
    let mut names = disk.list(dir()).expect("the simulated disk lists");
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let bytes = disk.read(&dir().join(&name)).expect("a listed file reads");
            (name, bytes)
        })
        .collect()
}

/// Writes `files` into the log directory of a fresh disk, synced.
pub fn materialize(files: &BTreeMap<String, Vec<u8>>) -> SimDisk {
    let disk = SimDisk::new();
    for (name, bytes) in files {
        let file = disk.create(&dir().join(name)).expect("create");
        file.write_at(bytes, 0).expect("write");
        file.sync_data().expect("sync");
    }
    disk.sync_dir(dir()).expect("sync dir");
    disk
}

// --- the documented layout, written again ------------------------------------------------

pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Bytes a record with `payload` bytes takes: header and payload, padded to 8.
pub fn encoded_len(payload: usize) -> usize {
    (RECORD_HEADER + payload).next_multiple_of(8)
}

/// The record header checksum: crc32c over the log id, the segment number and the offset
/// (both u64 little-endian), then header bytes 4..32.
pub fn header_checksum(id: &[u8; 16], segment: u64, offset: u64, rest: &[u8]) -> u32 {
    let mut c = crc32c::crc32c(id);
    c = crc32c::crc32c_append(c, &segment.to_le_bytes());
    c = crc32c::crc32c_append(c, &offset.to_le_bytes());
    crc32c::crc32c_append(c, rest)
}

/// The log ids named by the superblock copies that validate: of the 4 copies of 512 bytes,
/// those with magic "FKWALSUP", version 1, their own index at 12 and the crc32c of bytes
/// 0..508 at 508 (superblock.rs). Which of them recovery trusts is its business; the records
/// it hands out must belong to one of these logs.
pub fn superblock_ids(bytes: &[u8]) -> Vec<[u8; 16]> {
    let mut ids = Vec::new();
    for copy in 0..4 {
        let Some(c) = bytes.get(copy * 512..(copy + 1) * 512) else {
            continue;
        };
        if &c[..8] == b"FKWALSUP"
            && u32_at(c, 8) == 1
            && u32_at(c, 12) as usize == copy
            && u32_at(c, 508) == crc32c::crc32c(&c[..508])
        {
            let id: [u8; 16] = c[24..40].try_into().expect("16");
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

/// A segment header's number and log id, if it is a valid header (magic "FKWALSEG",
/// version 2, crc32c of 0..124 at 124).
pub fn segment_header(bytes: &[u8]) -> Option<(u64, [u8; 16])> {
    let h = bytes.get(..SEGMENT_HEADER)?;
    if &h[..8] != b"FKWALSEG" || u32_at(h, 8) != 2 || u32_at(h, 124) != crc32c::crc32c(&h[..124]) {
        return None;
    }
    Some((u64_at(h, 16), h[32..48].try_into().expect("16")))
}

/// Asserts that `record` is a valid record where it says it lies: in the file named for its
/// segment, whose header is valid and names that segment and a log of `ids` (the
/// superblock's), at an aligned offset past the header, with both checksums right (the
/// header's seeded by that log's id and covering the position) and the fields and payload
/// that were handed out. Returns the log's id.
pub fn assert_valid(
    files: &BTreeMap<String, Vec<u8>>,
    ids: &[[u8; 16]],
    record: &Seen,
) -> [u8; 16] {
    let (segment, offset) = (record.position.segment(), record.position.offset() as usize);
    let name = segment_name(segment);
    assert_eq!(
        record.path,
        dir().join(&name),
        "record at {:?} handed out with the path of another file",
        record.position
    );
    let data = files
        .get(&name)
        .unwrap_or_else(|| panic!("record at {:?}: no file {name}", record.position));
    let (number, header_id) = segment_header(data).unwrap_or_else(|| {
        panic!(
            "record at {:?}: {name} has no valid header",
            record.position
        )
    });
    assert_eq!(number, segment, "{name}'s header names segment {number}");
    assert!(
        ids.contains(&header_id),
        "{name}'s header names log {header_id:02x?}, no valid superblock copy does ({ids:02x?})"
    );
    let id = &header_id;
    assert!(
        offset >= SEGMENT_HEADER && offset.is_multiple_of(8),
        "record at a misaligned offset {offset} of {name}"
    );
    let header = data
        .get(offset..offset + RECORD_HEADER)
        .unwrap_or_else(|| panic!("record header at {offset} past the end of {name}"));
    let stored = u32_at(header, 0);
    let computed = header_checksum(id, segment, offset as u64, &header[4..]);
    assert_eq!(
        stored, computed,
        "record at {offset} of {name} handed out with a bad header checksum"
    );
    let len = u32_at(header, 4) as usize;
    assert_eq!(len, record.payload.len(), "payload length at {offset}");
    assert_ne!(header[8], 0, "record kind 0 handed out at {offset}");
    assert_eq!(header[8], record.kind, "kind at {offset}");
    assert_eq!(header[9..12], [0; 3], "reserved bytes at {offset}");
    assert_eq!(
        u64_at(header, 16),
        record.generation,
        "generation at {offset}"
    );
    let end = offset + encoded_len(len);
    let body = data
        .get(offset + RECORD_HEADER..end)
        .unwrap_or_else(|| panic!("record at {offset} runs past the end of {name}"));
    assert_eq!(
        u32_at(header, 12),
        crc32c::crc32c(body),
        "record at {offset} of {name} handed out with a bad payload checksum"
    );
    assert_eq!(&body[..len], &record.payload[..], "payload at {offset}");
    header_id
}

/// Asserts what every recovery must hand out: valid records of one log (see
/// [`assert_valid`]), in log order without gaps: each segment's records start right after
/// its header and follow each other, segments in increasing order. Returns the log's id, if
/// there was a record.
pub fn assert_log(
    files: &BTreeMap<String, Vec<u8>>,
    ids: &[[u8; 16]],
    records: &[Seen],
) -> Option<[u8; 16]> {
    let mut previous: Option<(u64, usize)> = None; // segment, end of the last record
    let mut log = None;
    for record in records {
        let id = assert_valid(files, ids, record);
        assert_eq!(*log.get_or_insert(id), id, "records of two logs handed out");
        let (segment, offset) = (record.position.segment(), record.position.offset() as usize);
        match previous {
            Some((s, end)) if s == segment => assert_eq!(
                offset, end,
                "a gap between records in segment {segment}: {end} to {offset}"
            ),
            Some((s, _)) if s > segment => {
                panic!("segment {segment} handed out after segment {s}")
            }
            _ => assert_eq!(
                offset, FIRST_RECORD,
                "the first record of segment {segment} is not right after its header"
            ),
        }
        previous = Some((segment, offset + encoded_len(record.payload.len())));
    }
    log
}

/// A kind the log stores though no owner of this version knows it.
pub const STRANGE_KIND: u8 = 0x7E;

/// After a successful opening: the log's state survives a reboot. Reopening sees the same
/// records and nothing left to repair; a record appended and synced then is found after them.
pub fn assert_reboot(disk: &SimDisk, id: &[u8; 16], records: &[Seen]) {
    let (wal, again) = open(disk).expect("a log that opened reopens");
    assert_records(&again, records, true, true, "reopening sees other records");
    let report = wal.recovery_report();
    assert_eq!(report.torn_tail, None, "a torn tail left after the opening");
    assert!(
        report.removed_segments.is_empty() && report.removed_temps.is_empty(),
        "files left to remove after the opening: {report:?}"
    );
    let payload = b"appended after recovery";
    let kind = RecordKind::new(STRANGE_KIND).expect("non-zero");
    let end = wal
        .append_sync(kind, 77, payload)
        .expect("append after recovery");
    drop(wal);
    let files = files(disk);
    let (_, after) = inspect(disk).expect("a log appended to inspects");
    let ids = superblock_ids(&files["superblock"]);
    assert_eq!(assert_log(&files, &ids, &after).as_ref(), Some(id));
    assert_eq!(
        after.len(),
        records.len() + 1,
        "records after an append: {:?}",
        after.iter().map(|r| r.position).collect::<Vec<_>>()
    );
    assert_records(
        &after,
        records,
        false,
        true,
        "an append changed older records",
    );
    let last = after.last().expect("one record at least");
    let start = Position::new(
        end.segment(),
        end.offset() - encoded_len(payload.len()) as u64,
    );
    assert_eq!(last.key(), (start, STRANGE_KIND, 77, &payload[..]));
}
