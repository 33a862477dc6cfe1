//! The event loop: one step of global time delivers the packets due, drives each node (its
//! syncs, ticks, messages and application) and runs the checkers; the network's partitions.

use fencekit::node::{Event, Output};
use fencekit::time::Instant;
use raft::eraftpb::{Message, MessageType};
use rand::Rng;

use super::lifecycle::{Crash, Slot};
use super::{STEP_NS, Simulation};
use crate::network::{Endpoint, Packet, Payload};

impl Simulation {
    /// Cuts the Raft links between two groups of nodes; the store stays reachable.
    pub fn partition(&mut self, a: &[u64], b: &[u64]) {
        let a: Vec<Endpoint> = a.iter().map(|&n| Endpoint::Node(n)).collect();
        let b: Vec<Endpoint> = b.iter().map(|&n| Endpoint::Node(n)).collect();
        self.net.partition(&a, &b);
        self.stats.partitions += 1;
        self.trace
            .note(self.now, format_args!("partition {a:?} | {b:?}"));
    }

    /// Cuts node `n` off from every other node (not from the store).
    pub fn isolate(&mut self, n: u64) {
        let others: Vec<u64> = self.ids().filter(|&m| m != n).collect();
        self.partition(&[n], &others);
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.net.heal();
        self.trace.note(self.now, "heal");
    }

    /// Sends `message` through the network as if node `message.from` had: how a fuzzer plays a
    /// member that misbehaves. A message for a node outside the group is dropped.
    pub fn inject(&mut self, message: Message) {
        if !(1..=self.config.nodes).contains(&message.to) {
            return;
        }
        let packet = Packet {
            from: Endpoint::Node(message.from),
            to: Endpoint::Node(message.to),
            payload: Payload::Raft(message),
        };
        self.net.send(&mut self.rng, self.now, packet);
    }

    /// One step: restarts due, packets due, then each node, then the checkers.
    pub fn step(&mut self) {
        self.now += STEP_NS;
        self.stats.steps += 1;
        for n in self.ids() {
            if self.slot(n).restart_at.is_some_and(|at| at <= self.now) {
                self.start(n);
            }
        }
        if self.store_restart_at.is_some_and(|at| at <= self.now) {
            self.restart_store();
        }
        while let Some(packet) = self.net.next_due(self.now) {
            self.deliver(packet);
        }
        for n in self.ids() {
            self.step_node(n);
        }
        self.check();
    }

    pub(super) fn deliver(&mut self, packet: Packet) {
        match packet.to {
            Endpoint::Store => self.deliver_to_store(packet),
            Endpoint::Node(n) => {
                let mut slot = self.take(n);
                if slot.replica.is_some() && slot.paused {
                    slot.held.push(packet);
                } else if slot.replica.is_some() {
                    self.receive(n, &mut slot, packet);
                }
                self.put(n, slot);
            }
        }
    }

    pub(super) fn receive(&mut self, n: u64, slot: &mut Slot, packet: Packet) {
        match packet.payload {
            Payload::Raft(message) => {
                let local = slot.clock.read(self.now);
                let replica = slot.replica.as_mut().expect("running");
                match replica.step(message, local) {
                    Ok(()) => self.fix_timeout(n, slot),
                    Err(e) => self.node_failed(n, slot, e),
                }
            }
            Payload::Reply(reply) => slot.scheduler.on_reply(&reply),
            Payload::Request(_) => {}
        }
    }

    pub(super) fn step_node(&mut self, n: u64) {
        let mut slot = self.take(n);
        if slot.replica.is_none() || slot.paused {
            self.put(n, slot);
            return;
        }
        for request in std::mem::take(&mut slot.outbox) {
            self.net.send(
                &mut self.rng,
                self.now,
                Packet {
                    from: Endpoint::Node(n),
                    to: Endpoint::Store,
                    payload: Payload::Request(request),
                },
            );
        }
        let local = slot.clock.read(self.now);
        self.finish_syncs(n, &mut slot, local);
        // A sync that failed ended the node.
        if std::mem::take(&mut slot.app_first) && slot.replica.is_some() {
            self.act(n, &mut slot, local);
        }
        for packet in std::mem::take(&mut slot.held) {
            if slot.replica.is_some() {
                self.receive(n, &mut slot, packet);
            }
        }
        if slot.replica.is_some() {
            self.tick(n, &mut slot, local);
            self.process(n, &mut slot);
        }
        if slot.replica.is_some() {
            self.act(n, &mut slot, local);
            self.process(n, &mut slot);
        }
        if let Some(how) = slot.crash_now.take() {
            self.crash_slot(n, &mut slot, how);
            slot.restart_at = Some(self.now + self.down_time());
        }
        self.put(n, slot);
    }

