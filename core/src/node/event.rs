//! What a node tells its host: leadership, its loss, who leads, and the committed log.

use crate::term::{LogIndex, Term};
use crate::time::Instant;
use crate::token::{NodeId, Token};

/// Usable leadership (DESIGN.md I4): this node leads under `token` and may act until
/// `lease_deadline` on the node's clock. Reported only after the leader committed an entry in
/// its term, and only while the lease holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// The generation (Raft term) and this node: what every write must carry.
    pub token: Token,
    /// The lease ends here, on the node's monotonic clock.
    pub lease_deadline: Instant,
}

/// Why usable leadership ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LostReason {
    /// No quorum acknowledged a heartbeat round in time (a partition, a pause, slow peers).
    LeaseExpired,
    /// Raft stepped down: a higher term was seen, or check-quorum found no quorum.
    SteppedDown,
    /// The lease was revoked to hand leadership to another node.
    Transferring,
    /// This node was removed from the membership.
    Removed,
    /// The node stopped, as asked.
    Stopped,
    /// The node failed (a panic on its thread, a log it could not write), with the cause.
    /// It reports nothing more until it is restarted (DESIGN.md I9).
    Failed(String),
}

/// One change, in the order it happened. Events are news; [`crate::node::Node::leadership`]
/// is the truth, so a consumer that lags never acts on a stale `Elected`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// This node became usable leader.
    Elected {
        /// Its token.
        token: Token,
        /// The lease's end when it was reported; later rounds extend it.
        lease_deadline: Instant,
    },
    /// This node's usable leadership ended.
    Lost {
        /// The token it held.
        token: Token,
        /// Why.
        reason: LostReason,
    },
    /// The leader this node knows of changed (`None`: no leader known).
    LeaderChanged {
        /// The leader.
        leader: Option<NodeId>,
        /// The term.
        term: Term,
    },
    /// A membership change was applied.
    MembershipChanged {
        /// Voters now.
        voters: Vec<NodeId>,
        /// Learners now.
        learners: Vec<NodeId>,
    },
}

/// A committed item of the log, delivered to the host in index order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A proposal's data, committed at `index` in `term`.
    Entry {
        /// Its log index.
        index: LogIndex,
        /// The term it was proposed in.
        term: Term,
        /// What was proposed.
        data: Vec<u8>,
    },
    /// The host's state as of `index`, from a snapshot: replace the state with it. Sent when
    /// this node fell behind a compacted log, and after a restart from a compacted log.
    Snapshot {
        /// The last index it covers.
        index: LogIndex,
        /// The term of that index.
        term: Term,
        /// The host's data, as given to `compact`.
        data: Vec<u8>,
    },
}

impl Applied {
    /// The log index this item brings the host to.
    pub fn index(&self) -> LogIndex {
        match self {
            Applied::Entry { index, .. } | Applied::Snapshot { index, .. } => *index,
        }
    }
}
