//! The independent checker: it judges a [`History`] with code of its own, sharing none with
//! the kernel or the store, so that a bug in either cannot hide itself by being judged by
//! itself. Each check states one promise and looks for evidence against it; each is in a
//! file of its own.
//!
//! - `no-run-twice`: no (job, run) lands twice. Checked in every ledger snapshot (two landed
//!   entries), and in the answers, which see what a snapshot may miss: a landed `complete`
//!   answered `done` is the store saying it ran the job again, and two landed first
//!   completions of one run are a double run even if a restart lost one of the entries.
//! - `tokens-never-go-back` (fenced only): in the ledger's order, landed generations never
//!   decrease. Checked on every snapshot and on the answers ordered by the `seq` they were
//!   given, since a snapshot after a loss may no longer hold the entry that went back.
//! - `one-holder-per-generation` (fenced only): a generation is a Raft term, so it has one
//!   holder for the whole run. Checked across everything that names a (generation, holder):
//!   landed ledger entries, landed requests and the nodes' own `/status` claims.
//! - `acknowledged-completions-durable`: a completion the store acknowledged with a `seq` is
//!   in the final ledger at that `seq`, unchanged (seqs are never reused). Earlier snapshots
//!   must hold it too once they provably come after it: they hold a later `seq`, or the
//!   acknowledgement came before the snapshot on the harness's clock (a node's clock may be
//!   skewed, so its times prove nothing).
//! - `due-runs-done`: every run that came due while a majority of the nodes and the store
//!   were up, before the liveness cutoff, is in the final ledger. Runs due while no majority
//!   (or no store) was up are not required: progress is promised only with a quorum and
//!   the store.
//! - `one-live-lease`: no two nodes certainly held the right to act at once. A `/status`
//!   sample proves a lease from when its answer arrived until its remaining time ran out on
//!   the node's clock, converted to real time with the node's rate; overlaps of different
//!   nodes are violations only while the clocks were within the drift bound the lease
//!   allows for, and are counted as excused otherwise.
//!
//! A history without a final snapshot fails the two checks that need one: it cannot be
//! judged, which is not the same as passing.

mod acknowledged_completions_durable;
mod due_runs_done;
mod no_run_twice;
mod one_holder_per_generation;
mod one_live_lease;
#[cfg(test)]
mod tests;
mod tokens_never_go_back;

use serde::Serialize;

use crate::history::{Call, History, LedgerEntry, Op, OpClock, Snapshot};

/// How many violations a check keeps; all are counted in [`Check::violations_total`].
const VIOLATIONS_KEPT: usize = 100;

/// One check's verdict on a history.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct Check {
    /// The check's name, e.g. `no-run-twice`.
    pub(crate) name: &'static str,
    /// The promise it checks, in one sentence.
    pub(crate) promise: &'static str,
    /// False when the promise is not made in this history's mode (nothing was examined).
    pub(crate) applies: bool,
    /// How many items it looked at (entries, answers, runs, samples: see each check).
    pub(crate) examined: u64,
    /// The first [`VIOLATIONS_KEPT`] violations found.
    pub(crate) violations: Vec<Violation>,
    /// All violations found, kept or not.
    pub(crate) violations_total: u64,
    /// Apparent violations not counted because the promise did not hold its premise then
    /// (`one-live-lease`: clocks beyond the drift bound); 0 for the other checks.
    pub(crate) excused: u64,
}

/// One piece of evidence against a promise.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Violation {
    /// When, on the harness's clock; `None` when the only time known is a node's own clock.
    pub(crate) at_ms: Option<i64>,
    /// What exactly: which job, run, seq, generation, nodes and times.
    pub(crate) what: String,
}

impl Check {
    fn new(name: &'static str, promise: &'static str, applies: bool) -> Check {
        Check {
            name,
            promise,
            applies,
            examined: 0,
            violations: Vec::new(),
            violations_total: 0,
            excused: 0,
        }
    }

    /// Counts a violation, and keeps it if fewer than [`VIOLATIONS_KEPT`] are kept.
    fn violation(&mut self, at_ms: Option<i64>, what: String) {
        self.violations_total += 1;
        if self.violations.len() < VIOLATIONS_KEPT {
            self.violations.push(Violation { at_ms, what });
        }
    }
}

/// Every check on `history`: always the same checks, in the same order.
pub(crate) fn check(history: &History) -> Vec<Check> {
    vec![
        no_run_twice::check(history),
        tokens_never_go_back::check(history),
        one_holder_per_generation::check(history),
        acknowledged_completions_durable::check(history),
        due_runs_done::check(history),
        one_live_lease::check(history),
    ]
}

/// The final ledger read: the last snapshot, if it is the one read at the end.
fn final_snapshot(history: &History) -> Option<&Snapshot> {
    history.snapshots.last().filter(|s| s.why == "final")
}

/// Why a history without a final snapshot cannot be judged by a check that needs it.
fn no_final_snapshot(history: &History) -> String {
    match history.snapshots.last() {
        Some(last) => format!(
            "no final ledger snapshot: the last one was read for {:?} at {} ms",
            last.why, last.taken_ms
        ),
        None => "no final ledger snapshot: the history has no snapshot at all".to_string(),
    }
}

/// A request's time on the harness's clock, if it was read there.
fn harness_ms(op: &Op) -> Option<i64> {
    (op.clock == OpClock::Harness).then_some(op.complete_ms)
}

fn describe_generation(generation: Option<u64>) -> String {
    generation.map_or_else(
        || "no generation".to_string(),
        |g| format!("generation {g}"),
    )
}

fn describe_entry(entry: &LedgerEntry) -> String {
    format!(
        "seq {} (job {} run {}, holder {}, {}, {}, at {} ms)",
        entry.seq,
        entry.job,
        entry.run,
        entry.holder,
        describe_generation(entry.generation),
        entry.outcome,
        entry.at_ms
    )
}

fn describe_op(op: &Op) -> String {
    let clock = match op.clock {
        OpClock::Harness => "harness clock",
        OpClock::Node => "node's clock",
    };
    let answer = match &op.answer {
        Some(a) => format!(
            "answered {}{}{}",
            a.outcome,
            if a.done { ", done" } else { "" },
            a.seq.map_or_else(String::new, |s| format!(", seq {s}"))
        ),
        None => format!(
            "no answer ({})",
            op.error.as_deref().unwrap_or("no error recorded")
        ),
    };
    format!(
        "{}'s {} of job {} run {} (holder {}, {}; {}..{} ms on the {}; {})",
        op.client,
        match op.call {
            Call::Begin => "begin",
            Call::Complete => "complete",
        },
        op.job,
        op.run,
        op.holder,
        describe_generation(op.generation),
        op.invoke_ms,
        op.complete_ms,
        clock,
        answer
    )
}
