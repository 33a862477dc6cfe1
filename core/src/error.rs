//! The one error type of the kernel. Every variant names the thing that is wrong.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the kernel, as a value. A failed operation leaves the state
/// it was called on unchanged, unless the variant says otherwise ([`Error::Poisoned`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A token, generation or node id that is not valid (zero, out of range, badly encoded).
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),

    /// A resource key that is empty or too long.
    #[error("invalid key: {0}")]
    InvalidKey(String),

    /// The fence holds as many resources as it was opened for.
    #[error(
        "the fence already holds {max} resources; open it with a larger FenceOptions::max_resources"
    )]
    TooManyResources {
        /// The configured capacity.
        max: usize,
    },

    /// A token source name that is not valid (see `source.rs`).
    #[error("invalid token source {0}")]
    InvalidSource(String),

    /// The fence already knows as many token sources as it can.
    #[error(
        "the fence already knows {max} token sources; a storage has a few, not one per request"
    )]
    TooManySources {
        /// The most a fence knows.
        max: usize,
    },

    /// An empty proposal: Raft takes an empty entry for a new leader's no-op, so it would be
    /// committed but never delivered.
    #[error(
        "an empty proposal would be committed but never applied (Raft reads an empty entry as a \
         new leader's no-op): propose at least one byte"
    )]
    EmptyProposal,

    /// A rebase the fence refuses (the message says why); nothing was written.
    #[error("rebase refused: {0}")]
    RebaseRefused(String),

    /// A `ResourceId` that this fence never handed out.
    #[error("unknown resource id {0}: register the key with this fence first")]
    UnknownResource(u32),

    /// A batch longer than `limits::BATCH_MAX`, or whose output is not as long as its input.
    #[error("invalid batch: {0}")]
    InvalidBatch(String),

    /// A record payload larger than the log accepts.
    #[error("record payload of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// The payload's length.
        len: usize,
        /// The largest payload the log takes.
        max: usize,
    },

    /// An option outside its allowed range.
    #[error("option {field} = {value} is out of range: {expected}")]
    InvalidOption {
        /// The option's name.
        field: &'static str,
        /// The value given.
        value: u64,
        /// What the value must be.
        expected: &'static str,
    },

    /// The data directory is locked by another open log (another process, or this one).
    #[error("{} is locked by another open log (another process, or this one); \
             stop the other user or choose another directory", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },

    /// An I/O operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("create data directory", "fdatasync", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The log is damaged before its tail: recovery refuses to guess.
    #[error("corrupt log: {} at offset {offset}: {reason}", path.display())]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// The byte offset in that file.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },

    /// The data directory was bootstrapped for another cluster or node.
    #[error("{} belongs to cluster {found_cluster:#x} node {found_node}, not cluster \
             {expected_cluster:#x} node {expected_node}; use the right directory or an empty one", path.display())]
    WrongCluster {
        /// The data directory.
        path: PathBuf,
        /// The cluster recorded in it.
        found_cluster: u64,
        /// The node recorded in it.
        found_node: u64,
        /// The cluster asked for.
        expected_cluster: u64,
        /// The node asked for.
        expected_node: u64,
    },

    /// Raft log entries or a snapshot that cannot follow what the log holds.
    #[error("invalid Raft log operation: {0}")]
    InvalidRaftLog(String),

    /// A message or record that could not be encoded or decoded.
    #[error("encoding: {0}")]
    Encoding(String),

    /// A node configuration that is not valid or not safe.
    #[error("invalid node configuration: {0}")]
    InvalidConfig(String),

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

    /// Raft refused an operation.
    #[error("raft: {0}")]
    Raft(String),

    /// A transport failure: binding, connecting, or a peer that broke the protocol.
    #[error("transport: {0}")]
    Transport(String),

    /// TLS files that cannot be used: unreadable, unsafe permissions, not PEM, a certificate
    /// that names another node or that the CA did not sign (the message names the file).
    #[error("TLS: {0}")]
    Tls(String),

    /// An operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),

    /// A fence, log or node used in a child process after `fork`: the child holds a copy that
    /// its parent keeps changing, so using it could move a mark backwards. Open it anew in
    /// the child (one per worker process).
    #[error(
        "this {what} was opened in process {opened_in} and is used after fork in process \
             {used_in}; open a new {what} in each process instead of sharing one across fork"
    )]
    Forked {
        /// What was used: "fence", "log" or "node".
        what: &'static str,
        /// The process that opened it.
        opened_in: u32,
        /// The process that used it.
        used_in: u32,
    },

    /// A log directory that belongs to something else (a fence opened on a node's data
    /// directory, a store on a fence's).
    #[error("{} holds {found}, not {expected}; use the right directory or an empty one", path.display())]
    WrongOwner {
        /// The log directory.
        path: PathBuf,
        /// What the log there belongs to.
        found: String,
        /// What it was opened as.
        expected: String,
    },

    /// An earlier write or sync of the log failed; nothing more is written until the log is
    /// reopened, because after a failed fdatasync the page cache cannot be trusted.
    #[error("the log refuses writes after an earlier failure ({0}); reopen it to recover")]
    Poisoned(String),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Error {
        Error::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}

impl From<protobuf::ProtobufError> for Error {
    fn from(e: protobuf::ProtobufError) -> Error {
        Error::Encoding(e.to_string())
    }
}

impl From<raft::Error> for Error {
    fn from(e: raft::Error) -> Error {
        Error::Raft(e.to_string())
    }
}
