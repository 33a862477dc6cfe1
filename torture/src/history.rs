//! What a run records, and all the checker reads: every request a client sent to the store
//! with its answer, the store's ledger as read after each store restart and at the end, the
//! nodes' `/status` samples, and the faults the nemesis played.
//!
//! Times are milliseconds since the run began, on the harness's clock (the machine's real
//! time), except [`Op::invoke_ms`] and [`Op::complete_ms`] of a node's scheduler, which the
//! node measured on its own clock (libfaketime may run it fast or slow): see [`OpClock`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which world a run lives in.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// fencekit's leadership and lease; every write carries the token; the store fences.
    Fenced,
    /// The control: a TTL lock from the store, unfenced writes.
    Naive,
}

/// The two requests of running a job (the store's `/begin` and `/complete`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Call {
    /// Check the token (a new leader's raises the mark) and ask whether the run is done.
    Begin,
    /// Record that the run was done.
    Complete,
}

/// The store's answer, as the client received it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    /// "accepted", "unfenced", "stale", "conflict" or "jump".
    pub(crate) outcome: String,
    /// The mark's generation after the decision.
    pub(crate) generation: Option<u64>,
    /// The run had landed before this request.
    pub(crate) done: bool,
    /// Where a completion was recorded in the ledger's order.
    #[serde(default)]
    pub(crate) seq: Option<u64>,
}

impl Answer {
    /// The request went through: the store acted on it.
    pub(crate) fn landed(&self) -> bool {
        self.outcome == "accepted" || self.outcome == "unfenced"
    }
}

/// Whose clock an operation's times were read on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OpClock {
    /// The harness's (real time).
    Harness,
    /// The node's own, which a clock fault may skew.
    Node,
}

/// One request to the store and its answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Op {
    /// Who sent it: `node-<id>` (that node's scheduler) or `client-<id>` (an extra client
    /// writing with node `<id>`'s token and certificate).
    pub(crate) client: String,
    pub(crate) call: Call,
    pub(crate) job: String,
    pub(crate) run: u64,
    /// The holder the request named (the node whose token it carries).
    pub(crate) holder: u64,
    /// The token's generation; `None` on the naive side.
    pub(crate) generation: Option<u64>,
    /// When it was sent and when the answer (or the error) came, in ms since the run began.
    pub(crate) invoke_ms: i64,
    pub(crate) complete_ms: i64,
    pub(crate) clock: OpClock,
    /// `None`: no answer (a timeout, a refused connection, a 5xx): the request may or may not
    /// have been carried out.
    pub(crate) answer: Option<Answer>,
    pub(crate) error: Option<String>,
}

/// One entry of the store's ledger.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct LedgerEntry {
    pub(crate) seq: u64,
    pub(crate) job: String,
    pub(crate) run: u64,
    pub(crate) holder: u64,
    pub(crate) generation: Option<u64>,
    /// As in [`Answer::outcome`].
    pub(crate) outcome: String,
    /// When the store decided, in ms since the run began (the store's clock is real time).
    pub(crate) at_ms: i64,
}

impl LedgerEntry {
    /// The completion landed.
    pub(crate) fn landed(&self) -> bool {
        self.outcome == "accepted" || self.outcome == "unfenced"
    }
}

/// The whole ledger, read page by page (writers may go on meanwhile, except for the final read).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Snapshot {
    /// When the read began: whatever was committed before is in it. `None` in histories
    /// recorded before it was kept.
    #[serde(default)]
    pub(crate) started_ms: Option<i64>,
    /// When the read finished.
    pub(crate) taken_ms: i64,
    /// Why it was read: "restart 3" (after the store's third restart), "final".
    pub(crate) why: String,
    /// Oldest first (by `seq`).
    pub(crate) entries: Vec<LedgerEntry>,
}

