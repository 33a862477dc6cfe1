//! The step boundary (DESIGN.md I8): each message that no honest member sends, stepped into a
//! running group as an authenticated but misbehaving member would send it. Without the
//! boundary, several of them make raft-rs panic, stop a node for good, commit an entry no host
//! proposed, or elect a successor inside the lease. With it, each is refused and counted, and
//! the group goes on with the same leader, terms and membership.

use std::time::Duration;

use raft::eraftpb::{Entry, EntryType, Message, MessageType, Snapshot};

use fencekit::{LogIndex, Term};
use fencekit_sim::simulation::{Crash, Simulation};

use crate::{assert_clean, id, message, wait_for_leader, world};

/// What the group looked like before a forged message.
struct Before {
    leader: u64,
    terms: Vec<Term>,
    commits: Vec<LogIndex>,
    voters: Vec<Vec<fencekit::NodeId>>,
}

fn observe(cluster: &Simulation) -> Before {
    let leader = cluster.usable_leader().expect("a leader");
    let status = |n: u64| cluster.running(n).status(cluster.local(n));
    Before {
        leader,
        terms: (1..=3).map(|n| status(n).term).collect(),
        commits: (1..=3).map(|n| status(n).commit).collect(),
        voters: (1..=3).map(|n| status(n).voters).collect(),
    }
}

fn entry(index: u64, term: u64, kind: EntryType, data: &[u8]) -> Entry {
    let mut e = Entry {
        index,
        term,
        data: data.to_vec().into(),
        ..Default::default()
    };
    e.set_entry_type(kind);
    e
}

/// A forged message, given the group's roles: the leader, a follower, the other follower
/// (the misbehaving sender), the term, and the leader's last log index. It is stepped into `message.to`, or into the
/// follower when `to` names no node of the group or the wrong one on purpose.
type Forge = fn(&Roles) -> Message;

struct Roles {
    leader: u64,
    follower: u64,
    sender: u64,
    term: u64,
    last: u64,
}

