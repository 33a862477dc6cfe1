//! The C example plugins, built by clang for wasm32 against the SDK header.

use std::collections::HashMap;

use fencekit::{ConflictResolution, NodeId, TieBreaker};
use fencekit_plugins::{Plugin, PluginLimits, WasmTieBreaker, WasmValidator};

use crate::support::{c_plugin, check, code, token};

#[test]
fn payload_schema_checks_version_size_and_the_resource_rule() {
    let plugin = Plugin::validator(&c_plugin("payload_schema"), PluginLimits::default()).unwrap();
    assert!(
        !plugin.info().imports_log,
        "a C plugin built with the SDK imports nothing"
    );
    let v = WasmValidator::new(plugin).unwrap();
    assert_eq!(code(&check(&v, b"jobs/7", b"")), 10);
    assert_eq!(code(&check(&v, b"jobs/7", b"\x02J")), 11);
    assert_eq!(code(&check(&v, b"jobs/7", &[1; 1025])), 12);
    assert_eq!(code(&check(&v, b"jobs/7", b"\x01C")), 13);
    assert_eq!(code(&check(&v, b"config/db", b"\x01J")), 13);
    assert_eq!(code(&check(&v, b"jobs/7", b"\x01Jdone")), 0);
    assert_eq!(code(&check(&v, b"config/db", b"\x01C")), 0);
    assert_eq!(code(&check(&v, b"misc", b"\x01?")), 0);
}

#[test]
fn zone_tiebreaker_prefers_zone_a_then_the_lowest_id() {
    let plugin =
        Plugin::tie_breaker(&c_plugin("zone_tiebreaker"), PluginLimits::default()).unwrap();
    let node = |id| NodeId::new(id).unwrap();
    let descriptors = HashMap::from([
        (node(1), b"zone=b".to_vec()),
        (node(2), b"zone=a".to_vec()),
        (node(3), b"zone=a".to_vec()),
    ]);
    let tb = WasmTieBreaker::new(plugin, descriptors).unwrap();
    let p: Vec<i64> = (1..=3).map(|id| tb.election_priority(node(id))).collect();
    assert!(
        p[1] > p[2] && p[2] > p[0],
        "zone A first, then the lowest id: {p:?}"
    );
    assert_eq!(
        tb.resolve_conflict(b"k", token(4, 3), token(4, 2)),
        ConflictResolution::Challenger
    );
    assert_eq!(
        tb.resolve_conflict(b"k", token(4, 2), token(4, 3)),
        ConflictResolution::KeepCurrent
    );
}

#[test]
fn max_payload_in_c_agrees_with_its_wat_twin() {
    let c = WasmValidator::new(
        Plugin::validator(&c_plugin("max_payload"), PluginLimits::default()).unwrap(),
    )
    .unwrap();
    let wat = WasmValidator::new(
        Plugin::validator(
            &crate::support::example("wat/max_payload.wat"),
            PluginLimits::default(),
        )
        .unwrap(),
    )
    .unwrap();
    for len in [0, 1, 255, 256, 257, 4000] {
        let payload = vec![9u8; len];
        assert_eq!(
            code(&check(&c, b"k", &payload)),
            code(&check(&wat, b"k", &payload)),
            "{len}"
        );
    }
    c.plugin().instantiate().unwrap();
}
