//! One Raft member as a deterministic state machine: no thread, no clock of its own. Every call
//! takes the current instant; [`Replica::process_async`] buffers what raft-rs hands out and
//! returns what may leave the node now, with the sync that must run before the rest may;
//! [`Replica::persisted`] reports that sync done. The threaded [`crate::node::Node`] runs the
//! syncs on a thread of its own ([`crate::node::Syncer`]); test harnesses and the simulator
//! call [`Replica::process`], which runs each sync at once, step by step on virtual clocks.
//!
//! The order of operations is the safety argument:
//! 1. leadership changes are applied first, so a lease is revoked before any message of the
//!    same step (a vote for a successor, say) can leave; a message held for a sync leaves
//!    later still;
//! 2. each Ready's entries, hard state and snapshot are buffered in the log (where raft-rs can
//!    read them back at once) before `advance_append_async`. The messages that depend on them,
//!    raft-rs's persisted messages (votes, append and heartbeat responses: everything a
//!    follower or candidate sends), are held in Ready order and leave only once a sync that
//!    covers that Ready's records has *returned* (I2), and only then is raft-rs told
//!    (`on_persist_ready`); a Ready that needs no sync of its own (a commit index alone)
//!    waits behind the ones before it. So a follower's acknowledgement, the one a leader's lease
//!    round counts, never leaves before what it acknowledges (the term among it) is durable;
//!    the lease arithmetic is unchanged;
//! 3. a leader's own appends and heartbeats leave at once (raft-rs's `messages()`; Raft thesis
//!    10.2.1): its followers sync while it does. raft-rs counts the leader's own entries
//!    toward a commit only once they are persisted here, so nothing commits on a quorum that
//!    includes an undurable copy, and committed entries are handed out only up to what is
//!    durable here;
//! 4. leadership is reported only after a quorum acknowledged a heartbeat round sent in this
//!    term, which raft-rs serves only once an entry of the term is committed (I4); the lease
//!    runs from that round's send time (I3). The rounds' bookkeeping and the extension are in
//!    `lease/rounds.rs`; whether an acknowledged round still counts is decided here.
//!
//! A node becomes leader only after its vote requests left, which waited for every earlier
//! Ready to be durable, so raft-rs's rule that a new leader holds nothing unpersisted is kept.
//! A sole voter wins on its own vote with no message: it does not tick while a sync of its log
//! is in flight. Should a node ever reach leadership otherwise, the log is synced on the spot.

use std::collections::{BTreeMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::{ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType};
use raft::{RawNode, ReadState, SnapshotStatus, StateRole};

use crate::error::NodeError;
use crate::lease::Timing;
use crate::lease::rounds::{self, Rounds};
use crate::limits::{APPEND_BYTES_MAX, APPENDS_IN_FLIGHT_MAX, REFUSAL_LOGS_MAX};
use crate::node::config::NodeConfig;
use crate::node::event::{Applied, Event, Leadership, LostReason};
use crate::node::membership::{self, MembershipChange};
use crate::node::status::{Role, Status};
use crate::node::step_guard::{self, Refusal};
use crate::planted::{self, PlantedBug};
use crate::raft_storage::{Identity, RaftStorage, SyncRequest};
use crate::term::{LogIndex, Term};
use crate::time::Instant;
use crate::token::{NodeId, Token};
use crate::wal::Position;

/// A host's handle on one proposal, echoed back when it is resolved.
pub type ProposalId = u64;

/// What one step produced: to send, to deliver, to report.
#[derive(Debug, Default)]
pub struct Output {
    /// Messages for peers, in order. Everything they depend on is already durable.
    pub messages: Vec<Message>,
    /// Committed log items for the host, in index order.
    pub applied: Vec<Applied>,
    /// Events, in order.
    pub events: Vec<Event>,
    /// Proposals resolved: committed at an index, or lost.
    pub resolved: Vec<(ProposalId, Result<LogIndex, NodeError>)>,
    /// Peer addresses learnt from membership changes (`None`: the peer was removed).
    pub peers: Vec<(NodeId, Option<String>)>,
}

impl Output {
    /// Appends `other` after what this holds.
    pub fn merge(&mut self, other: Output) {
        let Output {
            messages,
            applied,
            events,
            resolved,
            peers,
        } = other;
        self.messages.extend(messages);
        self.applied.extend(applied);
        self.events.extend(events);
        self.resolved.extend(resolved);
        self.peers.extend(peers);
    }

    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.applied.is_empty()
            && self.events.is_empty()
            && self.resolved.is_empty()
            && self.peers.is_empty()
    }
}

