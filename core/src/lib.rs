//! fencekit: a split-brain prevention kernel.
//!
//! Two nodes must never both act as the leader. fencekit combines quorum leadership with
//! terms (the *generation*), a leader lease that ends before a successor can exist, and a
//! fencing check on the storage side that rejects every write made under an older generation,
//! even when a paused or partitioned leader wakes up believing it still leads.
//!
//! This crate is the kernel: no async, no Wasm, no C. It holds:
//!
//! 1. **Tokens.** A [`Token`] is a [`Generation`] and the [`NodeId`] holding it:
//!
//!    ```
//!    use fencekit::{Generation, NodeId, Token};
//!    let token = Token::new(Generation::new(7)?, NodeId::new(2)?);
//!    assert_eq!(Token::from_bytes(&token.to_bytes())?, token);
//!    assert!(Generation::new(0).is_err()); // generation 0 means "none"
//!    # Ok::<(), fencekit::FenceError>(())
//!    ```
//!
//! 2. **The fence.** The storage opens a [`Fence`] on a directory and checks the token of every
//!    write. Advances are durable before they are reported, and survive a crash:
//!
//!    ```
//!    use fencekit::{Fence, FenceOptions, Token, Verdict};
//!    let dir = tempfile::tempdir()?;
//!    let fence = Fence::open(dir.path(), FenceOptions::default())?;
//!    let jobs = fence.register(b"jobs/nightly-report")?;
//!
//!    let old_leader = Token::from_parts(4, 1)?;
//!    let new_leader = Token::from_parts(5, 2)?;
//!    assert!(fence.check(jobs, old_leader)?.is_accepted());
//!    assert_eq!(fence.check(jobs, new_leader)?, Verdict::Advanced { previous: Some(old_leader) });
//!    // The deposed leader wakes up from a pause and tries to write:
//!    assert_eq!(fence.check(jobs, old_leader)?, Verdict::Stale { current: new_leader });
//!
//!    drop(fence);
//!    let fence = Fence::open(dir.path(), FenceOptions::default())?;
//!    assert_eq!(fence.check_key(b"jobs/nightly-report", old_leader)?,
//!               Verdict::Stale { current: new_leader });
//!    # Ok::<(), Box<dyn std::error::Error>>(())
//!    ```
//!
//! 3. **The write-ahead generation log.** [`Wal`] is the durable record under the fence (and,
//!    from the Raft node on, under Raft's state): checksummed records in preallocated segments,
//!    group commit, torn-tail recovery, compaction.
//!
//! 4. **Time.** Lease arithmetic reads a [`time::Clock`], real or simulated.
//!
//! 5. **The Raft node.** [`node::Node`] runs one member of a Raft group on its own thread
//!    ([`node::Replica`] is the same state machine without a thread, for simulators). Its
//!    [`node::Node::leadership`] is usable leadership: after a commit in the term, and only
//!    while a lease computed by [`lease::Timing`] holds, so it ends before any successor can be
//!    elected. [`raft_storage`] keeps Raft's state in the log; [`transport`] carries messages
//!    (TCP, or in-process); [`detect::audit`] finds split-brain evidence in many statuses.
//!
//! 6. **Errors.** One type per layer: [`FenceError`] (what [`FenceFault`] went wrong in the
//!    fence), [`LogError`] for the log, [`TransportError`] for TCP and TLS, [`NodeError`] for the
//!    node, wrapping the others. Each has `kind()`, an [`ErrorKind`] to match on whatever the
//!    layer:
//!
//!    ```
//!    use fencekit::{ErrorKind, FenceFault, Token};
//!    let err = Token::from_parts(0, 1).unwrap_err();
//!    assert_eq!(err.kind(), ErrorKind::InvalidToken);
//!    assert!(matches!(err.fault(), FenceFault::InvalidToken(_)));
//!    ```
//!
//! # Driving a group: a tutorial
//!
//! One node first, on the in-process network ([`transport::local::LocalNetwork`]; a real
//! group uses [`transport::tcp`] with mutual TLS). A node runs on its own thread: start it,
//! wait until [`node::Node::leadership`] is `Some`, propose, and wait for the commit. Every
//! committed proposal comes out of [`node::Node::applied`] on every member, in log order.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use fencekit::node::{Applied, Node, NodeConfig};
//! use fencekit::transport::{Inbox, local::LocalNetwork};
//! use fencekit::{ClusterId, NodeId};
//! # fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
//! #     let deadline = Instant::now() + Duration::from_secs(20);
//! #     loop {
//! #         if let Some(t) = f() { return t; }
//! #         assert!(Instant::now() < deadline, "no {what} within 20 s");
//! #         std::thread::sleep(Duration::from_millis(5));
//! #     }
//! # }
//!
//! let net = LocalNetwork::new();
//! let dir = tempfile::tempdir()?;
//! let one = NodeId::new(1)?;
//! // Member 1 of group 0xC1, whose only voter is itself. The directory holds its log.
//! let config = NodeConfig::new(one, ClusterId::new(0xC1), dir.path(), vec![one]);
//! let node = Node::start(config, |inbox: Inbox| Ok(net.attach(inbox)))?;
//!
//! let leadership = until("leader", || node.leadership());
//! assert_eq!(leadership.token.holder, one);
//! let index = node.propose(b"job 1".to_vec())?.wait(Duration::from_secs(5))?;
//! let entry = until("entry", || match node.applied().try_recv() {
//!     Ok(Applied::Entry { index: i, data, .. }) if i == index => Some(data),
//!     _ => None,
//! });
//! assert_eq!(entry, b"job 1");
//! node.stop();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Three nodes, a storage and a paused leader. The leader's [`node::Leadership`] carries its
//! token (the term and its id) and the instant its lease ends; every write it makes carries the
//! token, and the storage checks it with a [`Fence`]. Here the leader is cut off from the
//! others, as a long pause or a partition would: its lease runs out (it stops reporting
//! leadership without hearing from anyone), the others elect a successor with a higher
//! generation, and once the successor has written, the old leader's late write is refused.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use fencekit::node::{Node, NodeConfig};
//! use fencekit::transport::{Inbox, local::LocalNetwork};
//! use fencekit::{ClusterId, Fence, FenceOptions, NodeId, Verdict};
//! # fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
//! #     let deadline = Instant::now() + Duration::from_secs(20);
//! #     loop {
//! #         if let Some(t) = f() { return t; }
//! #         assert!(Instant::now() < deadline, "no {what} within 20 s");
//! #         std::thread::sleep(Duration::from_millis(5));
//! #     }
//! # }
//!
//! let net = LocalNetwork::new();
//! let voters: Vec<NodeId> = (1..=3).map(NodeId::new).collect::<Result<_, _>>()?;
//! let dirs = [tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?];
//! let nodes = voters
//!     .iter()
//!     .zip(&dirs)
//!     .map(|(&id, dir)| {
//!         let config = NodeConfig::new(id, ClusterId::new(0xC1), dir.path(), voters.clone());
//!         Node::start(config, |inbox: Inbox| Ok(net.attach(inbox)))
//!     })
//!     .collect::<Result<Vec<Node>, _>>()?;
//! let leader_of = |skip: Option<NodeId>| {
//!     until("leader", || {
//!         nodes.iter().filter(|n| Some(n.id()) != skip).find_map(|n| n.leadership())
//!     })
//! };
//!
//! // The storage: a fence on its own directory, one resource per thing writes change.
//! let storage = tempfile::tempdir()?;
//! let fence = Fence::open(storage.path(), FenceOptions::default())?;
//! let report = fence.register(b"reports/nightly")?;
//!
//! let first = leader_of(None);
//! assert!(fence.check(report, first.token)?.is_accepted()); // the first write lands
//!
//! // The leader is cut off (or paused): its lease ends on its own clock...
//! let old = first.token.holder;
//! net.isolate(old);
//! let old_node = nodes.iter().find(|n| n.id() == old).expect("a member");
//! until("lease end", || old_node.leadership().is_none().then_some(()));
//! // ...before the others elect a successor, whose generation is higher.
//! let second = leader_of(Some(old));
//! assert!(second.token.generation > first.token.generation);
//! assert!(matches!(fence.check(report, second.token)?, Verdict::Advanced { .. }));
//!
//! // The old leader wakes up and tries to write with the token it had: refused.
//! assert_eq!(fence.check(report, first.token)?, Verdict::Stale { current: second.token });
//! for node in &nodes {
//!     node.stop();
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`node::Replica`] is the same member without a thread or a clock of its own: the caller
//! ticks it, steps messages into it and hands what it returns to the network (the simulator in
//! `sim/` drives replicas that way, deterministically).
//!
//! # Cargo features
//!
//! - `dev-certs`: development certificates, `transport::tcp::dev_certs`: a CA and node
//!   certificates for a test group, samples and demos (pulls in `rcgen`). Production groups
//!   use their own PKI with the same identity URIs ([`transport::tcp::tls`]).
//!
//! The deliberate bugs with which fencekit's own simulator proves that its checkers catch what
//! they claim are not a feature: they exist only in the simulator's separate build of these
//! sources (`sim/kernel/`), never in this crate, whatever the cargo command
//! ([`PLANTED_COMPILED_IN`]).

