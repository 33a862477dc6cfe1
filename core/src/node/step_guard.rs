//! The step boundary: what a peer's message must look like before raft-rs sees it.
//!
//! raft-rs trusts its peers. Several fields that no honest member ever sends make it panic
//! (`fatal!`: a heartbeat committing past the log, entries conflicting with committed ones, a
//! snapshot whose membership cannot be restored), adopt an unusable term for good, or act on
//! a message that is meant to stay inside one node (a proposal, a leadership transfer that
//! would skip the lease revocation of I3). DESIGN.md I8: such a message is refused here,
//! counted and logged, and the node goes on; it never stops the node or moves its state
//! backwards.
//!
//! Every rule below names the honest behaviour it relies on. A rule may only refuse what an
//! honest member never sends, whatever the network does to honest messages (delay, loss,
//! duplication, reordering): a refused honest message would cost liveness and raise a false
//! alarm.

use std::fmt;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, EntryType, Message, MessageType};
use raft::{Raft, StateRole};

use crate::limits::{INDEX_MAX, TERM_JUMP_MAX};
use crate::raft_storage::RaftStorage;
use crate::term::{LogIndex, Term};
use crate::token::Generation;

/// Why a peer's message was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Addressed to another node, or claiming to come from this node or from node 0.
    Misaddressed {
        /// The sender it claims.
        from: u64,
        /// The receiver it names.
        to: u64,
    },
    /// A message type that only a node's own host or raft-rs itself creates: proposals, read
    /// index and leadership-transfer requests (this node never forwards them), local ticks
    /// and reports. A proposal from outside would commit an entry no host made; a transfer
    /// request would elect a successor before the lease is revoked.
    LocalOnly(MessageType),
    /// Term 0, which raft-rs takes as a local message and exempts from every term check.
    TermZero(MessageType),
    /// A term that is not a generation (above `Generation::MAX`): adopting it would leave the
    /// group unable to report leadership for good.
    TermBeyondRange(Term),
    /// A term further ahead of this node's than any honest history of elections can reach.
    TermJump {
        /// The message's term.
        term: Term,
        /// This node's term.
        current: Term,
    },
    /// A heartbeat committing past this node's log: a leader only commits on a follower what
    /// the follower acknowledged holding.
    CommitBeyondLog {
        /// The commit index it carries.
        commit: LogIndex,
        /// This node's last log index.
        last: LogIndex,
    },
    /// A leader's message of this node's term from a node that is not the leader it knows of
    /// for that term: there is one leader per term (I1).
    NotTheLeader {
        /// The sender.
        from: u64,
        /// The leader this node knows of in the term.
        leader: u64,
    },
    /// An acknowledgement of log entries this leader does not have.
    AckBeyondLog {
        /// The index acknowledged or hinted.
        index: LogIndex,
        /// This leader's last log index.
        last: LogIndex,
    },
    /// Entries that cannot follow one another or the message, or that no leader proposes.
    BadEntries(String),
    /// A snapshot that no leader sends.
    BadSnapshot(String),
    /// raft-rs itself refused the message.
    RaftRefused(String),
    /// A field beyond what any honest message carries: an index past `INDEX_MAX`, or a quoted
    /// term newer than the message's own.
    FieldBeyondRange {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The largest value an honest message may carry there.
        max: u64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Misaddressed { from, to } => {
                write!(
                    f,
                    "a message from node {from} to node {to} is not for this node"
                )
            }
            Refusal::LocalOnly(kind) => write!(f, "{kind:?} is never sent between nodes"),
            Refusal::TermZero(kind) => write!(f, "{kind:?} with term 0"),
            Refusal::TermBeyondRange(term) => write!(
                f,
                "term {term} is above the largest generation {}",
                Generation::MAX
            ),
            Refusal::TermJump { term, current } => write!(
                f,
                "term {term} is more than {TERM_JUMP_MAX} ahead of this node's term {current}"
            ),
            Refusal::CommitBeyondLog { commit, last } => write!(
                f,
                "a heartbeat commits index {commit} but this node's log ends at {last}"
            ),
            Refusal::NotTheLeader { from, leader } => write!(
                f,
                "node {from} acts as leader of a term whose leader is node {leader}"
            ),
            Refusal::AckBeyondLog { index, last } => write!(
                f,
                "acknowledges index {index} but this leader's log ends at {last}"
            ),
            Refusal::BadEntries(why) => write!(f, "entries refused: {why}"),
            Refusal::BadSnapshot(why) => write!(f, "snapshot refused: {why}"),
            Refusal::RaftRefused(why) => write!(f, "raft refused it: {why}"),
            Refusal::FieldBeyondRange { field, value, max } => {
                write!(f, "{field} {value} is beyond {max}")
            }
        }
    }
}

