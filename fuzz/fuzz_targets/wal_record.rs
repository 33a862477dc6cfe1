//! The log's record decoder and tail rules on arbitrary bytes: a fresh log on the simulated
//! disk, whose segment 1 after its 128-byte header holds the input (cut or padded with zeros
//! to the segment's size).
//!
//! The input's first byte says whether the harness seals the records first: odd, it walks the
//! records from the first offset (each header's length field giving the next, all-zero gaps
//! skipped) and writes the right checksums into each of them but one, chosen by the byte,
//! whose header (bit 1 clear) or payload (bit 1 set) it leaves as it is; even, the bytes go in
//! as they are.
//! Sealed inputs reach records whose fields (lengths, kinds, reserved bytes, durable-up-to
//! positions) are arbitrary yet whose checksums hold, which a fuzzer cannot forge by mutation
//! alone. The rest of the input is the segment's body. Then:
//!
//! - neither `Wal::inspect` nor `Wal::open` panics, and they agree (the same records, or both
//!   refuse);
//! - every record they hand out is valid by the documented layout, recomputed here: its header
//!   checksum (seeded by the log id read from the superblock, covering segment and offset)
//!   and payload checksum match the file's bytes at its position, and the records follow
//!   each other from the first offset on;
//! - the outcome is the one the documented rules give (`recovery.rs`, rule 4), written again
//!   here as a model: read records until the first position without one (the stop); refuse if
//!   a later valid record's durable-up-to field is past the stop, or if the stop holds a
//!   damaged record every 512-byte piece of which was written; otherwise open, cutting the
//!   tail at the stop;
//! - a log that opened survives a reboot: the same records again, nothing left to repair, and
//!   a record appended then is found after them.

#![no_main]

mod wal_check;

use fencekit::disk::Disk as _;
use fencekit::wal::Position;
use fencekit_sim::disk::SimDisk;
use libfuzzer_sys::fuzz_target;
use wal_check::{
    FIRST_RECORD, RECORD_HEADER, SEGMENT_HEADER, SEGMENT_SIZE, all_zero, assert_log, assert_reboot,
    assert_records, dir, encoded_len, header_checksum, open, segment_name, superblock_ids, u32_at,
    u64_at,
};

/// What lies at an offset, by the documented layout.
enum Slot {
    /// A record whose checksums hold and that fits the segment.
    Valid {
        /// Bytes taken, padding included.
        len: usize,
        payload: usize,
        kind: u8,
        generation: u64,
        durable: u64,
    },
    /// An all-zero header, or no room left for one.
    End,
    /// Anything else; `extent` is how far it claims to reach (the header alone when its
    /// checksum fails, since its length cannot be trusted then).
    Invalid { extent: usize },
}

fn slot(data: &[u8], id: &[u8; 16], segment: u64, offset: usize) -> Slot {
    let size = data.len();
    if offset + RECORD_HEADER > size {
        return Slot::End;
    }
    let header = &data[offset..offset + RECORD_HEADER];
    if all_zero(header) {
        return Slot::End;
    }
    let header_only = Slot::Invalid {
        extent: RECORD_HEADER,
    };
    if u32_at(header, 0) != header_checksum(id, segment, offset as u64, &header[4..]) {
        return header_only;
    }
    let len = u32_at(header, 4) as usize;
    let end = offset + encoded_len(len);
    if end > size || header[8] == 0 || header[9..12] != [0; 3] {
        return header_only;
    }
    if u32_at(header, 12) != crc32c::crc32c(&data[offset + RECORD_HEADER..end]) {
        return Slot::Invalid {
            extent: encoded_len(len),
        };
    }
    Slot::Valid {
        len: encoded_len(len),
        payload: len,
        kind: header[8],
        generation: u64_at(header, 16),
        durable: u64_at(header, 24),
    }
}

/// True if some 512-byte-aligned piece of `data[start..end]` is all zero: what a torn write
/// leaves (record.rs).
fn torn(data: &[u8], start: usize, end: usize) -> bool {
    let mut at = start;
    while at < end {
        let piece_end = ((at / 512 + 1) * 512).min(end);
        if piece_end > data.len() || all_zero(&data[at..piece_end]) {
            return true;
        }
        at = piece_end;
    }
    false
}

/// What the documented rules make of a log whose only segment, 1, holds `data`: the records
/// (offset, kind, generation, payload length) and where the tail is, or `None` to refuse.
#[allow(clippy::type_complexity, reason = "a model's plain result")]
fn model(data: &[u8], id: &[u8; 16]) -> Option<(Vec<(usize, u8, u64, usize)>, usize)> {
    let mut records = Vec::new();
    let mut offset = FIRST_RECORD;
    let stop = loop {
        match slot(data, id, 1, offset) {
            Slot::Valid {
                len,
                payload,
                kind,
                generation,
                ..
            } => {
                records.push((offset, kind, generation, payload));
                offset += len;
            }
            Slot::End => break None,
            Slot::Invalid { extent } => break Some(extent),
        }
    };
    let at = Position::new(1, offset as u64);
    // A witness: a later valid record written after the stop was synced. (Past the last
    // non-zero byte every header is all zero: no witness there.)
    let written = (0..data.len() / 8)
        .rev()
        .find(|&w| !all_zero(&data[w * 8..w * 8 + 8]))
        .map_or(0, |w| w * 8 + 8);
    let mut scan = offset + 8;
    while scan + RECORD_HEADER <= data.len() && scan < written {
        match slot(data, id, 1, scan) {
            Slot::Valid { durable, .. } if durable > at_u64(at) => return None,
            Slot::Valid { len, .. } => scan += len,
            _ => scan += 8,
        }
    }
    if let Some(extent) = stop
        && !torn(data, offset, offset + extent)
    {
        return None;
    }
    Some((records, offset))
}

