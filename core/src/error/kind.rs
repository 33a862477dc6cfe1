//! What went wrong, as one flat list callers can `match`, whatever layer the error came from.

/// The class of an error: what a caller branches on (retry elsewhere, fix the argument,
/// restart, give up). Every layer's error has a `kind()`; the C ABI's status codes are these,
/// one for one (`ffi/src/status.rs`), except that [`ErrorKind::OutOfRange`] and
/// [`ErrorKind::InvalidArgument`] share `FK_STATUS_INVALID_ARGUMENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument that is not valid (an empty proposal).
    InvalidArgument,
    /// A value outside its range (an option, a length); the error carries the range.
    OutOfRange,
    /// A token, generation or node id that is not valid.
    InvalidToken,
    /// A resource key that is empty or too long.
    InvalidKey,
    /// A token source name that is not valid, or a source id the fence never gave.
    InvalidSource,
    /// A batch too long, or with a bad item.
    InvalidBatch,
    /// A node configuration that is not valid or not safe.
    InvalidConfig,
    /// A resource id the fence never handed out.
    UnknownResource,
    /// The fence holds as many resources as it was opened for.
    TooManyResources,
    /// The fence knows as many token sources as it can.
    TooManySources,
    /// A payload or proposal larger than the log takes.
    TooLarge,
    /// A rebase the fence refuses; nothing was written.
    RebaseRefused,
    /// An I/O operation failed.
    Io,
    /// The log is damaged before its tail.
    Corrupt,
    /// The data directory is in use by another open log.
    Locked,
    /// The data directory belongs to another cluster or node.
    WrongCluster,
    /// The directory holds something else than what was opened.
    WrongOwner,
    /// An earlier write or sync of the log failed; it refuses writes until reopened.
    LogFailed,
    /// Raft log entries or a snapshot that cannot follow what the log holds.
    InvalidRaftLog,
    /// A record or message that could not be encoded or decoded.
    Encoding,
    /// A fence, log or node used in a child process after `fork`.
    Forked,
    /// This node is not the leader.
    NotLeader,
    /// The node has stopped.
    Stopped,
    /// The node failed; it does nothing more until restarted.
    NodeFailed,
    /// An operation did not finish in time.
    Timeout,
    /// A membership change that is refused.
    Membership,
    /// Raft refused an operation.
    Raft,
    /// A transport failure: binding, connecting, a peer that broke the protocol.
    Transport,
    /// TLS files or identities that cannot be used.
    Tls,
}
