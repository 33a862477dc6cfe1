//! The nemesis: injects the faults of a [`FaultPlan`] into a running simulation, step by step,
//! and undoes them (heals, resumes, frees disks) when their time is up or the liveness phase
//! begins.

use rand::Rng;
use rand::seq::SliceRandom;

use crate::faults::FaultPlan;
use crate::network::Endpoint;
use crate::simulation::{Crash, Simulation};

const STEPS_PER_SECOND: f64 = 1_000.0;

/// Something to undo later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Undo {
    Heal,
    Resume(u64),
    FreeDisk(u64),
    FreeStoreDisk,
}

/// The fault injector of one run.
#[derive(Debug)]
pub struct Nemesis {
    plan: FaultPlan,
    pending: Vec<(u64, Undo)>,
}

impl Nemesis {
    /// A nemesis that follows `plan`.
    pub fn new(plan: FaultPlan) -> Nemesis {
        Nemesis {
            plan,
            pending: Vec::new(),
        }
    }

    fn chance(sim: &mut Simulation, per_second: f64) -> bool {
        per_second > 0.0 && sim.rng().gen_bool((per_second / STEPS_PER_SECOND).min(1.0))
    }

    fn pick(sim: &mut Simulation, f: impl Fn(&Simulation, u64) -> bool) -> Option<u64> {
        let ids: Vec<u64> = sim.ids().filter(|&n| f(sim, n)).collect();
        ids.choose(sim.rng()).copied()
    }

    fn later(sim: &mut Simulation, most_ms: u64) -> u64 {
        sim.now + sim.rng().gen_range(1..=most_ms.max(1)) * 1_000_000
    }

