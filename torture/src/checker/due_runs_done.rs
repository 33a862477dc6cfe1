//! `due-runs-done`: a run that came due while the system could act was done.

use std::collections::HashSet;

use super::{Check, final_snapshot, no_final_snapshot};
use crate::history::History;

const NAME: &str = "due-runs-done";
const PROMISE: &str = "Every run that came due before the liveness cutoff while a majority of \
    the nodes and the store were up landed in the final ledger.";

/// Examines every required run: due before the cutoff, with a majority and the store up.
pub(super) fn check(history: &History) -> Check {
    let mut check = Check::new(NAME, PROMISE, true);
    let Some(last) = final_snapshot(history) else {
        check.violation(None, no_final_snapshot(history));
        return check;
    };
    let schedule = &history.schedule;
    if schedule.period_ms <= 0 {
        check.violation(
            None,
            format!(
                "the schedule's period is {} ms: no run can be placed in time",
                schedule.period_ms
            ),
        );
        return check;
    }
    let landed: HashSet<(&str, u64)> = last
        .entries
        .iter()
        .filter(|e| e.landed())
        .map(|e| (e.job.as_str(), e.run))
        .collect();

    for job in &schedule.jobs {
        let mut run = 0u64;
        let mut due_ms = schedule.start_ms;
        while due_ms < history.liveness_cutoff_ms {
            let up: Vec<u64> = history
                .nodes
                .iter()
                .copied()
                .filter(|id| is_up(history, &format!("n{id}"), due_ms))
                .collect();
            let majority = up.len() * 2 > history.nodes.len();
            if majority && is_up(history, "store", due_ms) {
                check.examined += 1;
                if !landed.contains(&(job.as_str(), run)) {
                    let up: Vec<String> = up.iter().map(|id| format!("n{id}")).collect();
                    check.violation(
                        Some(due_ms),
                        format!(
                            "job {job} run {run}, due at {due_ms} ms while {} of {} nodes ({}) \
                             and the store were up, has no landed entry in the final ledger \
                             (read at {} ms)",
                            up.len(),
                            history.nodes.len(),
                            up.join(", "),
                            last.taken_ms
                        ),
                    );
                }
            }
            run += 1;
            due_ms = due_ms.saturating_add(schedule.period_ms);
        }
    }
    check
}

/// `member` ("n1", "store") was neither killed nor stopped at `t`.
fn is_up(history: &History, member: &str, t: i64) -> bool {
    history
        .down
        .get(member)
        .is_none_or(|spans| !spans.iter().any(|span| span.contains(t)))
}