    /// Ticks due by `local`, catching up at most two election timeouts (as the node's driver).
    pub(super) fn tick(&mut self, n: u64, slot: &mut Slot, local: Instant) {
        let tick = slot.config.timing.tick.as_nanos() as u64;
        let most = 2 * slot.config.timing.election_tick as u64 * tick;
        let now = local.as_nanos();
        if now > slot.next_tick + most {
            slot.next_tick = now - most;
        }
        slot.replica.as_mut().expect("running").expire(local);
        while slot.next_tick <= now {
            slot.replica.as_mut().expect("running").tick(local);
            self.fix_timeout(n, slot);
            slot.next_tick += tick;
        }
    }

    /// raft-rs draws election timeouts from its own generator; the run draws them from the seed
    /// instead, each time the role, term or leader changes.
    pub(super) fn fix_timeout(&mut self, _n: u64, slot: &mut Slot) {
        let Some(replica) = slot.replica.as_mut() else {
            return;
        };
        let raft = replica.raft();
        let key = (raft.term, raft.state as u64, raft.leader_id);
        if key != slot.timeout_key {
            let et = slot.config.timing.election_tick;
            slot.timeout = self.rng.gen_range(et..2 * et);
            slot.timeout_key = key;
        }
        replica.set_randomized_election_timeout(slot.timeout);
    }

    pub(super) fn process(&mut self, n: u64, slot: &mut Slot) {
        let local = slot.clock.read(self.now);
        let Some(replica) = slot.replica.as_mut() else {
            return;
        };
        let result = if self.config.sync_delay_ms == 0 {
            replica.process(local).map(|out| (out, None))
        } else {
            replica.process_async(local)
        };
        match result {
            Ok((out, sync)) => {
                self.checker.on_processed(n, replica);
                if let Some(request) = sync {
                    let delay = self.rng.gen_range(0..=self.config.sync_delay_ms) * STEP_NS;
                    slot.syncs.push((self.now + delay, request));
                }
                self.fix_timeout(n, slot);
                self.route(n, slot, out);
            }
            Err(e) => self.node_failed(n, slot, e),
        }
    }

    /// Runs the syncs due by now, in the order they were asked for, and reports each to the
    /// replica (the next `process` sends what they held).
    pub(super) fn finish_syncs(&mut self, n: u64, slot: &mut Slot, local: Instant) {
        while let Some(&(due, _)) = slot.syncs.first() {
            if due > self.now {
                return;
            }
            let (_, request) = slot.syncs.remove(0);
            let Some(replica) = slot.replica.as_mut() else {
                return;
            };
            if let Err(e) = request
                .run()
                .and_then(|through| replica.persisted(through, local))
            {
                self.node_failed(n, slot, e);
                return;
            }
        }
    }

    pub(super) fn route(&mut self, n: u64, slot: &mut Slot, out: Output) {
        let Output {
            messages,
            applied,
            events,
            resolved,
            ..
        } = out;
        let replica = slot.replica.as_ref().expect("running");
        for message in messages {
            let kind = message.get_msg_type();
            let entry_term = if kind == MessageType::MsgAppendResponse && !message.reject {
                replica.raft().raft_log.term(message.index).ok()
            } else {
                None
            };
            self.checker.on_sent(n, &message, entry_term);
            let acknowledges = !message.reject
                && matches!(
                    kind,
                    MessageType::MsgRequestVoteResponse | MessageType::MsgAppendResponse
                );
            if acknowledges && self.rng.gen_bool(self.config.faults.crash_after_ack) {
                slot.crash_now = Some(Crash::Power {
                    torn: self.config.faults.torn_writes,
                });
            }
            let to = Endpoint::Node(message.to);
            self.net.send(
                &mut self.rng,
                self.now,
                Packet {
                    from: Endpoint::Node(n),
                    to,
                    payload: Payload::Raft(message),
                },
            );
        }
        if self.config.workload {
            for item in &applied {
                slot.machine.apply(item);
                self.checker.on_applied(n, item, &slot.machine);
            }
        } else {
            // The test's own entries and snapshots: it reads them back.
            self.reports.applied.entry(n).or_default().extend(applied);
        }
        for (ticket, result) in resolved {
            let result = result.map_err(|e| e.to_string());
            self.reports.resolved.insert(ticket, result);
        }
        for event in events {
            match &event {
                Event::Elected { token, .. } => self
                    .trace
                    .note(self.now, format_args!("node {n} elected as {token}")),
                Event::Lost { token, reason } => self
                    .trace
                    .note(self.now, format_args!("node {n} loses {token}: {reason:?}")),
                _ => {}
            }
            self.reports.on_event(self.now, n, event);
        }
        if let Some(lead) = replica.leadership(slot.clock.peek(self.now)) {
            let until = slot.clock.global_at(lead.lease_deadline);
            self.reports.extend(lead.token, until);
        }
    }
}
