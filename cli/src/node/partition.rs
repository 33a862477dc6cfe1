//! A transport that can be cut off from chosen peers: the demo's partitions. Dropping the
//! messages a node sends to a peer, on both sides, cuts the link both ways.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use fencekit::NodeId;
use fencekit::transport::Transport;
use raft::eraftpb::Message;

/// The peers a node does not talk to now. Shared with the admin endpoint.
#[derive(Clone, Debug, Default)]
pub(crate) struct DropRules(Arc<RwLock<BTreeSet<u64>>>);

impl DropRules {
    /// Drops every message to `peers` from now on (replacing the previous rule).
    pub(crate) fn set(&self, peers: impl IntoIterator<Item = NodeId>) {
        let mut rules = self.0.write().unwrap_or_else(|e| e.into_inner());
        *rules = peers.into_iter().map(NodeId::get).collect();
    }

    /// The peers cut off.
    pub(crate) fn peers(&self) -> Vec<u64> {
        let rules = self.0.read().unwrap_or_else(|e| e.into_inner());
        rules.iter().copied().collect()
    }

    fn drops(&self, to: u64) -> bool {
        let rules = self.0.read().unwrap_or_else(|e| e.into_inner());
        rules.contains(&to)
    }
}

/// `inner`, except for messages to the peers of `rules`.
pub(crate) struct Partitionable<T> {
    pub(crate) inner: T,
    pub(crate) rules: DropRules,
}

impl<T: Transport> Transport for Partitionable<T> {
    fn send(&mut self, message: Message) {
        if !self.rules.drops(message.to) {
            self.inner.send(message);
        }
    }

    fn set_peer(&mut self, id: NodeId, address: Option<&str>) {
        self.inner.set_peer(id, address);
    }

    fn shut_down(&mut self) {
        self.inner.shut_down();
    }
}
