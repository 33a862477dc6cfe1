//! An in-process cluster of replicas on one virtual time line: a simulated network (drop,
//! delay, partitions), per-node clock rates, pauses and crashes. Single-threaded and
//! deterministic but for raft-rs's own randomized election timeouts, so tests assert on the
//! clocks (never on sleeps) and only on what holds whatever those draws are.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use fencekit::node::{Applied, Event, NodeConfig, Output, Replica};
use fencekit::time::Instant;
use fencekit::{Error, NodeId, Token};
use raft::eraftpb::{Message, MessageType};

/// Global (real) time, in nanoseconds.
pub(crate) type Global = u64;

/// Something a node reported, stamped with the global time.
#[derive(Clone, Debug)]
pub(crate) struct Stamped {
    pub at: Global,
    pub node: u64,
    pub event: Event,
}

/// A lease as granted, in global time.
#[derive(Copy, Clone, Debug)]
pub(crate) struct LeaseSpan {
    pub token: Token,
    pub from: Global,
    /// The latest deadline this lease reached, converted to global time.
    pub until: Global,
}

pub(crate) struct Cluster {
    pub nodes: BTreeMap<u64, Option<Replica>>,
    configs: BTreeMap<u64, NodeConfig>,
    _dirs: Vec<tempfile::TempDir>,
    /// Each node's clock rate relative to global time, and its local origin.
    rates: BTreeMap<u64, f64>,
    next_tick: BTreeMap<u64, Global>,
    pub now: Global,
    /// Step length.
    pub step: Duration,
    /// One-way network delay.
    pub delay: Duration,
    in_flight: VecDeque<(Global, Message)>,
    blocked: BTreeSet<(u64, u64)>,
    paused: BTreeSet<u64>,
    pub events: Vec<Stamped>,
    pub applied: BTreeMap<u64, Vec<Applied>>,
    pub resolved: BTreeMap<u64, Result<u64, String>>,
    pub leases: Vec<LeaseSpan>,
    next_proposal: u64,
}