/// One answer of a node's `/status`, as the harness sampled it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    pub(crate) node: u64,
    /// When the request was sent and the answer received.
    pub(crate) sent_ms: i64,
    pub(crate) received_ms: i64,
    /// "leader", "follower", "candidate", "pre-candidate".
    pub(crate) role: String,
    pub(crate) term: u64,
    /// Fenced side: the generation the node leads with under a live lease (`leading_generation`);
    /// naive side: `None`.
    pub(crate) generation: Option<u64>,
    /// The right to act the node believes it holds, and the time left on it as the node's
    /// clock measures it: fencekit's lease on the fenced side, the TTL lock on the naive one.
    /// `None` when it believes it holds none.
    pub(crate) lease_remaining_ms: Option<f64>,
    /// The node's clock when it answered (`at_ns`), to check a clock fault took effect.
    pub(crate) clock_ns: Option<u64>,
}

/// A kind of fault.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum FaultKind {
    /// Packets dropped both ways between two sides.
    PartitionSymmetric,
    /// Packets dropped one way only.
    PartitionOneWay,
    /// Two sides that cannot reach each other, and one node that reaches both.
    PartitionBridge,
    /// The leader cut from the other nodes, not from the store.
    PartitionLeader,
    /// A partition that comes and goes every second or so.
    PartitionFlapping,
    /// A node cut from the store, not from the other nodes.
    PartitionStore,
    /// SIGSTOP of a node, SIGCONT later.
    PauseNode,
    /// SIGSTOP of the acting leader while it works on a run, held past its lease: the zombie.
    Zombie,
    /// SIGSTOP of the store.
    PauseStore,
    /// kill -9 of a node, restarted later.
    KillNode,
    /// kill -9 of the store, restarted later.
    KillStore,
    /// A node restarted with its clock running at another rate (libfaketime), within the drift
    /// bound unless the run allows more.
    ClockRate,
    /// A node's data disk filled (its tmpfs), then freed.
    DiskFullNode,
    /// The store's data disk filled, then freed.
    DiskFullStore,
}

/// A fault as it was played.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Fault {
    pub(crate) kind: FaultKind,
    /// Whom it hit: "n1", "store", ...
    pub(crate) targets: Vec<String>,
    pub(crate) start_ms: i64,
    /// When it was healed; `None` if the run ended first.
    pub(crate) end_ms: Option<i64>,
    /// What exactly (the sides of a partition, the clock rate, ...).
    pub(crate) detail: String,
}

/// A span of time, `[start_ms, end_ms)`; `end_ms` `None` runs to the end of the run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start_ms: i64,
    pub(crate) end_ms: Option<i64>,
}

impl Span {
    /// True when `t` is inside.
    pub(crate) fn contains(&self, t: i64) -> bool {
        self.start_ms <= t && self.end_ms.is_none_or(|end| t < end)
    }
}

/// A node's clock rate over a span (1.0: real time).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub(crate) struct RateSpan {
    pub(crate) node: u64,
    pub(crate) rate: f64,
    pub(crate) span: Span,
}

/// When jobs came due: run `r` of each job at `start_ms + r × period_ms`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct JobSchedule {
    pub(crate) jobs: Vec<String>,
    pub(crate) start_ms: i64,
    pub(crate) period_ms: i64,
}

/// Everything one run recorded.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct History {
    pub(crate) mode: Mode,
    pub(crate) seed: u64,
    pub(crate) nodes: Vec<u64>,
    /// The drift bound the nodes' leases allow for (the slower of two clocks runs at least
    /// `1 − max_drift` times the faster).
    pub(crate) max_drift: f64,
    pub(crate) ops: Vec<Op>,
    /// Ledger reads: one after each store restart, and the final one last.
    pub(crate) snapshots: Vec<Snapshot>,
    pub(crate) samples: Vec<Sample>,
    pub(crate) faults: Vec<Fault>,
    /// When each member ("n1", ..., "store") was down: killed, or stopped with SIGSTOP.
    pub(crate) down: BTreeMap<String, Vec<Span>>,
    /// Nodes' clock rates other than 1.0.
    pub(crate) rates: Vec<RateSpan>,
    /// The schedulers' jobs.
    pub(crate) schedule: JobSchedule,
    /// Runs due after this are not required to be done (the run ended before they could be).
    pub(crate) liveness_cutoff_ms: i64,
    /// When the run ended.
    pub(crate) ended_ms: i64,
}
