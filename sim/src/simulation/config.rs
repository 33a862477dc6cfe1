//! How a run is set up: the group, the faults, the workload, the nodes' timing.

use std::time::Duration;

use fencekit::lease::Timing;
use fencekit::planted::PlantedBug;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::faults::FaultPlan;

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
    /// Whether each node runs the application (the job scheduler, a stream of proposals from
    /// the leader, compaction). Off in a scripted test of the node itself, which proposes what
    /// it means to and reads back what was applied (`Reports::applied`).
    pub workload: bool,
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
            workload: true,
            safety: Duration::from_secs(4),
            liveness: Duration::from_secs(3),
            proposals_per_step: 2,
            job_period: Duration::from_millis(20),
            timing: Timing::default(),
            sync_delay_ms: 0,
        }
    }

    /// A run without faults and without the application: a scripted test of the node itself
    /// (`sim/tests/node/`) proposes, crashes and partitions by hand, and every checker runs.
    pub fn bare(seed: u64, nodes: u64) -> SimConfig {
        SimConfig {
            workload: false,
            ..SimConfig::quiet(seed, nodes)
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
