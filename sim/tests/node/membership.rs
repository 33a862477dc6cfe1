//! Membership changes: a joining node gets the state by snapshot, a removed one stops, two
//! changes go through joint consensus, and a change that would leave no quorum is refused.

use fencekit::NodeError;
use fencekit::node::{Applied, MembershipChange};

use crate::{assert_leases_disjoint, id, ms, wait_for_leader, world};

#[test]
fn membership_add_a_joining_node_then_remove_one() {
    let mut c = world(3);
    let leader = wait_for_leader(&mut c);
    c.propose(leader, b"before-join").unwrap();
    c.run_for(ms(50));
    c.add_node(4, Vec::new());
    let ticket = c
        .with(leader, |r| {
            r.change_membership(
                &[MembershipChange::AddVoter {
                    id: id(4),
                    address: None,
                }],
                999,
            )
        })
        .unwrap();
    c.run_for(ms(500));
    let _ = ticket;
    assert!(c.reports.resolved[&999].is_ok());
    for n in 1..=4 {
        let s = c.running(n).status(c.local(n));
        assert_eq!(
            s.voters,
            vec![id(1), id(2), id(3), id(4)],
            "node {n}: {:?} {:?}",
            c.reports.applied[&n],
            s
        );
    }
    // The joining node got the membership through a snapshot, then the log.
    assert!(matches!(
        c.reports.applied[&4].first(),
        Some(Applied::Snapshot { .. })
    ));
    assert!(
        c.reports.applied[&4]
            .iter()
            .any(|a| matches!(a, Applied::Entry { data, .. } if data == b"before-join"))
    );

    // Remove a follower: it stops taking part.
    let gone = (1..=4).find(|&n| n != leader).unwrap();
    c.with(leader, |r| {
        r.change_membership(&[MembershipChange::Remove { id: id(gone) }], 1000)
    })
    .unwrap();
    c.run_for(ms(500));
    assert!(c.reports.resolved[&1000].is_ok());
    assert!(c.running(gone).is_removed());
    let err = c.propose(gone, b"x").unwrap_err();
    assert!(matches!(err, NodeError::Stopped), "{err}");
    let s = c.running(leader).status(c.local(leader));
    assert_eq!(s.voters.len(), 3);
    assert!(!s.voters.contains(&id(gone)));

    // Two changes at once go through joint consensus.
    c.add_node(5, Vec::new());
    c.with(leader, |r| {
        r.change_membership(
            &[
                MembershipChange::AddLearner {
                    id: id(5),
                    address: None,
                },
                MembershipChange::Remove {
                    id: (1..=4).find(|&n| n != leader && n != gone).map(id).unwrap(),
                },
            ],
            1001,
        )
    })
    .unwrap();
    c.run_for(ms(1_000));
    assert!(c.reports.resolved[&1001].is_ok());
    let s = c.running(leader).status(c.local(leader));
    assert_eq!(s.voters.len(), 2);
    assert_eq!(s.learners, vec![id(5)]);
    assert!(c.usable_leader().is_some());
    assert_leases_disjoint(&c);
}

#[test]
fn a_membership_change_that_leaves_no_quorum_is_refused() {
    let mut c = world(5);
    let leader = wait_for_leader(&mut c);
    let others: Vec<u64> = (1..=5).filter(|&n| n != leader).collect();
    let (active, away) = (&others[..2], &others[2..]);
    // Two followers unreachable for long enough that the leader sees them inactive; it keeps
    // a quorum (itself and two) and stays leader.
    c.partition(&[leader], away);
    c.run_for(ms(600));
    assert_eq!(c.usable_leader(), Some(leader));
    // Removing a reachable voter would leave 2 reachable of 4: below the quorum of 3.
    let err = c
        .with(leader, |r| {
            r.change_membership(&[MembershipChange::Remove { id: id(active[0]) }], 7)
        })
        .unwrap_err();
    assert!(err.to_string().contains("fewer than the quorum"), "{err}");
    // Removing an unreachable one leaves 3 reachable of 4, and goes through.
    c.with(leader, |r| {
        r.change_membership(&[MembershipChange::Remove { id: id(away[0]) }], 8)
    })
    .unwrap();
    c.run_for(ms(200));
    assert!(c.reports.resolved[&8].is_ok());
    let err = c.with(leader, |r| r.change_membership(&[], 9)).unwrap_err();
    assert!(err.to_string().contains("no change"), "{err}");
}
