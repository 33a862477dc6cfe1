//! A node's view of its group at one instant, for operators and for [`crate::detect::audit`].

use std::time::Duration;

use crate::node::Leadership;
use crate::term::{LogIndex, Term};
use crate::time::Instant;
use crate::token::NodeId;

/// The Raft role of a node.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking for pre-votes before starting an election.
    PreCandidate,
    /// Asking for votes.
    Candidate,
    /// Raft leader. Usable leadership is [`Status::leadership`], which needs the lease too.
    Leader,
}

impl Role {
    pub(crate) fn from_raft(role: raft::StateRole) -> Role {
        match role {
            raft::StateRole::Follower => Role::Follower,
            raft::StateRole::PreCandidate => Role::PreCandidate,
            raft::StateRole::Candidate => Role::Candidate,
            raft::StateRole::Leader => Role::Leader,
        }
    }

    /// The role's name, lowercase.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// A node's view. Times are relative to `at`, on the node's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The node.
    pub id: NodeId,
    /// Its current term.
    pub term: Term,
    /// Its Raft role (as last seen by the node thread).
    pub role: Role,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Usable leadership at `at`: `Some` only while the lease holds.
    pub leadership: Option<Leadership>,
    /// Time left on the lease at `at`.
    pub lease_remaining: Option<Duration>,
    /// Highest committed index.
    pub commit: LogIndex,
    /// Highest index delivered to the host.
    pub applied: LogIndex,
    /// For a leader: time since the send time of the latest heartbeat round a quorum
    /// acknowledged. For a follower: time since it last heard from the leader.
    pub last_quorum_contact: Option<Duration>,
    /// Voters, as this node applied them.
    pub voters: Vec<NodeId>,
    /// Learners, as this node applied them.
    pub learners: Vec<NodeId>,
    /// Events dropped because the host did not read them.
    pub events_dropped: u64,
    /// Peer messages refused at the step boundary: messages no honest member sends
    /// (DESIGN.md I8). Non-zero means a misbehaving or hostile peer.
    pub refused_messages: u64,
    /// The latest refusal, naming the peer and the reason.
    pub last_refusal: Option<String>,
    /// Why the node failed, if it did (a panic on its thread, a log that cannot be written):
    /// it then reports no leadership and does nothing more (I9).
    pub failure: Option<String>,
    /// The node was stopped. Like a failed node it takes no part: its role reads
    /// [`Role::Follower`], with no leader and no leadership.
    pub stopped: bool,
    /// When this view was taken, on the node's clock.
    pub at: Instant,
}

impl Status {
    /// The status as JSON (one object; ids as numbers, durations in milliseconds).
    pub fn to_json(&self) -> String {
        let ids = |v: &[NodeId]| {
            let items: Vec<String> = v.iter().map(|id| id.get().to_string()).collect();
            format!("[{}]", items.join(","))
        };
        let ms = |d: Option<Duration>| match d {
            Some(d) => format!("{:.3}", d.as_secs_f64() * 1e3),
            None => "null".into(),
        };
        let (generation, deadline) = match self.leadership {
            Some(l) => (
                l.token.generation.get().to_string(),
                l.lease_deadline.as_nanos().to_string(),
            ),
            None => ("null".into(), "null".into()),
        };
        format!(
            "{{\"id\":{},\"term\":{},\"role\":\"{}\",\"leader\":{},\"leading_generation\":{},\
             \"lease_deadline_ns\":{},\"lease_remaining_ms\":{},\"commit\":{},\"applied\":{},\
             \"last_quorum_contact_ms\":{},\"voters\":{},\"learners\":{},\"events_dropped\":{},\
             \"refused_messages\":{},\"last_refusal\":{},\"failed\":{},\"failure\":{},\
             \"stopped\":{},\"at_ns\":{}}}",
            self.id.get(),
            self.term,
            self.role.as_str(),
            self.leader.map_or("null".into(), |l| l.get().to_string()),
            generation,
            deadline,
            ms(self.lease_remaining),
            self.commit,
            self.applied,
            ms(self.last_quorum_contact),
            ids(&self.voters),
            ids(&self.learners),
            self.events_dropped,
            self.refused_messages,
            json_string(self.last_refusal.as_deref()),
            self.failure.is_some(),
            json_string(self.failure.as_deref()),
            self.stopped,
            self.at.as_nanos(),
        )
    }
}

/// `text` as a JSON string (or `null`), escaped.
fn json_string(text: Option<&str>) -> String {
    let Some(text) = text else {
        return "null".into();
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
