//! The Raft node, beside raw raft-rs in the same run.
//!
//! - `commit/*`: 3 replicas in one thread, messages routed in memory; committed proposals per
//!   second at batch 1, 16 and 256, each batch one `propose_batch`. `raw_raft_mem` is raft-rs
//!   with `MemStorage` and no I/O, proposing entry by entry; `raw_raft_mem_one_proposal` the
//!   same with the batch as one proposal message (the baseline for fencekit's batches); `fencekit_tmpfs` is fencekit's replica on tmpfs, each sync
//!   run at once (its CPU cost: fdatasync is free there); `fencekit_disk` is the real log on
//!   the bench directory's disk, each replica's syncs run beside it by a `Syncer` thread, as
//!   the threaded node does (so the leader's fdatasync overlaps the followers');
//!   `fencekit_threads_disk` is three threaded `Node`s.
//! - failover (printed before criterion's groups): threaded nodes on an in-process network;
//!   the time from isolating the leader to the next usable `leadership()`, p50 and p99.
//!
//! `cargo bench -p fencekit-benches --bench node`; results and goals in benches/README.md.

#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant as StdInstant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use fencekit::Position;
use fencekit::node::{Node, NodeConfig, Replica, Syncer};
use fencekit::time::Instant;
use fencekit::transport::local::LocalNetwork;
use fencekit::{ClusterId, NodeId};
use fencekit_benches::{bench_dir, settle_disk};
use raft::eraftpb::Message;
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole};

const BATCHES: [usize; 3] = [1, 16, 256];
const PAYLOAD: &[u8] = &[0x5A; 64];

fn id(n: u64) -> NodeId {
    NodeId::new(n).expect("non-zero")
}

/// Three fencekit replicas driven in one thread on a virtual clock.
struct Trio {
    replicas: Vec<Replica>,
    now: Instant,
    _dirs: Vec<tempfile::TempDir>,
    next_ticket: u64,
    /// With syncs beside: each replica's syncer, the furthest position asked of it and the
    /// furthest reported, and the reports (replica, position).
    beside: Option<Beside>,
}

struct Beside {
    syncers: Vec<Syncer>,
    asked: Vec<Position>,
    reported: Vec<Position>,
    done: mpsc::Receiver<(usize, Position)>,
}

impl Beside {
    fn new() -> Beside {
        let (tx, done) = mpsc::channel();
        let syncers = (0..3)
            .map(|i| {
                let tx = tx.clone();
                Syncer::spawn(format!("bench-sync-{i}"), move |r| {
                    let _ = tx.send((i, r.expect("sync")));
                })
                .expect("syncer")
            })
            .collect();
        Beside {
            syncers,
            asked: vec![Position::default(); 3],
            reported: vec![Position::default(); 3],
            done,
        }
    }
}

impl Trio {
    /// Syncs run at once, on the driving thread.
    fn new(root: &Path) -> Trio {
        Trio::open(root, false)
    }

    /// Syncs run beside, one syncer thread per replica.
    fn beside(root: &Path) -> Trio {
        Trio::open(root, true)
    }

    fn open(root: &Path, beside: bool) -> Trio {
        let voters: Vec<NodeId> = (1..=3).map(id).collect();
        let now = Instant::from_nanos(1_000_000_000);
        let mut dirs = Vec::new();
        let mut replicas = Vec::new();
        for n in 1..=3 {
            let dir = tempfile::tempdir_in(root).expect("bench dir");
            let config = NodeConfig::new(id(n), ClusterId::new(1), dir.path(), voters.clone());
            replicas.push(Replica::open(&config, now).expect("open replica"));
            dirs.push(dir);
        }
        let mut trio = Trio {
            replicas,
            now,
            _dirs: dirs,
            next_ticket: 1,
            beside: beside.then(Beside::new),
        };
        // Tick on virtual time until a leader holds a lease.
        for _ in 0..10_000 {
            trio.now = trio.now.saturating_add(Duration::from_millis(10));
            for r in &mut trio.replicas {
                r.tick(trio.now);
            }
            trio.settle(&mut 0);
            if trio.leader().is_some() {
                return trio;
            }
        }
        panic!("no leader elected");
    }

    fn leader(&self) -> Option<usize> {
        self.replicas
            .iter()
            .position(|r| r.leadership(self.now).is_some())
    }

