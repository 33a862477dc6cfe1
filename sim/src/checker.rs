//! The invariants of DESIGN.md, checked after every step of a simulation.
//!
//! The checker sees only what the real code did: the messages a node sent, its Raft state, its
//! recovered state after a restart, what it applied, its `leadership()`, and what the store
//! accepted. Each rule says which invariant it stands for.

use std::collections::BTreeMap;

use fencekit::Token;
use fencekit::node::{Applied, Replica};
use fencekit::time::Instant;
use raft::StateRole;
use raft::eraftpb::{HardState, Message, MessageType};

use crate::store::StoreFact;
use crate::workload::Machine;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant (I1 to I7, or "exactly-once", "liveness").
    pub invariant: &'static str,
    /// What happened.
    pub detail: String,
}

/// What a node told others, which it must never forget (I2).
#[derive(Clone, Debug, Default)]
struct Told {
    /// The highest term in a message it sent (pre-votes excepted: they carry a future term).
    term: u64,
    /// Votes granted: term → candidate.
    votes: BTreeMap<u64, u64>,
    /// The latest append it acknowledged: (index, term of the entry there).
    acked: Option<(u64, u64)>,
}

/// The checker's memory of one run.
#[derive(Debug, Default)]
pub struct Checker {
    /// Whether clock drift stays within the configured bound (I3 is checked only then).
    pub drift_bounded: bool,
    violations: Vec<Violation>,
    leaders: BTreeMap<u64, u64>,
    told: BTreeMap<u64, Told>,
    durable: BTreeMap<u64, HardState>,
    /// Digest of the state machine after each applied index.
    digests: BTreeMap<u64, u64>,
    /// The newest token the store accepted, and the holder of each accepted generation.
    accepted_max: Option<Token>,
    holders: BTreeMap<u64, u64>,
    /// The newest mark the store's fence acknowledged as advanced (so durable).
    advanced_max: Option<Token>,
    completions: BTreeMap<u64, Vec<Token>>,
    /// Instants at which two nodes held a lease at once (counted even when drift is beyond
    /// the bound, where they are allowed).
    pub lease_overlaps: u64,
    /// Stale or conflicting writes the store refused.
    pub refused: u64,
    /// Elections seen (distinct terms with a leader).
    pub elections: u64,
    /// Messages a test forged and stepped into each node: the only ones it may refuse (I8).
    forged: BTreeMap<u64, u64>,
}

impl Checker {
    /// A checker; I3 is enforced when `drift_bounded`.
    pub fn new(drift_bounded: bool) -> Checker {
        Checker {
            drift_bounded,
            ..Checker::default()
        }
    }

