//! Opening a log: verify every record, hand the live ones to the owner in order, and decide
//! where the tail is.
//!
//! The rules (DESIGN.md I6):
//!
//! 1. The live log starts at the newest segment flagged as a snapshot base; older segments are
//!    left over from a compaction that crashed before removing them, and are removed.
//! 2. Live segments must be numbered without gaps, each with a valid header.
//! 3. Records are read in order until the first position that does not hold a valid record:
//!    the *stop*. A stop at an all-zero header with only zeros after it, in a segment that is
//!    not the last, is where the writer rolled to the next segment; reading goes on there.
//! 4. Any other stop is the tail candidate. It is *corruption*, and the log refuses to open,
//!    if some later valid record says (in its durable-up-to field) that the stop position had
//!    already been synced: an acknowledged record was damaged. It is also corruption if the
//!    record at the stop fails its checksum although every sector of it was written (a torn
//!    write leaves whole sectors unwritten, and segments are zero-filled at creation).
//! 5. Otherwise the stop is a torn tail: nothing from it on was ever acknowledged. The bytes
//!    from the stop on are zeroed and later segments removed, so the next append continues at
//!    the stop and no stale byte can be mistaken for a record later.
//!
//! The one loss these rules cannot see is damage to the very last synced records when the
//! damage itself looks like a torn write (a whole sector of zeros): no later record exists to
//! witness that they were synced.

use std::path::Path;

use super::record::{
    FLAG_SNAPSHOT_BASE, Parsed, RECORD_ALIGN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SegmentHeader,
    looks_torn, parse,
};
use super::segment::{self, EntryName, SegmentFile};
use super::{Position, Record, RecoveryReport, TornTail};
use crate::disk::Disk;
use crate::error::Error;
use crate::limits::{SEGMENT_SIZE_MAX, SEGMENT_SIZE_MIN};

/// Whether recovery may change the log.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Opening for writing: truncate a torn tail, remove leftovers, sync what was recovered.
    Repair,
    /// Inspecting: read and verify only. The report says what a repair would do.
    ReadOnly,
}

/// The log as recovery left it: ready to append at `next` in `tail` (`None` when read-only).
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) tail: Option<SegmentFile>,
    pub(crate) next: u64,
    /// Record bytes from the base segment's start to the tail (the compaction trigger).
    pub(crate) live_bytes: u64,
    pub(crate) report: RecoveryReport,
}

/// Where reading a segment stopped.
enum Stop {
    /// All-zero header (or the end of the segment).
    Clean,
    /// Something that is not a valid record.
    Dirty { extent: usize, reason: String },
}

