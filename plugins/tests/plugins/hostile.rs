//! Hostile plugins: each is refused at load, or rejected at call within its limits, and the
//! host keeps answering (I7: a misbehaving plugin never turns into an acceptance).

use std::time::{Duration, Instant};

use fencekit::{Rejection, Validation};
use fencekit_plugins::{Plugin, PluginError, PluginLimits};

use crate::support::{check, code, example, validator, validator_wat, validator_with};

fn load_error(wat: &str) -> PluginError {
    load_error_with(wat, PluginLimits::default())
}

fn load_error_with(wat: &str, limits: PluginLimits) -> PluginError {
    match Plugin::validator(wat.as_bytes(), limits) {
        Ok(_) => panic!("a hostile module was loaded:\n{wat}"),
        Err(e) => e,
    }
}

/// Accepts unless the payload's first byte is `L`, in which case it runs `hostile`.
fn sometimes(hostile: &str, extra: &str) -> String {
    validator_wat(
        extra,
        &format!(
            "(if (i32.eq (i32.load8_u offset=48 (i32.add (i32.const 4096)
                 (i32.load offset=40 (i32.const 4096)))) (i32.const 76))
               (then {hostile}))
             (i32.const 0)"
        ),
    )
}

#[test]
fn an_infinite_loop_is_stopped_at_its_deadline_and_the_next_call_is_answered() {
    let limits = PluginLimits {
        deadline: Duration::from_millis(20),
        ..PluginLimits::default()
    };
    let v = validator_with(&sometimes("(loop $forever (br $forever))", ""), limits);
    let started = Instant::now();
    let answer = check(&v, b"k", b"Loop");
    let took = started.elapsed();
    assert_eq!(code(&answer), Rejection::DEADLINE, "{answer:?}");
    assert!(took < Duration::from_secs(2), "the deadline took {took:?}");
    assert_eq!(check(&v, b"k", b"fine"), Validation::Accept);
}

#[test]
fn a_memory_bomb_is_capped_at_the_limit() {
    // Grows one page at a time until refused, then rejects with the page count as its reason.
    let bomb = validator_wat(
        "",
        "(block $full (loop $grow
            (br_if $full (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
            (br $grow)))
          (memory.size)",
    );
    let limits = PluginLimits {
        memory_bytes_max: 4 << 20,
        ..PluginLimits::default()
    };
    let v = validator_with(&bomb, limits);
    assert_eq!(code(&check(&v, b"k", b"x")), 64, "4 MiB is 64 pages");
    // A module that asks for more memory than the limit up front is refused at load.
    let greedy = validator_wat("", "(i32.const 0)").replace(
        "(memory (export \"memory\") 1)",
        "(memory (export \"memory\") 1000)",
    );
    assert!(matches!(load_error(&greedy), PluginError::Instantiate(_)));
}

#[test]
fn deep_recursion_traps_instead_of_overflowing_the_host() {
    let v = validator(&sometimes(
        "(drop (call $deeper (i32.const 0)))",
        "(func $deeper (param i32) (result i32) (call $deeper (i32.add (local.get 0) (i32.const 1))))",
    ));
    let answer = check(&v, b"k", b"Loop");
    assert_eq!(code(&answer), Rejection::TRAPPED, "{answer:?}");
    assert!(format!("{answer:?}").contains("stack"), "{answer:?}");
    assert_eq!(check(&v, b"k", b"fine"), Validation::Accept);
}

#[test]
fn a_trap_is_a_rejection_and_a_fresh_instance_follows() {
    // Counts its calls in a global; a trap throws the instance (and the count) away.
    let wat = validator_wat(
        "(global $calls (mut i32) (i32.const 0))",
        "(global.set $calls (i32.add (global.get $calls) (i32.const 1)))
         (if (i32.eq (i32.load8_u offset=48 (i32.add (i32.const 4096)
              (i32.load offset=40 (i32.const 4096)))) (i32.const 76))
            (then unreachable))
         (global.get $calls)",
    );
    let v = validator(&wat);
    assert_eq!(code(&check(&v, b"k", b"a")), 1);
    assert_eq!(
        code(&check(&v, b"k", b"b")),
        2,
        "the instance is kept between calls"
    );
    assert_eq!(code(&check(&v, b"k", b"L")), Rejection::TRAPPED);
    assert_eq!(
        code(&check(&v, b"k", b"c")),
        1,
        "after a trap, a fresh instance"
    );
}

