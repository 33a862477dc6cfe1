//! The threaded node on an in-process network, in real time.

use std::time::{Duration, Instant};

use fencekit::detect::{Anomaly, audit};
use fencekit::node::{Applied, Event, LostReason, Node, NodeConfig, Role};
use fencekit::transport::Inbox;
use fencekit::transport::local::LocalNetwork;
use fencekit::{ClusterId, LogIndex, NodeError, NodeId};

use crate::id;

struct Group {
    nodes: Vec<Node>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Group {
    fn new(n: u64) -> Group {
        Group::new_with(n, |_| {})
    }

    fn new_with(n: u64, adjust: impl Fn(&mut NodeConfig)) -> Group {
        let net = LocalNetwork::new();
        let voters: Vec<NodeId> = (1..=n).map(id).collect();
        let mut dirs = Vec::new();
        let mut nodes = Vec::new();
        for i in 1..=n {
            let dir = tempfile::tempdir().unwrap();
            let mut config =
                NodeConfig::new(id(i), ClusterId::new(0xC1), dir.path(), voters.clone());
            adjust(&mut config);
            let node = Node::start(config, |inbox: Inbox| Ok(net.attach(inbox))).unwrap();
            dirs.push(dir);
            nodes.push(node);
        }
        Group { nodes, _dirs: dirs }
    }

    fn node(&self, n: u64) -> &Node {
        &self.nodes[(n - 1) as usize]
    }

    fn wait_for_leader(&self, except: Option<u64>) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            for node in &self.nodes {
                if Some(node.id().get()) != except && node.leadership().is_some() {
                    return node.id().get();
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no leader within 10 s");
    }
}

#[test]
fn a_threaded_group_elects_reports_and_replicates() {
    let g = Group::new(3);
    let leader = g.wait_for_leader(None);
    let l = g.node(leader).leadership().unwrap();
    assert_eq!(l.token.holder, id(leader));
    // The event stream said so too, in order: a leader change, then Elected.
    let events: Vec<Event> = g.node(leader).events().try_iter().collect();
    let elected = events
        .iter()
        .position(|e| matches!(e, Event::Elected { token, .. } if *token == l.token));
    let changed = events.iter().position(
        |e| matches!(e, Event::LeaderChanged { leader: Some(x), .. } if x.get() == leader),
    );
    assert!(changed.unwrap() < elected.unwrap(), "{events:?}");

    let tickets: Vec<_> = (0..10)
        .map(|i| {
            g.node(leader)
                .propose(format!("job-{i}").into_bytes())
                .unwrap()
        })
        .collect();
    let indexes: Vec<LogIndex> = tickets
        .into_iter()
        .map(|t| t.wait(Duration::from_secs(5)).unwrap())
        .collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]));
    for node in &g.nodes {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < 10 && Instant::now() < deadline {
            if let Ok(Applied::Entry { data, .. }) =
                node.applied().recv_timeout(Duration::from_millis(100))
            {
                got.push(String::from_utf8(data).unwrap());
            }
        }
        let expected: Vec<String> = (0..10).map(|i| format!("job-{i}")).collect();
        assert_eq!(got, expected);
    }
    // A follower refuses at once, naming the leader.
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let err = g.node(follower).propose(b"x".to_vec()).unwrap_err();
    assert!(
        matches!(err, NodeError::NotLeader { hint: Some(h) } if h == leader),
        "{err}"
    );
    let statuses: Vec<_> = g.nodes.iter().map(|n| n.status().unwrap()).collect();
    assert_eq!(audit(&statuses), vec![]);
}

