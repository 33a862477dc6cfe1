//! The superblock: what a log directory must hold, so that a missing or swapped file is seen.
//!
//! Segments can vouch for what comes before them (each header links to the previous segment's
//! last record), but nothing in a segment can say that a later one, or the whole log, is
//! missing. The superblock does: it names the log's identity, its live segments (the base and
//! the last), the base's header checksum, and how far the log was durable when it was written
//! (a position and the checksum of the record that ends there). It is rewritten at every roll
//! to a new segment and at every compaction, before any record of the new segment is
//! acknowledged, and when the log is opened and closed. So after a clean close (or an open),
//! the last records cannot be zeroed, rolled back to an older copy or replaced by a clone's
//! without opening refusing; only records synced since the last of these, before a crash,
//! are as exposed as a torn tail is.
//!
//! TigerBeetle's superblock is the model. The file `superblock` holds [`COPIES`] copies, one
//! per 512-byte sector, each with its own checksum and a sequence number that grows by one per
//! update. An update writes and syncs the first half of the copies, then the second half, so a
//! crash or a torn write damages at most the half being written and the other half still holds
//! the previous or the new state, both of which recovery accepts. Opening takes the valid copy
//! with the highest sequence, and refuses copies that disagree by more than one update or that
//! name another log.
//!
//! ```text
//! copy:   0  [u8; 8]  magic "FKWALSUP"
//!         8  u32      format version (1)
//!        12  u32      copy index (0..4): a copy written to another sector does not validate
//!        16  u64      sequence
//!        24  [u8; 40] the log's identity
//!        64  u64      first live segment (a snapshot base)
//!        72  u64      last live segment
//!        80  u32      header checksum of the first segment
//!        84  u32      header checksum of the record that ends at "durable through" (0 when
//!                     that position is the start of a segment)
//!        88  u64      durable through: a position (segment << 32 | offset) before which every
//!                     record was durable when this copy was written
//!        96  ...      zero up to 508
//!       508  u32      crc32c of bytes 0..508
//! ```

use std::path::{Path, PathBuf};

use super::Position;
use super::identity::{IDENTITY_LEN, LogIdentity};
use crate::disk::{Disk, DiskFile};
use crate::error::LogError;
use crate::limits::SEGMENT_NUMBER_MAX;

pub(crate) const FILE_NAME: &str = "superblock";
pub(crate) const TEMP_NAME: &str = "superblock.tmp";
const MAGIC: &[u8; 8] = b"FKWALSUP";
const VERSION: u32 = 1;
const COPY_LEN: usize = 512;
const COPIES: usize = 4;
/// Highest sequence a superblock may carry: no log is updated 2^63 times, so one beyond is
/// forged, and refusing it keeps an update from ever writing a sequence that decodes as bad.
const SEQUENCE_MAX: u64 = u64::MAX / 2;
/// Bytes of the superblock file: its copies, and nothing is read past them.
pub(crate) const FILE_LEN: usize = COPY_LEN * COPIES;
const CRC_AT: usize = COPY_LEN - 4;

/// What the superblock says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// Updates since the log was created (1 at creation).
    pub sequence: u64,
    /// The log's identity.
    pub identity: LogIdentity,
    /// The first live segment, a snapshot base.
    pub first: u64,
    /// The last live segment.
    pub last: u64,
    /// The header checksum of the first segment.
    pub first_checksum: u32,
    /// Every record before this position was durable when the superblock was written.
    pub durable: Position,
    /// The header checksum of the record that ends at `durable` (0 at a segment's start).
    pub durable_checksum: u32,
}

