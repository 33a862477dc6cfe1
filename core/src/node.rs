//! The Raft node: leadership with terms, a lease that ends before any successor, events,
//! proposals, transfer and membership.
//!
//! [`Replica`] is the deterministic state machine (no thread, no clock of its own); [`Node`]
//! runs one on its own thread, fed by channels, ticking on a [`Clock`], and answers queries
//! from any thread. `leadership()` is computed at the moment it is asked, from the lease
//! deadline the node thread last published: a node thread that is paused (stopped process,
//! long stall) cannot extend it, so the answer turns to `None` when the deadline passes, before
//! the thread runs again.

pub mod config;
pub(crate) mod driver;
pub mod event;
pub mod membership;
mod proposal_len;
pub mod replica;
pub mod status;
pub mod step_guard;
pub mod syncer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

pub use crate::limits::PROPOSE_BATCH_MAX;
pub use config::NodeConfig;
pub use event::{Applied, Event, Leadership, LostReason};
pub use membership::MembershipChange;
pub use proposal_len::{validate_batch_len, validate_proposal_len};
pub use replica::{Output, ProposalId, Replica};
pub use status::{Role, Status};
pub use syncer::Syncer;

use crate::error::NodeError;
use crate::fork::OpenedIn;
use crate::limits::{EVENT_QUEUE_MAX, INPUT_QUEUE_MAX};
use crate::term::LogIndex;
use crate::time::{Clock, MonotonicClock};
use crate::token::NodeId;
use crate::transport::{Inbox, Transport};
use driver::{Command, Driver, Input};

/// What the node thread last published.
#[derive(Debug, Default)]
pub(crate) struct View {
    leadership: Option<Leadership>,
    status: Option<Status>,
    ended: Option<Ended>,
}

/// How a node ended.
#[derive(Clone, Debug)]
pub(crate) enum Ended {
    /// Asked to stop, or removed from the group.
    Stopped(String),
    /// A failure made going on unsafe (I9): a panic on the node thread, a log that could not
    /// be written.
    Failed(String),
}

impl Ended {
    /// The error a call on the ended node gets.
    pub(crate) fn error(&self) -> NodeError {
        match self {
            Ended::Stopped(_) => NodeError::Stopped,
            Ended::Failed(cause) => NodeError::Failed(cause.clone()),
        }
    }
}

