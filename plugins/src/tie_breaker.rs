//! A tie-breaker plugin as a `fencekit::TieBreaker`.
//!
//! Tie-breakers decide on every replica, so every call runs in a fresh instance: nothing a
//! previous call left in the module's memory can make one replica decide otherwise than
//! another. They are called rarely (a conflict, a node's start), so the microseconds of an
//! instantiation do not matter.

use std::collections::HashMap;

use fencekit::{ConflictResolution, NodeId, TieBreaker, Token};

use crate::abi;
use crate::engine::Kind;
use crate::error::PluginError;
use crate::instance::{Entry, Live, end_call, on_enough_stack, trap_reason};
use crate::plugin::Plugin;

/// A tie-breaker backed by a Wasm plugin. `descriptors` describe the candidates to the plugin
/// (for example `zone=a`); a node without one gets an empty descriptor.
#[derive(Clone, Debug)]
pub struct WasmTieBreaker {
    plugin: Plugin,
    descriptors: HashMap<NodeId, Vec<u8>>,
}

impl WasmTieBreaker {
    /// Wraps a plugin loaded with [`Plugin::tie_breaker`].
    pub fn new(
        plugin: Plugin,
        descriptors: HashMap<NodeId, Vec<u8>>,
    ) -> Result<WasmTieBreaker, PluginError> {
        if plugin.kind() != Kind::TieBreaker {
            return Err(PluginError::Export {
                name: abi::EXPORT_RESOLVE_CONFLICT,
                problem: "this plugin was loaded as a validator".into(),
            });
        }
        Ok(WasmTieBreaker {
            plugin,
            descriptors,
        })
    }

    /// Runs one call in a fresh instance, on a stack with room for it, within one tank of
    /// fuel (armed when the instance is made: its start function and ABI probes spend from it
    /// too): `encode` fills the record, `call` runs the export. `None` when the plugin failed
    /// (it is logged).
    fn call<R: Send>(
        &self,
        len: usize,
        encode: impl FnOnce(&mut [u8]) + Send,
        call: impl FnOnce(&mut Live, i32) -> wasmtime::Result<R> + Send,
    ) -> Option<R> {
        let shared = &*self.plugin.shared;
        let outcome = on_enough_stack(|| {
            let mut live = Live::create(shared)?;
            if len > live.capacity() {
                return Err(PluginError::Buffer(format!(
                    "the record is {len} bytes; the plugin's input buffer holds {}",
                    live.capacity()
                )));
            }
            let buffer = live
                .input(len)
                .ok_or_else(|| PluginError::Buffer("the record does not fit".into()))?;
            encode(buffer);
            // `len` fits the buffer, whose capacity came from an i32.
            let answer = call(&mut live, len as i32);
            end_call(&mut live.store, shared);
            Ok(answer)
        });
        match outcome {
            Ok(Ok(Ok(answer))) => Some(answer),
            Ok(Ok(Err(e))) => {
                log::warn!("tie-breaker plugin {}", trap_reason(&e));
                None
            }
            Ok(Err(PluginError::Instantiate(why))) | Err(why) => {
                log::warn!("tie-breaker plugin could not be instantiated: {why}");
                None
            }
            Ok(Err(e)) => {
                log::warn!("tie-breaker plugin could not be called: {e}");
                None
            }
        }
    }

    /// The plugin's answer to a conflict, or `None` when it failed or answered outside the ABI.
    pub fn try_resolve_conflict(
        &self,
        key: &[u8],
        current: Token,
        challenger: Token,
    ) -> Option<ConflictResolution> {
        let answer = self.call(
            abi::conflict_len(key),
            |buffer| abi::encode_conflict(buffer, key, current, challenger),
            |live, len| match &live.entry {
                Entry::TieBreaker { conflict, .. } => conflict.call(&mut live.store, len),
                Entry::Validator(_) => unreachable!("checked in WasmTieBreaker::new"),
            },
        )?;
        match answer {
            abi::CONFLICT_KEEP_CURRENT => Some(ConflictResolution::KeepCurrent),
            abi::CONFLICT_CHALLENGER => Some(ConflictResolution::Challenger),
            other => {
                log::warn!(
                    "tie-breaker plugin answered {other} to a conflict; the ABI allows 0 or 1"
                );
                None
            }
        }
    }

    /// The plugin's priority for `node`, or `None` when it failed.
    pub fn try_election_priority(&self, node: NodeId) -> Option<i64> {
        let descriptor = self.descriptors.get(&node).map_or(&[][..], Vec::as_slice);
        self.call(
            abi::priority_len(descriptor),
            |buffer| abi::encode_priority(buffer, node.get(), descriptor),
            |live, len| match &live.entry {
                Entry::TieBreaker { priority, .. } => priority.call(&mut live.store, len),
                Entry::Validator(_) => unreachable!("checked in WasmTieBreaker::new"),
            },
        )
    }
}

impl TieBreaker for WasmTieBreaker {
    /// A plugin that fails keeps the current holder (fail closed: no write of the challenger's
    /// lands).
    fn resolve_conflict(
        &self,
        key: &[u8],
        current: Token,
        challenger: Token,
    ) -> ConflictResolution {
        self.try_resolve_conflict(key, current, challenger)
            .unwrap_or(ConflictResolution::KeepCurrent)
    }

    /// A plugin that fails gives priority 0, the default of every node.
    fn election_priority(&self, node: NodeId) -> i64 {
        self.try_election_priority(node).unwrap_or(0)
    }
}
