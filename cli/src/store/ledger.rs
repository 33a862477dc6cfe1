//! The job ledger on disk: one JSON line per decided completion, each made durable
//! (fdatasync) before the store answers.
//!
//! The promise: the file never keeps a half-written entry after a failed write or sync, and
//! nothing the store answered for is lost. How each step keeps it:
//!
//! 1. Invariant: the file's first `durable_len` bytes are exactly the lines of `entries`, each
//!    synced before its answer; nothing after them was ever acknowledged. An append writes one
//!    line at the end (`O_APPEND`), syncs it, and only then counts the entry and moves
//!    `durable_len`. One process writes: the file is locked (`flock`) while open, since
//!    cutting back (step 2) would destroy lines another writer had appended.
//! 2. A failed *write* (ENOSPC, EIO from write(2)) may have left a prefix of the line in the
//!    file: a full disk takes what fits in the last page and refuses the rest. The kernel's
//!    view of the file is still the truth there, so the ledger cuts the file back to
//!    `durable_len` and syncs that before anything else is appended. Without this, the next
//!    append went after the half line and was acknowledged, and the next start refused the
//!    ledger ("line 46 is damaged").
//! 3. A failed *sync* is different. After fdatasync fails, Linux may already have marked the
//!    pages clean: a second sync reports success for bytes that never reached the disk, and
//!    the page cache no longer tells what the disk holds (PostgreSQL's "fsyncgate", 2018, whose
//!    answer was to stop and recover from what is durable). So the ledger cuts the unanswered
//!    line away as best it can (a restart would otherwise read it back from the cache), then
//!    is *poisoned*: every later append is refused, naming the first failure, until the store
//!    restarts and reloads the file from what is there. The same happens when cutting back
//!    after a failed write (step 2) fails. A refused entry was never answered with success; as
//!    with any failed request, whether it was recorded is unknown to the caller, which may find
//!    it in the ledger after a restart if the cut did not reach the disk.
//! 4. On open, a last line without its newline is the torn tail of an append a crash or a
//!    poisoned ledger left: the newline is the last byte of each append and a JSON line holds
//!    no raw newline, so no acknowledged line lacks one. It is cut off (and the cut synced).
//!    Any other line that does not parse is damage: an error naming the file, line and
//!    offset, never a silent skip.
//!
//! Issue 19 replaces this file by SQLite; until then the steps above are the whole story.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use crate::store_api::Entry;

/// What the ledger asks of its file. `File` is the real one; the tests put a file that fails
/// a chosen write, sync or cut in its place, since a real disk fails a sync rarely and never
/// on cue.
pub(crate) trait LedgerFile {
    /// Writes all of `bytes` at the end of the file, or fails having written a prefix.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// fdatasync(2).
    fn sync(&self) -> io::Result<()>;
    /// ftruncate(2) to `len` bytes.
    fn cut(&self, len: u64) -> io::Result<()>;
}

impl LedgerFile for File {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)
    }

    fn sync(&self) -> io::Result<()> {
        self.sync_data()
    }

    fn cut(&self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}

/// The step of an append that failed.
#[derive(Clone, Copy)]
enum Failed {
    Write,
    Sync,
}

/// The ledger: its file, every entry, and how many times each run landed.
pub(crate) struct Ledger<F = File> {
    /// Opened for appending: every write lands at the current end.
    file: F,
    path: PathBuf,
    /// Invariant: the file's first `durable_len` bytes are the lines of `entries`, durable.
    durable_len: u64,
    /// Why appends are refused until a restart (step 3 of the module comment), if they are.
    poisoned: Option<String>,
    entries: Vec<Entry>,
    landed: HashMap<(String, u64), u32>,
}

