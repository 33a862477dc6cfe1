//! On-disk format of segment headers and records.
//!
//! A segment file starts with a 128-byte header, then records, each aligned to 8 bytes:
//!
//! ```text
//! record:  0  u32  header crc32c over (log id [u8; 16], segment u64, offset u64, header
//!                   bytes 4..32)
//!          4  u32  payload length
//!          8  u8   kind (0 is never written: an all-zero header is the end of the log)
//!          9  [u8; 3] reserved, zero
//!         12  u32  payload crc32c over the payload and its padding
//!         16  u64  generation
//!         24  u64  durable-up-to: the log position that was synced when this was written
//!         32  payload, then zero padding to a multiple of 8
//! ```
//!
//! All integers are little-endian. The header checksum covers the log's id and the record's own
//! segment number and offset, so a record copied, misplaced or left over from another file or
//! another log does not validate where it lies (raft-engine and etcd cover the position). The header has its own checksum so that
//! its length can be trusted before the payload is judged: a damaged length must not make a
//! record look torn. The durable-up-to field lets recovery tell
//! a torn tail (never acknowledged) from corruption of an acknowledged record: see
//! `recovery.rs`.

use super::identity::{IDENTITY_LEN, LogId, LogIdentity};
use super::{Position, RecordKind};
use crate::limits::{RECORD_PAYLOAD_MAX, SEGMENT_NUMBER_MAX};

pub(crate) const SEGMENT_HEADER_LEN: u64 = 128;
pub(crate) const RECORD_HEADER_LEN: usize = 32;
pub(crate) const RECORD_ALIGN: usize = 8;
/// The unit a disk writes atomically; a torn write leaves whole sectors unwritten (zero).
pub(crate) const SECTOR: usize = 512;

const SEGMENT_MAGIC: &[u8; 8] = b"FKWALSEG";
/// Version 1 (before identity and continuity) is refused: its segments cannot be told from
/// another log's.
const FORMAT_VERSION: u32 = 2;
/// Segment flag: this segment begins with a snapshot of the live state, and every older
/// segment is obsolete.
pub(crate) const FLAG_SNAPSHOT_BASE: u32 = 1;

/// Bytes a record with `payload_len` bytes of payload takes in a segment.
pub(crate) const fn encoded_len(payload_len: usize) -> usize {
    (RECORD_HEADER_LEN + payload_len).next_multiple_of(RECORD_ALIGN)
}

/// The checksum state after a log's id: every record checksum of the log starts from it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Seed(u32);

impl Seed {
    pub(crate) fn of(id: LogId) -> Seed {
        Seed(crc32c::crc32c(&id.0))
    }
}

fn header_checksum(seed: Seed, position: Position, header_rest: &[u8]) -> u32 {
    let mut place = [0u8; 16];
    place[..8].copy_from_slice(&position.segment().to_le_bytes());
    place[8..].copy_from_slice(&position.offset().to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c_append(seed.0, &place), header_rest)
}

/// Appends the encoding of one record of the log seeded `seed`, to be written at `at`, to
/// `out`, and returns its header checksum (what the next segment's link names).
pub(crate) fn encode(
    out: &mut Vec<u8>,
    seed: Seed,
    at: Position,
    kind: RecordKind,
    generation: u64,
    durable_upto: Position,
    payload: &[u8],
) -> u32 {
    debug_assert!(payload.len() <= RECORD_PAYLOAD_MAX);
    let start = out.len();
    let len = encoded_len(payload.len());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.push(kind.get());
    out.extend_from_slice(&[0u8; 3]);
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&durable_upto.as_u64().to_le_bytes());
    out.extend_from_slice(payload);
    out.resize(start + len, 0);
    let payload_crc = crc32c::crc32c(&out[start + RECORD_HEADER_LEN..]);
    out[start + 12..start + 16].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = header_checksum(seed, at, &out[start + 4..start + RECORD_HEADER_LEN]);
    out[start..start + 4].copy_from_slice(&header_crc.to_le_bytes());
    header_crc
}

