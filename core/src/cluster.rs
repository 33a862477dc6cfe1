//! The id of a Raft group.

use std::fmt;

/// The id every member of one group shares (`--cluster`, the configuration's `cluster`): a
/// data directory or a peer of another group is refused. Any number names a group; the id is
/// only ever compared, so none is invalid.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(u64);

impl ClusterId {
    /// A cluster id from its number.
    #[inline]
    pub const fn new(value: u64) -> ClusterId {
        ClusterId(value)
    }

    /// The id's number, as the log identity, the handshake and certificates carry it.
    #[inline]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{:#x}", self.0)
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Log identities and errors print a cluster in hex (`{:#x}`), as operators compare ids.
impl fmt::LowerHex for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}