impl Ledger {
    /// Opens (creating if needed) the ledger in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Ledger> {
        let path = dir.join("ledger.jsonl");
        // Anything but a regular file (a FIFO would block the open forever, a device or a
        // link lead elsewhere) is refused before it is opened.
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if !meta.file_type().is_file() => bail!(
                "{} is not a regular file (a FIFO, device, directory or symbolic link)",
                path.display()
            ),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("looking at {}", path.display())),
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // The lock belongs to the open file: it goes with the process, even at kill -9.
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => bail!(
                "{} is in use by another store: one store per --data directory",
                path.display()
            ),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        let mut ledger = Ledger {
            file: file.try_clone()?,
            path: path.clone(),
            durable_len: 0,
            poisoned: None,
            entries: Vec::new(),
            landed: HashMap::new(),
        };
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        let mut number = 0;
        loop {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("reading {}", path.display()))?;
            if read == 0 {
                break;
            }
            number += 1;
            if line.last() != Some(&b'\n') {
                // The torn tail of an append that was never acknowledged (step 4).
                break;
            }
            let entry: Entry = serde_json::from_slice(&line).with_context(|| {
                format!(
                    "{} line {number} is damaged (it starts at byte {}): restore the file or \
                     move it away",
                    path.display(),
                    ledger.durable_len
                )
            })?;
            ledger.durable_len += read as u64;
            ledger.remember(entry);
        }
        let len = ledger.file.metadata()?.len();
        if len != ledger.durable_len {
            log::warn!(
                "{}: cutting a torn last line ({} bytes) that was never acknowledged",
                path.display(),
                len - ledger.durable_len
            );
            ledger
                .file
                .set_len(ledger.durable_len)
                .and_then(|()| ledger.file.sync_data())
                .with_context(|| format!("cutting the torn last line of {}", path.display()))?;
        }
        Ok(ledger)
    }
}

impl<F: LedgerFile> Ledger<F> {
    fn remember(&mut self, entry: Entry) {
        if entry.outcome.landed() {
            *self
                .landed
                .entry((entry.job.clone(), entry.run))
                .or_default() += 1;
        }
        self.entries.push(entry);
    }

    /// How many times `job`'s run `run` landed.
    pub(crate) fn landed(&self, job: &str, run: u64) -> u32 {
        // The map's key is owned; a lookup by borrowed parts would need a custom key type
        // for a ledger of a few thousand entries.
        self.landed
            .get(&(job.to_owned(), run))
            .copied()
            .unwrap_or(0)
    }

    /// Appends `entry`, durably, before anyone is told. On an error the entry is not
    /// recorded, and the file is cut back to the last recorded entry or the ledger is
    /// poisoned (steps 2 and 3 of the module comment).
    pub(crate) fn append(&mut self, entry: Entry) -> Result<()> {
        if let Some(refusal) = &self.poisoned {
            bail!("{refusal}");
        }
        let mut line = serde_json::to_string(&entry)?;
        // Step 4 tells a torn tail by its missing newline: a line must hold no other.
        assert!(!line.contains('\n'), "a ledger line holds no raw newline");
        line.push('\n');
        if let Err(e) = self.file.append(line.as_bytes()) {
            return Err(self.undo(Failed::Write, &e));
        }
        if let Err(e) = self.file.sync() {
            return Err(self.undo(Failed::Sync, &e));
        }
        self.durable_len += line.len() as u64;
        self.remember(entry);
        Ok(())
    }

    /// Undoes an append whose write or sync failed with `e`: cuts the file back to the last
    /// recorded entry, durably, and poisons the ledger if that fails, or if it was the sync
    /// that failed (a sync is never retried: step 3). Returns the append's error.
    fn undo(&mut self, failed: Failed, e: &io::Error) -> anyhow::Error {
        let path = self.path.display();
        let doing = match failed {
            Failed::Write => "writing",
            Failed::Sync => "syncing",
        };
        let cut = self
            .file
            .cut(self.durable_len)
            .and_then(|()| self.file.sync());
        let consequence = match (failed, cut) {
            (Failed::Write, Ok(())) => {
                return anyhow!(
                    "{doing} {path}: {e}; the entry was not recorded, and the file is cut back \
                     to its last recorded entry"
                );
            }
            (Failed::Sync, Ok(())) => {
                "after a failed sync the disk may not hold what this process thinks".to_owned()
            }
            (_, Err(cut)) => {
                format!("cutting the file back to its last recorded entry failed too ({cut})")
            }
        };
        self.poisoned = Some(format!(
            "{path} refuses appends since {doing} it failed ({e}); restart the store, which \
             reloads the ledger from the disk"
        ));
        anyhow!(
            "{doing} {path}: {e}; the entry was not recorded, and {consequence}: no more \
             appends until the store restarts"
        )
    }

