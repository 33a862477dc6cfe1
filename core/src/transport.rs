//! How Raft messages travel between nodes. The node thread hands outgoing messages to a
//! [`Transport`] and never waits on it; incoming messages reach the node through its [`Inbox`].
//! `transport::tcp` is the real one; tests and the simulator bring their own.

pub mod local;
pub mod tcp;

use crossbeam_channel::{Sender, TrySendError};
use raft::eraftpb::Message;

use crate::node::driver::Input;
use crate::token::NodeId;

/// Carries a node's outgoing messages. Implementations must not block: a full queue drops
/// the message (Raft retransmits what matters).
pub trait Transport: Send + 'static {
    /// Sends `message` to `message.to`, or drops it.
    fn send(&mut self, message: Message);

    /// A membership change named a peer's address (`None`: the peer left). The default
    /// ignores it, for transports whose peers are fixed.
    fn set_peer(&mut self, id: NodeId, address: Option<&str>) {
        let _ = (id, address);
    }

    /// The node stopped: release threads and sockets.
    fn shut_down(&mut self) {}
}

/// Where a transport delivers the messages it receives for one node. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Inbox {
    pub(crate) to: NodeId,
    pub(crate) input: Sender<Input>,
}

impl Inbox {
    /// The node this inbox belongs to.
    pub fn node(&self) -> NodeId {
        self.to
    }

    /// Hands a received message to the node. Returns `false` if it was dropped: the node's
    /// queue is full (it is behind; Raft will retransmit), it has stopped, or the message is
    /// addressed to another node.
    pub fn deliver(&self, message: Message) -> bool {
        if message.to != self.to.get() {
            return false;
        }
        match self.input.try_send(Input::Peer(message)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}
