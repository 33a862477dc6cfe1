//! Policy seams: the decisions a host may make instead of the kernel's defaults. The Wasm
//! plugins of `fencekit-plugins` implement these traits; `core` knows nothing of Wasm.

use crate::token::{NodeId, Token};

/// How a fence settles a conflict: two tokens of one generation with different holders.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ConflictResolution {
    /// The current holder keeps the generation; the challenger's write is rejected.
    KeepCurrent,
    /// The challenger takes the generation over: the fence durably records it as the holder
    /// and accepts its write; the previous holder's writes are conflicts from then on.
    Challenger,
}

/// Decides between conflicting tokens. A conflict is evidence of split brain: the fence counts
/// every one and calls this for each, so an implementation is also the place to raise an alarm.
/// It must be deterministic: every replica of a storage must decide alike.
pub trait TieBreaker: Send + Sync {
    /// `current` holds `key`'s generation; `challenger` brings the same generation from
    /// another holder. A panic here is treated as [`ConflictResolution::KeepCurrent`].
    fn resolve_conflict(&self, key: &[u8], current: Token, challenger: Token)
    -> ConflictResolution;

    /// The election priority of `node` (raft-rs `priority`): with logs equally up to date, a
    /// voter refuses a candidate of lower priority. The default gives every node the same. A
    /// panic here counts as priority 0.
    fn election_priority(&self, node: NodeId) -> i64 {
        let _ = node;
        0
    }
}

/// The default: a conflict is always rejected.
#[derive(Copy, Clone, Debug, Default)]
pub struct RejectConflicts;

impl TieBreaker for RejectConflicts {
    fn resolve_conflict(
        &self,
        _key: &[u8],
        _current: Token,
        _challenger: Token,
    ) -> ConflictResolution {
        ConflictResolution::KeepCurrent
    }
}