/// A position as the record's durable-up-to field stores it (segment << 32 | offset).
fn at_u64(at: Position) -> u64 {
    (at.segment() << 32) | at.offset()
}

/// Writes the right checksums into the records from the first offset on, all but record
/// `control >> 2`'s header checksum (bit 1 clear) or payload checksum (bit 1 set). Each
/// header's length field gives the next record; an all-zero header is skipped 8 bytes at a
/// time (so that records after a gap are sealed too); a length past the segment ends it.
fn seal(image: &mut [u8], id: &[u8; 16], control: u8) {
    let spared = usize::from(control >> 2);
    let spare_payload = control & 2 != 0;
    let mut offset = FIRST_RECORD;
    let mut index = 0;
    while offset + RECORD_HEADER <= image.len() {
        if all_zero(&image[offset..offset + RECORD_HEADER]) {
            if all_zero(&image[offset..]) {
                break;
            }
            offset += 8;
            continue;
        }
        let len = u32_at(image, offset + 4) as usize;
        let end = offset.saturating_add(encoded_len(len.min(image.len())));
        if end <= image.len() && !(index == spared && spare_payload) {
            let crc = crc32c::crc32c(&image[offset + RECORD_HEADER..end]);
            image[offset + 12..offset + 16].copy_from_slice(&crc.to_le_bytes());
        }
        if !(index == spared && !spare_payload) {
            let crc = header_checksum(
                id,
                1,
                offset as u64,
                &image[offset + 4..offset + RECORD_HEADER],
            );
            image[offset..offset + 4].copy_from_slice(&crc.to_le_bytes());
        }
        if end > image.len() || len > image.len() {
            break;
        }
        offset = end;
        index += 1;
    }
}

fuzz_target!(|input: &[u8]| {
    let disk = SimDisk::new();
    let (wal, created) = open(&disk).expect("a new log on an empty disk");
    assert!(created.is_empty());
    drop(wal);
    let ids = superblock_ids(&wal_check::files(&disk)["superblock"]);
    let [id] = ids[..] else {
        panic!("the fresh log's superblock names {ids:02x?}")
    };
    let segment = dir().join(segment_name(1));
    let (control, body) = input.split_first().unwrap_or((&0, &[]));
    let mut image = vec![0u8; SEGMENT_SIZE as usize];
    let room = image.len() - SEGMENT_HEADER;
    image[SEGMENT_HEADER..SEGMENT_HEADER + body.len().min(room)]
        .copy_from_slice(&body[..body.len().min(room)]);
    if control & 1 == 1 {
        seal(&mut image, &id, *control);
    }
    let file = disk.open(&segment).expect("segment 1 exists");
    file.write_at(&image[SEGMENT_HEADER..], SEGMENT_HEADER as u64)
        .expect("write");
    drop(file);
    let files = wal_check::files(&disk);
    let data = &files[&segment_name(1)];
    assert_eq!(data.len(), SEGMENT_SIZE as usize);
    let expected = model(data, &id);

    let inspected = wal_check::inspect(&disk);
    let opened = open(&disk);
    if let Ok((_, records)) = &inspected {
        assert_log(&files, &ids, records);
    }
    if let Ok((wal, records)) = &opened {
        assert_log(&files, &ids, records);
        assert_eq!(
            wal.identity().id.bytes(),
            id,
            "the log opened as another log"
        );
    }
    match (&inspected, &opened) {
        (Ok((_, a)), Ok((_, b))) => {
            assert_records(b, a, true, true, "inspect and open hand out other records")
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!(
            "inspect and open disagree: inspect {:?}, open {:?}",
            a.as_ref().map(|(r, _)| r),
            b.as_ref().map(|(_, r)| r.len())
        ),
    }
    match (&expected, &inspected) {
        (None, Err(_)) => {}
        (Some((records, tail)), Ok((report, seen))) => {
            let got: Vec<_> = seen
                .iter()
                .map(|r| {
                    (
                        r.position.offset() as usize,
                        r.kind,
                        r.generation,
                        r.payload.len(),
                    )
                })
                .collect();
            assert_eq!(
                &got, records,
                "other records than the documented rules give"
            );
            let end = report.chain.last().expect("one live segment").end;
            assert_eq!(
                end, *tail as u64,
                "another tail than the documented rules give"
            );
            let dirty = !all_zero(&data[*tail..]);
            if dirty {
                let cut = report
                    .torn_tail
                    .as_ref()
                    .expect("non-zero bytes past the tail, and no torn tail reported");
                assert_eq!(cut.offset, *tail as u64);
            }
        }
        (None, Ok((_, seen))) => panic!(
            "the documented rules refuse this log, recovery opens it with {} records",
            seen.len()
        ),
        (Some((records, tail)), Err(e)) => panic!(
            "the documented rules open this log ({} records, tail at {tail}), recovery refuses: {e}",
            records.len()
        ),
    }
    if let Ok((wal, records)) = opened {
        drop(wal);
        assert_reboot(&disk, &id, &records);
    }
});