/// Checks a message from a peer against what honest members send. `raft` is this node's
/// state as it is before the message is stepped.
pub(crate) fn check(raft: &Raft<RaftStorage>, m: &Message) -> Result<(), Refusal> {
    let me = raft.id;
    let kind = m.get_msg_type();
    if m.to != me || m.from == me || m.from == 0 {
        return Err(Refusal::Misaddressed {
            from: m.from,
            to: m.to,
        });
    }
    if is_local_only(kind) {
        return Err(Refusal::LocalOnly(kind));
    }
    // Every message raft-rs sends between nodes, other than the forwarded proposals and read
    // requests refused above, carries the sender's term (raft-rs `send`).
    if m.term == 0 {
        return Err(Refusal::TermZero(kind));
    }
    if m.term > Generation::MAX {
        return Err(Refusal::TermBeyondRange(Term::new(m.term)));
    }
    if m.term > raft.term.saturating_add(TERM_JUMP_MAX) {
        return Err(Refusal::TermJump {
            term: Term::new(m.term),
            current: Term::new(raft.term),
        });
    }
    // The terms a message quotes (the log's, a commit's) are its sender's history: never
    // newer than the sender's own term.
    for (field, term) in [("log_term", m.log_term), ("commit_term", m.commit_term)] {
        if term > m.term {
            return Err(Refusal::FieldBeyondRange {
                field,
                value: term,
                max: m.term,
            });
        }
    }
    check_indexes(m)?;
    let log = &raft.raft_log;
    let same_term = m.term == raft.term;
    // From the leader of a term to its followers. Within this node's term, a known leader is
    // the only one (I1). A message of a newer term makes the sender the leader.
    let leader_only = matches!(
        kind,
        MessageType::MsgAppend
            | MessageType::MsgHeartbeat
            | MessageType::MsgSnapshot
            | MessageType::MsgTimeoutNow
    );
    if leader_only && same_term && raft.leader_id != 0 && m.from != raft.leader_id {
        return Err(Refusal::NotTheLeader {
            from: m.from,
            leader: raft.leader_id,
        });
    }
    if kind == MessageType::MsgTimeoutNow && (!same_term || raft.leader_id == 0) {
        // A transfer's go-ahead comes from the leader this node follows in the same term; any
        // other would start an election that overrides the followers' lease.
        return Err(Refusal::NotTheLeader {
            from: m.from,
            leader: raft.leader_id,
        });
    }
    match kind {
        MessageType::MsgHeartbeat => {
            // The leader sends min(matched, committed): never past what this node holds.
            // (A heartbeat of a newer term comes from a leader that matched nothing yet.)
            let last = log.last_index();
            if m.commit > last {
                return Err(Refusal::CommitBeyondLog {
                    commit: LogIndex::new(m.commit),
                    last: LogIndex::new(last),
                });
            }
        }
        MessageType::MsgAppend => check_entries(m)?,
        MessageType::MsgSnapshot => check_snapshot(m)?,
        MessageType::MsgAppendResponse if same_term && raft.state == StateRole::Leader => {
            // A follower acknowledges or hints at indexes of what this leader sent it.
            let last = log.last_index();
            for index in [m.index, m.reject_hint] {
                if index > last {
                    return Err(Refusal::AckBeyondLog {
                        index: LogIndex::new(index),
                        last: LogIndex::new(last),
                    });
                }
            }
        }
        _ => {}
    }
    if !m.entries.is_empty() && kind != MessageType::MsgAppend {
        return Err(Refusal::BadEntries(format!("{kind:?} carries entries")));
    }
    Ok(())
}

