//! Helpers shared by the test modules.

use std::fs;
use std::path::{Path, PathBuf};

use fencekit::wal::LogOwner;
use fencekit::{FenceOptions, LogError, Record, RecordKind, Wal, WalOptions};

/// The smallest segment, so that tests roll segments often.
pub(crate) const SMALL_SEGMENT: u64 = 64 << 10;

pub(crate) fn small_wal() -> WalOptions {
    WalOptions {
        segment_size: SMALL_SEGMENT,
        ..WalOptions::default()
    }
}

pub(crate) fn small_fence() -> FenceOptions {
    FenceOptions {
        max_resources: 1024,
        compact_after_bytes: 32 << 10,
        wal: small_wal(),
        ..FenceOptions::default()
    }
}

/// A record as the tests compare them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owned {
    pub kind: u8,
    pub generation: u64,
    pub payload: Vec<u8>,
}

impl Owned {
    /// A record whose payload of `len` bytes is derived from its generation.
    pub(crate) fn new(kind: u8, generation: u64, len: usize) -> Owned {
        Owned {
            kind,
            generation,
            payload: payload(generation, len),
        }
    }

    /// A copy of a record recovery handed out.
    pub(crate) fn of(record: &Record<'_>) -> Owned {
        Owned {
            kind: record.kind.get(),
            generation: record.generation,
            payload: record.payload.to_vec(),
        }
    }

    /// Appends this record to `wal` (buffered; not yet synced).
    pub(crate) fn append_to(&self, wal: &Wal) -> fencekit::Position {
        wal.append(self::kind(self.kind), self.generation, &self.payload)
            .unwrap_or_else(|e| panic!("append: {e}"))
    }
}

pub(crate) fn open_wal(dir: &Path) -> Result<(Wal, Vec<Owned>), LogError> {
    let mut records = Vec::new();
    let wal = Wal::open(dir, LogOwner::Fence, small_wal(), &mut |r: Record<'_>| {
        records.push(Owned::of(&r));
        Ok(())
    })?;
    Ok((wal, records))
}

pub(crate) fn kind(byte: u8) -> RecordKind {
    RecordKind::new(byte).expect("non-zero kind")
}

/// The segment files of a log directory, in order.
pub(crate) fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list log directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    paths.sort();
    paths
}

/// Copies the files of `from` into a fresh directory.
pub(crate) fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().expect("temp dir");
    for entry in fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        fs::copy(entry.path(), to.path().join(entry.file_name())).expect("copy");
    }
    to
}

/// A deterministic payload of `len` bytes, with no zero byte (so no sector of it is all zero).
pub(crate) fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 255) as u8 + 1
        })
        .collect()
}
