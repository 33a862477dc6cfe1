//! Opening a large log beside reading its files: what verifying identity, continuity and every
//! record costs on top of the I/O that no recovery can avoid.
//!
//! `cargo bench -p fencekit-benches --bench wal`; `FENCEKIT_WAL_OPEN_MIB` sets the log's size
//! (default 1024). Results in benches/README.md.

#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use fencekit::wal::LogOwner;
use fencekit::{RecordKind, Wal, WalOptions};
use fencekit_benches::{bench_dir, settle_disk, smoke_run};

/// Appends records of 4 KiB until the log holds `bytes`, syncing every 256 records.
fn fill(dir: &std::path::Path, bytes: u64) {
    let wal =
        Wal::open(dir, LogOwner::Fence, WalOptions::default(), &mut |_| Ok(())).expect("open log");
    let payload = vec![0x5Au8; 4096];
    let mut written = 0u64;
    let mut generation = 0u64;
    while written < bytes {
        for _ in 0..256 {
            generation += 1;
            wal.append(RecordKind::FENCE_MARK, generation, &payload)
                .expect("append");
        }
        wal.sync().expect("sync");
        written += 256 * (4096 + 32);
    }
}

fn open(c: &mut Criterion) {
    let mib: u64 = std::env::var("FENCEKIT_WAL_OPEN_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        // A smoke run only checks that the bench works: a GiB would not fit every CI disk.
        .unwrap_or(if smoke_run() { 8 } else { 1024 });
    let dir = bench_dir();
    fill(dir.path(), mib << 20);
    settle_disk();
    let mut group = c.benchmark_group(format!("wal_open_{mib}mib"));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));

    // The baseline: read every file of the log, as any recovery must.
    group.bench_function("read_files", |b| {
        b.iter_custom(|iterations| {
            let start = Instant::now();
            for _ in 0..iterations {
                for entry in std::fs::read_dir(dir.path()).expect("list") {
                    let data = std::fs::read(entry.expect("entry").path()).expect("read");
                    black_box(data.len());
                }
            }
            start.elapsed()
        })
    });
    group.bench_function("open", |b| {
        b.iter_custom(|iterations| {
            let start = Instant::now();
            for _ in 0..iterations {
                let mut records = 0u64;
                let wal = Wal::open(
                    dir.path(),
                    LogOwner::Fence,
                    WalOptions::default(),
                    &mut |_| {
                        records += 1;
                        Ok(())
                    },
                )
                .expect("open");
                black_box((records, wal.live_bytes()));
            }
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, open);
criterion_main!(benches);
