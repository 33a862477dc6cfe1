//! A full disk during append: the append fails, nothing acknowledged before it is lost, and
//! the log opens again. The disk is a real, tiny tmpfs (the tests run as root on our machines
//! and in CI).

use std::path::{Path, PathBuf};
use std::process::Command;

use fencekit::{Fence, FenceFault, FenceOptions, LogError, Token, Verdict};

use crate::support::small_wal;

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .ok()?;
        status.success().then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_append_and_loses_nothing_acknowledged() {
    let mount_point = tempfile::tempdir().unwrap();
    let Some(_disk) = Tmpfs::mount(mount_point.path(), "256k") else {
        // Mounting needs root (as in CI). Say so loudly rather than pass in silence.
        eprintln!("SKIPPED a_full_disk_fails_the_append: cannot mount a tmpfs here");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount a tmpfs for the full-disk test"
        );
        return;
    };
    let options = FenceOptions {
        max_resources: 8192,
        compact_after_bytes: 1 << 30,
        wal: small_wal(),
        ..FenceOptions::default()
    };
    let dir = mount_point.path().join("fence");
    let mut acked = Vec::new();
    let failed_key;
    {
        let fence = Fence::open(&dir, options.clone()).unwrap();
        let token = Token::from_parts(1, 1).unwrap();
        let mut i = 0;
        failed_key = loop {
            let key = format!("job/{i:06}");
            match fence.check_key(key.as_bytes(), token) {
                Ok(verdict) => {
                    assert!(matches!(verdict, Verdict::Advanced { .. }));
                    acked.push(key);
                }
                Err(err) => {
                    assert!(
                        matches!(err.fault(), FenceFault::Log(LogError::Io { .. })),
                        "{err}"
                    );
                    assert!(err.to_string().contains("space"), "{err}");
                    break key;
                }
            }
            i += 1;
            assert!(i < 100_000, "the disk never filled");
        };
        // The log refuses further writes until reopened, and says why.
        let err = fence.check_key(b"another", token).unwrap_err();
        assert!(err.to_string().contains("reopen"), "{err}");
        // Fail closed (I7): even the hot path refuses the current token from now on, since a
        // fence that cannot advance may no longer own its marks (reopen to go on).
        let first = fence.lookup(acked[0].as_bytes()).unwrap();
        let err = fence.check(first, token).unwrap_err();
        assert!(
            matches!(err.fault(), FenceFault::Log(LogError::Poisoned(_))),
            "{err}"
        );
    }
    assert!(
        acked.len() > 1000,
        "only {} advances before the disk filled",
        acked.len()
    );
    let fence = Fence::open(&dir, options).unwrap();
    for key in &acked {
        let id = fence
            .lookup(key.as_bytes())
            .unwrap_or_else(|| panic!("{key} lost"));
        assert!(fence.mark(id).unwrap().is_some());
    }
    assert!(
        fence.lookup(failed_key.as_bytes()).is_none(),
        "the failed advance left no mark"
    );
}