/// One Raft member. See the module documentation.
pub struct Replica {
    raw: RawNode<RaftStorage>,
    id: NodeId,
    timing: Timing,
    /// Votes are refused until then (I3's second trap: a restarted node forgot whom it heard).
    votes_refused_until: Instant,
    /// The lease's heartbeat rounds in flight (`lease/rounds.rs`).
    rounds: Rounds,
    /// The lease: usable leadership, until its deadline.
    lease: Option<Leadership>,
    /// A term in which the lease was revoked for good (a transfer or step-down began).
    revoked_term: Option<Term>,
    /// Send time of the latest round a quorum acknowledged (leader), or the last time the
    /// leader was heard (follower).
    last_contact: Option<Instant>,
    reported_leader: (Option<NodeId>, Term),
    /// Membership as applied, and its history since the snapshot (for compaction).
    conf: ConfState,
    conf_history: Vec<(LogIndex, ConfState)>,
    /// Proposals awaiting their commit: index → the term they were proposed in, and their id.
    pending: BTreeMap<LogIndex, (Term, ProposalId)>,
    /// Snapshots sent and not yet acknowledged: peer → when.
    snapshots_sent: BTreeMap<u64, Instant>,
    removed: bool,
    /// Peer messages refused at the step boundary (DESIGN.md I8), and the latest reason.
    refused: u64,
    last_refusal: Option<String>,
    /// Peers whose refusal was logged already.
    refusals_logged: Vec<u64>,
    /// Readies whose persisted messages wait for a sync, in order (I2).
    unpersisted: VecDeque<Unpersisted>,
    /// The end of the furthest record handed out to be synced.
    buffered: Position,
    /// The log is durable before this position (as reported to [`Replica::persisted`]).
    durable: Position,
    /// The sync the next `process_async` returns.
    sync: Option<SyncRequest>,
    /// Whether raft-rs's latest Ready was taken as leader.
    ready_as_leader: bool,
    /// The index through which the host was handed the log (entries, or a snapshot).
    applied_through: LogIndex,
    out: Output,
}

