//! The TCP transport with mutual TLS beside the same transport in plaintext, in one run.
//!
//! - `tcp_commit/*`: three threaded nodes over loopback TCP, proposals through
//!   `Node::propose`, batch 16, 64-byte payloads, committed per second. `plain_*` runs
//!   `Security::Insecure`, `tls_*` mutual TLS with development certificates; `*_tmpfs` keeps
//!   the logs on tmpfs (the transport's CPU shows), `*_disk` on the bench directory's disk.
//! - failover (printed before criterion's groups): the leader is stopped; the time to the
//!   next usable `leadership()` on another node, p50 and p99, plaintext then TLS. The stopped
//!   node restarts from its log between trials, so every trial also reconnects to a restarted
//!   peer.
//!
//! `cargo bench -p fencekit-benches --bench transport`; results in benches/README.md.

#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use fencekit::node::{Node, NodeConfig};
use fencekit::transport::tcp::tls::TlsFiles;
use fencekit::transport::tcp::{Security, TcpConfig, TcpTransport, dev_certs};
use fencekit::{ClusterId, NodeId};
use fencekit_benches::{bench_dir, settle_disk};

const BATCH: usize = 16;
const PAYLOAD: &[u8] = &[0x5A; 64];

fn id(n: u64) -> NodeId {
    NodeId::new(n).expect("non-zero")
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// Three threaded nodes over TCP on loopback.
struct TcpTrio {
    nodes: Vec<Option<Node>>,
    addrs: Vec<SocketAddr>,
    dirs: Vec<tempfile::TempDir>,
    certs: Option<tempfile::TempDir>,
}

impl TcpTrio {
    fn new(root: &Path, tls: bool) -> TcpTrio {
        let certs = tls.then(|| {
            let dir = tempfile::tempdir().expect("a certificates directory");
            dev_certs::init(dir.path(), ClusterId::new(1), &[id(1), id(2), id(3)])
                .expect("certificates");
            dir
        });
        let mut trio = TcpTrio {
            nodes: Vec::new(),
            addrs: (0..3).map(|_| free_addr()).collect(),
            dirs: (0..3)
                .map(|_| tempfile::tempdir_in(root).expect("a node directory"))
                .collect(),
            certs,
        };
        for n in 1..=3 {
            let node = trio.start(n);
            trio.nodes.push(Some(node));
        }
        trio
    }

    fn start(&self, n: u64) -> Node {
        let voters: Vec<NodeId> = (1..=3).map(id).collect();
        let config = NodeConfig::new(
            id(n),
            ClusterId::new(1),
            self.dirs[(n - 1) as usize].path(),
            voters,
        );
        let security = match &self.certs {
            Some(dir) => Security::Tls(TlsFiles::in_dir(dev_certs::node_dir(dir.path(), id(n)))),
            None => Security::Insecure,
        };
        let tcp = TcpConfig {
            cluster: ClusterId::new(1),
            node: id(n),
            listen: self.addrs[(n - 1) as usize],
            peers: (1..=3u64)
                .filter(|&p| p != n)
                .map(|p| (id(p), self.addrs[(p - 1) as usize].to_string()))
                .collect(),
            security,
        };
        Node::start(config, |inbox| Ok(TcpTransport::bind(tcp, inbox)?)).expect("start a node")
    }

    /// The index of the node with usable leadership, other than `except`.
    fn leader(&self, except: Option<usize>) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.nodes.iter().enumerate().position(|(i, n)| {
                Some(i) != except && n.as_ref().is_some_and(|n| n.leadership().is_some())
            });
            if let Some(at) = found {
                return at;
            }
            assert!(Instant::now() < deadline, "no leader within 20 s");
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("running")
    }

    fn commit_batch(&self, leader: usize, batch: usize) {
        let tickets: Vec<_> = (0..batch)
            .map(|_| {
                self.node(leader)
                    .propose(PAYLOAD.to_vec())
                    .expect("propose")
            })
            .collect();
        for ticket in tickets {
            ticket.wait(Duration::from_secs(10)).expect("commit");
        }
        for node in self.nodes.iter().flatten() {
            while node.applied().try_recv().is_ok() {}
        }
    }
}

fn tcp_commit(c: &mut Criterion) {
    settle_disk();
    let mut group = c.benchmark_group("tcp_commit");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(BATCH as u64));
    let disk = bench_dir();
    let mut places: Vec<(&str, &Path)> = Vec::new();
    let tmpfs = Path::new("/dev/shm");
    if tmpfs.is_dir() {
        places.push(("tmpfs", tmpfs));
    }
    places.push(("disk", disk.path()));
    for (place, root) in places {
        // Plaintext and TLS alternate within a place, so that drift in the machine's load
        // touches both alike.
        for tls in [false, true] {
            let trio = TcpTrio::new(root, tls);
            let leader = trio.leader(None);
            let name = format!("{}_{place}", if tls { "tls" } else { "plain" });
            group.bench_with_input(BenchmarkId::new(name, BATCH), &BATCH, |b, &n| {
                b.iter(|| trio.commit_batch(leader, n))
            });
        }
    }
    group.finish();
}

/// Failover trials: stop the leader, time until another node leads; restart the stopped one.
fn failover(trials: usize, tls: bool) -> Vec<Duration> {
    let root = bench_dir();
    let mut trio = TcpTrio::new(root.path(), tls);
    let timing = fencekit::lease::Timing::default();
    let mut samples = Vec::with_capacity(trials);
    for _ in 0..trials {
        let leader = trio.leader(None);
        let stopped = Instant::now();
        if let Some(node) = trio.nodes[leader].take() {
            node.stop();
        }
        trio.leader(Some(leader));
        samples.push(stopped.elapsed());
        let restarted = trio.start(leader as u64 + 1);
        trio.nodes[leader] = Some(restarted);
        // Let it rejoin (and outlast its own vote-refusal window) before the next trial.
        std::thread::sleep(timing.election_timeout() * 2);
    }
    samples.sort();
    samples
}

fn report(name: &str, samples: &[Duration]) {
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "failover/stop_leader_{name}: {} trials, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
    );
}

criterion_group!(benches, tcp_commit);

fn main() {
    // The test command runs every bench once: a few trials suffice.
    let quick = fencekit_benches::smoke_run();
    let trials = std::env::var("FENCEKIT_FAILOVER_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(if quick { 2 } else { 60 });
    if trials > 0 {
        let plain = failover(trials, false);
        let tls = failover(trials, true);
        report("plain", &plain);
        report("tls", &tls);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
