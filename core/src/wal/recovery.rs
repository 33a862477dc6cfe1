//! Opening a log: check that the directory holds one whole log, verify every record, hand the
//! live ones to the owner in order, and decide where the tail is.
//!
//! The rules (DESIGN.md I6):
//!
//! 1. A directory holds one log or nothing. A new log is created only in an empty directory
//!    (a `lost+found` aside); a directory with segments but no superblock is refused, except
//!    for the one state a crash while creating leaves: segment 1 alone, holding no record.
//! 2. The superblock names the log's identity and its live segments, first (a snapshot base)
//!    to last. Every segment must carry that identity; every live one must exist, each exactly
//!    as long as its header says (segments are preallocated: a crash cannot shorten one).
//!    Older segments of the same log are left over from a compaction and are removed. One
//!    segment past the last is a step the superblock did not record yet: a roll (the segment
//!    holds no record; it is removed) or a compaction (a whole snapshot base, renamed into
//!    place after it was synced; it is adopted). Anything else is refused.
//! 3. Segments are read in order. Each names, in its header, where the previous one ended and
//!    the checksum of its last record; a segment before the last was synced whole before its
//!    successor was created, so it must end cleanly exactly there.
//! 4. In the last segment, records are read until the first position that does not hold a
//!    valid record: the *stop*. It is *corruption*, and the log refuses to open, if a later
//!    valid record says (in its durable-up-to field) that the stop had already been synced, if
//!    the superblock says so (its durable position lies beyond the stop, or the record ending
//!    there is not the one it names), or if the record at the stop fails its checksum
//!    although every sector of it was written (a torn write leaves whole sectors unwritten).
//! 5. Otherwise the stop is a torn tail: nothing from it on was ever acknowledged. The bytes
//!    from the stop on are zeroed, so the next append continues at the stop and no stale byte
//!    can be mistaken for a record later.
//!
//! The one loss these rules cannot see is damage to the records synced since the superblock
//! last recorded how far the log was durable (at the last open, close, roll or compaction,
//! and every `SUPERBLOCK_DURABLE_EVERY_SYNCS` syncs), before a crash, when the damage looks
//! like a torn write (whole sectors of zeros from a record boundary on, or an older copy of
//! the last segment): nothing later witnesses that they were synced. Closing it for good
//! would mean rewriting the superblock, two more fdatasyncs, at every sync.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::identity::{LogIdentity, LogOwner};
use super::record::{
    FLAG_SNAPSHOT_BASE, Parsed, RECORD_ALIGN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, Seed,
    SegmentHeader, SegmentLink, looks_torn, parse,
};
use super::segment::{self, EntryName, SegmentFile};
use super::superblock::{self, Superblock, SuperblockFile};
use super::{Position, Record, RecoveryReport, SegmentSummary, TornTail};
use crate::disk::Disk;
use crate::error::LogError;
use crate::limits::{SEGMENT_SIZE_MAX, SEGMENT_SIZE_MIN};

/// Whether recovery may change the log.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Opening for writing, as `owner`: create a log in an empty directory (with segments of
    /// `segment_size`), truncate a torn tail, remove leftovers, sync what was recovered.
    Repair { owner: LogOwner, segment_size: u64 },
    /// Inspecting: read and verify only, opening nothing for writing. The report says what a
    /// repair would do.
    ReadOnly,
}

/// The log as recovery left it: ready to append at `next` in `tail` (both `None` when
/// read-only).
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) tail: Option<SegmentFile>,
    pub(crate) superblock: Option<SuperblockFile>,
    pub(crate) identity: LogIdentity,
    pub(crate) next: u64,
    /// The header checksum of the tail segment's last record (0 if it has none): the link
    /// the next segment will carry.
    pub(crate) last_checksum: u32,
    /// Record bytes from the base segment's start to the tail (the compaction trigger).
    pub(crate) live_bytes: u64,
    pub(crate) report: RecoveryReport,
}

/// What the directory holds, by name.
#[derive(Debug, Default)]
struct Listing {
    segments: BTreeSet<u64>,
    temps: Vec<PathBuf>,
    superblock: bool,
    others: Vec<String>,
}

