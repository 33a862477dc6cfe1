//! Leadership, leases and membership on the deterministic harness.

use std::time::Duration;

use std::sync::Arc;

use fencekit::node::{Applied, Event, LostReason, MembershipChange, Role};
use fencekit::{ConflictResolution, Error, NodeId, TieBreaker, Token};

use crate::harness::{Cluster, id};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn three_nodes_elect_one_leader_whose_token_is_its_term() {
    let mut c = Cluster::new(3);
    let leader = c.wait_for_leader();
    let r = c.replica(leader);
    let l = r.leadership(c.local(leader)).unwrap();
    assert_eq!(l.token.generation.get(), r.term());
    assert_eq!(l.token.holder, id(leader));
    // I4: reported only once an entry of the term is committed.
    let raft = r.raft();
    assert_eq!(
        raft.raft_log.term(raft.raft_log.committed).unwrap(),
        raft.term
    );
    // Followers agree on who leads.
    c.run_for(ms(100));
    for n in 1..=3 {
        assert_eq!(c.replica(n).leader(), Some(id(leader)));
    }
    assert_eq!(c.usable_leader(), Some(leader));
    // The lease is renewed by heartbeat rounds: still held much later.
    c.run_for(ms(2_000));
    assert_eq!(c.usable_leader(), Some(leader));
    c.assert_leases_disjoint();
}

#[test]
fn a_restarted_node_refuses_votes_for_one_election_timeout() {
    // All three start together and refuse votes for their first election timeout, so no
    // leader can exist before it has passed.
    let mut c = Cluster::new(3);
    let start = c.now;
    c.wait_for_leader();
    let (elected_at, _, _) = c.elected_after(0).unwrap();
    let timeout = c.replica(1).timing().election_timeout().as_nanos() as u64;
    assert!(elected_at >= start + timeout);
}

#[test]
fn a_new_leader_is_elected_after_the_leader_crashes_and_only_after_its_lease() {
    let mut c = Cluster::new(3);
    let old = c.wait_for_leader();
    let old_term = c.replica(old).term();
    c.run_for(ms(200));
    let crashed_at = c.now;
    c.crash(old);
    let new = c.wait_for_leader();
    assert_ne!(new, old);
    assert!(c.replica(new).term() > old_term);
    let (elected_at, _, token) = c.elected_after(crashed_at).unwrap();
    assert_eq!(token.holder, id(new));
    // I3: the crashed leader's lease had ended on the clocks before the successor existed.
    c.assert_leases_disjoint();
    // Failover is bounded. raft-rs draws election timeouts from its own random source, so a
    // split vote can add a round; the percentiles are measured in the `node` bench, and this
    // only catches a failover that does not happen.
    let bound = ms(5 * 400).as_nanos() as u64;
    assert!(
        elected_at - crashed_at < bound,
        "failover took {} ns",
        elected_at - crashed_at
    );
}

#[test]
fn a_partitioned_leader_loses_its_lease_before_the_majority_elects_a_successor() {
    let mut c = Cluster::new(3);
    // The leader's clock runs slow and the followers' fast, within the 5 % drift bound:
    // the worst case for I3 (its lease lasts longest, their refusal windows shortest).
    for n in 1..=3 {
        c.set_rate(n, 1.0);
    }
    let leader = c.wait_for_leader();
    let others: Vec<u64> = (1..=3).filter(|&n| n != leader).collect();
    for &n in &others {
        c.set_rate(n, 1.0 / 0.955);
    }
    c.run_for(ms(300));
    let cut_at = c.now;
    c.partition(&[leader], &others);
    assert!(c.run_until(Duration::from_secs(5), |c| {
        c.events
            .iter()
            .any(|e| e.at > cut_at && matches!(e.event, Event::Elected { .. }))
    }));
    let (elected_at, new, _) = c.elected_after(cut_at).unwrap();
    assert!(others.contains(&new));
    let lost = c
        .events
        .iter()
        .find(|e| {
            e.node == leader
                && matches!(
                    e.event,
                    Event::Lost {
                        reason: LostReason::LeaseExpired,
                        ..
                    }
                )
        })
        .expect("the cut-off leader reports its lease expired");
    assert!(
        lost.at <= elected_at,
        "lease lost at {} but successor elected at {elected_at}",
        lost.at
    );
    c.assert_leases_disjoint();
    // The cut-off node may still believe it is Raft leader (check-quorum has not stepped it
    // down yet, or has), but it never reports usable leadership.
    assert!(c.replica(leader).leadership(c.local(leader)).is_none());
}

