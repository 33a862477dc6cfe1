//! `no-run-twice`: no run of a job lands twice.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use super::{Check, describe_entry, describe_op, harness_ms};
use crate::history::{Call, History, LedgerEntry, Op};

const NAME: &str = "no-run-twice";
const PROMISE: &str = "No (job, run) lands twice: no ledger snapshot holds two landed \
    completions of one run, and no landed completion was the run's second.";

/// Examines every landed ledger entry of every snapshot and every landed `complete` answer.
pub(super) fn check(history: &History) -> Check {
    let mut check = Check::new(NAME, PROMISE, true);

    // A doubled run stays in every later snapshot: reported once, where first seen.
    let mut reported: HashSet<(&str, u64, u64, u64)> = HashSet::new();
    // Runs found doubled in a ledger: their answers are the same evidence, not counted again.
    let mut doubled: HashSet<(&str, u64)> = HashSet::new();
    for snapshot in &history.snapshots {
        let mut first: HashMap<(&str, u64), &LedgerEntry> = HashMap::new();
        for entry in snapshot.entries.iter().filter(|e| e.landed()) {
            check.examined += 1;
            match first.entry((entry.job.as_str(), entry.run)) {
                Entry::Vacant(slot) => {
                    slot.insert(entry);
                }
                Entry::Occupied(slot) => {
                    let earlier = *slot.get();
                    doubled.insert((entry.job.as_str(), entry.run));
                    if reported.insert((entry.job.as_str(), entry.run, earlier.seq, entry.seq)) {
                        check.violation(
                            Some(entry.at_ms),
                            format!(
                                "job {} run {} landed twice in the ledger read for {:?} at {} ms: \
                                 {} and {}",
                                entry.job,
                                entry.run,
                                snapshot.why,
                                snapshot.taken_ms,
                                describe_entry(earlier),
                                describe_entry(entry)
                            ),
                        );
                    }
                }
            }
        }
    }

    // The answers: what the store told the writers, whatever a later snapshot still holds.
    let mut first: HashMap<(&str, u64), &Op> = HashMap::new();
    for op in &history.ops {
        let Some(answer) = op.answer.as_ref() else {
            continue;
        };
        if op.call != Call::Complete || !answer.landed() {
            continue;
        }
        check.examined += 1;
        if doubled.contains(&(op.job.as_str(), op.run)) {
            continue;
        }
        if answer.done {
            check.violation(
                harness_ms(op),
                format!(
                    "job {} run {} ran a second time: the store landed {}, the run being \
                     done already",
                    op.job,
                    op.run,
                    describe_op(op)
                ),
            );
            continue;
        }
        match first.entry((op.job.as_str(), op.run)) {
            Entry::Vacant(slot) => {
                slot.insert(op);
            }
            Entry::Occupied(slot) => check.violation(
                harness_ms(op),
                format!(
                    "job {} run {} landed as its first completion twice: {} and {}",
                    op.job,
                    op.run,
                    describe_op(slot.get()),
                    describe_op(op)
                ),
            ),
        }
    }
    check
}
