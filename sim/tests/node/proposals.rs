//! Proposals (I2, I4): they commit in order on every node, a follower refuses with a hint, an
//! entry a new leader overwrote fails rather than succeeds, and a batch is one sync, one append
//! and all or nothing.

use std::time::Duration;

use fencekit::node::Applied;
use fencekit::{LogIndex, NodeError};

use crate::{ms, wait_for_leader, world};

#[test]
fn proposals_commit_in_order_on_every_node_and_followers_refuse_with_a_hint() {
    let mut c = world(3);
    let leader = wait_for_leader(&mut c);
    let tickets: Vec<u64> = (0..20)
        .map(|i| c.propose(leader, format!("job-{i}").as_bytes()).unwrap())
        .collect();
    c.run_for(ms(100));
    for t in &tickets {
        assert!(
            c.reports.resolved[t].is_ok(),
            "ticket {t}: {:?}",
            c.reports.resolved.get(t)
        );
    }
    for n in 1..=3 {
        let data: Vec<Vec<u8>> = c.reports.applied[&n]
            .iter()
            .filter_map(|a| match a {
                Applied::Entry { data, .. } => Some(data.clone()),
                Applied::Snapshot { .. } => None,
            })
            .collect();
        let expected: Vec<Vec<u8>> = (0..20).map(|i| format!("job-{i}").into_bytes()).collect();
        assert_eq!(data, expected, "node {n}");
        let indexes: Vec<LogIndex> = c.reports.applied[&n].iter().map(Applied::index).collect();
        assert!(
            indexes.windows(2).all(|w| w[0] < w[1]),
            "node {n}: {indexes:?}"
        );
    }
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let err = c.propose(follower, b"x").unwrap_err();
    assert!(
        matches!(err, NodeError::NotLeader { hint: Some(h) } if h == leader),
        "{err}"
    );
}

#[test]
fn a_proposal_overwritten_by_a_new_leader_fails_instead_of_succeeding() {
    let mut c = world(3);
    let leader = wait_for_leader(&mut c);
    let others: Vec<u64> = (1..=3).filter(|&n| n != leader).collect();
    c.partition(&[leader], &others);
    // Appended on the isolated leader only: it can never commit.
    let ticket = c.propose(leader, b"lost").unwrap();
    let new = {
        assert!(c.run_until(Duration::from_secs(5), |c| {
            others
                .iter()
                .any(|&n| c.running(n).leadership(c.local(n)).is_some())
        }));
        others
            .iter()
            .copied()
            .find(|&n| c.running(n).leadership(c.local(n)).is_some())
            .unwrap()
    };
    c.propose(new, b"won").unwrap();
    c.run_for(ms(50));
    c.heal();
    c.run_for(ms(1_000));
    assert!(
        c.reports.resolved[&ticket].is_err(),
        "{:?}",
        c.reports.resolved[&ticket]
    );
    for n in 1..=3 {
        assert!(
            !c.reports.applied[&n]
                .iter()
                .any(|a| matches!(a, Applied::Entry { data, .. } if data == b"lost"))
        );
    }
}

/// A batch reaches raft-rs as one proposal: one Ready, one sync on the leader, one append per
/// follower carrying all of it; each item resolves at its own index, in order.
#[test]
fn a_batch_is_one_ready_one_sync_and_one_append_per_follower() {
    use raft::eraftpb::MessageType;

    let mut c = world(3);
    let leader = wait_for_leader(&mut c);
    c.run_for(ms(50));
    let now = c.local(leader);
    let r = c.running_mut(leader);
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
        assert_eq!(m.entries[0].index, first.get());
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
        assert_eq!(
            c.reports.resolved[&(1000 + i)],
            Ok(LogIndex::new(first.get() + i)),
            "item {i}"
        );
    }
}

/// A batch is all or nothing: refused whole by a follower, when empty, when too long, or
/// when one item is too large.
#[test]
fn a_batch_is_refused_whole() {
    use fencekit::limits::PROPOSAL_MAX;
    use fencekit::node::PROPOSE_BATCH_MAX;

    let mut c = world(3);
    let leader = wait_for_leader(&mut c);
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let r = c.running_mut(follower);
    assert!(matches!(
        r.propose_batch(vec![(b"x".to_vec(), 1)]),
        Err(NodeError::NotLeader { .. })
    ));
    let r = c.running_mut(leader);
    let last = r.raft().raft_log.last_index();
    assert!(matches!(
        r.propose_batch(Vec::new()),
        Err(NodeError::InvalidBatch(_))
    ));
    let long = (0..=PROPOSE_BATCH_MAX as u64)
        .map(|i| (vec![1], i))
        .collect();
    assert!(matches!(
        r.propose_batch(long),
        Err(NodeError::InvalidBatch(_))
    ));
    let one_too_large = vec![(vec![1], 1), (vec![0; PROPOSAL_MAX + 1], 2)];
    assert!(matches!(
        r.propose_batch(one_too_large),
        Err(NodeError::ProposalTooLarge(range)) if range.max == PROPOSAL_MAX as u64
    ));
    assert_eq!(r.raft().raft_log.last_index(), last, "nothing was appended");
}
