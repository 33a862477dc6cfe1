//! Tests of the Raft node that need real threads, sockets or files: the threaded node, a
//! cluster over real TCP, attacks on the peer port, a stalled disk, and the node's storage.
//! Leadership, leases, proposals, membership, restarts and the step boundary are tested on
//! the simulator's deterministic world, in `sim/tests/node/`.

#![allow(
    clippy::unwrap_used,
    reason = "a test that meets an error should stop right there"
)]

mod attack;
mod disk_stall;
mod storage;
mod tcp;
mod threaded;

use fencekit::NodeId;
use raft::eraftpb::{Message, MessageType};

pub(crate) fn id(n: u64) -> NodeId {
    NodeId::new(n).unwrap()
}

/// A Raft message of `kind` from `from` to `to` in `term`, the rest zero.
pub(crate) fn message(kind: MessageType, from: u64, to: u64, term: u64) -> Message {
    let mut m = Message {
        from,
        to,
        term,
        ..Default::default()
    };
    m.set_msg_type(kind);
    m
}