fn list(disk: &dyn Disk, dir: &Path) -> Result<Listing, LogError> {
    let names = disk
        .list(dir)
        .map_err(|e| LogError::io("list log directory", dir, e))?;
    let mut listing = Listing::default();
    for name in names {
        let ours = !matches!(segment::classify(&name), EntryName::Other)
            || name == superblock::FILE_NAME
            || name == superblock::TEMP_NAME;
        if ours {
            let path = dir.join(&name);
            let regular = match disk.is_regular_file(&path) {
                Ok(regular) => regular,
                // Gone since the listing: a writer's temporary file, renamed or removed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(LogError::io("look at", &path, e)),
            };
            if !regular {
                return Err(LogError::corrupt(
                    path,
                    0,
                    "named like a file of the log, but not a regular file (a FIFO, device, \
                     directory or symbolic link): refused, not read",
                ));
            }
            let links = match disk.link_count(&path) {
                Ok(links) => links,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(LogError::io("look at", &path, e)),
            };
            if links > 1 {
                return Err(LogError::corrupt(
                    path,
                    0,
                    format!(
                        "this file has {links} names (hard links): through another directory, \
                         a second process could write it around this directory's lock; copy \
                         the log instead of linking it"
                    ),
                ));
            }
        }
        match segment::classify(&name) {
            EntryName::Segment(number) => {
                listing.segments.insert(number);
            }
            EntryName::Temp(_) => listing.temps.push(dir.join(&name)),
            EntryName::Other if name == superblock::FILE_NAME => listing.superblock = true,
            EntryName::Other if name == superblock::TEMP_NAME => {
                listing.temps.push(dir.join(&name))
            }
            // A fresh file system's own directory, at a mount point used as the data dir.
            EntryName::Other if name == "lost+found" => {}
            EntryName::Other => listing.others.push(name),
        }
    }
    listing.others.sort();
    Ok(listing)
}

/// A segment file read whole, its header checked against its name and its length against its
/// header.
struct SegmentData {
    path: PathBuf,
    header: SegmentHeader,
    data: Vec<u8>,
}

fn read_segment(disk: &dyn Disk, dir: &Path, number: u64) -> Result<SegmentData, LogError> {
    let path = segment::segment_path(dir, number);
    let data = disk
        .read(&path)
        .map_err(|e| LogError::io("read segment", &path, e))?;
    let header =
        SegmentHeader::decode(&data).map_err(|reason| LogError::corrupt(&path, 0, reason))?;
    check_header(&path, number, &header, data.len() as u64)?;
    Ok(SegmentData { path, header, data })
}

/// A segment's header alone, checked the same way, without reading the rest.
fn read_header(disk: &dyn Disk, dir: &Path, number: u64) -> Result<SegmentHeader, LogError> {
    let path = segment::segment_path(dir, number);
    let file = disk
        .open_read(&path)
        .map_err(|e| LogError::io("open segment", &path, e))?;
    let mut bytes = [0u8; SEGMENT_HEADER_LEN as usize];
    let read = file
        .read_at(&mut bytes, 0)
        .map_err(|e| LogError::io("read segment header", &path, e))?;
    let len = file
        .size()
        .map_err(|e| LogError::io("read segment length", &path, e))?;
    let header = SegmentHeader::decode(&bytes[..read])
        .map_err(|reason| LogError::corrupt(&path, 0, reason))?;
    check_header(&path, number, &header, len)?;
    Ok(header)
}

fn check_header(
    path: &Path,
    number: u64,
    header: &SegmentHeader,
    len: u64,
) -> Result<(), LogError> {
    if header.number != number {
        return Err(LogError::corrupt(
            path,
            0,
            format!(
                "the header says segment {}, the file name {number}",
                header.number
            ),
        ));
    }
    if !(SEGMENT_SIZE_MIN..=SEGMENT_SIZE_MAX).contains(&header.size) {
        return Err(LogError::corrupt(
            path,
            0,
            format!("segment size {} is out of range", header.size),
        ));
    }
    if len != header.size {
        let how = if len < header.size {
            "cut short: segments are preallocated, so no crash makes one shorter"
        } else {
            "longer than its header declares"
        };
        return Err(LogError::corrupt(
            path,
            len.min(header.size),
            format!(
                "the file is {len} bytes and its header declares {}: {how}",
                header.size
            ),
        ));
    }
    Ok(())
}