    /// Why the ledger refuses appends until a restart, if it does.
    pub(crate) fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Runs that landed more than once.
    pub(crate) fn duplicates(&self) -> usize {
        self.landed.values().filter(|&&n| n > 1).count()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    use super::*;
    use crate::store_api::Outcome;

    fn entry(job: &str, run: u64, outcome: Outcome) -> Entry {
        Entry {
            job: job.into(),
            run,
            holder: 1,
            generation: Some(2),
            outcome,
            at_ms: 7,
        }
    }

    fn jobs<F>(ledger: &Ledger<F>) -> Vec<&str> {
        ledger.entries.iter().map(|e| e.job.as_str()).collect()
    }

    fn file_len(dir: &Path) -> u64 {
        std::fs::metadata(dir.join("ledger.jsonl")).unwrap().len()
    }

    #[test]
    fn entries_survive_reopening_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut ledger = Ledger::open(dir.path()).unwrap();
            ledger.append(entry("a", 1, Outcome::Accepted)).unwrap();
            ledger.append(entry("a", 1, Outcome::Unfenced)).unwrap();
            ledger.append(entry("b", 1, Outcome::Stale)).unwrap();
        }
        let path = dir.path().join("ledger.jsonl");
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"job\":\"c\",\"ru").unwrap();
        let mut ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(ledger.entries().len(), 3);
        assert_eq!(ledger.landed("a", 1), 2);
        assert_eq!(ledger.landed("b", 1), 0, "a stale write did not land");
        assert_eq!(ledger.duplicates(), 1);
        ledger.append(entry("c", 1, Outcome::Accepted)).unwrap();
        drop(ledger);
        let ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(
            ledger.entries().len(),
            4,
            "the torn tail is gone, the new entry kept"
        );
    }

    /// Cutting back a failed append (step 2) would destroy lines another writer had appended
    /// and acknowledged, so a second ledger on the same file is refused while one is open.
    #[test]
    fn a_second_writer_is_refused_while_the_ledger_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let e = Ledger::open(dir.path()).err().unwrap();
        assert!(
            format!("{e:#}").contains("in use by another store"),
            "{e:#}"
        );
        drop(ledger);
        Ledger::open(dir.path()).unwrap();
    }

    /// A crash (or a power loss that left zeros or garbage) tears the last line anywhere:
    /// whatever its bytes, a last line without its newline was never acknowledged.
    #[test]
    fn a_torn_tail_of_any_bytes_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path()).unwrap();
        ledger.append(entry("a", 1, Outcome::Accepted)).unwrap();
        let recorded = file_len(dir.path());
        drop(ledger);
        let path = dir.path().join("ledger.jsonl");
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"job\":\"b\xff\xfe\0\0\0").unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(jobs(&ledger), ["a"]);
        assert_eq!(
            file_len(dir.path()),
            recorded,
            "the torn tail is cut on disk"
        );
    }

    #[test]
    fn damage_before_the_end_is_an_error_not_a_silent_loss() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ledger.jsonl"), "garbage\n{}\n").unwrap();
        let e = Ledger::open(dir.path()).err().unwrap();
        assert!(format!("{e:#}").contains("line 1 is damaged"), "{e:#}");
    }

    /// What the tester found on disk: a half line from a failed append, then later appends
    /// after it. The half line is not a torn tail (lines follow it), so opening refuses.
    #[test]
    fn a_half_line_that_later_lines_follow_is_damage_named_by_line_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let whole = serde_json::to_string(&entry("a", 1, Outcome::Accepted)).unwrap();
        let file = format!("{whole}\n{}{whole}\n{whole}\n", &whole[..10]);
        std::fs::write(dir.path().join("ledger.jsonl"), file).unwrap();
        let e = Ledger::open(dir.path()).err().unwrap();
        let said = format!("{e:#}");
        let at = whole.len() + 1;
        let says = format!("line 2 is damaged (it starts at byte {at})");
        assert!(said.contains(&says), "{said}");
    }

    /// A real file that fails on cue, as a disk does: a write that stops part way, a sync
    /// that fails once (and, as Linux's page cache after a failed writeback, would report
    /// success if asked again), a cut that fails.
    struct Faulty {
        file: File,
        /// The next write puts this many bytes in the file, then fails.
        tear_write_at: Option<usize>,
        /// So many of the next syncs fail.
        failing_syncs: Cell<u32>,
        /// Cuts (ftruncate) fail.
        failing_cuts: bool,
    }

    impl LedgerFile for Faulty {
        fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
            match self.tear_write_at.take() {
                Some(at) => {
                    self.file.write_all(&bytes[..at])?;
                    Err(io::Error::from_raw_os_error(libc::ENOSPC))
                }
                None => self.file.write_all(bytes),
            }
        }

        fn sync(&self) -> io::Result<()> {
            match self.failing_syncs.get() {
                0 => self.file.sync_data(),
                n => {
                    self.failing_syncs.set(n - 1);
                    Err(io::Error::from_raw_os_error(libc::EIO))
                }
            }
        }

        fn cut(&self, len: u64) -> io::Result<()> {
            if self.failing_cuts {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            self.file.set_len(len)
        }
    }

    /// What one fault leaves behind, past the recorded entries, until the restart.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Left {
        Nothing,
        /// The first bytes of the refused line.
        Torn(u64),
        /// The whole refused line, newline and all.
        WholeLine,
    }

    struct Case {
        name: &'static str,
        tear_write_at: Option<usize>,
        failing_syncs: u32,
        failing_cuts: bool,
        says: &'static str,
        poisoned: bool,
        left: Left,
        /// The entries a restart finds.
        after_restart: &'static [&'static str],
    }

    /// The ledger never keeps a half-written entry after a failed write or sync: it cuts the
    /// file back to its last recorded entry before another append, or, when that fails or
    /// after any failed sync, refuses appends until a restart (which reloads the file). Two
    /// entries are recorded, then the append of `x` fails as each case says.
    #[test]
    fn a_failed_write_or_sync_never_leaves_a_half_entry_for_later_appends_to_follow() {
        let cases = [
            Case {
                name: "a write that fails part way is cut back, and the ledger goes on",
                tear_write_at: Some(10),
                failing_syncs: 0,
                failing_cuts: false,
                says: "the file is cut back to its last recorded entry",
                poisoned: false,
                left: Left::Nothing,
                after_restart: &["a", "b", "c"],
            },
            Case {
                name: "a write that fails part way and cannot be cut back poisons the ledger; \
                       the restart cuts the torn tail",
                tear_write_at: Some(10),
                failing_syncs: 0,
                failing_cuts: true,
                says: "cutting the file back to its last recorded entry failed too",
                poisoned: true,
                left: Left::Torn(10),
                after_restart: &["a", "b"],
            },
            Case {
                name: "a write that fails part way, whose cut cannot be synced, poisons",
                tear_write_at: Some(10),
                failing_syncs: 1,
                failing_cuts: false,
                says: "cutting the file back to its last recorded entry failed too",
                poisoned: true,
                left: Left::Nothing,
                after_restart: &["a", "b"],
            },
            Case {
                name: "a failed sync poisons, though a second sync would report success",
                tear_write_at: None,
                failing_syncs: 1,
                failing_cuts: false,
                says: "after a failed sync the disk may not hold what this process thinks",
                poisoned: true,
                left: Left::Nothing,
                after_restart: &["a", "b"],
            },
            Case {
                name: "a failed sync whose cut cannot be synced either poisons",
                tear_write_at: None,
                failing_syncs: 2,
                failing_cuts: false,
                says: "cutting the file back to its last recorded entry failed too",
                poisoned: true,
                left: Left::Nothing,
                after_restart: &["a", "b"],
            },
            // The refused entry was never acknowledged, and the caller, told of an error,
            // cannot know whether it was recorded (as after a crash between the sync and
            // the answer): finding it after the restart loses nothing acknowledged.
            Case {
                name: "a failed sync that cannot be cut back poisons; the whole refused line \
                       may come back after the restart",
                tear_write_at: None,
                failing_syncs: 1,
                failing_cuts: true,
                says: "cutting the file back to its last recorded entry failed too",
                poisoned: true,
                left: Left::WholeLine,
                after_restart: &["a", "b", "x"],
            },
        ];
        for case in cases {
            let name = case.name;
            let dir = tempfile::tempdir().unwrap();
            let mut ledger = Ledger::open(dir.path()).unwrap();
            ledger.append(entry("a", 1, Outcome::Accepted)).unwrap();
            ledger.append(entry("b", 1, Outcome::Accepted)).unwrap();
            let recorded = file_len(dir.path());
            let mut ledger = Ledger {
                file: Faulty {
                    file: ledger.file,
                    tear_write_at: case.tear_write_at,
                    failing_syncs: Cell::new(case.failing_syncs),
                    failing_cuts: case.failing_cuts,
                },
                path: ledger.path,
                durable_len: ledger.durable_len,
                poisoned: ledger.poisoned,
                entries: ledger.entries,
                landed: ledger.landed,
            };
            let line = serde_json::to_string(&entry("x", 1, Outcome::Accepted)).unwrap();

            let said = format!(
                "{:#}",
                ledger.append(entry("x", 1, Outcome::Accepted)).unwrap_err()
            );
            assert_eq!(jobs(&ledger), ["a", "b"], "{name}: not recorded");
            assert_eq!(ledger.landed("x", 1), 0, "{name}");
            assert_eq!(ledger.poisoned().is_some(), case.poisoned, "{name}");
            let left = match file_len(dir.path()) - recorded {
                0 => Left::Nothing,
                n if n == line.len() as u64 + 1 => Left::WholeLine,
                n => Left::Torn(n),
            };
            assert_eq!(left, case.left, "{name}");
            assert!(
                said.contains("the entry was not recorded"),
                "{name}: {said}"
            );
            assert!(said.contains(case.says), "{name}: {said}");

            let failed_len = file_len(dir.path());

            // The next append goes on from the last recorded entry, or is refused without
            // touching the file.
            let next = ledger.append(entry("c", 1, Outcome::Accepted));
            if case.poisoned {
                let refused = format!("{:#}", next.unwrap_err());
                assert!(
                    refused.contains("refuses appends since"),
                    "{name}: {refused}"
                );
                assert!(refused.contains("restart the store"), "{name}: {refused}");
                assert_eq!(ledger.poisoned(), Some(refused.as_str()), "{name}");
                assert_eq!(jobs(&ledger), ["a", "b"], "{name}");
                assert_eq!(
                    file_len(dir.path()),
                    failed_len,
                    "{name}: the refusal wrote"
                );
            } else {
                next.unwrap_or_else(|e| panic!("{name}: {e:#}"));
                assert_eq!(jobs(&ledger), ["a", "b", "c"], "{name}");
            }
            drop(ledger);

            // The restart reloads what the file holds: every recorded entry, no half one.
            let mut ledger = Ledger::open(dir.path())
                .unwrap_or_else(|e| panic!("{name}: the restart refused the ledger: {e:#}"));
            assert_eq!(jobs(&ledger), case.after_restart, "{name}");
            ledger.append(entry("d", 1, Outcome::Accepted)).unwrap();
            drop(ledger);
            let ledger = Ledger::open(dir.path()).unwrap();
            assert_eq!(
                ledger.entries().len(),
                case.after_restart.len() + 1,
                "{name}"
            );
        }
    }

    /// A tmpfs mounted for one test, unmounted when dropped.
    struct Tmpfs(CString);

    impl Tmpfs {
        /// Mounts a tmpfs of `size` (as mount(8) writes it: "64k") on `dir`; `None`, saying
        /// so, where this process may not mount.
        fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
            let target = CString::new(dir.as_os_str().as_bytes()).unwrap();
            let options = CString::new(format!("size={size}")).unwrap();
            // SAFETY: every argument is a NUL-terminated string that outlives the call, and
            // tmpfs reads its data argument as one.
            let mounted = unsafe {
                libc::mount(
                    c"tmpfs".as_ptr(),
                    target.as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    options.as_ptr().cast(),
                )
            };
            if mounted == 0 {
                return Some(Tmpfs(target));
            }
            let e = io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
                eprintln!(
                    "SKIPPED: mounting a tmpfs on {} is not permitted ({e}); run the tests as \
                     root to fill a real disk",
                    dir.display()
                );
                return None;
            }
            panic!("mounting a tmpfs on {}: {e}", dir.display());
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            // SAFETY: a NUL-terminated path that outlives the call.
            if unsafe { libc::umount2(self.0.as_ptr(), 0) } != 0 {
                // A file is still open there (a failed test's ledger): detach the mount now,
                // the kernel frees it when the file closes.
                // SAFETY: as above.
                unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }

    /// The tester's ENOSPC, for real: a full 64 KiB tmpfs takes what fits of an append in
    /// the last page of the ledger's file and refuses the rest. The ledger cuts that half
    /// line away, so that once the disk has room again later appends do not follow it, and a
    /// restart finds every recorded entry and nothing damaged.
    #[test]
    fn a_full_disk_leaves_no_half_entry_for_later_appends_to_follow() {
        let root = tempfile::tempdir().unwrap();
        let disk = root.path().join("disk");
        std::fs::create_dir(&disk).unwrap();
        let Some(_tmpfs) = Tmpfs::mount(&disk, "64k") else {
            return;
        };
        let mut ledger = Ledger::open(&disk).unwrap();
        let mut recorded = Vec::new();
        for job in ["before-1", "before-2", "before-3"] {
            ledger.append(entry(job, 1, Outcome::Accepted)).unwrap();
            recorded.push(job.to_owned());
        }

        let mut filler = File::create(disk.join("filler")).unwrap();
        let full = std::iter::repeat_with(|| filler.write_all(&[0; 4096]))
            .take(100)
            .find_map(Result::err)
            .expect("a 64 KiB disk fills");
        assert_eq!(full.raw_os_error(), Some(libc::ENOSPC), "{full}");

        // The ledger's last page still has room for a few lines; the append that needs a
        // new page fails.
        let (refused, recorded_len) = (0..1000)
            .find_map(|i| {
                let job = format!("while-full-{i}");
                let before = file_len(&disk);
                match ledger.append(entry(&job, 1, Outcome::Accepted)) {
                    Ok(()) => {
                        recorded.push(job);
                        None
                    }
                    Err(e) => Some((format!("{e:#}"), before)),
                }
            })
            .expect("the full disk refuses an append");
        // SAFETY: sysconf reads a constant.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
        assert_ne!(
            recorded_len % page,
            0,
            "the refused append began inside a page, so the disk took a part of it"
        );
        assert_eq!(file_len(&disk), recorded_len, "no half line is left");
        assert_eq!(ledger.poisoned(), None, "a failed write that was cut back");
        assert!(refused.contains("No space left on device"), "{refused}");
        assert!(refused.contains("the entry was not recorded"), "{refused}");
        let again = ledger.append(entry("still-full", 1, Outcome::Accepted));
        assert!(again.is_err());
        assert_eq!(file_len(&disk), recorded_len, "no half line is left");

        // The disk has room again: appends follow the last recorded entry.
        drop(filler);
        std::fs::remove_file(disk.join("filler")).unwrap();
        for job in ["after-1", "after-2"] {
            ledger.append(entry(job, 1, Outcome::Accepted)).unwrap();
            recorded.push(job.to_owned());
        }
        drop(ledger);

        let ledger =
            Ledger::open(&disk).unwrap_or_else(|e| panic!("the restart refused the ledger: {e:#}"));
        assert_eq!(jobs(&ledger), recorded);
    }
}
