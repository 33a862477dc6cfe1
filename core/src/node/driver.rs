//! The node thread: owns the [`Replica`], turns channel input and clock ticks into steps, and
//! hands the output on: the published view first (so a revoked lease is visible before any
//! message of the same step leaves), then messages, committed entries, events and tickets.
//!
//! The log is synced beside it, by a [`Syncer`]: the node thread hands each sync over and goes
//! on ticking, stepping and proposing; the replica holds back every message that depends on
//! the records (DESIGN.md I2) until the syncer's report comes back on its own channel. The node
//! thread never waits on the disk, except to rewrite a log grown to several times its live
//! state, to compact when the host asks, and at start.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use raft::eraftpb::Message;

use crate::error::{LogError, NodeError};
use crate::limits::INPUTS_PER_WAKE;
use crate::node::event::{Applied, Event, LostReason};
use crate::node::membership::MembershipChange;
use crate::node::replica::{Output, ProposalId, Replica};
use crate::node::syncer::Syncer;
use crate::node::{Ended, Shared, View};
use crate::term::LogIndex;
use crate::time::{Clock, Instant};
use crate::token::NodeId;
use crate::transport::Transport;
use crate::wal::Position;

/// Where a proposal's outcome goes.
pub(crate) type Reply = Sender<Result<LogIndex, NodeError>>;

/// What the node thread receives.
pub(crate) enum Input {
    Peer(Message),
    Propose(Vec<u8>, Sender<Result<LogIndex, NodeError>>),
    ProposeBatch(Vec<(Vec<u8>, Reply)>),
    Command(Command),
}

pub(crate) enum Command {
    Transfer(NodeId, Sender<Result<(), NodeError>>),
    StepDown(Sender<Result<NodeId, NodeError>>),
    Membership(Vec<MembershipChange>, Sender<Result<LogIndex, NodeError>>),
    Compact(LogIndex, Vec<u8>, Sender<Result<(), NodeError>>),
    /// Test hook: the thread stops dead for this long, as in a long GC pause.
    Stall(Duration),
    /// Test hook: the thread panics (only with `NodeConfig::test_hooks`).
    Panic,
    Stop,
}

pub(crate) struct Driver<T: Transport> {
    pub(crate) replica: Replica,
    pub(crate) transport: T,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) input: Receiver<Input>,
    pub(crate) events: Sender<Event>,
    /// The events channel's own receiver, to drop the oldest event when the host lags.
    pub(crate) events_overflow: Receiver<Event>,
    pub(crate) applied: Sender<Applied>,
    pub(crate) tickets: HashMap<ProposalId, Sender<Result<LogIndex, NodeError>>>,
    pub(crate) next_ticket: ProposalId,
    pub(crate) stopping: bool,
    pub(crate) test_hooks: bool,
    /// Runs the replica's syncs; reports on `synced`.
    pub(crate) syncer: Syncer,
    pub(crate) synced: Receiver<Result<Position, NodeError>>,
}

impl<T: Transport> Driver<T> {
    /// Runs until stopped, or until a failure makes going on unsafe: a log that cannot be
    /// written (votes and acknowledgements could no longer be made durable), or a panic on
    /// this thread (raft-rs's `fatal!`, a bug). A failure is published at once (I9): no
    /// leadership, a `Lost { Failed }` event, every call answered with the cause.
    pub(crate) fn run(mut self, first: Output) {
        let outcome = catch_unwind(AssertUnwindSafe(|| self.serve(first)));
        // What is queued is synced (and nothing more is asked); the messages it held never
        // leave.
        self.syncer.stop();
        match outcome {
            Ok(None) => self.finish(),
            Ok(Some(e)) => self.fail(format!("its log failed: {e}")),
            Err(panic) => self.fail(format!(
                "the node thread panicked: {}",
                panic_message(panic.as_ref())
            )),
        }
    }

