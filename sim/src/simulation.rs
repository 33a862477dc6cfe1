//! The simulated world: real replicas (`fencekit::node::Replica`) on simulated disks and
//! clocks, a simulated network, the fenced store and each node's application, advanced one
//! millisecond of global time per step, single-threaded, with every draw from one seeded
//! generator. The checkers run after every step.

use std::path::PathBuf;
use std::time::Duration;

use fencekit::disk::DiskHandle;
use fencekit::lease::Timing;
use fencekit::node::{Event, NodeConfig, Output, Replica};
use fencekit::planted::PlantedBug;
use fencekit::raft_storage::SyncRequest;
use fencekit::time::Instant;
use fencekit::wal::WalOptions;
use fencekit::{Error, NodeId};
use raft::eraftpb::{Message, MessageType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::checker::{Checker, Violation};
use crate::clock::SimClock;
use crate::disk::SimDisk;
use crate::faults::FaultPlan;
use crate::network::{Endpoint, Network, Packet, Payload};
use crate::store::{Refusal, Store, StoreFact, StoreReply, StoreRequest};
use crate::trace::Trace;
use crate::workload::{Machine, Scheduler};

/// Global time at which every run starts (ns): far from zero, so nothing saturates.
pub const EPOCH: u64 = 1_000_000_000;
/// One step of global time.
const STEP_NS: u64 = 1_000_000;
/// The application compacts the log after this many entries.
const COMPACT_EVERY: u64 = 2_000;

/// How a run is set up.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed: the only source of randomness.
    pub seed: u64,
    /// Voters.
    pub nodes: u64,
    /// The faults of the safety phase.
    pub faults: FaultPlan,
    /// Whether clock drift may exceed the configured bound (I3 then is not checked; the fence
    /// must still hold).
    pub beyond_drift: bool,
    /// A bug planted in the kernel for this run.
    pub bug: Option<PlantedBug>,
    /// Simulated time with faults.
    pub safety: Duration,
    /// Simulated time after healing, in which a leader must emerge and work progress.
    pub liveness: Duration,
    /// Entries the leader proposes per step (per simulated millisecond).
    pub proposals_per_step: u32,
    /// One job falls due every this often.
    pub job_period: Duration,
    /// The nodes' timing.
    pub timing: Timing,
    /// 0: each node syncs its log inside `Replica::process`, at once. Otherwise nodes run as
    /// the threaded node does, with the sync beside the replica (`process_async`): each sync
    /// completes up to this many milliseconds later, drawn from the seed, while the node goes
    /// on ticking and stepping; its held messages leave only then.
    pub sync_delay_ms: u64,
}

impl SimConfig {
    /// A run without faults: for scripted scenarios, which add their own.
    pub fn quiet(seed: u64, nodes: u64) -> SimConfig {
        SimConfig {
            seed,
            nodes,
            faults: FaultPlan::none(500),
            beyond_drift: false,
            bug: None,
            safety: Duration::from_secs(4),
            liveness: Duration::from_secs(3),
            proposals_per_step: 2,
            job_period: Duration::from_millis(20),
            timing: Timing::default(),
            sync_delay_ms: 0,
        }
    }

    /// A swarm run: the seed draws the group's size and every fault rate.
    pub fn swarm(seed: u64, beyond_drift: bool) -> SimConfig {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5157_4152_4d00_0000);
        let timing = Timing::default();
        let nodes = if rng.gen_bool(0.5) { 3 } else { 5 };
        let faults = FaultPlan::draw(&mut rng, timing.max_drift, beyond_drift);
        // Drawn last, so the draws above are those of runs from before it existed.
        let sync_delay_ms = if rng.gen_bool(0.5) {
            0
        } else {
            rng.gen_range(1..=8)
        };
        SimConfig {
            nodes,
            faults,
            beyond_drift,
            sync_delay_ms,
            ..SimConfig::quiet(seed, nodes)
        }
    }
}

