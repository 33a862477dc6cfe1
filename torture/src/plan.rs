//! The nemesis schedule, drawn from a seed: which faults, when, for how long, and the random
//! choices each makes. The same seed draws the same schedule. Who a fault hits when it aims at
//! "the leader" is decided as it is played, as Jepsen's nemeses do, so a replay plays the same
//! faults, not necessarily on the same node.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::history::FaultKind;

/// Every kind, in the order the summary lists them.
pub(crate) const ALL_KINDS: [FaultKind; 14] = [
    FaultKind::PartitionSymmetric,
    FaultKind::PartitionOneWay,
    FaultKind::PartitionBridge,
    FaultKind::PartitionLeader,
    FaultKind::PartitionFlapping,
    FaultKind::PartitionStore,
    FaultKind::PauseNode,
    FaultKind::Zombie,
    FaultKind::PauseStore,
    FaultKind::KillNode,
    FaultKind::KillStore,
    FaultKind::ClockRate,
    FaultKind::DiskFullNode,
    FaultKind::DiskFullStore,
];

/// One fault of the schedule.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Planned {
    pub(crate) kind: FaultKind,
    /// When it begins, in ms after the faults' phase begins.
    pub(crate) at_ms: i64,
    /// How long it lasts (a zombie's pause: past the lease or lock it holds).
    pub(crate) hold_ms: i64,
    /// Chooses among the candidates when it is played.
    pub(crate) pick: u64,
    /// A clock fault's rate.
    pub(crate) rate: f64,
}

/// What the schedule is drawn for.
#[derive(Clone, Debug)]
pub(crate) struct Draw {
    pub(crate) seed: u64,
    pub(crate) duration_ms: i64,
    /// Every kind at least once, and a zombie every few faults (the short run in the tests).
    pub(crate) quick: bool,
    /// The kinds this machine can play.
    pub(crate) kinds: Vec<FaultKind>,
    /// Clock rates beyond the drift bound.
    pub(crate) beyond_drift: bool,
    pub(crate) max_drift: f64,
    /// The longest right to act a node holds (the naive lock's TTL): a zombie's pause outlasts it.
    pub(crate) longest_lease_ms: i64,
}

/// Draws the schedule.
pub(crate) fn draw(d: &Draw) -> Vec<Planned> {
    let mut rng = ChaCha8Rng::seed_from_u64(d.seed);
    let mut queue: Vec<FaultKind> = Vec::new();
    let mut planned = Vec::new();
    let mut at = 0i64;
    while at < d.duration_ms && !d.kinds.is_empty() {
        let kind = if d.quick {
            if queue.is_empty() {
                // A round: every kind once, and two more zombies, the fault the control run
                // must show the naive side failing under.
                queue = d.kinds.clone();
                if d.kinds.contains(&FaultKind::Zombie) {
                    queue.extend([FaultKind::Zombie, FaultKind::Zombie]);
                }
                queue.shuffle(&mut rng);
            }
            queue.pop().unwrap_or(FaultKind::PauseNode)
        } else {
            d.kinds[rng.gen_range(0..d.kinds.len())]
        };
        let hold = hold_ms(kind, &mut rng, d.longest_lease_ms);
        let hold = hold.min(d.duration_ms - at).max(1);
        planned.push(Planned {
            kind,
            at_ms: at,
            hold_ms: hold,
            pick: rng.r#gen(),
            rate: rate(&mut rng, d.max_drift, d.beyond_drift),
        });
        // Faults arrive faster than most end: several are in force at once.
        at += rng.gen_range(800..3_000);
    }
    planned
}

fn hold_ms(kind: FaultKind, rng: &mut ChaCha8Rng, longest_lease_ms: i64) -> i64 {
    match kind {
        FaultKind::Zombie => longest_lease_ms + rng.gen_range(1_000..2_500),
        FaultKind::PauseStore | FaultKind::KillStore => rng.gen_range(500..3_000),
        FaultKind::PartitionFlapping => rng.gen_range(4_000..9_000),
        FaultKind::ClockRate => rng.gen_range(5_000..20_000),
        // Logs preallocate their segments and SQLite reuses its WAL's pages: a full disk bites
        // at a segment's or a checkpoint's allocation, so it must last a while to meet one.
        FaultKind::DiskFullNode | FaultKind::DiskFullStore => rng.gen_range(3_000..15_000),
        _ => rng.gen_range(1_000..6_000),
    }
}

/// A clock rate: within the bound, any two rates drawn satisfy slower ≥ (1 − max_drift) ×
/// faster; beyond it, from half to twice real time.
fn rate(rng: &mut ChaCha8Rng, max_drift: f64, beyond: bool) -> f64 {
    let rate = if beyond {
        if rng.gen_bool(0.5) {
            rng.gen_range(0.5..0.9)
        } else {
            rng.gen_range(1.1..2.0)
        }
    } else {
        // 1 ± d/2.1: (1 − d/2.1) / (1 + d/2.1) ≥ 1 − d; and at least 0.005 from 1, so that
        // a rate that did not take effect shows.
        let spread = max_drift / 2.1;
        let off = rng.gen_range(0.005..=spread.max(0.005));
        if rng.gen_bool(0.5) {
            1.0 + off
        } else {
            1.0 - off
        }
    };
    // Three decimals: what libfaketime is given, and what the report shows.
    (rate * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw_for(seed: u64, quick: bool, beyond_drift: bool) -> Vec<Planned> {
        draw(&Draw {
            seed,
            duration_ms: 60_000,
            quick,
            kinds: ALL_KINDS.to_vec(),
            beyond_drift,
            max_drift: 0.05,
            longest_lease_ms: 1_000,
        })
    }

    #[test]
    fn the_same_seed_draws_the_same_schedule_and_another_seed_another() {
        assert_eq!(draw_for(7, false, false), draw_for(7, false, false));
        assert_ne!(draw_for(7, false, false), draw_for(8, false, false));
    }

    #[test]
    fn a_quick_schedule_plays_every_kind_and_several_zombies() {
        let plan = draw_for(1, true, false);
        for kind in ALL_KINDS {
            assert!(plan.iter().any(|p| p.kind == kind), "{kind:?} missing");
        }
        let zombies = plan.iter().filter(|p| p.kind == FaultKind::Zombie).count();
        assert!(zombies >= 3, "{zombies} zombies");
        assert!(plan.iter().all(|p| p.at_ms + p.hold_ms <= 60_000));
    }

    #[test]
    fn faults_overlap() {
        let plan = draw_for(3, false, false);
        let overlapping = plan
            .windows(2)
            .filter(|w| w[0].at_ms + w[0].hold_ms > w[1].at_ms)
            .count();
        assert!(
            overlapping * 2 > plan.len(),
            "{overlapping} of {}",
            plan.len()
        );
    }

    #[test]
    fn rates_stay_within_the_pairwise_bound_unless_told_otherwise() {
        let rates: Vec<f64> = (0..50)
            .flat_map(|seed| draw_for(seed, false, false))
            .map(|p| p.rate)
            .collect();
        let (lo, hi) = rates
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        assert!(lo / hi >= 0.95, "{lo} / {hi}");
        let close = rates.iter().filter(|r| (*r - 1.0).abs() < 0.0049).count();
        assert_eq!(close, 0, "rates within 0.005 of real time");
        let beyond: Vec<f64> = draw_for(1, false, true).iter().map(|p| p.rate).collect();
        assert!(
            beyond.iter().all(|r| !(0.9..=1.1).contains(r)),
            "{beyond:?}"
        );
    }
}