    /// Injects this step's faults and undoes the expired ones.
    pub fn strike(&mut self, sim: &mut Simulation) {
        let now = sim.now;
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].0 <= now {
                let (_, undo) = self.pending.swap_remove(i);
                Nemesis::undo(sim, undo);
            } else {
                i += 1;
            }
        }
        let plan = &self.plan;
        if !sim.net.is_partitioned() && Nemesis::chance(sim, plan.partitions) {
            Nemesis::partition(sim);
            let at = Nemesis::later(sim, plan.partition_ms);
            self.pending.push((at, Undo::Heal));
        }
        if Nemesis::chance(sim, plan.crashes)
            && let Some(n) = Nemesis::pick(sim, |s, n| s.is_running(n))
        {
            let (power, torn, in_sync, flip) = {
                let rng = sim.rng();
                (
                    rng.gen_bool(plan.power_loss),
                    plan.torn_writes,
                    rng.gen_bool(0.3),
                    rng.gen_bool(plan.bit_flip),
                )
            };
            if power && in_sync {
                // Dies at its next fdatasync, between write and sync.
                sim.crash_in_next_sync(n);
            } else {
                let how = if power {
                    Crash::Power { torn }
                } else {
                    Crash::Process
                };
                sim.crash(n, how);
                // A minority at most may lose its log to damage, or the group could not go on.
                let minority = (sim.config.nodes - 1) / 2;
                if flip && (sim.flipped().len() as u64) < minority && !sim.flipped().contains(&n) {
                    let mut rng = sim.rng().clone();
                    if let Some(flip) = sim.disk(n).flip_bit(&mut rng, ".wal") {
                        *sim.rng() = rng;
                        sim.trace
                            .note(now, format_args!("node {n}: bit flip at rest in {flip:?}"));
                        sim.mark_flipped(n);
                    }
                }
                let after = sim.down_ms();
                sim.schedule_restart(n, after);
            }
        }
        if Nemesis::chance(sim, plan.pauses)
            && let Some(n) = Nemesis::pick(sim, |s, n| s.is_running(n) && !s.is_paused(n))
        {
            if sim.config.beyond_drift && sim.rng().gen_bool(0.5) {
                sim.pause_with_frozen_clock(n);
            } else {
                sim.pause(n);
            }
            let at = Nemesis::later(sim, plan.pause_ms);
            self.pending.push((at, Undo::Resume(n)));
        }
        if Nemesis::chance(sim, plan.drift_changes)
            && let Some(n) = Nemesis::pick(sim, |_, _| true)
        {
            let drift = plan.drift;
            let rate = 1.0 + sim.rng().gen_range(-drift..=drift);
            sim.set_rate(n, rate);
        }
        if Nemesis::chance(sim, plan.jumps)
            && let Some(n) = Nemesis::pick(sim, |_, _| true)
        {
            let delta: i64 = sim.rng().gen_range(-500_000_000..1_000_000_000);
            sim.clock_mut(n).jump(now, delta);
            sim.trace.note(
                now,
                format_args!("node {n} clock jumps {} ms", delta / 1_000_000),
            );
        }
        if Nemesis::chance(sim, plan.disk_full) {
            let nodes = sim.config.nodes;
            let n = sim.rng().gen_range(0..=nodes);
            let at = Nemesis::later(sim, 500);
            if n == 0 {
                sim.store.disk().set_full(true);
                self.pending.push((at, Undo::FreeStoreDisk));
            } else {
                sim.disk(n).set_full(true);
                self.pending.push((at, Undo::FreeDisk(n)));
            }
            sim.stats.disk_full += 1;
            sim.trace.note(
                now,
                format_args!(
                    "disk of {} full",
                    if n == 0 {
                        "store".to_string()
                    } else {
                        format!("node {n}")
                    }
                ),
            );
        }
        if Nemesis::chance(sim, plan.store_crashes) {
            let how = if sim.rng().gen_bool(plan.power_loss) {
                Crash::Power {
                    torn: plan.torn_writes,
                }
            } else {
                Crash::Process
            };
            sim.crash_store(how);
        }
    }

    fn partition(sim: &mut Simulation) {
        let mut ids: Vec<u64> = sim.ids().collect();
        ids.shuffle(sim.rng());
        match sim.rng().gen_range(0..3) {
            // A random split, symmetric.
            0 => {
                let cut = sim.rng().gen_range(1..ids.len());
                let (a, b) = ids.split_at(cut);
                sim.partition(a, b);
            }
            // The leader (if any) cut off from the other nodes, not from the store.
            1 => {
                let n = sim.leader().unwrap_or(ids[0]);
                sim.isolate(n);
            }
            // Asymmetric: some links fail one way only.
            _ => {
                let links = sim.rng().gen_range(1..=ids.len());
                for _ in 0..links {
                    let a = *ids.choose(sim.rng()).expect("nodes");
                    let b = *ids.choose(sim.rng()).expect("nodes");
                    if a != b {
                        sim.net.block(Endpoint::Node(a), Endpoint::Node(b));
                    }
                }
                sim.stats.partitions += 1;
                sim.trace.note(sim.now, "asymmetric partition");
            }
        }
    }

    fn undo(sim: &mut Simulation, undo: Undo) {
        match undo {
            Undo::Heal => sim.heal(),
            Undo::Resume(n) => sim.resume(n),
            Undo::FreeDisk(n) => sim.disk(n).set_full(false),
            Undo::FreeStoreDisk => sim.store.disk().set_full(false),
        }
    }

    /// Ends every fault for the liveness phase: heals the network and its loss, resumes and
    /// restarts nodes (not those whose log was damaged), frees disks, restarts the store, and
    /// (beyond the drift bound) sets clocks back to rate 1.
    pub fn calm(&mut self, sim: &mut Simulation) {
        for (_, undo) in std::mem::take(&mut self.pending) {
            Nemesis::undo(sim, undo);
        }
        sim.heal();
        sim.config.faults.crash_after_ack = 0.0;
        let delay = sim.net.faults.delay_min_us;
        sim.net.faults = crate::network::NetworkFaults::none(delay);
        for n in sim.ids() {
            sim.disk(n).set_full(false);
            if sim.is_paused(n) {
                sim.resume(n);
            }
            if sim.config.beyond_drift {
                sim.set_rate(n, 1.0);
            }
            if sim.needs_restart(n) {
                sim.schedule_restart(n, 0);
            }
        }
        sim.store.disk().set_full(false);
        if !sim.store.is_up() && !sim.store_restart_pending() {
            sim.restart_store();
        }
    }
}
