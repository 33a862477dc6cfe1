//! The node's error: its own failures, and those of the layers it runs on.

use super::ErrorKind;
use super::{FenceError, Forked, LogError, OutOfRange, TransportError};

/// Everything that can go wrong in the kernel, as a value. A failed operation leaves the state
/// it was called on unchanged, unless the variant says otherwise ([`LogError::Poisoned`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// An empty proposal: Raft takes an empty entry for a new leader's no-op, so it would be
    /// committed but never delivered.
    #[error(
        "an empty proposal would be committed but never applied (Raft reads an empty entry as a \
         new leader's no-op): propose at least one byte"
    )]
    EmptyProposal,

    /// A batch of proposals with no item or more than `limits::PROPOSE_BATCH_MAX`.
    #[error("invalid batch: {0}")]
    InvalidBatch(OutOfRange),

    /// A proposal longer than `limits::PROPOSAL_MAX`: an entry must fit in one log record,
    /// with room for its framing.
    #[error("proposal too large: {0}")]
    ProposalTooLarge(OutOfRange),

    /// Raft log entries or a snapshot that cannot follow what the log holds.
    #[error("invalid Raft log operation: {0}")]
    InvalidRaftLog(String),

    /// A node configuration that is not valid or not safe.
    #[error("invalid node configuration: {0}")]
    InvalidConfig(String),

    /// A node configuration value outside its range, whose bounds are `limits.rs`'s.
    #[error("invalid node configuration: {0}")]
    ConfigOutOfRange(OutOfRange),

    /// This node is not the leader; `hint` is the leader it knows of, if any.
    #[error("not the leader{}", match hint { Some(id) => format!(" (the leader is node {id})"), None => String::from(" (no leader is known)") })]
    NotLeader {
        /// The leader this node knows of.
        hint: Option<u64>,
    },

    /// A membership change that is refused.
    #[error("membership change refused: {0}")]
    Membership(String),

    /// The node has stopped; nothing more is done.
    #[error("the node has stopped")]
    Stopped,

    /// The node failed (a panic on its thread, a log that could not be written): it reports
    /// no leadership and does nothing more. Restart it (DESIGN.md I9).
    #[error("the node failed: {0}; it reports no leadership until it is restarted")]
    Failed(String),

    /// The node's transport failed: binding, or TLS files that cannot be used.
    #[error(transparent)]
    Transport(#[from] TransportError),

    /// An operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),

    /// Raft refused an operation.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),

    /// Raft refused a batch of proposals: each carries the refusal's text (Raft's errors
    /// cannot be copied).
    #[error("raft: {0}")]
    RaftRefusal(String),

    /// Raft dropped a proposal: its uncommitted log is as large as it takes.
    #[error("raft: proposal dropped (uncommitted log too large); retry once commits catch up")]
    ProposalDropped,

    /// A message or record that could not be encoded or decoded.
    #[error("encoding: {0}")]
    Encoding(#[from] protobuf::ProtobufError),

    /// The node was used in a child process after `fork`.
    #[error(transparent)]
    Forked(#[from] Forked),

    /// A fence's error (a token or node id that is not valid).
    #[error(transparent)]
    Fence(#[from] FenceError),

    /// A thread of the node could not be started.
    #[error("could not {op}: {source}")]
    Spawn {
        /// What was being started ("spawn the node thread").
        op: &'static str,
        /// Why the system refused.
        source: std::io::Error,
    },

    /// The node's log failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

impl NodeError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NodeError::EmptyProposal => ErrorKind::InvalidArgument,
            NodeError::InvalidBatch(_) => ErrorKind::InvalidBatch,
            NodeError::ProposalTooLarge(_) => ErrorKind::TooLarge,
            NodeError::InvalidRaftLog(_) => ErrorKind::InvalidRaftLog,
            NodeError::InvalidConfig(_) | NodeError::ConfigOutOfRange(_) => {
                ErrorKind::InvalidConfig
            }
            NodeError::NotLeader { .. } => ErrorKind::NotLeader,
            NodeError::Membership(_) => ErrorKind::Membership,
            NodeError::Stopped => ErrorKind::Stopped,
            NodeError::Failed(_) => ErrorKind::NodeFailed,
            NodeError::Transport(e) => e.kind(),
            NodeError::Timeout(_) => ErrorKind::Timeout,
            NodeError::Raft(_) | NodeError::RaftRefusal(_) | NodeError::ProposalDropped => {
                ErrorKind::Raft
            }
            NodeError::Encoding(_) => ErrorKind::Encoding,
            NodeError::Forked(_) => ErrorKind::Forked,
            NodeError::Fence(e) => e.kind(),
            NodeError::Spawn { .. } => ErrorKind::Io,
            NodeError::Log(e) => e.kind(),
        }
    }
}