/// How a node crashes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Crash {
    /// kill -9: the kernel keeps every write.
    Process,
    /// Power loss: unsynced writes are lost (or torn, when `torn`).
    Power {
        /// Whether unsynced writes may be kept in part.
        torn: bool,
    },
}

/// What one node is, in the world.
#[derive(Debug)]
struct Slot {
    config: NodeConfig,
    disk: SimDisk,
    clock: SimClock,
    replica: Option<Replica>,
    /// Local time of the next tick.
    next_tick: u64,
    paused: bool,
    /// The clock's rate before a pause that froze it (a suspended VM whose clock does not
    /// count the suspension: beyond any drift bound).
    frozen: Option<f64>,
    /// Packets that arrived while paused: the socket buffer.
    held: Vec<Packet>,
    /// A crashed node restarts then (global).
    restart_at: Option<u64>,
    /// Why the node cannot restart (its log refused to open).
    broken: Option<String>,
    scheduler: Scheduler,
    machine: Machine,
    last_compact: u64,
    /// Requests decided at the previous step, sent at this one (or after a pause).
    outbox: Vec<StoreRequest>,
    /// After a pause the application may act before the replica catches up.
    app_first: bool,
    /// raft-rs's election timeout as this run drew it, and the state it was drawn for.
    timeout: usize,
    timeout_key: (u64, u64, u64),
    /// Crash at the end of this step (a fault scheduled while it was acting).
    crash_now: Option<Crash>,
    /// Syncs in flight (with `sync_delay_ms`): when each completes (global), in order.
    syncs: Vec<(u64, SyncRequest)>,
}

/// Counts of what a run did.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Entries committed (the highest commit index reached).
    pub committed: u64,
    /// Jobs completed in the store.
    pub jobs: u64,
    /// Terms that had a leader.
    pub elections: u64,
    /// Crashes (kill -9 and power losses).
    pub crashes: u64,
    /// Power losses among them.
    pub power_losses: u64,
    /// Pauses.
    pub pauses: u64,
    /// Partitions.
    pub partitions: u64,
    /// Bit flips at rest.
    pub bit_flips: u64,
    /// Restarts refused because the log was damaged.
    pub refused_restarts: u64,
    /// Disk-full episodes.
    pub disk_full: u64,
    /// Store crashes.
    pub store_crashes: u64,
    /// Stale or conflicting writes the fence refused.
    pub refused_writes: u64,
    /// Instants where two leases overlapped (only possible beyond the drift bound).
    pub lease_overlaps: u64,
    /// Steps run.
    pub steps: u64,
}

/// The result of a run.
#[derive(Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The first invariant broken, if any.
    pub violation: Option<Violation>,
    /// What happened last.
    pub trace: Vec<String>,
    /// Counts.
    pub stats: Stats,
    /// Nodes in the group.
    pub nodes: u64,
    /// The faults drawn.
    pub faults: String,
}

