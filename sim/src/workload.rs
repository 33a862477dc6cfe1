//! Each node's application: a cron-like scheduler that runs jobs only while the node's
//! `leadership()` says it leads, and records each completion in the fenced store with its
//! token; and a replicated state machine (a digest of every committed entry) fed by a stream
//! of proposals, for throughput and for the log checkers.

use std::collections::{BTreeMap, BTreeSet};

use fencekit::Token;
use fencekit::node::{Applied, Leadership};

use crate::store::{Refusal, StoreReply, StoreRequest};

/// How long the application waits for the store before it asks again, in local nanoseconds.
const RETRY_NS: u64 = 30_000_000;

/// The replicated state machine: the digest of every entry applied, in order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Machine {
    /// Index of the last entry (or snapshot) applied.
    pub index: u64,
    /// Digest of everything applied up to `index`.
    pub digest: u64,
}

impl Machine {
    /// The digest after applying one entry.
    pub fn step(digest: u64, index: u64, term: u64, data: &[u8]) -> u64 {
        let mut head = [0u8; 24];
        head[..8].copy_from_slice(&digest.to_le_bytes());
        head[8..16].copy_from_slice(&index.to_le_bytes());
        head[16..].copy_from_slice(&term.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&head), data) as u64;
        digest.rotate_left(17) ^ (crc | (index << 32))
    }

    /// Applies what the node delivered.
    pub fn apply(&mut self, item: &Applied) {
        match item {
            Applied::Entry { index, term, data } => {
                self.digest = Machine::step(self.digest, index.get(), term.get(), data);
                self.index = index.get();
            }
            Applied::Snapshot { index, data, .. } => {
                *self = Machine::decode(index.get(), data);
            }
        }
    }

    /// The snapshot of this state, as given to `compact`.
    pub fn encode(&self) -> Vec<u8> {
        self.digest.to_le_bytes().to_vec()
    }

    fn decode(index: u64, data: &[u8]) -> Machine {
        let digest = data
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes);
        Machine { index, digest }
    }
}

/// The scheduler of one node.
#[derive(Debug)]
pub struct Scheduler {
    /// One job falls due every `period_ns` of the node's clock, from `origin`.
    period_ns: u64,
    origin: u64,
    /// The token whose begin the store acknowledged.
    begun: Option<Token>,
    /// The begin asked, and when.
    begin_sent: Option<(Token, u64)>,
    /// Jobs known done (from the begin, and from completions).
    done: BTreeSet<u64>,
    /// Every job below this is known done.
    low: u64,
    /// Completions asked and not answered: job → (token, sent at).
    asked: BTreeMap<u64, (Token, u64)>,
    /// Jobs started and still running: job → (token, local time it finishes). A job checks
    /// the lease when it starts; its completion is written when it ends, lease or not: the
    /// fence is what stops a deposed leader's write.
    running: BTreeMap<u64, (Token, u64)>,
}

/// How long job `job` runs, in local nanoseconds: 5 to 64 ms, fixed per job (longer than the
/// period, so a leader nearly always has a job running).
fn run_time(job: u64) -> u64 {
    (5 + job.wrapping_mul(7919) % 60) * 1_000_000
}

impl Scheduler {
    /// A scheduler whose jobs fall due every `period_ns` from `origin` (local time).
    pub fn new(origin: u64, period_ns: u64) -> Scheduler {
        Scheduler {
            period_ns,
            origin,
            begun: None,
            begin_sent: None,
            done: BTreeSet::new(),
            low: 0,
            asked: BTreeMap::new(),
            running: BTreeMap::new(),
        }
    }

    /// Jobs due by local time `now`: `0..due(now)`.
    pub fn due(&self, now: u64) -> u64 {
        now.saturating_sub(self.origin) / self.period_ns
    }

    /// A restart: the process forgets everything.
    pub fn forget(&mut self) {
        *self = Scheduler::new(self.origin, self.period_ns);
    }

    /// What to send to the store, given the node's leadership at local time `now`.
    pub fn poll(&mut self, now: u64, leadership: Option<Leadership>, out: &mut Vec<StoreRequest>) {
        let finished: Vec<u64> = self
            .running
            .iter()
            .filter(|(_, (_, end))| *end <= now)
            .map(|(&job, _)| job)
            .collect();
        for job in finished {
            let (token, _) = self.running.remove(&job).expect("listed");
            self.asked.insert(job, (token, now));
            out.push(StoreRequest::Complete { job, token });
        }
        let Some(lead) = leadership else {
            // Not the leader (or the lease ran out): do nothing, forget the begin.
            self.begun = None;
            self.begin_sent = None;
            self.asked.clear();
            return;
        };
        let token = lead.token;
        if self.begun != Some(token) {
            let resend = match self.begin_sent {
                Some((t, at)) => t != token || now >= at + RETRY_NS,
                None => true,
            };
            if resend {
                self.begin_sent = Some((token, now));
                out.push(StoreRequest::Begin { token });
            }
            return;
        }
        let due = self.due(now);
        while self.done.contains(&self.low) {
            self.done.remove(&self.low);
            self.low += 1;
        }
        for job in self.low..due {
            if self.done.contains(&job) || self.running.contains_key(&job) {
                continue;
            }
            match self.asked.get(&job) {
                // Asked under this token and not answered for a while: ask again.
                Some(&(t, at)) if t == token && now >= at + RETRY_NS => {
                    self.asked.insert(job, (token, now));
                    out.push(StoreRequest::Complete { job, token });
                }
                Some(&(t, _)) if t == token => {}
                _ => {
                    self.running.insert(job, (token, now + run_time(job)));
                }
            }
        }
    }

    /// The store answered.
    pub fn on_reply(&mut self, reply: &StoreReply) {
        match reply {
            StoreReply::Begun { token, done } => {
                if self.begin_sent.map(|(t, _)| t) == Some(*token) {
                    self.begun = Some(*token);
                    self.done.extend(done.iter().filter(|&&j| j >= self.low));
                }
            }
            StoreReply::Completed { job, .. } => {
                self.asked.remove(job);
                if *job >= self.low {
                    self.done.insert(*job);
                }
            }
            StoreReply::Refused { token, reason, .. } => {
                if matches!(reason, Refusal::Stale | Refusal::Conflict)
                    && self.begun == Some(*token)
                {
                    // Deposed: a newer leader began with the ledger.
                    self.begun = None;
                    self.asked.clear();
                }
            }
        }
    }
}
