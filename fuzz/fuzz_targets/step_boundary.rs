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

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Rel {
    Same,
    Ahead(u8),
    Behind(u8),
    Zero,
    Raw(u64),
    Max,
}

impl Rel {
    fn of(self, base: u64) -> u64 {
        match self {
            Rel::Same => base,
            Rel::Ahead(d) => base.saturating_add(u64::from(d)),
            Rel::Behind(d) => base.saturating_sub(u64::from(d)),
            Rel::Zero => 0,
            Rel::Raw(v) => v,
            Rel::Max => u64::MAX,
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
    index: Rel,
    term: Rel,
    kind: u8,
    data: Data,
}

#[derive(Arbitrary, Debug)]
struct FuzzSnapshot {
    index: Rel,
    term: Rel,
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
    term: Rel,
    index: Rel,
    log_term: Rel,
    commit: Rel,
    commit_term: Rel,
    reject: bool,
    reject_hint: Rel,
    request_snapshot: Rel,
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
        term: op.term.of(term),
        index: op.index.of(last),
        log_term: op.log_term.of(term),
        commit: op.commit.of(commit),
        commit_term: op.commit_term.of(term),
        reject: op.reject,
        reject_hint: op.reject_hint.of(last),
        request_snapshot: op.request_snapshot.of(0),
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
    for (i, e) in op.entries.iter().take(8).enumerate() {
        let mut entry = Entry {
            index: e.index.of(m.index.saturating_add(1 + i as u64)),
            term: e.term.of(m.term),
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
        meta.index = s.index.of(last);
        meta.term = s.term.of(term);
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
