//! Status codes: what every fallible export returns.
//!
//! A `uint32_t` typedef with constants, not a C enum (cbindgen 0.29.3+ writes C23 enum syntax
//! that cffi and cgo reject, and a C enum's size is the compiler's choice). Codes are numbered
//! in blocks by origin; a retired number stays reserved and is never reused.

use std::ffi::{CStr, c_char};

use kernel::ErrorKind;

use crate::boundary;

/// The outcome of a call. `FK_STATUS_OK` (0) is success; anything else is a failure whose
/// reason `fk_last_error_message` gives on the same thread.
pub type fk_status = u32;

/// Success.
pub const FK_STATUS_OK: fk_status = 0;

// Block 1000: the caller's arguments.

/// A pointer argument that must not be NULL was NULL.
pub const FK_STATUS_NULL_ARGUMENT: fk_status = 1000;
/// An argument out of its range (a length, an option, a timeout).
pub const FK_STATUS_INVALID_ARGUMENT: fk_status = 1001;
/// A text argument (a path, a configuration) that is not valid UTF-8.
pub const FK_STATUS_INVALID_UTF8: fk_status = 1002;
/// A token, generation or node id that is not valid: a generation of 0 or above 2^63 − 1, or
/// a holder or node id of 0 (a holder is a node id: any of 1 to 2^64 − 1).
pub const FK_STATUS_INVALID_TOKEN: fk_status = 1003;
/// A resource key that is empty or longer than `FK_KEY_LEN_MAX`.
pub const FK_STATUS_INVALID_KEY: fk_status = 1004;
/// A batch longer than `FK_BATCH_MAX`, or with a bad item: a token that is not valid, or a
/// resource id the fence never handed out. The message names the item: `item <index>: ...`.
pub const FK_STATUS_INVALID_BATCH: fk_status = 1005;
/// A node configuration that does not parse or is not safe (the message names the field).
pub const FK_STATUS_INVALID_CONFIG: fk_status = 1006;
/// A resource id this fence never handed out (in a batch: `FK_STATUS_INVALID_BATCH`, naming the
/// item), or a valid key it does not hold.
pub const FK_STATUS_UNKNOWN_RESOURCE: fk_status = 1007;
/// The fence holds as many resources as it was opened for.
pub const FK_STATUS_TOO_MANY_RESOURCES: fk_status = 1008;
/// A payload or proposal larger than the log accepts.
pub const FK_STATUS_TOO_LARGE: fk_status = 1009;
/// A token source name that is not `<kind>:<identity>`, or a source id the fence never gave.
pub const FK_STATUS_INVALID_SOURCE: fk_status = 1010;
/// The fence already knows as many token sources as it can (1024).
pub const FK_STATUS_TOO_MANY_SOURCES: fk_status = 1011;
/// A rebase refused: to the source the resource already takes tokens from, or without a
/// usable "who did it". Nothing was written.
pub const FK_STATUS_REBASE_REFUSED: fk_status = 1012;

// Block 2000: storage.

/// An I/O operation failed (the message names the operation and the file).
pub const FK_STATUS_IO: fk_status = 2000;
/// The log is damaged before its tail (the message names the file and offset).
pub const FK_STATUS_CORRUPT: fk_status = 2001;
/// The data directory is in use by another open log.
pub const FK_STATUS_LOCKED: fk_status = 2002;
/// The data directory belongs to another cluster or node.
pub const FK_STATUS_WRONG_CLUSTER: fk_status = 2003;
/// An earlier write or sync of the log failed; it refuses writes until reopened.
pub const FK_STATUS_LOG_FAILED: fk_status = 2004;
/// Raft log entries or a snapshot that cannot follow what the log holds.
pub const FK_STATUS_INVALID_RAFT_LOG: fk_status = 2005;
/// A record or message that could not be encoded or decoded.
pub const FK_STATUS_ENCODING: fk_status = 2006;
/// The directory holds something else than what was opened: the log of another kind (a
/// node's data directory opened as a fence), or files but no log (a new log is created only
/// in an empty directory).
pub const FK_STATUS_WRONG_OWNER: fk_status = 2007;
/// A fence or node used in a child process after `fork`: open one in each process instead.
pub const FK_STATUS_FORKED: fk_status = 2008;

// Block 3000: the node.

