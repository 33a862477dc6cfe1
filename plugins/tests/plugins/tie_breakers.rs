//! Tie-breaker plugins: deterministic answers, fail-closed defaults.

use std::collections::HashMap;
use std::time::Duration;

use fencekit::{ConflictResolution, NodeId, TieBreaker};
use fencekit_plugins::{Plugin, PluginLimits, WasmTieBreaker};

use crate::support::token;

/// Prefers the challenger when its holder is lower; priority is 100 minus the node id, plus
/// 1000 when the descriptor starts with 'A'.
const LOWEST_WINS: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "fk_abi_version") (result i32) (i32.const 1))
  (func (export "fk_input") (result i32) (i32.const 1024))
  (func (export "fk_input_capacity") (result i32) (i32.const 1024))
  (func (export "fk_election_priority") (param $len i32) (result i64)
    (i64.add
      (i64.sub (i64.const 100) (i64.load offset=8 (i32.const 1024)))
      (if (result i64) (i32.and (i32.gt_u (local.get $len) (i32.const 16))
                                (i32.eq (i32.load8_u offset=16 (i32.const 1024)) (i32.const 65)))
        (then (i64.const 1000)) (else (i64.const 0)))))
  (func (export "fk_resolve_conflict") (param $len i32) (result i32)
    ;; current.holder at 16, challenger.holder at 32
    (i64.lt_u (i64.load offset=32 (i32.const 1024)) (i64.load offset=16 (i32.const 1024)))))"#;

fn node(id: u64) -> NodeId {
    NodeId::new(id).unwrap()
}

#[test]
fn a_tie_breaker_plugin_decides_conflicts_and_priorities() {
    let plugin = Plugin::tie_breaker(LOWEST_WINS.as_bytes(), PluginLimits::default()).unwrap();
    let descriptors = HashMap::from([(node(7), b"A-zone".to_vec()), (node(2), b"B".to_vec())]);
    let tb = WasmTieBreaker::new(plugin, descriptors).unwrap();
    assert_eq!(
        tb.resolve_conflict(b"k", token(5, 3), token(5, 2)),
        ConflictResolution::Challenger
    );
    assert_eq!(
        tb.resolve_conflict(b"k", token(5, 2), token(5, 3)),
        ConflictResolution::KeepCurrent
    );
    assert_eq!(tb.election_priority(node(7)), 1093);
    assert_eq!(tb.election_priority(node(2)), 98);
    assert_eq!(
        tb.election_priority(node(9)),
        91,
        "no descriptor: an empty one"
    );
}

#[test]
fn a_tie_breaker_out_of_fuel_keeps_the_current_holder() {
    let looping = LOWEST_WINS.replace(
        "(i64.lt_u (i64.load offset=32 (i32.const 1024)) (i64.load offset=16 (i32.const 1024)))))",
        "(loop $forever (br $forever)) (i32.const 1)))",
    );
    let limits = PluginLimits {
        fuel: 100_000,
        // A validator's deadline does not apply: fuel stops it, the same on every replica.
        deadline: Duration::from_secs(3600),
        ..PluginLimits::default()
    };
    let tb = WasmTieBreaker::new(
        Plugin::tie_breaker(looping.as_bytes(), limits).unwrap(),
        HashMap::new(),
    )
    .unwrap();
    assert_eq!(
        tb.try_resolve_conflict(b"k", token(5, 3), token(5, 2)),
        None
    );
    assert_eq!(
        tb.resolve_conflict(b"k", token(5, 3), token(5, 2)),
        ConflictResolution::KeepCurrent
    );
}

#[test]
fn every_call_starts_from_the_same_state() {
    // Counts calls in a global: with a fresh instance per call the answer never changes.
    let counting = LOWEST_WINS.replace(
        "(func (export \"fk_resolve_conflict\") (param $len i32) (result i32)",
        "(global $n (mut i32) (i32.const 0))
         (func (export \"fk_resolve_conflict\") (param $len i32) (result i32)
           (global.set $n (i32.add (global.get $n) (i32.const 1)))
           (if (i32.gt_u (global.get $n) (i32.const 1)) (then (return (i32.const 1))))",
    );
    let tb = WasmTieBreaker::new(
        Plugin::tie_breaker(counting.as_bytes(), PluginLimits::default()).unwrap(),
        HashMap::new(),
    )
    .unwrap();
    for _ in 0..5 {
        assert_eq!(
            tb.resolve_conflict(b"k", token(5, 2), token(5, 3)),
            ConflictResolution::KeepCurrent
        );
    }
}
