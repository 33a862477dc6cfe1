//! Policy plugins on the write path: `Fence::check_write` with no validator, with a native
//! validator, and with the same rule as a WAT plugin and as a C plugin, in one run; then what
//! an instantiation and a tie-breaker call cost.
//!
//! The C plugin is built by clang for wasm32 (Debian's `clang` and `lld`).
//! `cargo bench -p fencekit-benches --bench plugins`; results in benches/README.md.

#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use fencekit::{
    Fence, FenceOptions, NodeId, Rejection, TieBreaker, Token, Validation, WriteValidator,
};
use fencekit_benches::bench_dir;
use fencekit_plugins::{Plugin, PluginLimits, WasmTieBreaker, WasmValidator};

/// The rule of examples/wat/max_payload.wat and examples/c/max_payload.c, in Rust.
struct NativeMaxPayload;

impl WriteValidator for NativeMaxPayload {
    fn validate(&self, _: &[u8], _: Token, _: Option<Token>, payload: &[u8]) -> Validation {
        if payload.len() > 256 {
            Validation::Reject(Rejection {
                code: 1,
                reason: "payload over 256 bytes".into(),
            })
        } else {
            Validation::Accept
        }
    }
}

fn plugins_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins"))
}

fn c_plugin(name: &str) -> Vec<u8> {
    let out = tempfile::tempdir().expect("a temporary directory");
    let wasm = out.path().join(format!("{name}.wasm"));
    let status = std::process::Command::new("clang")
        .args([
            "--target=wasm32",
            "-O2",
            "-nostdlib",
            "-Wl,--no-entry",
            "-I",
        ])
        .arg(plugins_dir().join("sdk"))
        .arg("-o")
        .arg(&wasm)
        .arg(plugins_dir().join(format!("examples/c/{name}.c")))
        .status()
        .expect("run clang: install clang and lld (./test.sh does)");
    assert!(status.success(), "clang failed on {name}.c");
    std::fs::read(&wasm).expect("read the C plugin")
}

fn wasm_validator(bytes: &[u8]) -> Arc<dyn WriteValidator> {
    let plugin = Plugin::validator(bytes, PluginLimits::default()).expect("load the plugin");
    Arc::new(WasmValidator::new(plugin).expect("a validator"))
}

fn check_write(c: &mut Criterion) {
    let dir = bench_dir();
    let fence = Fence::open(dir.path(), FenceOptions::default()).expect("open fence");
    let id = fence.register(b"tenant-7/jobs/42").expect("register");
    let token = Token::from_parts(1, 1).expect("token");
    fence.check(id, token).expect("first mark");
    let payload = [7u8; 64];
    let wat = std::fs::read(plugins_dir().join("examples/wat/max_payload.wat")).expect("WAT");
    let validators: [(&str, Option<Arc<dyn WriteValidator>>); 4] = [
        ("no_validator", None),
        ("native", Some(Arc::new(NativeMaxPayload))),
        ("wat_plugin", Some(wasm_validator(&wat))),
        ("c_plugin", Some(wasm_validator(&c_plugin("max_payload")))),
    ];
    let mut group = c.benchmark_group("check_write");
    for (name, validator) in validators {
        fence.set_validator(validator);
        assert!(
            fence
                .check_write(id, token, &payload)
                .expect("check")
                .is_accepted()
        );
        group.bench_function(name, |b| {
            b.iter(|| fence.check_write(black_box(id), black_box(token), black_box(&payload)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("plugin_lifecycle");
    let plugin = Plugin::validator(&wat, PluginLimits::default()).expect("load");
    group.bench_function("instantiate", |b| b.iter(|| plugin.instantiate()));
    group.bench_function("load_wat", |b| {
        b.iter(|| Plugin::validator(black_box(&wat), PluginLimits::default()))
    });
    let zone = Plugin::tie_breaker(&c_plugin("zone_tiebreaker"), PluginLimits::default())
        .expect("load the tie-breaker");
    let node = |id| NodeId::new(id).expect("node id");
    let tie_breaker =
        WasmTieBreaker::new(zone, HashMap::from([(node(2), b"zone=a".to_vec())])).expect("tb");
    let (current, challenger) = (
        Token::from_parts(4, 3).expect("token"),
        Token::from_parts(4, 2).expect("token"),
    );
    group.bench_function("tie_breaker_resolve_conflict", |b| {
        b.iter(|| tie_breaker.resolve_conflict(black_box(b"k"), current, challenger))
    });
    group.finish();
}

criterion_group!(benches, check_write);
criterion_main!(benches);
