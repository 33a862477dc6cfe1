//! What a run came to: each due run of each job counted by how often it landed in the ledger,
//! the writes the fence rejected, and how long each failover took.

use std::collections::HashMap;

use serde::Serialize;

use super::nemesis::{Fault, FaultKind};
use super::observer::Sample;
use crate::node::scheduler::Mode;
use crate::store_api::{Entry, Outcome};

/// Everything one run recorded. Times are milliseconds since the run began.
pub(crate) struct Run {
    pub(crate) mode: Mode,
    pub(crate) jobs: Vec<String>,
    pub(crate) period_ms: u64,
    /// When run 0 was due.
    pub(crate) schedule_start_ms: u64,
    /// Runs due before this are counted; later ones may not have had their chance.
    pub(crate) cutoff_ms: u64,
    pub(crate) duration_ms: u64,
    pub(crate) nodes: Vec<u64>,
    /// The ledger, its times made relative to the run's beginning.
    pub(crate) entries: Vec<Entry>,
    pub(crate) samples: Vec<Sample>,
    pub(crate) faults: Vec<Fault>,
}

/// A run of a job that landed more than once.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct Duplicate {
    pub(crate) job: String,
    pub(crate) run: u64,
    /// Who ran it, in the order the store recorded.
    pub(crate) holders: Vec<u64>,
}

/// The figures of one run.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct Summary {
    pub(crate) mode: Mode,
    pub(crate) jobs_due: u64,
    pub(crate) recorded_once: u64,
    /// Runs that landed more than once.
    pub(crate) recorded_twice: u64,
    pub(crate) not_recorded: u64,
    /// Runs whose job body ran more than once, as far as the store saw: more than one
    /// completion (landed or refused) arrived for them. Fencing refuses the second write, not
    /// the second body: effects outside the store need idempotency keys.
    pub(crate) ran_again: u64,
    pub(crate) stale_rejected: u64,
    pub(crate) conflicts: u64,
    /// From each fault that took the leader away to the first sample of another node acting.
    pub(crate) failover_ms: Vec<u64>,
    pub(crate) failover_median_ms: Option<u64>,
    pub(crate) failover_max_ms: Option<u64>,
    pub(crate) duplicates: Vec<Duplicate>,
    pub(crate) faults: Vec<Fault>,
}

/// How far after a fault's end a failover is still credited to it.
const FAILOVER_WINDOW_MS: u64 = 3000;

impl Run {
    /// The runs of each job due before the cutoff.
    fn runs_due(&self) -> u64 {
        self.cutoff_ms
            .saturating_sub(self.schedule_start_ms)
            .div_ceil(self.period_ms)
    }

    pub(crate) fn summarize(&self) -> Summary {
        let runs = self.runs_due();
        let mut landed: HashMap<(&str, u64), Vec<u64>> = HashMap::new();
        for entry in self.entries.iter().filter(|e| e.outcome.landed()) {
            landed
                .entry((entry.job.as_str(), entry.run))
                .or_default()
                .push(entry.holder);
        }
        let (mut once, mut twice, mut missed) = (0, 0, 0);
        let mut duplicates = Vec::new();
        for job in &self.jobs {
            for run in 0..runs {
                match landed.get(&(job.as_str(), run)).map_or(0, Vec::len) {
                    0 => missed += 1,
                    1 => once += 1,
                    _ => {
                        twice += 1;
                        duplicates.push(Duplicate {
                            job: job.clone(),
                            run,
                            holders: landed[&(job.as_str(), run)].clone(),
                        });
                    }
                }
            }
        }
        let mut attempts: HashMap<(&str, u64), u64> = HashMap::new();
        for entry in &self.entries {
            *attempts.entry((entry.job.as_str(), entry.run)).or_default() += 1;
        }
        let ran_again = attempts.values().filter(|&&n| n > 1).count() as u64;
        let count = |outcome| self.entries.iter().filter(|e| e.outcome == outcome).count() as u64;
        let failover_ms = self.failovers();
        let mut sorted = failover_ms.clone();
        sorted.sort_unstable();
        Summary {
            mode: self.mode,
            jobs_due: runs * self.jobs.len() as u64,
            recorded_once: once,
            recorded_twice: twice,
            not_recorded: missed,
            ran_again,
            stale_rejected: count(Outcome::Stale),
            conflicts: count(Outcome::Conflict),
            failover_median_ms: median(&sorted),
            failover_max_ms: sorted.last().copied(),
            failover_ms,
            duplicates,
            faults: self.faults.clone(),
        }
    }

