//! Who a log is: a random id made when the log is created, and the component it belongs to.
//!
//! Every segment header and the superblock carry the identity, and every record's checksum
//! covers the id, so a segment (or a single record) copied from another log does not validate
//! here, even when its number and offsets are the same (DESIGN.md I6).

use std::fmt;

use crate::cluster::ClusterId;
use crate::token::NodeId;

/// A log's random id, drawn when it is created.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct LogId(pub(crate) [u8; 16]);

impl LogId {
    /// The id's bytes.
    pub const fn bytes(&self) -> [u8; 16] {
        self.0
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogId({self})")
    }
}

/// What a log belongs to. A log opened as one owner refuses to open as another.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum LogOwner {
    /// A fence's marks, embedded in a host's storage.
    Fence,
    /// The marks of a `fencekit store`.
    Store,
    /// The Raft log of one node of a cluster.
    Node {
        /// The cluster's id.
        cluster: ClusterId,
        /// The node's id.
        node: NodeId,
    },
}

const OWNER_FENCE: u8 = 1;
const OWNER_STORE: u8 = 2;
const OWNER_NODE: u8 = 3;

/// Bytes an encoded [`LogIdentity`] takes.
pub(crate) const IDENTITY_LEN: usize = 16 + 8 + 8 + 8;

impl LogOwner {
    fn encode(self) -> (u8, u64, u64) {
        match self {
            LogOwner::Fence => (OWNER_FENCE, 0, 0),
            LogOwner::Store => (OWNER_STORE, 0, 0),
            LogOwner::Node { cluster, node } => (OWNER_NODE, cluster.get(), node.get()),
        }
    }

    fn decode(kind: u8, cluster: u64, node: u64) -> Result<LogOwner, String> {
        match (kind, cluster, node) {
            (OWNER_FENCE, 0, 0) => Ok(LogOwner::Fence),
            (OWNER_STORE, 0, 0) => Ok(LogOwner::Store),
            (OWNER_NODE, cluster, node) => NodeId::new(node)
                .map(|node| LogOwner::Node {
                    cluster: ClusterId::new(cluster),
                    node,
                })
                .map_err(|_| "the log's owner is node 0".to_owned()),
            _ => Err(format!(
                "unknown log owner {kind} (cluster {cluster}, node {node})"
            )),
        }
    }
}

impl fmt::Display for LogOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogOwner::Fence => f.write_str("a fence"),
            LogOwner::Store => f.write_str("a fencekit store"),
            LogOwner::Node { cluster, node } => write!(f, "node {node} of cluster {cluster:#x}"),
        }
    }
}

/// A log's identity: its id and its owner.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct LogIdentity {
    /// The random id.
    pub id: LogId,
    /// What the log belongs to.
    pub owner: LogOwner,
}

impl LogIdentity {
    /// ```text
    /// 0  [u8; 16] id
    /// 16 u8       owner kind (1 fence, 2 store, 3 node), then 7 zero bytes
    /// 24 u64      cluster (node logs; else 0)
    /// 32 u64      node (node logs; else 0)
    /// ```
    pub(crate) fn encode(&self) -> [u8; IDENTITY_LEN] {
        let (kind, cluster, node) = self.owner.encode();
        let mut out = [0u8; IDENTITY_LEN];
        out[..16].copy_from_slice(&self.id.0);
        out[16] = kind;
        out[24..32].copy_from_slice(&cluster.to_le_bytes());
        out[32..40].copy_from_slice(&node.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8; IDENTITY_LEN]) -> Result<LogIdentity, String> {
        if bytes[17..24].iter().any(|&b| b != 0) {
            return Err("reserved identity bytes are not zero".into());
        }
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let owner = LogOwner::decode(bytes[16], word(24), word(32))?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[..16]);
        if id == [0u8; 16] {
            return Err("the log id is zero".into());
        }
        Ok(LogIdentity {
            id: LogId(id),
            owner,
        })
    }
}

impl fmt::Display for LogIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "log {} of {}", self.id, self.owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_and_refuse_nonsense() {
        let node = NodeId::new(3).unwrap();
        for owner in [
            LogOwner::Fence,
            LogOwner::Store,
            LogOwner::Node {
                cluster: ClusterId::new(7),
                node,
            },
        ] {
            let identity = LogIdentity {
                id: LogId([9; 16]),
                owner,
            };
            assert_eq!(LogIdentity::decode(&identity.encode()), Ok(identity));
        }
        let good = LogIdentity {
            id: LogId([9; 16]),
            owner: LogOwner::Fence,
        }
        .encode();
        let mut zero_id = good;
        zero_id[..16].fill(0);
        let mut bad_kind = good;
        bad_kind[16] = 9;
        let mut fence_with_cluster = good;
        fence_with_cluster[24] = 1;
        let mut node_zero = good;
        node_zero[16] = OWNER_NODE;
        for bad in [zero_id, bad_kind, fence_with_cluster, node_zero] {
            assert!(LogIdentity::decode(&bad).is_err());
        }
    }
}
