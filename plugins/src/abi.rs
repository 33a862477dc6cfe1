//! Plugin ABI v1: what a module exports, and the little-endian records the host writes into
//! its input buffer. `plugins/README.md` and `plugins/sdk/fencekit_plugin.h` state the same
//! for plugin authors; the C example plugins, compiled against the header and run by the
//! tests, keep the header and this file in agreement.
//!
//! Every record starts with the same 8 bytes: `u8 version (1)`, `u8 kind`, `u16 reserved (0)`,
//! `u32 length of the variable part`. All integers are little-endian.

use fencekit::Token;

/// The ABI version a plugin must report from `fk_abi_version()`.
pub const ABI_VERSION: i32 = 1;

/// The record format version (the first byte of every record).
pub const RECORD_VERSION: u8 = 1;

/// Exports every plugin has.
pub const EXPORT_MEMORY: &str = "memory";
/// `() -> i32`: the ABI version.
pub const EXPORT_ABI_VERSION: &str = "fk_abi_version";
/// `() -> i32`: the address of the input buffer in `memory`.
pub const EXPORT_INPUT: &str = "fk_input";
/// `() -> i32`: the input buffer's capacity in bytes.
pub const EXPORT_INPUT_CAPACITY: &str = "fk_input_capacity";

/// A validator's export: `(len: i32) -> i32`, 0 to accept, 1 to 65535 to reject with that
/// reason code; anything else is a bad answer (and a rejection).
pub const EXPORT_VALIDATE: &str = "fk_validate";
/// A tie-breaker's export: `(len: i32) -> i64`, the candidate's election priority.
pub const EXPORT_ELECTION_PRIORITY: &str = "fk_election_priority";
/// A tie-breaker's export: `(len: i32) -> i32`, 0 to keep the current holder, 1 to hand the
/// generation to the challenger; anything else is a bad answer (and keeps the current holder).
pub const EXPORT_RESOLVE_CONFLICT: &str = "fk_resolve_conflict";

/// The one import a plugin may have: `fencekit.log(ptr: i32, len: i32)`, a line of UTF-8
/// text the host logs at debug level.
pub const IMPORT_LOG: (&str, &str) = ("fencekit", "log");

/// Record kind: a write to validate.
pub const KIND_VALIDATE: u8 = 1;
/// Record kind: a candidate whose election priority is asked.
pub const KIND_PRIORITY: u8 = 2;
/// Record kind: two tokens of one generation, from different holders.
pub const KIND_CONFLICT: u8 = 3;

/// `validate` record: header, then `u64 token.generation, u64 token.holder, u64
/// mark.generation, u64 mark.holder` (0, 0 for no mark), `u32 key_len, u32 payload_len`, then
/// the key and the payload. The header's length is `key_len + payload_len`.
pub const VALIDATE_HEADER_LEN: usize = 8 + 32 + 8;
/// `priority` record: header, then `u64 node`, then the candidate's descriptor (the header's
/// length is the descriptor's).
pub const PRIORITY_HEADER_LEN: usize = 8 + 8;
/// `conflict` record: header, then `u64 current.generation, u64 current.holder, u64
/// challenger.generation, u64 challenger.holder`, then the key (the header's length).
pub const CONFLICT_HEADER_LEN: usize = 8 + 32;

/// Validator answers.
pub const VALIDATE_ACCEPT: i32 = 0;
/// The largest reason code a plugin may give.
pub const REASON_MAX: i32 = 65535;

/// Tie-breaker answers to a conflict.
pub const CONFLICT_KEEP_CURRENT: i32 = 0;
/// The challenger takes the generation over.
pub const CONFLICT_CHALLENGER: i32 = 1;

fn header(out: &mut [u8], kind: u8, variable: usize) {
    out[0] = RECORD_VERSION;
    out[1] = kind;
    out[2..4].copy_from_slice(&0u16.to_le_bytes());
    out[4..8].copy_from_slice(&(variable as u32).to_le_bytes());
}

fn put_token(out: &mut [u8], at: usize, token: Option<Token>) {
    let (generation, holder) = token.map_or((0, 0), |t| (t.generation.get(), t.holder.get()));
    out[at..at + 8].copy_from_slice(&generation.to_le_bytes());
    out[at + 8..at + 16].copy_from_slice(&holder.to_le_bytes());
}

/// The length of the `validate` record of `key` and `payload`.
pub fn validate_len(key: &[u8], payload: &[u8]) -> usize {
    VALIDATE_HEADER_LEN + key.len() + payload.len()
}

/// Writes the `validate` record into `out`, which is exactly [`validate_len`] long.
pub fn encode_validate(
    out: &mut [u8],
    key: &[u8],
    token: Token,
    mark: Option<Token>,
    payload: &[u8],
) {
    header(out, KIND_VALIDATE, key.len() + payload.len());
    put_token(out, 8, Some(token));
    put_token(out, 24, mark);
    out[40..44].copy_from_slice(&(key.len() as u32).to_le_bytes());
    out[44..48].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    let key_end = VALIDATE_HEADER_LEN + key.len();
    out[VALIDATE_HEADER_LEN..key_end].copy_from_slice(key);
    out[key_end..].copy_from_slice(payload);
}

/// The length of the `priority` record of `descriptor`.
pub fn priority_len(descriptor: &[u8]) -> usize {
    PRIORITY_HEADER_LEN + descriptor.len()
}

/// Writes the `priority` record into `out`, which is exactly [`priority_len`] long.
pub fn encode_priority(out: &mut [u8], node: u64, descriptor: &[u8]) {
    header(out, KIND_PRIORITY, descriptor.len());
    out[8..16].copy_from_slice(&node.to_le_bytes());
    out[PRIORITY_HEADER_LEN..].copy_from_slice(descriptor);
}

/// The length of the `conflict` record of `key`.
pub fn conflict_len(key: &[u8]) -> usize {
    CONFLICT_HEADER_LEN + key.len()
}

/// Writes the `conflict` record into `out`, which is exactly [`conflict_len`] long.
pub fn encode_conflict(out: &mut [u8], key: &[u8], current: Token, challenger: Token) {
    header(out, KIND_CONFLICT, key.len());
    put_token(out, 8, Some(current));
    put_token(out, 24, Some(challenger));
    out[CONFLICT_HEADER_LEN..].copy_from_slice(key);
}
