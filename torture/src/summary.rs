//! What a run comes to: the faults played by kind, the operations by outcome, each check with
//! its count, failover times, and whether each clock fault took effect on the clock the node
//! reads. Printed as a table, or as JSON with `--json`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::checker::Check;
use crate::cluster::Exit;
use crate::history::{Call, FaultKind, History, Mode, Sample};
use crate::run::Outcome;

/// A clock fault, as intended and as measured from the node's own `/status` clock readings.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct ClockCheck {
    pub(crate) node: u64,
    pub(crate) intended: f64,
    /// `None`: too few samples in the span to measure.
    pub(crate) measured: Option<f64>,
    pub(crate) took_effect: bool,
    /// The fault was in force, or the node answered in it, too briefly to measure.
    pub(crate) too_short: bool,
}

/// Failover times: from a fault that took the acting leader out (or, if other faults left no
/// majority of nodes up then, from when a majority was up again) to the first answer of another
/// node acting.
#[derive(Serialize, Clone, Debug, Default)]
pub(crate) struct Failover {
    pub(crate) count: usize,
    pub(crate) p50_ms: Option<i64>,
    pub(crate) p99_ms: Option<i64>,
    pub(crate) max_ms: Option<i64>,
    /// Leaders taken out that acted again before any other node did (a short pause, say).
    pub(crate) leader_came_back: usize,
}

/// One run's summary.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct RunSummary {
    pub(crate) mode: Mode,
    pub(crate) duration_ms: i64,
    pub(crate) faults_by_kind: BTreeMap<FaultKind, u64>,
    pub(crate) faults_skipped: u64,
    /// "begin accepted", "complete stale", "complete no answer", ...
    pub(crate) operations: BTreeMap<String, u64>,
    pub(crate) ledger_entries: usize,
    pub(crate) ledger_landed: usize,
    pub(crate) status_samples: usize,
    pub(crate) checks: Vec<Check>,
    pub(crate) violations: u64,
    pub(crate) failover: Failover,
    pub(crate) clock_checks: Vec<ClockCheck>,
    pub(crate) supervisor_restarts: usize,
    pub(crate) unexpected_exits: Vec<Exit>,
    pub(crate) notes: Vec<String>,
    /// Why the harness ended the run early, if it did.
    pub(crate) aborted: Option<String>,
    /// What the history lacks.
    pub(crate) history_gaps: Vec<String>,
}

/// Summarizes `outcome`, whose history `checks` judged.
pub(crate) fn summarize(outcome: &Outcome, checks: Vec<Check>) -> RunSummary {
    let h = &outcome.history;
    let mut faults_by_kind = BTreeMap::new();
    for fault in &h.faults {
        *faults_by_kind.entry(fault.kind).or_default() += 1;
    }
    let mut operations = BTreeMap::new();
    for op in &h.ops {
        let call = match op.call {
            Call::Begin => "begin",
            Call::Complete => "complete",
        };
        let how = op
            .answer
            .as_ref()
            .map_or("no answer", |a| a.outcome.as_str());
        *operations.entry(format!("{call} {how}")).or_default() += 1;
    }
    let ledger = h.snapshots.last().map_or(&[][..], |s| &s.entries[..]);
    RunSummary {
        mode: h.mode,
        duration_ms: h.ended_ms,
        faults_by_kind,
        faults_skipped: outcome.skipped,
        operations,
        ledger_entries: ledger.len(),
        ledger_landed: ledger.iter().filter(|e| e.landed()).count(),
        status_samples: h.samples.len(),
        violations: checks.iter().map(|c| c.violations_total).sum(),
        checks,
        failover: failover(h),
        clock_checks: clock_checks(h),
        supervisor_restarts: outcome.supervisor_restarts.len(),
        unexpected_exits: outcome.exits.clone(),
        notes: outcome.notes.clone(),
        aborted: outcome.aborted.clone(),
        history_gaps: outcome.gaps.clone(),
    }
}

/// Samples of nodes that believed they held the right to act, by time received.
fn acting(h: &History) -> Vec<&Sample> {
    let mut acting: Vec<&Sample> = h
        .samples
        .iter()
        .filter(|s| s.lease_remaining_ms.is_some_and(|r| r > 0.0))
        .collect();
    acting.sort_by_key(|s| s.received_ms);
    acting
}

