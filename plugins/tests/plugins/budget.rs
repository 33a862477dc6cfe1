//! One budget per call: one deadline (validators) or one tank of fuel (tie-breakers) covers a
//! whole call, a fresh instance's start function and ABI probes included; a tie-breaker's
//! memory, all of it given on every call, is within the limit.

use std::time::{Duration, Instant};

use fencekit::NodeId;
use fencekit_plugins::{Plugin, PluginError, PluginLimits, WasmTieBreaker};

use crate::support::validator_wat;

/// A tie-breaker whose start function and `fk_election_priority` each count to `n`, and whose
/// memory is `pages` pages.
fn counting_tie_breaker(n: u32, pages: u32) -> String {
    format!(
        r#"(module
  (memory (export "memory") {pages})
  (func $count (local $i i32)
    (loop $again
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const {n})))))
  (start $count)
  (func (export "fk_abi_version") (result i32) (i32.const 1))
  (func (export "fk_input") (result i32) (i32.const 1024))
  (func (export "fk_input_capacity") (result i32) (i32.const 1024))
  (func (export "fk_election_priority") (param $len i32) (result i64) (call $count) (i64.const 7))
  (func (export "fk_resolve_conflict") (param $len i32) (result i32) (i32.const 0)))"#
    )
}

#[test]
fn a_tie_breakers_start_function_spends_from_its_calls_fuel() {
    // Counting to 100,000 costs about 500,000 fuel: the start function alone fits in
    // 1,000,000 (it loads), start and call together do not.
    let priority = |fuel| {
        let limits = PluginLimits {
            fuel,
            ..PluginLimits::default()
        };
        let plugin =
            Plugin::tie_breaker(counting_tie_breaker(100_000, 1).as_bytes(), limits).unwrap();
        let tb = WasmTieBreaker::new(plugin, Default::default()).unwrap();
        tb.try_election_priority(NodeId::new(1).unwrap())
    };
    assert_eq!(priority(1_000_000), None, "one tank for start and call");
    assert_eq!(priority(2_000_000), Some(7), "enough for both");
}

#[test]
fn a_tie_breaker_declaring_more_memory_than_the_limit_is_refused_at_load() {
    // 65,536 pages: 4 GiB, all of it given to every call.
    let error = Plugin::tie_breaker(
        counting_tie_breaker(1, 65_536).as_bytes(),
        PluginLimits::default(),
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, PluginError::Instantiate(_)), "{message}");
    assert!(
        message.contains("4294967296 bytes") && message.contains("16777216"),
        "{message}"
    );
    // Exactly the limit loads.
    let limits = PluginLimits {
        memory_bytes_max: 4 << 20,
        ..PluginLimits::default()
    };
    assert!(Plugin::tie_breaker(counting_tie_breaker(1, 64).as_bytes(), limits.clone()).is_ok());
    assert!(Plugin::tie_breaker(counting_tie_breaker(1, 65).as_bytes(), limits).is_err());
}

/// Spins `n` iterations in `fk_validate` (n from the payload's first 4 bytes) and in every
/// probe and the start function (n from a constant).
fn spinning_validator(n: u32) -> String {
    validator_wat(
        &format!(
            "(func $spin (param $n i32) (local $i i32)
               (loop $again
                 (local.set $i (i32.add (local.get $i) (i32.const 1)))
                 (br_if $again (i32.lt_u (local.get $i) (local.get $n)))))
             (func $start (call $spin (i32.const {n})))
             (start $start)"
        ),
        "(call $spin (i32.load offset=48 (i32.add (i32.const 4096)
            (i32.load offset=40 (i32.const 4096)))))
         (i32.const 0)",
    )
    .replace(
        "(result i32) (i32.const 1))",
        &format!("(result i32) (call $spin (i32.const {n})) (i32.const 1))"),
    )
    .replace(
        "(result i32) (i32.const 4096))",
        &format!("(result i32) (call $spin (i32.const {n})) (i32.const 4096))"),
    )
    .replace(
        "(result i32) (i32.const 61440))",
        &format!("(result i32) (call $spin (i32.const {n})) (i32.const 61440))"),
    )
}

#[test]
fn a_validators_start_function_and_probes_share_one_deadline() {
    let deadline = Duration::from_millis(25);
    let limits = PluginLimits {
        deadline,
        ..PluginLimits::default()
    };
    // A machine busy during the calibration makes the spins too short, and the module loads
    // within its deadline: calibrate and try again, a few times. Were the budget not shared,
    // every attempt would load.
    let mut attempts = 0;
    let (error, took, compile) = loop {
        attempts += 1;
        // How many iterations take a millisecond here (the quickest of three runs).
        let calibrate = crate::support::validator(&spinning_validator(0));
        let n = 10_000_000u32;
        let mut per_ms = 0;
        for _ in 0..3 {
            let started = Instant::now();
            let _ = crate::support::check(&calibrate, b"k", &n.to_le_bytes());
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            // The quickest run: a run slowed by another process would make the spins too short.
            per_ms = per_ms.max((f64::from(n) / ms) as u32);
        }
        // Each part spins 60 % of the deadline: alone within it by a margin that calibration
        // noise on a loaded machine does not eat, together 2.4 deadlines.
        let ten_ms = per_ms.saturating_mul(15);
        // The start function and three probes each spin ~15 ms: 60 ms, more than one deadline
        // of 25 ms (before, each had a deadline of its own and the module loaded).
        let baseline = Instant::now();
        Plugin::validator(spinning_validator(0).as_bytes(), limits.clone()).unwrap();
        let compile = baseline.elapsed();
        let started = Instant::now();
        match Plugin::validator(spinning_validator(ten_ms).as_bytes(), limits.clone()) {
            Err(error) => break (error, started.elapsed(), compile),
            Ok(_) if attempts < 4 => continue,
            Ok(plugin) => {
                panic!("loaded in {attempts} attempts: the budget is not shared: {plugin:?}")
            }
        }
    };
    let took = took.saturating_sub(compile);
    let message = error.to_string();
    assert!(message.contains("ran past its deadline"), "{message}");
    // About one deadline; the bound is loose for a loaded machine, and still short of the
    // four parts' 60 ms.
    assert!(
        took < 2 * deadline + Duration::from_millis(10),
        "refused after {took:?} beyond compiling; the deadline is {deadline:?}"
    );
}

#[test]
fn refusals_read_as_sentences() {
    let trapping = validator_wat("", "(i32.const 0)").replace(
        "(result i32) (i32.const 4096))",
        "(result i32) unreachable)",
    );
    let message = Plugin::validator(trapping.as_bytes(), PluginLimits::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "export fk_input: the call trapped (wasm `unreachable` instruction executed)"
    );
    let looping_start = counting_tie_breaker(u32::MAX, 1);
    let message = Plugin::tie_breaker(looping_start.as_bytes(), PluginLimits::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "instantiation failed: its start function ran out of fuel"
    );
    assert!(!message.contains("trapped: trapped:") && !message.contains("backtrace"));
}