/// Log indexes stay far below [`INDEX_MAX`]; a larger one is a forgery that would overflow
/// raft-rs's index arithmetic (a snapshot at 2^64 − 1 panics it) or leave a node committed to
/// an index no log will reach.
fn check_indexes(m: &Message) -> Result<(), Refusal> {
    let snapshot = m.get_snapshot().get_metadata().index;
    let fields = [
        ("index", m.index),
        ("commit", m.commit),
        ("reject_hint", m.reject_hint),
        ("request_snapshot", m.request_snapshot),
        ("snapshot index", snapshot),
    ];
    let entries = m.entries.iter().map(|e| ("entry index", e.index));
    for (field, value) in fields.into_iter().chain(entries) {
        if value > INDEX_MAX {
            return Err(Refusal::FieldBeyondRange {
                field,
                value,
                max: INDEX_MAX,
            });
        }
    }
    Ok(())
}

/// Types that raft-rs creates for its own node, or that this kernel never sends across
/// nodes: proposals and transfers start at the leader's host, and read-index requests are
/// made by the leader itself (lease rounds), so none is forwarded.
fn is_local_only(kind: MessageType) -> bool {
    matches!(
        kind,
        MessageType::MsgHup
            | MessageType::MsgBeat
            | MessageType::MsgPropose
            | MessageType::MsgUnreachable
            | MessageType::MsgSnapStatus
            | MessageType::MsgCheckQuorum
            | MessageType::MsgTransferLeader
            | MessageType::MsgReadIndex
            | MessageType::MsgReadIndexResp
    )
}

/// A leader appends consecutive entries after `m.index`, in non-decreasing terms no newer
/// than its own, and only changes of membership it could decode itself. (An append that
/// would rewrite a committed entry never reaches raft-rs's fatal check: raft-rs ignores an
/// append anchored below its commit index.)
fn check_entries(m: &Message) -> Result<(), Refusal> {
    // Only the log's start (index 0) has term 0. raft-rs takes any index past its log to have
    // term 0, so an append anchored there at term 0 would "match" and commit past the log.
    if m.log_term == 0 && m.index != 0 {
        return Err(Refusal::BadEntries(format!(
            "anchored at index {} with term 0: only index 0 has term 0",
            m.index
        )));
    }
    let mut previous_term = m.log_term.max(1);
    for (i, entry) in m.entries.iter().enumerate() {
        let expected = m.index.saturating_add(1 + i as u64);
        if entry.index != expected {
            return Err(Refusal::BadEntries(format!(
                "entry {i} has index {} where {expected} follows",
                entry.index
            )));
        }
        if entry.term < previous_term || entry.term > m.term {
            return Err(Refusal::BadEntries(format!(
                "entry {} has term {}, outside {previous_term} to {}",
                entry.index, entry.term, m.term
            )));
        }
        previous_term = entry.term;
        let decodes = match entry.get_entry_type() {
            EntryType::EntryNormal => true,
            EntryType::EntryConfChange => ConfChange::parse_from_bytes(&entry.data).is_ok(),
            EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&entry.data).is_ok(),
        };
        if !decodes {
            return Err(Refusal::BadEntries(format!(
                "entry {} is a membership change that does not decode",
                entry.index
            )));
        }
    }
    Ok(())
}

/// A snapshot is of a term no newer than its sender's, covers at least one entry, and names
/// a membership raft-rs can restore.
fn check_snapshot(m: &Message) -> Result<(), Refusal> {
    let meta = m.get_snapshot().get_metadata();
    if meta.index == 0 || meta.term == 0 {
        return Err(Refusal::BadSnapshot("it covers no entry".into()));
    }
    if meta.term > m.term {
        return Err(Refusal::BadSnapshot(format!(
            "its term {} is newer than the message's term {}",
            meta.term, m.term
        )));
    }
    check_conf_state(meta.get_conf_state()).map_err(Refusal::BadSnapshot)
}

