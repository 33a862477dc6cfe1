//! The store's decisions, one at a time in one order, and their records, many to one commit.
//!
//! Requests queue for one thread, the committer. It takes whatever has queued (up to
//! [`BATCH_MAX`]) and, for each request in order, checks the token with the fence and stages
//! the completion in the ledger's open transaction; then it commits the transaction once (one
//! fsync for the whole batch: the group commit) and only then answers every request of the
//! batch. The order, and why nothing acknowledged is lost:
//!
//! 1. **The fence first.** A token that advances the mark is made durable in the fence's own
//!    log before `check` returns (DESIGN.md I5). A crash after it and before the ledger's
//!    commit leaves the mark advanced and the completion unrecorded, and no answer was sent:
//!    the writer retries, and a deposed leader is still refused. The other order could
//!    record a completion whose advance is lost, and a restarted fence would accept the old
//!    leader again; the store's start-up check (a ledger generation above the mark) refuses
//!    exactly that.
//! 2. **The ledger's commit next**, before any answer: an acknowledged completion, accepted or
//!    refused, is durable in both. A `begin` waits for the commit too, since the `done` it
//!    reports may rest on a completion staged in the same batch.
//! 3. **A failed commit** refuses every request of its batch (500: not recorded) and poisons
//!    the ledger, which refuses everything until a restart reloads it from the disk.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use fencekit::ledger;
use fencekit::{Fence, Generation, NodeId, ResourceId, Token, Verdict};
use tokio::sync::oneshot;

use super::jump_budget::JumpBudget;
use super::ledger::{Ledger, LedgerCounts};
use super::metrics::StoreMetrics;
use crate::http::{Handled, Reply};
use crate::store_api::{
    Answer, Call, Entry, FirstUndone, LedgerPage, Outcome, PagedEntry, unix_ms,
};

/// Requests decided before one commit, at most.
pub(crate) const BATCH_MAX: usize = 256;
/// Requests waiting for the committer, at most: beyond it, 503.
const QUEUE_MAX: usize = 1024;

/// A `/begin` or `/complete`, checked and attributed to its writer.
#[derive(Debug)]
pub(crate) struct Decision {
    pub(crate) call: Call,
    pub(crate) job: String,
    pub(crate) run: u64,
    pub(crate) holder: NodeId,
    /// The token's generation; `None` on an unfenced store.
    pub(crate) generation: Option<u64>,
}

/// Where a request's answer goes: the HTTP task that awaits it, holding no thread.
type ReplyTo = oneshot::Sender<Reply>;

/// A read of the ledger, answered after the batch it came with is committed.
pub(crate) enum Read {
    /// Entries after `after`, at most `limit`.
    Page { after: u64, limit: usize },
    /// The lowest run of `job` not done, every run below it done.
    FirstUndone { job: String },
}

enum Job {
    Decide(Decision, ReplyTo),
    Read(Read, ReplyTo),
}

impl Job {
    /// Answers the job with `reply`, undecided.
    fn refuse(self, reply: Reply) {
        let (Job::Decide(_, to) | Job::Read(_, to)) = self;
        let _ = to.send(reply);
    }
}

/// What the committer publishes for `/healthz` and `/metrics`.
#[derive(Default)]
pub(crate) struct Published {
    pub(crate) poisoned: Option<String>,
    pub(crate) counts: LedgerCounts,
}

/// The fence the store checks tokens with: one resource for the whole ledger.
pub(crate) struct StoreFence {
    pub(crate) fence: Arc<Fence>,
    pub(crate) id: ResourceId,
    /// How far the mark may rise (`--max-generation-jump` per `--generation-jump-window`).
    pub(crate) budget: JumpBudget,
}

/// The handle requests go through; dropping it lets the committer finish what is queued.
pub(crate) struct Committer {
    jobs: Option<Sender<Job>>,
    /// The committer thread's state, for tests that hold it to make requests queue.
    #[cfg(test)]
    state: Arc<Mutex<State>>,
    thread: Option<JoinHandle<()>>,
    published: Arc<Mutex<Published>>,
}

