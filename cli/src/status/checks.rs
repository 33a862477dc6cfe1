//! Checks of the group's configuration beyond the split-brain audit: the voter count an
//! operator expects, and clock rates within the drift bound the leases rely on.

use fencekit::lease::Timing;

use super::Reported;

/// One line per node whose voter count is not `expected`, naming the node and its count.
pub(crate) fn voter_mismatches(reports: &[(String, Reported)], expected: usize) -> Vec<String> {
    reports
        .iter()
        .filter(|(_, r)| r.voters.len() != expected)
        .map(|(addr, r)| {
            format!(
                "node {} ({addr}) reports {} voters {:?}, expected {expected}",
                r.id,
                r.voters.len(),
                r.voters
            )
        })
        .collect()
}

/// One anomaly per pair of nodes whose clock rates differ by more than the drift bound.
///
/// The lease (core/src/lease.rs) counts on a follower's vote-refusal window, measured on the
/// follower's clock, lasting at least `1 − max_drift` of its length on the leader's clock.
/// A window of `w` on a clock of rate `f` lasts `w × l / f` on a clock of rate `l`, so every
/// ordered pair needs `l / f ≥ 1 − max_drift`: the slower rate over the faster one. Both
/// directions matter, since either node may lead.
///
/// A node that does not report `clock_rate` is left out. A node that does not report
/// `max_drift` is taken to run [`Timing::default`]'s; a pair is held to the smaller of its two
/// bounds, the one its leases were computed for if one side is misconfigured.
pub(crate) fn clock_rate_anomalies(reports: &[(String, Reported)]) -> Vec<String> {
    let default = Timing::default().max_drift;
    let rated: Vec<(&String, &Reported, f64)> = reports
        .iter()
        .filter_map(|(addr, r)| r.clock_rate.map(|rate| (addr, r, rate)))
        .collect();
    let mut anomalies = Vec::new();
    for (i, (addr_a, a, rate_a)) in rated.iter().enumerate() {
        for (addr_b, b, rate_b) in &rated[i + 1..] {
            let bound = a
                .max_drift
                .unwrap_or(default)
                .min(b.max_drift.unwrap_or(default));
            let (slow, fast) = (rate_a.min(*rate_b), rate_a.max(*rate_b));
            // A rate that is not a positive number cannot be within any bound.
            let within = slow > 0.0 && fast.is_finite() && slow / fast >= 1.0 - bound;
            if !within {
                anomalies.push(format!(
                    "clock rates of node {} ({addr_a}) and node {} ({addr_b}) differ beyond the \
                     drift bound: {rate_a} and {rate_b}, ratio {:.4} below 1 - max_drift = {:.4}: \
                     a lease may outlive a follower's vote refusal",
                    a.id,
                    b.id,
                    slow / fast,
                    1.0 - bound
                ));
            }
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: u64, voters: &[u64], rate: Option<f64>, max_drift: Option<f64>) -> Reported {
        let json = serde_json::json!({
            "id": id, "term": 1, "role": "follower", "leader": null,
            "leading_generation": null, "lease_deadline_ns": null, "lease_remaining_ms": null,
            "commit": 0, "applied": 0, "voters": voters, "at_ns": 0,
            "clock_rate": rate, "max_drift": max_drift,
        });
        serde_json::from_value(json).expect("a status")
    }

    /// A node's clock rate and drift bound, as its /status reports them.
    type Clock = (Option<f64>, Option<f64>);

    fn group(rates: &[Clock]) -> Vec<(String, Reported)> {
        rates
            .iter()
            .enumerate()
            .map(|(i, &(rate, drift))| {
                let id = i as u64 + 1;
                (format!("n{id}"), report(id, &[1, 2, 3], rate, drift))
            })
            .collect()
    }

    #[test]
    fn a_node_with_another_voter_count_is_named_with_its_count() {
        let mut reports = group(&[(None, None), (None, None)]);
        reports[1].1.voters = vec![1, 2, 3, 4, 5];
        assert!(voter_mismatches(&reports, 3).len() == 1);
        assert_eq!(
            voter_mismatches(&reports, 3)[0],
            "node 2 (n2) reports 5 voters [1, 2, 3, 4, 5], expected 3"
        );
        assert_eq!(voter_mismatches(&reports, 5).len(), 1);
        assert_eq!(voter_mismatches(&reports, 4).len(), 2);
    }

    #[test]
    fn clock_rates_are_checked_pairwise_against_the_drift_bound() {
        // (rates and reported bounds, anomalies expected)
        let cases: Vec<(Vec<Clock>, usize)> = vec![
            (
                vec![(Some(1.0), None), (Some(1.0), None), (Some(1.0), None)],
                0,
            ),
            // Each within 5 % of real time, but 0.96 / 1.04 = 0.923 between them.
            (vec![(Some(0.96), None), (Some(1.04), None)], 1),
            // 0.95 / 1.0 is exactly the bound: allowed.
            (vec![(Some(0.95), Some(0.05)), (Some(1.0), Some(0.05))], 0),
            // One fast node against two: two pairs.
            (
                vec![(Some(1.2), None), (Some(1.0), None), (Some(1.0), None)],
                2,
            ),
            // A wider bound reported by both nodes is honoured...
            (vec![(Some(1.2), Some(0.2)), (Some(1.0), Some(0.2))], 0),
            // ...but a pair is held to the smaller of its bounds.
            (vec![(Some(1.2), Some(0.2)), (Some(1.0), Some(0.05))], 1),
            // A node that reports no rate is left out.
            (vec![(None, None), (Some(1.0), None)], 0),
            // A broken rate is never within the bound.
            (vec![(Some(0.0), None), (Some(1.0), None)], 1),
        ];
        for (rates, want) in cases {
            let got = clock_rate_anomalies(&group(&rates));
            assert_eq!(got.len(), want, "{rates:?}: {got:?}");
        }
    }

    #[test]
    fn a_clock_anomaly_names_both_nodes_and_rates() {
        let got = clock_rate_anomalies(&group(&[(Some(1.0), None), (Some(1.3), None)]));
        assert!(got[0].contains("node 1 (n1) and node 2 (n2)"), "{got:?}");
        assert!(got[0].contains("1 and 1.3"), "{got:?}");
    }
}
