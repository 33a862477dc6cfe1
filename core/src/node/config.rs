//! A node's configuration, validated before anything starts.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cluster::ClusterId;
use crate::error::NodeError;
use crate::lease::Timing;
use crate::policy::{RejectConflicts, TieBreaker};
use crate::token::NodeId;
use crate::wal::WalOptions;

/// How to run one member of a Raft group.
#[derive(Clone)]
pub struct NodeConfig {
    /// This node.
    pub id: NodeId,
    /// The group's id: the same on every member; a data directory or a peer of another
    /// cluster is refused.
    pub cluster: ClusterId,
    /// Where the Raft log lives (one directory per node).
    pub data_dir: PathBuf,
    /// The first membership, used only when `data_dir` is new. Empty: join an existing group
    /// (a member adds this node; its leader sends a snapshot).
    pub voters: Vec<NodeId>,
    /// Ticks, timeouts and the drift bound; every member must use the same.
    pub timing: Timing,
    /// Options of the Raft log.
    pub wal: WalOptions,
    /// Election priority for this node (raft-rs `priority`): with logs equally up to date, a
    /// voter refuses a candidate of lower priority.
    pub tie_breaker: Arc<dyn TieBreaker>,
    /// Test-only: lets [`crate::node::Node::panic_for_testing`] make the node thread panic,
    /// to show that a failure is reported through every API. Off unless a test sets it.
    #[doc(hidden)]
    pub test_hooks: bool,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("id", &self.id)
            .field("cluster", &self.cluster)
            .field("data_dir", &self.data_dir)
            .field("voters", &self.voters)
            .field("timing", &self.timing)
            .field("wal", &self.wal)
            .finish_non_exhaustive()
    }
}

impl NodeConfig {
    /// A configuration with default timing for node `id` of `cluster`, first members `voters`.
    pub fn new(
        id: NodeId,
        cluster: ClusterId,
        data_dir: impl Into<PathBuf>,
        voters: Vec<NodeId>,
    ) -> NodeConfig {
        NodeConfig {
            id,
            cluster,
            data_dir: data_dir.into(),
            voters,
            timing: Timing::default(),
            wal: WalOptions::default(),
            tie_breaker: Arc::new(RejectConflicts),
            test_hooks: false,
        }
    }

    /// Checks the configuration; the message says what is wrong.
    pub fn validate(&self) -> Result<(), NodeError> {
        self.timing.validate()?;
        self.wal.validate()?;
        let mut seen = BTreeSet::new();
        for voter in &self.voters {
            if !seen.insert(voter.get()) {
                return Err(NodeError::InvalidConfig(format!(
                    "node {voter} appears twice in the voters"
                )));
            }
        }
        if !self.voters.is_empty() && !seen.contains(&self.id.get()) {
            return Err(NodeError::InvalidConfig(format!(
                "the voters {:?} do not include this node ({}); to join an existing group, \
                 give no voters",
                self.voters, self.id
            )));
        }
        Ok(())
    }
}
