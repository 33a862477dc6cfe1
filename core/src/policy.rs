//! Policy seams: the decisions a host may make instead of the kernel's defaults. The Wasm
//! plugins of `fencekit-plugins` implement these traits; `core` knows nothing of Wasm.

use crate::token::{NodeId, Token};

/// Why a validator refused a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The validator's reason code: 1 to 65535 from a plugin's own table, or one of the
    /// `Rejection::*` host codes (from 0x1_0000 on) when the validator itself failed.
    pub code: u32,
    /// The reason for people.
    pub reason: String,
}

impl Rejection {
    /// The validator trapped (a bug in it, or a hostile module).
    pub const TRAPPED: u32 = 0x1_0000;
    /// The validator ran past its deadline.
    pub const DEADLINE: u32 = 0x1_0001;
    /// The validator answered something outside its ABI.
    pub const BAD_ANSWER: u32 = 0x1_0002;
    /// The write does not fit the validator's input buffer.
    pub const TOO_LARGE: u32 = 0x1_0003;
    /// The validator panicked (a native one) or could not be instantiated.
    pub const FAILED: u32 = 0x1_0004;
}

/// The validator's answer about one write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Validation {
    /// The payload may be written.
    Accept,
    /// The payload must not be written.
    Reject(Rejection),
}

/// Checks a write's payload after the fence accepted its token: the storage's own rules
/// (a schema, a size bound, which resources take which payloads). It runs on the write path:
/// it must be fast, and it must fail closed (anything but a clear acceptance is a rejection).
pub trait WriteValidator: Send + Sync {
    /// May `payload` be written to `key` by `token`? `mark` is the resource's high-water mark
    /// before this write's check (`None` for its first write).
    fn validate(&self, key: &[u8], token: Token, mark: Option<Token>, payload: &[u8])
    -> Validation;
}

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
