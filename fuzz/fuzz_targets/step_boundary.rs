//! The step boundary under a misbehaving member: arbitrary message sequences, sent as node 3
//! of a three-replica group on the simulator's network (delays, a running workload), into
//! nodes 1 and 2. Whatever it sends, no replica may panic or stop, and no replica's term or
//! commit index may go backwards (DESIGN.md I8: a peer's message can make a node refuse it,
//! never stop it or move its state backwards).
//!
//! Fields are drawn relative to the receiver's state (its term, last index, commit), so that
//! the fuzzer reaches the paths an honest-looking message would, not only the absurd ones.
//! A compromised member can break what Raft does not defend against (vote twice, ack what it
//! does not hold); the simulator's own safety checkers are therefore not consulted here, only
//! the kernel's promise to survive.

#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use arbitrary::Arbitrary;
use fencekit::lease::Timing;
use fencekit_sim::simulation::{SimConfig, Simulation};
use libfuzzer_sys::fuzz_target;
use protobuf::{Message as _, ProtobufEnum as _};
use raft::eraftpb::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, Message,
    MessageType, Snapshot,
};

const ATTACKER: u64 = 3;

/// A term: the receiver's, give or take, or any.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Term {
    Current(i8),
    Zero,
    Raw(u64),
    Max,
}

impl Term {
    fn at(self, current: u64) -> u64 {
        match self {
            Term::Current(d) => current.saturating_add_signed(i64::from(d)),
            Term::Zero => 0,
            Term::Raw(v) => v,
            Term::Max => u64::MAX,
        }
    }
}

/// A log index: near the receiver's last index or its commit index, or any.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Index {
    Last(i8),
    Commit(i8),
    Zero,
    Raw(u64),
    Max,
}

