//! An in-process network for groups of nodes in one process (tests, benchmarks, demos):
//! messages go straight into the receiver's inbox, and links can be cut and healed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use raft::eraftpb::Message;

use crate::token::NodeId;
use crate::transport::{Inbox, Transport};

#[derive(Debug, Default)]
struct Links {
    inboxes: HashMap<u64, Inbox>,
    cut: HashSet<(u64, u64)>,
}

/// The network: cheap to clone, shared by all its nodes.
#[derive(Clone, Debug, Default)]
pub struct LocalNetwork {
    links: Arc<Mutex<Links>>,
}

impl LocalNetwork {
    /// An empty network.
    pub fn new() -> LocalNetwork {
        LocalNetwork::default()
    }

    /// Attaches a node: pass this to `Node::start` as its transport factory.
    pub fn attach(&self, inbox: Inbox) -> LocalTransport {
        self.lock().inboxes.insert(inbox.node().get(), inbox);
        LocalTransport { net: self.clone() }
    }

    /// Cuts every link between `node` and the others, both ways.
    pub fn isolate(&self, node: NodeId) {
        let mut links = self.lock();
        let others: Vec<u64> = links.inboxes.keys().copied().collect();
        for other in others {
            links.cut.insert((node.get(), other));
            links.cut.insert((other, node.get()));
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    fn lock(&self) -> MutexGuard<'_, Links> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One node's end of a [`LocalNetwork`].
#[derive(Debug)]
pub struct LocalTransport {
    net: LocalNetwork,
}

impl Transport for LocalTransport {
    fn send(&mut self, message: Message) {
        let links = self.net.lock();
        if links.cut.contains(&(message.from, message.to)) {
            return;
        }
        if let Some(inbox) = links.inboxes.get(&message.to) {
            inbox.deliver(message);
        }
    }
}