/// When a majority of nodes is next up (neither killed nor stopped) at or after `t`.
fn majority_up_from(h: &History, t: i64) -> Option<i64> {
    let majority = h.nodes.len() / 2 + 1;
    let up_at = |at: i64| {
        h.nodes
            .iter()
            .filter(|id| {
                h.down
                    .get(&format!("n{id}"))
                    .is_none_or(|spans| !spans.iter().any(|s| s.contains(at)))
            })
            .count()
            >= majority
    };
    // The moments the answer can change: `t` and the ends of down spans after it.
    let mut moments: Vec<i64> = h
        .down
        .values()
        .flatten()
        .filter_map(|s| s.end_ms)
        .filter(|&end| end > t)
        .collect();
    moments.push(t);
    moments.sort_unstable();
    moments.into_iter().find(|&at| up_at(at))
}

fn failover(h: &History) -> Failover {
    use FaultKind as K;
    let acting = acting(h);
    let mut times = Vec::new();
    let mut came_back = 0;
    for fault in &h.faults {
        if !matches!(
            fault.kind,
            K::KillNode
                | K::PauseNode
                | K::Zombie
                | K::PartitionLeader
                | K::ClockRate
                | K::DiskFullNode
        ) {
            continue;
        }
        // Who acted just before the fault, and with which generation.
        let Some((leader, generation)) = acting
            .iter()
            .rev()
            .find(|s| s.received_ms <= fault.start_ms && fault.start_ms - s.received_ms <= 300)
            .map(|s| (s.node, s.generation))
        else {
            continue;
        };
        if !fault.targets.contains(&format!("n{leader}")) {
            continue;
        }
        // The first answer of a successor: another node, or the same one elected again (its
        // old lease runs on for a while after the fault, and does not count).
        let next = acting.iter().find(|s| {
            s.received_ms > fault.start_ms && (s.node != leader || s.generation != generation)
        });
        match next {
            Some(s) if s.node != leader => {
                // Counted from when a successor could exist: overlapping faults may have left
                // no majority up for a while.
                let from = majority_up_from(h, fault.start_ms).unwrap_or(fault.start_ms);
                times.push((s.received_ms - from).max(0));
            }
            Some(_) => came_back += 1,
            None => {}
        }
    }
    times.sort_unstable();
    let at = |q: f64| {
        (!times.is_empty()).then(|| {
            let i = ((times.len() as f64 - 1.0) * q).round() as usize;
            times[i.min(times.len() - 1)]
        })
    };
    Failover {
        count: times.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: times.last().copied(),
        leader_came_back: came_back,
    }
}

/// For each clock fault, the node's clock rate measured from its own readings (`at_ns`) in two
/// answers at least 3 s apart in the fault's span, against real time between them. Each end
/// uses the quickest answer among the first and the last twenty, since a reading was taken
/// somewhere between the request's sending and its answer.
fn clock_checks(h: &History) -> Vec<ClockCheck> {
    h.rates
        .iter()
        .map(|rate| {
            let inside: Vec<&Sample> = h
                .samples
                .iter()
                .filter(|s| s.node == rate.node && rate.span.contains(s.sent_ms))
                .filter(|s| rate.span.end_ms.is_none_or(|end| s.received_ms < end))
                .filter(|s| s.clock_ns.is_some())
                .collect();
            let rtt = |s: &&&Sample| s.received_ms - s.sent_ms;
            let ends = (
                inside.iter().take(20).min_by_key(rtt),
                inside.iter().rev().take(20).min_by_key(rtt),
            );
            let measured = match ends {
                (Some(a), Some(b)) if b.sent_ms - a.received_ms >= 3_000 => {
                    let mid = |s: &Sample| (s.sent_ms + s.received_ms) as f64 / 2.0;
                    let clock =
                        (b.clock_ns.unwrap_or(0) as f64 - a.clock_ns.unwrap_or(0) as f64) / 1e6;
                    let real = mid(b) - mid(a);
                    // How far the readings' instants may be from the midpoints, as a rate.
                    let blur = (rtt(&a) + rtt(&b)) as f64 / 2.0 / real;
                    Some((clock / real, blur))
                }
                _ => None,
            };
            // Rates are drawn at least 0.005 away from real time: half that tells them apart
            // from a fault that did not take effect.
            let took_effect =
                measured.is_some_and(|(m, blur)| (m - rate.rate).abs() <= 0.0025_f64.max(blur));
            // Too short to measure: cut short by the run's end, or answered for under 3 s (a
            // node restarted into a partition may take seconds to start). A fault with no
            // answer at all is not excused: that is no evidence.
            let answered_ms = match (inside.first(), inside.last()) {
                (Some(a), Some(b)) => Some(b.sent_ms - a.received_ms),
                _ => None,
            };
            let too_short = rate.span.end_ms.unwrap_or(h.ended_ms) - rate.span.start_ms < 3_500
                || answered_ms.is_some_and(|ms| ms < 3_000);
            ClockCheck {
                node: rate.node,
                intended: rate.rate,
                measured: measured.map(|(m, _)| (m * 10_000.0).round() / 10_000.0),
                took_effect,
                too_short,
            }
        })
        .collect()
}