#[test]
fn a_paused_leader_wakes_without_leadership() {
    let mut c = Cluster::new(3);
    let leader = c.wait_for_leader();
    c.run_for(ms(100));
    assert!(c.replica(leader).leadership(c.local(leader)).is_some());
    c.pause(leader);
    c.run_for(ms(1_500));
    // Before it processes anything at all, its view of leadership is gone: the lease is a
    // deadline on its clock, not a flag someone has to clear.
    let r = c.replica(leader);
    assert_eq!(
        r.raft().state,
        raft::StateRole::Leader,
        "raft has not noticed yet"
    );
    assert!(r.leadership(c.local(leader)).is_none());
    assert_eq!(r.status(c.local(leader)).role, Role::Leader);
    assert!(r.status(c.local(leader)).leadership.is_none());
    c.resume(leader);
    c.run_for(ms(500));
    let new = c.usable_leader().unwrap();
    assert_ne!(new, leader);
    c.assert_leases_disjoint();
}

#[test]
fn a_follower_restarting_right_after_acknowledging_does_not_shorten_the_lease() {
    let mut c = Cluster::new(3);
    let leader = c.wait_for_leader();
    let others: Vec<u64> = (1..=3).filter(|&n| n != leader).collect();
    let (acker, rival) = (others[0], others[1]);
    // The rival no longer hears the leader: the leader's quorum is itself and the acker, and
    // the rival's own refusal window runs out; it keeps asking the acker for pre-votes, which
    // the acker refuses while it hears from the leader.
    c.partition(&[leader], &[rival]);
    c.run_for(ms(400));
    let is_pre_vote = |m: &raft::eraftpb::Message| {
        m.from == rival
            && m.to == acker
            && m.get_msg_type() == raft::eraftpb::MessageType::MsgRequestPreVote
    };
    assert!(c.run_until(Duration::from_secs(5), |c| c.in_flight(is_pre_vote)));
    // A pre-vote is on its way. The acker has just acknowledged a round; now the leader is cut
    // off entirely, and the acker crashes and restarts at once, forgetting the leader.
    c.partition(&[leader], &[acker]);
    c.crash(acker);
    c.start(acker);
    let restarted_at = c.now;
    let lease = c.replica(leader).leadership(c.local(leader)).unwrap();
    let lease_end = c.global(leader, lease.lease_deadline);
    // Without the restart rule the acker would grant that pre-vote and the vote after it, and
    // the rival would lead within milliseconds while the old lease holds.
    assert!(c.run_until(Duration::from_secs(5), |c| {
        c.events.iter().any(|e| {
            e.at > restarted_at && e.node != leader && matches!(e.event, Event::Elected { .. })
        })
    }));
    let (elected_at, _, _) = c.elected_after(restarted_at).unwrap();
    assert!(
        elected_at >= lease_end,
        "elected at {elected_at}, the old lease ends {lease_end}"
    );
    c.assert_leases_disjoint();
}

#[test]
fn transfer_revokes_the_lease_before_the_successor_is_elected() {
    let mut c = Cluster::new(3);
    let leader = c.wait_for_leader();
    c.run_for(ms(100));
    let to = (1..=3).find(|&n| n != leader).unwrap();
    let asked_at = c.now;
    c.with(leader, |r| r.transfer_leadership(id(to))).unwrap();
    // Revoked at once, in the same step.
    assert!(c.replica(leader).leadership(c.local(leader)).is_none());
    assert!(c.events.iter().any(|e| e.node == leader
        && e.at == asked_at
        && matches!(
            e.event,
            Event::Lost {
                reason: LostReason::Transferring,
                ..
            }
        )));
    let new = c.wait_for_leader();
    assert_eq!(new, to);
    c.assert_leases_disjoint();
    // Asking a follower, or naming a non-voter, is refused with a reason.
    let follower = (1..=3).find(|&n| n != new).unwrap();
    let err = c
        .with(follower, |r| r.transfer_leadership(id(new)))
        .unwrap_err();
    assert!(matches!(err, Error::NotLeader { hint: Some(h) } if h == new));
    let err = c.with(new, |r| r.transfer_leadership(id(9))).unwrap_err();
    assert!(err.to_string().contains("not a voter"));
}

