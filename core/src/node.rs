//! The Raft node: leadership with terms, a lease that ends before any successor, events,
//! proposals, transfer and membership.
pub mod config;
pub mod event;
pub mod membership;
pub mod replica;
pub mod status;

pub use config::NodeConfig;
pub use event::{Applied, Event, Leadership, LostReason};
pub use membership::MembershipChange;
pub use replica::{Output, ProposalId, Replica};
pub use status::{Role, Status};
