//! Tests of the Raft node on the simulated world (`fencekit_sim::simulation::Simulation`,
//! without the workload): real replicas on simulated disks, clocks and network, driven by hand
//! step by step, with every checker of the swarm running along. Each file is named after the
//! property it protects.

#![allow(
    clippy::unwrap_used,
    reason = "a test that meets an error should stop right there"
)]

mod leadership;
mod membership;
mod proposals;
mod recovery;
mod step_boundary;

use std::time::Duration;

use fencekit::NodeId;
use fencekit::node::NodeConfig;
use fencekit_sim::simulation::{SimConfig, Simulation};
use raft::eraftpb::{Message, MessageType};

/// Every test's seed: the world draws election timeouts, delays and clock readings from it.
/// The tests assert only what must hold whatever those draws are.
const SEED: u64 = 25;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn id(n: u64) -> NodeId {
    NodeId::new(n).unwrap()
}

/// `n` voters with default timing, clocks at rate 1, a perfect network, no workload.
fn world(n: u64) -> Simulation {
    world_with(n, |_| {})
}

/// As [`world`], each node's configuration adjusted by `adjust` before it starts.
fn world_with(n: u64, adjust: impl Fn(&mut NodeConfig)) -> Simulation {
    Simulation::new_with(SimConfig::bare(SEED, n), adjust).unwrap()
}

/// Runs until exactly one node holds a lease (at most 10 s); never two at once.
fn wait_for_leader(sim: &mut Simulation) -> u64 {
    assert!(
        sim.run_until(Duration::from_secs(10), |s| s.usable_leader().is_some()),
        "no leader within 10 s of virtual time"
    );
    sim.usable_leader().unwrap()
}

/// I3 over every lease granted so far: each ended before any lease of a later generation
/// began. And no checker of the swarm found anything.
fn assert_leases_disjoint(sim: &Simulation) {
    let overlaps = sim.reports.overlapping_leases();
    assert!(overlaps.is_empty(), "overlapping leases: {overlaps:?}");
    assert_clean(sim);
}

/// No checker found a broken invariant.
fn assert_clean(sim: &Simulation) {
    if let Some(report) = sim.broken() {
        panic!("{report}");
    }
}

/// A Raft message of `kind` from `from` to `to` in `term`, the rest zero.
fn message(kind: MessageType, from: u64, to: u64, term: u64) -> Message {
    let mut m = Message {
        from,
        to,
        term,
        ..Default::default()
    };
    m.set_msg_type(kind);
    m
}