#[test]
fn a_stalled_leader_thread_loses_leadership_before_it_runs_again() {
    let g = Group::new(3);
    let leader = g.wait_for_leader(None);
    let node = g.node(leader);
    let lease = node.status().unwrap().lease_remaining.unwrap();
    node.stall_for_testing(Duration::from_secs(2)).unwrap();
    // While the thread sleeps, nothing renews the lease; it runs out on the clock.
    std::thread::sleep(Duration::from_millis(250).max(lease + Duration::from_millis(50)));
    assert!(
        node.leadership().is_none(),
        "a stalled leader must not report leadership"
    );
    let status = node.status().unwrap();
    assert_eq!(status.role, Role::Leader, "the node thread has not run yet");
    assert!(status.lease_remaining.is_none());
    // The others elect a successor meanwhile; the audit names the deposed leader, whose lease
    // is already gone.
    let new = g.wait_for_leader(Some(leader));
    let statuses: Vec<_> = g.nodes.iter().map(|n| n.status().unwrap()).collect();
    let anomalies = audit(&statuses);
    assert!(
        anomalies.iter().any(|a| matches!(a,
        Anomaly::StaleLeader { node, with_lease: false, newer_leader, .. }
            if node.get() == leader && newer_leader.get() == new)),
        "{anomalies:?}"
    );
    assert!(
        !anomalies
            .iter()
            .any(|a| matches!(a, Anomaly::OverlappingLeases { .. }))
    );
    // When the thread wakes it steps down.
    let deadline = Instant::now() + Duration::from_secs(5);
    while node.status().unwrap().role == Role::Leader && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_ne!(node.status().unwrap().role, Role::Leader);
    assert!(node.leadership().is_none());
}

#[test]
fn transfer_step_down_and_stop_through_the_node() {
    let g = Group::new(3);
    let leader = g.wait_for_leader(None);
    let to = (1..=3).find(|&n| n != leader).unwrap();
    // A target that cannot take leadership is the membership's refusal, naming it, and
    // revokes nothing.
    for bad in [4, leader] {
        match g.node(leader).transfer_leadership(id(bad)) {
            Err(NodeError::Membership(why)) => assert!(
                why.contains(&bad.to_string()) || why.contains("itself"),
                "{why}"
            ),
            other => panic!("a transfer to node {bad}: {other:?}"),
        }
    }
    assert!(g.node(leader).leadership().is_some());
    g.node(leader).transfer_leadership(id(to)).unwrap();
    assert!(
        g.node(leader).leadership().is_none(),
        "revoked before the call returns"
    );
    assert_eq!(g.wait_for_leader(Some(leader)), to);
    let next = g.node(to).step_down().unwrap();
    assert_ne!(next.get(), to);
    assert!(g.node(to).leadership().is_none());
    assert_eq!(g.wait_for_leader(Some(to)), next.get());

    // Stopping: the lease ends, later calls fail with Stopped, stopping again is harmless.
    let node = g.node(next.get());
    node.stop();
    node.stop();
    assert!(node.leadership().is_none());
    assert!(matches!(
        node.propose(b"x".to_vec()),
        Err(NodeError::Stopped)
    ));
    assert!(matches!(node.step_down(), Err(NodeError::Stopped)));
    assert!(node.stopped().unwrap().contains("stopped"));
    // A stopped node's status claims no leadership, whatever role its Raft had.
    let status = node.status().unwrap();
    assert_eq!(
        (
            status.role,
            status.leader,
            status.leadership,
            status.stopped
        ),
        (fencekit::node::Role::Follower, None, None, true)
    );
    assert!(
        status
            .to_json()
            .contains("\"role\":\"follower\",\"leader\":null")
    );
    let events: Vec<Event> = node.events().try_iter().collect();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Lost {
                reason: fencekit::node::LostReason::Stopped,
                ..
            }
        )),
        "{events:?}"
    );
    // The two others go on.
    let survivor = g.wait_for_leader(Some(next.get()));
    assert_ne!(survivor, next.get());
}

