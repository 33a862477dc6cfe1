//! Helpers shared by the plugin tests.

use std::path::PathBuf;

use fencekit::{Token, Validation, WriteValidator};
use fencekit_plugins::{Plugin, PluginLimits, WasmValidator};

/// The bytes of an example plugin under `plugins/examples/`.
pub(crate) fn example(path: &str) -> Vec<u8> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

pub(crate) fn validator(wat: &str) -> WasmValidator {
    validator_with(wat, PluginLimits::default())
}

pub(crate) fn validator_with(wat: &str, limits: PluginLimits) -> WasmValidator {
    let plugin = Plugin::validator(wat.as_bytes(), limits).unwrap();
    WasmValidator::new(plugin).unwrap()
}

pub(crate) fn token(generation: u64, holder: u64) -> Token {
    Token::from_parts(generation, holder).unwrap()
}

/// Validates `payload` for `key` with a fixed token and no mark.
pub(crate) fn check(validator: &WasmValidator, key: &[u8], payload: &[u8]) -> Validation {
    validator.validate(key, token(3, 1), None, payload)
}

/// The rejection code, or 0 for an acceptance.
pub(crate) fn code(validation: &Validation) -> u32 {
    match validation {
        Validation::Accept => 0,
        Validation::Reject(r) => r.code,
    }
}

/// The WAT of a validator whose `fk_validate` body is `body` (it may use `$len` and the
/// input buffer at 4096), with `extra` module fields.
pub(crate) fn validator_wat(extra: &str, body: &str) -> String {
    format!(
        r#"(module
  {extra}
  (memory (export "memory") 1)
  (func (export "fk_abi_version") (result i32) (i32.const 1))
  (func (export "fk_input") (result i32) (i32.const 4096))
  (func (export "fk_input_capacity") (result i32) (i32.const 61440))
  (func (export "fk_validate") (param $len i32) (result i32) {body}))"#
    )
}

/// Compiles the C plugin `examples/c/NAME.c` with clang for wasm32 and returns the module.
/// clang and wasm-ld come from Debian's `clang` and `lld` packages (./test.sh installs them).
pub(crate) fn c_plugin(name: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(format!("{name}.wasm"));
    let status = std::process::Command::new("clang")
        .args([
            "--target=wasm32",
            "-O2",
            "-nostdlib",
            "-Wall",
            "-Wextra",
            "-Werror",
        ])
        .arg("-Wl,--no-entry")
        .arg("-I")
        .arg(root.join("sdk"))
        .arg("-o")
        .arg(&out)
        .arg(root.join("examples/c").join(format!("{name}.c")))
        .status()
        .unwrap_or_else(|e| panic!("run clang ({e}): install clang and lld (./test.sh does)"));
    assert!(status.success(), "clang failed to build {name}.c");
    std::fs::read(&out).unwrap()
}
