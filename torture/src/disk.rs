//! A member's data disk: a tmpfs of a fixed size, so that "disk full" is the kernel's own
//! ENOSPC, met by whatever write comes next, and not an error the harness makes up.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};

/// The mount's source name, by which a later run finds the disks of a killed one.
const SOURCE: &str = "fencekit-torture";
/// The file `fill` writes, in the disk's top directory.
const FILLER: &str = ".fencekit-torture-filler";

/// A tmpfs of a fixed size mounted at a directory (a member's data disk), so that "disk full"
/// is a real ENOSPC.
pub(crate) struct Disk {
    dir: PathBuf,
    /// Set once unmounted, so that teardown is idempotent.
    unmounted: AtomicBool,
}

impl Disk {
    /// Creates `dir` (and its parents) and mounts there a tmpfs of `bytes` (rounded up to
    /// whole pages by the kernel).
    pub(crate) fn mount(dir: &Path, bytes: u64) -> Result<Disk> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes},mode=0755")])
            .arg(SOURCE)
            .arg(&dir)
            .stdin(Stdio::null())
            .output()
            .context("running mount")?;
        if !out.status.success() {
            bail!(
                "mount -t tmpfs on {} failed ({}): {}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Disk {
            dir,
            unmounted: AtomicBool::new(false),
        })
    }

    /// Unmounts the disks a run killed before its cleanup left under `dir` (a harness killed
    /// with -9 cannot unmount them), so that the next run can remove and reuse the directory.
    pub(crate) fn unmount_leftovers(dir: &Path) -> Result<()> {
        let Ok(dir) = dir.canonicalize() else {
            return Ok(());
        };
        let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
        for line in mounts.lines() {
            let mut fields = line.split(' ');
            let (Some(source), Some(point)) = (fields.next(), fields.next()) else {
                continue;
            };
            // /proc/mounts escapes spaces and the like as octal: such paths are not ours.
            let point = Path::new(point);
            if source == SOURCE && point.starts_with(&dir) {
                let out = Command::new("umount")
                    .arg("-l")
                    .arg(point)
                    .output()
                    .context("running umount")?;
                if !out.status.success() {
                    bail!(
                        "umount {} failed: {}",
                        point.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
        }
        Ok(())
    }

    /// Fills the disk, leaving at most `leave` bytes free, with a file of real data (tmpfs
    /// allocates every page written). Filling again adds to the same file.
    pub(crate) fn fill(&self, leave: u64) -> Result<()> {
        let path = self.dir.join(FILLER);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let chunk = vec![0xA5u8; 64 * 1024];
        loop {
            let free = self.free_bytes()?;
            if free <= leave {
                return Ok(());
            }
            let len = usize::try_from(free - leave)
                .unwrap_or(chunk.len())
                .min(chunk.len());
            match file.write(&chunk[..len]) {
                // Nothing more fits (the last page may hold less than `free` said): full.
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("writing {}", path.display()));
                }
            }
        }
    }

    /// Removes the filler (there may be none).
    pub(crate) fn free(&self) -> Result<()> {
        let path = self.dir.join(FILLER);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// The bytes an unprivileged writer could still write (statvfs `f_bavail` blocks).
    pub(crate) fn free_bytes(&self) -> Result<u64> {
        let path = CString::new(self.dir.as_os_str().as_bytes())
            .with_context(|| format!("{} holds a NUL byte", self.dir.display()))?;
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `path` is a NUL-terminated string that outlives the call; `st` is a buffer
        // of the right type, written by statvfs before it returns 0.
        let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("statvfs {}", self.dir.display()));
        }
        // SAFETY: statvfs returned 0, so it filled `st`.
        let st = unsafe { st.assume_init() };
        #[allow(
            clippy::useless_conversion,
            reason = "fsblkcnt_t and c_ulong are 32 bits on some targets"
        )]
        Ok(u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
    }

    /// The mount point.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unmounts (lazily if busy: a member's process may still hold files open). Idempotent;
    /// best effort, failures logged to stderr.
    pub(crate) fn unmount(&self) {
        if self.unmounted.swap(true, Ordering::SeqCst) {
            return;
        }
        let umount = |lazy: bool| {
            let mut cmd = Command::new("umount");
            if lazy {
                cmd.arg("-l");
            }
            cmd.arg(&self.dir)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| e.to_string())
                .and_then(|out| match out.status.success() {
                    true => Ok(()),
                    false => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
                })
        };
        if umount(false).is_err()
            && let Err(e) = umount(true)
        {
            eprintln!("fencekit-torture: umount -l {}: {e}", self.dir.display());
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.unmount();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `dir` is a mount point, from /proc/mounts.
    fn mounted(dir: &Path) -> bool {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let dir = dir.to_str().unwrap();
        mounts.lines().any(|l| l.split(' ').nth(1) == Some(dir))
    }

    #[test]
    fn a_full_disk_refuses_writes_until_freed() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        }
        let base = std::env::temp_dir().join(format!("fkt-disk-{}", std::process::id()));
        let disk = Disk::mount(&base.join("data"), 1 << 20).unwrap();
        let dir = disk.dir().to_path_buf();
        assert!(mounted(&dir));
        let total = disk.free_bytes().unwrap();
        assert!((1 << 20..(1 << 20) + 4096).contains(&total), "{total}");

        std::fs::write(dir.join("small"), [1u8; 4096]).unwrap();
        disk.fill(0).unwrap();
        assert_eq!(disk.free_bytes().unwrap(), 0);
        let filler = std::fs::metadata(dir.join(FILLER)).unwrap().len();
        assert!(filler >= (1 << 20) - 8192, "{filler}");

        let write = || std::fs::write(dir.join("next"), [7u8; 16 * 1024]);
        let err = write().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");

        disk.free().unwrap();
        assert!(disk.free_bytes().unwrap() >= (1 << 20) - 8192);
        write().unwrap();
        assert_eq!(std::fs::read(dir.join("next")).unwrap(), [7u8; 16 * 1024]);

        // Leaving some room: at most that much is free, and a larger write fails.
        disk.fill(64 * 1024).unwrap();
        let free = disk.free_bytes().unwrap();
        assert!(free <= 64 * 1024, "{free}");
        assert!(std::fs::write(dir.join("big"), vec![0u8; 128 * 1024]).is_err());
        disk.free().unwrap();

        // A file held open does not stop the unmount (it is lazy then).
        let held = std::fs::File::open(dir.join("next")).unwrap();
        drop(disk);
        assert!(!mounted(&dir));
        drop(held);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_disks_of_a_killed_run_are_unmounted_by_the_next() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        }
        let base = std::env::temp_dir().join(format!("fkt-leftover-{}", std::process::id()));
        let run = base.join("fenced");
        let disks = [
            Disk::mount(&run.join("n1/disk"), 1 << 20).unwrap(),
            Disk::mount(&run.join("store/disk"), 1 << 20).unwrap(),
        ];
        let elsewhere = Disk::mount(&base.join("other/disk"), 1 << 20).unwrap();
        // A killed run never drops its disks.
        let dirs: Vec<PathBuf> = disks.iter().map(|d| d.dir().to_path_buf()).collect();
        std::mem::forget(disks);
        Disk::unmount_leftovers(&run).unwrap();
        for dir in &dirs {
            assert!(!mounted(dir), "{} still mounted", dir.display());
        }
        assert!(
            mounted(elsewhere.dir()),
            "a disk outside the run's directory was unmounted"
        );
        std::fs::remove_dir_all(&run).unwrap();
        drop(elsewhere);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