/// A simulated world. See the module documentation.
pub struct Simulation {
    /// The setup.
    pub config: SimConfig,
    rng: ChaCha8Rng,
    /// Global time, ns.
    pub now: u64,
    /// Boxed: a slot holds a whole replica, and is taken out and put back every step.
    slots: Vec<Option<Box<Slot>>>,
    /// The network.
    pub net: Network,
    /// The fenced store.
    pub store: Store,
    store_restart_at: Option<u64>,
    /// The invariants' memory.
    pub checker: Checker,
    /// Recent notable events.
    pub trace: Trace,
    /// Counts.
    pub stats: Stats,
    facts: Vec<StoreFact>,
    /// Nodes whose disk took a bit flip (at most a minority, so the group can go on).
    flipped: Vec<u64>,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("seed", &self.config.seed)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

fn id(n: u64) -> NodeId {
    NodeId::new(n).expect("node ids start at 1")
}

impl Simulation {
    /// Builds the world and starts every node and the store.
    pub fn new(config: SimConfig) -> Result<Simulation, Error> {
        fencekit::planted::plant(config.bug);
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        let voters: Vec<NodeId> = (1..=config.nodes).map(id).collect();
        let mut sim = Simulation {
            net: Network::new(config.faults.network.clone()),
            store: Store::open()?,
            store_restart_at: None,
            checker: Checker::new(!config.beyond_drift),
            trace: Trace::default(),
            stats: Stats::default(),
            facts: Vec::new(),
            flipped: Vec::new(),
            slots: Vec::new(),
            now: EPOCH,
            rng,
            config,
        };
        let drift = sim.config.faults.drift;
        for n in 1..=sim.config.nodes {
            let disk = SimDisk::new();
            let mut clock = SimClock::new(EPOCH);
            if drift > 0.0 {
                clock.set_rate(EPOCH, 1.0 + sim.rng.gen_range(-drift..=drift));
            }
            let mut node = NodeConfig::new(
                id(n),
                0xC1,
                PathBuf::from(format!("/node{n}")),
                voters.clone(),
            );
            node.timing = sim.config.timing;
            node.wal = WalOptions {
                segment_size: 256 << 10,
                disk: DiskHandle::new(disk.clone()),
            };
            let period = sim.config.job_period.as_nanos() as u64;
            sim.slots.push(Some(Box::new(Slot {
                config: node,
                disk,
                clock,
                replica: None,
                next_tick: EPOCH,
                paused: false,
                frozen: None,
                held: Vec::new(),
                restart_at: None,
                broken: None,
                scheduler: Scheduler::new(EPOCH, period),
                machine: Machine::default(),
                last_compact: 0,
                outbox: Vec::new(),
                app_first: false,
                timeout: 0,
                timeout_key: (u64::MAX, 0, 0),
                crash_now: None,
                syncs: Vec::new(),
            })));
            sim.start(n);
        }
        Ok(sim)
    }

    fn take(&mut self, n: u64) -> Box<Slot> {
        self.slots[(n - 1) as usize].take().expect("slot in use")
    }

    fn put(&mut self, n: u64, slot: Box<Slot>) {
        self.slots[(n - 1) as usize] = Some(slot);
    }

    fn slot(&self, n: u64) -> &Slot {
        self.slots[(n - 1) as usize].as_ref().expect("slot in use")
    }

    fn slot_mut(&mut self, n: u64) -> &mut Slot {
        self.slots[(n - 1) as usize].as_mut().expect("slot in use")
    }

    /// The node ids.
    pub fn ids(&self) -> impl Iterator<Item = u64> + use<> {
        1..=self.config.nodes
    }

    /// Node `n`'s replica, if it runs.
    pub fn replica(&self, n: u64) -> Option<&Replica> {
        self.slot(n).replica.as_ref()
    }

    /// Node `n`'s clock now.
    pub fn local(&self, n: u64) -> Instant {
        self.slot(n).clock.peek(self.now)
    }

    /// Whether node `n` is paused.
    pub fn is_paused(&self, n: u64) -> bool {
        self.slot(n).paused
    }

    /// The node whose lease holds now, if one does (the first, if the checker is about to
    /// complain of two).
    pub fn leader(&self) -> Option<u64> {
        self.ids().find(|&n| {
            self.replica(n)
                .is_some_and(|r| r.leadership(self.local(n)).is_some())
        })
    }

    /// Starts (or restarts) node `n` from its disk.
    pub fn start(&mut self, n: u64) {
        let mut slot = self.take(n);
        let local = slot.clock.read(self.now);
        slot.restart_at = None;
        match Replica::open(&slot.config, local) {
            Ok(replica) => {
                self.checker.on_restart(n, &replica);
                slot.replica = Some(replica);
                slot.next_tick = local.as_nanos() + slot.config.timing.tick.as_nanos() as u64;
                slot.scheduler.forget();
                slot.machine = Machine::default();
                slot.last_compact = 0;
                slot.outbox.clear();
                slot.held.clear();
                slot.timeout_key = (u64::MAX, 0, 0);
                self.trace.note(self.now, format_args!("node {n} starts"));
                self.fix_timeout(n, &mut slot);
                self.process(n, &mut slot);
            }
            Err(Error::Corrupt { .. }) if self.flipped.contains(&n) => {
                // Damage at rest was found and refused, as I6 wants: the node stays down.
                self.stats.refused_restarts += 1;
                self.trace
                    .note(self.now, format_args!("node {n} refuses its damaged log"));
                slot.broken = Some("damaged log".into());
            }
            Err(Error::Io { .. }) if slot.disk.is_full() => {
                slot.restart_at = Some(self.now + 100 * STEP_NS);
            }
            Err(e) => {
                self.checker
                    .fail_liveness(format!("node {n} cannot restart: {e}"));
                slot.broken = Some(e.to_string());
            }
        }
        self.put(n, slot);
    }

