//! A simulated network: loss, duplication, delay (hence reordering), and partitions that may
//! be asymmetric. Every draw comes from the simulation's seeded generator.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use raft::eraftpb::Message;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::store::{StoreReply, StoreRequest};

/// Who sends and receives: a node, or the fenced store.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// Node `n` (its Raft replica or its application).
    Node(u64),
    /// The store.
    Store,
}

/// What travels.
#[derive(Clone, Debug)]
pub enum Payload {
    /// A Raft message between replicas.
    Raft(Message),
    /// A node's application asking the store.
    Request(StoreRequest),
    /// The store answering.
    Reply(StoreReply),
}

/// A packet in flight.
#[derive(Clone, Debug)]
pub struct Packet {
    /// Sender.
    pub from: Endpoint,
    /// Receiver.
    pub to: Endpoint,
    /// Content.
    pub payload: Payload,
}

/// How the network misbehaves; drawn per seed.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkFaults {
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
    /// Shortest one-way delay, in microseconds.
    pub delay_min_us: u64,
    /// Longest usual one-way delay, in microseconds.
    pub delay_max_us: u64,
    /// Probability that a packet is held much longer (up to `slow_max_us`): reordering.
    pub slow: f64,
    /// Longest delay of a slow packet, in microseconds.
    pub slow_max_us: u64,
}

impl NetworkFaults {
    /// A perfect network with a fixed delay.
    pub fn none(delay_us: u64) -> NetworkFaults {
        NetworkFaults {
            loss: 0.0,
            duplicate: 0.0,
            delay_min_us: delay_us,
            delay_max_us: delay_us,
            slow: 0.0,
            slow_max_us: delay_us,
        }
    }
}

/// A packet in flight, ordered by delivery time, then by sending order.
#[derive(Debug)]
struct InFlight {
    at: u64,
    seq: u64,
    packet: Packet,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for InFlight {}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The network between the nodes and the store.
#[derive(Debug)]
pub struct Network {
    /// Its faults; may change during a run (the liveness phase heals them).
    pub faults: NetworkFaults,
    /// Directed links that drop everything.
    blocked: BTreeSet<(Endpoint, Endpoint)>,
    queue: BinaryHeap<Reverse<InFlight>>,
    next_seq: u64,
    /// Packets sent, lost, duplicated.
    pub sent: u64,
    /// Packets lost (by loss or a partition).
    pub dropped: u64,
}

impl Network {
    /// A network with `faults` and no partition.
    pub fn new(faults: NetworkFaults) -> Network {
        Network {
            faults,
            blocked: BTreeSet::new(),
            queue: BinaryHeap::new(),
            next_seq: 0,
            sent: 0,
            dropped: 0,
        }
    }

    /// Sends `packet` at global time `now` (ns).
    pub fn send(&mut self, rng: &mut ChaCha8Rng, now: u64, packet: Packet) {
        self.sent += 1;
        if self.blocked.contains(&(packet.from, packet.to)) || rng.gen_bool(self.faults.loss) {
            self.dropped += 1;
            return;
        }
        if rng.gen_bool(self.faults.duplicate) {
            let delay = self.draw_delay(rng);
            self.enqueue(now + delay, packet.clone());
        }
        let delay = self.draw_delay(rng);
        self.enqueue(now + delay, packet);
    }

    fn draw_delay(&self, rng: &mut ChaCha8Rng) -> u64 {
        let f = &self.faults;
        let us = if rng.gen_bool(f.slow) {
            rng.gen_range(f.delay_min_us..=f.slow_max_us.max(f.delay_min_us))
        } else {
            rng.gen_range(f.delay_min_us..=f.delay_max_us.max(f.delay_min_us))
        };
        us * 1_000
    }

    fn enqueue(&mut self, at: u64, packet: Packet) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse(InFlight { at, seq, packet }));
    }

    /// The next packet due by `now`, in delivery order. A packet on a link blocked while it was
    /// in flight is lost too.
    pub fn next_due(&mut self, now: u64) -> Option<Packet> {
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > now {
                return None;
            }
            let Reverse(InFlight { packet, .. }) = self.queue.pop()?;
            if self.blocked.contains(&(packet.from, packet.to)) {
                self.dropped += 1;
                continue;
            }
            return Some(packet);
        }
        None
    }

    /// Whether a packet in flight matches `f`.
    pub fn any_in_flight(&self, f: impl Fn(&Packet) -> bool) -> bool {
        self.queue.iter().any(|Reverse(p)| f(&p.packet))
    }

    /// Blocks the link from `a` to `b` (one way).
    pub fn block(&mut self, a: Endpoint, b: Endpoint) {
        self.blocked.insert((a, b));
    }

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&mut self, a: &[Endpoint], b: &[Endpoint]) {
        for &x in a {
            for &y in b {
                self.block(x, y);
                self.block(y, x);
            }
        }
    }

    /// Whether any link is blocked.
    pub fn is_partitioned(&self) -> bool {
        !self.blocked.is_empty()
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }
}