impl Index {
    fn at(self, last: u64, commit: u64) -> u64 {
        match self {
            Index::Last(d) => last.saturating_add_signed(i64::from(d)),
            Index::Commit(d) => commit.saturating_add_signed(i64::from(d)),
            Index::Zero => 0,
            Index::Raw(v) => v,
            Index::Max => u64::MAX,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Data {
    Bytes(Vec<u8>),
    /// A membership change that decodes.
    Change(Vec<(u8, u8)>),
}

impl Data {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Data::Bytes(b) => b.iter().take(64).copied().collect(),
            Data::Change(changes) => {
                let mut cc = ConfChangeV2::default();
                for &(kind, id) in changes.iter().take(4) {
                    let mut single = ConfChangeSingle::default();
                    single.set_change_type(match kind % 3 {
                        0 => ConfChangeType::AddNode,
                        1 => ConfChangeType::RemoveNode,
                        _ => ConfChangeType::AddLearnerNode,
                    });
                    single.node_id = u64::from(id % 6);
                    cc.mut_changes().push(single);
                }
                cc.write_to_bytes().unwrap_or_default()
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct FuzzEntry {
    /// `None`: the next index after the previous entry (or the message's anchor).
    index: Option<Index>,
    term: Term,
    kind: u8,
    data: Data,
}

#[derive(Arbitrary, Debug)]
struct FuzzSnapshot {
    index: Index,
    term: Term,
    voters: Vec<u8>,
    learners: Vec<u8>,
    outgoing: Vec<u8>,
    next: Vec<u8>,
    auto_leave: bool,
}

#[derive(Arbitrary, Debug)]
struct Op {
    /// Simulation steps (1 ms each) before the message is sent.
    wait: u8,
    to_second: bool,
    kind: u8,
    term: Term,
    index: Index,
    log_term: Term,
    commit: Index,
    commit_term: Term,
    reject: bool,
    reject_hint: Index,
    request_snapshot: Index,
    context: Vec<u8>,
    priority: i64,
    entries: Vec<FuzzEntry>,
    snapshot: Option<FuzzSnapshot>,
}

fn ids(v: &[u8]) -> Vec<u64> {
    v.iter().take(5).map(|&i| u64::from(i % 6)).collect()
}

fn forge(op: &Op, sim: &Simulation) -> Option<Message> {
    let to = if op.to_second { 2 } else { 1 };
    let replica = sim.replica(to)?;
    let raft = replica.raft();
    let (term, last, commit) = (
        raft.term,
        raft.raft_log.last_index(),
        raft.raft_log.committed,
    );
    let kinds = MessageType::values();
    let mut m = Message {
        from: ATTACKER,
        to,
        term: op.term.at(term),
        index: op.index.at(last, commit),
        log_term: op.log_term.at(term),
        commit: op.commit.at(last, commit),
        commit_term: op.commit_term.at(term),
        reject: op.reject,
        reject_hint: op.reject_hint.at(last, commit),
        request_snapshot: op.request_snapshot.at(last, commit),
        context: op
            .context
            .iter()
            .take(32)
            .copied()
            .collect::<Vec<u8>>()
            .into(),
        priority: op.priority,
        ..Default::default()
    };
    m.set_msg_type(kinds[usize::from(op.kind) % kinds.len()]);
    let mut next = m.index.saturating_add(1);
    for e in op.entries.iter().take(8) {
        let index = e.index.map_or(next, |i| i.at(last, commit));
        next = index.saturating_add(1);
        let mut entry = Entry {
            index,
            term: e.term.at(m.term),
            data: e.data.bytes().into(),
            ..Default::default()
        };
        entry.set_entry_type(match e.kind % 3 {
            0 => EntryType::EntryNormal,
            1 => EntryType::EntryConfChange,
            _ => EntryType::EntryConfChangeV2,
        });
        m.mut_entries().push(entry);
    }
    if let Some(s) = &op.snapshot {
        let mut snapshot = Snapshot::default();
        let meta = snapshot.mut_metadata();
        meta.index = s.index.at(last, commit);
        meta.term = s.term.at(term);
        let mut cs = ConfState::default();
        cs.set_voters(ids(&s.voters));
        cs.set_learners(ids(&s.learners));
        cs.set_voters_outgoing(ids(&s.outgoing));
        cs.set_learners_next(ids(&s.next));
        cs.auto_leave = s.auto_leave;
        meta.set_conf_state(cs);
        m.set_snapshot(snapshot);
    }
    Some(m)
}

fuzz_target!(|ops: Vec<Op>| {
    // A fast clock (1 ms ticks, the simulator's step): elections in tens of steps, so that
    // each input runs in milliseconds.
    let mut config = SimConfig::quiet(0, 3);
    config.timing = Timing {
        tick: Duration::from_millis(1),
        election_tick: 10,
        heartbeat_tick: 3,
        max_drift: 0.05,
        margin: Duration::from_millis(1),
    };
    let mut sim = Simulation::new(config).expect("the simulation starts");
    sim.wait_for_leader(Duration::from_secs(5))
        .expect("a quiet group elects a leader");
    let mut seen: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut observe = |sim: &Simulation| {
        for n in 1..=3 {
            let replica = sim
                .replica(n)
                .unwrap_or_else(|| panic!("node {n} stopped: {:?}", sim.outcome().violation));
            let raft = replica.raft();
            let now = (raft.term, raft.raft_log.committed);
            let before = seen.insert(n, now).unwrap_or((0, 0));
            assert!(
                now.0 >= before.0,
                "node {n}'s term went from {} to {}",
                before.0,
                now.0
            );
            assert!(
                now.1 >= before.1,
                "node {n}'s commit went from {} to {}",
                before.1,
                now.1
            );
        }
        if let Some(v) = sim.outcome().violation {
            // A member that lies can break Raft's safety (it may vote twice); it must never
            // make a node fail.
            assert!(
                !v.detail.contains("unexpected error"),
                "{}: {}",
                v.invariant,
                v.detail
            );
        }
    };
    for op in ops.iter().take(64) {
        for _ in 0..=op.wait % 64 {
            sim.step();
            observe(&sim);
        }
        if let Some(message) = forge(op, &sim) {
            sim.inject(message);
        }
    }
    for _ in 0..100 {
        sim.step();
        observe(&sim);
    }
});
