//! A simulated disk under the write-ahead log: what a crash keeps and what it loses.
//!
//! Every file has two images: what reads see (the page cache) and what is durable. A write
//! changes the first and is remembered as unsynced; `sync_data` copies it to the second.
//! Directory entries work the same way, made durable by `sync_dir`. Then:
//!
//! - a *process crash* (kill -9) keeps everything written: the kernel still has it;
//! - a *power loss* keeps what was durable, plus, for each unsynced write, nothing, all of it,
//!   or (torn) some of its 512-byte sectors; and a prefix of the unsynced directory changes;
//! - a *bit flip* at rest damages one durable byte of a file;
//! - a *full disk* refuses to create files or to extend one.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use fencekit::disk::{Disk, DiskFile, DiskLock, LockHolder};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

const SECTOR: usize = 512;

#[derive(Debug, Default)]
struct FileState {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Writes since the last sync, as (offset, len), in order.
    unsynced: Vec<(usize, usize)>,
}

#[derive(Debug, Clone)]
enum DirOp {
    Link(PathBuf, u64),
    Unlink(PathBuf),
    Rename(PathBuf, PathBuf),
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<u64, FileState>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    unsynced_dir: Vec<DirOp>,
    locks: BTreeSet<PathBuf>,
    next_inode: u64,
    full: bool,
    /// The next fdatasync fails: power is lost right then.
    sync_trap: bool,
    /// Log ids handed out, so that they are deterministic.
    log_ids: u64,
}

impl State {
    fn apply(names: &mut BTreeMap<PathBuf, u64>, op: &DirOp) {
        match op {
            DirOp::Link(path, inode) => {
                names.insert(path.clone(), *inode);
            }
            DirOp::Unlink(path) => {
                names.remove(path);
            }
            DirOp::Rename(from, to) => {
                if let Some(inode) = names.remove(from) {
                    names.insert(to.clone(), inode);
                }
            }
        }
    }

    fn change_dir(&mut self, op: DirOp) {
        State::apply(&mut self.names, &op);
        self.unsynced_dir.push(op);
    }

    fn inode(&self, path: &Path) -> io::Result<u64> {
        self.names
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.display().to_string()))
    }

    /// Forgets files no name refers to.
    fn collect(&mut self) {
        let live: BTreeSet<u64> = self.names.values().copied().collect();
        self.files.retain(|inode, _| live.contains(inode));
    }
}

/// What a bit flip damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flip {
    /// The file.
    pub path: PathBuf,
    /// The byte.
    pub offset: usize,
}

/// One node's (or the store's) disk. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Single-threaded: a poisoned lock only means a panicking test, whose state is moot.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A kill -9: nothing written is lost (the kernel keeps it), only the locks are dropped.
    pub fn crash_process(&self) {
        let mut state = self.lock();
        state.locks.clear();
        state.sync_trap = false;
    }

    /// A power loss: what was not synced is lost, kept, or (when `torn`) kept in part.
    /// Returns how many unsynced writes were not kept whole.
    pub fn lose_power(&self, rng: &mut ChaCha8Rng, torn: bool) -> usize {
        let mut state = self.lock();
        state.sync_trap = false;
        let mut damaged = 0;
        for file in state.files.values_mut() {
            for (offset, len) in std::mem::take(&mut file.unsynced) {
                let end = offset + len;
                if file.durable.len() < end {
                    file.durable.resize(end, 0);
                }
                match rng.gen_range(0..3) {
                    0 => damaged += 1,
                    1 => file.durable[offset..end].copy_from_slice(&file.data[offset..end]),
                    _ if !torn => damaged += 1,
                    _ => {
                        damaged += 1;
                        let mut at = offset;
                        while at < end {
                            let sector_end = ((at / SECTOR) + 1) * SECTOR;
                            let upto = sector_end.min(end);
                            if rng.gen_bool(0.5) {
                                file.durable[at..upto].copy_from_slice(&file.data[at..upto]);
                            }
                            at = upto;
                        }
                    }
                }
            }
            file.data = file.durable.clone();
        }
        let ops = std::mem::take(&mut state.unsynced_dir);
        let kept = rng.gen_range(0..=ops.len());
        let mut names = std::mem::take(&mut state.durable_names);
        for op in &ops[..kept] {
            State::apply(&mut names, op);
        }
        state.names = names.clone();
        state.durable_names = names;
        state.locks.clear();
        state.collect();
        damaged
    }

    /// Flips one bit of one durable byte of a file whose name ends with `suffix`.
    pub fn flip_bit(&self, rng: &mut ChaCha8Rng, suffix: &str) -> Option<Flip> {
        let mut state = self.lock();
        let candidates: Vec<(PathBuf, u64)> = state
            .names
            .iter()
            .filter(|(p, _)| p.to_string_lossy().ends_with(suffix))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (path, inode) = candidates[rng.gen_range(0..candidates.len())].clone();
        let file = state.files.get_mut(&inode)?;
        if file.durable.is_empty() {
            return None;
        }
        let offset = rng.gen_range(0..file.durable.len());
        let bit = 1u8 << rng.gen_range(0..8);
        file.durable[offset] ^= bit;
        if let Some(b) = file.data.get_mut(offset) {
            *b ^= bit;
        }
        Some(Flip { path, offset })
    }

    /// Fills the disk (or frees it): a full disk refuses new files and growing ones.
    pub fn set_full(&self, full: bool) {
        self.lock().full = full;
    }

    /// Makes the next fdatasync fail, as if power were lost between a write and its sync; the
    /// caller then calls [`SimDisk::lose_power`].
    pub fn fail_next_sync(&self) {
        self.lock().sync_trap = true;
    }

    /// Whether the disk is full.
    pub fn is_full(&self) -> bool {
        self.lock().full
    }
}

