//! Split-brain detection: an audit of many nodes' statuses, taken at about the same time.
//!
//! Each anomaly is evidence that something is wrong (a bug, a broken clock bound, a stale
//! status) and names the nodes involved. Leases are compared as each node reported them on its
//! own clock, so the audit flags two nodes that *both* reported a live lease, not a precise
//! overlap in real time.

use std::collections::BTreeMap;

use crate::node::{Role, Status};
use crate::term::Term;
use crate::token::NodeId;

/// Something that must not happen in a healthy group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// Two nodes claim Raft leadership of the same term (I1 broken).
    TwoLeadersInOneTerm {
        /// The term.
        term: Term,
        /// The nodes claiming it.
        nodes: Vec<NodeId>,
    },
    /// Two nodes report a live lease at once (I3 broken, or the statuses are far apart).
    OverlappingLeases {
        /// The nodes with a live lease, with their generations.
        holders: Vec<(NodeId, u64)>,
    },
    /// A node claims leadership of an older term while another node leads a newer one: a
    /// deposed leader that has not noticed yet (it must not act; its lease should be gone).
    StaleLeader {
        /// The node with the old claim.
        node: NodeId,
        /// Its term.
        term: Term,
        /// The newer leader.
        newer_leader: NodeId,
        /// The newer term.
        newer_term: Term,
        /// Whether the stale node still reports a live lease (the dangerous case).
        with_lease: bool,
    },
    /// A node failed (I9): it reports no leadership and takes no part until restarted, so the
    /// group has one member fewer than it believes.
    Failed {
        /// The node.
        node: NodeId,
        /// Why, as the node reported it.
        cause: String,
    },
    /// Nodes disagree on the voters.
    MembershipDisagreement {
        /// Each distinct voter set, with the nodes that hold it.
        views: Vec<(Vec<NodeId>, Vec<NodeId>)>,
    },
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Anomaly::TwoLeadersInOneTerm { term, nodes } => {
                write!(f, "two leaders in term {term}: {nodes:?}")
            }
            Anomaly::OverlappingLeases { holders } => {
                write!(
                    f,
                    "live leases held at once by {holders:?} (node, generation)"
                )
            }
            Anomaly::StaleLeader {
                node,
                term,
                newer_leader,
                newer_term,
                with_lease,
            } => write!(
                f,
                "node {node} claims leadership of term {term} while node {newer_leader} leads \
                 term {newer_term}{}",
                if *with_lease {
                    ", and still reports a live lease"
                } else {
                    ""
                }
            ),
            Anomaly::Failed { node, cause } => write!(f, "node {node} failed: {cause}"),
            Anomaly::MembershipDisagreement { views } => {
                write!(f, "nodes disagree on the voters:")?;
                for (voters, nodes) in views {
                    write!(f, " {nodes:?} see {voters:?};")?;
                }
                Ok(())
            }
        }
    }
}

/// Audits `statuses` (one per node) and returns every anomaly found.
pub fn audit(statuses: &[Status]) -> Vec<Anomaly> {
    let mut found = Vec::new();
    let leaders: Vec<&Status> = statuses.iter().filter(|s| s.role == Role::Leader).collect();

    let mut by_term: BTreeMap<Term, Vec<NodeId>> = BTreeMap::new();
    for s in &leaders {
        by_term.entry(s.term).or_default().push(s.id);
    }
    for (term, nodes) in by_term {
        if nodes.len() > 1 {
            found.push(Anomaly::TwoLeadersInOneTerm { term, nodes });
        }
    }

    let holders: Vec<(NodeId, u64)> = statuses
        .iter()
        .filter_map(|s| s.leadership.map(|l| (s.id, l.token.generation.get())))
        .collect();
    if holders.len() > 1 {
        found.push(Anomaly::OverlappingLeases { holders });
    }

    if let Some(newest) = leaders.iter().max_by_key(|s| s.term) {
        for s in &leaders {
            if s.term < newest.term {
                found.push(Anomaly::StaleLeader {
                    node: s.id,
                    term: s.term,
                    newer_leader: newest.id,
                    newer_term: newest.term,
                    with_lease: s.leadership.is_some(),
                });
            }
        }
    }

    for s in statuses {
        if let Some(cause) = &s.failure {
            found.push(Anomaly::Failed {
                node: s.id,
                cause: cause.clone(),
            });
        }
    }

    let mut views: BTreeMap<Vec<NodeId>, Vec<NodeId>> = BTreeMap::new();
    for s in statuses {
        views.entry(s.voters.clone()).or_default().push(s.id);
    }
    if views.len() > 1 {
        found.push(Anomaly::MembershipDisagreement {
            views: views.into_iter().collect(),
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Leadership;
    use crate::term::LogIndex;
    use crate::time::Instant;
    use crate::token::{Generation, Token};

    fn status(id: u64, term: u64, role: Role, lease: bool, voters: &[u64]) -> Status {
        let node = NodeId::new(id).unwrap();
        Status {
            id: node,
            term: Term::new(term),
            role,
            leader: None,
            leadership: lease.then(|| Leadership {
                token: Token::new(Generation::new(term).unwrap(), node),
                lease_deadline: Instant::from_nanos(1_000),
            }),
            lease_remaining: None,
            commit: LogIndex::ZERO,
            applied: LogIndex::ZERO,
            last_quorum_contact: None,
            voters: voters.iter().map(|&v| NodeId::new(v).unwrap()).collect(),
            learners: vec![],
            events_dropped: 0,
            refused_messages: 0,
            last_refusal: None,
            failure: None,
            stopped: false,
            at: Instant::ZERO,
        }
    }

    #[test]
    fn a_healthy_group_has_no_anomaly() {
        let v = [1, 2, 3];
        let statuses = [
            status(1, 5, Role::Leader, true, &v),
            status(2, 5, Role::Follower, false, &v),
            status(3, 5, Role::Follower, false, &v),
        ];
        assert_eq!(audit(&statuses), vec![]);
    }

    #[test]
    fn every_planted_anomaly_is_named() {
        let v = [1, 2, 3];
        let two_in_one_term = [
            status(1, 5, Role::Leader, false, &v),
            status(2, 5, Role::Leader, false, &v),
        ];
        assert!(matches!(&audit(&two_in_one_term)[..],
            [Anomaly::TwoLeadersInOneTerm { term, nodes }]
                if *term == Term::new(5) && nodes.len() == 2));

        let stale = [
            status(1, 4, Role::Leader, true, &v),
            status(2, 5, Role::Leader, true, &v),
            status(3, 5, Role::Follower, false, &[1, 2]),
        ];
        let found = audit(&stale);
        assert!(
            found
                .iter()
                .any(|a| matches!(a, Anomaly::OverlappingLeases { holders } if holders.len() == 2))
        );
        assert!(found.iter().any(|a| matches!(
            a,
            Anomaly::StaleLeader {
                term,
                newer_term,
                with_lease: true,
                ..
            } if *term == Term::new(4) && *newer_term == Term::new(5)
        )));
        let disagreement = found
            .iter()
            .find(|a| matches!(a, Anomaly::MembershipDisagreement { .. }))
            .unwrap();
        assert!(disagreement.to_string().contains("disagree"));
        assert_eq!(found.len(), 3);

        let mut failed = status(3, 5, Role::Follower, false, &v);
        failed.failure = Some("the node thread panicked: boom".into());
        let found = audit(&[status(1, 5, Role::Leader, true, &v), failed]);
        assert!(matches!(&found[..], [Anomaly::Failed { cause, .. }] if cause.contains("boom")));
        assert!(found[0].to_string().contains("node 3 failed"));
    }
}