/// The summary as a table, one run per column.
pub(crate) fn table(runs: &[&RunSummary]) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |name: &str, f: &dyn Fn(&RunSummary) -> String| {
        rows.push((name.to_owned(), runs.iter().map(|r| f(r)).collect()));
    };
    row("", &|r| match r.mode {
        Mode::Naive => "naive control".to_owned(),
        Mode::Fenced => "fencekit".to_owned(),
    });
    row("duration", &|r| {
        format!("{:.0} s", r.duration_ms as f64 / 1e3)
    });
    let kinds: Vec<FaultKind> = crate::plan::ALL_KINDS.to_vec();
    for kind in kinds {
        let name = format!(
            "fault {}",
            serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        );
        row(&name, &|r| {
            r.faults_by_kind
                .get(&kind)
                .copied()
                .unwrap_or(0)
                .to_string()
        });
    }
    row("faults skipped (target busy)", &|r| {
        r.faults_skipped.to_string()
    });
    let mut op_names: Vec<String> = runs
        .iter()
        .flat_map(|r| r.operations.keys().cloned())
        .collect();
    op_names.sort();
    op_names.dedup();
    for op in op_names {
        row(&format!("requests: {op}"), &|r| {
            r.operations.get(&op).copied().unwrap_or(0).to_string()
        });
    }
    row("ledger entries (landed)", &|r| {
        format!("{} ({})", r.ledger_entries, r.ledger_landed)
    });
    row("status samples", &|r| r.status_samples.to_string());
    let check_names: Vec<&'static str> = runs
        .first()
        .map(|r| r.checks.iter().map(|c| c.name).collect())
        .unwrap_or_default();
    for name in check_names {
        row(&format!("check {name}"), &|r| {
            r.checks
                .iter()
                .find(|c| c.name == name)
                .map_or_else(String::new, |c| {
                    if !c.applies {
                        "n/a".to_owned()
                    } else if c.violations_total == 0 {
                        format!("ok ({} checked)", c.examined)
                    } else {
                        format!("{} VIOLATIONS ({} checked)", c.violations_total, c.examined)
                    }
                })
        });
    }
    row(
        "failover p50 / p99",
        &|r| match (r.failover.p50_ms, r.failover.p99_ms) {
            (Some(a), Some(b)) => format!("{a} / {b} ms (n={})", r.failover.count),
            _ => "-".to_owned(),
        },
    );
    row("clock faults in effect", &|r| {
        let ok = r.clock_checks.iter().filter(|c| c.took_effect).count();
        let short = r.clock_checks.iter().filter(|c| c.too_short).count();
        format!("{ok} of {} ({short} too short)", r.clock_checks.len())
    });
    row("supervisor restarts", &|r| {
        r.supervisor_restarts.to_string()
    });
    row("exits nobody caused (crashes)", &|r| {
        let crashes = r.unexpected_exits.iter().filter(|e| e.crashed).count();
        format!("{} ({crashes})", r.unexpected_exits.len())
    });
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (name, cells) in rows {
        out.push_str(&format!("{name:<width$}"));
        for cell in cells {
            out.push_str(&format!("  {cell:>24}"));
        }
        out.push('\n');
    }
    out
}
