//! The simulated world: real replicas (`fencekit::node::Replica`) on simulated disks and
//! clocks, a simulated network, the fenced store and each node's application, advanced one
//! millisecond of global time per step, single-threaded, with every draw from one seeded
//! generator. The checkers run after every step.

mod application;
mod config;
mod delivery;
mod lifecycle;
mod reports;
mod scripted;
mod store_side;

use std::time::Duration;

use fencekit::node::{NodeConfig, Replica};
use fencekit::time::Instant;
use fencekit::{NodeError, NodeId};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use config::SimConfig;
pub use lifecycle::Crash;
use lifecycle::Slot;
pub use reports::{LeaseSpan, Reports, Stamped};

use crate::checker::{Checker, Violation};
use crate::clock::SimClock;
use crate::disk::SimDisk;
use crate::network::Network;
use crate::store::{Store, StoreFact};
use crate::trace::Trace;

/// Global time at which every run starts (ns): far from zero, so nothing saturates.
pub const EPOCH: u64 = 1_000_000_000;
/// One step of global time.
const STEP_NS: u64 = 1_000_000;

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
    /// What the nodes reported.
    pub reports: Reports,
    /// The ticket of a test's next proposal (the workload's proposals use 0).
    next_ticket: u64,
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
    pub fn new(config: SimConfig) -> Result<Simulation, NodeError> {
        Simulation::new_with(config, |_| {})
    }

    /// As [`Simulation::new`], with each node's configuration adjusted by `adjust` before it
    /// starts (a test's policy, say).
    pub fn new_with(
        config: SimConfig,
        adjust: impl Fn(&mut NodeConfig),
    ) -> Result<Simulation, NodeError> {
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
            reports: Reports::default(),
            next_ticket: 1,
            slots: Vec::new(),
            now: EPOCH,
            rng,
            config,
        };
        for n in 1..=sim.config.nodes {
            sim.place(n, voters.clone(), &adjust);
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

    /// The first broken invariant and the trace that led to it, if a checker found one: what
    /// a scripted test fails with.
    pub fn broken(&self) -> Option<String> {
        let v = self.checker.violation()?;
        let trace: Vec<&str> = self.trace.lines().collect();
        Some(format!(
            "{} broken: {}\n{}",
            v.invariant,
            v.detail,
            trace.join("\n")
        ))
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

    pub(crate) fn clock_mut(&mut self, n: u64) -> &mut SimClock {
        &mut self.slot_mut(n).clock
    }
}