pub mod cluster;
pub mod coordinators;
pub mod detect;
pub mod disk;
pub mod error;
pub mod fence;
mod fork;
pub mod inspect;
pub mod lease;
pub mod ledger;
pub mod limits;
pub mod node;
#[cfg(fencekit_planted)]
#[doc(hidden)]
pub mod planted;
#[cfg(not(fencekit_planted))]
mod planted;
pub mod policy;
pub mod raft_storage;
pub mod source;
pub mod term;
pub mod time;
pub mod token;
pub mod transport;
pub mod wal;

pub use cluster::ClusterId;
pub use error::{
    ErrorKind, FenceError, FenceFault, Forked, LogError, NodeError, OutOfRange, TransportError,
};

/// Whether this build of the kernel contains the simulator's planted bugs: `false` in the
/// `fencekit` package whatever features are on; `true` only in the simulator's own build of
/// these sources (`sim/kernel/`, package `fencekit-planted`). The shipped crates assert it.
pub const PLANTED_COMPILED_IN: bool = cfg!(fencekit_planted);

pub use fence::{
    Counters, Fence, FenceOptions, Rebase, ResourceId, SourceId, Verdict, WriteVerdict,
};
pub use policy::{
    ConflictResolution, RejectConflicts, Rejection, TieBreaker, Validation, WriteValidator,
};
pub use source::Source;
pub use term::{LogIndex, Term};
pub use token::{Generation, NodeId, Token};
pub use wal::{Position, Record, RecordKind, RecoveryReport, Wal, WalOptions};
