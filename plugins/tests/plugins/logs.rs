//! Bounded logs: a plugin's `fencekit.log` reaches the logger at most `LOG_LINES_PER_CALL`
//! times and `LOG_BYTES_PER_CALL` bytes per call; the rest is dropped, counted and reported
//! once per call, and a tie-breaker pays for every call in fuel.

use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use fencekit::Validation;
use fencekit_plugins::limits::{LOG_BYTES_PER_CALL, LOG_LINES_PER_CALL};
use fencekit_plugins::{Plugin, PluginLimits, WasmTieBreaker};

use crate::support::{check, token, validator, validator_wat};

/// Keeps every record's message, for the test that holds `capture()`.
struct Capture;

static RECORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{}", record.args());
        RECORDS.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }
    fn flush(&self) {}
}

/// Installs the capturing logger (once per process) and empties it; the guard keeps tests
/// that read it apart. Other tests may log meanwhile: readers filter by their own marker.
pub(crate) fn capture() -> MutexGuard<'static, ()> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
    });
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    RECORDS.lock().unwrap().clear();
    guard
}

/// The captured messages containing `needle`.
pub(crate) fn captured(needle: &str) -> Vec<String> {
    let records = RECORDS.lock().unwrap();
    records
        .iter()
        .filter(|r| r.contains(needle))
        .cloned()
        .collect()
}

/// A data segment at 0 of `n` bytes: a marker, then dots.
fn marked_data(marker: &str, n: usize) -> String {
    format!(
        "(data (i32.const 0) \"{marker}{}\")",
        ".".repeat(n - marker.len())
    )
}

#[test]
fn a_validator_logging_in_a_loop_reaches_the_logger_eight_times_per_call() {
    let _capture = capture();
    // 1,000 lines of 100 bytes per call.
    let wat = validator_wat(
        &format!(
            "(import \"fencekit\" \"log\" (func $log (param i32 i32))) {}",
            marked_data("fk-validator-lines", 100)
        ),
        "(local $i i32)
         (loop $again
           (call $log (i32.const 0) (i32.const 100))
           (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br_if $again (i32.lt_u (local.get $i) (i32.const 1000))))
         (i32.const 0)",
    );
    let v = validator(&wat);
    for call in 1..=2 {
        assert_eq!(check(&v, b"k", b"x"), Validation::Accept);
        let lines = captured("fk-validator-lines");
        assert_eq!(
            lines.len(),
            call * LOG_LINES_PER_CALL as usize,
            "each call gets its own allowance"
        );
        let reports = captured("more log lines of this call were dropped");
        assert_eq!(reports.len(), call, "{reports:?}");
        assert!(reports[0].contains("992 more"), "{reports:?}");
    }
}

#[test]
fn a_validators_long_lines_stop_at_the_bytes_per_call() {
    let _capture = capture();
    // 10 lines of 1,000 bytes: two fit, the third is cut at 2 KiB, the rest are dropped.
    let wat = validator_wat(
        &format!(
            "(import \"fencekit\" \"log\" (func $log (param i32 i32))) {}",
            marked_data("fk-validator-bytes", 1000)
        ),
        "(local $i i32)
         (loop $again
           (call $log (i32.const 0) (i32.const 1000))
           (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br_if $again (i32.lt_u (local.get $i) (i32.const 10))))
         (i32.const 0)",
    );
    assert_eq!(check(&validator(&wat), b"k", b"x"), Validation::Accept);
    let lines = captured("fk-validator-bytes");
    let bytes: usize = lines
        .iter()
        .map(|l| l.trim_start_matches("plugin: ").len())
        .sum();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(bytes, LOG_BYTES_PER_CALL);
    let reports = captured("more log lines of this call were dropped");
    assert!(
        reports.len() == 1 && reports[0].contains("7 more"),
        "{reports:?}"
    );
}

#[test]
fn a_tie_breaker_logging_in_a_loop_runs_out_of_fuel_quickly() {
    let _capture = capture();
    // Logs 100 bytes forever: with the default fuel of 10,000,000 and 200 fuel a call, it
    // makes 50,000 calls into the host and stops.
    let wat = format!(
        r#"(module
  (import "fencekit" "log" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  {}
  (func (export "fk_abi_version") (result i32) (i32.const 1))
  (func (export "fk_input") (result i32) (i32.const 1024))
  (func (export "fk_input_capacity") (result i32) (i32.const 1024))
  (func (export "fk_election_priority") (param $len i32) (result i64) (i64.const 7))
  (func (export "fk_resolve_conflict") (param $len i32) (result i32)
    (loop $forever (call $log (i32.const 0) (i32.const 100)) (br $forever))
    (i32.const 1)))"#,
        marked_data("fk-tie-breaker-lines", 100)
    );
    let plugin = Plugin::tie_breaker(wat.as_bytes(), PluginLimits::default()).unwrap();
    let tb = WasmTieBreaker::new(plugin, Default::default()).unwrap();
    let started = Instant::now();
    let answer = tb.try_resolve_conflict(b"k", token(5, 3), token(5, 2));
    let took = started.elapsed();
    eprintln!("a tie-breaker's log loop ran out of fuel in {took:?}");
    assert_eq!(answer, None, "out of fuel: no answer");
    // Wall time is only a sanity bound (a debug build on a loaded machine); what bounds the
    // loop is the fuel, counted below through the calls it made.
    assert!(
        took < Duration::from_secs(2),
        "the log loop ran {took:?} on 10,000,000 fuel"
    );
    assert_eq!(
        captured("fk-tie-breaker-lines").len(),
        LOG_LINES_PER_CALL as usize
    );
    let refusals = captured("tie-breaker plugin ran out of fuel");
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    let reports = captured("more log lines of this call were dropped");
    assert_eq!(reports.len(), 1, "{reports:?}");
    // 10,000,000 fuel at 200 a call (100 + 1 per byte) buys 50,000 calls into the host, a
    // few of them fewer for the loop's own instructions; uncharged, it would make millions.
    let dropped: u64 = reports[0]
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .expect("a count");
    assert!(
        (49_000..50_000).contains(&(dropped + u64::from(LOG_LINES_PER_CALL))),
        "{reports:?}"
    );
    // The next call is a fresh instance with a full tank.
    assert_eq!(
        tb.try_election_priority(fencekit::NodeId::new(1).unwrap()),
        Some(7)
    );
}

/// A plugin's log line carries no control character to the host's log: escape sequences
/// that would recolour or rewrite an operator's terminal, NULs and carriage returns come out
/// escaped.
#[test]
fn control_characters_in_a_log_line_are_escaped() {
    let _capture = capture();
    let wat = validator_wat(
        "(import \"fencekit\" \"log\" (func $log (param i32 i32))) \
         (data (i32.const 0) \"fk-escape \\1b[31mred\\00\\0dfake line\\e2\\80\\aeevil\")",
        "(call $log (i32.const 0) (i32.const 37)) (i32.const 0)",
    );
    assert_eq!(check(&validator(&wat), b"k", b"x"), Validation::Accept);
    let lines = captured("fk-escape");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
    assert!(
        line.contains("\\u{1b}[31mred\\u{0}\\rfake line\\u{202e}evil"),
        "{line:?}"
    );
}