#[test]
fn step_down_hands_leadership_to_another_voter() {
    let mut c = Cluster::new(3);
    let leader = c.wait_for_leader();
    c.run_for(ms(100));
    let to = c.with(leader, |r| r.step_down()).unwrap();
    assert_ne!(to.get(), leader);
    assert!(c.replica(leader).leadership(c.local(leader)).is_none());
    assert_eq!(c.wait_for_leader(), to.get());
    c.assert_leases_disjoint();
}

#[test]
fn proposals_commit_in_order_on_every_node_and_followers_refuse_with_a_hint() {
    let mut c = Cluster::new(3);
    let leader = c.wait_for_leader();
    let tickets: Vec<u64> = (0..20)
        .map(|i| c.propose(leader, format!("job-{i}").as_bytes()).unwrap())
        .collect();
    c.run_for(ms(100));
    for t in &tickets {
        assert!(c.resolved[t].is_ok(), "ticket {t}: {:?}", c.resolved.get(t));
    }
    for n in 1..=3 {
        let data: Vec<Vec<u8>> = c.applied[&n]
            .iter()
            .filter_map(|a| match a {
                Applied::Entry { data, .. } => Some(data.clone()),
                Applied::Snapshot { .. } => None,
            })
            .collect();
        let expected: Vec<Vec<u8>> = (0..20).map(|i| format!("job-{i}").into_bytes()).collect();
        assert_eq!(data, expected, "node {n}");
        let indexes: Vec<u64> = c.applied[&n].iter().map(Applied::index).collect();
        assert!(
            indexes.windows(2).all(|w| w[0] < w[1]),
            "node {n}: {indexes:?}"
        );
    }
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let err = c.propose(follower, b"x").unwrap_err();
    assert!(
        matches!(err, Error::NotLeader { hint: Some(h) } if h == leader),
        "{err}"
    );
}

#[test]
fn a_proposal_overwritten_by_a_new_leader_fails_instead_of_succeeding() {
    let mut c = Cluster::new(3);
    let leader = c.wait_for_leader();
    let others: Vec<u64> = (1..=3).filter(|&n| n != leader).collect();
    c.partition(&[leader], &others);
    // Appended on the isolated leader only: it can never commit.
    let ticket = c.propose(leader, b"lost").unwrap();
    let new = {
        assert!(c.run_until(Duration::from_secs(5), |c| {
            others
                .iter()
                .any(|&n| c.replica(n).leadership(c.local(n)).is_some())
        }));
        others
            .iter()
            .copied()
            .find(|&n| c.replica(n).leadership(c.local(n)).is_some())
            .unwrap()
    };
    c.propose(new, b"won").unwrap();
    c.run_for(ms(50));
    c.heal();
    c.run_for(ms(1_000));
    assert!(c.resolved[&ticket].is_err(), "{:?}", c.resolved[&ticket]);
    for n in 1..=3 {
        assert!(
            !c.applied[&n]
                .iter()
                .any(|a| matches!(a, Applied::Entry { data, .. } if data == b"lost"))
        );
    }
}