    /// The loop: input, ticks, processing. Returns the failure that ended it, if any.
    fn serve(&mut self, first: Output) -> Option<NodeError> {
        let tick = self.replica.timing().tick;
        let catch_up_max = self.replica.timing().election_tick * 2;
        let mut next_tick = self.clock.now().saturating_add(tick);
        self.deliver(self.clock.now(), first);
        let mut woken_by: Option<Input> = None;
        let mut synced: Option<Result<Position, NodeError>> = None;
        loop {
            // First thing on waking, whatever woke us: a lapsed lease is withdrawn (I4).
            let now = self.clock.now();
            self.replica.expire(now);
            self.publish(now);

            // Syncs that finished: the messages they held go out with this step's output.
            let mut result = Ok(());
            for done in synced.take().into_iter().chain(self.synced.try_iter()) {
                result = result
                    .and(done)
                    .and_then(|through| self.replica.persisted(through, now));
            }
            if let (Ok(()), Some(input)) = (&result, woken_by.take()) {
                result = self.handle(input, now);
            }
            for _ in 0..INPUTS_PER_WAKE {
                if result.is_err() || self.stopping {
                    break;
                }
                match self.input.try_recv() {
                    Ok(input) => result = self.handle(input, now),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => self.stopping = true,
                }
            }
            // After a stall, catch up a bounded number of ticks: enough for raft to notice
            // that time passed (step down, campaign), not a burst of hundreds.
            let mut ticks = 0;
            while next_tick <= now && ticks < catch_up_max {
                self.replica.tick(now);
                next_tick = next_tick.saturating_add(tick);
                ticks += 1;
            }
            if next_tick <= now {
                next_tick = now.saturating_add(tick);
            }
            match result.and_then(|()| self.replica.process_async(now)) {
                Ok((out, sync)) => {
                    // The disk starts first; the messages that need no sync leave meanwhile.
                    if let Some(request) = sync {
                        self.syncer.request(request);
                    }
                    self.deliver(now, out);
                }
                Err(e) => return Some(e),
            }
            if self.stopping || self.replica.is_removed() {
                return None;
            }
            let wait = next_tick.saturating_duration_since(self.clock.now());
            crossbeam_channel::select! {
                recv(self.input) -> input => match input {
                    Ok(input) => woken_by = Some(input),
                    Err(_) => self.stopping = true,
                },
                recv(self.synced) -> done => {
                    // The syncer's thread ended without a report: it panicked.
                    synced = Some(done.unwrap_or_else(|_| {
                        Err(NodeError::Failed("the log's sync thread ended".into()))
                    }));
                }
                default(wait) => {}
            }
        }
    }

    /// Ends a node that stopped as asked (or was removed): the lease ends, pending tickets
    /// fail, queued calls are refused.
    fn finish(&mut self) {
        let now = self.clock.now();
        let mut out = self.replica.shut_down();
        if self.replica.is_removed() {
            // The Lost { Removed } event went out already; nothing more to say.
            out.events.retain(|e| !matches!(e, Event::Lost { .. }));
        }
        self.shared.lock().ended = Some(Ended::Stopped(if self.replica.is_removed() {
            "the node was removed from the group".into()
        } else {
            "the node was stopped".into()
        }));
        self.deliver(now, out);
        self.release(&Ended::Stopped(String::new()));
    }

    /// Ends a node that failed. The replica is not touched again: after a panic its state is
    /// unknown. Leadership is withdrawn before anything else, then the host is told.
    fn fail(&mut self, cause: String) {
        log::error!("fencekit node {}: failed: {cause}", self.replica.id());
        let token = {
            let mut view = self.shared.lock();
            view.ended = Some(Ended::Failed(cause.clone()));
            view.leadership.take().map(|l| l.token)
        };
        if let Some(token) = token {
            self.push_event(Event::Lost {
                token,
                reason: LostReason::Failed(cause.clone()),
            });
        }
        self.release(&Ended::Failed(cause));
    }

    /// Fails every waiting ticket with the error of `ended`, stops the transport, and
    /// refuses whatever is still queued, so that no caller waits for an answer forever.
    fn release(&mut self, ended: &Ended) {
        for (_, ticket) in self.tickets.drain() {
            let _ = ticket.send(Err(ended.error()));
        }
        // A transport that panicked may panic again on the way down: the node is ending
        // either way.
        let _ = catch_unwind(AssertUnwindSafe(|| self.transport.shut_down()));
        while let Ok(input) = self.input.try_recv() {
            refuse(input, ended);
        }
    }

