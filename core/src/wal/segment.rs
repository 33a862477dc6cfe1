//! Segment files: naming, crash-safe creation, positioned writes, and the directory lock.
//!
//! A segment is created whole before any record is written to it: a temporary file is filled
//! with the header, any initial records and zeros up to the segment size, synced, renamed into
//! place, and the directory synced. Filling with zeros (rather than `fallocate`, which leaves
//! "unwritten" extents whose conversion is metadata every later fdatasync must journal) makes
//! each later append an overwrite of allocated blocks, so fdatasync flushes data only.

use std::path::{Path, PathBuf};

use super::record::{SEGMENT_HEADER_LEN, SegmentHeader};
use crate::disk::{Disk, DiskFile, DiskLock};
use crate::error::LogError;
use crate::limits::{LOCK_RETRIES, LOCK_RETRY_PAUSE, ZERO_CHUNK};

const SUFFIX: &str = ".wal";
const TEMP_SUFFIX: &str = ".wal.tmp";

/// What a directory entry is to the log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EntryName {
    Segment(u64),
    Temp(u64),
    Other,
}

pub(crate) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016x}{SUFFIX}"))
}

pub(crate) fn temp_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016x}{TEMP_SUFFIX}"))
}

pub(crate) fn classify(name: &str) -> EntryName {
    let number = |stem: &str| {
        (stem.len() == 16)
            .then(|| u64::from_str_radix(stem, 16).ok())
            .flatten()
    };
    if let Some(stem) = name.strip_suffix(TEMP_SUFFIX) {
        return number(stem).map_or(EntryName::Other, EntryName::Temp);
    }
    if let Some(stem) = name.strip_suffix(SUFFIX) {
        return number(stem).map_or(EntryName::Other, EntryName::Segment);
    }
    EntryName::Other
}

/// Makes the directory's entries (creations, renames, removals) durable.
pub(crate) fn sync_dir(disk: &dyn Disk, dir: &Path) -> Result<(), LogError> {
    disk.sync_dir(dir)
        .map_err(|e| LogError::io("fsync directory", dir, e))
}

/// Removes a file; one already gone is no error.
pub(crate) fn remove(disk: &dyn Disk, path: &Path, context: &'static str) -> Result<(), LogError> {
    match disk.remove(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io(context, path, e)),
    }
}

/// Writes `len` zero bytes at `offset`.
fn write_zeros(
    file: &dyn DiskFile,
    path: &Path,
    mut offset: u64,
    len: u64,
) -> Result<(), LogError> {
    let zeros = vec![0u8; ZERO_CHUNK.min(len as usize)];
    let end = offset + len;
    while offset < end {
        let n = (end - offset).min(ZERO_CHUNK as u64) as usize;
        file.write_at(&zeros[..n], offset)
            .map_err(|e| LogError::io("write zeros to", path, e))?;
        offset += n as u64;
    }
    Ok(())
}

/// An open segment file.
#[derive(Debug)]
pub(crate) struct SegmentFile {
    pub(crate) header: SegmentHeader,
    pub(crate) path: PathBuf,
    file: Box<dyn DiskFile>,
}

impl SegmentFile {
    /// Creates segment `header.number` holding `initial` right after its header, crash-safely:
    /// either the whole file appears under its name, synced, or nothing does.
    pub(crate) fn create(
        disk: &dyn Disk,
        dir: &Path,
        header: SegmentHeader,
        initial: &[u8],
    ) -> Result<SegmentFile, LogError> {
        let temp = temp_path(dir, header.number);
        let result = Self::fill_temp(disk, &temp, header, initial);
        let file = match result {
            Ok(file) => file,
            Err(e) => {
                // Best effort: a leftover temporary file is also removed by the next recovery.
                let _ = disk.remove(&temp);
                return Err(e);
            }
        };
        let path = segment_path(dir, header.number);
        disk.rename(&temp, &path)
            .map_err(|e| LogError::io("rename segment into place", &path, e))?;
        sync_dir(disk, dir)?;
        Ok(SegmentFile { header, path, file })
    }

