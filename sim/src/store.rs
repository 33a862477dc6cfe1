//! The fenced storage of the workload: a job ledger that embeds fencekit's [`Fence`] on its own
//! simulated disk, and checks the token of every write (the exactly-once drill). It keeps the
//! protocol of `fencekit::ledger`, as `fencekit store` does.
//!
//! A leader first *begins* with its token (an advance of the fence's high-water mark under
//! [`ledger::KEY`], durable before it is acknowledged), and only then reads which jobs are
//! done. Any write of an older leader that lands after the begin is stale; any that landed
//! before it is in what the begin returned. So no job runs twice even if two nodes believe
//! they lead at once. (`fencekit store` answers a begin for one run of one job; this store,
//! whose jobs are numbered, answers it with every job done.)

use std::collections::BTreeMap;
use std::path::PathBuf;

use fencekit::disk::DiskHandle;
use fencekit::ledger::{self, Decision, Outcome};
use fencekit::wal::WalOptions;
use fencekit::{Fence, FenceError, FenceOptions, ResourceId, Token, Verdict};

use crate::disk::SimDisk;

/// A request from a node's application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreRequest {
    /// [`ledger::Call::Begin`]: check `token` (taking the ledger over for a new leader), then
    /// read which jobs are done.
    Begin {
        /// The leader's token.
        token: Token,
    },
    /// [`ledger::Call::Complete`]: job `job` ran; record its completion under `token`.
    Complete {
        /// The job.
        job: u64,
        /// The token of the leader that ran it.
        token: Token,
    },
}

/// The store's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreReply {
    /// The begin went through: from now on only `token` (or newer) writes. `done` are the
    /// jobs completed so far.
    Begun {
        /// The leader's token.
        token: Token,
        /// The jobs done.
        done: Vec<u64>,
    },
    /// The completion is recorded.
    Completed {
        /// The job.
        job: u64,
        /// The token it ran under.
        token: Token,
    },
    /// The write did not land.
    Refused {
        /// The token refused.
        token: Token,
        /// The job, for a completion.
        job: Option<u64>,
        /// Why.
        reason: Refusal,
    },
}

/// Why the store refused a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// An older token than the ledger's mark: a deposed leader.
    Stale,
    /// Another holder of the same generation: split brain.
    Conflict,
    /// The store could not decide (its log failed): nothing was written.
    Failed(String),
}

/// What the store did, for the checkers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreFact {
    /// A request under `token` went through (a begin or a completion).
    Accepted(Token),
    /// A completion landed and was new for its job under this token.
    Completed {
        /// The job.
        job: u64,
        /// Its token.
        token: Token,
    },
    /// The fence answered an advance to `token`: that mark must now be durable.
    Advanced(Token),
    /// The store restarted and its fence recovered `mark`.
    Recovered(Option<Token>),
    /// A stale or conflicting write was refused.
    Refused(Token),
}

/// The store: a fence on a simulated disk, and the job ledger.
#[derive(Debug)]
pub struct Store {
    disk: SimDisk,
    dir: PathBuf,
    fence: Option<(Fence, ResourceId)>,
    /// Completed jobs and the token of each completion (the ledger proper, kept durable by the
    /// store's own means, which are not what is under test).
    ledger: BTreeMap<u64, Vec<Token>>,
    /// Refused writes, stale or conflicting.
    pub refused: u64,
}

impl Store {
    /// A store on an empty disk, opened.
    pub fn open() -> Result<Store, FenceError> {
        let mut store = Store {
            disk: SimDisk::new(),
            dir: PathBuf::from("/store"),
            fence: None,
            ledger: BTreeMap::new(),
            refused: 0,
        };
        store.start()?;
        Ok(store)
    }

    fn options(&self) -> FenceOptions {
        FenceOptions {
            max_resources: 16,
            wal: WalOptions {
                segment_size: 64 << 10,
                disk: DiskHandle::new(self.disk.clone()),
            },
            ..FenceOptions::default()
        }
    }

    /// Opens the fence (after a crash: recovers it). Returns the recovered mark.
    pub fn start(&mut self) -> Result<Option<Token>, FenceError> {
        let fence = Fence::open(&self.dir, self.options())?;
        let id = match fence.lookup(ledger::KEY) {
            Some(id) => id,
            None => fence.register(ledger::KEY)?,
        };
        let mark = fence.mark(id)?;
        self.fence = Some((fence, id));
        Ok(mark)
    }

    /// Whether the store is up.
    pub fn is_up(&self) -> bool {
        self.fence.is_some()
    }

    /// The store's disk, for faults.
    pub fn disk(&self) -> &SimDisk {
        &self.disk
    }

    /// The process dies; the ledger's fence must recover from its log.
    pub fn crash(&mut self) {
        self.fence = None;
    }

    /// Handles one request; `None` while the store is down (the request is lost).
    pub fn handle(
        &mut self,
        request: &StoreRequest,
        facts: &mut Vec<StoreFact>,
    ) -> Option<StoreReply> {
        let (fence, id) = self.fence.as_ref()?;
        let token = match request {
            StoreRequest::Begin { token } | StoreRequest::Complete { token, .. } => *token,
        };
        let job = match request {
            StoreRequest::Begin { .. } => None,
            StoreRequest::Complete { job, .. } => Some(*job),
        };
        let verdict = match fence.check(*id, token) {
            Ok(v) => v,
            Err(e) => {
                // The fence's log failed: the store goes down, as a real one would.
                let reason = e.to_string();
                self.fence = None;
                return Some(StoreReply::Refused {
                    token,
                    job,
                    reason: Refusal::Failed(reason),
                });
            }
        };
        if let Verdict::Advanced { .. } = verdict {
            facts.push(StoreFact::Advanced(token));
        }
        let refusal = match Decision::of(token, verdict).outcome {
            Outcome::Accepted => None,
            Outcome::Stale => Some(Refusal::Stale),
            Outcome::Conflict => Some(Refusal::Conflict),
        };
        if let Some(reason) = refusal {
            self.refused += 1;
            facts.push(StoreFact::Refused(token));
            return Some(StoreReply::Refused { token, job, reason });
        }
        facts.push(StoreFact::Accepted(token));
        Some(match request {
            StoreRequest::Begin { token } => StoreReply::Begun {
                token: *token,
                done: self.ledger.keys().copied().collect(),
            },
            StoreRequest::Complete { job, token } => {
                let tokens = self.ledger.entry(*job).or_default();
                // A retried request (same job, same token) is the same write.
                if !tokens.contains(token) {
                    tokens.push(*token);
                    facts.push(StoreFact::Completed {
                        job: *job,
                        token: *token,
                    });
                }
                StoreReply::Completed {
                    job: *job,
                    token: *token,
                }
            }
        })
    }
}
