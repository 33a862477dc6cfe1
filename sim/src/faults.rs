//! Swarm testing: each seed draws its own mix of faults, so that some runs hammer one kind of
//! fault and others a different one (a fault that is always on at a low rate hides the bugs
//! that only show when it dominates).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::network::NetworkFaults;

/// The faults of one run; rates are per second of simulated time.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultPlan {
    /// The network's misbehaviour during the safety phase.
    pub network: NetworkFaults,
    /// Partitions started per second, and how long each lasts (ms).
    pub partitions: f64,
    /// Longest partition, in milliseconds.
    pub partition_ms: u64,
    /// Node crashes per second.
    pub crashes: f64,
    /// Fraction of crashes that are power losses (the rest are kill -9).
    pub power_loss: f64,
    /// Whether a power loss may tear unsynced writes.
    pub torn_writes: bool,
    /// Longest time a crashed node stays down, in milliseconds.
    pub down_ms: u64,
    /// Probability that a node that has just granted a vote or acknowledged an append loses
    /// power right then (the "restart right after acknowledging" trap).
    pub crash_after_ack: f64,
    /// Probability, per crash, of a bit flip at rest on the crashed node's disk.
    pub bit_flip: f64,
    /// Pauses (SIGSTOP) per second.
    pub pauses: f64,
    /// Longest pause, in milliseconds.
    pub pause_ms: u64,
    /// Spread of clock rates around 1 (within the drift bound unless `beyond_drift`).
    pub drift: f64,
    /// Rate changes per second.
    pub drift_changes: f64,
    /// Clock jumps per second (only beyond the drift bound: a jump is unbounded drift).
    pub jumps: f64,
    /// Disk-full episodes per second.
    pub disk_full: f64,
    /// Store crashes per second (kill -9 or power loss, as for nodes).
    pub store_crashes: f64,
}

impl FaultPlan {
    /// No faults at all: the network delivers every packet after `delay_us`.
    pub fn none(delay_us: u64) -> FaultPlan {
        FaultPlan {
            network: NetworkFaults::none(delay_us),
            partitions: 0.0,
            partition_ms: 0,
            crashes: 0.0,
            power_loss: 0.0,
            torn_writes: false,
            down_ms: 0,
            crash_after_ack: 0.0,
            bit_flip: 0.0,
            pauses: 0.0,
            pause_ms: 0,
            drift: 0.0,
            drift_changes: 0.0,
            jumps: 0.0,
            disk_full: 0.0,
            store_crashes: 0.0,
        }
    }

    /// A random mix, each fault switched off in about a third of the seeds. `max_drift` is the
    /// nodes' configured bound; `beyond_drift` lets rates and jumps exceed it.
    pub fn draw(rng: &mut ChaCha8Rng, max_drift: f64, beyond_drift: bool) -> FaultPlan {
        let on = |rng: &mut ChaCha8Rng, hi: f64| {
            if rng.gen_bool(0.35) {
                0.0
            } else {
                rng.gen_range(0.0..hi)
            }
        };
        let delay_min_us = rng.gen_range(100..2_000);
        let network = NetworkFaults {
            loss: on(rng, 0.30),
            duplicate: on(rng, 0.10),
            delay_min_us,
            delay_max_us: delay_min_us + rng.gen_range(0..8_000),
            slow: on(rng, 0.05),
            slow_max_us: rng.gen_range(10_000..400_000),
        };
        FaultPlan {
            network,
            partitions: on(rng, 1.5),
            partition_ms: rng.gen_range(50..2_000),
            crashes: on(rng, 2.0),
            power_loss: rng.gen_range(0.0..1.0),
            torn_writes: rng.gen_bool(0.7),
            down_ms: rng.gen_range(10..1_500),
            crash_after_ack: on(rng, 0.02),
            bit_flip: on(rng, 0.3),
            pauses: on(rng, 1.5),
            pause_ms: rng.gen_range(20..3_000),
            // Bounded: rates within ±drift/2 keep any two clocks' ratio under 1/(1 - drift).
            drift: if beyond_drift {
                rng.gen_range(0.0..0.6)
            } else {
                rng.gen_range(0.0..max_drift / 2.0 * 0.95)
            },
            drift_changes: on(rng, 2.0),
            jumps: if beyond_drift { on(rng, 1.0) } else { 0.0 },
            disk_full: on(rng, 0.3),
            store_crashes: on(rng, 0.8),
        }
    }

    /// One line naming the rates, for the per-seed report.
    pub fn summary(&self) -> String {
        format!(
            "loss={:.2} dup={:.2} slow={:.2} part={:.1}/s crash={:.1}/s pause={:.1}/s drift={:.3} jump={:.1}/s full={:.1}/s",
            self.network.loss,
            self.network.duplicate,
            self.network.slow,
            self.partitions,
            self.crashes,
            self.pauses,
            self.drift,
            self.jumps,
            self.disk_full
        )
    }
}
