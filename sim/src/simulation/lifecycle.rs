//! A node's life in the world: it starts from its disk, crashes (kill -9 or power loss, which
//! the disk answers), pauses and resumes, and restarts after a failure; its clock's rate.

use std::path::PathBuf;

use fencekit::disk::DiskHandle;
use fencekit::node::{NodeConfig, Replica};
use fencekit::raft_storage::SyncRequest;
use fencekit::wal::WalOptions;
use fencekit::{ClusterId, ErrorKind, NodeError, NodeId};
use rand::Rng;

use super::{EPOCH, STEP_NS, Simulation, id};
use crate::clock::SimClock;
use crate::disk::SimDisk;
use crate::network::Packet;
use crate::store::StoreRequest;
use crate::workload::{Machine, Scheduler};

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
pub(super) struct Slot {
    pub(super) config: NodeConfig,
    pub(super) disk: SimDisk,
    pub(super) clock: SimClock,
    pub(super) replica: Option<Replica>,
    /// Local time of the next tick.
    pub(super) next_tick: u64,
    pub(super) paused: bool,
    /// The clock's rate before a pause that froze it (a suspended VM whose clock does not
    /// count the suspension: beyond any drift bound).
    pub(super) frozen: Option<f64>,
    /// Packets that arrived while paused: the socket buffer.
    pub(super) held: Vec<Packet>,
    /// A crashed node restarts then (global).
    pub(super) restart_at: Option<u64>,
    /// Why the node cannot restart (its log refused to open).
    pub(super) broken: Option<String>,
    pub(super) scheduler: Scheduler,
    pub(super) machine: Machine,
    pub(super) last_compact: u64,
    /// Requests decided at the previous step, sent at this one (or after a pause).
    pub(super) outbox: Vec<StoreRequest>,
    /// After a pause the application may act before the replica catches up.
    pub(super) app_first: bool,
    /// raft-rs's election timeout as this run drew it, and the state it was drawn for.
    pub(super) timeout: usize,
    pub(super) timeout_key: (u64, u64, u64),
    /// Crash at the end of this step (a fault scheduled while it was acting).
    pub(super) crash_now: Option<Crash>,
    /// Syncs in flight (with `sync_delay_ms`): when each completes (global), in order.
    pub(super) syncs: Vec<(u64, SyncRequest)>,
}

impl Slot {
    /// Node `config.id`, not started, with its disk and clock; jobs fall due every `period`
    /// (ns) from `origin` (global).
    pub(super) fn new(
        config: NodeConfig,
        disk: SimDisk,
        clock: SimClock,
        origin: u64,
        period: u64,
    ) -> Slot {
        Slot {
            config,
            disk,
            clock,
            replica: None,
            next_tick: origin,
            paused: false,
            frozen: None,
            held: Vec::new(),
            restart_at: None,
            broken: None,
            scheduler: Scheduler::new(origin, period),
            machine: Machine::default(),
            last_compact: 0,
            outbox: Vec::new(),
            app_first: false,
            timeout: 0,
            timeout_key: (u64::MAX, 0, 0),
            crash_now: None,
            syncs: Vec::new(),
        }
    }
}

impl Simulation {
    /// Makes node `n`'s slot (its disk, its clock, drifting as the plan says, its
    /// configuration with first membership `voters`), not started.
    pub(super) fn place(&mut self, n: u64, voters: Vec<NodeId>, adjust: &dyn Fn(&mut NodeConfig)) {
        let disk = SimDisk::new();
        let mut clock = SimClock::new(EPOCH);
        let drift = self.config.faults.drift;
        if drift > 0.0 {
            clock.set_rate(EPOCH, 1.0 + self.rng.gen_range(-drift..=drift));
        }
        let mut node = NodeConfig::new(
            id(n),
            ClusterId::new(0xC1),
            PathBuf::from(format!("/node{n}")),
            voters,
        );
        node.timing = self.config.timing;
        node.wal = WalOptions {
            segment_size: 256 << 10,
            disk: DiskHandle::new(disk.clone()),
        };
        adjust(&mut node);
        let period = self.config.job_period.as_nanos() as u64;
        let slot = Slot::new(node, disk, clock, EPOCH, period);
        let index = (n - 1) as usize;
        assert_eq!(
            index,
            self.slots.len(),
            "nodes are numbered from 1, in order"
        );
        self.slots.push(Some(Box::new(slot)));
    }

    /// Adds node `n`, the next id, with first membership `voters` (empty: it joins the group
    /// when a leader adds it), and starts it.
    pub fn add_node(&mut self, n: u64, voters: Vec<NodeId>) {
        self.place(n, voters, &|_| {});
        self.config.nodes = n;
        self.start(n);
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
            Err(e) if e.kind() == ErrorKind::Corrupt && self.flipped.contains(&n) => {
                // Damage at rest was found and refused, as I6 wants: the node stays down.
                self.stats.refused_restarts += 1;
                self.trace
                    .note(self.now, format_args!("node {n} refuses its damaged log"));
                slot.broken = Some("damaged log".into());
            }
            Err(e) if e.kind() == ErrorKind::Io && slot.disk.is_full() => {
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

    pub(super) fn crash_slot(&mut self, n: u64, slot: &mut Slot, how: Crash) {
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

    /// Sets node `n`'s clock rate from now on.
    pub fn set_rate(&mut self, n: u64, rate: f64) {
        let now = self.now;
        self.slot_mut(n).clock.set_rate(now, rate);
        self.trace
            .note(self.now, format_args!("node {n} clock rate {rate:.4}"));
    }

    /// A replica call failed: the node's process exits (its log refuses to go on after an I/O
    /// failure). A failure that is not I/O is a bug.
    pub(super) fn node_failed(&mut self, n: u64, slot: &mut Slot, e: NodeError) {
        let io = matches!(e.kind(), ErrorKind::Io | ErrorKind::LogFailed);
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

    pub(super) fn down_time(&mut self) -> u64 {
        let most = self.config.faults.down_ms.max(10);
        self.rng.gen_range(10..=most) * STEP_NS
    }

    pub(crate) fn schedule_restart(&mut self, n: u64, after: u64) {
        let at = self.now + after;
        let slot = self.slot_mut(n);
        if slot.replica.is_none() && slot.broken.is_none() {
            slot.restart_at = Some(at);
        }
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
