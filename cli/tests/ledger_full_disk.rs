//! `fencekit store` on a disk that fills up, for real: the store's ledger (SQLite, WAL)
//! acknowledges nothing it did not record, refuses every later completion after a failed
//! commit (and says so on /healthz) until it restarts, and starts again after the disk is
//! freed with every acknowledged entry.
//!
//! Two real disks, each mounted for one test (root only; skipped, saying so, where this
//! process may not mount):
//! - a small tmpfs, full: write(2) of the WAL's frames fails with ENOSPC;
//! - ext4 on a loop device whose backing file lies on a full tmpfs: write(2) succeeds into
//!   the page cache and fsync(2) fails, as on a thin-provisioned or network disk.

mod common;

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, FENCEKIT, free_port, get, post};

/// A filesystem mounted for one test, unmounted when dropped.
struct Mount(CString);

impl Mount {
    /// Mounts `source` (of type `fstype`, with `options`) on `target`; `None`, saying so,
    /// where this process may not mount.
    fn new(source: &str, target: &Path, fstype: &str, options: &str) -> Option<Mount> {
        let c = |s: &[u8]| CString::new(s).expect("no NUL in a mount argument");
        let (source, target_c) = (c(source.as_bytes()), c(target.as_os_str().as_bytes()));
        let (fstype, options) = (c(fstype.as_bytes()), c(options.as_bytes()));
        // SAFETY: every argument is a NUL-terminated string that outlives the call, and both
        // filesystems used here read their data argument as one.
        let mounted = unsafe {
            libc::mount(
                source.as_ptr(),
                target_c.as_ptr(),
                fstype.as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if mounted == 0 {
            return Some(Mount(target_c));
        }
        let e = io::Error::last_os_error();
        if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
            eprintln!(
                "SKIPPED: mounting on {} is not permitted ({e}); run the tests as root to fill \
                 a real disk",
                target.display()
            );
            return None;
        }
        panic!("mounting {source:?} on {}: {e}", target.display());
    }

    /// A tmpfs of `size` ("1m") on `dir`, created.
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).expect("a directory to mount on");
        Mount::new("tmpfs", dir, "tmpfs", &format!("size={size}"))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // SAFETY: a NUL-terminated path that outlives the call.
        if unsafe { libc::umount2(self.0.as_ptr(), 0) } != 0 {
            // A file is still open there (a failing test's process): detach the mount now,
            // the kernel frees it when the file closes.
            // SAFETY: as above.
            unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// A loop device over a file, detached when dropped.
struct Loop(String);

impl Loop {
    /// `None`, saying so, where there is no losetup or no free loop device.
    fn attach(file: &Path) -> Option<Loop> {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output();
        match out {
            Ok(out) if out.status.success() => {
                Some(Loop(String::from_utf8_lossy(&out.stdout).trim().to_owned()))
            }
            Ok(out) => {
                let said = String::from_utf8_lossy(&out.stderr);
                eprintln!("SKIPPED: losetup could not attach a loop device: {said}");
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: no losetup ({e})");
                None
            }
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["--detach", &self.0]).status();
    }
}

/// Fills the filesystem holding `dir` with a file `dir/filler`, to ENOSPC.
fn fill(dir: &Path) {
    let mut filler = File::create(dir.join("filler")).expect("a filler file");
    let full = std::iter::repeat_with(|| filler.write_all(&[0; 65536]))
        .take(1 << 16)
        .find_map(Result::err)
        .expect("the disk fills");
    assert_eq!(full.raw_os_error(), Some(libc::ENOSPC), "{full}");
}

/// A running store, or what it said when it exited instead of coming up.
fn start_store(data: &Path, log: &Path) -> Result<(Daemon, String), String> {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(FENCEKIT)
        .args(["store", "--data"])
        .arg(data)
        .args(["--listen", &addr, "--insecure"])
        .stdout(Stdio::null())
        .stderr(File::create(log).expect("the store's log file"))
        .spawn()
        .expect("spawn fencekit store");
    let mut store = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = store.0.try_wait().expect("the store's status") {
            let said = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("the store exited ({status}): {said}"));
        }
        let url = format!("http://{addr}/healthz");
        if ureq::get(&url).call().is_ok() {
            return Ok((store, addr));
        }
        assert!(Instant::now() < deadline, "the store did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Completes `job` run 1 under generation 1: the status and the body.
fn complete(addr: &str, job: &str) -> (u16, String) {
    post(
        addr,
        &format!("/complete?job={job}&run=1&holder=1&generation=1"),
    )
}

/// The jobs in the store's ledger, in order.
fn ledger_jobs(addr: &str) -> Vec<String> {
    let (_, body) = get(addr, "/ledger");
    let ledger: serde_json::Value = serde_json::from_str(&body).expect("/ledger is JSON");
    let entries = ledger["entries"].as_array().expect("/ledger has entries");
    entries
        .iter()
        .map(|e| {
            e["job"]
                .as_str()
                .expect("an entry names its job")
                .to_owned()
        })
        .collect()
}

/// The tester's report on the JSON-lines ledger, replayed: one ENOSPC while appending,
/// later runs acknowledged, and the restarted store refusing its own ledger ("line 46 is
/// damaged"). Now the full disk fails the commit of the completion that did not fit, which
/// is answered with an error; the store refuses every later one and /healthz says why; and
/// a restart (after kill -9) on the freed disk finds exactly the acknowledged entries and
/// goes on.
#[test]
fn a_store_whose_disk_filled_starts_again_with_every_acknowledged_entry() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    // Room for the fence's log (a 16 MiB segment, written when the store opens) and a little.
    let Some(_disk) = Mount::tmpfs(&data, "24m") else {
        return;
    };
    let log = root.path().join("store.log");
    let (store, addr) = start_store(&data, &log).unwrap();
    let mut acknowledged = Vec::new();
    for job in ["before-1", "before-2"] {
        assert_eq!(complete(&addr, job).0, 200);
        acknowledged.push(job.to_owned());
    }

    fill(&data);
    let refused = (0..1000)
        .find_map(|i| {
            let job = format!("while-full-{i}");
            match complete(&addr, &job) {
                (200, _) => {
                    acknowledged.push(job);
                    None
                }
                (code, body) => Some((code, body)),
            }
        })
        .expect("the full disk refuses a completion");
    assert_eq!(refused.0, 500, "{}", refused.1);
    // SQLite's word for ENOSPC (it records no system error for a full disk).
    assert!(
        refused.1.contains("database or disk is full"),
        "{}",
        refused.1
    );
    assert!(refused.1.contains("not recorded"), "{}", refused.1);
    let (code, body) = get(&addr, "/healthz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("restart the store"), "{body}");

    // Room again: the ledger still refuses (a failed commit is never retried) until restarted.
    std::fs::remove_file(data.join("filler")).unwrap();
    let (code, body) = complete(&addr, "after-freeing");
    assert_eq!(
        code, 503,
        "a poisoned ledger is unavailable until a restart: {body}"
    );
    assert!(
        body.contains("refuses new entries since committing to it failed"),
        "{body}"
    );
    assert_eq!(ledger_jobs(&addr), acknowledged, "nothing refused is shown");
    drop(store);

    let (_store, addr) = start_store(&data, &log).unwrap();
    assert_eq!(ledger_jobs(&addr), acknowledged);
    for job in ["after-1", "after-2"] {
        let (code, body) = complete(&addr, job);
        assert_eq!(code, 200, "{body}");
        acknowledged.push(job.to_owned());
    }
    assert_eq!(get(&addr, "/healthz").0, 200);
    assert_eq!(ledger_jobs(&addr), acknowledged);
}

/// After a failed fdatasync the page cache no longer tells what the disk holds, and a
/// second sync may report success for bytes that never reached it ("fsyncgate"). So the
/// store refuses every later completion, and says so on /healthz, until it restarts; the
/// restart, once the disk has room, finds exactly the acknowledged entries and goes on.
#[test]
fn a_store_whose_sync_failed_refuses_completions_until_restarted() {
    let root = tempfile::tempdir().unwrap();
    let backing = root.path().join("backing");
    let data = root.path().join("data");
    let Some(_backing) = Mount::tmpfs(&backing, "48m") else {
        return;
    };
    // A sparse 128 MiB image on a 48 MiB tmpfs: ext4 (with the fence's 16 MiB log segment)
    // believes it has room long after the tmpfs under it is full.
    let image = backing.join("ext4.img");
    File::create(&image).unwrap().set_len(128 << 20).unwrap();
    match Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&image)
        .status()
    {
        Ok(status) => assert!(status.success(), "mkfs.ext4: {status}"),
        Err(e) => {
            eprintln!("SKIPPED: no mkfs.ext4 ({e})");
            return;
        }
    }
    let Some(device) = Loop::attach(&image) else {
        return;
    };
    std::fs::create_dir_all(&data).unwrap();
    let mount_ext4 = || Mount::new(&device.0, &data, "ext4", "").expect("mount ext4");
    let disk = mount_ext4();
    let log = root.path().join("store.log");
    let (store, addr) = start_store(&data, &log).unwrap();
    let mut acknowledged = Vec::new();
    for job in ["before-1", "before-2"] {
        assert_eq!(complete(&addr, job).0, 200);
        acknowledged.push(job.to_owned());
    }

    fill(&backing);
    // Commits go on into blocks the image already has; the sync of the first one that needs
    // a new block (of the WAL or of ext4's journal) fails.
    let (code, body, refused) = (0..5000)
        .find_map(|i| {
            let job = format!("while-full-{i}");
            match complete(&addr, &job) {
                (200, _) => {
                    acknowledged.push(job);
                    None
                }
                (code, body) => Some((code, body, job)),
            }
        })
        .expect("a sync fails on the full disk");
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("syncing"), "{body}");
    assert!(body.contains("not recorded"), "{body}");
    let (code, body) = complete(&addr, "after-the-failed-sync");
    assert_eq!(
        code, 503,
        "a poisoned ledger is unavailable until a restart: {body}"
    );
    assert!(
        body.contains("refuses new entries since committing to it failed"),
        "{body}"
    );
    assert!(body.contains("syncing"), "{body}");
    assert!(body.contains("restart the store"), "{body}");
    let (code, body) = get(&addr, "/healthz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("restart the store"), "{body}");
    assert_eq!(ledger_jobs(&addr), acknowledged, "nothing refused is shown");
    drop(store);

    // The operator frees the disk and restarts the store.
    drop(disk);
    std::fs::remove_file(backing.join("filler")).unwrap();
    let _disk = mount_ext4();
    let (_store, addr) = start_store(&data, &log).unwrap();
    let found = ledger_jobs(&addr);
    // The refused entry may come back if its WAL frames reached the disk whole: it was
    // never acknowledged, so that loses nothing. Every acknowledged entry is there, in order.
    let mut with_refused = acknowledged.clone();
    with_refused.push(refused);
    assert!(found == acknowledged || found == with_refused, "{found:?}");
    assert_eq!(complete(&addr, "after-the-restart").0, 200);
}