/// A record as it lies in a segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordView<'a> {
    pub(crate) kind: RecordKind,
    pub(crate) generation: u64,
    pub(crate) durable_upto: Position,
    pub(crate) payload: &'a [u8],
    /// Bytes taken in the segment, padding included.
    pub(crate) len: usize,
    /// The header checksum.
    pub(crate) checksum: u32,
}

/// What lies at an offset of a segment.
#[derive(Debug)]
pub(crate) enum Parsed<'a> {
    /// A whole record whose checksum matches its position.
    Valid(RecordView<'a>),
    /// An all-zero header: nothing was ever written here.
    End,
    /// Something that is not a valid record. `extent` is how far it claims to reach (the
    /// header alone when its length cannot be trusted).
    Invalid { extent: usize, reason: String },
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&data[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&data[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Parses the record at `offset` of segment `segment` of the log seeded `seed`, a segment of
/// `size` bytes whose file holds `data` (bytes past the end of `data` read as zero).
pub(crate) fn parse(
    data: &[u8],
    seed: Seed,
    segment: u64,
    size: usize,
    offset: usize,
) -> Parsed<'_> {
    let header_only = |reason: String| Parsed::Invalid {
        extent: RECORD_HEADER_LEN,
        reason,
    };
    if offset + RECORD_HEADER_LEN > size {
        return Parsed::End;
    }
    let available = data.len().saturating_sub(offset);
    if available < RECORD_HEADER_LEN {
        return if data[offset.min(data.len())..].iter().all(|&b| b == 0) {
            Parsed::End
        } else {
            header_only("a record header is cut off by the end of the file".into())
        };
    }
    let header = &data[offset..offset + RECORD_HEADER_LEN];
    if header.iter().all(|&b| b == 0) {
        return Parsed::End;
    }
    let checksum = u32_at(header, 0);
    let computed = header_checksum(seed, Position::new(segment, offset as u64), &header[4..]);
    if checksum != computed {
        return header_only(format!(
            "record header checksum mismatch (stored {checksum:#010x}, computed {computed:#010x})"
        ));
    }
    // The header is intact from here on: its fields are what the writer wrote.
    let payload_len = u32_at(header, 4) as usize;
    let len = encoded_len(payload_len);
    if payload_len > RECORD_PAYLOAD_MAX || offset + len > size {
        return header_only(format!(
            "record length {payload_len} does not fit the segment (damage or a bug)"
        ));
    }
    let Some(kind) = RecordKind::new(header[8]) else {
        return header_only("record kind 0".into());
    };
    if header[9..12].iter().any(|&b| b != 0) {
        return header_only("reserved header bytes are not zero".into());
    }
    if len > available {
        return Parsed::Invalid {
            extent: len,
            reason: "the record is cut off by the end of the file".into(),
        };
    }
    let body = offset + RECORD_HEADER_LEN;
    let stored = u32_at(header, 12);
    let computed = crc32c::crc32c(&data[body..offset + len]);
    if stored != computed {
        return Parsed::Invalid {
            extent: len,
            reason: format!(
                "payload checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
        };
    }
    Parsed::Valid(RecordView {
        kind,
        generation: u64_at(header, 16),
        durable_upto: Position::from_u64(u64_at(header, 24)),
        payload: &data[body..body + payload_len],
        len,
        checksum,
    })
}

/// True if some sector-sized piece of `data[start..end]` is all zero (or lies past the end of
/// `data`): the mark of a write that was torn at sector granularity. A record that fails its
/// checksum while every piece of it was written is corruption, not a torn write (etcd's
/// `isTornEntry` uses the same rule).
pub(crate) fn looks_torn(data: &[u8], start: usize, end: usize) -> bool {
    let mut piece_start = start;
    while piece_start < end {
        let piece_end = ((piece_start / SECTOR) + 1) * SECTOR;
        let piece_end = piece_end.min(end);
        if piece_end > data.len() || data[piece_start..piece_end].iter().all(|&b| b == 0) {
            return true;
        }
        piece_start = piece_end;
    }
    false
}

/// Where the segment before a segment ended: the continuity a segment header vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SegmentLink {
    /// The offset at which the previous segment's records end (0 for a log's first segment).
    pub(crate) end: u64,
    /// The header checksum of the previous segment's last record (0 when it has none).
    pub(crate) last_checksum: u32,
}

/// The fields of a segment header:
///
/// ```text
///   0  [u8; 8]  magic "FKWALSEG"
///   8  u32      format version (2)
///  12  u32      flags (1: snapshot base)
///  16  u64      segment number (the file name says it too)
///  24  u64      segment size: the file is exactly this long (preallocated), never shorter
///  32  [u8; 40] the log's identity (identity.rs)
///  72  u64      link: where the previous segment's records end
///  80  u32      link: the header checksum of the previous segment's last record
///  84  [u8; 40] reserved, zero
/// 124  u32      crc32c of bytes 0..124
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) number: u64,
    pub(crate) size: u64,
    pub(crate) flags: u32,
    pub(crate) identity: LogIdentity,
    pub(crate) link: SegmentLink,
}