#[test]
fn membership_add_a_joining_node_then_remove_one() {
    let mut c = Cluster::new(3);
    let leader = c.wait_for_leader();
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
    assert!(c.resolved[&999].is_ok());
    for n in 1..=4 {
        let s = c.replica(n).status(c.local(n));
        assert_eq!(
            s.voters,
            vec![id(1), id(2), id(3), id(4)],
            "node {n}: {:?} {:?}",
            c.applied[&n],
            s
        );
    }
    // The joining node got the membership through a snapshot, then the log.
    assert!(matches!(
        c.applied[&4].first(),
        Some(Applied::Snapshot { .. })
    ));
    assert!(
        c.applied[&4]
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
    assert!(c.resolved[&1000].is_ok());
    assert!(c.replica(gone).is_removed());
    let err = c.propose(gone, b"x").unwrap_err();
    assert!(matches!(err, Error::Stopped), "{err}");
    let s = c.replica(leader).status(c.local(leader));
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
    assert!(c.resolved[&1001].is_ok());
    let s = c.replica(leader).status(c.local(leader));
    assert_eq!(s.voters.len(), 2);
    assert_eq!(s.learners, vec![id(5)]);
    assert!(c.usable_leader().is_some());
    c.assert_leases_disjoint();
}

#[test]
fn a_membership_change_that_leaves_no_quorum_is_refused() {
    let mut c = Cluster::new(5);
    let leader = c.wait_for_leader();
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
    assert!(c.resolved[&8].is_ok());
    let err = c.with(leader, |r| r.change_membership(&[], 9)).unwrap_err();
    assert!(err.to_string().contains("no change"), "{err}");
}

#[test]
fn restart_from_disk_keeps_term_vote_and_log() {
    let mut c = Cluster::new(3);
    let leader = c.wait_for_leader();
    for i in 0..10 {
        c.propose(leader, format!("e{i}").as_bytes()).unwrap();
    }
    c.run_for(ms(100));
    let before: Vec<(u64, u64, u64, u64)> = (1..=3)
        .map(|n| {
            let raft = c.replica(n).raft();
            (
                raft.term,
                raft.vote,
                raft.raft_log.last_index(),
                raft.raft_log.committed,
            )
        })
        .collect();
    for n in 1..=3 {
        c.crash(n);
    }
    for n in 1..=3 {
        c.applied.remove(&n);
        c.start(n);
    }
    for n in 1..=3 {
        let raft = c.replica(n).raft();
        let (term, vote, last, commit) = before[(n - 1) as usize];
        assert_eq!(
            (raft.term, raft.vote, raft.raft_log.last_index()),
            (term, vote, last),
            "node {n}"
        );
        assert!(raft.raft_log.committed <= commit);
    }
    c.wait_for_leader();
    c.run_for(ms(100));
    // Every committed entry is delivered again after the restart, in order, so a host that
    // lost its state rebuilds it.
    for n in 1..=3 {
        let n_entries = c.applied[&n]
            .iter()
            .filter(|a| matches!(a, Applied::Entry { .. }))
            .count();
        assert_eq!(n_entries, 10, "node {n}");
    }
    c.assert_leases_disjoint();
}

#[test]
fn compaction_then_a_lagging_follower_catches_up_from_the_snapshot() {
    let mut c = Cluster::new(3);
    let leader = c.wait_for_leader();
    let lagging = (1..=3).find(|&n| n != leader).unwrap();
    c.crash(lagging);
    for i in 0..30 {
        c.propose(leader, format!("e{i}").as_bytes()).unwrap();
    }
    c.run_for(ms(100));
    let applied = c.replica(leader).status(c.local(leader)).applied;
    c.with(leader, |r| r.compact(applied, b"state-after-30"))
        .unwrap();
    c.start(lagging);
    c.run_for(ms(1_000));
    let got = &c.applied[&lagging];
    assert!(
        got.iter()
            .any(|a| matches!(a, Applied::Snapshot { data, .. } if data == b"state-after-30")),
        "{got:?}"
    );
    assert_eq!(
        c.replica(lagging).status(c.local(lagging)).commit,
        c.replica(leader).status(c.local(leader)).commit
    );
    // Compacting past what is applied is refused.
    let err = c
        .with(leader, |r| r.compact(applied + 1_000, b""))
        .unwrap_err();
    assert!(err.to_string().contains("applied"), "{err}");
    // The leader's own log restarts from the snapshot.
    c.crash(leader);
    c.applied.remove(&leader);
    c.start(leader);
    assert!(
        matches!(c.applied[&leader].first(), Some(Applied::Snapshot { data, .. }) if data == b"state-after-30")
    );
}

/// Prefers node 3 for elections; panics for node 2 (a broken policy).
struct PreferThree;

impl TieBreaker for PreferThree {
    fn resolve_conflict(&self, _: &[u8], _: Token, _: Token) -> ConflictResolution {
        ConflictResolution::KeepCurrent
    }

    fn election_priority(&self, node: NodeId) -> i64 {
        match node.get() {
            3 => 10,
            2 => panic!("a broken policy"),
            _ => 1,
        }
    }
}

#[test]
fn election_priority_comes_from_the_tie_breaker_and_a_panicking_one_counts_as_zero() {
    let mut c = Cluster::new_with(3, |config| config.tie_breaker = Arc::new(PreferThree));
    assert_eq!(c.replica(1).raft().priority, 1);
    assert_eq!(c.replica(2).raft().priority, 0);
    assert_eq!(c.replica(3).raft().priority, 10);
    // The default policy gives every node the same priority.
    let plain = Cluster::new(1);
    assert_eq!(plain.replica(1).raft().priority, 0);
    // Node 3 refuses to vote for the others while its log is as good as theirs, and they do
    // not refuse it: with the others unable to agree without it, it leads.
    c.partition(&[1], &[2]);
    assert_eq!(c.wait_for_leader(), 3);
}

/// A batch reaches raft-rs as one proposal: one Ready, one sync on the leader, one append per
/// follower carrying all of it; each item resolves at its own index, in order.
#[test]
fn a_batch_is_one_ready_one_sync_and_one_append_per_follower() {
    use raft::eraftpb::MessageType;

    let mut c = Cluster::new(3);
    let leader = c.wait_for_leader();
    c.run_for(ms(50));
    let now = c.local(leader);
    let r = c.replica_mut(leader);
    let items: Vec<(Vec<u8>, u64)> = (0..16u64)
        .map(|i| (vec![i as u8 + 1; 8], 1000 + i))
        .collect();
    let first = r.propose_batch(items).unwrap();
    let (out, sync) = r.process_async(now).unwrap();
    let sync = sync.expect("the batch must be synced");
    let appends: Vec<_> = out
        .messages
        .iter()
        .filter(|m| m.get_msg_type() == MessageType::MsgAppend && !m.entries.is_empty())
        .collect();
    assert_eq!(appends.len(), 2, "one append per follower: {appends:?}");
    for m in &appends {
        assert_eq!(m.entries.len(), 16);
        assert_eq!(m.entries[0].index, first);
    }
    // The whole batch was in that Ready: nothing more to sync, and nothing commits before the
    // sync is reported (the followers have not even seen it).
    let (rest, again) = r.process_async(now).unwrap();
    assert!(again.is_none());
    assert!(rest.resolved.is_empty());
    let through = sync.run().unwrap();
    r.persisted(through, now).unwrap();
    for m in out.messages.into_iter().chain(rest.messages) {
        c.step_into(m.to, m).unwrap();
    }
    c.run_for(ms(100));
    for i in 0..16 {
        assert_eq!(c.resolved[&(1000 + i)], Ok(first + i), "item {i}");
    }
}

/// A batch is all or nothing: refused whole by a follower, when empty, when too long, or
/// when one item is too large.
#[test]
fn a_batch_is_refused_whole() {
    use fencekit::limits::PROPOSAL_MAX;
    use fencekit::node::PROPOSE_BATCH_MAX;

    let mut c = Cluster::new(3);
    let leader = c.wait_for_leader();
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let r = c.replica_mut(follower);
    assert!(matches!(
        r.propose_batch(vec![(b"x".to_vec(), 1)]),
        Err(Error::NotLeader { .. })
    ));
    let r = c.replica_mut(leader);
    let last = r.raft().raft_log.last_index();
    assert!(matches!(
        r.propose_batch(Vec::new()),
        Err(Error::InvalidBatch(_))
    ));
    let long = (0..=PROPOSE_BATCH_MAX as u64)
        .map(|i| (vec![1], i))
        .collect();
    assert!(matches!(r.propose_batch(long), Err(Error::InvalidBatch(_))));
    let one_too_large = vec![(vec![1], 1), (vec![0; PROPOSAL_MAX + 1], 2)];
    assert!(matches!(
        r.propose_batch(one_too_large),
        Err(Error::RecordTooLarge { .. })
    ));
    assert_eq!(r.raft().raft_log.last_index(), last, "nothing was appended");
}