    /// Crashes node `n`.
    pub fn crash(&mut self, n: u64, how: Crash) {
        let mut slot = self.take(n);
        self.crash_slot(n, &mut slot, how);
        self.put(n, slot);
    }

    fn crash_slot(&mut self, n: u64, slot: &mut Slot, how: Crash) {
        // The syncs in flight die with the process (and hold its log open).
        slot.syncs.clear();
        if slot.replica.take().is_none() {
            return;
        }
        slot.paused = false;
        if let Some(rate) = slot.frozen.take() {
            slot.clock.set_rate(self.now, rate);
        }
        slot.held.clear();
        slot.outbox.clear();
        self.stats.crashes += 1;
        match how {
            Crash::Process => slot.disk.crash_process(),
            Crash::Power { torn } => {
                self.stats.power_losses += 1;
                slot.disk.lose_power(&mut self.rng, torn);
            }
        }
        self.trace
            .note(self.now, format_args!("node {n} crashes ({how:?})"));
    }

    /// Crashes node `n` with a power loss in the middle of its next fdatasync.
    pub fn crash_in_next_sync(&mut self, n: u64) {
        self.slot(n).disk.fail_next_sync();
    }

    /// Pauses node `n` (SIGSTOP): its clock runs on, it does nothing.
    pub fn pause(&mut self, n: u64) {
        let slot = self.slot_mut(n);
        if slot.replica.is_some() && !slot.paused {
            slot.paused = true;
            self.stats.pauses += 1;
            self.trace.note(self.now, format_args!("node {n} paused"));
        }
    }

    /// Pauses node `n` with its clock stopped too: when it resumes it believes no time
    /// passed, so its lease seems intact (drift beyond any bound: only the fence can help).
    pub fn pause_with_frozen_clock(&mut self, n: u64) {
        self.pause(n);
        let now = self.now;
        let slot = self.slot_mut(n);
        if slot.paused && slot.frozen.is_none() {
            slot.frozen = Some(slot.clock.rate());
            slot.clock.set_rate(now, 0.0);
        }
    }

    /// Resumes node `n` (SIGCONT): it goes on as if nothing happened; its application may act
    /// before the replica notices the time that passed.
    pub fn resume(&mut self, n: u64) {
        let app_first = self.rng.gen_bool(0.5);
        let now = self.now;
        let slot = self.slot_mut(n);
        if let Some(rate) = slot.frozen.take() {
            slot.clock.set_rate(now, rate);
        }
        if slot.paused {
            slot.paused = false;
            slot.app_first = app_first;
            self.trace.note(self.now, format_args!("node {n} resumes"));
        }
    }

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

    /// Sets node `n`'s clock rate from now on.
    pub fn set_rate(&mut self, n: u64, rate: f64) {
        let now = self.now;
        self.slot_mut(n).clock.set_rate(now, rate);
        self.trace
            .note(self.now, format_args!("node {n} clock rate {rate:.4}"));
    }

    /// Runs for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d.as_nanos() as u64;
        while self.now < end && self.checker.violation().is_none() {
            self.step();
        }
    }

    /// Runs until `f` holds or `limit` passes; returns whether it held.
    pub fn run_until(&mut self, limit: Duration, mut f: impl FnMut(&Simulation) -> bool) -> bool {
        let end = self.now + limit.as_nanos() as u64;
        while self.now < end {
            if f(self) {
                return true;
            }
            self.step();
        }
        f(self)
    }

