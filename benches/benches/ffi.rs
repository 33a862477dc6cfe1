//! The fence check across the C ABI, beside the Rust check and the bare atomic, in one run.
//!
//! The C functions are called through pointers from `dlsym` on `libfencekit.so`, which is how
//! a C program linked against the shared library calls them (through its PLT): the whole cost
//! of the crossing, the NULL checks, the token validation and the panic boundary is measured.
//! The library is the one `cargo bench --workspace` builds next to this bench; with `-p` alone,
//! build it first: `cargo build --release -p fencekit-ffi`.
//!
//! `cargo bench --workspace --bench ffi`; results in benches/README.md.

#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::ffi::c_char;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fencekit::{Fence, FenceOptions, ResourceId, Token, Verdict};
use fencekit_benches::bench_dir;

/// The header's `fk_token`, `fk_verdict` and `fk_check_item`; `layout_matches` below checks
/// them against the library's answers.
#[repr(C)]
#[derive(Copy, Clone, Default)]
struct FkToken {
    generation: u64,
    holder: u64,
}

#[repr(C)]
#[derive(Copy, Clone, Default)]
struct FkVerdict {
    kind: u32,
    reserved: u32,
    current: FkToken,
    previous: FkToken,
}

#[repr(C)]
#[derive(Copy, Clone, Default)]
struct FkCheckItem {
    resource: u32,
    reserved: u32,
    token: FkToken,
}

enum FkFence {}

const FK_STATUS_OK: u32 = 0;
const FK_VERDICT_ACCEPTED: u32 = 1;
const BATCH: usize = 256;
const RESOURCES: usize = 64;

type Open = unsafe extern "C" fn(*const c_char, usize, *const u8, *mut *mut FkFence) -> u32;
type Register = unsafe extern "C" fn(*const FkFence, *const u8, usize, *mut u32) -> u32;
type Check = unsafe extern "C" fn(*const FkFence, u32, FkToken, *mut FkVerdict) -> u32;
type CheckBatch =
    unsafe extern "C" fn(*const FkFence, *const FkCheckItem, *mut FkVerdict, usize) -> u32;
type Free = unsafe extern "C" fn(*mut FkFence);
type SetCountAccepted = unsafe extern "C" fn(*const FkFence, bool) -> u32;

struct Library {
    _lib: libloading::Library,
    open: Open,
    register: Register,
    check: Check,
    check_batch: CheckBatch,
    set_count_accepted: SetCountAccepted,
    free: Free,
}

fn library_path() -> PathBuf {
    // This bench runs from <target>/release/deps/; the library is in <target>/release/.
    let exe = std::env::current_exe().expect("the bench's own path");
    let release = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/release");
    release.join("libfencekit.so")
}

fn load() -> Library {
    let path = library_path();
    // SAFETY: libfencekit.so runs no initialisers with preconditions; the symbols below are
    // declared with the signatures of ffi/include/fencekit.h.
    unsafe {
        let lib = libloading::Library::new(&path).unwrap_or_else(|e| {
            panic!(
                "load {}: {e}; build it with `cargo build --release -p fencekit-ffi`",
                path.display()
            )
        });
        let open = *lib.get::<Open>(b"fk_fence_open").expect("fk_fence_open");
        let register = *lib
            .get::<Register>(b"fk_fence_register")
            .expect("fk_fence_register");
        let check = *lib.get::<Check>(b"fk_fence_check").expect("fk_fence_check");
        let check_batch = *lib
            .get::<CheckBatch>(b"fk_fence_check_batch")
            .expect("fk_fence_check_batch");
        let set_count_accepted = *lib
            .get::<SetCountAccepted>(b"fk_fence_set_count_accepted")
            .expect("fk_fence_set_count_accepted");
        let free = *lib.get::<Free>(b"fk_fence_free").expect("fk_fence_free");
        Library {
            _lib: lib,
            open,
            register,
            check,
            check_batch,
            set_count_accepted,
            free,
        }
    }
}

