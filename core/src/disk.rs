//! The file system under the write-ahead log, as a seam.
//!
//! The log reaches the disk only through [`Disk`] and [`DiskFile`]: [`OsDisk`] is the real
//! file system; a simulator supplies one that loses unsynced writes, tears them, flips bits at
//! rest and fills up, to test recovery (DESIGN.md I6) against every fault, deterministically.
//! The operations are the few the log needs, with POSIX meaning: data written is visible to
//! reads at once and durable only after `sync_data`; a creation, rename or removal is durable
//! only after `sync_dir` of its directory.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// A file system. `Send + Sync`: logs on many threads share one.
pub trait Disk: Send + Sync + fmt::Debug {
    /// Creates `dir` and its parents, if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries of `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// True if `path` is a regular file itself (not a FIFO, a device, a directory or a
    /// symbolic link): reading anything else could block forever or never end.
    fn is_regular_file(&self, path: &Path) -> io::Result<bool> {
        let _ = path;
        Ok(true)
    }
    /// How many names (hard links) the file `path` has. A log's file with more than one could
    /// be opened through another directory, around the directory's lock.
    fn link_count(&self, path: &Path) -> io::Result<u64> {
        let _ = path;
        Ok(1)
    }
    /// Creates the new file `path` for reading and writing; fails if anything exists there
    /// (a file, or a symbolic link, which is never followed).
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    /// Opens the existing `path` for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    /// Opens the existing `path` for reading only (writes through it fail).
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    /// The whole content of `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on the directory `dir` itself, held until the returned guard
    /// is dropped. `Ok(None)` when another holder has it. Locking the directory rather than a
    /// file in it means no file can be deleted or replaced to get around the lock.
    fn try_lock(&self, dir: &Path) -> io::Result<Option<DiskLock>>;

    /// A new random log id. Never all zero.
    fn new_log_id(&self) -> io::Result<[u8; 16]> {
        let mut id = [0u8; 16];
        while id == [0u8; 16] {
            // SAFETY: the buffer is valid for 16 bytes of writes.
            let n = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
            if n != id.len() as isize {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(id)
    }
}

/// Whatever holds a [`DiskLock`] until it is dropped.
pub trait LockHolder: Send + Sync {
    /// False if the locked directory is no longer the one at its path (moved away, deleted
    /// and recreated): a second process could then lock the new one.
    fn still_in_place(&self) -> io::Result<bool> {
        Ok(true)
    }
}

/// An open file of a [`Disk`].
pub trait DiskFile: Send + Sync + fmt::Debug {
    /// Writes all of `bytes` at `offset`.
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()>;
    /// Reads into `buf` from `offset`; returns how many bytes were read (fewer at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// fdatasync: the data written so far is durable.
    fn sync_data(&self) -> io::Result<()>;
    /// The file's length in bytes.
    fn size(&self) -> io::Result<u64>;
}

/// A held lock of [`Disk::try_lock`]; dropping it releases the lock.
pub struct DiskLock(Box<dyn LockHolder>);

impl DiskLock {
    /// Wraps whatever holds the lock until it is dropped.
    pub fn new(holder: impl LockHolder + 'static) -> DiskLock {
        DiskLock(Box::new(holder))
    }

    /// See [`LockHolder::still_in_place`].
    pub fn still_in_place(&self) -> io::Result<bool> {
        self.0.still_in_place()
    }
}

impl fmt::Debug for DiskLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DiskLock")
    }
}

/// A shared handle on a [`Disk`]; the default is the operating system's file system.
#[derive(Clone)]
pub struct DiskHandle(Arc<dyn Disk>);

impl DiskHandle {
    /// A handle on `disk`.
    pub fn new(disk: impl Disk + 'static) -> DiskHandle {
        DiskHandle(Arc::new(disk))
    }

    /// A handle on a shared `disk`.
    pub fn from_arc(disk: Arc<dyn Disk>) -> DiskHandle {
        DiskHandle(disk)
    }
}

impl Default for DiskHandle {
    /// The operating system's file system (one shared handle, so defaults compare equal).
    fn default() -> Self {
        static OS: OnceLock<DiskHandle> = OnceLock::new();
        OS.get_or_init(|| DiskHandle::new(OsDisk)).clone()
    }
}

impl std::ops::Deref for DiskHandle {
    type Target = dyn Disk;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl fmt::Debug for DiskHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for DiskHandle {
    /// Two handles are equal when they share one disk.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for DiskHandle {}

/// The operating system's file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsDisk;

impl Disk for OsDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn is_regular_file(&self, path: &Path) -> io::Result<bool> {
        Ok(fs::symlink_metadata(path)?.file_type().is_file())
    }

    fn link_count(&self, path: &Path) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(fs::symlink_metadata(path)?.nlink())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(Box::new(OsFile(file)))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(OsFile(file)))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(OsFile(File::open(path)?)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    /// `flock` locks belong to the open file, so a second lock in the same process is refused
    /// as well as one in another.
    fn try_lock(&self, dir: &Path) -> io::Result<Option<DiskLock>> {
        let file = File::open(dir)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(DiskLock::new(OsDirLock {
                file,
                path: dir.to_path_buf(),
            }))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

/// A locked directory, and the path it was locked by.
struct OsDirLock {
    file: File,
    path: std::path::PathBuf,
}

impl LockHolder for OsDirLock {
    fn still_in_place(&self) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let held = self.file.metadata()?;
        match fs::metadata(&self.path) {
            Ok(now) => Ok(now.dev() == held.dev() && now.ino() == held.ino()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[derive(Debug)]
struct OsFile(File);

impl DiskFile for OsFile {
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(bytes, offset)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}
