//! A compilation past its deadline holds one core at most: the prechecks admit modules that
//! compile for minutes (an outside attack: 1,000 locals under nested loops that branch to
//! every depth, inside every load limit), and each retry used to leave one more compiling
//! thread behind. Now a load waits for an abandoned compilation within its own deadline, and
//! is refused when it must wait longer. Its own test binary: other tests' loads would wait.

#![allow(
    clippy::unwrap_used,
    reason = "a test that meets an error should stop right there"
)]

use std::time::Duration;

use fencekit_plugins::{Plugin, PluginError, PluginLimits};

/// A validator whose `fk_validate` has 999 locals rotated inside `depth` nested loops, each
/// loop branched to from the innermost: slow to compile, small, and inside the limits.
fn slow_to_compile(depth: usize) -> String {
    let locals: String = (0..999).map(|i| format!("(local $l{i} i32) ")).collect();
    let rotate: String = (0..998)
        .map(|i| format!("(local.set $l{i} (local.get $l{})) ", i + 1))
        .collect();
    let branches: String = (0..depth)
        .map(|d| format!("(br_if $L{d} (local.get $l{})) ", d + 5))
        .collect();
    let opens: String = (0..depth).map(|d| format!("(loop $L{d} ")).collect();
    let closes = ")".repeat(depth);
    format!(
        r#"(module
  (memory (export "memory") 1)
  (func (export "fk_abi_version") (result i32) (i32.const 1))
  (func (export "fk_input") (result i32) (i32.const 4096))
  (func (export "fk_input_capacity") (result i32) (i32.const 61440))
  (func (export "fk_validate") (param $len i32) (result i32) {locals}
    {opens}{rotate}(local.set $l998 (local.get $len)) {branches}{closes}
    (local.get $l0)))"#
    )
}

const ALLOW_ALL: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "fk_abi_version") (result i32) (i32.const 1))
  (func (export "fk_input") (result i32) (i32.const 4096))
  (func (export "fk_input_capacity") (result i32) (i32.const 61440))
  (func (export "fk_validate") (param i32) (result i32) (i32.const 0)))"#;

fn with_deadline(deadline: Duration) -> PluginLimits {
    PluginLimits {
        compile_deadline: deadline,
        ..PluginLimits::default()
    }
}

#[test]
fn loads_wait_for_an_abandoned_compilation_within_their_own_deadline() {
    let slow = slow_to_compile(4);
    let error = Plugin::validator(slow.as_bytes(), with_deadline(Duration::from_millis(1)))
        .expect_err("compiled within 1 ms");
    assert!(
        matches!(error, PluginError::CompileDeadline { .. }),
        "{error}"
    );
    // The slow one still compiles (hundreds of ms in a release build, seconds in a debug
    // one): a load with a short deadline is refused rather than compiled beside it.
    let busy = Plugin::validator(
        ALLOW_ALL.as_bytes(),
        with_deadline(Duration::from_millis(20)),
    )
    .expect_err("compiled beside an abandoned compilation");
    assert!(matches!(busy, PluginError::CompileBusy), "{busy}");
    assert!(busy.to_string().contains("try again later"), "{busy}");
    // A patient load waits for it, then compiles.
    Plugin::validator(ALLOW_ALL.as_bytes(), with_deadline(Duration::from_secs(60))).unwrap();
}

#[test]
fn limits_the_host_cannot_honour_are_refused() {
    for (limits, says) in [
        (
            PluginLimits {
                deadline: Duration::from_millis(u64::MAX),
                ..PluginLimits::default()
            },
            "PluginLimits::deadline",
        ),
        (
            PluginLimits {
                fuel: 0,
                ..PluginLimits::default()
            },
            "PluginLimits::fuel = 0",
        ),
    ] {
        let error = Plugin::validator(ALLOW_ALL.as_bytes(), limits).unwrap_err();
        assert!(matches!(error, PluginError::BadLimit { .. }), "{error}");
        assert!(error.to_string().contains(says), "{error}");
    }
}