pub(crate) fn recover(
    disk: &dyn Disk,
    dir: &Path,
    segment_size: u64,
    mode: Mode,
    visit: &mut dyn FnMut(Record<'_>) -> Result<(), Error>,
) -> Result<Recovered, Error> {
    let repair = mode == Mode::Repair;
    let numbers = list_segments(disk, dir, repair)?;
    if numbers.is_empty() {
        if !repair {
            return Err(Error::corrupt(dir, 0, "no log segment in this directory"));
        }
        let header = SegmentHeader {
            number: 1,
            size: segment_size,
            flags: FLAG_SNAPSHOT_BASE,
        };
        let tail = SegmentFile::create(disk, dir, header, &[])?;
        return Ok(Recovered {
            tail: Some(tail),
            next: SEGMENT_HEADER_LEN,
            live_bytes: 0,
            report: RecoveryReport::default(),
        });
    }

    let mut segments = Vec::with_capacity(numbers.len());
    for number in numbers {
        let path = segment::segment_path(dir, number);
        let header = read_header(disk, &path, number)?;
        segments.push((path, header));
    }
    let Some(base) = segments
        .iter()
        .rposition(|(_, h)| h.flags & FLAG_SNAPSHOT_BASE != 0)
    else {
        return Err(Error::corrupt(
            &segments[0].0,
            0,
            "no segment is a snapshot base: the segments before this one are missing",
        ));
    };
    let mut report = RecoveryReport::default();
    for (path, _) in segments.drain(..base) {
        if repair {
            segment::remove(disk, &path, "remove obsolete segment")?;
        }
        report.removed_segments.push(path);
    }
    if repair && !report.removed_segments.is_empty() {
        segment::sync_dir(disk, dir)?;
    }
    for pair in segments.windows(2) {
        let expected = pair[0].1.number + 1;
        if pair[1].1.number != expected {
            return Err(Error::corrupt(
                &pair[1].0,
                0,
                format!("segment {expected} (the one before this) is missing"),
            ));
        }
    }

    let mut live_bytes = 0u64;
    for index in 0..segments.len() {
        let (path, header) = segments[index].clone();
        let (path, header) = (&path, &header);
        let data = disk
            .read(path)
            .map_err(|e| Error::io("read segment", path, e))?;
        if data.len() as u64 > header.size {
            return Err(Error::corrupt(
                path,
                header.size,
                format!(
                    "the file is {} bytes, longer than the {} its header declares",
                    data.len(),
                    header.size
                ),
            ));
        }
        let size = header.size as usize;
        let mut offset = SEGMENT_HEADER_LEN as usize;
        let stop = loop {
            match parse(&data, header.number, size, offset) {
                Parsed::Valid(view) => {
                    visit(Record {
                        position: Position::new(header.number, offset as u64),
                        kind: view.kind,
                        generation: view.generation,
                        payload: view.payload,
                        path,
                    })?;
                    report.records += 1;
                    live_bytes += view.len as u64;
                    offset += view.len;
                }
                Parsed::End => break Stop::Clean,
                Parsed::Invalid { extent, reason } => break Stop::Dirty { extent, reason },
            }
        };
        let rest_is_zero = data
            .get(offset..)
            .is_none_or(|rest| rest.iter().all(|&b| b == 0));
        let is_last = index + 1 == segments.len();
        if matches!(stop, Stop::Clean) && rest_is_zero && !is_last {
            continue;
        }

        // `offset` in this segment is the tail candidate.
        let at = Position::new(header.number, offset as u64);
        let what = match &stop {
            Stop::Clean => "an unwritten record header".to_owned(),
            Stop::Dirty { reason, .. } => reason.clone(),
        };
        if let Some(witness) = find_witness(&data, header.number, size, offset + RECORD_ALIGN, at) {
            return Err(Error::corrupt(
                path,
                offset as u64,
                format!(
                    "{what}; the record at offset {witness} shows this position had been synced"
                ),
            ));
        }
        for (later_path, later) in &segments[index + 1..] {
            let later_data = disk
                .read(later_path)
                .map_err(|e| Error::io("read segment", later_path, e))?;
            if let Some(witness) = find_witness(
                &later_data,
                later.number,
                later.size as usize,
                SEGMENT_HEADER_LEN as usize,
                at,
            ) {
                return Err(Error::corrupt(
                    path,
                    offset as u64,
                    format!(
                        "{what}; the record at offset {witness} of {} shows this position had been synced",
                        later_path.display()
                    ),
                ));
            }
        }
        if let Stop::Dirty { extent, reason } = &stop
            && !looks_torn(&data, offset, offset + extent)
        {
            return Err(Error::corrupt(
                path,
                offset as u64,
                format!(
                    "{reason}, yet every sector of the record was written: damage, not a torn write"
                ),
            ));
        }

        // A torn tail: discard everything from `offset` on.
        let discarded = match data.iter().rposition(|&b| b != 0) {
            Some(last) if last >= offset => (last + 1 - offset) as u64,
            _ => 0,
        };
        for (later_path, _) in segments.drain(index + 1..) {
            if repair {
                segment::remove(disk, &later_path, "remove segment after a torn tail")?;
            }
            report.removed_segments.push(later_path);
        }
        let tail = if repair {
            let tail = SegmentFile::open(disk, path.clone(), *header)?;
            if discarded > 0 {
                tail.write_zeros(offset as u64, discarded)?;
            }
            if (data.len() as u64) < header.size {
                tail.write_zeros(data.len() as u64, header.size - data.len() as u64)?;
            }
            segment::sync_dir(disk, dir)?;
            // Records recovered from the page cache after a process crash may never have
            // been synced: make them durable before anyone acts on them.
            for (live_path, _) in &segments {
                disk.open(live_path)
                    .and_then(|f| f.sync_data())
                    .map_err(|e| Error::io("fdatasync", live_path, e))?;
            }
            Some(tail)
        } else {
            None
        };
        if discarded > 0 || matches!(stop, Stop::Dirty { .. }) {
            report.torn_tail = Some(TornTail {
                path: path.clone(),
                offset: offset as u64,
                discarded_bytes: discarded,
            });
        }
        report.segments = segments.len();
        return Ok(Recovered {
            tail,
            next: offset as u64,
            live_bytes,
            report,
        });
    }
    unreachable!("the last segment always yields the tail")
}

fn list_segments(disk: &dyn Disk, dir: &Path, repair: bool) -> Result<Vec<u64>, Error> {
    let names = disk
        .list(dir)
        .map_err(|e| Error::io("list log directory", dir, e))?;
    let mut numbers = Vec::new();
    let mut removed_temp = false;
    for name in names {
        match segment::classify(&name) {
            EntryName::Segment(number) => numbers.push(number),
            // A segment whose creation never finished: it never held a record.
            EntryName::Temp(_) if repair => {
                segment::remove(disk, &dir.join(&name), "remove unfinished segment")?;
                removed_temp = true;
            }
            EntryName::Temp(_) => {}
            EntryName::Other => {}
        }
    }
    if removed_temp {
        segment::sync_dir(disk, dir)?;
    }
    numbers.sort_unstable();
    Ok(numbers)
}

fn read_header(disk: &dyn Disk, path: &Path, number: u64) -> Result<SegmentHeader, Error> {
    let file = disk
        .open(path)
        .map_err(|e| Error::io("open segment", path, e))?;
    let mut bytes = [0u8; SEGMENT_HEADER_LEN as usize];
    let read = file
        .read_at(&mut bytes, 0)
        .map_err(|e| Error::io("read segment header", path, e))?;
    let header =
        SegmentHeader::decode(&bytes[..read]).map_err(|reason| Error::corrupt(path, 0, reason))?;
    if header.number != number {
        return Err(Error::corrupt(
            path,
            0,
            format!(
                "the header says segment {}, the file name {number}",
                header.number
            ),
        ));
    }
    if !(SEGMENT_SIZE_MIN..=SEGMENT_SIZE_MAX).contains(&header.size) {
        return Err(Error::corrupt(
            path,
            0,
            format!("segment size {} is out of range", header.size),
        ));
    }
    Ok(header)
}

/// The offset of a valid record at or after `from` that was written after `at` had been
/// synced, if there is one.
fn find_witness(
    data: &[u8],
    segment: u64,
    size: usize,
    from: usize,
    at: Position,
) -> Option<usize> {
    let mut offset = from.next_multiple_of(RECORD_ALIGN);
    while offset + RECORD_HEADER_LEN <= data.len() {
        match parse(data, segment, size, offset) {
            Parsed::Valid(view) if view.durable_upto > at => return Some(offset),
            Parsed::Valid(view) => offset += view.len,
            Parsed::End | Parsed::Invalid { .. } => offset += RECORD_ALIGN,
        }
    }
    None
}
