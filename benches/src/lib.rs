//! Helpers for fencekit's criterion benches (see `benches/README.md`).

use std::time::Duration;

/// A temporary directory for a bench's files, under `FENCEKIT_BENCH_DIR` if set (to measure
/// a particular file system), else under the system's temporary directory.
pub fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("FENCEKIT_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("create a bench directory")
}

/// Flushes other dirty pages before an I/O bench: fdatasync measured while a build is
/// writing back is many times slower and says nothing about fencekit.
pub fn settle_disk() {
    // A missing `sync` binary only makes the numbers noisier; the bench still runs.
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(Duration::from_millis(500));
}

/// Whether criterion was started with `--test` (as the test command does: every bench runs
/// once), so that a bench can shrink its setup to something a CI machine's disk and time allow.
pub fn smoke_run() -> bool {
    std::env::args().any(|a| a == "--test")
}
