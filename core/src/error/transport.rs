//! The transport's errors (`transport/`): its listener, its TLS files and identities.

use std::io;
use std::path::PathBuf;

use super::ErrorKind;

/// What can go wrong when a transport starts or loads its certificates. A peer that breaks
/// the protocol is not an error of the caller's: its connection is closed and counted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The listening socket could not be bound (a port in use, an address not of this host).
    #[error("transport: cannot listen on {address}: {source}; free the port or choose another")]
    Listen {
        /// The address asked for.
        address: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A socket or thread operation of the transport failed.
    #[error("transport: {op}: {source}")]
    Io {
        /// What was being done ("local address", "spawn", ...).
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// TLS files that cannot be used: unreadable, unsafe permissions, not PEM, a certificate
    /// that names another node or that the CA did not sign (the message names the file).
    #[error("TLS: {0}")]
    Tls(String),

    /// A certificate file that could not be read or written.
    #[error("{op} {}: {source}", path.display())]
    File {
        /// What was being done ("read", "create directory", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl TransportError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TransportError::Listen { .. } | TransportError::Io { .. } => ErrorKind::Transport,
            TransportError::Tls(_) => ErrorKind::Tls,
            TransportError::File { .. } => ErrorKind::Io,
        }
    }
}