    /// For each fault that took the acting leader away, the time until another node acted.
    fn failovers(&self) -> Vec<u64> {
        self.faults
            .iter()
            .enumerate()
            .filter(|(_, f)| f.hit_leader && f.kind != FaultKind::Skew)
            .filter_map(|(i, fault)| {
                // Credited until the next fault begins: a later one's failover is its own.
                let until = self
                    .faults
                    .get(i + 1)
                    .map_or(u64::MAX, |next| next.start_ms)
                    .min(fault.end_ms + FAILOVER_WINDOW_MS);
                self.samples
                    .iter()
                    .filter(|s| s.at_ms > fault.start_ms)
                    .take_while(|s| s.at_ms < until)
                    .find(|s| s.acting && s.node != fault.node)
                    .map(|s| s.at_ms - fault.start_ms)
            })
            .collect()
    }
}

/// The side-by-side comparison, row by row: a name, then the naive and the fenced figure.
pub(crate) fn rows(naive: &Summary, fenced: &Summary) -> Vec<(&'static str, String, String)> {
    let ms = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"));
    let pair = |f: fn(&Summary) -> u64| (f(naive).to_string(), f(fenced).to_string());
    let figures = [
        ("jobs due", pair(|s| s.jobs_due)),
        ("recorded exactly once", pair(|s| s.recorded_once)),
        (RECORDED_TWICE, pair(|s| s.recorded_twice)),
        ("not recorded", pair(|s| s.not_recorded)),
        ("job bodies that ran again", pair(|s| s.ran_again)),
        ("stale writes rejected", pair(|s| s.stale_rejected)),
        ("conflicts", pair(|s| s.conflicts)),
        (
            "failover median",
            (ms(naive.failover_median_ms), ms(fenced.failover_median_ms)),
        ),
        (
            "failover max",
            (ms(naive.failover_max_ms), ms(fenced.failover_max_ms)),
        ),
    ];
    figures
        .into_iter()
        .map(|(name, (a, b))| (name, a, b))
        .collect()
}

/// The row that must read 0 on fencekit's side.
pub(crate) const RECORDED_TWICE: &str = "recorded twice";

fn median(sorted: &[u64]) -> Option<u64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some(u64::midpoint(sorted[n / 2 - 1], sorted[n / 2])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(job: &str, run: u64, holder: u64, outcome: Outcome) -> Entry {
        Entry {
            job: job.into(),
            run,
            holder,
            generation: Some(holder),
            outcome,
            at_ms: 0,
        }
    }

    fn sample(at_ms: u64, node: u64, acting: bool) -> Sample {
        Sample {
            at_ms,
            node,
            term: 1,
            role: "leader".into(),
            acting,
            generation: None,
            lease_remaining_ms: None,
            working: None,
        }
    }

    #[test]
    fn runs_are_counted_by_how_often_they_landed() {
        let run = Run {
            mode: Mode::Fenced,
            jobs: vec!["a".into(), "b".into()],
            period_ms: 100,
            schedule_start_ms: 1000,
            cutoff_ms: 1250,
            duration_ms: 2000,
            nodes: vec![1, 2],
            entries: vec![
                entry("a", 0, 1, Outcome::Accepted),
                entry("b", 0, 1, Outcome::Accepted),
                entry("a", 1, 1, Outcome::Accepted),
                entry("a", 1, 2, Outcome::Stale),
                entry("b", 1, 1, Outcome::Unfenced),
                entry("b", 1, 2, Outcome::Unfenced),
                entry("a", 2, 2, Outcome::Conflict),
                entry("a", 9, 2, Outcome::Accepted),
            ],
            samples: vec![
                sample(1010, 1, true),
                sample(1100, 2, false),
                sample(1400, 1, true),
                sample(1450, 2, true),
            ],
            faults: vec![Fault {
                kind: FaultKind::Pause,
                node: 1,
                start_ms: 1200,
                end_ms: 1500,
                hit_leader: true,
                what: String::new(),
            }],
        };
        let s = run.summarize();
        assert_eq!(s.jobs_due, 6, "runs 0, 1 and 2 of two jobs");
        assert_eq!(s.recorded_once, 3);
        assert_eq!(s.recorded_twice, 1);
        assert_eq!(s.not_recorded, 2);
        assert_eq!(s.ran_again, 2, "a/1 refused as stale, b/1 landed twice");
        assert_eq!(s.stale_rejected, 1);
        assert_eq!(s.conflicts, 1);
        assert_eq!(s.duplicates[0].holders, vec![1, 2]);
        assert_eq!(s.failover_ms, vec![250]);
        assert_eq!(median(&[1, 5, 9, 10]), Some(7));
    }
}