    /// Processes and routes until no node has anything to say (nor a sync in flight); counts
    /// resolved proposals.
    fn settle(&mut self, resolved: &mut usize) {
        loop {
            let mut messages: Vec<Message> = Vec::new();
            for (i, r) in self.replicas.iter_mut().enumerate() {
                let out = match &mut self.beside {
                    None => r.process(self.now).expect("process"),
                    Some(beside) => {
                        let (out, sync) = r.process_async(self.now).expect("process");
                        if let Some(sync) = sync {
                            beside.asked[i] = beside.asked[i].max(sync.through());
                            beside.syncers[i].request(sync);
                        }
                        out
                    }
                };
                *resolved += out.resolved.len();
                messages.extend(out.messages);
            }
            if messages.is_empty() {
                let Some(beside) = &mut self.beside else {
                    return;
                };
                // Nothing to route: wait for a sync, unless none is in flight.
                if beside.asked == beside.reported {
                    return;
                }
                let (i, through) = beside.done.recv().expect("syncer");
                beside.reported[i] = beside.reported[i].max(through);
                self.replicas[i]
                    .persisted(through, self.now)
                    .expect("persisted");
                while let Ok((i, through)) = beside.done.try_recv() {
                    beside.reported[i] = beside.reported[i].max(through);
                    self.replicas[i]
                        .persisted(through, self.now)
                        .expect("persisted");
                }
                continue;
            }
            if let Some(beside) = &mut self.beside {
                while let Ok((i, through)) = beside.done.try_recv() {
                    beside.reported[i] = beside.reported[i].max(through);
                    self.replicas[i]
                        .persisted(through, self.now)
                        .expect("persisted");
                }
            }
            for m in messages {
                let to = (m.to - 1) as usize;
                self.replicas[to].step(m, self.now).expect("step");
            }
        }
    }

    fn commit_batch(&mut self, leader: usize, batch: usize) {
        let items = (0..batch)
            .map(|_| {
                self.next_ticket += 1;
                (PAYLOAD.to_vec(), self.next_ticket)
            })
            .collect();
        self.replicas[leader].propose_batch(items).expect("propose");
        let mut resolved = 0;
        while resolved < batch {
            self.settle(&mut resolved);
        }
    }
}

/// Three raw raft-rs nodes with MemStorage, the same routing, no I/O.
struct RawTrio {
    nodes: Vec<RawNode<MemStorage>>,
}

impl RawTrio {
    fn new() -> RawTrio {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let nodes = (1..=3)
            .map(|n| {
                let config = Config {
                    id: n,
                    election_tick: 20,
                    heartbeat_tick: 3,
                    check_quorum: true,
                    pre_vote: true,
                    // As fencekit's replica: without a size limit per message raft-rs sends
                    // one entry per append, and a batch proposed as one would crawl.
                    max_size_per_msg: 1 << 20,
                    max_inflight_msgs: 256,
                    ..Default::default()
                };
                let storage = MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
                RawNode::new(&config, storage, &logger).expect("raw node")
            })
            .collect();
        let mut trio = RawTrio { nodes };
        trio.nodes[0].campaign().expect("campaign");
        trio.settle(&mut 0);
        assert_eq!(trio.nodes[0].raft.state, StateRole::Leader);
        trio
    }

    fn settle(&mut self, committed: &mut usize) {
        loop {
            let mut messages: Vec<Message> = Vec::new();
            for node in &mut self.nodes {
                if !node.has_ready() {
                    continue;
                }
                let mut ready = node.ready();
                messages.extend(ready.take_messages());
                let store = node.mut_store().clone();
                store.wl().append(ready.entries()).expect("append");
                if let Some(hs) = ready.hs() {
                    store.wl().set_hardstate(hs.clone());
                }
                messages.extend(ready.take_persisted_messages());
                *committed += count_data(&ready.take_committed_entries());
                let mut light = node.advance(ready);
                if let Some(commit) = light.commit_index() {
                    store.wl().mut_hard_state().commit = commit;
                }
                messages.extend(light.take_messages());
                *committed += count_data(&light.take_committed_entries());
                node.advance_apply();
            }
            if messages.is_empty() {
                return;
            }
            for m in messages {
                let to = (m.to - 1) as usize;
                self.nodes[to].step(m).expect("step");
            }
        }
    }

    /// Proposes entry by entry (`RawNode::propose`), or, `as_one`, the whole batch as one
    /// proposal message, as fencekit's `propose_batch` does.
    fn commit_batch(&mut self, batch: usize, as_one: bool) {
        if as_one {
            let mut m = Message::default();
            m.set_msg_type(raft::eraftpb::MessageType::MsgPropose);
            m.from = 1;
            let entries: Vec<raft::eraftpb::Entry> = (0..batch)
                .map(|_| raft::eraftpb::Entry {
                    data: PAYLOAD.to_vec().into(),
                    ..Default::default()
                })
                .collect();
            m.set_entries(entries.into());
            self.nodes[0].raft.step(m).expect("propose");
        } else {
            for _ in 0..batch {
                self.nodes[0]
                    .propose(Vec::new(), PAYLOAD.to_vec())
                    .expect("propose");
            }
        }
        let mut committed = 0;
        // Only the leader's count: it applies each entry once.
        while committed < batch * 3 {
            self.settle(&mut committed);
        }
    }
}

fn count_data(entries: &[raft::eraftpb::Entry]) -> usize {
    entries.iter().filter(|e| !e.data.is_empty()).count()
}

