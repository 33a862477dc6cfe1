//! `one-holder-per-generation`: a generation (a Raft term) has one holder for the whole run.

use std::collections::BTreeMap;

use super::{Check, describe_entry, describe_op, harness_ms};
use crate::history::{History, Mode};

const NAME: &str = "one-holder-per-generation";
const PROMISE: &str = "Every generation has one holder across the whole run: in the ledger, in \
    the requests the store let through and in the nodes' own claims.";

/// A holder seen with a generation: how often, where first in the record, and when first on
/// the harness's clock.
struct Sighting {
    /// The earliest sighting on the harness's clock, if any was on it.
    at_ms: Option<i64>,
    /// The first sighting in the record's order, described.
    first: String,
    count: u64,
}

/// Examines every (generation, holder) pair: landed ledger entries of every snapshot, landed
/// requests, and samples naming a generation. Fenced only: the naive side has no generations.
pub(super) fn check(history: &History) -> Check {
    let mut check = Check::new(NAME, PROMISE, history.mode == Mode::Fenced);
    if !check.applies {
        return check;
    }

    let mut holders: BTreeMap<u64, BTreeMap<u64, Sighting>> = BTreeMap::new();
    let mut see = |generation: u64, holder: u64, at_ms: Option<i64>, first: &dyn Fn() -> String| {
        holders
            .entry(generation)
            .or_default()
            .entry(holder)
            .and_modify(|s| {
                s.count += 1;
                s.at_ms = match (s.at_ms, at_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            })
            .or_insert_with(|| Sighting {
                at_ms,
                first: first(),
                count: 1,
            });
    };
    let mut examined = 0u64;
    for snapshot in &history.snapshots {
        for entry in snapshot.entries.iter().filter(|e| e.landed()) {
            if let Some(generation) = entry.generation {
                examined += 1;
                see(generation, entry.holder, Some(entry.at_ms), &|| {
                    format!(
                        "ledger entry {} in the ledger read for {:?}",
                        describe_entry(entry),
                        snapshot.why
                    )
                });
            }
        }
    }
    for op in &history.ops {
        let landed = op.answer.as_ref().is_some_and(|a| a.landed());
        if let (true, Some(generation)) = (landed, op.generation) {
            examined += 1;
            see(generation, op.holder, harness_ms(op), &|| {
                format!("request {}", describe_op(op))
            });
        }
    }
    for sample in &history.samples {
        if let Some(generation) = sample.generation {
            examined += 1;
            see(generation, sample.node, Some(sample.received_ms), &|| {
                format!(
                    "n{}'s /status ({}, term {}) sampled {}..{} ms",
                    sample.node, sample.role, sample.term, sample.sent_ms, sample.received_ms
                )
            });
        }
    }
    check.examined = examined;

    for (generation, by_holder) in &holders {
        if by_holder.len() < 2 {
            continue;
        }
        let described: Vec<String> = by_holder
            .iter()
            .map(|(holder, s)| {
                format!(
                    "node {holder} ({} sighting{}, first recorded: {})",
                    s.count,
                    if s.count == 1 { "" } else { "s" },
                    s.first
                )
            })
            .collect();
        // When the second holder was first seen on the harness's clock; failing that (the
        // others seen only on nodes' clocks), when the one known was.
        let mut firsts: Vec<i64> = by_holder.values().filter_map(|s| s.at_ms).collect();
        firsts.sort_unstable();
        check.violation(
            firsts.get(1).or(firsts.first()).copied(),
            format!(
                "generation {generation} has {} holders: {}",
                by_holder.len(),
                described.join("; ")
            ),
        );
    }
    check
}
