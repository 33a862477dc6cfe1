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
//!    # Ok::<(), fencekit::Error>(())
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
//! # Cargo features
//!
//! - `dev-certs`: development certificates, `transport::tcp::dev_certs`: a CA and node
//!   certificates for a test group, samples and demos (pulls in `rcgen`). Production groups
//!   use their own PKI with the same identity URIs ([`transport::tcp::tls`]).
//! - `planted-bugs`: **test-only, not part of the API.** It lets fencekit's own simulator
//!   switch on deliberate bugs, one thread at a time, to prove that its checkers catch them.
//!   Never enable it in a build that serves anything.

pub mod coordinators;
pub mod detect;
pub mod disk;
pub mod error;
pub mod fence;
mod fork;
pub mod inspect;
pub mod lease;
pub mod limits;
pub mod node;
#[doc(hidden)]
pub mod planted;
pub mod policy;
pub mod raft_storage;
pub mod source;
pub mod time;
pub mod token;
pub mod transport;
pub mod wal;

pub use error::Error;
pub use fence::{
    Counters, Fence, FenceOptions, Rebase, ResourceId, SourceId, Verdict, WriteVerdict,
};
pub use policy::{
    ConflictResolution, RejectConflicts, Rejection, TieBreaker, Validation, WriteValidator,
};
pub use source::Source;
pub use token::{Generation, NodeId, Token};
pub use wal::{Position, Record, RecordKind, RecoveryReport, Wal, WalOptions};
