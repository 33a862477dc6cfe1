//! `tokens-never-go-back`: in the ledger's order, landed generations never decrease.

use std::collections::HashSet;

use super::{Check, describe_entry, describe_op, harness_ms};
use crate::history::{Call, History, LedgerEntry, Mode, Op};

const NAME: &str = "tokens-never-go-back";
const PROMISE: &str = "No completion lands with an older generation than one landed before \
    it in the ledger's order.";

/// Examines every landed ledger entry of every snapshot and every landed `complete` answer
/// with a seq. Fenced only: unfenced writes carry no generation.
pub(super) fn check(history: &History) -> Check {
    let mut check = Check::new(NAME, PROMISE, history.mode == Mode::Fenced);
    if !check.applies {
        return check;
    }

    // The same pair stays in every later snapshot: reported once, where first seen.
    let mut reported: HashSet<(u64, u64, u64, u64)> = HashSet::new();
    for snapshot in &history.snapshots {
        let mut landed: Vec<&LedgerEntry> =
            snapshot.entries.iter().filter(|e| e.landed()).collect();
        // Snapshots are read oldest first; sorted anyway, the promise being about seq order.
        landed.sort_by_key(|e| e.seq);
        check.examined += landed.len() as u64;
        let mut highest: Option<(&LedgerEntry, u64)> = None;
        for entry in landed {
            let Some(generation) = entry.generation else {
                continue;
            };
            match highest {
                Some((top, top_generation)) if generation < top_generation => {
                    if reported.insert((top.seq, top_generation, entry.seq, generation)) {
                        check.violation(
                            Some(entry.at_ms),
                            format!(
                                "the ledger read for {:?} at {} ms went back from generation \
                                 {top_generation} to {generation}: {} landed after {}",
                                snapshot.why,
                                snapshot.taken_ms,
                                describe_entry(entry),
                                describe_entry(top)
                            ),
                        );
                    }
                }
                Some((_, top_generation)) if generation == top_generation => {}
                _ => highest = Some((entry, generation)),
            }
        }
    }

    // The answers ordered by the seq the store gave them: evidence a lossy snapshot lacks.
    let mut answered: Vec<(u64, u64, &Op)> = history
        .ops
        .iter()
        .filter(|op| op.call == Call::Complete)
        .filter_map(|op| {
            let answer = op.answer.as_ref().filter(|a| a.landed())?;
            Some((answer.seq?, op.generation?, op))
        })
        .collect();
    answered.sort_by_key(|&(seq, _, _)| seq);
    check.examined += answered.len() as u64;
    // Answers sharing a seq (a seq reused after a loss, which the durability check reports)
    // have no order between them: each is compared with the answers of lower seqs only.
    let mut highest: Option<(u64, &Op)> = None;
    for group in answered.chunk_by(|a, b| a.0 == b.0) {
        for &(seq, generation, op) in group {
            if let Some((top_generation, top)) = highest.filter(|&(g, _)| generation < g) {
                check.violation(
                    harness_ms(op),
                    format!(
                        "the store's answers went back from generation {top_generation} to \
                         {generation} at seq {seq}: {} after {}",
                        describe_op(op),
                        describe_op(top)
                    ),
                );
            }
        }
        for &(_, generation, op) in group {
            if highest.is_none_or(|(g, _)| generation > g) {
                highest = Some((generation, op));
            }
        }
    }
    check
}