impl Committer {
    pub(crate) fn start(
        ledger: Ledger,
        fence: Option<StoreFence>,
        metrics: Arc<StoreMetrics>,
    ) -> std::io::Result<Committer> {
        let (jobs, queue) = crossbeam_channel::bounded(QUEUE_MAX);
        let published = Arc::new(Mutex::new(Published {
            poisoned: None,
            counts: ledger.counts(),
        }));
        let state = Arc::new(Mutex::new(State {
            ledger,
            fence,
            metrics,
            published: published.clone(),
            last_batch: 1,
        }));
        let thread = {
            let (state, queue) = (state.clone(), queue.clone());
            std::thread::Builder::new()
                .name("store committer".into())
                .spawn(move || serve(&state, &queue))?
        };
        Ok(Committer {
            jobs: Some(jobs),
            #[cfg(test)]
            state,
            thread: Some(thread),
            published,
        })
    }

    /// Decides `decision`, durably: the answer to give its request, once decided.
    ///
    /// Always through the committer thread, never on the handler's: a handler runs on one of
    /// the HTTP runtime's few workers, and one blocked in an fsync on a stalled disk froze
    /// every task of that worker (`/healthz` and `/metrics` unanswered, queued requests not
    /// answered 503 at 30 s, a later request decided before an earlier one). An outside
    /// attack found it in a version that let a lone writer decide on its own handler.
    pub(crate) fn decide(&self, decision: Decision) -> Handled {
        self.submit(|reply| Job::Decide(decision, reply))
    }

    /// Reads the ledger.
    pub(crate) fn read(&self, read: Read) -> Handled {
        self.submit(|reply| Job::Read(read, reply))
    }