fn commit(c: &mut Criterion) {
    settle_disk();
    let mut group = c.benchmark_group("commit");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    let disk = bench_dir();
    let tmpfs = Path::new("/dev/shm");
    for batch in BATCHES {
        group.throughput(Throughput::Elements(batch as u64));
        let mut raw = RawTrio::new();
        group.bench_with_input(BenchmarkId::new("raw_raft_mem", batch), &batch, |b, &n| {
            b.iter(|| raw.commit_batch(n, false))
        });
        let mut raw = RawTrio::new();
        group.bench_with_input(
            BenchmarkId::new("raw_raft_mem_one_proposal", batch),
            &batch,
            |b, &n| b.iter(|| raw.commit_batch(n, true)),
        );
        if tmpfs.is_dir() {
            let mut trio = Trio::new(tmpfs);
            let leader = trio.leader().expect("leader");
            group.bench_with_input(
                BenchmarkId::new("fencekit_tmpfs", batch),
                &batch,
                |b, &n| b.iter(|| trio.commit_batch(leader, n)),
            );
        }
        let mut trio = Trio::beside(disk.path());
        let leader = trio.leader().expect("leader");
        group.bench_with_input(BenchmarkId::new("fencekit_disk", batch), &batch, |b, &n| {
            b.iter(|| trio.commit_batch(leader, n))
        });
        let group_of_threads = Threaded::new();
        group.bench_with_input(
            BenchmarkId::new("fencekit_threads_disk", batch),
            &batch,
            |b, &n| b.iter(|| group_of_threads.commit_batch(n)),
        );
    }
    group.finish();
}

/// Three threaded nodes on an in-process network, each with its log on disk: each node
/// fdatasyncs on its own thread, in parallel, as separate machines would.
struct Threaded {
    nodes: Vec<Node>,
    leader: usize,
    _dirs: Vec<tempfile::TempDir>,
}

impl Threaded {
    fn new() -> Threaded {
        let net = LocalNetwork::new();
        let (nodes, dirs) = three_nodes(&net);
        let deadline = StdInstant::now() + Duration::from_secs(20);
        let leader = loop {
            if let Some(at) = nodes.iter().position(|n| n.leadership().is_some()) {
                break at;
            }
            assert!(StdInstant::now() < deadline, "no leader within 20 s");
            std::thread::sleep(Duration::from_millis(1));
        };
        Threaded {
            nodes,
            leader,
            _dirs: dirs,
        }
    }

    fn commit_batch(&self, batch: usize) {
        let tickets = self.nodes[self.leader]
            .propose_batch(vec![PAYLOAD.to_vec(); batch])
            .expect("propose");
        for ticket in tickets {
            ticket.wait(Duration::from_secs(10)).expect("commit");
        }
        // Committed entries pile up for a host that does not read them; drain.
        for node in &self.nodes {
            while node.applied().try_recv().is_ok() {}
        }
    }
}

/// Three threaded nodes of one group on `net`, each on its own directory (kept by the second
/// item).
fn three_nodes(net: &LocalNetwork) -> (Vec<Node>, Vec<tempfile::TempDir>) {
    let dirs: Vec<_> = (0..3).map(|_| bench_dir()).collect();
    let voters: Vec<NodeId> = (1..=3).map(id).collect();
    let nodes = (1..=3)
        .map(|n| {
            let config = NodeConfig::new(
                id(n),
                ClusterId::new(1),
                dirs[(n - 1) as usize].path(),
                voters.clone(),
            );
            Node::start(config, |inbox| Ok(net.attach(inbox))).expect("start node")
        })
        .collect();
    (nodes, dirs)
}

/// Failover trials in real time: isolate the leader, wait for the next usable leadership.
fn failover(trials: usize) {
    let net = LocalNetwork::new();
    let (nodes, _dirs) = three_nodes(&net);
    let timing = fencekit::lease::Timing::default();
    let wait_leader = |except: Option<NodeId>| -> NodeId {
        let deadline = StdInstant::now() + Duration::from_secs(20);
        loop {
            if let Some(n) = nodes
                .iter()
                .find(|n| Some(n.id()) != except && n.leadership().is_some())
            {
                return n.id();
            }
            assert!(StdInstant::now() < deadline, "no leader within 20 s");
            std::thread::sleep(Duration::from_micros(200));
        }
    };
    let mut leader = wait_leader(None);
    let mut samples = Vec::with_capacity(trials);
    for _ in 0..trials {
        let cut = StdInstant::now();
        net.isolate(leader);
        let next = wait_leader(Some(leader));
        samples.push(cut.elapsed());
        net.heal();
        // Let the old leader rejoin as a follower before the next trial.
        std::thread::sleep(timing.election_timeout());
        leader = next;
    }
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let bound = timing.election_timeout() * 2 + timing.heartbeat_interval() * 2;
    println!(
        "failover/isolate_leader: {} trials, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
         (goal: p99 <= {:.0} ms = max election timeout + 2 heartbeats)",
        samples.len(),
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        bound.as_secs_f64() * 1e3,
    );
}

criterion_group!(benches, commit);

fn main() {
    // The test command runs every bench once: a few trials suffice.
    let quick = fencekit_benches::smoke_run();
    let trials = std::env::var("FENCEKIT_FAILOVER_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(if quick { 3 } else { 100 });
    if trials > 0 {
        failover(trials);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
