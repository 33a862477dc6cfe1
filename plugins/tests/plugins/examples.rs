//! The example validators do what their comments say, alone and behind a fence.

use std::sync::Arc;

use fencekit::{Fence, FenceOptions, Validation, WriteVerdict};
use fencekit_plugins::{Plugin, PluginLimits, WasmValidator};

use crate::support::{check, code, example, token};

fn load(path: &str) -> WasmValidator {
    let plugin = Plugin::validator(&example(path), PluginLimits::default()).unwrap();
    WasmValidator::new(plugin).unwrap()
}

#[test]
fn allow_all_accepts_everything() {
    let v = load("wat/allow_all.wat");
    assert_eq!(check(&v, b"any", b""), Validation::Accept);
    assert_eq!(check(&v, b"any", &[7; 4000]), Validation::Accept);
    let info = v.plugin().info();
    assert_eq!((info.abi_version, info.input_capacity), (1, 61440));
    assert!(!info.imports_log);
}

#[test]
fn max_payload_rejects_payloads_over_256_bytes() {
    let v = load("wat/max_payload.wat");
    assert_eq!(code(&check(&v, b"k", &[1; 256])), 0);
    assert_eq!(code(&check(&v, b"k", &[1; 257])), 1);
}

#[test]
fn deny_prefix_rejects_readonly_keys() {
    let v = load("wat/deny_prefix.wat");
    assert_eq!(code(&check(&v, b"readonly/config", b"x")), 2);
    assert_eq!(code(&check(&v, b"readonly/", b"x")), 2);
    assert_eq!(code(&check(&v, b"readonl", b"x")), 0);
    assert_eq!(code(&check(&v, b"jobs/readonly/x", b"x")), 0);
}

#[test]
fn a_record_larger_than_the_buffer_is_rejected_not_truncated() {
    let v = load("wat/allow_all.wat");
    let payload = vec![0u8; 61440];
    match check(&v, b"k", &payload) {
        Validation::Reject(r) => assert_eq!(r.code, fencekit::Rejection::TOO_LARGE),
        Validation::Accept => panic!("a record that does not fit was accepted"),
    }
    assert_eq!(check(&v, b"k", b"small"), Validation::Accept);
}

#[test]
fn a_fence_with_a_plugin_validator_checks_token_then_payload() {
    let dir = tempfile::tempdir().unwrap();
    let fence = Fence::open(dir.path(), FenceOptions::default()).unwrap();
    fence.set_validator(Some(Arc::new(load("wat/max_payload.wat"))));
    let id = fence.register(b"ledger").unwrap();
    assert!(
        fence
            .check_write(id, token(2, 1), b"ok")
            .unwrap()
            .is_accepted()
    );
    assert!(matches!(
        fence.check_write(id, token(2, 1), &[0; 300]).unwrap(),
        WriteVerdict::Invalid { .. }
    ));
    assert!(matches!(
        fence.check_write(id, token(1, 1), b"ok").unwrap(),
        WriteVerdict::Fenced(_)
    ));
}

#[test]
fn each_thread_gets_its_own_instance_and_the_same_answers() {
    let v = Arc::new(load("wat/max_payload.wat"));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let v = Arc::clone(&v);
            std::thread::spawn(move || {
                for n in 0..500usize {
                    let len = (n * 7 + i) % 400;
                    let expected = u32::from(len > 256);
                    assert_eq!(code(&check(&v, b"k", &vec![1; len])), expected);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