#[test]
fn an_answer_outside_the_abi_is_a_rejection() {
    for answer in ["-1", "65536", "2147483647"] {
        let v = validator(&validator_wat("", &format!("(i32.const {answer})")));
        assert_eq!(
            code(&check(&v, b"k", b"x")),
            Rejection::BAD_ANSWER,
            "{answer}"
        );
    }
}

#[test]
fn wrong_or_missing_exports_are_refused_at_load_by_name() {
    let wrong = validator_wat("", "(i32.const 0)")
        .replace(
            "(param $len i32) (result i32)",
            "(param $len i64) (result i32)",
        )
        .replace("(i32.const 0))", "(drop (local.get $len)) (i32.const 0))");
    match load_error(&wrong) {
        PluginError::Export { name, problem } => {
            assert_eq!(name, "fk_validate");
            assert!(problem.contains("i64"), "{problem}");
        }
        other => panic!("{other}"),
    }
    let missing = validator_wat("", "(i32.const 0)").replace(
        "(func (export \"fk_input\") (result i32) (i32.const 4096))",
        "",
    );
    match load_error(&missing) {
        PluginError::Export { name, .. } => assert_eq!(name, "fk_input"),
        other => panic!("{other}"),
    }
    let no_memory = validator_wat("", "(i32.const 0)").replace("(export \"memory\")", "");
    assert!(matches!(
        load_error(&no_memory),
        PluginError::Export { name: "memory", .. }
    ));
    let version = validator_wat("", "(i32.const 0)").replace(
        "(func (export \"fk_abi_version\") (result i32) (i32.const 1))",
        "(func (export \"fk_abi_version\") (result i32) (i32.const 2))",
    );
    assert!(matches!(
        load_error(&version),
        PluginError::AbiVersion { found: 2, .. }
    ));
    let outside =
        validator_wat("", "(i32.const 0)").replace("(i32.const 61440)", "(i32.const 70000)");
    assert!(matches!(load_error(&outside), PluginError::Buffer(_)));
    // A tie-breaker's exports are not a validator's.
    assert!(matches!(
        Plugin::tie_breaker(&example("wat/allow_all.wat"), PluginLimits::default()),
        Err(PluginError::Export {
            name: "fk_election_priority",
            ..
        })
    ));
}

#[test]
fn an_oversized_module_is_refused_before_it_is_compiled() {
    let limits = PluginLimits {
        module_bytes_max: 100,
        ..PluginLimits::default()
    };
    let error = load_error_with(&validator_wat("", "(i32.const 0)"), limits);
    assert!(
        matches!(error, PluginError::TooLarge { max: 100, .. }),
        "{error}"
    );
    assert!(matches!(
        load_error("not wasm at all"),
        PluginError::Invalid(_)
    ));
}

#[test]
fn a_wasi_import_is_refused_naming_it() {
    let wasi = validator_wat(
        r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
        "(i32.const 0)",
    );
    let message = load_error(&wasi).to_string();
    assert!(
        message.contains("wasi_snapshot_preview1.fd_write"),
        "{message}"
    );
    // The host log is the one import allowed.
    let logging = validator_wat(
        r#"(import "fencekit" "log" (func $log (param i32 i32)))"#,
        "(call $log (i32.const 4096) (i32.const 8)) (i32.const 0)",
    );
    let v = validator(&logging);
    assert!(v.plugin().info().imports_log);
    assert_eq!(check(&v, b"k", b"x"), Validation::Accept);
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn ten_thousand_trapping_calls_do_not_grow_memory() {
    // Each call after a trap makes a fresh instance, whose instantiation counts against the
    // call's deadline; on a busy two-core test machine a thread can be preempted for more
    // than the default 10 ms. This test is about memory, so the deadline is generous.
    let limits = PluginLimits {
        deadline: Duration::from_secs(1),
        ..PluginLimits::default()
    };
    let v = validator_with(&validator_wat("", "unreachable"), limits);
    for _ in 0..500 {
        check(&v, b"k", b"warm up");
    }
    let before = resident_bytes();
    for _ in 0..10_000 {
        assert_eq!(code(&check(&v, b"k", b"x")), Rejection::TRAPPED);
    }
    let grown = resident_bytes().saturating_sub(before);
    assert!(
        grown < 16 << 20,
        "resident memory grew by {grown} bytes over 10,000 calls"
    );
}
