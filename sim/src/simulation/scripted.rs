//! A scripted test's hand on the world: it calls a node's API (propose, transfer, change the
//! membership, compact), steps a message straight into a node (an honest one it routes by
//! hand, or one it forged), and looks at the messages in flight and the leases. What a call
//! produces leaves as the node's own output would, and every checker still runs.

use fencekit::NodeError;
use fencekit::node::Replica;
use fencekit::time::Instant;
use raft::eraftpb::Message;

use super::Simulation;
use crate::network::Payload;

impl Simulation {
    /// Node `n`'s replica. Panics if the node is down: a test asking for it made a mistake.
    pub fn running(&self, n: u64) -> &Replica {
        self.replica(n)
            .unwrap_or_else(|| panic!("node {n} is not running"))
    }

    /// Node `n`'s replica, to drive by hand: what it produces is the caller's to process and
    /// route. Panics if the node is down.
    pub fn running_mut(&mut self, n: u64) -> &mut Replica {
        self.slot_mut(n)
            .replica
            .as_mut()
            .unwrap_or_else(|| panic!("node {n} is not running"))
    }

    /// Runs `f` on node `n`'s replica now, then processes and routes what it produced.
    pub fn with<T>(&mut self, n: u64, f: impl FnOnce(&mut Replica) -> T) -> T {
        let result = f(self.running_mut(n));
        let mut slot = self.take(n);
        self.process(n, &mut slot);
        self.put(n, slot);
        result
    }

    /// Proposes `data` on node `n` under a fresh ticket, returned; how it was resolved is in
    /// [`super::Reports::resolved`] under that ticket.
    pub fn propose(&mut self, n: u64, data: &[u8]) -> Result<u64, NodeError> {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.with(n, |r| r.propose(data.to_vec(), ticket))?;
        Ok(ticket)
    }

    /// Steps `message` into node `n` now, as if it had just arrived, then processes and routes
    /// what that produced. An error is the node's own failure: the step's, or
    /// [`NodeError::Stopped`] when processing what followed stopped the node (the trace says why).
    pub fn step_into(&mut self, n: u64, message: Message) -> Result<(), NodeError> {
        let mut slot = self.take(n);
        let local = slot.clock.read(self.now);
        let replica = slot
            .replica
            .as_mut()
            .unwrap_or_else(|| panic!("node {n} is not running"));
        let stepped = replica.step(message, local);
        if stepped.is_ok() {
            self.fix_timeout(n, &mut slot);
            self.process(n, &mut slot);
        }
        let stopped = slot.replica.is_none();
        self.put(n, slot);
        match stepped {
            Ok(()) if stopped => Err(NodeError::Stopped),
            other => other,
        }
    }

    /// Steps `message`, which no honest member sends, into node `n` as a misbehaving member
    /// would (see [`Simulation::step_into`]): the checker lets the node refuse it (I8).
    pub fn forge(&mut self, n: u64, message: Message) -> Result<(), NodeError> {
        self.checker.on_forged(n);
        self.step_into(n, message)
    }

    /// Whether a Raft message in flight matches `f`.
    pub fn in_flight(&self, f: impl Fn(&Message) -> bool) -> bool {
        self.net
            .any_in_flight(|p| matches!(&p.payload, Payload::Raft(m) if f(m)))
    }

    /// The global time (ns) at which node `n`'s clock, at its current rate, reads `at`.
    pub fn global(&self, n: u64, at: Instant) -> u64 {
        self.slot(n).clock.global_at(at)
    }

    /// The node whose lease holds now, if one does. Panics if two do: I3 broken in front of a
    /// test.
    pub fn usable_leader(&self) -> Option<u64> {
        let holding: Vec<u64> = self
            .ids()
            .filter(|&n| {
                self.replica(n)
                    .is_some_and(|r| r.leadership(self.local(n)).is_some())
            })
            .collect();
        assert!(
            holding.len() <= 1,
            "two usable leaders at once: {holding:?}"
        );
        holding.first().copied()
    }
}