/// I9: a node whose thread dies (a panic in the kernel or in raft-rs) is reported failed at
/// once through every API: no leadership, a `Lost { Failed }` event with the cause, a status
/// that says failed and why, and every call answered with `NodeError::Failed`. The others elect
/// a successor.
#[test]
fn a_node_whose_thread_panics_is_reported_failed_everywhere() {
    let g = Group::new_with(3, |c| c.test_hooks = true);
    let leader = g.wait_for_leader(None);
    let node = g.node(leader);
    let token = node.leadership().unwrap().token;
    while node.events().try_recv().is_ok() {}
    node.panic_for_testing().unwrap();

    let lost = node.events().recv_timeout(Duration::from_secs(5)).unwrap();
    match lost {
        Event::Lost {
            token: t,
            reason: LostReason::Failed(cause),
        } => {
            assert_eq!(t, token);
            assert!(cause.contains("planted panic"), "{cause}");
        }
        other => panic!("expected Lost {{ Failed }}, got {other:?}"),
    }
    assert_eq!(node.leadership(), None);
    assert!(node.failure().unwrap().contains("panicked"));
    let status = node.status().unwrap();
    assert!(status.leadership.is_none());
    assert!(status.failure.as_deref().unwrap().contains("planted panic"));
    assert!(status.to_json().contains("\"failed\":true"));
    assert!(!status.stopped, "failed, not stopped");
    for result in [
        node.propose(b"x".to_vec()).map(|_| ()),
        node.step_down().map(|_| ()),
        node.transfer_leadership(id(leader % 3 + 1)),
        node.compact(LogIndex::ZERO, Vec::new()),
    ] {
        assert!(
            matches!(result, Err(NodeError::Failed(ref c)) if c.contains("panicked")),
            "{result:?}"
        );
    }
    let statuses: Vec<_> = g.nodes.iter().map(|n| n.status().unwrap()).collect();
    assert!(
        audit(&statuses)
            .iter()
            .any(|a| matches!(a, Anomaly::Failed { .. }))
    );
    let successor = g.wait_for_leader(Some(leader));
    assert_ne!(successor, leader);
}

/// The test hook does nothing unless the configuration turned it on.
#[test]
fn the_panic_hook_is_off_by_default() {
    let g = Group::new(1);
    let node = g.node(1);
    g.wait_for_leader(None);
    node.panic_for_testing().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(node.failure(), None);
    assert!(node.leadership().is_some());
}

/// `Node::propose_batch`: one ticket per item, resolved at consecutive indexes in order, the
/// items applied in order on every node; refused whole on a follower and for a bad item.
#[test]
fn a_batch_through_the_node_commits_in_order() {
    let g = Group::new(3);
    let leader = g.wait_for_leader(None);
    let items: Vec<Vec<u8>> = (0..32).map(|i| format!("batch-{i}").into_bytes()).collect();
    let tickets = g.node(leader).propose_batch(items.clone()).unwrap();
    assert_eq!(tickets.len(), 32);
    let indexes: Vec<u64> = tickets
        .into_iter()
        .map(|t| t.wait(Duration::from_secs(5)).unwrap().get())
        .collect();
    for pair in indexes.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "{indexes:?}");
    }
    for node in &g.nodes {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        while seen.len() < items.len() {
            assert!(Instant::now() < deadline, "node {}: {seen:?}", node.id());
            if let Ok(Applied::Entry { data, .. }) =
                node.applied().recv_timeout(Duration::from_millis(50))
                && data.starts_with(b"batch-")
            {
                seen.push(data);
            }
        }
        assert_eq!(seen, items);
    }

    let follower = (1..=3).find(|&n| n != leader).unwrap();
    assert!(matches!(
        g.node(follower).propose_batch(vec![b"x".to_vec()]),
        Err(NodeError::NotLeader { .. })
    ));
    assert!(matches!(
        g.node(leader)
            .propose_batch(vec![b"x".to_vec(), Vec::new()]),
        Err(NodeError::EmptyProposal)
    ));
    assert!(matches!(
        g.node(leader).propose_batch(Vec::new()),
        Err(NodeError::InvalidBatch(_))
    ));
}