/// This node is not the (usable) leader; the message names the leader it knows of.
pub const FK_STATUS_NOT_LEADER: fk_status = 3000;
/// The node has stopped.
pub const FK_STATUS_STOPPED: fk_status = 3001;
/// Nothing arrived, or nothing finished, within the timeout.
pub const FK_STATUS_TIMEOUT: fk_status = 3002;
/// A membership change was refused, or leadership was to be handed to a node that cannot take
/// it: this node, or a node that is not a voter (the message names it; the voters are in
/// `fk_node_status_json`).
pub const FK_STATUS_MEMBERSHIP: fk_status = 3003;
/// Raft refused an operation (for example, a proposal it dropped). A transfer to a node that is
/// not a voter is `FK_STATUS_MEMBERSHIP`, refused before Raft sees it.
pub const FK_STATUS_RAFT: fk_status = 3004;
/// The transport failed: binding a port in use, a peer address that does not resolve.
pub const FK_STATUS_TRANSPORT: fk_status = 3005;
/// The node failed (a panic on its thread, a log it could not write; the message says which):
/// it reports no leadership and does nothing more until it is restarted.
pub const FK_STATUS_NODE_FAILED: fk_status = 3006;
/// TLS files that cannot be used (unreadable, readable by others, not PEM, naming another node,
/// not signed by the CA; the message names the file), or certificates that cannot be made.
pub const FK_STATUS_TLS: fk_status = 3007;

// Block 4000: policies.

/// A policy plugin was refused at load (an import, a missing export, a limit; the message
/// names it).
pub const FK_STATUS_POLICY_REFUSED: fk_status = 4000;
/// This library was built without the WebAssembly plugin host (the ffi crate's `plugins`
/// feature): no policy can be loaded.
pub const FK_STATUS_PLUGINS_DISABLED: fk_status = 4001;

// Block 9000: the boundary itself.

/// A bug inside fencekit panicked during this call. The handle is poisoned.
pub const FK_STATUS_PANIC: fk_status = 9000;
/// An earlier call on this handle panicked: it refuses everything but `_free` (fail closed).
pub const FK_STATUS_POISONED: fk_status = 9001;
/// An error this version of the ABI has no code for (the message says what it was).
pub const FK_STATUS_INTERNAL: fk_status = 9002;

/// The code for a kernel error's kind. The codes are fixed by the ABI: a kind added later maps
/// to `FK_STATUS_INTERNAL` until it gets a code of its own.
pub(crate) fn of(kind: ErrorKind) -> fk_status {
    match kind {
        ErrorKind::InvalidArgument | ErrorKind::OutOfRange => FK_STATUS_INVALID_ARGUMENT,
        ErrorKind::InvalidToken => FK_STATUS_INVALID_TOKEN,
        ErrorKind::InvalidKey => FK_STATUS_INVALID_KEY,
        ErrorKind::InvalidSource => FK_STATUS_INVALID_SOURCE,
        ErrorKind::InvalidBatch => FK_STATUS_INVALID_BATCH,
        ErrorKind::InvalidConfig => FK_STATUS_INVALID_CONFIG,
        ErrorKind::UnknownResource => FK_STATUS_UNKNOWN_RESOURCE,
        ErrorKind::TooManyResources => FK_STATUS_TOO_MANY_RESOURCES,
        ErrorKind::TooManySources => FK_STATUS_TOO_MANY_SOURCES,
        ErrorKind::TooLarge => FK_STATUS_TOO_LARGE,
        ErrorKind::RebaseRefused => FK_STATUS_REBASE_REFUSED,
        ErrorKind::Io => FK_STATUS_IO,
        ErrorKind::Corrupt => FK_STATUS_CORRUPT,
        ErrorKind::Locked => FK_STATUS_LOCKED,
        ErrorKind::WrongCluster => FK_STATUS_WRONG_CLUSTER,
        ErrorKind::WrongOwner => FK_STATUS_WRONG_OWNER,
        ErrorKind::LogFailed => FK_STATUS_LOG_FAILED,
        ErrorKind::InvalidRaftLog => FK_STATUS_INVALID_RAFT_LOG,
        ErrorKind::Encoding => FK_STATUS_ENCODING,
        ErrorKind::Forked => FK_STATUS_FORKED,
        ErrorKind::NotLeader => FK_STATUS_NOT_LEADER,
        ErrorKind::Stopped => FK_STATUS_STOPPED,
        ErrorKind::NodeFailed => FK_STATUS_NODE_FAILED,
        ErrorKind::Timeout => FK_STATUS_TIMEOUT,
        ErrorKind::Membership => FK_STATUS_MEMBERSHIP,
        ErrorKind::Raft => FK_STATUS_RAFT,
        ErrorKind::Transport => FK_STATUS_TRANSPORT,
        ErrorKind::Tls => FK_STATUS_TLS,
        _ => FK_STATUS_INTERNAL,
    }
}