    /// Runs until a node holds a lease (at most `limit`); returns it.
    pub fn wait_for_leader(&mut self, limit: Duration) -> Option<u64> {
        self.run_until(limit, |s| s.leader().is_some());
        self.leader()
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

    fn deliver(&mut self, packet: Packet) {
        match packet.to {
            Endpoint::Store => {
                let Payload::Request(request) = &packet.payload else {
                    return;
                };
                let reply = self.store.handle(request, &mut self.facts);
                self.absorb_facts();
                let Some(reply) = reply else {
                    return;
                };
                if let StoreReply::Refused {
                    token,
                    reason: Refusal::Stale | Refusal::Conflict,
                    ..
                } = &reply
                {
                    self.trace.note(
                        self.now,
                        format_args!("store refuses {token} ({request:?})"),
                    );
                }
                if !self.store.is_up() {
                    self.store_down(Crash::Power { torn: true });
                }
                let packet = Packet {
                    from: Endpoint::Store,
                    to: packet.from,
                    payload: Payload::Reply(reply),
                };
                self.net.send(&mut self.rng, self.now, packet);
            }
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

    fn receive(&mut self, n: u64, slot: &mut Slot, packet: Packet) {
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

    fn step_node(&mut self, n: u64) {
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
    fn tick(&mut self, n: u64, slot: &mut Slot, local: Instant) {
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
    fn fix_timeout(&mut self, _n: u64, slot: &mut Slot) {
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

    /// The application's turn: the scheduler and the proposals.
    fn act(&mut self, n: u64, slot: &mut Slot, local: Instant) {
        let replica = slot.replica.as_mut().expect("running");
        let leadership = replica.leadership(local);
        slot.scheduler
            .poll(local.as_nanos(), leadership, &mut slot.outbox);
        if replica.raft().state == raft::StateRole::Leader {
            for _ in 0..self.config.proposals_per_step {
                let data = self.rng.r#gen::<[u8; 24]>().to_vec();
                // Refused when not the leader after all, or over the in-flight limit.
                let _ = replica.propose(data, 0);
            }
        }
        if slot.machine.index >= slot.last_compact + COMPACT_EVERY {
            let (index, data) = (slot.machine.index, slot.machine.encode());
            match replica.compact(index, &data) {
                Ok(()) => slot.last_compact = index,
                Err(e) => self.node_failed(n, slot, e),
            }
        }
    }

    fn process(&mut self, n: u64, slot: &mut Slot) {
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
    fn finish_syncs(&mut self, n: u64, slot: &mut Slot, local: Instant) {
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

    /// A replica call failed: the node's process exits (its log refuses to go on after an I/O
    /// failure). A failure that is not I/O is a bug.
    fn node_failed(&mut self, n: u64, slot: &mut Slot, e: Error) {
        let io = matches!(e, Error::Io { .. } | Error::Poisoned(_));
        self.trace
            .note(self.now, format_args!("node {n} stops: {e}"));
        if !io {
            self.checker
                .fail_liveness(format!("node {n} failed with an unexpected error: {e}"));
        }
        // An I/O failure here is the simulated power loss (or a full disk).
        let torn = self.config.faults.torn_writes;
        self.crash_slot(n, slot, Crash::Power { torn });
        slot.restart_at = Some(self.now + self.down_time());
    }

    fn down_time(&mut self) -> u64 {
        let most = self.config.faults.down_ms.max(10);
        self.rng.gen_range(10..=most) * STEP_NS
    }

    fn route(&mut self, n: u64, slot: &mut Slot, out: Output) {
        let Output {
            messages,
            applied,
            events,
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
        for item in &applied {
            slot.machine.apply(item);
            self.checker.on_applied(n, item, &slot.machine);
        }
        for event in events {
            match event {
                Event::Elected { token, .. } => self
                    .trace
                    .note(self.now, format_args!("node {n} elected as {token}")),
                Event::Lost { token, reason } => self
                    .trace
                    .note(self.now, format_args!("node {n} loses {token}: {reason:?}")),
                _ => {}
            }
        }
    }

    fn absorb_facts(&mut self) {
        for fact in std::mem::take(&mut self.facts) {
            self.checker.on_store(&fact);
        }
    }

    /// Crashes the store.
    pub fn crash_store(&mut self, how: Crash) {
        if self.store.is_up() {
            self.store.crash();
            self.store_down(how);
        }
    }

    fn store_down(&mut self, how: Crash) {
        self.stats.store_crashes += 1;
        match how {
            Crash::Process => self.store.disk().crash_process(),
            Crash::Power { torn } => {
                self.store.disk().lose_power(&mut self.rng, torn);
            }
        }
        self.trace
            .note(self.now, format_args!("store crashes ({how:?})"));
        self.store_restart_at = Some(self.now + self.down_time());
    }

    /// Restarts the store now.
    pub fn restart_store(&mut self) {
        self.store_restart_at = None;
        match self.store.start() {
            Ok(mark) => {
                self.trace
                    .note(self.now, format_args!("store restarts with mark {mark:?}"));
                self.checker.on_store(&StoreFact::Recovered(mark));
            }
            Err(e) => {
                self.trace
                    .note(self.now, format_args!("store cannot restart: {e}"));
                self.store_restart_at = Some(self.now + 50 * STEP_NS);
            }
        }
    }

    fn check(&mut self) {
        let now = self.now;
        let running: Vec<(u64, &Replica, Instant)> = self
            .slots
            .iter()
            .flatten()
            .filter_map(|s| {
                s.replica
                    .as_ref()
                    .map(|r| (s.config.id.get(), r, s.clock.peek(now)))
            })
            .collect();
        for (_, r, _) in &running {
            self.stats.committed = self.stats.committed.max(r.raft().raft_log.committed);
        }
        self.checker.on_step(&running);
    }

    /// The outcome so far.
    pub fn outcome(&self) -> Outcome {
        let mut stats = self.stats.clone();
        stats.jobs = self.checker.jobs_done() as u64;
        stats.elections = self.checker.elections;
        stats.refused_writes = self.checker.refused;
        stats.lease_overlaps = self.checker.lease_overlaps;
        Outcome {
            seed: self.config.seed,
            violation: self.checker.violation().cloned(),
            trace: self.trace.lines().map(str::to_owned).collect(),
            stats,
            nodes: self.config.nodes,
            faults: match self.config.sync_delay_ms {
                0 => self.config.faults.summary(),
                ms => format!(
                    "{}, syncs beside (up to {ms} ms)",
                    self.config.faults.summary()
                ),
            },
        }
    }

    pub(crate) fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    pub(crate) fn is_running(&self, n: u64) -> bool {
        self.slot(n).replica.is_some()
    }

    pub(crate) fn disk(&self, n: u64) -> &SimDisk {
        &self.slot(n).disk
    }

    pub(crate) fn mark_flipped(&mut self, n: u64) {
        self.flipped.push(n);
        self.stats.bit_flips += 1;
    }

    pub(crate) fn flipped(&self) -> &[u64] {
        &self.flipped
    }

    pub(crate) fn schedule_restart(&mut self, n: u64, after: u64) {
        let at = self.now + after;
        let slot = self.slot_mut(n);
        if slot.replica.is_none() && slot.broken.is_none() {
            slot.restart_at = Some(at);
        }
    }

    pub(crate) fn clock_mut(&mut self, n: u64) -> &mut SimClock {
        &mut self.slot_mut(n).clock
    }

    pub(crate) fn store_restart_pending(&self) -> bool {
        self.store_restart_at.is_some()
    }

    /// Whether node `n` may be restarted by the liveness phase.
    pub(crate) fn needs_restart(&self, n: u64) -> bool {
        let slot = self.slot(n);
        slot.replica.is_none() && slot.broken.is_none() && slot.restart_at.is_none()
    }

    pub(crate) fn down_ms(&mut self) -> u64 {
        self.down_time()
    }
}
