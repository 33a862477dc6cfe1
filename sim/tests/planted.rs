//! The simulator must be able to fail: each bug planted in the kernel (compiled only into the
//! simulator's own build of it, `sim/kernel/`) is caught by the swarm within a bounded number
//! of seeds, and by the invariant it breaks. The same seeds pass without the bug.

use std::time::Duration;

use fencekit::planted::PlantedBug;
use fencekit_sim::simulation::SimConfig;

/// Seeds tried per bug; each is caught within the first few (see the binary's `--bug`).
const SEEDS: u64 = 40;

fn first_catch(bug: PlantedBug) -> Option<(u64, &'static str)> {
    first_catch_with(bug, |_| {})
}

fn first_catch_with(
    bug: PlantedBug,
    adjust: impl Fn(&mut SimConfig),
) -> Option<(u64, &'static str)> {
    (0..SEEDS).find_map(|seed| {
        let mut config = SimConfig::swarm(seed, false);
        config.bug = Some(bug);
        adjust(&mut config);
        config.safety = Duration::from_secs(3);
        config.liveness = Duration::from_secs(2);
        fencekit_sim::run(config)
            .violation
            .map(|v| (seed, v.invariant))
    })
}

#[test]
fn a_node_acting_without_its_lease_is_caught() {
    let (seed, invariant) = first_catch(PlantedBug::LeaseIgnored).expect("caught");
    assert!(
        ["I3", "I4"].contains(&invariant),
        "seed {seed}: {invariant}"
    );
}

#[test]
fn a_fence_acknowledging_before_durable_is_caught() {
    let (seed, invariant) = first_catch(PlantedBug::FenceAckBeforeDurable).expect("caught");
    assert_eq!(invariant, "I5", "seed {seed}");
}

#[test]
fn a_follower_voting_before_persisting_is_caught() {
    let (seed, invariant) = first_catch(PlantedBug::VoteBeforePersist).expect("caught");
    assert!(
        ["I1", "I2"].contains(&invariant),
        "seed {seed}: {invariant}"
    );
}

/// The same bug with every sync beside the replica (`process_async`, as the threaded node
/// runs): the vote still leaves before it is durable, and is still caught.
#[test]
fn a_follower_voting_before_persisting_is_caught_with_syncs_beside() {
    let (seed, invariant) = first_catch_with(PlantedBug::VoteBeforePersist, |config| {
        config.sync_delay_ms = config.sync_delay_ms.max(3);
    })
    .expect("caught");
    assert!(
        ["I1", "I2"].contains(&invariant),
        "seed {seed}: {invariant}"
    );
}

#[test]
fn without_a_bug_the_same_seeds_pass() {
    for seed in 0..8 {
        let mut config = SimConfig::swarm(seed, false);
        config.safety = Duration::from_secs(3);
        config.liveness = Duration::from_secs(2);
        let outcome = fencekit_sim::run(config);
        assert!(
            outcome.violation.is_none(),
            "seed {seed}: {:?}",
            outcome.violation
        );
    }
}