const HEADER_CRC_AT: usize = SEGMENT_HEADER_LEN as usize - 4;

impl SegmentHeader {
    pub(crate) fn is_base(&self) -> bool {
        self.flags & FLAG_SNAPSHOT_BASE != 0
    }

    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_LEN as usize] {
        let mut out = [0u8; SEGMENT_HEADER_LEN as usize];
        out[..8].copy_from_slice(SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&self.flags.to_le_bytes());
        out[16..24].copy_from_slice(&self.number.to_le_bytes());
        out[24..32].copy_from_slice(&self.size.to_le_bytes());
        out[32..32 + IDENTITY_LEN].copy_from_slice(&self.identity.encode());
        out[72..80].copy_from_slice(&self.link.end.to_le_bytes());
        out[80..84].copy_from_slice(&self.link.last_checksum.to_le_bytes());
        let crc = crc32c::crc32c(&out[..HEADER_CRC_AT]);
        out[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// The header's own checksum, as encoded (what the superblock names a base by).
    pub(crate) fn checksum(&self) -> u32 {
        u32_at(&self.encode(), HEADER_CRC_AT)
    }

    /// Decodes a header, saying what is wrong with it if it is not one.
    pub(crate) fn decode(data: &[u8]) -> Result<SegmentHeader, String> {
        let Some(bytes) = data.get(..SEGMENT_HEADER_LEN as usize) else {
            return Err(format!(
                "the file is {} bytes, shorter than a segment header",
                data.len()
            ));
        };
        if &bytes[..8] != SEGMENT_MAGIC {
            return Err("not a fencekit log segment (bad magic)".into());
        }
        let version = u32_at(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(format!(
                "segment format version {version}; this fencekit reads version {FORMAT_VERSION} \
                 (version 1 logs, without identity and continuity, cannot be opened: start \
                 from an empty directory)"
            ));
        }
        let stored = u32_at(bytes, HEADER_CRC_AT);
        if stored != crc32c::crc32c(&bytes[..HEADER_CRC_AT]) {
            return Err("segment header checksum mismatch".into());
        }
        if bytes[84..HEADER_CRC_AT].iter().any(|&b| b != 0) {
            return Err("reserved segment header bytes are not zero".into());
        }
        let identity_bytes: &[u8; IDENTITY_LEN] =
            bytes[32..32 + IDENTITY_LEN].try_into().expect("length");
        let number = u64_at(bytes, 16);
        if number == 0 || number > SEGMENT_NUMBER_MAX {
            return Err(format!(
                "segment number {number} is out of range (1 to {SEGMENT_NUMBER_MAX})"
            ));
        }
        Ok(SegmentHeader {
            flags: u32_at(bytes, 12),
            number,
            size: u64_at(bytes, 24),
            identity: LogIdentity::decode(identity_bytes)?,
            link: SegmentLink {
                end: u64_at(bytes, 72),
                last_checksum: u32_at(bytes, 80),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::identity::LogOwner;
    use proptest::prelude::*;

    const SEED: fn() -> Seed = || Seed::of(LogId([7; 16]));

    proptest! {
        #[test]
        fn records_round_trip(
            segment in 1u64..1000,
            slot in 8u64..10_000,
            kind in 1u8..=255,
            generation: u64,
            durable in 0u64..u64::MAX,
            payload in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let offset = slot * 8;
            let at = Position::new(segment, offset);
            let mut data = vec![0u8; offset as usize];
            encode(&mut data, SEED(), at, RecordKind::new(kind).unwrap(), generation,
                   Position::from_u64(durable), &payload);
            prop_assert_eq!(data.len() - offset as usize, encoded_len(payload.len()));
            match parse(&data, SEED(), segment, usize::MAX, offset as usize) {
                Parsed::Valid(view) => {
                    prop_assert_eq!(view.kind.get(), kind);
                    prop_assert_eq!(view.generation, generation);
                    prop_assert_eq!(view.durable_upto.as_u64(), durable);
                    prop_assert_eq!(view.payload, &payload[..]);
                }
                other => prop_assert!(false, "{:?}", other),
            }
            // The same bytes one record later, in another segment or in another log do not
            // validate.
            let moved = matches!(parse(&data, SEED(), segment + 1, usize::MAX, offset as usize), Parsed::Invalid { .. });
            prop_assert!(moved, "valid in another segment");
            let foreign = Seed::of(LogId([8; 16]));
            let copied = matches!(parse(&data, foreign, segment, usize::MAX, offset as usize), Parsed::Invalid { .. });
            prop_assert!(copied, "valid in another log");
            let mut shifted = vec![0u8; 8];
            shifted.extend_from_slice(&data);
            let shifted_ok = matches!(parse(&shifted, SEED(), segment, usize::MAX, offset as usize + 8), Parsed::Invalid { .. });
            prop_assert!(shifted_ok, "valid at another offset");
        }

        #[test]
        fn every_single_bit_flip_is_detected(flip in 0usize..(encoded_len(40) * 8)) {
            let mut data = Vec::new();
            encode(&mut data, SEED(), Position::new(3, 0), RecordKind::FENCE_MARK, 7, Position::new(3, 0), &[0xAB; 40]);
            data[flip / 8] ^= 1 << (flip % 8);
            let valid = matches!(parse(&data, SEED(), 3, usize::MAX, 0), Parsed::Valid(_));
            prop_assert!(!valid, "flip undetected");
        }
    }

    #[test]
    fn segment_header_round_trips_and_refuses_damage() {
        let header = SegmentHeader {
            number: 9,
            size: 1 << 20,
            flags: FLAG_SNAPSHOT_BASE,
            identity: LogIdentity {
                id: LogId([7; 16]),
                owner: LogOwner::Fence,
            },
            link: SegmentLink {
                end: 4096,
                last_checksum: 0xDEAD_BEEF,
            },
        };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        for bit in 0..(bytes.len() * 8) {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&damaged).is_err(), "bit {bit}");
        }
        assert!(SegmentHeader::decode(&bytes[..10]).is_err());
    }

    #[test]
    fn torn_means_a_whole_sector_piece_is_zero() {
        let mut data = vec![0xFFu8; 2048];
        assert!(!looks_torn(&data, 100, 1500));
        data[512..1024].fill(0);
        assert!(looks_torn(&data, 100, 1500));
        assert!(!looks_torn(&data, 100, 500));
        // Past the end of the file counts as unwritten.
        assert!(looks_torn(&data[..1200], 1100, 1300));
    }
}
