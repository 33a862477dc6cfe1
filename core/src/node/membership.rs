//! Membership changes: the request, its encoding as a raft `ConfChangeV2`, and the refusal of a
//! change that would leave the group without a reachable quorum.

use std::collections::BTreeSet;

use raft::eraftpb::{
    ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
};

use crate::error::NodeError;
use crate::token::NodeId;

/// One change to the membership. Several in one request go through joint consensus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// Adds a voter (or promotes a learner), reachable at `address` if the transport needs one.
    AddVoter {
        /// The node.
        id: NodeId,
        /// Its transport address.
        address: Option<String>,
    },
    /// Adds a learner: it receives the log but does not vote.
    AddLearner {
        /// The node.
        id: NodeId,
        /// Its transport address.
        address: Option<String>,
    },
    /// Removes a voter or learner.
    Remove {
        /// The node.
        id: NodeId,
    },
}

impl MembershipChange {
    fn id(&self) -> NodeId {
        match self {
            MembershipChange::AddVoter { id, .. }
            | MembershipChange::AddLearner { id, .. }
            | MembershipChange::Remove { id } => *id,
        }
    }
}

/// Builds the raft change for `changes` applied to `current`, refusing one that is empty,
/// names a node twice, or leaves fewer reachable voters than a quorum of the new voter set.
/// `reachable` says whether the leader heard from a node recently (the leader itself is).
///
/// Growing a one-voter group is allowed although the new voter is not reachable yet: there is
/// no other way to grow it, and the single voter's own quorum is not at stake until it commits.
pub(crate) fn plan(
    current: &ConfState,
    changes: &[MembershipChange],
    reachable: impl Fn(u64) -> bool,
) -> Result<ConfChangeV2, NodeError> {
    if changes.is_empty() {
        return Err(NodeError::Membership("no change given".into()));
    }
    let mut seen = BTreeSet::new();
    let mut voters: BTreeSet<u64> = current.voters.iter().copied().collect();
    let mut steps = Vec::with_capacity(changes.len());
    let mut context = String::new();
    for change in changes {
        let id = change.id().get();
        if !seen.insert(id) {
            return Err(NodeError::Membership(format!("node {id} is named twice")));
        }
        let (kind, address) = match change {
            MembershipChange::AddVoter { address, .. } => {
                voters.insert(id);
                (ConfChangeType::AddNode, address.as_deref())
            }
            MembershipChange::AddLearner { address, .. } => {
                voters.remove(&id);
                (ConfChangeType::AddLearnerNode, address.as_deref())
            }
            MembershipChange::Remove { .. } => {
                let known = current.voters.contains(&id) || current.learners.contains(&id);
                if !known {
                    return Err(NodeError::Membership(format!("node {id} is not a member")));
                }
                voters.remove(&id);
                (ConfChangeType::RemoveNode, None)
            }
        };
        if let Some(address) = address {
            if address.contains(['\n', '=']) {
                return Err(NodeError::Membership(format!(
                    "address {address:?} of node {id} contains '=' or a newline"
                )));
            }
            context.push_str(&format!("{id}={address}\n"));
        }
        let mut step = ConfChangeSingle::default();
        step.set_change_type(kind);
        step.node_id = id;
        steps.push(step);
    }
    if voters.is_empty() {
        return Err(NodeError::Membership(
            "the change would leave no voter".into(),
        ));
    }
    let quorum = voters.len() / 2 + 1;
    let live = voters.iter().filter(|&&v| reachable(v)).count();
    if live < quorum && current.voters.len() > 1 {
        return Err(NodeError::Membership(format!(
            "the change would leave {live} reachable voter(s) of {}, fewer than the quorum of \
             {quorum}; add the new nodes as learners first, or bring the others back",
            voters.len()
        )));
    }
    let mut cc = ConfChangeV2::default();
    cc.set_transition(ConfChangeTransition::Auto);
    cc.set_changes(steps.into());
    cc.set_context(context.into_bytes().into());
    Ok(cc)
}

/// The addresses a change carries, as `(node, address)`.
pub(crate) fn addresses(context: &[u8]) -> Vec<(NodeId, String)> {
    let text = String::from_utf8_lossy(context);
    text.lines()
        .filter_map(|line| {
            let (id, address) = line.split_once('=')?;
            let id = NodeId::new(id.parse().ok()?).ok()?;
            Some((id, address.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(voters: &[u64]) -> ConfState {
        let mut cs = ConfState::default();
        cs.set_voters(voters.to_vec());
        cs
    }

    fn id(n: u64) -> NodeId {
        NodeId::new(n).unwrap()
    }

    #[test]
    fn removing_the_last_voter_is_refused() {
        let err = plan(
            &conf(&[1]),
            &[MembershipChange::Remove { id: id(1) }],
            |_| true,
        );
        assert!(err.unwrap_err().to_string().contains("no voter"));
    }

    #[test]
    fn a_change_leaving_no_reachable_quorum_is_refused() {
        // 3 voters, 2 and 3 unreachable: removing 1 of them leaves {1, x} with quorum 2.
        let cs = conf(&[1, 2, 3]);
        let err = plan(&cs, &[MembershipChange::Remove { id: id(2) }], |v| v == 1).unwrap_err();
        assert!(err.to_string().contains("fewer than the quorum"), "{err}");
        // With 2 reachable it goes through.
        assert!(plan(&cs, &[MembershipChange::Remove { id: id(3) }], |v| v != 3).is_ok());
    }

    #[test]
    fn addresses_travel_in_the_context() {
        let cc = plan(
            &conf(&[1]),
            &[MembershipChange::AddVoter {
                id: id(2),
                address: Some("127.0.0.1:7002".into()),
            }],
            |v| v == 1,
        )
        .unwrap();
        assert_eq!(
            addresses(&cc.context),
            vec![(id(2), "127.0.0.1:7002".to_string())]
        );
        let twice = plan(
            &conf(&[1]),
            &[
                MembershipChange::AddVoter {
                    id: id(2),
                    address: None,
                },
                MembershipChange::Remove { id: id(2) },
            ],
            |_| true,
        );
        assert!(twice.unwrap_err().to_string().contains("named twice"));
    }
}
