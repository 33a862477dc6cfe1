//! `acknowledged-completions-durable`: what the store acknowledged, it keeps.

use std::collections::HashMap;

use super::{Check, describe_entry, describe_op, final_snapshot, no_final_snapshot};
use crate::history::{Call, History, LedgerEntry, Op, OpClock, Snapshot};

const NAME: &str = "acknowledged-completions-durable";
const PROMISE: &str = "Every completion the store acknowledged with a seq is in the ledger at \
    that seq, unchanged, in the final snapshot and in every snapshot read after it.";

/// A snapshot's entries by seq, and its highest seq.
struct Indexed<'h> {
    snapshot: &'h Snapshot,
    by_seq: HashMap<u64, &'h LedgerEntry>,
    max_seq: Option<u64>,
}

/// Examines every acknowledged completion (a landed `complete` answer with a seq).
pub(super) fn check(history: &History) -> Check {
    let mut check = Check::new(NAME, PROMISE, true);
    let last = final_snapshot(history);
    if last.is_none() {
        check.violation(None, no_final_snapshot(history));
    }
    let snapshots: Vec<Indexed<'_>> = history
        .snapshots
        .iter()
        .map(|snapshot| {
            let mut by_seq = HashMap::with_capacity(snapshot.entries.len());
            for entry in &snapshot.entries {
                by_seq.entry(entry.seq).or_insert(entry);
            }
            Indexed {
                snapshot,
                by_seq,
                max_seq: snapshot.entries.iter().map(|e| e.seq).max(),
            }
        })
        .collect();

    for op in &history.ops {
        let Some(answer) = op.answer.as_ref() else {
            continue;
        };
        let Some(seq) = answer
            .seq
            .filter(|_| op.call == Call::Complete && answer.landed())
        else {
            continue;
        };
        check.examined += 1;
        // One violation per completion, naming every snapshot that lacks it.
        let mut problems: Vec<String> = Vec::new();
        let mut first_at: Option<i64> = None;
        for indexed in &snapshots {
            let snapshot = indexed.snapshot;
            let is_final = last.is_some_and(|l| std::ptr::eq(l, snapshot));
            // A node's clock may be skewed: only a later seq proves a snapshot came after. On
            // the harness's clock, an acknowledgement before the read began must be in it (the
            // read goes on page by page while writers write: one acknowledged during the read
            // may or may not be).
            let after = is_final
                || indexed.max_seq.is_some_and(|m| m >= seq)
                || (op.clock == OpClock::Harness
                    && snapshot
                        .started_ms
                        .is_some_and(|start| op.complete_ms < start));
            if !after {
                continue;
            }
            let problem = match indexed.by_seq.get(&seq) {
                None => format!(
                    "missing from the ledger read for {:?} at {} ms",
                    snapshot.why, snapshot.taken_ms
                ),
                Some(entry) if matches(entry, op) => continue,
                Some(entry) => format!(
                    "the ledger read for {:?} at {} ms holds {} there instead",
                    snapshot.why,
                    snapshot.taken_ms,
                    describe_entry(entry)
                ),
            };
            first_at.get_or_insert(snapshot.taken_ms);
            problems.push(problem);
        }
        if !problems.is_empty() {
            check.violation(
                first_at,
                format!(
                    "acknowledged completion lost: {}: {}",
                    describe_op(op),
                    problems.join("; ")
                ),
            );
        }
    }
    check
}

/// The entry is the acknowledged completion, landed.
fn matches(entry: &LedgerEntry, op: &Op) -> bool {
    entry.landed()
        && entry.job == op.job
        && entry.run == op.run
        && entry.holder == op.holder
        && entry.generation == op.generation
}