    /// The first violation, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.violations.first()
    }

    fn fail(&mut self, invariant: &'static str, detail: String) {
        self.violations.push(Violation { invariant, detail });
    }

    /// Node `node` sent `m`; `entry_term` is the term of its log entry at `m.index`.
    pub fn on_sent(&mut self, node: u64, m: &Message, entry_term: Option<u64>) {
        let kind = m.get_msg_type();
        if matches!(
            kind,
            MessageType::MsgRequestPreVote | MessageType::MsgRequestPreVoteResponse
        ) {
            return;
        }
        let told = self.told.entry(node).or_default();
        told.term = told.term.max(m.term);
        match kind {
            MessageType::MsgRequestVoteResponse if !m.reject => {
                let previous = *told.votes.entry(m.term).or_insert(m.to);
                if previous != m.to {
                    self.fail(
                        "I2",
                        format!(
                            "node {node} voted twice in term {}: for {previous}, then for {}",
                            m.term, m.to
                        ),
                    );
                }
            }
            MessageType::MsgAppendResponse if !m.reject => {
                if let Some(term) = entry_term {
                    told.acked = Some((m.index, term));
                }
            }
            _ => {}
        }
    }

    /// After a `process`: what the node's storage holds is durable if nothing is unsynced.
    pub fn on_processed(&mut self, node: u64, replica: &Replica) {
        let store = replica.raft().raft_log.store();
        if !store.has_unsynced() {
            self.durable.insert(node, store.hard_state().clone());
        }
    }

    /// Node `node` restarted: what it recovered must cover all it told and all it synced
    /// (I2, I6).
    pub fn on_restart(&mut self, node: u64, replica: &Replica) {
        let raft = replica.raft();
        let hs = raft.raft_log.store().hard_state().clone();
        let told = self.told.get(&node).cloned().unwrap_or_default();
        if hs.term < told.term {
            self.fail(
                "I2",
                format!(
                    "node {node} restarted in term {} after sending messages of term {}",
                    hs.term, told.term
                ),
            );
        }
        if let Some(&candidate) = told.votes.get(&hs.term)
            && hs.vote != candidate
        {
            self.fail(
                "I2",
                format!(
                    "node {node} restarted with vote {} in term {}, having voted for {candidate}",
                    hs.vote, hs.term
                ),
            );
        }
        if let Some(durable) = self.durable.get(&node)
            && (hs.term < durable.term || hs.commit < durable.commit)
        {
            let detail = format!(
                "node {node} recovered term {} commit {}, below its synced term {} commit {}",
                hs.term, hs.commit, durable.term, durable.commit
            );
            self.fail("I6", detail);
        }
        // The entry acknowledged last must be there, unless a newer leader's entries replaced
        // it (Raft truncates uncommitted entries; the truncation may have reached the disk
        // without the node getting to acknowledge it).
        if let Some((index, term)) = told.acked {
            let log = &raft.raft_log;
            let at = index.min(log.last_index());
            let found = log.term(at).unwrap_or(0);
            let kept = at == index && found == term;
            if at >= log.first_index() && !kept && found <= term {
                self.fail(
                    "I6",
                    format!(
                        "node {node} acknowledged entry {index} of term {term}, and recovered a \
                         log whose entry {at} has term {found}"
                    ),
                );
            }
        }
    }

    /// Node `node` applied `item`; `machine` is its state after.
    pub fn on_applied(&mut self, node: u64, item: &Applied, machine: &Machine) {
        let index = item.index().get();
        match self.digests.get(&index) {
            Some(&digest) if digest != machine.digest => self.fail(
                "committed entries never change",
                format!(
                    "node {node} has state {:#x} at index {index}; another node had {digest:#x}",
                    machine.digest
                ),
            ),
            Some(_) => {}
            None => {
                self.digests.insert(index, machine.digest);
            }
        }
    }

    /// The state of every running node at one instant: `(node, replica, its clock now)`.
    pub fn on_step(&mut self, nodes: &[(u64, &Replica, Instant)]) {
        let mut holding: Option<(u64, Token)> = None;
        for &(node, replica, now) in nodes {
            // Every peer here is honest (however the network and the disks treat them): the
            // step boundary refuses only what no honest member sends (I8), and what a test
            // forged.
            let forged = self.forged.get(&node).copied().unwrap_or(0);
            let (refused, last) = replica.refusals();
            if refused > forged {
                self.fail(
                    "I8",
                    format!(
                        "node {node} refused {refused} messages of honest peers, the latest: {}",
                        last.unwrap_or("?")
                    ),
                );
            }
            let raft = replica.raft();
            if raft.state == StateRole::Leader {
                let leader = *self.leaders.entry(raft.term).or_insert(node);
                if leader == node && self.elections < self.leaders.len() as u64 {
                    self.elections = self.leaders.len() as u64;
                }
                if leader != node {
                    self.fail(
                        "I1",
                        format!("nodes {leader} and {node} both led term {}", raft.term),
                    );
                }
            }
            let Some(lead) = replica.leadership(now) else {
                continue;
            };
            let generation = lead.token.generation.get();
            let committed = raft.raft_log.committed;
            if raft.raft_log.term(committed).ok() != Some(generation) {
                self.fail(
                    "I4",
                    format!(
                        "node {node} reports leadership of term {generation} without a committed \
                         entry of that term"
                    ),
                );
            }
            match holding {
                Some((other, token)) if token != lead.token => {
                    self.lease_overlaps += 1;
                    if self.drift_bounded {
                        self.fail(
                            "I3",
                            format!(
                                "node {other} holds a lease as {token} while node {node} holds \
                                 one as {}",
                                lead.token
                            ),
                        );
                    }
                }
                _ => holding = Some((node, lead.token)),
            }
        }
    }

    /// Something the store did (I5, I6, exactly-once).
    pub fn on_store(&mut self, fact: &StoreFact) {
        match *fact {
            StoreFact::Accepted(token) => {
                if let Some(max) = self.accepted_max
                    && token.generation < max.generation
                {
                    self.fail(
                        "I5",
                        format!("the store accepted {token} after it had accepted {max}"),
                    );
                }
                let holder = *self
                    .holders
                    .entry(token.generation.get())
                    .or_insert(token.holder.get());
                if holder != token.holder.get() {
                    self.fail(
                        "I5",
                        format!(
                            "the store accepted two holders of generation {}: {holder} and {}",
                            token.generation, token.holder
                        ),
                    );
                }
                self.accepted_max = self.accepted_max.max(Some(token));
            }
            StoreFact::Advanced(token) => self.advanced_max = self.advanced_max.max(Some(token)),
            StoreFact::Recovered(mark) => {
                if mark < self.advanced_max {
                    self.fail(
                        "I5",
                        format!(
                            "the store's fence recovered mark {mark:?} after acknowledging {:?}",
                            self.advanced_max
                        ),
                    );
                }
            }
            StoreFact::Completed { job, token } => {
                let tokens = self.completions.entry(job).or_default();
                tokens.push(token);
                if tokens.len() > 1 {
                    let detail = format!("job {job} completed under {tokens:?}");
                    self.fail("exactly-once", detail);
                }
            }
            StoreFact::Refused(_) => self.refused += 1,
        }
    }

    /// Jobs completed so far.
    pub fn jobs_done(&self) -> usize {
        self.completions.len()
    }

    /// Whether job `job` completed.
    pub fn job_done(&self, job: u64) -> bool {
        self.completions.contains_key(&job)
    }

    /// A test forged a message no honest member sends and stepped it into `node`: the node
    /// may refuse it (I8).
    pub fn on_forged(&mut self, node: u64) {
        *self.forged.entry(node).or_insert(0) += 1;
    }

    /// A liveness failure found by the run.
    pub fn fail_liveness(&mut self, detail: String) {
        self.fail("liveness", detail);
    }
}