    fn handle(&mut self, input: Input, now: Instant) -> Result<(), NodeError> {
        match input {
            Input::Peer(message) => self.replica.step(message, now)?,
            Input::Propose(data, reply) => {
                let id = self.next_ticket;
                self.next_ticket += 1;
                match self.replica.propose(data, id) {
                    Ok(_) => {
                        self.tickets.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Input::ProposeBatch(batch) => {
                let mut items = Vec::with_capacity(batch.len());
                let mut replies = Vec::with_capacity(batch.len());
                for (data, reply) in batch {
                    let id = self.next_ticket;
                    self.next_ticket += 1;
                    items.push((data, id));
                    replies.push((id, reply));
                }
                match self.replica.propose_batch(items) {
                    Ok(_) => self.tickets.extend(replies),
                    Err(e) => {
                        for (_, reply) in replies {
                            let _ = reply.send(Err(duplicate(&e)));
                        }
                    }
                }
            }
            Input::Command(command) => self.command(command),
        }
        Ok(())
    }

    fn command(&mut self, command: Command) {
        match command {
            // The revoked lease is published before the caller hears back, so the caller sees
            // leadership gone the moment the call returns.
            Command::Transfer(to, reply) => {
                let result = self.replica.transfer_leadership(to);
                self.publish(self.clock.now());
                let _ = reply.send(result);
            }
            Command::StepDown(reply) => {
                let result = self.replica.step_down();
                self.publish(self.clock.now());
                let _ = reply.send(result);
            }
            Command::Membership(changes, reply) => {
                let id = self.next_ticket;
                self.next_ticket += 1;
                match self.replica.change_membership(&changes, id) {
                    Ok(_) => {
                        self.tickets.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Compact(index, data, reply) => {
                let _ = reply.send(self.replica.compact(index, &data));
            }
            Command::Stall(d) => std::thread::sleep(d),
            Command::Panic => {
                if self.test_hooks {
                    // Unwinds as a panic would, without the panic hook's report on stderr.
                    std::panic::resume_unwind(Box::new("planted panic (test hook)"));
                }
                log::warn!(
                    "fencekit node {}: a test panic was asked for, but test hooks are off",
                    self.replica.id()
                );
            }
            Command::Stop => self.stopping = true,
        }
    }

    pub(crate) fn publish(&self, now: Instant) {
        let status = self.replica.status(now);
        let mut view = self.shared.lock();
        if view.ended.is_some() {
            return;
        }
        *view = View {
            leadership: self.replica.leadership(now),
            status: Some(status),
            ended: None,
        };
    }

    fn deliver(&mut self, now: Instant, out: Output) {
        // The view goes first: leadership withdrawn in this step is visible before any
        // message of it (a vote for a successor, say) leaves.
        self.publish(now);
        let Output {
            messages,
            applied,
            events,
            resolved,
            peers,
        } = out;
        for (id, address) in peers {
            self.transport.set_peer(id, address.as_deref());
        }
        for message in messages {
            self.transport.send(message);
        }
        for item in applied {
            // The host dropped its receiver: it does not want the log; nothing to do.
            let _ = self.applied.send(item);
        }
        for event in events {
            self.push_event(event);
        }
        for (id, result) in resolved {
            if let Some(ticket) = self.tickets.remove(&id) {
                let _ = ticket.send(result);
            }
        }
    }

    /// Queues an event; when the host lags by the whole queue, the oldest is dropped and
    /// counted (the latest state is always in the view).
    fn push_event(&self, event: Event) {
        let mut event = event;
        loop {
            match self.events.try_send(event) {
                Ok(()) => return,
                Err(crossbeam_channel::TrySendError::Full(back)) => {
                    event = back;
                    if self.events_overflow.try_recv().is_ok() {
                        self.shared.events_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

/// Answers an input that arrives after the node ended.
pub(crate) fn refuse(input: Input, ended: &Ended) {
    match input {
        Input::Peer(_) => {}
        Input::Propose(_, reply) => {
            let _ = reply.send(Err(ended.error()));
        }
        Input::ProposeBatch(batch) => {
            for (_, reply) in batch {
                let _ = reply.send(Err(ended.error()));
            }
        }
        Input::Command(command) => match command {
            Command::Transfer(_, reply) => {
                let _ = reply.send(Err(ended.error()));
            }
            Command::StepDown(reply) => {
                let _ = reply.send(Err(ended.error()));
            }
            Command::Membership(_, reply) => {
                let _ = reply.send(Err(ended.error()));
            }
            Command::Compact(_, _, reply) => {
                let _ = reply.send(Err(ended.error()));
            }
            Command::Stall(_) | Command::Panic | Command::Stop => {}
        },
    }
}

/// The same refusal for each proposal of a refused batch.
fn duplicate(e: &NodeError) -> NodeError {
    match e {
        NodeError::NotLeader { hint } => NodeError::NotLeader { hint: *hint },
        NodeError::Stopped => NodeError::Stopped,
        NodeError::ProposalDropped => NodeError::ProposalDropped,
        NodeError::InvalidBatch(range) => NodeError::InvalidBatch(*range),
        NodeError::ProposalTooLarge(range) => NodeError::ProposalTooLarge(*range),
        NodeError::Log(LogError::RecordTooLarge { len, max }) => LogError::RecordTooLarge {
            len: *len,
            max: *max,
        }
        .into(),
        // Raft's own refusals are not `Clone`: the other proposals carry the text.
        other => NodeError::RaftRefusal(other.to_string()),
    }
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, View> {
        // The view is replaced whole; a panic cannot leave it half-written.
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }
}