fn cases() -> Vec<(&'static str, Forge)> {
    vec![
        ("a heartbeat with a term beyond the generations", |r| {
            message(
                MessageType::MsgHeartbeat,
                r.sender,
                r.follower,
                (1 << 63) + 1,
            )
        }),
        ("a heartbeat whose term jumps 2^40 ahead", |r| {
            message(
                MessageType::MsgHeartbeat,
                r.sender,
                r.follower,
                r.term + (1 << 40),
            )
        }),
        ("the leader's heartbeat committing 2^40", |r| {
            let mut m = message(MessageType::MsgHeartbeat, r.leader, r.follower, r.term);
            m.commit = 1 << 40;
            m
        }),
        ("a proposal from the network", |r| {
            let mut m = message(MessageType::MsgPropose, r.sender, r.leader, 0);
            m.mut_entries()
                .push(entry(0, 0, EntryType::EntryNormal, b"forged"));
            m
        }),
        ("a proposed membership change that does not decode", |r| {
            let mut m = message(MessageType::MsgPropose, r.sender, r.leader, r.term);
            m.mut_entries()
                .push(entry(0, 0, EntryType::EntryConfChangeV2, b"\xff\xff\xff"));
            m
        }),
        ("a leadership transfer request from the network", |r| {
            message(MessageType::MsgTransferLeader, r.sender, r.leader, r.term)
        }),
        ("a transfer go-ahead from a follower", |r| {
            message(MessageType::MsgTimeoutNow, r.sender, r.follower, r.term)
        }),
        (
            "an append of this term from a node that is not its leader",
            |r| {
                let mut m = message(MessageType::MsgAppend, r.sender, r.follower, r.term);
                m.index = r.last;
                m.log_term = r.term;
                m.commit = r.last + 1;
                m.mut_entries()
                    .push(entry(r.last + 1, r.term, EntryType::EntryNormal, b"x"));
                m
            },
        ),
        ("the leader's append with a gap between entries", |r| {
            let mut m = message(MessageType::MsgAppend, r.leader, r.follower, r.term);
            m.index = r.last;
            m.log_term = r.term;
            m.mut_entries()
                .push(entry(r.last + 1, r.term, EntryType::EntryNormal, b"a"));
            m.mut_entries()
                .push(entry(r.last + 5, r.term, EntryType::EntryNormal, b"b"));
            m
        }),
        ("the leader's append of an entry from a future term", |r| {
            let mut m = message(MessageType::MsgAppend, r.leader, r.follower, r.term);
            m.index = r.last;
            m.log_term = r.term;
            m.mut_entries()
                .push(entry(r.last + 1, r.term + 7, EntryType::EntryNormal, b"a"));
            m
        }),
        (
            "the leader's append of a membership change that does not decode",
            |r| {
                let mut m = message(MessageType::MsgAppend, r.leader, r.follower, r.term);
                m.index = r.last;
                m.log_term = r.term;
                m.commit = r.last + 1;
                m.mut_entries().push(entry(
                    r.last + 1,
                    r.term,
                    EntryType::EntryConfChangeV2,
                    b"\xff\xff\xff",
                ));
                m
            },
        ),
        ("the leader's snapshot whose membership has no voter", |r| {
            let mut m = message(MessageType::MsgSnapshot, r.leader, r.follower, r.term);
            let mut snapshot = Snapshot::default();
            snapshot.mut_metadata().index = r.last + 100;
            snapshot.mut_metadata().term = r.term;
            snapshot
                .mut_metadata()
                .mut_conf_state()
                .set_learners(vec![r.follower]);
            m.set_snapshot(snapshot);
            m
        }),
        (
            "a new term's append anchored past the log at term 0, committing past it",
            |r| {
                // raft-rs takes an index past its log to have term 0, so this "matches".
                let mut m = message(MessageType::MsgAppend, r.sender, r.follower, r.term + 1);
                m.index = r.last + 5;
                m.log_term = 0;
                m.commit = r.last + 5;
                m
            },
        ),
        ("a new term's snapshot at index 2^64 - 1", |r| {
            let mut m = message(MessageType::MsgSnapshot, r.sender, r.follower, r.term + 1);
            let mut snapshot = Snapshot::default();
            snapshot.mut_metadata().index = u64::MAX;
            snapshot.mut_metadata().term = r.term;
            snapshot
                .mut_metadata()
                .mut_conf_state()
                .set_voters(vec![1, 2, 3]);
            m.set_snapshot(snapshot);
            m
        }),
        (
            "a vote request quoting a log term newer than its own term",
            |r| {
                let mut m = message(
                    MessageType::MsgRequestVote,
                    r.sender,
                    r.follower,
                    r.term + 1,
                );
                m.log_term = r.term + 9;
                m.index = r.last;
                m
            },
        ),
        ("an acknowledgement of entries the leader never had", |r| {
            let mut m = message(MessageType::MsgAppendResponse, r.sender, r.leader, r.term);
            m.index = 1 << 40;
            m
        }),
        ("an append with term 0 (taken as local by raft-rs)", |r| {
            let mut m = message(MessageType::MsgAppend, r.sender, r.follower, 0);
            m.index = r.last;
            m.commit = r.last + 1;
            m.log_term = r.term;
            m.mut_entries()
                .push(entry(r.last + 1, r.term, EntryType::EntryNormal, b"x"));
            m
        }),
        ("a message addressed to another node", |r| {
            // Stepped into the follower (see `target`).
            message(MessageType::MsgHeartbeat, r.leader, 1 << 40, r.term)
        }),
        ("a message claiming to come from its receiver", |r| {
            message(MessageType::MsgHeartbeat, r.follower, r.follower, r.term)
        }),
        ("a message from node 0", |r| {
            message(MessageType::MsgRequestVote, 0, r.follower, r.term + 1)
        }),
        ("a local tick from the network", |r| {
            message(MessageType::MsgHup, r.sender, r.follower, r.term)
        }),
        ("a read-index request from the network", |r| {
            let mut m = message(MessageType::MsgReadIndex, r.sender, r.leader, r.term);
            m.mut_entries()
                .push(entry(0, 0, EntryType::EntryNormal, b"ctx"));
            m
        }),
        ("a read-index answer nobody asked for", |r| {
            let mut m = message(MessageType::MsgReadIndexResp, r.leader, r.follower, r.term);
            m.index = 1 << 40;
            m.mut_entries()
                .push(entry(0, 0, EntryType::EntryNormal, b"ctx"));
            m
        }),
        ("a heartbeat carrying entries", |r| {
            let mut m = message(MessageType::MsgHeartbeat, r.leader, r.follower, r.term);
            m.mut_entries()
                .push(entry(r.last + 1, r.term, EntryType::EntryNormal, b"x"));
            m
        }),
    ]
}

