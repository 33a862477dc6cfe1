//! Freed means freed: a plugin's instances on every thread that called it are released when
//! the plugin is dropped, not when each of those threads next calls some plugin (a thread
//! that never does kept them for good: loading, attaching and freeing a plugin 20 times left
//! 336 MiB resident). Its own test binary, so that no other test moves the resident memory.

#![allow(
    clippy::unwrap_used,
    reason = "a test that meets an error should stop right there"
)]

use std::sync::mpsc;

use fencekit::{Token, Validation, WriteValidator};
use fencekit_plugins::{Plugin, PluginLimits, WasmValidator};

/// A validator whose every call writes 8 MiB of its memory: each thread's instance holds
/// that much resident.
const TOUCHES_8_MIB: &str = r#"(module
  (memory (export "memory") 129)
  (func (export "fk_abi_version") (result i32) (i32.const 1))
  (func (export "fk_input") (result i32) (i32.const 4096))
  (func (export "fk_input_capacity") (result i32) (i32.const 61440))
  (func (export "fk_validate") (param $len i32) (result i32)
    (memory.fill (i32.const 65536) (i32.const 7) (i32.const 8388608))
    (i32.const 0)))"#;

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_freed_plugins_instances_are_released_on_every_thread() {
    let limits = PluginLimits {
        memory_bytes_max: 16 << 20,
        ..PluginLimits::default()
    };
    // Eight threads that call each round's plugin once, then wait for the next round without
    // calling anything else.
    let (done_tx, done) = mpsc::channel::<()>();
    let workers: Vec<mpsc::Sender<WasmValidator>> = (0..8)
        .map(|_| {
            let (tx, rx) = mpsc::channel::<WasmValidator>();
            let done = done_tx.clone();
            std::thread::spawn(move || {
                let token = Token::from_parts(3, 1).unwrap();
                for validator in rx {
                    let answer = validator.validate(b"k", token, None, b"p");
                    assert_eq!(answer, Validation::Accept);
                    drop(validator);
                    done.send(()).unwrap();
                }
            });
            tx
        })
        .collect();
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let plugin = Plugin::validator(TOUCHES_8_MIB.as_bytes(), limits.clone()).unwrap();
        let validator = WasmValidator::new(plugin).unwrap();
        for worker in &workers {
            worker.send(validator.clone()).unwrap();
        }
        for _ in &workers {
            done.recv().unwrap();
        }
        let live = resident_kib();
        drop(validator);
        rounds.push((live, resident_kib()));
    }
    // While the plugin lives, its eight instances hold 64 MiB; dropping it releases them at
    // once, though none of their threads calls anything again.
    for &(live, freed) in &rounds[1..] {
        assert!(
            freed + 48 * 1024 < live,
            "resident memory (KiB) with the plugin and after dropping it: {rounds:?}"
        );
    }
    drop(workers);
}