fn full_error() -> io::Error {
    io::Error::new(io::ErrorKind::StorageFull, "no space left on device")
}

impl Disk for SimDisk {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        Ok(state
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let mut state = self.lock();
        if state.full {
            return Err(full_error());
        }
        state.next_inode += 1;
        let inode = state.next_inode;
        state.files.insert(inode, FileState::default());
        state.change_dir(DirOp::Link(path.to_path_buf(), inode));
        Ok(Box::new(SimFile {
            disk: self.clone(),
            inode,
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let inode = self.lock().inode(path)?;
        Ok(Box::new(SimFile {
            disk: self.clone(),
            inode,
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        self.open(path)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.lock();
        let inode = state.inode(path)?;
        Ok(state
            .files
            .get(&inode)
            .map(|f| f.data.clone())
            .unwrap_or_default())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.inode(from)?;
        state.change_dir(DirOp::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.inode(path)?;
        state.change_dir(DirOp::Unlink(path.to_path_buf()));
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let ops = std::mem::take(&mut state.unsynced_dir);
        for op in &ops {
            State::apply(&mut state.durable_names, op);
        }
        Ok(())
    }

    fn new_log_id(&self) -> io::Result<[u8; 16]> {
        // Deterministic within a disk (its own count), and distinct across the disks of a run
        // (a process-wide count), so that a record copied between simulated nodes fails its
        // checksum as it would between real ones.
        static DISKS_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let mut state = self.lock();
        state.log_ids += 1;
        let mut id = [0x5Du8; 16];
        id[..8].copy_from_slice(&state.log_ids.to_le_bytes());
        let global = DISKS_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        id[8..].copy_from_slice(&global.to_le_bytes());
        Ok(id)
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<DiskLock>> {
        if !self.lock().locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        Ok(Some(DiskLock::new(Unlock {
            disk: self.clone(),
            path: path.to_path_buf(),
        })))
    }
}

struct Unlock {
    disk: SimDisk,
    path: PathBuf,
}

impl LockHolder for Unlock {}

impl Drop for Unlock {
    fn drop(&mut self) {
        self.disk.lock().locks.remove(&self.path);
    }
}

#[derive(Debug)]
struct SimFile {
    disk: SimDisk,
    inode: u64,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "the file was lost")
}

impl DiskFile for SimFile {
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.disk.lock();
        let full = state.full;
        let file = state.files.get_mut(&self.inode).ok_or_else(gone)?;
        let (offset, end) = (offset as usize, offset as usize + bytes.len());
        if end > file.data.len() {
            if full {
                return Err(full_error());
            }
            file.data.resize(end, 0);
        }
        file.data[offset..end].copy_from_slice(bytes);
        // Adjacent writes merge, so that a sync copies each byte once.
        match file.unsynced.last_mut() {
            Some((o, l)) if *o + *l == offset => *l += bytes.len(),
            _ => file.unsynced.push((offset, bytes.len())),
        }
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let state = self.disk.lock();
        let file = state.files.get(&self.inode).ok_or_else(gone)?;
        let offset = (offset as usize).min(file.data.len());
        let n = buf.len().min(file.data.len() - offset);
        buf[..n].copy_from_slice(&file.data[offset..offset + n]);
        Ok(n)
    }

    fn size(&self) -> io::Result<u64> {
        let state = self.disk.lock();
        let file = state.files.get(&self.inode).ok_or_else(gone)?;
        Ok(file.data.len() as u64)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.disk.lock();
        if std::mem::take(&mut state.sync_trap) {
            return Err(io::Error::other("power lost during fdatasync"));
        }
        let file = state.files.get_mut(&self.inode).ok_or_else(gone)?;
        if file.durable.len() < file.data.len() {
            file.durable.resize(file.data.len(), 0);
        }
        for (offset, len) in std::mem::take(&mut file.unsynced) {
            file.durable[offset..offset + len].copy_from_slice(&file.data[offset..offset + len]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn power_loss_keeps_what_was_synced_and_nothing_the_directory_did_not_sync() {
        let disk = SimDisk::new();
        let dir = Path::new("/d");
        let file = disk.create(&dir.join("a")).unwrap();
        file.write_at(b"durable", 0).unwrap();
        file.sync_data().unwrap();
        disk.sync_dir(dir).unwrap();
        file.write_at(b"XX", 0).unwrap();
        disk.create(&dir.join("b")).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // Whatever the draws, the synced bytes and name survive.
        for _ in 0..20 {
            disk.lose_power(&mut rng, true);
            let data = disk.read(&dir.join("a")).unwrap();
            assert!(data.ends_with(b"rable"), "{data:?}");
        }
        assert!(disk.read(&dir.join("b")).is_err() || disk.list(dir).unwrap().len() == 2);
    }

    #[test]
    fn a_full_disk_refuses_growth_but_not_overwrites() {
        let disk = SimDisk::new();
        let file = disk.create(Path::new("/d/a")).unwrap();
        file.write_at(&[0; 100], 0).unwrap();
        disk.set_full(true);
        file.write_at(b"in place", 10).unwrap();
        assert_eq!(
            file.write_at(b"grow", 98).unwrap_err().kind(),
            io::ErrorKind::StorageFull
        );
        assert!(disk.create(Path::new("/d/b")).is_err());
    }

    #[test]
    fn a_lock_is_held_until_dropped() {
        let disk = SimDisk::new();
        let lock = disk.try_lock(Path::new("/d")).unwrap().unwrap();
        assert!(disk.try_lock(Path::new("/d")).unwrap().is_none());
        drop(lock);
        assert!(disk.try_lock(Path::new("/d")).unwrap().is_some());
    }
}
