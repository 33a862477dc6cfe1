//! fencekit-sim: a deterministic simulator that runs the real fencekit kernel (replicas,
//! write-ahead log, fence) under faults drawn from a seed, checks the invariants of DESIGN.md
//! after every step, and replays any failure exactly from its seed.
//!
//! - [`simulation::Simulation`]: the world (nodes on simulated disks and clocks, the network,
//!   the fenced store, each node's application), stepped one simulated millisecond at a time;
//!   the node's own tests (`tests/node/`) drive it by hand, without the application;
//! - [`nemesis::Nemesis`] injects the faults a [`faults::FaultPlan`] draws per seed (swarm
//!   testing);
//! - [`checker::Checker`] holds the invariants;
//! - [`run`] is one seed: a safety phase with faults, then a liveness phase without.

pub mod checker;
pub mod clock;
pub mod disk;
pub mod faults;
pub mod nemesis;
pub mod network;
pub mod simulation;
pub mod store;
pub mod trace;
pub mod workload;

use std::time::Duration;

use nemesis::Nemesis;
use simulation::{Outcome, SimConfig, Simulation};

/// How long after healing a leader must hold a lease: a few election rounds, the vote refusal
/// of restarted nodes, and the first commit of the term.
pub const LEADER_BOUND: Duration = Duration::from_secs(3);

/// Jobs due more recently than this before the end may still be running.
const JOB_SLACK_NS: u64 = 500_000_000;

/// Runs one seed: the safety phase with the plan's faults, then the liveness phase.
pub fn run(config: SimConfig) -> Outcome {
    let mut sim = match Simulation::new(config.clone()) {
        Ok(sim) => sim,
        Err(e) => {
            return Outcome {
                seed: config.seed,
                violation: Some(checker::Violation {
                    invariant: "setup",
                    detail: e.to_string(),
                }),
                trace: Vec::new(),
                stats: Default::default(),
                nodes: config.nodes,
                faults: config.faults.summary(),
            };
        }
    };
    let mut nemesis = Nemesis::new(config.faults.clone());
    let safety_end = sim.now + config.safety.as_nanos() as u64;
    while sim.now < safety_end && sim.checker.violation().is_none() {
        nemesis.strike(&mut sim);
        sim.step();
    }
    if sim.checker.violation().is_none() {
        liveness(&mut sim, &mut nemesis);
    }
    fencekit::planted::plant(None);
    sim.outcome()
}

/// Heals everything; a leader must emerge within [`LEADER_BOUND`], entries must commit, and
/// every job due must be done by the end.
fn liveness(sim: &mut Simulation, nemesis: &mut Nemesis) {
    nemesis.calm(sim);
    sim.trace.note(sim.now, "liveness phase");
    let healed = sim.now;
    if sim.wait_for_leader(LEADER_BOUND).is_none() {
        let detail = format!("no leader within {LEADER_BOUND:?} of healing");
        sim.checker.fail_liveness(detail);
        return;
    }
    sim.trace.note(
        sim.now,
        format_args!("leader after {} ms", (sim.now - healed) / 1_000_000),
    );
    let committed = sim.stats.committed;
    sim.run_for(sim.config.liveness);
    if sim.checker.violation().is_some() {
        return;
    }
    if sim.stats.committed <= committed {
        sim.checker.fail_liveness(format!(
            "no entry committed after healing (commit {committed})"
        ));
        return;
    }
    let Some(slowest) = sim
        .ids()
        .filter(|&n| sim.replica(n).is_some())
        .map(|n| sim.local(n).as_nanos())
        .min()
    else {
        sim.checker.fail_liveness("no node running".into());
        return;
    };
    let period = sim.config.job_period.as_nanos() as u64;
    let due = slowest.saturating_sub(simulation::EPOCH + JOB_SLACK_NS) / period;
    if let Some(job) = (0..due).find(|&j| !sim.checker.job_done(j)) {
        sim.checker
            .fail_liveness(format!("job {job} (of {due} due) never completed"));
    }
}