fn fence_check_across_the_abi(c: &mut Criterion) {
    let lib = load();
    let current = FkToken {
        generation: 1,
        holder: 1,
    };

    // The C side: a fence opened through the ABI, RESOURCES resources marked (1, 1).
    let c_dir = bench_dir();
    let path = c_dir.path().to_str().expect("UTF-8 temp dir");
    let mut c_fence = std::ptr::null_mut();
    // SAFETY: a valid path, NULL options, a valid out-pointer.
    let status = unsafe {
        (lib.open)(
            path.as_ptr().cast(),
            path.len(),
            std::ptr::null(),
            &mut c_fence,
        )
    };
    assert_eq!(status, FK_STATUS_OK, "fk_fence_open");
    let mut c_ids = Vec::new();
    for i in 0..RESOURCES {
        let key = format!("resource/{i:08}");
        let mut id = 0;
        let mut verdict = FkVerdict::default();
        // SAFETY: a live fence, a valid key and out-pointers.
        unsafe {
            assert_eq!(
                (lib.register)(c_fence, key.as_ptr(), key.len(), &mut id),
                FK_STATUS_OK
            );
            assert_eq!(
                (lib.check)(c_fence, id, current, &mut verdict),
                FK_STATUS_OK
            );
            assert_eq!(
                (lib.check)(c_fence, id, current, &mut verdict),
                FK_STATUS_OK
            );
        }
        assert_eq!(
            verdict.kind, FK_VERDICT_ACCEPTED,
            "the header's layout matches"
        );
        assert_eq!(verdict.current.generation, 1, "the header's layout matches");
        c_ids.push(id);
    }

    // The Rust side: the same fence, called directly.
    let rust_dir = bench_dir();
    let fence = Fence::open(rust_dir.path(), FenceOptions::default()).expect("open fence");
    let token = Token::from_parts(1, 1).expect("valid token");
    let mut rust_ids = Vec::new();
    for i in 0..RESOURCES {
        let id = fence
            .register(format!("resource/{i:08}").as_bytes())
            .expect("register");
        fence.check(id, token).expect("mark");
        rust_ids.push(id);
    }

    let mut group = c.benchmark_group("ffi_check");
    let atomic = AtomicU64::new(1);
    group.bench_function("atomic_baseline", |b| {
        b.iter(|| black_box(&atomic).load(Ordering::Acquire) == black_box(1u64))
    });
    group.bench_function("rust_check", |b| {
        b.iter(|| fence.check(black_box(rust_ids[0]), black_box(token)))
    });
    let mut verdict = FkVerdict::default();
    // Without counting accepted checks, the shared library's check reaches no thread-local
    // (which costs it a `__tls_get_addr` call). Counting is left on for the batches.
    for (name, counting) in [
        ("fk_fence_check_uncounted", false),
        ("fk_fence_check", true),
    ] {
        // SAFETY: a live fence.
        let status = unsafe { (lib.set_count_accepted)(c_fence, counting) };
        assert_eq!(status, FK_STATUS_OK);
        group.bench_function(name, |b| {
            b.iter(|| {
                // SAFETY: a live fence and a valid out-pointer.
                unsafe {
                    (lib.check)(
                        black_box(c_fence),
                        black_box(c_ids[0]),
                        black_box(current),
                        &mut verdict,
                    )
                }
            })
        });
    }

    group.throughput(Throughput::Elements(BATCH as u64));
    let rust_items: Vec<(ResourceId, Token)> = (0..BATCH)
        .map(|i| (rust_ids[i % RESOURCES], token))
        .collect();
    let mut rust_out = vec![Verdict::Accepted; BATCH];
    group.bench_function("rust_check_batch_256", |b| {
        b.iter(|| fence.check_batch(black_box(&rust_items), &mut rust_out))
    });
    let c_items: Vec<FkCheckItem> = (0..BATCH)
        .map(|i| FkCheckItem {
            resource: c_ids[i % RESOURCES],
            reserved: 0,
            token: current,
        })
        .collect();
    let mut c_out = vec![FkVerdict::default(); BATCH];
    group.bench_function("fk_fence_check_batch_256", |b| {
        b.iter(|| {
            // SAFETY: BATCH readable items, room for BATCH verdicts.
            unsafe {
                (lib.check_batch)(
                    black_box(c_fence),
                    c_items.as_ptr(),
                    c_out.as_mut_ptr(),
                    BATCH,
                )
            }
        })
    });
    group.finish();
    assert!(c_out.iter().all(|v| v.kind == FK_VERDICT_ACCEPTED));
    // SAFETY: freed once, after its last use.
    unsafe { (lib.free)(c_fence) };
}

criterion_group!(benches, fence_check_across_the_abi);
criterion_main!(benches);
