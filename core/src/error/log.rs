//! The write-ahead log's errors (`wal.rs`): its files, its records, its directory.

use std::io;
use std::path::PathBuf;

use super::{ErrorKind, Forked, OutOfRange};

/// What can go wrong in the log. A failed operation leaves the log unchanged, unless the
/// variant says otherwise ([`LogError::Poisoned`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
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

    /// The data directory is locked by another open log (another process, or this one).
    #[error("{} is locked by another open log (another process, or this one); \
             stop the other user or choose another directory", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
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

    /// A record payload larger than the log accepts.
    #[error(
        "record payload of {len} bytes exceeds the limit of {max} bytes; write less in one record"
    )]
    RecordTooLarge {
        /// The payload's length.
        len: usize,
        /// The largest payload the log takes.
        max: usize,
    },

    /// An option (or a size the log derives from one) outside its range.
    #[error("log option {0}")]
    Option(OutOfRange),

    /// The log was used in a child process after `fork`.
    #[error(transparent)]
    Forked(#[from] Forked),
}

impl LogError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LogError::Io { .. } => ErrorKind::Io,
            LogError::Corrupt { .. } => ErrorKind::Corrupt,
            LogError::Locked { .. } => ErrorKind::Locked,
            LogError::WrongCluster { .. } => ErrorKind::WrongCluster,
            LogError::WrongOwner { .. } => ErrorKind::WrongOwner,
            LogError::Poisoned(_) => ErrorKind::LogFailed,
            LogError::RecordTooLarge { .. } => ErrorKind::TooLarge,
            LogError::Option(_) => ErrorKind::OutOfRange,
            LogError::Forked(_) => ErrorKind::Forked,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> LogError {
        LogError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> LogError {
        LogError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}
