//! The fence and the log, each beside the baseline it must be compared with, in one run:
//! these machines are noisy, so the numbers that matter are ratios.
//!
//! `cargo bench -p fencekit-benches --bench fence`; results and goals in benches/README.md.

#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fencekit::{
    Fence, FenceOptions, RecordKind, ResourceId, Source, Token, Verdict, Wal, WalOptions,
};
use fencekit_benches::{bench_dir, settle_disk};

const KEY_16: &[u8; 16] = b"tenant-7/jobs/42";

fn token(generation: u64, holder: u64) -> Token {
    Token::from_parts(generation, holder).expect("valid token")
}

/// A fence with `n` resources, each marked with generation 1 by holder 1.
fn marked_fence(n: usize) -> (tempfile::TempDir, Fence, Vec<ResourceId>) {
    let dir = bench_dir();
    let fence = Fence::open(dir.path(), FenceOptions::default()).expect("open fence");
    let mut ids = Vec::new();
    for i in 0..n {
        let key = if i == 0 {
            KEY_16.to_vec()
        } else {
            format!("resource/{i:08}").into_bytes()
        };
        let id = fence.register(&key).expect("register");
        fence.check(id, token(1, 1)).expect("first mark");
        ids.push(id);
    }
    (dir, fence, ids)
}

fn fence_check(c: &mut Criterion) {
    let (_dir, fence, ids) = marked_fence(64);
    let current = token(1, 1);
    let mut group = c.benchmark_group("fence_check");

    // The physical limit: one atomic load and a compare.
    let atomic = AtomicU64::new(1);
    group.bench_function("atomic_baseline", |b| {
        b.iter(|| black_box(&atomic).load(Ordering::Acquire) == black_box(1u64))
    });
    group.bench_function("by_id", |b| {
        b.iter(|| fence.check(black_box(ids[0]), black_box(current)))
    });
    // What a caller that branches on the verdict pays: the check inlines into the branch and
    // the `Result` never reaches memory (`by_id` hands the whole 24-byte result to black_box).
    group.bench_function("by_id_branch", |b| {
        b.iter(|| {
            fence
                .check(black_box(ids[0]), black_box(current))
                .is_ok_and(|v| v.is_accepted())
        })
    });
    // The same two without counting accepted checks (`Fence::set_count_accepted(false)`).
    fence.set_count_accepted(false);
    group.bench_function("by_id_uncounted", |b| {
        b.iter(|| fence.check(black_box(ids[0]), black_box(current)))
    });
    group.bench_function("by_id_branch_uncounted", |b| {
        b.iter(|| {
            fence
                .check(black_box(ids[0]), black_box(current))
                .is_ok_and(|v| v.is_accepted())
        })
    });
    fence.set_count_accepted(true);
    group.bench_function("by_key", |b| {
        b.iter(|| fence.check_key(black_box(&KEY_16[..]), black_box(current)))
    });
    // Tokens of a named source: a packed mark (one of the fence's first 128 sources, a small
    // holder), and an etcd token (a 64-bit lease id as holder) that takes the wide mark.
    let named = fence
        .source_id(&Source::named("bench").expect("a source name"))
        .expect("a source id");
    fence
        .rebase(
            b"resource/00000001",
            &Source::named("bench").expect("a name"),
            "bench",
        )
        .expect("rebase");
    assert!(
        fence
            .check_from(ids[1], named, current)
            .expect("check")
            .is_accepted()
    );
    group.bench_function("from_named_source", |b| {
        b.iter(|| fence.check_from(black_box(ids[1]), black_box(named), black_box(current)))
    });
    let etcd = fence
        .source_id(&Source::etcd_cluster(0xdead_beef))
        .expect("a source id");
    let lease = Token::from_etcd(1_000_000, 0x694d_8f0a_2c11_e703).expect("an etcd token");
    fence
        .rebase(
            b"resource/00000002",
            &Source::etcd_cluster(0xdead_beef),
            "bench",
        )
        .expect("rebase");
    assert!(
        fence
            .check_from(ids[2], etcd, lease)
            .expect("check")
            .is_accepted()
    );
    group.bench_function("from_etcd_wide", |b| {
        b.iter(|| fence.check_from(black_box(ids[2]), black_box(etcd), black_box(lease)))
    });

    // The naive alternatives: a map of marks behind a lock.
    let mut map: HashMap<Vec<u8>, (u64, u64)> = HashMap::new();
    map.insert(KEY_16.to_vec(), (1, 1));
    let mutex_map = Mutex::new(map.clone());
    let rwlock_map = RwLock::new(map);
    let naive = |marks: &HashMap<Vec<u8>, (u64, u64)>, key: &[u8], t: Token| {
        marks
            .get(key)
            .is_some_and(|&(g, h)| g == t.generation.get() && h == t.holder.get())
    };
    group.bench_function("mutex_hashmap", |b| {
        b.iter(|| {
            let marks = mutex_map.lock().expect("not poisoned");
            naive(&marks, black_box(&KEY_16[..]), black_box(current))
        })
    });
    group.bench_function("rwlock_hashmap", |b| {
        b.iter(|| {
            let marks = rwlock_map.read().expect("not poisoned");
            naive(&marks, black_box(&KEY_16[..]), black_box(current))
        })
    });

    let items: Vec<(ResourceId, Token)> = (0..256).map(|i| (ids[i % ids.len()], current)).collect();
    let mut out = vec![Verdict::Accepted; items.len()];
    group.throughput(Throughput::Elements(items.len() as u64));
    group.bench_function("batch_256", |b| {
        b.iter(|| fence.check_batch(black_box(&items), &mut out))
    });
    fence.set_count_accepted(false);
    group.bench_function("batch_256_uncounted", |b| {
        b.iter(|| fence.check_batch(black_box(&items), &mut out))
    });
    fence.set_count_accepted(true);
    group.finish();
}