impl View {
    /// The error a call on an ended node gets, if it ended.
    fn ended_error(&self) -> Option<NodeError> {
        self.ended.as_ref().map(Ended::error)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Shared {
    view: Mutex<View>,
    events_dropped: AtomicU64,
}

/// The answer to a proposal or membership change, once it is committed.
#[derive(Debug)]
pub struct Ticket {
    reply: Receiver<Result<LogIndex, NodeError>>,
    shared: Arc<Shared>,
}

impl Ticket {
    /// Waits for the outcome: the committed index, or why it was not committed
    /// ([`NodeError::NotLeader`] when another leader's entry took its place).
    pub fn wait(self, timeout: Duration) -> Result<LogIndex, NodeError> {
        match self.reply.recv_timeout(timeout) {
            Ok(result) => result,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                Err(NodeError::Timeout("waiting for a proposal to commit"))
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(self
                .shared
                .lock()
                .ended_error()
                .unwrap_or(NodeError::Stopped)),
        }
    }

    /// The outcome if it is known already.
    pub fn try_result(&self) -> Option<Result<LogIndex, NodeError>> {
        self.reply.try_recv().ok()
    }
}

/// A running member of a Raft group. `Send + Sync`: share it by reference or `Arc`.
pub struct Node {
    id: NodeId,
    shared: Arc<Shared>,
    input: Sender<Input>,
    events: Receiver<Event>,
    applied: Receiver<Applied>,
    clock: Arc<dyn Clock>,
    thread: Mutex<Option<JoinHandle<()>>>,
    test_hooks: bool,
    /// In a child after fork the node thread does not exist: every call refuses.
    opened_in: OpenedIn,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts a node on the real monotonic clock. `transport` is built with the node's inbox.
    pub fn start<T: Transport>(
        config: NodeConfig,
        transport: impl FnOnce(Inbox) -> Result<T, NodeError>,
    ) -> Result<Node, NodeError> {
        Node::start_with_clock(config, Arc::new(MonotonicClock::new()), transport)
    }

    /// Starts a node on `clock`.
    pub fn start_with_clock<T: Transport>(
        config: NodeConfig,
        clock: Arc<dyn Clock>,
        transport: impl FnOnce(Inbox) -> Result<T, NodeError>,
    ) -> Result<Node, NodeError> {
        let mut replica = Replica::open(&config, clock.now())?;
        let first = replica.process(clock.now())?;
        let (input_tx, input_rx) = bounded(INPUT_QUEUE_MAX);
        let transport = transport(Inbox {
            to: config.id,
            input: input_tx.clone(),
        })?;
        let (events_tx, events_rx) = bounded(EVENT_QUEUE_MAX);
        let (applied_tx, applied_rx) = unbounded();
        let shared = Arc::new(Shared::default());
        let (synced_tx, synced_rx) = unbounded();
        let syncer = Syncer::spawn(format!("fencekit-sync-{}", config.id), move |done| {
            // The node thread ended: nobody waits for the report.
            let _ = synced_tx.send(done);
        })
        .map_err(|source| NodeError::Spawn {
            op: "spawn the log's sync thread",
            source,
        })?;
        let driver = Driver {
            replica,
            transport,
            clock: clock.clone(),
            shared: shared.clone(),
            input: input_rx,
            events: events_tx,
            events_overflow: events_rx.clone(),
            applied: applied_tx,
            tickets: HashMap::new(),
            next_ticket: 1,
            stopping: false,
            test_hooks: config.test_hooks,
            syncer,
            synced: synced_rx,
        };
        // The status is there from the first moment, not only once the thread has run.
        driver.publish(clock.now());
        let thread = std::thread::Builder::new()
            .name(format!("fencekit-node-{}", config.id))
            .spawn(move || driver.run(first))
            .map_err(|source| NodeError::Spawn {
                op: "spawn the node thread",
                source,
            })?;
        Ok(Node {
            id: config.id,
            shared,
            input: input_tx,
            events: events_rx,
            applied: applied_rx,
            clock,
            thread: Mutex::new(Some(thread)),
            test_hooks: config.test_hooks,
            opened_in: OpenedIn::here(),
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Usable leadership now (I4): `Some` only after this node committed an entry in its term
    /// and while its lease holds on the node's clock, and never once the node stopped or
    /// failed. Computed at the call, so a paused node thread cannot keep it alive.
    pub fn leadership(&self) -> Option<Leadership> {
        let now = self.clock.now();
        let view = self.shared.lock();
        if view.ended.is_some() || !self.opened_in.is_here() {
            return None;
        }
        view.leadership.filter(|l| now < l.lease_deadline)
    }

    /// The node's view, with leadership and times as of now.
    pub fn status(&self) -> Result<Status, NodeError> {
        self.opened_in.check("node")?;
        let now = self.clock.now();
        let view = self.shared.lock();
        let mut status = view.status.clone().ok_or(NodeError::Stopped)?;
        let elapsed = now.saturating_duration_since(status.at);
        status.leadership = if view.ended.is_some() {
            None
        } else {
            view.leadership.filter(|l| now < l.lease_deadline)
        };
        // A stopped or failed node takes no part: whatever Raft role it had when its thread
        // ended, it neither leads nor knows a leader now, and its status must not say
        // otherwise (an audit would count a stopped leader as one).
        if let Some(ended) = &view.ended {
            match ended {
                Ended::Failed(cause) => status.failure = Some(cause.clone()),
                Ended::Stopped(_) => status.stopped = true,
            }
            status.role = Role::Follower;
            status.leader = None;
        }
        status.lease_remaining = status
            .leadership
            .map(|l| l.lease_deadline.saturating_duration_since(now));
        status.last_quorum_contact = status.last_quorum_contact.map(|d| d + elapsed);
        status.events_dropped = self.shared.events_dropped.load(Ordering::Relaxed);
        status.at = now;
        Ok(status)
    }

    /// Why the node stopped or failed, if it has.
    pub fn stopped(&self) -> Option<String> {
        match &self.shared.lock().ended {
            None => None,
            Some(Ended::Stopped(reason)) => Some(reason.clone()),
            Some(Ended::Failed(cause)) => Some(format!("the node failed: {cause}")),
        }
    }

    /// Why the node failed, if it did (I9): a panic on its thread, or a log it could not
    /// write. A failed node reports no leadership, and every call answers [`NodeError::Failed`].
    pub fn failure(&self) -> Option<String> {
        match &self.shared.lock().ended {
            Some(Ended::Failed(cause)) => Some(cause.clone()),
            _ => None,
        }
    }

    /// `Err(NodeError::Forked)` in a child process after `fork`: the node, its thread and its
    /// queues are its parent's, and the child must take no part. A host that reads
    /// [`Node::events`] or [`Node::applied`] from a process that may have forked calls this
    /// first; every other method checks it by itself.
    pub fn check_process(&self) -> Result<(), NodeError> {
        Ok(self.opened_in.check("node")?)
    }

    /// The events, in order. A host that lags by more than the queue loses the oldest
    /// (counted in [`Status::events_dropped`]); [`Node::leadership`] is always current.
    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    /// Committed log items, in index order: the host's proposals and snapshots. After a
    /// restart, delivery starts again from the latest snapshot; a host skips what it applied.
    pub fn applied(&self) -> &Receiver<Applied> {
        &self.applied
    }

    /// Proposes `data` (at least one byte: [`NodeError::EmptyProposal`]). Refused at once with
    /// [`NodeError::NotLeader`] when this node is known not
    /// to lead; otherwise the ticket completes when the entry commits, or fails.
    pub fn propose(&self, data: Vec<u8>) -> Result<Ticket, NodeError> {
        if data.is_empty() {
            return Err(NodeError::EmptyProposal);
        }
        self.refuse_if_not_leader()?;
        let (tx, rx) = bounded(1);
        self.send(Input::Propose(data, tx))?;
        Ok(self.ticket(rx))
    }

    /// Proposes every item of `batch` at once, in order: raft-rs takes them as one proposal,
    /// so they reach the log in one Ready, are made durable by one sync on each node and are
    /// replicated in one append per follower. One ticket per item, in the same order. All or
    /// nothing: an empty item ([`NodeError::EmptyProposal`]), one over the proposal size limit, a
    /// batch of more than [`PROPOSE_BATCH_MAX`] items or none ([`NodeError::InvalidBatch`]) is
    /// refused whole, as is a batch that reaches a node that does not lead (every ticket then
    /// fails with [`NodeError::NotLeader`]).
    pub fn propose_batch(&self, batch: Vec<Vec<u8>>) -> Result<Vec<Ticket>, NodeError> {
        validate_batch_len(batch.len())?;
        if batch.iter().any(Vec::is_empty) {
            return Err(NodeError::EmptyProposal);
        }
        for data in &batch {
            validate_proposal_len(data.len())?;
        }
        self.refuse_if_not_leader()?;
        let mut items = Vec::with_capacity(batch.len());
        let mut tickets = Vec::with_capacity(batch.len());
        for data in batch {
            let (tx, rx) = bounded(1);
            items.push((data, tx));
            tickets.push(self.ticket(rx));
        }
        self.send(Input::ProposeBatch(items))?;
        Ok(tickets)
    }

    /// Changes the membership (joint consensus for several changes at once). The ticket
    /// completes when the change is committed.
    pub fn change_membership(&self, changes: Vec<MembershipChange>) -> Result<Ticket, NodeError> {
        self.refuse_if_not_leader()?;
        let (tx, rx) = bounded(1);
        self.send(Input::Command(Command::Membership(changes, tx)))?;
        Ok(self.ticket(rx))
    }

    /// Revokes this leader's lease, then hands leadership to `to`.
    pub fn transfer_leadership(&self, to: NodeId) -> Result<(), NodeError> {
        let (tx, rx) = bounded(1);
        self.send(Input::Command(Command::Transfer(to, tx)))?;
        rx.recv().map_err(|_| self.ended_error())?
    }

    /// Revokes this leader's lease and hands leadership to the most up-to-date other voter,
    /// which it returns.
    pub fn step_down(&self) -> Result<NodeId, NodeError> {
        let (tx, rx) = bounded(1);
        self.send(Input::Command(Command::StepDown(tx)))?;
        rx.recv().map_err(|_| self.ended_error())?
    }

    /// Compacts the log: the host's state as of `index` (an index it has applied) is `data`.
    pub fn compact(&self, index: LogIndex, data: Vec<u8>) -> Result<(), NodeError> {
        let (tx, rx) = bounded(1);
        self.send(Input::Command(Command::Compact(index, data, tx)))?;
        rx.recv().map_err(|_| self.ended_error())?
    }

    /// Test hook: stalls the node thread for `d`, as a long GC pause or a descheduled thread
    /// would. Queries from other threads keep working meanwhile.
    #[doc(hidden)]
    pub fn stall_for_testing(&self, d: Duration) -> Result<(), NodeError> {
        self.send(Input::Command(Command::Stall(d)))
    }

    /// Test hook: makes the node thread panic, as a bug in the kernel or in raft-rs would, to
    /// show that the failure is reported through every API; returns once it is (at most a
    /// few seconds). Does nothing unless the node was started with
    /// [`NodeConfig::test_hooks`].
    #[doc(hidden)]
    pub fn panic_for_testing(&self) -> Result<(), NodeError> {
        self.send(Input::Command(Command::Panic))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.shared.lock().ended.is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            if !self.test_hooks {
                break;
            }
        }
        Ok(())
    }

    /// Stops the node: the lease ends, pending tickets fail, the thread exits. Stopping a
    /// stopped node does nothing.
    pub fn stop(&self) {
        if !self.opened_in.is_here() {
            // The node thread is the parent's; the child's copy has nothing to stop.
            return;
        }
        let _ = self.input.send(Input::Command(Command::Stop));
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            // The node thread catches its own panics; one that escaped it is a failure too.
            if thread.join().is_err() {
                let mut view = self.shared.lock();
                view.leadership = None;
                view.ended = Some(Ended::Failed("the node thread panicked".into()));
            }
        }
    }

    fn ticket(&self, reply: Receiver<Result<LogIndex, NodeError>>) -> Ticket {
        Ticket {
            reply,
            shared: self.shared.clone(),
        }
    }

    /// The error for a call that found the node gone.
    fn ended_error(&self) -> NodeError {
        self.shared
            .lock()
            .ended_error()
            .unwrap_or(NodeError::Stopped)
    }

    fn refuse_if_not_leader(&self) -> Result<(), NodeError> {
        self.opened_in.check("node")?;
        let view = self.shared.lock();
        if let Some(e) = view.ended_error() {
            return Err(e);
        }
        match &view.status {
            Some(s) if s.role != Role::Leader => Err(NodeError::NotLeader {
                hint: s.leader.map(NodeId::get),
            }),
            _ => Ok(()),
        }
    }

    fn send(&self, input: Input) -> Result<(), NodeError> {
        self.opened_in.check("node")?;
        let ended = self.shared.lock().ended.clone();
        if let Some(ended) = ended {
            driver::refuse(input, &ended);
            return Err(ended.error());
        }
        self.input.send(input).map_err(|_| self.ended_error())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}