/// True if a segment holds no record: nothing but zeros after its header.
fn holds_no_record(segment: &SegmentData) -> bool {
    segment.data[SEGMENT_HEADER_LEN as usize..]
        .iter()
        .all(|&b| b == 0)
}

/// True if a temporary file is one this log left (a fencekit header of this log, or nothing
/// written yet); with no log yet, one that creating a log leaves (segment 1's or the
/// superblock's). Only the first 4 KiB are read.
fn is_own_temp(disk: &dyn Disk, path: &Path, identity: Option<LogIdentity>) -> bool {
    let creation_leftover = path.file_name().is_some_and(|name| {
        name == segment::temp_path(Path::new(""), 1).as_os_str() || name == superblock::TEMP_NAME
    });
    if identity.is_none() && !creation_leftover {
        return false;
    }
    let Ok(file) = disk.open_read(path) else {
        return false;
    };
    let mut head = vec![0u8; 4096];
    let (Ok(read), Ok(size)) = (file.read_at(&mut head, 0), file.size()) else {
        return false;
    };
    head.truncate(read);
    if size <= 4096 && head.iter().all(|&b| b == 0) {
        return true;
    }
    let found = match SegmentHeader::decode(&head) {
        Ok(header) => Some(header.identity),
        Err(_) => Superblock::decode(path, &head)
            .ok()
            .map(|(s, _)| s.identity),
    };
    match (found, identity) {
        (Some(found), Some(identity)) => found == identity,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn owner_error(dir: &Path, found: LogOwner, expected: LogOwner) -> LogError {
    match (found, expected) {
        (
            LogOwner::Node {
                cluster: found_cluster,
                node: found_node,
            },
            LogOwner::Node {
                cluster: expected_cluster,
                node: expected_node,
            },
        ) => LogError::WrongCluster {
            path: dir.to_path_buf(),
            found_cluster: found_cluster.get(),
            found_node: found_node.get(),
            expected_cluster: expected_cluster.get(),
            expected_node: expected_node.get(),
        },
        _ => LogError::WrongOwner {
            path: dir.to_path_buf(),
            found: format!("the log of {found}"),
            expected: format!("the log of {expected}"),
        },
    }
}

pub(crate) fn recover(
    disk: &dyn Disk,
    dir: &Path,
    mode: Mode,
    visit: &mut dyn FnMut(Record<'_>) -> Result<(), LogError>,
) -> Result<Recovered, LogError> {
    let listing = list(disk, dir)?;
    if !listing.superblock {
        return create(disk, dir, mode, listing);
    }
    let superblock_path = dir.join(superblock::FILE_NAME);
    // Only the copies are read, whatever the file's size.
    let mut superblock_data = vec![0u8; superblock::FILE_LEN];
    let read = disk
        .open_read(&superblock_path)
        .and_then(|file| file.read_at(&mut superblock_data, 0))
        .map_err(|e| LogError::io("read superblock", &superblock_path, e))?;
    superblock_data.truncate(read);
    let (superblock, copies) = Superblock::decode(&superblock_path, &superblock_data)?;
    let identity = superblock.identity;
    if let Mode::Repair { owner, .. } = mode
        && owner != identity.owner
    {
        return Err(owner_error(dir, identity.owner, owner));
    }
    let repair = matches!(mode, Mode::Repair { .. });
    let seed = Seed::of(identity.id);
    let mut report = RecoveryReport {
        identity: Some(identity),
        superblock: Some(superblock),
        superblock_copies: copies,
        ..RecoveryReport::default()
    };

    // Which segments are live, which are left over, which one is a step not yet recorded.
    let mut leftovers: Vec<PathBuf> = Vec::new();
    let mut live: Vec<u64> = Vec::new();
    let mut pending: Option<SegmentData> = None;
    for &number in &listing.segments {
        let path = segment::segment_path(dir, number);
        if number > superblock.last + 1 {
            return Err(LogError::corrupt(
                &path,
                0,
                format!(
                    "the superblock lists segments {}..={}, and this one is past them",
                    superblock.first, superblock.last
                ),
            ));
        }
        let header = read_header(disk, dir, number)?;
        if header.identity != identity {
            return Err(LogError::corrupt(
                &path,
                0,
                format!(
                    "this segment belongs to {}, but the superblock ({}) names {}: a file of \
                     another log was copied here (this segment, or the superblock)",
                    header.identity,
                    superblock_path.display(),
                    identity
                ),
            ));
        }
        if number < superblock.first {
            leftovers.push(path);
        } else if number <= superblock.last {
            live.push(number);
        } else {
            pending = Some(read_segment(disk, dir, number)?);
        }
    }
    for number in superblock.first..=superblock.last {
        if !listing.segments.contains(&number) {
            return Err(LogError::corrupt(
                segment::segment_path(dir, number),
                0,
                format!(
                    "segment {number} is missing: the superblock lists segments {}..={}",
                    superblock.first, superblock.last
                ),
            ));
        }
    }
    let mut adopt_base = false;
    if let Some(step) = pending.take() {
        if step.header.is_base() {
            // A compaction renamed its base into place and crashed before the superblock said
            // so: the base is whole (it was synced before the rename). It is the log now.
            leftovers.extend(live.drain(..).map(|n| segment::segment_path(dir, n)));
            live.push(step.header.number);
            adopt_base = true;
        } else if holds_no_record(&step) {
            // A roll created the segment and crashed before the superblock said so; nothing
            // was written to it before then.
            leftovers.push(step.path);
        } else {
            return Err(LogError::corrupt(
                &step.path,
                0,
                format!(
                    "this segment holds records, but the superblock lists only segments \
                     {}..={}: the superblock is older than the segments",
                    superblock.first, superblock.last
                ),
            ));
        }
    }
    let temps: Vec<PathBuf> = listing
        .temps
        .iter()
        .filter(|path| is_own_temp(disk, path, Some(identity)))
        .cloned()
        .collect();

    // Read the live segments in order.
    let mut live_bytes = 0u64;
    let mut previous: Option<(PathBuf, SegmentLink)> = None;
    for (index, &number) in live.iter().enumerate() {
        let SegmentData { path, header, data } = read_segment(disk, dir, number)?;
        if index == 0 {
            if !header.is_base() {
                return Err(LogError::corrupt(
                    &path,
                    0,
                    "the first live segment is not a snapshot base",
                ));
            }
            if !adopt_base && header.checksum() != superblock.first_checksum {
                return Err(LogError::corrupt(
                    &path,
                    0,
                    "this is not the base segment the superblock names (its header differs): \
                     it was replaced",
                ));
            }
        } else if header.is_base() {
            return Err(LogError::corrupt(
                &path,
                0,
                "a snapshot base after the first live segment",
            ));
        }
        if let Some((previous_path, found)) = &previous
            && header.link != *found
        {
            return Err(LogError::corrupt(
                previous_path,
                found.end,
                format!(
                    "this segment's records end at offset {} (last record checksum {:#010x}), \
                     but the next segment, {}, says it ended at {} (checksum {:#010x}): this \
                     segment was cut, replaced or swapped",
                    found.end,
                    found.last_checksum,
                    path.display(),
                    header.link.end,
                    header.link.last_checksum
                ),
            ));
        }
        let size = header.size as usize;
        let mut offset = SEGMENT_HEADER_LEN as usize;
        let mut last_checksum = 0u32;
        let mut records = 0u64;
        // The superblock names the record that ends at its durable position: it must be there.
        let check_durable = !adopt_base && superblock.durable.segment() == number;
        let durable_at = superblock.durable.offset() as usize;
        let durable_mismatch = |found: u32| {
            LogError::corrupt(
                &path,
                durable_at as u64,
                format!(
                    "the superblock says the log was durable through here after the record \
                     with checksum {:#010x}, but the record here has checksum {found:#010x}: \
                     acknowledged records were replaced (an older copy, or a copy that \
                     diverged)",
                    superblock.durable_checksum
                ),
            )
        };
        if check_durable && durable_at == offset && superblock.durable_checksum != 0 {
            return Err(durable_mismatch(0));
        }
        let stop = loop {
            match parse(&data, seed, number, size, offset) {
                Parsed::Valid(view) => {
                    visit(Record {
                        position: Position::new(number, offset as u64),
                        kind: view.kind,
                        generation: view.generation,
                        payload: view.payload,
                        path: &path,
                    })?;
                    records += 1;
                    live_bytes += view.len as u64;
                    last_checksum = view.checksum;
                    offset += view.len;
                    if check_durable
                        && offset >= durable_at
                        && offset - view.len < durable_at
                        && (offset != durable_at || last_checksum != superblock.durable_checksum)
                    {
                        return Err(durable_mismatch(last_checksum));
                    }
                }
                Parsed::End => break None,
                Parsed::Invalid { extent, reason } => break Some((extent, reason)),
            }
        };
        report.records += records;
        report.chain.push(SegmentSummary {
            number,
            base: header.is_base(),
            records,
            end: offset as u64,
        });
        let rest_is_zero = data[offset..].iter().all(|&b| b == 0);
        let is_last = index + 1 == live.len();
        if !is_last {
            if stop.is_none() && rest_is_zero {
                previous = Some((
                    path,
                    SegmentLink {
                        end: offset as u64,
                        last_checksum,
                    },
                ));
                continue;
            }
            let what = match &stop {
                None => "non-zero bytes after the last record".to_owned(),
                Some((_, reason)) => reason.clone(),
            };
            return Err(LogError::corrupt(
                &path,
                offset as u64,
                format!(
                    "{what}, in a segment that was synced whole before the next one was created"
                ),
            ));
        }

        // `offset` in the last segment is the tail candidate.
        let at = Position::new(number, offset as u64);
        let what = match &stop {
            None => "an unwritten record header".to_owned(),
            Some((_, reason)) => reason.clone(),
        };
        if let Some(witness) = find_witness(&data, seed, number, size, offset + RECORD_ALIGN, at) {
            return Err(LogError::corrupt(
                &path,
                offset as u64,
                format!(
                    "{what}; the record at offset {witness} shows this position had been synced"
                ),
            ));
        }
        if !adopt_base && at < superblock.durable {
            return Err(LogError::corrupt(
                &path,
                offset as u64,
                format!(
                    "{what}; the superblock says the log was durable through offset {} of \
                     segment {}: acknowledged records are gone",
                    superblock.durable.offset(),
                    superblock.durable.segment()
                ),
            ));
        }
        if let Some((extent, reason)) = &stop
            && !looks_torn(&data, offset, offset + extent)
        {
            return Err(LogError::corrupt(
                &path,
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
        if discarded > 0 || stop.is_some() {
            report.torn_tail = Some(TornTail {
                path: path.clone(),
                offset: offset as u64,
                discarded_bytes: discarded,
            });
        }
        report.segments = live.len();
        report.removed_segments = leftovers.clone();
        report.removed_temps = temps.clone();
        let (tail, superblock_file) = if repair {
            let tail = SegmentFile::open(disk, path.clone(), header)?;
            if discarded > 0 {
                tail.write_zeros(offset as u64, discarded)?;
            }
            // Records recovered from the page cache after a process crash may never have
            // been synced: make them durable before anyone acts on them.
            for &number in &live {
                let live_path = segment::segment_path(dir, number);
                disk.open(&live_path)
                    .and_then(|f| f.sync_data())
                    .map_err(|e| LogError::io("fdatasync", &live_path, e))?;
            }
            let mut superblock_file = SuperblockFile::open(disk, dir, superblock)?;
            // Everything recovered is durable now: the superblock says so, so that from here
            // on these records cannot go missing unseen.
            superblock_file.update(|s| {
                if adopt_base {
                    s.first = number;
                    s.last = number;
                    s.first_checksum = header.checksum();
                }
                s.durable = at;
                s.durable_checksum = last_checksum;
            })?;
            for path in leftovers.iter().chain(&temps) {
                segment::remove(disk, path, "remove left-over file")?;
            }
            if !leftovers.is_empty() || !temps.is_empty() {
                segment::sync_dir(disk, dir)?;
            }
            (Some(tail), Some(superblock_file))
        } else {
            (None, None)
        };
        return Ok(Recovered {
            tail,
            superblock: superblock_file,
            identity,
            next: offset as u64,
            last_checksum,
            live_bytes,
            report,
        });
    }
    unreachable!("the superblock lists at least one segment, and each was checked to exist")
}

/// A directory without a superblock: a new log, or the one state a crash while creating a log
/// leaves (segment 1 alone, holding no record).
fn create(
    disk: &dyn Disk,
    dir: &Path,
    mode: Mode,
    listing: Listing,
) -> Result<Recovered, LogError> {
    let only_first = listing.segments.len() == 1 && listing.segments.contains(&1);
    let interrupted = only_first && {
        let first = read_segment(disk, dir, 1)?;
        first.header.is_base() && holds_no_record(&first)
    };
    if !listing.segments.is_empty() && !interrupted {
        let (first, last) = (
            listing.segments.first().copied().unwrap_or_default(),
            listing.segments.last().copied().unwrap_or_default(),
        );
        return Err(LogError::corrupt(
            dir.join(superblock::FILE_NAME),
            0,
            format!(
                "the superblock is missing, yet the directory holds log segments {first:x}..={last:x}: \
                 it was deleted, or these segments were copied here"
            ),
        ));
    }
    let Mode::Repair {
        owner,
        segment_size,
    } = mode
    else {
        return Err(LogError::corrupt(dir, 0, "no log in this directory"));
    };
    let own_temps: Vec<PathBuf> = listing
        .temps
        .iter()
        .filter(|path| is_own_temp(disk, path, None))
        .cloned()
        .collect();
    let mut strangers = listing.others;
    strangers.extend(
        listing
            .temps
            .iter()
            .filter(|path| !own_temps.contains(path))
            .filter_map(|path| path.file_name())
            .map(|name| name.to_string_lossy().into_owned()),
    );
    if !strangers.is_empty() {
        return Err(LogError::WrongOwner {
            path: dir.to_path_buf(),
            found: format!("no log but other files ({})", strangers.join(", ")),
            expected: format!(
                "an empty directory, where a new log of {owner} is created (an existing log \
                 has a superblock)"
            ),
        });
    }
    for path in &own_temps {
        segment::remove(disk, path, "remove left-over file")?;
    }
    if interrupted {
        segment::remove(
            disk,
            &segment::segment_path(dir, 1),
            "remove unfinished log",
        )?;
    }
    let id = disk
        .new_log_id()
        .map_err(|e| LogError::io("draw a log id for", dir, e))?;
    let identity = LogIdentity {
        id: super::identity::LogId(id),
        owner,
    };
    let header = SegmentHeader {
        number: 1,
        size: segment_size,
        flags: FLAG_SNAPSHOT_BASE,
        identity,
        link: SegmentLink::default(),
    };
    let tail = SegmentFile::create(disk, dir, header, &[])?;
    let superblock = Superblock {
        sequence: 1,
        identity,
        first: 1,
        last: 1,
        first_checksum: header.checksum(),
        durable: Position::new(1, SEGMENT_HEADER_LEN),
        durable_checksum: 0,
    };
    let superblock_file = SuperblockFile::create(disk, dir, superblock)?;
    Ok(Recovered {
        tail: Some(tail),
        superblock: Some(superblock_file),
        identity,
        next: SEGMENT_HEADER_LEN,
        last_checksum: 0,
        live_bytes: 0,
        report: RecoveryReport {
            identity: Some(identity),
            superblock: Some(superblock),
            superblock_copies: 4,
            segments: 1,
            created: true,
            chain: vec![SegmentSummary {
                number: 1,
                base: true,
                records: 0,
                end: SEGMENT_HEADER_LEN,
            }],
            ..RecoveryReport::default()
        },
    })
}

/// The offset of a valid record at or after `from` that was written after `at` had been
/// synced, if there is one.
fn find_witness(
    data: &[u8],
    seed: Seed,
    segment: u64,
    size: usize,
    from: usize,
    at: Position,
) -> Option<usize> {
    let mut offset = from.next_multiple_of(RECORD_ALIGN);
    while offset + RECORD_HEADER_LEN <= data.len() {
        match parse(data, seed, segment, size, offset) {
            Parsed::Valid(view) if view.durable_upto > at => return Some(offset),
            Parsed::Valid(view) => offset += view.len,
            Parsed::End | Parsed::Invalid { .. } => offset += RECORD_ALIGN,
        }
    }
    None
}