/// A Ready whose persisted messages wait until the log is durable through `through`.
#[derive(Debug)]
struct Unpersisted {
    /// raft-rs's number for the Ready, for `on_persist_ready`.
    number: u64,
    /// `None`: it needs no sync of its own (it goes once the Readies before it are durable).
    through: Option<Position>,
    messages: Vec<Message>,
    /// Whether it carried entries or a snapshot.
    log: bool,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id)
            .field("term", &self.raw.raft.term)
            .field("role", &self.raw.raft.state)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Opens the node's log, binds it to the cluster (or checks it belongs to it), and starts
    /// the Raft state machine at `now`. The first output holds the snapshot to restore and the
    /// committed entries after it.
    pub fn open(config: &NodeConfig, now: Instant) -> Result<Replica, NodeError> {
        config.validate()?;
        let identity = Identity {
            cluster: config.cluster,
            node: config.id,
        };
        let mut storage = RaftStorage::open(&config.data_dir, identity, config.wal.clone())?;
        storage.bootstrap(identity, &config.voters)?;
        let snapshot = storage.snapshot_clone();
        let conf = storage.snapshot_conf_state().clone();
        let applied = storage.snapshot_index();
        let tie_breaker = config.tie_breaker.clone();
        let priority = catch_unwind(AssertUnwindSafe(|| {
            tie_breaker.election_priority(config.id)
        }))
        .unwrap_or(0);
        let raft_config = raft::Config {
            id: config.id.get(),
            election_tick: config.timing.election_tick,
            heartbeat_tick: config.timing.heartbeat_tick,
            applied: applied.get(),
            check_quorum: true,
            pre_vote: true,
            priority,
            max_size_per_msg: APPEND_BYTES_MAX,
            max_inflight_msgs: APPENDS_IN_FLIGHT_MAX,
            ..Default::default()
        };
        raft_config.validate()?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&raft_config, storage, &logger)?;
        let mut replica = Replica {
            raw,
            id: config.id,
            timing: config.timing,
            votes_refused_until: now.saturating_add(config.timing.election_timeout()),
            rounds: Rounds::default(),
            lease: None,
            revoked_term: None,
            last_contact: None,
            reported_leader: (None, Term::ZERO),
            conf_history: vec![(applied, conf.clone())],
            conf,
            pending: BTreeMap::new(),
            snapshots_sent: BTreeMap::new(),
            removed: false,
            refused: 0,
            last_refusal: None,
            refusals_logged: Vec::new(),
            unpersisted: VecDeque::new(),
            buffered: Position::default(),
            durable: Position::default(),
            sync: None,
            ready_as_leader: false,
            applied_through: applied,
            out: Output::default(),
        };
        replica.out.applied.push(Applied::Snapshot {
            index: applied,
            term: Term::new(snapshot.get_metadata().term),
            data: snapshot.get_data().to_vec(),
        });
        Ok(replica)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The timing this node runs with.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// Whether this node was removed from the membership (it then takes no part).
    pub fn is_removed(&self) -> bool {
        self.removed
    }

    /// Usable leadership at `now` (I4): `None` unless the lease holds at `now`.
    pub fn leadership(&self, now: Instant) -> Option<Leadership> {
        self.lease
            .filter(|l| now < l.lease_deadline || planted::active(PlantedBug::LeaseIgnored))
    }

    /// The term.
    pub fn term(&self) -> Term {
        Term::new(self.raw.raft.term)
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        NodeId::new(self.raw.raft.leader_id).ok()
    }

    /// Ends the lease if it lapsed by `now`. Called first on every wake-up, so a node that was
    /// paused learns it lost leadership before it does anything else.
    pub fn expire(&mut self, now: Instant) {
        if let Some(lease) = self.lease
            && now >= lease.lease_deadline
            && !planted::active(PlantedBug::LeaseIgnored)
        {
            self.lose(LostReason::LeaseExpired);
        }
    }

    /// One Raft tick. The leader also starts a lease round every heartbeat interval.
    pub fn tick(&mut self, now: Instant) {
        self.expire(now);
        if self.removed {
            return;
        }
        // A node whose own vote is a quorum becomes leader inside this tick, and raft-rs then
        // requires its whole log persisted: it waits for its syncs before campaigning.
        if !self.alone_would_lead() {
            self.raw.tick();
        }
        self.retry_snapshots(now);
        if self.rounds.tick(self.timing.heartbeat_tick) {
            self.start_round(now);
        }
    }

    /// Whether this node, not leading, would win an election on its own vote while a sync of
    /// entries or a snapshot is in flight (a group shrunk to this one voter).
    fn alone_would_lead(&self) -> bool {
        self.raw.raft.state != StateRole::Leader
            && self.unpersisted.iter().any(|u| u.log)
            && self
                .raw
                .raft
                .prs()
                .has_quorum(&std::iter::once(self.id.get()).collect())
    }

    /// raft-rs waits for the host to report how a snapshot went before it sends that peer
    /// anything else; a snapshot (or its answer) lost on the way would stall the peer for as
    /// long as this node leads. So a snapshot unanswered for an election timeout is reported
    /// failed, and raft-rs probes the peer again (and sends a new snapshot if it needs one).
    fn retry_snapshots(&mut self, now: Instant) {
        if self.snapshots_sent.is_empty() {
            return;
        }
        let timeout = self.timing.election_timeout();
        let prs = self.raw.raft.prs();
        let mut failed = Vec::new();
        self.snapshots_sent.retain(|&peer, &mut sent| {
            let waiting = prs
                .get(peer)
                .is_some_and(|p| p.state == raft::ProgressState::Snapshot);
            if waiting && now.saturating_duration_since(sent) >= timeout {
                failed.push(peer);
                return false;
            }
            waiting
        });
        for peer in failed {
            self.raw.report_snapshot(peer, SnapshotStatus::Failure);
        }
    }

    /// A message from a peer. A message no honest member sends is refused before raft-rs
    /// sees it (see [`step_guard`]): counted, logged once per peer, and otherwise ignored. An
    /// error means this node's own log failed, never that the message was bad.
    pub fn step(&mut self, message: Message, now: Instant) -> Result<(), NodeError> {
        self.expire(now);
        if self.removed {
            return Ok(());
        }
        if let Err(refusal) = step_guard::check(&self.raw.raft, &message) {
            self.refuse(message.from, refusal);
            return Ok(());
        }
        let kind = message.get_msg_type();
        let is_vote = matches!(
            kind,
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        );
        if is_vote && now < self.votes_refused_until && message.context != raft::CAMPAIGN_TRANSFER {
            return Ok(());
        }
        if message.from == self.raw.raft.leader_id
            && message.term == self.raw.raft.term
            && matches!(
                kind,
                MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
            )
        {
            self.last_contact = Some(now);
        }
        let from = message.from;
        match self.raw.step(message) {
            Ok(()) => Ok(()),
            // A message from a node that is not a member, or a stale response: not an error of
            // this node; raft-rs ignores it.
            Err(raft::Error::StepPeerNotFound | raft::Error::StepLocalMsg) => Ok(()),
            // This node's own storage failed: going on could lose what it acknowledged.
            Err(e @ raft::Error::Store(_)) => Err(e.into()),
            Err(e) => {
                self.refuse(from, Refusal::RaftRefused(e.to_string()));
                Ok(())
            }
        }
    }

    /// Peer messages refused so far, and the latest reason.
    pub fn refusals(&self) -> (u64, Option<&str>) {
        (self.refused, self.last_refusal.as_deref())
    }

    fn refuse(&mut self, from: u64, refusal: Refusal) {
        self.refused += 1;
        let reason = format!("refused a message from node {from}: {refusal}");
        if !self.refusals_logged.contains(&from) && self.refusals_logged.len() < REFUSAL_LOGS_MAX {
            self.refusals_logged.push(from);
            log::warn!(
                "fencekit node {}: {reason} (further refusals from node {from} are only counted)",
                self.id
            );
        } else {
            log::debug!("fencekit node {}: {reason}", self.id);
        }
        self.last_refusal = Some(reason);
    }

    /// Proposes `data`; it is resolved (under `id`) once committed, or lost if another
    /// leader's entry takes its index.
    pub fn propose(&mut self, data: Vec<u8>, id: ProposalId) -> Result<LogIndex, NodeError> {
        super::validate_proposal_len(data.len())?;
        self.require_leader()?;
        self.raw
            .propose(Vec::new(), data)
            .map_err(|e| self.refusal(e))?;
        Ok(self.track(id))
    }

    /// Proposes every item of `batch` at once: one raft-rs proposal, so the batch is appended
    /// in one Ready, made durable by one sync, and replicated in one append per follower.
    /// Each item is resolved under its id, as [`Replica::propose`]'s are. Returns the index of
    /// the first. All or nothing: an item over [`PROPOSAL_MAX`](crate::limits::PROPOSAL_MAX),
    /// a batch over [`PROPOSE_BATCH_MAX`](crate::limits::PROPOSE_BATCH_MAX) items, or a node
    /// that does not lead refuses the whole batch.
    pub fn propose_batch(
        &mut self,
        batch: Vec<(Vec<u8>, ProposalId)>,
    ) -> Result<LogIndex, NodeError> {
        super::validate_batch_len(batch.len())?;
        for (data, _) in &batch {
            super::validate_proposal_len(data.len())?;
        }
        self.require_leader()?;
        let count = batch.len() as u64;
        let mut ids = Vec::with_capacity(batch.len());
        let mut entries = Vec::with_capacity(batch.len());
        for (data, id) in batch {
            entries.push(Entry {
                data: data.into(),
                ..Default::default()
            });
            ids.push(id);
        }
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgPropose);
        m.from = self.id.get();
        m.set_entries(entries.into());
        // What `RawNode::propose` does with one entry; raft-rs appends all or none.
        self.raw.raft.step(m).map_err(|e| self.refusal(e))?;
        let last = self.raw.raft.raft_log.last_index();
        let first = last + 1 - count;
        let term = self.term();
        for (index, id) in (first..=last).zip(ids) {
            self.pending.insert(LogIndex::new(index), (term, id));
        }
        Ok(LogIndex::new(first))
    }

    /// Proposes a membership change (joint consensus when it takes more than one step).
    pub fn change_membership(
        &mut self,
        changes: &[MembershipChange],
        id: ProposalId,
    ) -> Result<LogIndex, NodeError> {
        self.require_leader()?;
        if self.raw.raft.has_pending_conf() {
            return Err(NodeError::Membership(
                "another membership change is still in progress".into(),
            ));
        }
        let me = self.id.get();
        let prs = self.raw.raft.prs();
        let cc: ConfChangeV2 = membership::plan(&self.conf, changes, |v| {
            v == me || prs.get(v).is_some_and(|p| p.recent_active)
        })?;
        self.raw
            .propose_conf_change(Vec::new(), cc)
            .map_err(|e| self.refusal(e))?;
        Ok(self.track(id))
    }

    /// Revokes the lease, then hands leadership to `to` (DESIGN.md I3: the successor is
    /// elected at once, overriding the followers' lease, so the old lease must end first).
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), NodeError> {
        self.require_leader()?;
        if to == self.id {
            return Err(NodeError::Membership(
                "cannot transfer leadership to this node itself".into(),
            ));
        }
        if !self.conf.voters.contains(&to.get()) {
            return Err(NodeError::Membership(format!("node {to} is not a voter")));
        }
        self.revoke(LostReason::Transferring);
        self.raw.transfer_leader(to.get());
        Ok(())
    }

    /// Gives up leadership: revokes the lease and transfers to the voter whose log is most
    /// up to date. Refused when there is no other voter.
    pub fn step_down(&mut self) -> Result<NodeId, NodeError> {
        self.require_leader()?;
        let me = self.id.get();
        let prs = self.raw.raft.prs();
        let best = self
            .conf
            .voters
            .iter()
            .filter(|&&v| v != me)
            .filter_map(|&v| prs.get(v).map(|p| (p.matched, p.recent_active, v)))
            .max()
            .and_then(|(_, _, v)| NodeId::new(v).ok())
            .ok_or_else(|| NodeError::Membership("no other voter to hand leadership to".into()))?;
        self.revoke(LostReason::Transferring);
        self.raw.transfer_leader(best.get());
        Ok(best)
    }

    /// Compacts the log: the host's state as of `index` (at most what was applied) is `data`.
    pub fn compact(&mut self, index: LogIndex, data: &[u8]) -> Result<(), NodeError> {
        // A snapshot from the leader is handed to the host at once but counts as applied only
        // once durable: compacting at it waits for the sync (this call syncs anyway).
        if index > self.applied() && index <= self.applied_through {
            self.flush()?;
        }
        let applied = self.applied();
        if index > applied {
            return Err(NodeError::InvalidRaftLog(format!(
                "cannot compact to index {index}: only {applied} is applied"
            )));
        }
        let conf = self
            .conf_history
            .iter()
            .rev()
            .find(|(at, _)| *at <= index)
            .map(|(_, cs)| cs.clone())
            .ok_or_else(|| {
                NodeError::InvalidRaftLog(format!("index {index} is before the latest snapshot"))
            })?;
        self.raw.mut_store().compact(index, conf.clone(), data)?;
        self.raw.mut_store().sync()?;
        self.conf_history.retain(|(at, _)| *at > index);
        self.conf_history.insert(0, (index, conf));
        Ok(())
    }

    /// Persists and collects everything raft-rs has ready, syncing the log on this thread.
    /// Returns what must leave the node. The deterministic form of [`Replica::process_async`]
    /// (the simulator and the single-threaded harnesses drive this one): every sync it asks
    /// for runs at once, then [`Replica::persisted`] is told, and so on until raft-rs has
    /// nothing more.
    pub fn process(&mut self, now: Instant) -> Result<Output, NodeError> {
        let mut total = Output::default();
        loop {
            let (out, sync) = self.process_async(now)?;
            total.merge(out);
            match sync {
                Some(request) => {
                    let through = request.run()?;
                    self.persisted(through, now)?;
                }
                None => return Ok(total),
            }
        }
    }

    /// Collects everything raft-rs has ready, buffers what must be durable, and returns what
    /// may leave now together with the sync to run ([`SyncRequest::run`], on any thread).
    /// Messages that depend on buffered records (votes, append and heartbeat responses: raft-rs's
    /// persisted messages) are held until [`Replica::persisted`] reports a sync that covers
    /// them; the node keeps ticking, stepping and proposing meanwhile. See the module
    /// documentation for the order of operations.
    pub fn process_async(
        &mut self,
        now: Instant,
    ) -> Result<(Output, Option<SyncRequest>), NodeError> {
        self.expire(now);
        self.release();
        while self.raw.has_ready() {
            self.observe_roles();
            // raft-rs's `ready` asserts that a node that has just become leader holds no entry
            // or snapshot it has not been told is persisted. A node only becomes leader after
            // its vote requests left, which waited for every earlier Ready to be durable, so this
            // does not happen; if it ever did, the log is synced here rather than panicking.
            if self.raw.raft.state == StateRole::Leader
                && !self.ready_as_leader
                && self.unpersisted.iter().any(|u| u.log)
            {
                self.flush()?;
            }
            self.ready_as_leader = self.raw.raft.state == StateRole::Leader;
            let mut ready = self.raw.ready();
            // The leader's own appends and heartbeats may go before its entries are durable
            // (raft-rs counts its own entries toward a commit only once they are).
            self.out.messages.extend(ready.take_messages());

            let log = !ready.snapshot().is_empty() || !ready.entries().is_empty();
            if !ready.snapshot().is_empty() {
                let snapshot = ready.snapshot().clone();
                self.raw.mut_store().apply_snapshot(snapshot.clone())?;
                self.conf = snapshot.get_metadata().get_conf_state().clone();
                let index = LogIndex::new(snapshot.get_metadata().index);
                self.conf_history = vec![(index, self.conf.clone())];
                self.out.applied.push(Applied::Snapshot {
                    index,
                    term: Term::new(snapshot.get_metadata().term),
                    data: snapshot.get_data().to_vec(),
                });
                self.resolve_through(index);
                self.applied_through = self.applied_through.max(index);
            }
            let store = self.raw.mut_store();
            store.append(ready.entries())?;
            if let Some(hs) = ready.hs() {
                store.set_hard_state(hs)?;
            }
            // I2: what this Ready buffered must be durable before any vote or append response
            // of it leaves, and before raft-rs is told it may count these entries as
            // persisted. A Ready whose only change is the commit index needs no sync of its own
            // (raft-rs's `must_sync`): a commit index lost in a crash is learnt again from the
            // leader, so it rides with the next sync.
            let vote_only = ready.entries().is_empty() && ready.snapshot().is_empty();
            let through = if ready.must_sync()
                && !(vote_only && planted::active(PlantedBug::VoteBeforePersist))
            {
                if let Some(request) = store.take_sync() {
                    self.buffered = self.buffered.max(request.through());
                    self.sync = Some(request);
                }
                // Nothing new buffered (a hard state equal to the one stored): what an earlier
                // Ready buffered must still be durable first.
                Some(self.buffered)
            } else {
                None
            };
            self.unpersisted.push_back(Unpersisted {
                number: ready.number(),
                through,
                messages: ready.take_persisted_messages(),
                log,
            });

            // Committed entries (raft-rs hands out only entries durable here too) are applied
            // before `advance`, which tells raft-rs they are: it proposes the leave of a joint
            // configuration from there, and would propose it twice if the enter were not
            // applied yet.
            let committed = ready.take_committed_entries();
            if let Some(last) = committed.last() {
                self.applied_through = self.applied_through.max(LogIndex::new(last.index));
            }
            self.apply(committed)?;
            let read_states = ready.take_read_states();
            self.raw.advance_append_async(ready);
            self.advance_apply();
            self.acknowledged(read_states, now);
            self.observe_roles();
            // A leader that has just committed its first entry starts a round at once rather
            // than a heartbeat later: failover time is what users wait for.
            if self.lease.is_none() && self.rounds.is_empty() {
                self.start_round(now);
            }
            self.release();
        }
        let out = std::mem::take(&mut self.out);
        for m in &out.messages {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.snapshots_sent.insert(m.to, now);
            }
        }
        Ok((out, self.sync.take()))
    }

    /// A sync handed out by [`Replica::process_async`] has run: the log is durable through
    /// `through`. The messages it held are released, and raft-rs is told (it may then commit,
    /// and apply); they come out of the next `process_async`. Reports may come late, twice or
    /// out of order: only the furthest counts.
    pub fn persisted(&mut self, through: Position, now: Instant) -> Result<(), NodeError> {
        self.mark_durable(through)?;
        self.expire(now);
        Ok(())
    }

    fn mark_durable(&mut self, through: Position) -> Result<(), NodeError> {
        self.durable = self.durable.max(through);
        self.release();
        if self.unpersisted.is_empty() {
            // Rare (the log grew to several times the live state): rewritten on this thread.
            self.raw.mut_store().rewrite_if_grown()?;
        }
        Ok(())
    }

    /// Readies still waiting for a sync.
    pub fn unpersisted(&self) -> usize {
        self.unpersisted.len()
    }

    /// Releases, in order, the held messages of every Ready now durable (and of the Readies
    /// that needed no sync of their own behind them), then tells raft-rs.
    fn release(&mut self) {
        let mut last = None;
        while let Some(front) = self.unpersisted.front() {
            if front.through.is_some_and(|t| t > self.durable) {
                break;
            }
            let done = self.unpersisted.pop_front().expect("front");
            self.out.messages.extend(done.messages);
            last = Some(done.number);
        }
        if let Some(number) = last {
            self.raw.on_persist_ready(number);
            self.advance_apply();
        }
    }

    /// Tells raft-rs how far the host has applied: a snapshot counts once it is durable
    /// (raft-rs refuses an applied index beyond what is persisted).
    fn advance_apply(&mut self) {
        let log = &self.raw.raft.raft_log;
        let to = self
            .applied_through
            .get()
            .min(log.committed)
            .min(log.persisted);
        if to > log.applied {
            self.raw.advance_apply_to(to);
        }
    }

    /// Syncs the log on this thread and releases everything held.
    fn flush(&mut self) -> Result<(), NodeError> {
        if let Some(request) = self.raw.mut_store().take_sync() {
            self.buffered = self.buffered.max(request.through());
        }
        // A sync through the furthest record buffered covers every request handed out.
        self.sync = None;
        let through = self.buffered;
        self.raw.mut_store().sync_through(through)?;
        self.mark_durable(through)
    }

    /// Stops taking part: the lease ends and pending proposals fail.
    pub fn shut_down(&mut self) -> Output {
        self.revoke(LostReason::Stopped);
        let pending = std::mem::take(&mut self.pending);
        for (_, (_, id)) in pending {
            self.out.resolved.push((id, Err(NodeError::Stopped)));
        }
        std::mem::take(&mut self.out)
    }

    /// The node's view at `now`.
    pub fn status(&self, now: Instant) -> Status {
        let leadership = self.leadership(now);
        let to_ids = |v: &[u64]| {
            let mut ids: Vec<NodeId> = v.iter().filter_map(|&id| NodeId::new(id).ok()).collect();
            ids.sort_unstable();
            ids
        };
        Status {
            id: self.id,
            term: self.term(),
            role: Role::from_raft(self.raw.raft.state),
            leader: self.leader(),
            leadership,
            lease_remaining: leadership.map(|l| l.lease_deadline.saturating_duration_since(now)),
            commit: LogIndex::new(self.raw.raft.raft_log.committed),
            applied: self.applied(),
            last_quorum_contact: self.last_contact.map(|t| now.saturating_duration_since(t)),
            voters: to_ids(&self.conf.voters),
            learners: to_ids(&self.conf.learners),
            events_dropped: 0,
            refused_messages: self.refused,
            last_refusal: self.last_refusal.clone(),
            failure: None,
            stopped: false,
            at: now,
        }
    }

    /// Replaces raft-rs's own random draw of the election timeout (in ticks, from
    /// `election_tick` to twice that, exclusive), so that a simulator whose only randomness is
    /// its seed replays exactly. raft-rs draws again whenever the role or term changes.
    #[doc(hidden)]
    pub fn set_randomized_election_timeout(&mut self, ticks: usize) {
        let et = self.timing.election_tick;
        self.raw
            .raft
            .set_randomized_election_timeout(ticks.clamp(et, 2 * et - 1));
    }

    /// Raft's view, for tests and checkers.
    pub fn raft(&self) -> &raft::Raft<RaftStorage> {
        &self.raw.raft
    }

    /// Time until the next lease deadline, if leading (for a driver choosing when to wake).
    pub fn lease_remaining(&self, now: Instant) -> Option<Duration> {
        self.leadership(now)
            .map(|l| l.lease_deadline.saturating_duration_since(now))
    }

    /// Remembers the entry just proposed (the last in the log) under `id`, to resolve it when
    /// its index commits.
    fn track(&mut self, id: ProposalId) -> LogIndex {
        let index = LogIndex::new(self.raw.raft.raft_log.last_index());
        self.pending.insert(index, (self.term(), id));
        index
    }

    /// The index raft-rs was last told the host applied.
    fn applied(&self) -> LogIndex {
        LogIndex::new(self.raw.raft.raft_log.applied)
    }

    fn require_leader(&self) -> Result<(), NodeError> {
        if self.removed {
            return Err(NodeError::Stopped);
        }
        if self.raw.raft.state != StateRole::Leader {
            return Err(NodeError::NotLeader {
                hint: self.leader().map(NodeId::get),
            });
        }
        Ok(())
    }

    fn refusal(&self, e: raft::Error) -> NodeError {
        match e {
            raft::Error::ProposalDropped => match self.raw.raft.lead_transferee {
                Some(to) => NodeError::NotLeader { hint: Some(to) },
                None => NodeError::ProposalDropped,
            },
            other => other.into(),
        }
    }

    /// Starts a lease round if this node leads, has committed in its term, and is not handing
    /// leadership over.
    fn start_round(&mut self, now: Instant) {
        let raft = &self.raw.raft;
        let term = Term::new(raft.term);
        if raft.state != StateRole::Leader
            || !raft.commit_to_current_term()
            || raft.lead_transferee.is_some()
            || self.revoked_term == Some(term)
        {
            return;
        }
        // Safe read index: raft-rs broadcasts a heartbeat carrying the context and reports it
        // back (a ReadState) once a quorum has answered that very heartbeat.
        let context = self.rounds.start(term, now);
        self.raw.read_index(context);
    }

    /// Rounds a quorum acknowledged extend the lease from their send time, if this node still
    /// leads in the round's term with no transfer begun.
    fn acknowledged(&mut self, read_states: Vec<ReadState>, now: Instant) {
        let term = self.term();
        for state in read_states {
            // This round and every older one are settled.
            let Some(round) = self.rounds.settle(&state.request_ctx) else {
                continue;
            };
            if round.term != term
                || self.raw.raft.state != StateRole::Leader
                || self.revoked_term == Some(term)
                || self.raw.raft.lead_transferee.is_some()
            {
                continue;
            }
            self.last_contact = Some(self.last_contact.map_or(round.sent, |t| t.max(round.sent)));
            let Some(generation) = round.term.generation() else {
                continue;
            };
            let token = Token::new(generation, self.id);
            if let Some(elected) = rounds::extend(&mut self.lease, round, token, &self.timing, now)
            {
                self.out.events.push(elected);
            }
        }
    }

    /// Applies committed entries: the host's proposals, membership changes, and resolutions.
    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), NodeError> {
        for entry in entries {
            let (index, term) = (LogIndex::new(entry.index), Term::new(entry.term));
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    if !entry.data.is_empty() {
                        self.out.applied.push(Applied::Entry {
                            index,
                            term,
                            data: entry.data.to_vec(),
                        });
                    }
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(&entry)?;
                }
            }
            self.resolve(index, term);
        }
        Ok(())
    }

    fn apply_conf_change(&mut self, entry: &Entry) -> Result<(), NodeError> {
        // This node proposes only V2 changes; V1 is applied as raft-rs defines it.
        let (cs, context) = if entry.get_entry_type() == EntryType::EntryConfChangeV2 {
            let cc = ConfChangeV2::parse_from_bytes(&entry.data)?;
            (self.raw.apply_conf_change(&cc)?, cc.context)
        } else {
            let cc = raft::eraftpb::ConfChange::parse_from_bytes(&entry.data)?;
            (self.raw.apply_conf_change(&cc)?, cc.context)
        };
        for (id, address) in membership::addresses(&context) {
            self.out.peers.push((id, Some(address)));
        }
        let members = |cs: &ConfState| -> Vec<u64> {
            let mut all: Vec<u64> = cs.voters.iter().chain(&cs.learners).copied().collect();
            all.extend(cs.voters_outgoing.iter().chain(&cs.learners_next));
            all.sort_unstable();
            all.dedup();
            all
        };
        let before = members(&self.conf);
        let after = members(&cs);
        for gone in before.iter().filter(|id| !after.contains(id)) {
            if let Ok(id) = NodeId::new(*gone) {
                self.out.peers.push((id, None));
            }
        }
        let ids = |v: &[u64]| v.iter().filter_map(|&id| NodeId::new(id).ok()).collect();
        self.out.events.push(Event::MembershipChanged {
            voters: ids(&cs.voters),
            learners: ids(&cs.learners),
        });
        self.conf = cs.clone();
        self.conf_history.push((LogIndex::new(entry.index), cs));
        // A member that a change leaves out is removed; a node not yet added (bootstrap entries
        // naming others first, or a node joining) is not.
        if before.contains(&self.id.get()) && !after.contains(&self.id.get()) {
            self.removed = true;
            self.revoke(LostReason::Removed);
        }
        Ok(())
    }

    fn resolve(&mut self, index: LogIndex, term: Term) {
        // Everything below `index` was committed (or lost) already.
        self.resolve_through(index.prev());
        if let Some((proposed_in, id)) = self.pending.remove(&index) {
            let result = if proposed_in == term {
                Ok(index)
            } else {
                Err(NodeError::NotLeader {
                    hint: self.leader().map(NodeId::get),
                })
            };
            self.out.resolved.push((id, result));
        }
    }

    /// Proposals at or below `index` that were not resolved were overtaken (by a snapshot, or
    /// another leader's log): their outcome is not ours to know.
    fn resolve_through(&mut self, index: LogIndex) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > index {
                break;
            }
            let (_, (_, id)) = entry.remove_entry();
            self.out.resolved.push((
                id,
                Err(NodeError::NotLeader {
                    hint: self.leader().map(NodeId::get),
                }),
            ));
        }
    }

    /// Notices leader and role changes; a lost Raft leadership ends the lease.
    fn observe_roles(&mut self) {
        let raft = &self.raw.raft;
        let leader = NodeId::new(raft.leader_id).ok();
        let (term, is_leader) = (Term::new(raft.term), raft.state == StateRole::Leader);
        let transferring = raft.lead_transferee.is_some();
        if self
            .lease
            .is_some_and(|l| !is_leader || Some(l.token.generation) != term.generation())
        {
            self.lose(LostReason::SteppedDown);
        }
        if !is_leader {
            self.rounds.clear();
        }
        // Elections bump the term with no leader known; only a leader (new, or gone) is news.
        let (reported, reported_term) = self.reported_leader;
        if leader != reported || (leader.is_some() && term != reported_term) {
            self.out.events.push(Event::LeaderChanged { leader, term });
        }
        self.reported_leader = (leader, term);
        // A transfer that raft-rs gave up on leaves this node leader without a lease for the
        // rest of the term: step down, so that a new term (and a lease) can follow.
        if is_leader && !transferring && self.revoked_term == Some(term) {
            self.raw.raft.become_follower(term.get(), raft::INVALID_ID);
        }
    }

    /// Ends the lease for good in this term.
    fn revoke(&mut self, reason: LostReason) {
        self.revoked_term = Some(self.term());
        self.rounds.clear();
        self.lose(reason);
    }

    fn lose(&mut self, reason: LostReason) {
        if let Some(lease) = self.lease.take() {
            self.out.events.push(Event::Lost {
                token: lease.token,
                reason,
            });
        }
    }
}