impl Superblock {
    fn encode_copy(&self, copy: usize) -> [u8; COPY_LEN] {
        let mut out = [0u8; COPY_LEN];
        out[..8].copy_from_slice(MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&(copy as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.sequence.to_le_bytes());
        out[24..24 + IDENTITY_LEN].copy_from_slice(&self.identity.encode());
        out[64..72].copy_from_slice(&self.first.to_le_bytes());
        out[72..80].copy_from_slice(&self.last.to_le_bytes());
        out[80..84].copy_from_slice(&self.first_checksum.to_le_bytes());
        out[84..88].copy_from_slice(&self.durable_checksum.to_le_bytes());
        out[88..96].copy_from_slice(&self.durable.as_u64().to_le_bytes());
        let crc = crc32c::crc32c(&out[..CRC_AT]);
        out[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn encode(&self) -> Vec<u8> {
        (0..COPIES)
            .flat_map(|copy| self.encode_copy(copy))
            .collect()
    }

    fn decode_copy(bytes: &[u8], copy: usize) -> Result<Superblock, String> {
        if bytes.len() < COPY_LEN {
            return Err("cut off by the end of the file".into());
        }
        let word32 = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
        let word64 = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        if &bytes[..8] != MAGIC {
            return Err("bad magic".into());
        }
        if word32(CRC_AT) != crc32c::crc32c(&bytes[..CRC_AT]) {
            return Err("checksum mismatch".into());
        }
        if word32(8) != VERSION {
            return Err(format!("format version {}", word32(8)));
        }
        if word32(12) as usize != copy {
            return Err(format!(
                "copy {} found in the place of copy {copy}",
                word32(12)
            ));
        }
        if bytes[96..CRC_AT].iter().any(|&b| b != 0) {
            return Err("reserved bytes are not zero".into());
        }
        let identity = LogIdentity::decode(bytes[24..24 + IDENTITY_LEN].try_into().expect("40"))?;
        let superblock = Superblock {
            sequence: word64(16),
            identity,
            first: word64(64),
            last: word64(72),
            first_checksum: word32(80),
            durable: Position::from_u64(word64(88)),
            durable_checksum: word32(84),
        };
        if superblock.first == 0
            || superblock.last < superblock.first
            || superblock.last > SEGMENT_NUMBER_MAX
            || superblock.durable.segment() > superblock.last
        {
            return Err(format!(
                "live segments {}..={} (durable through segment {}) make no sense",
                superblock.first,
                superblock.last,
                superblock.durable.segment()
            ));
        }
        if superblock.sequence == 0 || superblock.sequence > SEQUENCE_MAX {
            return Err(format!("sequence {} is out of range", superblock.sequence));
        }
        Ok(superblock)
    }

    /// Reads the superblock from the bytes of its file: the valid copy with the highest
    /// sequence, provided every valid copy names the same log and is at most one update
    /// older. Returns it and how many copies were valid.
    pub(crate) fn decode(path: &Path, data: &[u8]) -> Result<(Superblock, usize), LogError> {
        let mut valid = Vec::new();
        let mut problems = Vec::new();
        for copy in 0..COPIES {
            let bytes = data.get(copy * COPY_LEN..).unwrap_or_default();
            match Superblock::decode_copy(bytes, copy) {
                Ok(found) => valid.push(found),
                Err(reason) => problems.push(format!("copy {copy}: {reason}")),
            }
        }
        let Some(newest) = valid.iter().max_by_key(|s| s.sequence).copied() else {
            return Err(LogError::corrupt(
                path,
                0,
                format!("no valid superblock copy ({})", problems.join("; ")),
            ));
        };
        for other in &valid {
            if other.identity != newest.identity {
                return Err(LogError::corrupt(
                    path,
                    0,
                    format!(
                        "superblock copies name two logs: {} and {}",
                        newest.identity, other.identity
                    ),
                ));
            }
            if newest.sequence - other.sequence > 1 {
                return Err(LogError::corrupt(
                    path,
                    0,
                    format!(
                        "superblock copies are {} updates apart (sequences {} and {}); a crash \
                         leaves them at most one apart",
                        newest.sequence - other.sequence,
                        newest.sequence,
                        other.sequence
                    ),
                ));
            }
        }
        Ok((newest, valid.len()))
    }
}

/// The open superblock file of a log, for updates.
#[derive(Debug)]
pub(crate) struct SuperblockFile {
    path: PathBuf,
    file: Box<dyn DiskFile>,
    current: Superblock,
}

impl SuperblockFile {
    /// Creates the superblock of a new log crash-safely (a temporary file, synced, renamed
    /// into place, the directory synced).
    pub(crate) fn create(
        disk: &dyn Disk,
        dir: &Path,
        superblock: Superblock,
    ) -> Result<SuperblockFile, LogError> {
        let temp = dir.join(TEMP_NAME);
        let path = dir.join(FILE_NAME);
        // Creating never opens what is there: a leftover (or a planted link) goes first.
        super::segment::remove(disk, &temp, "remove left-over superblock")?;
        let file = disk
            .create(&temp)
            .map_err(|e| LogError::io("create superblock", &temp, e))?;
        file.write_at(&superblock.encode(), 0)
            .and_then(|()| file.sync_data())
            .map_err(|e| LogError::io("write superblock", &temp, e))?;
        disk.rename(&temp, &path)
            .map_err(|e| LogError::io("rename superblock into place", &path, e))?;
        disk.sync_dir(dir)
            .map_err(|e| LogError::io("fsync directory", dir, e))?;
        Ok(SuperblockFile {
            path,
            file,
            current: superblock,
        })
    }

    /// Opens the existing superblock file, which holds `current`, for updates.
    pub(crate) fn open(
        disk: &dyn Disk,
        dir: &Path,
        current: Superblock,
    ) -> Result<SuperblockFile, LogError> {
        let path = dir.join(FILE_NAME);
        let file = disk
            .open(&path)
            .map_err(|e| LogError::io("open superblock", &path, e))?;
        Ok(SuperblockFile {
            path,
            file,
            current,
        })
    }

    pub(crate) fn current(&self) -> &Superblock {
        &self.current
    }

    /// Records that the log is durable through `durable` (a position and the checksum of the
    /// record ending there), unless the superblock already says so or more.
    pub(crate) fn record_durable(&mut self, durable: (Position, u32)) -> Result<(), LogError> {
        if self.current.durable >= durable.0 {
            return Ok(());
        }
        self.update(|s| {
            s.durable = durable.0;
            s.durable_checksum = durable.1;
        })
    }

    /// Writes `change` of the current superblock as the next sequence: the first half of the
    /// copies, synced, then the second half, synced.
    pub(crate) fn update(&mut self, change: impl FnOnce(&mut Superblock)) -> Result<(), LogError> {
        let mut next = self.current;
        change(&mut next);
        next.sequence += 1;
        if next.sequence > SEQUENCE_MAX {
            return Err(LogError::corrupt(
                &self.path,
                0,
                format!(
                    "the superblock's sequence {} is out of range",
                    next.sequence
                ),
            ));
        }
        for half in [0..COPIES / 2, COPIES / 2..COPIES] {
            for copy in half {
                self.file
                    .write_at(&next.encode_copy(copy), (copy * COPY_LEN) as u64)
                    .map_err(|e| LogError::io("write superblock", &self.path, e))?;
            }
            self.file
                .sync_data()
                .map_err(|e| LogError::io("fdatasync superblock", &self.path, e))?;
        }
        self.current = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::identity::{LogId, LogOwner};

    fn sample(sequence: u64) -> Superblock {
        Superblock {
            sequence,
            identity: LogIdentity {
                id: LogId([5; 16]),
                owner: LogOwner::Fence,
            },
            first: 3,
            last: 9,
            first_checksum: 0xABCD,
            durable: Position::new(9, 128),
            durable_checksum: 0,
        }
    }

    #[test]
    fn the_newest_valid_copy_wins_and_one_torn_half_is_survived() {
        let path = Path::new("/x/superblock");
        let old = sample(4).encode();
        let new = sample(5).encode();
        assert_eq!(Superblock::decode(path, &new).unwrap(), (sample(5), 4));
        // A crash while writing the second half: first half new, second half old.
        let mut mixed = new.clone();
        mixed[2 * COPY_LEN..].copy_from_slice(&old[2 * COPY_LEN..]);
        assert_eq!(Superblock::decode(path, &mixed).unwrap().0, sample(5));
        // A torn first half: the old second half stands.
        let mut torn = old.clone();
        torn[..2 * COPY_LEN].fill(0);
        assert_eq!(Superblock::decode(path, &torn).unwrap(), (sample(4), 2));
    }

    #[test]
    fn damage_that_no_crash_makes_is_refused() {
        let path = Path::new("/x/superblock");
        let mut bytes = sample(7).encode();
        bytes[..2 * COPY_LEN].copy_from_slice(&sample(3).encode()[..2 * COPY_LEN]);
        assert!(Superblock::decode(path, &bytes).is_err(), "4 updates apart");
        let mut other = sample(7);
        other.identity.id = LogId([6; 16]);
        let mut bytes = sample(7).encode();
        bytes[..COPY_LEN].copy_from_slice(&other.encode()[..COPY_LEN]);
        assert!(Superblock::decode(path, &bytes).is_err(), "two logs");
        // A copy moved into another copy's sector.
        let mut bytes = sample(7).encode();
        bytes.copy_within(..COPY_LEN, COPY_LEN);
        let (_, valid) = Superblock::decode(path, &bytes).unwrap();
        assert_eq!(valid, 3);
        assert!(Superblock::decode(path, &[0u8; 2048]).is_err());
        assert!(Superblock::decode(path, &[]).is_err());
        // A sequence no log reaches is forged: refused, so that no update ever writes one.
        assert!(Superblock::decode(path, &sample(SEQUENCE_MAX + 1).encode()).is_err());
        assert!(Superblock::decode(path, &sample(SEQUENCE_MAX).encode()).is_ok());
    }
}