/// A peer's forged message can make a node refuse it, never stop it, move its term or commit
/// backwards, change the membership, or replace the leader (I8).
#[test]
fn every_forged_message_is_refused_and_the_group_goes_on() {
    for (name, forge) in cases() {
        let mut cluster = world(3);
        let leader = wait_for_leader(&mut cluster);
        // Commit something, so that there are committed entries to rewrite.
        cluster.propose(leader, b"before").unwrap();
        cluster.run_for(Duration::from_millis(100));
        let before = observe(&cluster);
        let followers: Vec<u64> = (1..=3).filter(|&n| n != leader).collect();
        let status = cluster.running(leader).status(cluster.local(leader));
        let roles = Roles {
            leader,
            follower: followers[0],
            sender: followers[1],
            term: status.term.get(),
            last: cluster.running(leader).raft().raft_log.last_index(),
        };
        let forged = forge(&roles);
        let target = if (1..=3).contains(&forged.to) {
            forged.to
        } else {
            roles.follower
        };
        let refused_before = cluster.running(target).refusals().0;
        // Stepped and processed like any message; what it produced is routed to the group.
        let stepped = cluster.forge(target, forged);
        assert!(stepped.is_ok(), "{name}: the node stopped: {stepped:?}");
        let refused = cluster.running(target).refusals();
        assert_eq!(
            refused.0,
            refused_before + 1,
            "{name}: not counted as refused"
        );
        assert!(refused.1.is_some_and(|r| !r.is_empty()), "{name}");

        cluster.run_for(Duration::from_secs(1));
        let after = observe(&cluster);
        assert_eq!(after.leader, before.leader, "{name}: the leader changed");
        assert_eq!(after.terms, before.terms, "{name}: a term moved");
        assert_eq!(after.voters, before.voters, "{name}: the membership moved");
        for (a, b) in after.commits.iter().zip(&before.commits) {
            assert!(a >= b, "{name}: a commit went backwards");
        }
        // Nothing the forger sent was committed: the leader still commits its own proposals.
        let applied_forged = cluster.reports.applied.values().flatten().any(|a| match a {
            fencekit::node::Applied::Entry { data, .. } => data != b"before" && !data.is_empty(),
            fencekit::node::Applied::Snapshot { .. } => false,
        });
        assert!(!applied_forged, "{name}: a forged entry was applied");
        cluster.propose(leader, b"after").unwrap();
        assert!(
            cluster.run_until(Duration::from_secs(1), |c| {
                (1..=3).all(|n| c.running(n).status(c.local(n)).commit > before.commits[0])
            }),
            "{name}: the group no longer commits"
        );
        // The checkers let the target refuse what was forged, and nothing else.
        assert_clean(&cluster);
    }
}

/// The boundary refuses only what no honest member sends: a group under ordinary traffic,
/// elections, a leadership transfer and a membership change refuses nothing.
#[test]
fn honest_traffic_is_never_refused() {
    let mut cluster = world(3);
    let leader = wait_for_leader(&mut cluster);
    for i in 0..20u8 {
        cluster.propose(leader, &[i]).unwrap();
    }
    cluster.run_for(Duration::from_millis(200));
    let next = if leader == 1 { 2 } else { 1 };
    cluster.with(leader, |r| r.transfer_leadership(id(next)).unwrap());
    cluster.run_for(Duration::from_secs(1));
    cluster.crash(next, Crash::Process);
    cluster.run_for(Duration::from_secs(2));
    cluster.start(next);
    cluster.run_for(Duration::from_secs(2));
    let leader = wait_for_leader(&mut cluster);
    // A leader elected a moment ago may not have heard from its peers yet, and refuses a
    // change that would seem to leave it without a quorum: let a few heartbeats pass.
    let mut changed = Err(fencekit::NodeError::Stopped);
    for _ in 0..20 {
        changed = cluster.with(leader, |r| {
            r.change_membership(
                &[fencekit::node::MembershipChange::AddLearner {
                    id: id(4),
                    address: None,
                }],
                999,
            )
        });
        if changed.is_ok() {
            break;
        }
        cluster.run_for(Duration::from_millis(100));
    }
    changed.unwrap();
    cluster.add_node(4, Vec::new());
    cluster.run_for(Duration::from_secs(2));
    for n in 1..=4 {
        assert_eq!(
            cluster.running(n).refusals(),
            (0, None),
            "node {n} refused an honest message"
        );
    }
    assert_clean(&cluster);
}