/// Checks per second from 1, 2, 4 and 8 threads, all on one resource or each on its own,
/// beside the same shape with a bare atomic load. One iteration is one check on every thread,
/// so criterion's rate is all threads' checks together.
fn fence_scaling(c: &mut Criterion) {
    let (_dir, fence, ids) = marked_fence(8);
    let current = token(1, 1);
    let atomic = AtomicU64::new(1);
    let mut group = c.benchmark_group("fence_scaling");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    for threads in [1usize, 2, 4, 8] {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(format!("atomic_baseline/{threads}"), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, |_| {
                    black_box(&atomic).load(Ordering::Acquire) == black_box(1u64)
                })
            })
        });
        for (shape, spread) in [("one_resource", false), ("own_resource", true)] {
            group.bench_function(format!("{shape}/{threads}"), |b| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, |t| {
                        let id = if spread { ids[t] } else { ids[0] };
                        fence
                            .check(black_box(id), black_box(current))
                            .is_ok_and(|v| v.is_accepted())
                    })
                })
            });
        }
    }
    group.finish();
}

/// Runs `check(thread)` `iters` times on each of `threads` threads started together, and
/// returns the wall time from the start to the last thread's end.
fn on_threads(threads: usize, iters: u64, check: impl Fn(usize) -> bool + Sync) -> Duration {
    let start = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (start, check) = (&start, &check);
                s.spawn(move || {
                    start.wait();
                    let mut accepted = 0u64;
                    for _ in 0..iters {
                        accepted += u64::from(check(t));
                    }
                    assert_eq!(accepted, iters, "every check is accepted");
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        for worker in workers {
            worker.join().expect("worker");
        }
        began.elapsed()
    })
}

