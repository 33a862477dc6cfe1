//! `one-live-lease`: no two nodes certainly held the right to act at the same time.

use super::Check;
use crate::history::{History, RateSpan};

const NAME: &str = "one-live-lease";
const PROMISE: &str = "No two nodes certainly held a live lease at the same instant while \
    their clocks were within the drift bound.";

/// Slack on the drift comparison, so that a ratio equal to the bound, computed in floating
/// point, counts as within it.
const RATIO_SLACK: f64 = 1e-9;

/// When one node certainly held the right to act: samples of one node and generation whose
/// intervals meet, merged.
struct Tenure {
    node: u64,
    generation: Option<u64>,
    /// Real time, ms since the run began.
    start: f64,
    end: f64,
    first_sent_ms: i64,
    samples: u64,
}

/// Examines every sample claiming a lease with time left on it.
pub(super) fn check(history: &History) -> Check {
    let mut check = Check::new(NAME, PROMISE, true);

    let mut tenures: Vec<Tenure> = Vec::new();
    for sample in &history.samples {
        let Some(remaining) = sample.lease_remaining_ms.filter(|&r| r > 0.0) else {
            continue;
        };
        let rate = rate(&history.rates, sample.node, sample.sent_ms);
        if rate <= 0.0 {
            // A stopped clock's lease never runs out: no finite interval to judge.
            continue;
        }
        // The node read its clock somewhere in [sent, received]: it held the lease at least
        // from the answer's arrival until `remaining` of its own time after sending.
        let start = sample.received_ms as f64;
        let end = sample.sent_ms as f64 + remaining / rate;
        if end <= start {
            continue;
        }
        check.examined += 1;
        tenures.push(Tenure {
            node: sample.node,
            generation: sample.generation,
            start,
            end,
            first_sent_ms: sample.sent_ms,
            samples: 1,
        });
    }

    // Consecutive samples of one tenure overlap each other: merged first, the sweep below
    // compares few intervals.
    tenures.sort_by(|a, b| {
        (a.node, a.generation)
            .cmp(&(b.node, b.generation))
            .then(a.start.total_cmp(&b.start))
    });
    let mut merged: Vec<Tenure> = Vec::with_capacity(tenures.len());
    for tenure in tenures {
        match merged.last_mut() {
            Some(last)
                if last.node == tenure.node
                    && last.generation == tenure.generation
                    && tenure.start <= last.end =>
            {
                last.end = last.end.max(tenure.end);
                last.samples += 1;
            }
            _ => merged.push(tenure),
        }
    }

    // Sweep by start: `active` holds the tenures not yet over at the current start.
    merged.sort_by(|a, b| a.start.total_cmp(&b.start));
    let mut active: Vec<usize> = Vec::new();
    for (i, tenure) in merged.iter().enumerate() {
        active.retain(|&a| merged[a].end > tenure.start);
        for &a in &active {
            let other = &merged[a];
            if other.node == tenure.node {
                continue;
            }
            // other.start <= tenure.start < both ends: they overlap from tenure.start.
            let from = tenure.start;
            let until = other.end.min(tenure.end);
            let at_ms = from.floor() as i64;
            let (within, rates) = within_bound(history, [other.node, tenure.node], at_ms);
            if !within {
                check.excused += 1;
                continue;
            }
            check.violation(
                Some(at_ms),
                format!(
                    "{} and {} both certainly held a lease for {:.1} ms from {from:.1} ms; \
                     clock rates then: {rates} (bound: min/max >= {})",
                    describe(other),
                    describe(tenure),
                    until - from,
                    1.0 - history.max_drift
                ),
            );
        }
        active.push(i);
    }
    check
}

fn describe(tenure: &Tenure) -> String {
    format!(
        "n{} ({}, live over [{:.1}, {:.1}] ms by {} sample{} from the one sent at {} ms)",
        tenure.node,
        tenure.generation.map_or_else(
            || "no generation".to_string(),
            |g| format!("generation {g}")
        ),
        tenure.start,
        tenure.end,
        tenure.samples,
        if tenure.samples == 1 { "" } else { "s" },
        tenure.first_sent_ms
    )
}

/// A node's clock rate at `t` (1.0 unless a rate span says otherwise; the last one listed
/// wins).
fn rate(rates: &[RateSpan], node: u64, t: i64) -> f64 {
    rates
        .iter()
        .rev()
        .find(|r| r.node == node && r.span.contains(t))
        .map_or(1.0, |r| r.rate)
}

/// Whether all nodes' clocks were pairwise within the drift bound at `t` (the slowest at
/// least `1 − max_drift` times the fastest), and the rates, described.
fn within_bound(history: &History, involved: [u64; 2], t: i64) -> (bool, String) {
    let mut nodes: Vec<u64> = history.nodes.iter().copied().chain(involved).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let rates: Vec<(u64, f64)> = nodes
        .iter()
        .map(|&n| (n, rate(&history.rates, n, t)))
        .collect();
    let min = rates.iter().map(|&(_, r)| r).fold(f64::INFINITY, f64::min);
    let max = rates
        .iter()
        .map(|&(_, r)| r)
        .fold(f64::NEG_INFINITY, f64::max);
    let within = max > 0.0 && min / max >= 1.0 - history.max_drift - RATIO_SLACK;
    let described: Vec<String> = rates.iter().map(|(n, r)| format!("n{n} {r}")).collect();
    (within, described.join(", "))
}