fn data_root() -> PathBuf {
    // tmpfs when there is one: fdatasync there is free, and these tests are about ordering.
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

pub(crate) fn id(n: u64) -> NodeId {
    NodeId::new(n).unwrap()
}

/// A Raft message of `kind` from `from` to `to` in `term`, the rest zero.
pub(crate) fn message(kind: MessageType, from: u64, to: u64, term: u64) -> Message {
    let mut m = Message {
        from,
        to,
        term,
        ..Default::default()
    };
    m.set_msg_type(kind);
    m
}

impl Cluster {
    /// `n` voters with default timing, all clocks at rate 1.
    pub(crate) fn new(n: u64) -> Cluster {
        Cluster::new_with(n, |_| {})
    }

    /// `n` voters, each configuration adjusted by `adjust` before its node starts.
    pub(crate) fn new_with(n: u64, adjust: impl Fn(&mut NodeConfig)) -> Cluster {
        let voters: Vec<NodeId> = (1..=n).map(id).collect();
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            configs: BTreeMap::new(),
            _dirs: Vec::new(),
            rates: BTreeMap::new(),
            next_tick: BTreeMap::new(),
            now: 1_000_000_000,
            step: Duration::from_millis(1),
            delay: Duration::from_millis(1),
            in_flight: VecDeque::new(),
            blocked: BTreeSet::new(),
            paused: BTreeSet::new(),
            events: Vec::new(),
            applied: BTreeMap::new(),
            resolved: BTreeMap::new(),
            leases: Vec::new(),
            next_proposal: 1,
        };
        for n in 1..=n {
            cluster.add_node_with(n, voters.clone(), &adjust);
        }
        cluster
    }

    /// Creates and starts node `n` with first membership `voters` (empty: it joins).
    pub(crate) fn add_node(&mut self, n: u64, voters: Vec<NodeId>) {
        self.add_node_with(n, voters, &|_| {});
    }

    fn add_node_with(&mut self, n: u64, voters: Vec<NodeId>, adjust: &dyn Fn(&mut NodeConfig)) {
        let dir = tempfile::tempdir_in(data_root()).unwrap();
        let mut config = NodeConfig::new(id(n), 0xC1, dir.path(), voters);
        config.wal.segment_size = 1 << 20;
        adjust(&mut config);
        self._dirs.push(dir);
        self.configs.insert(n, config);
        self.rates.insert(n, 1.0);
        self.start(n);
    }

    /// Node `n`'s clock now.
    pub(crate) fn local(&self, n: u64) -> Instant {
        Instant::from_nanos((self.now as f64 * self.rates[&n]) as u64)
    }

    /// The global time at which node `n`'s clock reads `at`.
    pub(crate) fn global(&self, n: u64, at: Instant) -> Global {
        (at.as_nanos() as f64 / self.rates[&n]).ceil() as u64
    }

    pub(crate) fn set_rate(&mut self, n: u64, rate: f64) {
        // Keep the local clock continuous: rates are only set before anything happens.
        self.rates.insert(n, rate);
    }

    pub(crate) fn replica(&self, n: u64) -> &Replica {
        self.nodes[&n].as_ref().expect("node is running")
    }

    pub(crate) fn replica_mut(&mut self, n: u64) -> &mut Replica {
        self.nodes
            .get_mut(&n)
            .unwrap()
            .as_mut()
            .expect("node is running")
    }

    /// Starts (or restarts, from its directory) node `n`.
    pub(crate) fn start(&mut self, n: u64) {
        let now = self.local(n);
        let mut replica = Replica::open(&self.configs[&n], now).unwrap();
        let out = replica.process(now).unwrap();
        self.nodes.insert(n, Some(replica));
        let tick = self.configs[&n].timing.tick.as_nanos() as u64;
        self.next_tick.insert(n, self.now + tick);
        self.route(n, out);
    }

    /// Kills node `n`: everything it did not persist is gone (it persists before acting).
    pub(crate) fn crash(&mut self, n: u64) {
        self.nodes.insert(n, None);
        self.paused.remove(&n);
    }

    pub(crate) fn pause(&mut self, n: u64) {
        self.paused.insert(n);
    }

    pub(crate) fn resume(&mut self, n: u64) {
        self.paused.remove(&n);
    }

    /// Cuts every link between the two sides, both ways.
    pub(crate) fn partition(&mut self, a: &[u64], b: &[u64]) {
        for &x in a {
            for &y in b {
                self.blocked.insert((x, y));
                self.blocked.insert((y, x));
            }
        }
    }

    pub(crate) fn heal(&mut self) {
        self.blocked.clear();
    }

    pub(crate) fn propose(&mut self, n: u64, data: &[u8]) -> Result<u64, Error> {
        let ticket = self.next_proposal;
        self.next_proposal += 1;
        let now = self.local(n);
        let replica = self.replica_mut(n);
        replica.propose(data.to_vec(), ticket)?;
        let out = replica.process(now)?;
        self.route(n, out);
        Ok(ticket)
    }

    /// Runs `f` on node `n`'s replica and routes what it produced.
    pub(crate) fn with<T>(&mut self, n: u64, f: impl FnOnce(&mut Replica) -> T) -> T {
        let now = self.local(n);
        let replica = self.replica_mut(n);
        let result = f(replica);
        let out = replica.process(now).unwrap();
        self.route(n, out);
        result
    }

    /// Steps `message` into node `n` now, as if it had just arrived, and routes what that
    /// produced. An error is the node's own failure.
    pub(crate) fn step_into(&mut self, n: u64, message: Message) -> Result<(), Error> {
        let now = self.local(n);
        let replica = self.replica_mut(n);
        replica.step(message, now)?;
        let out = replica.process(now)?;
        self.route(n, out);
        Ok(())
    }

    /// Advances global time by one step: delivers due messages, ticks due nodes.
    pub(crate) fn step_once(&mut self) {
        self.now += self.step.as_nanos() as u64;
        let due: Vec<Message> = {
            let now = self.now;
            let (ready, later): (Vec<_>, Vec<_>) = self
                .in_flight
                .drain(..)
                .partition(|(at, m)| *at <= now && !self.paused.contains(&m.to));
            self.in_flight = later.into();
            ready.into_iter().map(|(_, m)| m).collect()
        };
        for message in due {
            let to = message.to;
            let now = self.local(to);
            if let Some(Some(replica)) = self.nodes.get_mut(&to) {
                replica.step(message, now).unwrap();
            }
        }
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for n in ids {
            if self.paused.contains(&n) || self.nodes[&n].is_none() {
                continue;
            }
            let tick = self.configs[&n].timing.tick.as_nanos() as f64 / self.rates[&n];
            while self.next_tick[&n] <= self.now {
                let now = self.local(n);
                self.replica_mut(n).tick(now);
                *self.next_tick.get_mut(&n).unwrap() += tick as u64;
            }
            let now = self.local(n);
            let out = self
                .replica_mut(n)
                .process(now)
                .unwrap_or_else(|e| panic!("node {n}: {e}"));
            self.route(n, out);
        }
        // A paused node's ticks do not accumulate: it resumes as if no time had passed for it.
        for &n in &self.paused {
            self.next_tick.insert(n, self.now + 1);
        }
    }

    pub(crate) fn run_for(&mut self, d: Duration) {
        let end = self.now + d.as_nanos() as u64;
        while self.now < end {
            self.step_once();
        }
    }

    /// Runs until `f` holds, at most `limit`; returns whether it held.
    pub(crate) fn run_until(
        &mut self,
        limit: Duration,
        mut f: impl FnMut(&Cluster) -> bool,
    ) -> bool {
        let end = self.now + limit.as_nanos() as u64;
        while self.now < end {
            if f(self) {
                return true;
            }
            self.step_once();
        }
        f(self)
    }

    /// Whether a message in flight matches `f`.
    pub(crate) fn in_flight(&self, f: impl Fn(&Message) -> bool) -> bool {
        self.in_flight.iter().any(|(_, m)| f(m))
    }

    /// The node whose lease holds now, if exactly one does; panics if two do.
    pub(crate) fn usable_leader(&self) -> Option<u64> {
        let leaders: Vec<u64> = self
            .nodes
            .iter()
            .filter_map(|(&n, r)| r.as_ref().map(|r| (n, r)))
            .filter(|(n, r)| r.leadership(self.local(*n)).is_some())
            .map(|(n, _)| n)
            .collect();
        assert!(
            leaders.len() <= 1,
            "two usable leaders at once: {leaders:?}"
        );
        leaders.first().copied()
    }

    pub(crate) fn wait_for_leader(&mut self) -> u64 {
        assert!(
            self.run_until(Duration::from_secs(10), |c| c.usable_leader().is_some()),
            "no leader within 10 s of virtual time"
        );
        self.usable_leader().unwrap()
    }

    /// The global time of the first `Elected` after `after`, and its node.
    pub(crate) fn elected_after(&self, after: Global) -> Option<(Global, u64, Token)> {
        self.events.iter().find_map(|e| match e.event {
            Event::Elected { token, .. } if e.at > after => Some((e.at, e.node, token)),
            _ => None,
        })
    }

    /// Asserts I3 over every lease granted so far: each ended before any lease of a later
    /// generation began.
    pub(crate) fn assert_leases_disjoint(&self) {
        for a in &self.leases {
            for b in &self.leases {
                if a.token.generation < b.token.generation {
                    assert!(
                        a.until <= b.from,
                        "lease {a:?} overlaps the later lease {b:?}"
                    );
                }
            }
        }
    }

    fn route(&mut self, from: u64, out: Output) {
        let Output {
            messages,
            applied,
            events,
            resolved,
            peers: _,
        } = out;
        let delay = self.delay.as_nanos() as u64;
        for message in messages {
            if !self.blocked.contains(&(from, message.to)) {
                self.in_flight.push_back((self.now + delay, message));
            }
        }
        self.applied.entry(from).or_default().extend(applied);
        for (ticket, result) in resolved {
            self.resolved
                .insert(ticket, result.map_err(|e| e.to_string()));
        }
        for event in events {
            match event {
                Event::Elected { token, .. } => self.leases.push(LeaseSpan {
                    token,
                    from: self.now,
                    until: self.now,
                }),
                Event::Lost { token, .. } => {
                    let now = self.now;
                    if let Some(span) = self.leases.iter_mut().rev().find(|s| s.token == token) {
                        // Revoked early, or noticed at or after its deadline.
                        span.until = span.until.min(now);
                    }
                }
                _ => {}
            }
            self.events.push(Stamped {
                at: self.now,
                node: from,
                event,
            });
        }
        // Lease extensions are not events: record the latest deadline as it stands.
        if let Some(Some(replica)) = self.nodes.get(&from)
            && let Some(l) = replica.leadership(self.local(from))
        {
            let until = self.global(from, l.lease_deadline);
            if let Some(span) = self.leases.iter_mut().rev().find(|s| s.token == l.token) {
                span.until = span.until.max(until);
            }
        }
    }
}
