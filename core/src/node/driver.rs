//! The node thread: owns the [`Replica`], turns channel input and clock ticks into steps, and
//! hands the output on: the published view first (so a revoked lease is visible before any
//! message of the same step leaves), then messages, committed entries, events and tickets.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use raft::eraftpb::Message;

use crate::error::Error;
use crate::node::event::{Applied, Event};
use crate::node::membership::MembershipChange;
use crate::node::replica::{Output, ProposalId, Replica};
use crate::node::{Shared, View};
use crate::time::{Clock, Instant};
use crate::token::NodeId;
use crate::transport::Transport;

/// Inputs handled per wake-up before ticking and processing again, so that a flood of
/// messages cannot starve the clock.
const INPUTS_PER_WAKE: usize = 1024;

/// What the node thread receives.
pub(crate) enum Input {
    Peer(Message),
    Propose(Vec<u8>, Sender<Result<u64, Error>>),
    Command(Command),
}

pub(crate) enum Command {
    Transfer(NodeId, Sender<Result<(), Error>>),
    StepDown(Sender<Result<NodeId, Error>>),
    Membership(Vec<MembershipChange>, Sender<Result<u64, Error>>),
    Compact(u64, Vec<u8>, Sender<Result<(), Error>>),
    /// Test hook: the thread stops dead for this long, as in a long GC pause.
    Stall(Duration),
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
    pub(crate) tickets: HashMap<ProposalId, Sender<Result<u64, Error>>>,
    pub(crate) next_ticket: ProposalId,
    pub(crate) stopping: bool,
}

impl<T: Transport> Driver<T> {
    /// Runs until stopped, or until a failure makes going on unsafe (the log cannot be
    /// written: votes and acknowledgements could no longer be made durable).
    pub(crate) fn run(mut self, first: Output) {
        let tick = self.replica.timing().tick;
        let catch_up_max = self.replica.timing().election_tick * 2;
        let mut next_tick = self.clock.now().saturating_add(tick);
        self.deliver(self.clock.now(), first);
        let mut woken_by: Option<Input> = None;
        let failure = loop {
            // First thing on waking, whatever woke us: a lapsed lease is withdrawn (I4).
            let now = self.clock.now();
            self.replica.expire(now);
            self.publish(now);

            let mut result = Ok(());
            if let Some(input) = woken_by.take() {
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
            let result = result.and_then(|()| self.replica.process(now));
            match result {
                Ok(out) => self.deliver(now, out),
                Err(e) => break Some(e),
            }
            if self.stopping || self.replica.is_removed() {
                break None;
            }
            let wait = next_tick.saturating_duration_since(self.clock.now());
            match self.input.recv_timeout(wait) {
                Ok(input) => woken_by = Some(input),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.stopping = true,
            }
        };
        let now = self.clock.now();
        let mut out = self.replica.shut_down();
        if self.replica.is_removed() {
            // The Lost { Removed } event went out already; nothing more to say.
            out.events.retain(|e| !matches!(e, Event::Lost { .. }));
        }
        {
            let mut view = self.shared.lock();
            view.stopped = Some(match &failure {
                Some(e) => format!("the node stopped after a failure: {e}"),
                None if self.replica.is_removed() => "the node was removed from the group".into(),
                None => "the node was stopped".into(),
            });
        }
        self.deliver(now, out);
        for (_, ticket) in self.tickets.drain() {
            let _ = ticket.send(Err(Error::Stopped));
        }
        self.transport.shut_down();
        // Refuse whatever is still queued, so no caller waits for an answer forever.
        while let Ok(input) = self.input.try_recv() {
            refuse(input);
        }
    }

    fn handle(&mut self, input: Input, now: Instant) -> Result<(), Error> {
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
            Command::Stop => self.stopping = true,
        }
    }

    fn publish(&self, now: Instant) {
        let status = self.replica.status(now);
        let mut view = self.shared.lock();
        *view = View {
            leadership: self.replica.leadership(now),
            status: Some(status),
            stopped: view.stopped.take(),
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

/// Answers an input that arrives after the node stopped.
pub(crate) fn refuse(input: Input) {
    match input {
        Input::Peer(_) => {}
        Input::Propose(_, reply) => {
            let _ = reply.send(Err(Error::Stopped));
        }
        Input::Command(command) => match command {
            Command::Transfer(_, reply) => {
                let _ = reply.send(Err(Error::Stopped));
            }
            Command::StepDown(reply) => {
                let _ = reply.send(Err(Error::Stopped));
            }
            Command::Membership(_, reply) => {
                let _ = reply.send(Err(Error::Stopped));
            }
            Command::Compact(_, _, reply) => {
                let _ = reply.send(Err(Error::Stopped));
            }
            Command::Stall(_) | Command::Stop => {}
        },
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, View> {
        // The view is replaced whole; a panic cannot leave it half-written.
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }
}