/// Every code with its name, for `fk_status_name` and the tests.
pub(crate) const NAMES: &[(fk_status, &CStr)] = &[
    (FK_STATUS_OK, c"FK_STATUS_OK"),
    (FK_STATUS_NULL_ARGUMENT, c"FK_STATUS_NULL_ARGUMENT"),
    (FK_STATUS_INVALID_ARGUMENT, c"FK_STATUS_INVALID_ARGUMENT"),
    (FK_STATUS_INVALID_UTF8, c"FK_STATUS_INVALID_UTF8"),
    (FK_STATUS_INVALID_TOKEN, c"FK_STATUS_INVALID_TOKEN"),
    (FK_STATUS_INVALID_KEY, c"FK_STATUS_INVALID_KEY"),
    (FK_STATUS_INVALID_BATCH, c"FK_STATUS_INVALID_BATCH"),
    (FK_STATUS_INVALID_CONFIG, c"FK_STATUS_INVALID_CONFIG"),
    (FK_STATUS_UNKNOWN_RESOURCE, c"FK_STATUS_UNKNOWN_RESOURCE"),
    (
        FK_STATUS_TOO_MANY_RESOURCES,
        c"FK_STATUS_TOO_MANY_RESOURCES",
    ),
    (FK_STATUS_TOO_LARGE, c"FK_STATUS_TOO_LARGE"),
    (FK_STATUS_INVALID_SOURCE, c"FK_STATUS_INVALID_SOURCE"),
    (FK_STATUS_TOO_MANY_SOURCES, c"FK_STATUS_TOO_MANY_SOURCES"),
    (FK_STATUS_REBASE_REFUSED, c"FK_STATUS_REBASE_REFUSED"),
    (FK_STATUS_IO, c"FK_STATUS_IO"),
    (FK_STATUS_CORRUPT, c"FK_STATUS_CORRUPT"),
    (FK_STATUS_LOCKED, c"FK_STATUS_LOCKED"),
    (FK_STATUS_WRONG_CLUSTER, c"FK_STATUS_WRONG_CLUSTER"),
    (FK_STATUS_LOG_FAILED, c"FK_STATUS_LOG_FAILED"),
    (FK_STATUS_INVALID_RAFT_LOG, c"FK_STATUS_INVALID_RAFT_LOG"),
    (FK_STATUS_ENCODING, c"FK_STATUS_ENCODING"),
    (FK_STATUS_WRONG_OWNER, c"FK_STATUS_WRONG_OWNER"),
    (FK_STATUS_FORKED, c"FK_STATUS_FORKED"),
    (FK_STATUS_NOT_LEADER, c"FK_STATUS_NOT_LEADER"),
    (FK_STATUS_STOPPED, c"FK_STATUS_STOPPED"),
    (FK_STATUS_TIMEOUT, c"FK_STATUS_TIMEOUT"),
    (FK_STATUS_MEMBERSHIP, c"FK_STATUS_MEMBERSHIP"),
    (FK_STATUS_RAFT, c"FK_STATUS_RAFT"),
    (FK_STATUS_TRANSPORT, c"FK_STATUS_TRANSPORT"),
    (FK_STATUS_NODE_FAILED, c"FK_STATUS_NODE_FAILED"),
    (FK_STATUS_TLS, c"FK_STATUS_TLS"),
    (FK_STATUS_POLICY_REFUSED, c"FK_STATUS_POLICY_REFUSED"),
    (FK_STATUS_PLUGINS_DISABLED, c"FK_STATUS_PLUGINS_DISABLED"),
    (FK_STATUS_PANIC, c"FK_STATUS_PANIC"),
    (FK_STATUS_POISONED, c"FK_STATUS_POISONED"),
    (FK_STATUS_INTERNAL, c"FK_STATUS_INTERNAL"),
];

/// The constant's name of `status` ("FK_STATUS_STALE"...), or "FK_STATUS_UNKNOWN" for a code
/// this version does not define. The string is static: never free it.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn fk_status_name(status: fk_status) -> *const c_char {
    boundary::infallible(c"FK_STATUS_UNKNOWN".as_ptr(), || {
        NAMES
            .iter()
            .find(|(code, _)| *code == status)
            .map_or(c"FK_STATUS_UNKNOWN", |(_, name)| name)
            .as_ptr()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fk_status_name` knows every code this file defines, under its own name, and no code is
    /// defined twice.
    #[test]
    fn every_status_code_has_its_name_and_a_number_of_its_own() {
        let mut defined = Vec::new();
        for line in include_str!("status.rs").lines() {
            let Some(rest) = line.strip_prefix("pub const ") else {
                continue;
            };
            let (name, value) = rest
                .split_once(": fk_status = ")
                .expect("a status constant");
            let value: fk_status = value.trim_end_matches(';').parse().expect("a number");
            defined.push((value, name.to_owned()));
        }
        assert!(defined.len() > 20, "the scan found {} codes", defined.len());
        for (value, name) in &defined {
            let named = NAMES.iter().find(|(code, _)| code == value);
            assert_eq!(
                named.map(|(_, n)| n.to_str().expect("ASCII")),
                Some(name.as_str()),
                "{name}"
            );
        }
        let mut values: Vec<_> = defined.iter().map(|(v, _)| v).collect();
        values.sort();
        values.dedup();
        assert_eq!(values.len(), defined.len(), "two codes share a number");
        assert_eq!(NAMES.len(), defined.len());
    }
}
