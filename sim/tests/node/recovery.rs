//! Restarts from the node's disk (I2, I6): term, vote and log survive, committed entries are
//! delivered again, and a compacted log restarts from its snapshot and feeds a lagging
//! follower.

use fencekit::LogIndex;
use fencekit::node::Applied;
use fencekit_sim::simulation::Crash;

use crate::{assert_leases_disjoint, ms, wait_for_leader, world};

#[test]
fn restart_from_disk_keeps_term_vote_and_log() {
    let mut c = world(3);
    let leader = wait_for_leader(&mut c);
    for i in 0..10 {
        c.propose(leader, format!("e{i}").as_bytes()).unwrap();
    }
    c.run_for(ms(100));
    let before: Vec<(u64, u64, u64, u64)> = (1..=3)
        .map(|n| {
            let raft = c.running(n).raft();
            (
                raft.term,
                raft.vote,
                raft.raft_log.last_index(),
                raft.raft_log.committed,
            )
        })
        .collect();
    for n in 1..=3 {
        c.crash(n, Crash::Process);
    }
    for n in 1..=3 {
        c.reports.applied.remove(&n);
        c.start(n);
    }
    for n in 1..=3 {
        let raft = c.running(n).raft();
        let (term, vote, last, commit) = before[(n - 1) as usize];
        assert_eq!(
            (raft.term, raft.vote, raft.raft_log.last_index()),
            (term, vote, last),
            "node {n}"
        );
        assert!(raft.raft_log.committed <= commit);
    }
    wait_for_leader(&mut c);
    c.run_for(ms(100));
    // Every committed entry is delivered again after the restart, in order, so a host that
    // lost its state rebuilds it.
    for n in 1..=3 {
        let n_entries = c.reports.applied[&n]
            .iter()
            .filter(|a| matches!(a, Applied::Entry { .. }))
            .count();
        assert_eq!(n_entries, 10, "node {n}");
    }
    assert_leases_disjoint(&c);
}

#[test]
fn compaction_then_a_lagging_follower_catches_up_from_the_snapshot() {
    let mut c = world(3);
    let leader = wait_for_leader(&mut c);
    let lagging = (1..=3).find(|&n| n != leader).unwrap();
    c.crash(lagging, Crash::Process);
    for i in 0..30 {
        c.propose(leader, format!("e{i}").as_bytes()).unwrap();
    }
    c.run_for(ms(100));
    let applied = c.running(leader).status(c.local(leader)).applied;
    c.with(leader, |r| r.compact(applied, b"state-after-30"))
        .unwrap();
    c.start(lagging);
    c.run_for(ms(1_000));
    let got = &c.reports.applied[&lagging];
    assert!(
        got.iter()
            .any(|a| matches!(a, Applied::Snapshot { data, .. } if data == b"state-after-30")),
        "{got:?}"
    );
    assert_eq!(
        c.running(lagging).status(c.local(lagging)).commit,
        c.running(leader).status(c.local(leader)).commit
    );
    // Compacting past what is applied is refused.
    let err = c
        .with(leader, |r| {
            r.compact(LogIndex::new(applied.get() + 1_000), b"")
        })
        .unwrap_err();
    assert!(err.to_string().contains("applied"), "{err}");
    // The leader's own log restarts from the snapshot.
    c.crash(leader, Crash::Process);
    c.reports.applied.remove(&leader);
    c.start(leader);
    assert!(
        matches!(c.reports.applied[&leader].first(), Some(Applied::Snapshot { data, .. }) if data == b"state-after-30")
    );
}
