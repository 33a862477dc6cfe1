//! A plugin call never crashes the calling thread, whatever its stack: unbounded recursion
//! is refused ("overflowed its stack") on a thread of 2 MiB, 128 KiB (musl's default) or
//! 64 KiB, the process lives on, and a well-behaved plugin still answers there. Before, a
//! thread with less stack than the wasm stack limit took the process down with SIGSEGV.

use fencekit::{Rejection, Validation};
use fencekit_plugins::{Plugin, PluginLimits, WasmTieBreaker, WasmValidator};

use crate::logs::{capture, captured};
use crate::support::{check, code, example, token, validator, validator_wat};

const DEEPER: &str = "(func $deeper (param i32) (result i32)
    (call $deeper (i32.add (local.get 0) (i32.const 1))))";

fn recursing_tie_breaker() -> WasmTieBreaker {
    let wat = format!(
        r#"(module
  (memory (export "memory") 1)
  {DEEPER}
  (func (export "fk_abi_version") (result i32) (i32.const 1))
  (func (export "fk_input") (result i32) (i32.const 1024))
  (func (export "fk_input_capacity") (result i32) (i32.const 1024))
  (func (export "fk_election_priority") (param $len i32) (result i64)
    (i64.extend_i32_s (call $deeper (i32.const 0))))
  (func (export "fk_resolve_conflict") (param $len i32) (result i32)
    (call $deeper (i32.const 0))))"#
    );
    let plugin = Plugin::tie_breaker(wat.as_bytes(), PluginLimits::default()).unwrap();
    WasmTieBreaker::new(plugin, Default::default()).unwrap()
}

/// Runs `f` on a thread of `stack` bytes (the default, 2 MiB, for `None`).
fn on_thread<R: Send>(stack: Option<usize>, f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| {
        let mut builder = std::thread::Builder::new();
        if let Some(stack) = stack {
            builder = builder.stack_size(stack);
        }
        builder.spawn_scoped(scope, f).unwrap().join().unwrap()
    })
}

#[test]
fn unbounded_recursion_is_refused_on_any_calling_thread() {
    let _capture = capture();
    // Loaded on this thread; called on the others (each makes its own instance).
    let recursing = validator(&validator_wat(DEEPER, "(call $deeper (i32.const 0))"));
    let fine = WasmValidator::new(
        Plugin::validator(&example("wat/allow_all.wat"), PluginLimits::default()).unwrap(),
    )
    .unwrap();
    let tie_breaker = recursing_tie_breaker();
    for stack in [None, Some(128 << 10), Some(64 << 10)] {
        let (answer, again, other, conflict, priority) = on_thread(stack, || {
            (
                check(&recursing, b"k", b"x"),
                check(&recursing, b"k", b"x"),
                check(&fine, b"k", b"x"),
                tie_breaker.try_resolve_conflict(b"k", token(5, 3), token(5, 2)),
                tie_breaker.try_election_priority(fencekit::NodeId::new(1).unwrap()),
            )
        });
        for answer in [&answer, &again] {
            let Validation::Reject(rejection) = answer else {
                panic!("{stack:?}: recursion accepted");
            };
            assert_eq!(
                rejection.code,
                Rejection::TRAPPED,
                "{stack:?}: {rejection:?}"
            );
            assert_eq!(rejection.reason, "the plugin overflowed its stack");
        }
        assert_eq!(code(&other), 0, "{stack:?}: {other:?}");
        assert_eq!((conflict, priority), (None, None), "{stack:?}");
    }
    let refusals = captured("tie-breaker plugin overflowed its stack");
    assert_eq!(refusals.len(), 6, "{refusals:?}");
}

#[test]
fn a_warm_instance_keeps_its_state_when_called_on_a_small_stack() {
    // Counts its calls in a global: a call on a small-stack thread runs its thread's warm
    // instance on a thread started for the call, and the count lives on.
    let counting = validator(&validator_wat(
        "(global $calls (mut i32) (i32.const 0))",
        "(global.set $calls (i32.add (global.get $calls) (i32.const 1))) (global.get $calls)",
    ));
    let codes = on_thread(Some(64 << 10), || {
        [0; 3].map(|_| code(&check(&counting, b"k", b"x")))
    });
    assert_eq!(codes, [1, 2, 3]);
}

#[test]
fn a_fresh_instance_is_made_on_a_small_stack() {
    // Instantiating runs wasm (the start function, the ABI probes): on a thread started for
    // it. (Loading compiles the module first, which needs more stack than 64 KiB in a debug
    // build: load plugins on an ordinary thread.)
    let plugin = validator(&validator_wat("", "(i32.const 0)"));
    let made = on_thread(Some(64 << 10), || plugin.plugin().instantiate().is_ok());
    assert!(made);
}

/// Every kind of hostile call is rejected alike on a 128 KiB thread and on a normal one, and
/// a fence without the plugin, checked from the same small thread, answers as ever.
#[test]
fn every_hostile_call_is_rejected_alike_on_a_small_stack() {
    let _capture = capture();
    let limits = PluginLimits {
        deadline: std::time::Duration::from_millis(20),
        ..PluginLimits::default()
    };
    let hostile = [
        ("an infinite loop", "(loop $l (br $l)) (i32.const 0)", ""),
        (
            "a memory bomb",
            "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) \
             (unreachable)",
            "",
        ),
        ("a trap", "(unreachable)", ""),
        (
            "unbounded recursion",
            "(drop (call $deeper (i32.const 0))) (i32.const 0)",
            DEEPER,
        ),
        (
            "a log loop",
            "(loop $l (call $log (i32.const 0) (i32.const 64)) (br $l)) (i32.const 0)",
            r#"(import "fencekit" "log" (func $log (param i32 i32)))"#,
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let other = fencekit::Fence::open(dir.path(), fencekit::FenceOptions::default()).unwrap();
    let id = other.register(b"other").unwrap();
    other.check(id, token(5, 1)).unwrap();
    for (what, body, extra) in hostile {
        let wat = validator_wat(extra, body);
        let plugin = Plugin::validator(wat.as_bytes(), limits.clone()).unwrap();
        let validator = WasmValidator::new(plugin).unwrap();
        let answers: Vec<u32> = [None, Some(128 << 10)]
            .into_iter()
            .map(|stack| {
                on_thread(stack, || {
                    let answer = code(&check(&validator, b"k", b"p"));
                    assert_eq!(
                        other.check(id, token(5, 1)).unwrap(),
                        fencekit::Verdict::Accepted,
                        "{what}: another fence stops answering"
                    );
                    answer
                })
            })
            .collect();
        assert_ne!(answers[0], 0, "{what} was accepted");
        assert_eq!(
            answers[0], answers[1],
            "{what}: another answer on a small stack"
        );
    }
}