    /// The ledger's figures and state as of the last commit.
    pub(crate) fn published(&self) -> std::sync::MutexGuard<'_, Published> {
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn submit(&self, job: impl FnOnce(ReplyTo) -> Job) -> Handled {
        let (reply, answer) = oneshot::channel();
        let Some(jobs) = &self.jobs else {
            return Handled::Now(Reply::error(503, "the store is stopping"));
        };
        match jobs.try_send(job(reply)) {
            Ok(()) => Handled::Later(answer),
            Err(TrySendError::Full(_)) => Handled::Now(Reply::error(
                503,
                "overloaded: too many requests queued; try again",
            )),
            Err(TrySendError::Disconnected(_)) => {
                Handled::Now(Reply::error(503, "the store is stopping"))
            }
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The committer thread: takes the next request, then the state, gathers a batch and decides
/// it.
fn serve(state: &Mutex<State>, queue: &Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        // A panic while deciding (a broken invariant) leaves the ledger's transaction in an
        // unknown state: nothing more is decided until a restart.
        let Ok(mut state) = state.lock() else {
            first.refuse(Reply::error(
                503,
                "the store's committer failed (see its log): restart the store",
            ));
            continue;
        };
        let batch = gather(first, queue, state.last_batch);
        state.last_batch = batch.len();
        state.decide_batch(batch);
    }
}

/// How long a batch waits for more requests while writers are concurrent: a fraction of an
/// fsync, so that the requests arriving meanwhile share the next one.
const GATHER: Duration = Duration::from_micros(200);

/// `first` and whatever else is queued, up to [`BATCH_MAX`]. After a batch of several
/// requests, the committer waits up to [`GATHER`] for more before committing, until the batch
/// is as large as the last one: the writers answered by the last commit have come back, and
/// waiting longer would only delay them (two writers waited the whole 200 µs every time, and
/// ran slower than one). A single writer never waits.
fn gather(first: Job, queue: &Receiver<Job>, last_batch: usize) -> Vec<Job> {
    let mut batch = vec![first];
    let deadline = std::time::Instant::now() + GATHER;
    while batch.len() < BATCH_MAX {
        let next = if batch.len() < last_batch {
            queue.recv_deadline(deadline).ok()
        } else {
            queue.try_recv().ok()
        };
        match next {
            Some(job) => batch.push(job),
            None => break,
        }
    }
    batch
}

/// The deciding state: the committer thread's.
struct State {
    ledger: Ledger,
    fence: Option<StoreFence>,
    metrics: Arc<StoreMetrics>,
    published: Arc<Mutex<Published>>,
    /// How many requests the last batch held (1 at first). Above 1, writers are concurrent:
    /// the next batch is gathered by the committer thread, until it is as large.
    last_batch: usize,
}

/// A decision's answer, sent once the batch is committed.
struct Pending {
    reply: ReplyTo,
    answer: Reply,
    /// Counted in the metrics once the commit succeeded.
    decided: Option<(Call, Outcome)>,
    /// Rests on the batch's commit: refused if the commit fails.
    needs_commit: bool,
}

impl State {
    /// Decides a batch, commits it once and answers every request of it.
    fn decide_batch(&mut self, batch: Vec<Job>) {
        let mut pending = Vec::with_capacity(batch.len());
        let mut reads = Vec::new();
        for job in batch {
            match job {
                Job::Decide(decision, reply) => pending.push(self.decide(&decision, reply)),
                Job::Read(read, reply) => reads.push((read, reply)),
            }
        }
        let committed = if pending.iter().any(|p| p.needs_commit) {
            self.ledger.commit().map_err(|e| format!("{e:#}"))
        } else {
            Ok(())
        };
        self.publish();
        for p in pending {
            let answer = match (&committed, p.needs_commit) {
                (Err(e), true) => Reply::error(
                    500,
                    format!("not recorded: the ledger's commit failed: {e}"),
                ),
                _ => {
                    if let Some((call, outcome)) = p.decided {
                        self.metrics.decided(call, outcome);
                    }
                    p.answer
                }
            };
            // A requester that gave up is its own problem.
            let _ = p.reply.send(answer);
        }
        for (read, reply) in reads {
            let answer = match read {
                Read::Page { after, limit } => self.page(after, limit),
                Read::FirstUndone { job } => self.first_undone(job),
            };
            let _ = reply.send(answer);
        }
    }

    fn publish(&self) {
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        published.poisoned = self.ledger.poisoned().map(str::to_owned);
        published.counts = self.ledger.counts();
    }

    fn decide(&mut self, decision: &Decision, reply: ReplyTo) -> Pending {
        match self.decide_answer(decision) {
            Ok((answer, decided)) => Pending {
                reply,
                answer,
                decided: Some(decided),
                needs_commit: true,
            },
            Err(answer) => Pending {
                reply,
                answer,
                decided: None,
                needs_commit: false,
            },
        }
    }

    /// The answer to `decision` once the batch is committed, with what to count; or the
    /// answer to give at once (the request changed nothing).
    fn decide_answer(&mut self, decision: &Decision) -> Result<(Reply, (Call, Outcome)), Reply> {
        if let Some(refusal) = self.ledger.poisoned() {
            return Err(Reply::error(503, refusal));
        }
        let (outcome, generation) = self.check(decision)?;
        // The mark stood at `generation` at least: the ledger keeps the highest it saw, so a
        // fence restored below it is refused at start, even when no entry recorded it.
        if let Some(generation) = generation
            && let Err(e) = self.ledger.witness(generation)
        {
            return Err(Reply::error(500, format!("not recorded: {e:#}")));
        }
        let landed = match self.ledger.landed(&decision.job, decision.run) {
            Ok(times) => times,
            Err(e) => return Err(Reply::error(500, format!("reading the ledger: {e:#}"))),
        };
        let done = landed > 0;
        let seq = match decision.call {
            Call::Begin => None,
            Call::Complete => {
                let entry = Entry {
                    job: decision.job.clone(),
                    run: decision.run,
                    holder: decision.holder.get(),
                    generation: decision.generation,
                    outcome,
                    at_ms: unix_ms(),
                };
                match self.ledger.stage_counted(&entry, Some(landed)) {
                    Ok(seq) => Some(seq),
                    Err(e) => return Err(Reply::error(500, format!("not recorded: {e:#}"))),
                }
            }
        };
        let answer = Answer {
            outcome,
            generation,
            done,
            seq,
        };
        let status = if outcome.landed() { 200 } else { 409 };
        let reply = Reply::json(status, serde_json::to_string(&answer).unwrap_or_default());
        Ok((reply, (decision.call, outcome)))
    }

    /// The fence's word on the decision's token, with the generation of the mark after it
    /// (none on an unfenced store); or the answer that refuses the request outright.
    fn check(&mut self, decision: &Decision) -> Result<(Outcome, Option<u64>), Reply> {
        let Some(fence) = &mut self.fence else {
            return Ok((Outcome::Unfenced, None));
        };
        let Some(generation) = decision.generation else {
            return Err(Reply::error(
                400,
                "this store is fenced: every request carries its token's generation \
                 (&generation=G); start the store with --unfenced to accept writes without one",
            ));
        };
        let token = Token::from_parts(generation, decision.holder.get())
            .map_err(|e| Reply::error(400, format!("the token: {e}")))?;
        let unusable =
            |e: fencekit::FenceError| Reply::error(503, format!("the store's fence: {e}"));
        let mark = fence.fence.mark(fence.id).map_err(unusable)?;
        let base = mark.map_or(0, |m| m.generation.get());
        let rise = generation.saturating_sub(base);
        let now = std::time::Instant::now();
        let left = fence.budget.left(now);
        if rise > left {
            self.metrics.jump_refused();
            let why = format!(
                "generation {generation} is {rise} above the mark (generation {base}), but the \
                 mark may rise by {} within {} s (--max-generation-jump, \
                 --generation-jump-window) and {left} of that is left",
                fence.budget.max(),
                fence.budget.window().as_secs()
            );
            log::warn!(
                target: "fencekit::cli::store",
                "refused node {}'s token: {why}; a bug, a forgery or a compromised member",
                decision.holder
            );
            let answer = serde_json::json!({
                "outcome": Outcome::Jump,
                "generation": base,
                "done": false,
                "error": format!("{why}: refused, and the mark did not move"),
            });
            return Err(Reply::json(409, answer.to_string()));
        }
        let verdict = fence.fence.check(fence.id, token).map_err(unusable)?;
        if let Verdict::Advanced { .. } = verdict {
            fence.budget.spend(rise, now);
        }
        // The store checks fencekit's own (unnamed) tokens only and `fencekit fence rebase`
        // refuses its log, so no other source binds it; were one to, it is refused.
        let decision = ledger::Decision::of(token, verdict);
        Ok((decision.outcome.into(), decision.mark.map(Generation::get)))
    }

    fn first_undone(&self, job: String) -> Reply {
        match self.ledger.first_undone(&job) {
            Ok(run) => {
                let answer = FirstUndone { job, run };
                Reply::json(200, serde_json::to_string(&answer).unwrap_or_default())
            }
            Err(e) => Reply::error(500, format!("reading the ledger: {e:#}")),
        }
    }

    fn page(&self, after: u64, limit: usize) -> Reply {
        match self.ledger.page(after, limit) {
            Ok(entries) => {
                let next = entries.last().map(|(seq, _)| *seq);
                let page = LedgerPage {
                    entries: entries
                        .into_iter()
                        .map(|(seq, entry)| PagedEntry { seq, entry })
                        .collect(),
                    next,
                };
                Reply::json(200, serde_json::to_string(&page).unwrap_or_default())
            }
            Err(e) => Reply::error(500, format!("reading the ledger: {e:#}")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::store::ledger::LedgerOptions;

    fn committer(dir: &std::path::Path) -> Committer {
        let ledger = Ledger::open(dir, LedgerOptions::default()).unwrap();
        Committer::start(ledger, None, Arc::new(StoreMetrics::new())).unwrap()
    }

    fn completion(run: u64) -> Decision {
        Decision {
            call: Call::Complete,
            job: "job".into(),
            run,
            holder: NodeId::new(1).unwrap(),
            generation: None,
        }
    }

    fn answer(handled: Handled) -> Reply {
        match handled {
            Handled::Now(reply) => reply,
            Handled::Later(later) => later.blocking_recv().unwrap(),
        }
    }

    /// A writer is answered by the committer thread, never on its own (a handler blocked in an
    /// fsync froze its HTTP worker), and what it was answered is on the disk: the ledger
    /// opened again after the store holds it.
    #[test]
    fn a_writer_is_answered_by_the_committer_thread_and_its_answer_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = committer(dir.path());
        for run in 0..3 {
            let handled = store.decide(completion(run));
            assert!(
                matches!(handled, Handled::Later(_)),
                "decided on the handler's thread"
            );
            let reply = answer(handled);
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
        drop(store);
        let ledger = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
        let runs: Vec<u64> = ledger
            .page(0, 10)
            .unwrap()
            .iter()
            .map(|(_, e)| e.run)
            .collect();
        assert_eq!(runs, [0, 1, 2]);
    }

    /// While one thread decides, another writer queues for the committer thread and is
    /// answered by it once the lock is free: never two deciders at once, no request lost.
    #[test]
    fn a_writer_that_finds_the_state_taken_queues_for_the_committer_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = committer(dir.path());
        let held = store.state.lock().unwrap();
        let queued = store.decide(completion(7));
        assert!(
            matches!(queued, Handled::Later(_)),
            "decided while the state was taken"
        );
        drop(held);
        let reply = answer(queued);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let reply = answer(store.decide(completion(8)));
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(store.published().counts.completions, 2);
    }

    /// A run completed twice is counted once as a duplicate, whether its landings are in one
    /// batch or two: the count the decision looked up is the one the ledger stages with.
    #[test]
    fn a_run_completed_twice_is_one_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let store = committer(dir.path());
        for _ in 0..3 {
            assert_eq!(answer(store.decide(completion(5))).status, 200);
        }
        let held = store.state.lock().unwrap();
        let queued = [store.decide(completion(6)), store.decide(completion(6))];
        drop(held);
        for handled in queued {
            assert_eq!(answer(handled).status, 200);
        }
        let counts = store.published().counts;
        assert_eq!((counts.completions, counts.duplicate_runs), (5, 2));
    }

    /// A batch takes everything queued, beyond the last batch's size too: the size only
    /// says when to stop waiting for more.
    #[test]
    fn a_batch_takes_everything_queued() {
        let (jobs, queue) = crossbeam_channel::bounded(16);
        let read = || {
            let (reply, _) = oneshot::channel();
            Job::Read(Read::FirstUndone { job: "job".into() }, reply)
        };
        for _ in 0..5 {
            jobs.send(read()).unwrap();
        }
        assert_eq!(gather(read(), &queue, 2).len(), 6);
        assert_eq!(gather(read(), &queue, 1).len(), 1);
    }

    /// After a batch of several requests (concurrent writers), the next request goes to the
    /// committer thread, which gathers a group commit, even when it finds the state free.
    #[test]
    fn concurrent_writers_are_gathered_by_the_committer_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = committer(dir.path());
        store.state.lock().unwrap().last_batch = 2;
        let handled = store.decide(completion(1));
        assert!(
            matches!(handled, Handled::Later(_)),
            "decided on the handler's thread"
        );
        assert_eq!(answer(handled).status, 200);
    }
}