/// One thread checks a resource while a second checks it too and a third advances it
/// (durably) as fast as it can; the same shape with a bare atomic is the baseline.
fn fence_reader_pair(c: &mut Criterion) {
    let mut group = c.benchmark_group("fence_reader_pair");
    let stop = Arc::new(AtomicBool::new(false));

    let atomic = Arc::new(AtomicU64::new(1));
    let background: Vec<_> = [true, false]
        .into_iter()
        .map(|writes| {
            let (atomic, stop) = (Arc::clone(&atomic), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if writes {
                        atomic.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(150));
                    } else {
                        black_box(atomic.load(Ordering::Acquire));
                    }
                }
            })
        })
        .collect();
    group.bench_function("atomic_baseline", |b| {
        b.iter(|| atomic.load(Ordering::Acquire) == black_box(1u64))
    });
    stop.store(true, Ordering::Relaxed);
    background
        .into_iter()
        .for_each(|t| t.join().expect("background thread"));

    let (_dir, fence, ids) = marked_fence(1);
    let fence = Arc::new(fence);
    let id = ids[0];
    let stop = Arc::new(AtomicBool::new(false));
    let latest = Arc::new(AtomicU64::new(1));
    let advancer = {
        let (fence, stop, latest) = (Arc::clone(&fence), Arc::clone(&stop), Arc::clone(&latest));
        std::thread::spawn(move || {
            let mut generation = 1;
            while !stop.load(Ordering::Relaxed) {
                generation += 1;
                fence.check(id, token(generation, 1)).expect("advance");
                latest.store(generation, Ordering::Release);
            }
        })
    };
    let other_reader = {
        let (fence, stop, latest) = (Arc::clone(&fence), Arc::clone(&stop), Arc::clone(&latest));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                black_box(
                    fence
                        .check(id, token(latest.load(Ordering::Acquire), 1))
                        .expect("check"),
                );
            }
        })
    };
    group.bench_function("check_while_advancing", |b| {
        b.iter(|| fence.check(id, token(latest.load(Ordering::Acquire), 1)))
    });
    stop.store(true, Ordering::Relaxed);
    advancer.join().expect("advancer");
    other_reader.join().expect("reader");
    group.finish();
}

fn durable(c: &mut Criterion) {
    settle_disk();
    let mut group = c.benchmark_group("durable");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(6));

    // The floor: write 128 bytes into a preallocated file and fdatasync it.
    let dir = bench_dir();
    let path = dir.path().join("raw");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("create");
    let size = 16u64 << 20;
    file.write_all_at(&vec![0u8; size as usize], 0)
        .expect("preallocate");
    file.sync_all().expect("sync");
    let block = [7u8; 128];
    let mut offset = 0u64;
    group.bench_function("raw_fdatasync", |b| {
        b.iter(|| {
            file.write_all_at(&block, offset).expect("write");
            file.sync_data().expect("fdatasync");
            offset = (offset + 128) % size;
        })
    });

    let (_fence_dir, fence, ids) = marked_fence(1);
    let mut generation = 1;
    group.bench_function("advance", |b| {
        b.iter(|| {
            generation += 1;
            fence.check(ids[0], token(generation, 1)).expect("advance")
        })
    });

    let wal_dir = bench_dir();
    let wal = Wal::open(
        wal_dir.path(),
        fencekit::wal::LogOwner::Fence,
        WalOptions::default(),
        &mut |_| Ok(()),
    )
    .expect("open log");
    let payload = [9u8; 128];
    group.bench_function("append_sync", |b| {
        b.iter(|| {
            wal.append_sync(RecordKind::FENCE_MARK, 1, &payload)
                .expect("append")
        })
    });
    group.finish();

    // Group commit: records per second with 1 and with 16 threads appending and syncing.
    let mut group = c.benchmark_group("group_commit");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(6));
    group.throughput(Throughput::Elements(1));
    for writers in [1u64, 16] {
        group.bench_function(format!("append_sync_{writers}_writers"), |b| {
            b.iter_custom(|records| {
                let per_writer = records.div_ceil(writers);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..writers {
                        s.spawn(|| {
                            for _ in 0..per_writer {
                                wal.append_sync(RecordKind::FENCE_MARK, 1, &payload)
                                    .expect("append");
                            }
                        });
                    }
                });
                // Time per record, over the records actually written.
                start
                    .elapsed()
                    .mul_f64(records as f64 / (per_writer * writers) as f64)
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    fence_check,
    fence_scaling,
    fence_reader_pair,
    durable
);
criterion_main!(benches);