    fn fill_temp(
        disk: &dyn Disk,
        temp: &Path,
        header: SegmentHeader,
        initial: &[u8],
    ) -> Result<Box<dyn DiskFile>, LogError> {
        // A leftover of an earlier attempt goes first: creating never opens what is there
        // (a link planted under this name must not be written through).
        remove(disk, temp, "remove left-over temporary segment")?;
        let file = disk
            .create(temp)
            .map_err(|e| LogError::io("create segment", temp, e))?;
        let mut head = Vec::with_capacity(SEGMENT_HEADER_LEN as usize + initial.len());
        head.extend_from_slice(&header.encode());
        head.extend_from_slice(initial);
        assert!(
            head.len() as u64 <= header.size,
            "initial records exceed the segment"
        );
        file.write_at(&head, 0)
            .map_err(|e| LogError::io("write segment", temp, e))?;
        write_zeros(
            &*file,
            temp,
            head.len() as u64,
            header.size - head.len() as u64,
        )?;
        file.sync_data()
            .map_err(|e| LogError::io("fsync segment", temp, e))?;
        Ok(file)
    }

    /// Opens an existing segment for recovery and appends.
    pub(crate) fn open(
        disk: &dyn Disk,
        path: PathBuf,
        header: SegmentHeader,
    ) -> Result<SegmentFile, LogError> {
        let file = disk
            .open(&path)
            .map_err(|e| LogError::io("open segment", &path, e))?;
        Ok(SegmentFile { header, path, file })
    }

    pub(crate) fn number(&self) -> u64 {
        self.header.number
    }

    pub(crate) fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<(), LogError> {
        debug_assert!(offset + bytes.len() as u64 <= self.header.size);
        self.file
            .write_at(bytes, offset)
            .map_err(|e| LogError::io("write", &self.path, e))
    }

    pub(crate) fn write_zeros(&self, offset: u64, len: u64) -> Result<(), LogError> {
        write_zeros(&*self.file, &self.path, offset, len)
    }

    /// fdatasync: the file's data (and the metadata needed to read it) is on stable storage.
    pub(crate) fn sync(&self) -> Result<(), LogError> {
        self.file
            .sync_data()
            .map_err(|e| LogError::io("fdatasync", &self.path, e))
    }
}

/// An exclusive lock on a log directory, held while the log is open. The directory itself is
/// locked, not a file in it, so deleting or replacing a file cannot get around it; and the
/// holder checks before each sync that the directory is still the one at its path (see
/// [`DirLock::verify`]).
///
/// A process that forks (to spawn a child) briefly shares every open file with the child until
/// the child's `exec` closes it; a lock released and retaken in that window looks held. So a
/// held lock is retried for a short while before it is reported.
#[derive(Debug)]
pub(crate) struct DirLock {
    lock: DiskLock,
    dir: PathBuf,
}

impl DirLock {
    pub(crate) fn acquire(disk: &dyn Disk, dir: &Path) -> Result<DirLock, LogError> {
        for attempt in 0..=LOCK_RETRIES {
            match disk.try_lock(dir) {
                Ok(Some(lock)) => {
                    return Ok(DirLock {
                        lock,
                        dir: dir.to_path_buf(),
                    });
                }
                Ok(None) if attempt < LOCK_RETRIES => std::thread::sleep(LOCK_RETRY_PAUSE),
                Ok(None) => break,
                Err(e) => return Err(LogError::io("lock", dir, e)),
            }
        }
        Err(LogError::Locked {
            path: dir.to_path_buf(),
        })
    }

    /// Refuses if the locked directory was moved away or replaced while the log was open:
    /// another process could then lock and write a copy of the log at the same path.
    pub(crate) fn verify(&self) -> Result<(), LogError> {
        match self.lock.still_in_place() {
            Ok(true) => Ok(()),
            Ok(false) => Err(LogError::corrupt(
                &self.dir,
                0,
                "the log directory was moved, deleted or replaced while the log was open; \
                 another process may be writing a copy of this log",
            )),
            Err(e) => Err(LogError::io("check the log directory", &self.dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        let dir = Path::new("/x");
        let name = |p: PathBuf| p.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(
            classify(&name(segment_path(dir, 42))),
            EntryName::Segment(42)
        );
        assert_eq!(classify(&name(temp_path(dir, 42))), EntryName::Temp(42));
        for other in [
            "LOCK",
            "12.wal",
            "zzzzzzzzzzzzzzzz.wal",
            "0000000000000001.log",
        ] {
            assert_eq!(classify(other), EntryName::Other, "{other}");
        }
    }

    #[test]
    fn a_directory_is_locked_once() {
        let dir = tempfile::tempdir().unwrap();
        let disk = crate::disk::OsDisk;
        let first = DirLock::acquire(&disk, dir.path()).unwrap();
        assert!(matches!(
            DirLock::acquire(&disk, dir.path()),
            Err(LogError::Locked { .. })
        ));
        drop(first);
        DirLock::acquire(&disk, dir.path()).unwrap();
    }
}