/// The shapes of membership that raft-rs restores without a fatal error and reproduces
/// exactly (raft-rs `confchange::restore`, then a comparison): at least one voter; no id twice
/// and none zero; a learner is not a voter; in a joint configuration, `learners_next` are
/// outgoing voters that become learners, and outside one there is nothing outgoing.
fn check_conf_state(cs: &ConfState) -> Result<(), String> {
    let (voters, learners) = (cs.get_voters(), cs.get_learners());
    let (outgoing, next) = (cs.get_voters_outgoing(), cs.get_learners_next());
    if voters.is_empty() {
        return Err("its membership has no voter".into());
    }
    for (name, list) in [
        ("voters", voters),
        ("learners", learners),
        ("outgoing voters", outgoing),
        ("next learners", next),
    ] {
        let mut sorted = list.to_vec();
        sorted.sort_unstable();
        if sorted.first() == Some(&0) {
            return Err(format!("its {name} include node 0"));
        }
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(format!("its {name} name a node twice"));
        }
    }
    if let Some(id) = learners
        .iter()
        .find(|l| voters.contains(l) || outgoing.contains(l))
    {
        return Err(format!("node {id} is both a learner and a voter"));
    }
    if let Some(id) = next
        .iter()
        .find(|l| !outgoing.contains(l) || voters.contains(l) || learners.contains(l))
    {
        return Err(format!(
            "node {id} becomes a learner without leaving as a voter"
        ));
    }
    if outgoing.is_empty() && cs.auto_leave {
        return Err("it leaves a joint membership that it is not in".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(voters: &[u64], learners: &[u64], outgoing: &[u64], next: &[u64]) -> ConfState {
        let mut cs = ConfState::default();
        cs.set_voters(voters.to_vec());
        cs.set_learners(learners.to_vec());
        cs.set_voters_outgoing(outgoing.to_vec());
        cs.set_learners_next(next.to_vec());
        cs
    }

    /// Every membership the guard lets through is one raft-rs restores without an error or a
    /// panic (checked against raft-rs itself, by starting a node from each shape), and the
    /// guard lets through every shape an honest leader sends. It may refuse more than raft-rs
    /// would (a voter named twice), never less.
    #[test]
    fn accepted_memberships_are_ones_raft_restores() {
        let honest = [
            conf(&[1, 2, 3], &[], &[], &[]),
            conf(&[1, 2, 3], &[4], &[], &[]),
            conf(&[1, 2, 4], &[], &[1, 2, 3], &[3]),
            conf(&[1, 2], &[], &[1, 2, 3], &[]),
        ];
        let forged = [
            conf(&[], &[1], &[], &[]),
            conf(&[1, 1, 2], &[], &[], &[]),
            conf(&[0, 1], &[], &[], &[]),
            conf(&[1, 2], &[2], &[], &[]),
            conf(&[1, 2], &[], &[], &[3]),
            conf(&[1, 2], &[], &[1, 2, 3], &[2]),
            conf(&[1, 2], &[3], &[1, 2, 3], &[]),
        ];
        for cs in honest.iter().chain(&forged) {
            let restores = std::panic::catch_unwind(|| {
                let storage = raft::storage::MemStorage::new_with_conf_state(cs.clone());
                let config = raft::Config {
                    id: 1,
                    ..Default::default()
                };
                let logger = slog::Logger::root(slog::Discard, slog::o!());
                raft::RawNode::new(&config, storage, &logger).is_ok()
            })
            .unwrap_or(false);
            let verdict = check_conf_state(cs);
            assert!(
                restores || verdict.is_err(),
                "{cs:?} passes but raft-rs fails on it"
            );
            let is_honest = honest.contains(cs);
            assert_eq!(verdict.is_ok(), is_honest, "{cs:?}: {verdict:?}");
        }
    }
}
