//! `fencekit plugin check`: the kind comes from `--kind` or from the module's exports (never
//! from a search of its bytes), and the limit flags reach the load.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_one_line_error, fencekit, text};

/// A tie-breaker whose custom section (and a data segment) mention `fk_validate`: a search
/// of its bytes took it for a validator and refused it.
const TIE_BREAKER: &str = r#"(module
  (@custom "fencekit-notes" "this tie-breaker exports no fk_validate")
  (memory (export "memory") 1)
  (data (i32.const 0) "fk_validate")
  (func (export "fk_abi_version") (result i32) (i32.const 1))
  (func (export "fk_input") (result i32) (i32.const 1024))
  (func (export "fk_input_capacity") (result i32) (i32.const 4096))
  (func (export "fk_election_priority") (param i32) (result i64) (i64.const 7))
  (func (export "fk_resolve_conflict") (param i32) (result i32) (i32.const 0)))"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the plugin");
    path.to_str().expect("a UTF-8 path").to_owned()
}

fn example(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/examples/wat")
        .join(name);
    path.to_str().expect("a UTF-8 path").to_owned()
}

#[test]
fn a_tie_breaker_that_mentions_fk_validate_is_checked_as_a_tie_breaker() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let plugin = write(dir.path(), "tb.wat", TIE_BREAKER);
    let out = fencekit(&["plugin", "check", &plugin]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("tb.wat: a tie-breaker plugin"), "{said}");
    assert!(said.contains("dry run: priority of node 1: 7"), "{said}");
    // Said explicitly, the same.
    let out = fencekit(&["plugin", "check", "--kind", "tie-breaker", &plugin]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_kind_the_exports_contradict_is_refused_in_a_sentence() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let plugin = write(dir.path(), "tb.wat", TIE_BREAKER);
    let out = fencekit(&["plugin", "check", "--kind", "validator", &plugin]);
    assert_one_line_error(
        &out,
        "tb.wat is refused as a validator (its exports are a tie-breaker's): export \
         fk_validate: missing",
    );
    let out = fencekit(&[
        "plugin",
        "check",
        "--kind",
        "tie-breaker",
        &example("max_payload.wat"),
    ]);
    assert_one_line_error(
        &out,
        "max_payload.wat is refused as a tie-breaker (its exports are a validator's)",
    );
    // Exports that say neither: the command asks for --kind.
    let neither = write(
        dir.path(),
        "neither.wat",
        r#"(module (memory (export "memory") 1))"#,
    );
    assert_one_line_error(
        &fencekit(&["plugin", "check", &neither]),
        "neither.wat is neither a validator nor a tie-breaker by its exports (memory)",
    );
}

#[test]
fn limit_flags_reach_the_load() {
    let validator = example("max_payload.wat");
    let out = fencekit(&["plugin", "check", &validator]);
    assert!(out.status.success(), "{}", text(&out));
    for (flags, says) in [
        (
            vec!["--functions-max", "3"],
            "the number of functions defined is 4, over the limit of 3 \
             (PluginLimits::functions_max)",
        ),
        (
            vec!["--module-bytes-max", "100"],
            "the limit is 100 (PluginLimits::module_bytes_max)",
        ),
        (vec!["--nesting-max", "0"], "(PluginLimits::nesting_max)"),
        (
            vec!["--compile-deadline-ms", "0"],
            "compiling took more than 0 ms",
        ),
        // 2^64-1 ms overflowed wasmtime's epoch arithmetic and panicked.
        (
            vec!["--deadline-ms", "18446744073709551615"],
            "PluginLimits::deadline",
        ),
        (vec!["--fuel", "0"], "PluginLimits::fuel = 0"),
    ] {
        let mut args = vec!["plugin", "check"];
        args.extend(flags);
        args.push(&validator);
        assert_one_line_error(&fencekit(&args), says);
    }
}
