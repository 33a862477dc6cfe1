//! `raft::Storage` on the write-ahead generation log: what a Raft replica must not forget.
//!
//! The log holds four kinds of record, replayed in order on open:
//!
//! - `RAFT_IDENTITY`: the cluster and node this directory belongs to, written once at bootstrap,
//!   so that a directory of another cluster (or node) is refused instead of joined;
//! - `RAFT_SNAPSHOT_META`: a snapshot (metadata with its membership, and the host's data); the
//!   log's entries start after it. Bootstrap writes one at index 0 holding the first membership;
//! - `RAFT_ENTRIES`: a run of entries; a run that starts at or before the last index replaces
//!   the suffix from there on (Raft's conflict rule);
//! - `RAFT_HARD_STATE`: term, vote and commit.
//!
//! The writer methods only buffer, in memory: raft-rs reads what they buffered at once.
//! [`RaftStorage::sync`] makes everything durable in one fdatasync, on the calling thread;
//! [`RaftStorage::take_sync`] instead hands out a [`SyncRequest`] that another thread runs (the
//! log is `Sync` and commits in groups), so that the node's thread never waits on the disk. Either
//! way the node sends no message that depends on a record before a sync covering it has
//! returned (DESIGN.md I2). When the log has grown to several times the live state it is
//! rewritten as one snapshot-based segment ([`Wal::compact`]).

use std::path::Path;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::cluster::ClusterId;
use crate::error::{LogError, NodeError};
use crate::limits::RAFT_LOG_COMPACT_MIN_BYTES;
use crate::term::{LogIndex, Term};
use crate::token::NodeId;
use crate::wal::{LogOwner, Position, Record, RecordKind, Wal, WalOptions};

/// The cluster and node a data directory belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The cluster's id, the same on every member.
    pub cluster: ClusterId,
    /// This node's id.
    pub node: NodeId,
}

impl Identity {
    fn encode(self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.cluster.get().to_le_bytes());
        out[8..].copy_from_slice(&self.node.get().to_le_bytes());
        out
    }

    pub(crate) fn decode(record: &Record<'_>) -> Result<Identity, LogError> {
        let bytes: [u8; 16] = record
            .payload
            .try_into()
            .map_err(|_| record.corrupt("identity record is not 16 bytes"))?;
        let cluster = ClusterId::new(u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")));
        let node = u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes"));
        let node = NodeId::new(node).map_err(|_| record.corrupt("identity with node id 0"))?;
        Ok(Identity { cluster, node })
    }
}

/// Raft's durable state, in memory and in the log under it.
#[derive(Debug)]
pub struct RaftStorage {
    /// Shared with the thread that runs [`SyncRequest`]s.
    wal: Arc<Wal>,
    identity: Option<Identity>,
    hard_state: HardState,
    /// The latest snapshot; entries follow its index. Its metadata's conf state is the
    /// membership as of that index (later changes are in the entries, re-applied on restart).
    snapshot: Snapshot,
    entries: Vec<Entry>,
    /// Encoded size of `entries`, kept as they change: the rewrite decision reads it on every
    /// sync, and summing a long log each time would make syncs quadratic.
    entry_bytes: u64,
    /// End of the last buffered record not yet synced nor handed out in a [`SyncRequest`].
    unsynced: Option<Position>,
    /// End of the last record buffered.
    buffered: Position,
}

impl RaftStorage {
    /// Opens (creating it in an empty directory) the Raft log of `identity` in `dir`,
    /// replaying what it holds. A directory of another cluster or node is refused, naming both.
    pub fn open(
        dir: impl AsRef<Path>,
        identity: Identity,
        options: WalOptions,
    ) -> Result<RaftStorage, NodeError> {
        let owner = LogOwner::Node {
            cluster: identity.cluster,
            node: identity.node,
        };
        let mut recorded = None;
        let mut hard_state = HardState::default();
        let mut snapshot = Snapshot::default();
        let mut entries: Vec<Entry> = Vec::new();
        let wal = Wal::open(dir, owner, options, &mut |record| {
            match record.kind {
                RecordKind::RAFT_IDENTITY => {
                    let found = Identity::decode(&record)?;
                    if found != identity {
                        return Err(record.corrupt(format!(
                            "an identity record of node {} of cluster {:#x} in the log of \
                             node {} of cluster {:#x}",
                            found.node, found.cluster, identity.node, identity.cluster
                        )));
                    }
                    recorded = Some(found);
                }
                RecordKind::RAFT_HARD_STATE => {
                    hard_state = HardState::parse_from_bytes(record.payload)
                        .map_err(|e| record.corrupt(format!("hard state: {e}")))?;
                }
                RecordKind::RAFT_SNAPSHOT_META => {
                    let snap = Snapshot::parse_from_bytes(record.payload)
                        .map_err(|e| record.corrupt(format!("snapshot: {e}")))?;
                    install_snapshot(&mut hard_state, &mut snapshot, &mut entries, snap);
                }
                RecordKind::RAFT_ENTRIES => {
                    let run = decode_entries(&record)?;
                    splice(&mut entries, first_after(&snapshot), run)
                        .map_err(|reason| record.corrupt(reason))?;
                }
                other => {
                    return Err(record.corrupt(format!("{other:?} is not a Raft record")));
                }
            }
            Ok(())
        })?;
        let entry_bytes = entries.iter().map(encoded_size).sum();
        Ok(RaftStorage {
            wal: Arc::new(wal),
            identity: recorded,
            hard_state,
            snapshot,
            entries,
            entry_bytes,
            unsynced: None,
            buffered: Position::default(),
        })
    }

    /// Binds a fresh directory to `identity` and, if `voters` is not empty, writes the first
    /// membership as committed entries 1..=n in term 1, one `AddNode` each (etcd's bootstrap):
    /// a node that joins later replays them from the leader's log like any other change. With
    /// no voters the node waits to be added to an existing group. A used directory is checked
    /// instead: one of another cluster or node is refused, naming both.
    pub fn bootstrap(&mut self, identity: Identity, voters: &[NodeId]) -> Result<(), NodeError> {
        match self.identity {
            Some(found) if found == identity => return Ok(()),
            Some(found) => {
                return Err(LogError::WrongCluster {
                    path: self.wal.dir().to_path_buf(),
                    found_cluster: found.cluster.get(),
                    found_node: found.node.get(),
                    expected_cluster: identity.cluster.get(),
                    expected_node: identity.node.get(),
                }
                .into());
            }
            None => {}
        }
        self.push(RecordKind::RAFT_IDENTITY, Term::ZERO, &identity.encode())?;
        if !voters.is_empty() {
            let mut run = Vec::with_capacity(voters.len());
            for (i, voter) in voters.iter().enumerate() {
                let mut cc = ConfChange::default();
                cc.set_change_type(ConfChangeType::AddNode);
                cc.node_id = voter.get();
                let mut entry = Entry::default();
                entry.set_entry_type(EntryType::EntryConfChange);
                entry.index = i as u64 + 1;
                entry.term = 1;
                entry.data = cc.write_to_bytes()?.into();
                run.push(entry);
            }
            self.append(&run)?;
            let hard_state = HardState {
                term: 1,
                commit: voters.len() as u64,
                ..Default::default()
            };
            self.set_hard_state(&hard_state)?;
        }
        self.sync()?;
        self.identity = Some(identity);
        Ok(())
    }

    /// A copy of the latest snapshot.
    pub fn snapshot_clone(&self) -> Snapshot {
        self.snapshot.clone()
    }

    /// The identity this directory was bootstrapped with, if it was.
    pub fn identity(&self) -> Option<Identity> {
        self.identity
    }

    /// The persisted hard state (as last buffered).
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The membership as of the latest snapshot.
    pub fn snapshot_conf_state(&self) -> &ConfState {
        self.snapshot.get_metadata().get_conf_state()
    }

    /// The index of the latest snapshot (0 before any compaction).
    pub fn snapshot_index(&self) -> LogIndex {
        LogIndex::new(self.snapshot.get_metadata().index)
    }

    /// Buffers a run of entries, replacing any suffix they conflict with.
    pub fn append(&mut self, run: &[Entry]) -> Result<(), NodeError> {
        if run.is_empty() {
            return Ok(());
        }
        let first = first_after(&self.snapshot);
        // Validate before buffering, so a refused run leaves memory and log alike.
        check_run(&self.entries, first, run).map_err(NodeError::InvalidRaftLog)?;
        // Encoded in full first, so an entry too large for a record is refused with nothing
        // buffered.
        for (term, payload) in entry_records(run, self.wal_payload_max())? {
            self.push(RecordKind::RAFT_ENTRIES, term, &payload)?;
        }
        let keep = (run[0].index - first.get()) as usize;
        let removed: u64 = self
            .entries
            .get(keep..)
            .unwrap_or(&[])
            .iter()
            .map(encoded_size)
            .sum();
        let added: u64 = run.iter().map(encoded_size).sum();
        splice(&mut self.entries, first, run.to_vec()).map_err(NodeError::InvalidRaftLog)?;
        self.entry_bytes = self.entry_bytes.saturating_sub(removed) + added;
        Ok(())
    }

    /// Buffers a new hard state.
    pub fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), NodeError> {
        if *hard_state == self.hard_state {
            return Ok(());
        }
        self.push(
            RecordKind::RAFT_HARD_STATE,
            Term::new(hard_state.term),
            &hard_state.write_to_bytes()?,
        )?;
        self.hard_state = hard_state.clone();
        Ok(())
    }

    /// Buffers a commit index (the rest of the hard state unchanged).
    pub fn set_commit(&mut self, commit: LogIndex) -> Result<(), NodeError> {
        let mut hard_state = self.hard_state.clone();
        hard_state.commit = commit.get();
        self.set_hard_state(&hard_state)
    }

    /// Buffers a snapshot received from the leader: it replaces every entry it covers.
    pub fn apply_snapshot(&mut self, snap: Snapshot) -> Result<(), NodeError> {
        let index = LogIndex::new(snap.get_metadata().index);
        if index < self.snapshot_index() {
            return Err(NodeError::InvalidRaftLog(format!(
                "snapshot at index {index} is older than the one held, at {}",
                self.snapshot_index()
            )));
        }
        self.push(
            RecordKind::RAFT_SNAPSHOT_META,
            Term::new(snap.get_metadata().term),
            &snap.write_to_bytes()?,
        )?;
        install_snapshot(
            &mut self.hard_state,
            &mut self.snapshot,
            &mut self.entries,
            snap,
        );
        // Rare (a compaction, or a snapshot from the leader): recounting is fine here.
        self.entry_bytes = self.entries.iter().map(encoded_size).sum();
        Ok(())
    }

    /// Log compaction: the host's state up to `index` (applied, so committed) is `data`, and
    /// `conf_state` is the membership as of `index`. Entries up to `index` are dropped; a
    /// follower that needs them gets this snapshot instead.
    pub fn compact(
        &mut self,
        index: LogIndex,
        conf_state: ConfState,
        data: &[u8],
    ) -> Result<(), NodeError> {
        if index <= self.snapshot_index() {
            return Ok(());
        }
        if index.get() > self.hard_state.commit {
            return Err(NodeError::InvalidRaftLog(format!(
                "cannot compact to index {index}: only {} is committed",
                self.hard_state.commit
            )));
        }
        let term = self
            .term_of(index)
            .ok_or_else(|| NodeError::InvalidRaftLog(format!("no entry at index {index}")))?;
        let mut snap = Snapshot::default();
        snap.set_data(data.to_vec().into());
        let meta = snap.mut_metadata();
        meta.index = index.get();
        meta.term = term.get();
        meta.set_conf_state(conf_state);
        self.apply_snapshot(snap)
    }

    /// Makes everything buffered durable. Then, if the log has grown to several times the live
    /// state, rewrites it as that state alone.
    pub fn sync(&mut self) -> Result<(), NodeError> {
        if let Some(end) = self.unsynced.take() {
            self.wal.sync_through(end)?;
        }
        self.rewrite_if_grown()
    }

    /// What must run, on any thread, to make everything buffered so far durable: `None` when
    /// nothing was buffered since the last sync or request. Until the request has run, the
    /// records are only in memory; the caller holds back whatever depends on them.
    pub fn take_sync(&mut self) -> Option<SyncRequest> {
        self.unsynced.take().map(|through| SyncRequest {
            wal: self.wal.clone(),
            through,
        })
    }

    /// Makes the log durable through `through` on this thread (waiting for a sync in progress
    /// on another).
    pub fn sync_through(&self, through: Position) -> Result<(), NodeError> {
        Ok(self.wal.sync_through(through)?)
    }

    /// Rewrites the log as the live state alone if it has grown to several times that. Runs
    /// on the calling thread and waits for a sync in progress: rare (every
    /// `RAFT_LOG_COMPACT_MIN_BYTES` of log at the least).
    pub fn rewrite_if_grown(&mut self) -> Result<(), NodeError> {
        let live = self.wal.live_bytes();
        if live > RAFT_LOG_COMPACT_MIN_BYTES && live > 4 * self.state_bytes() {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Whether anything is buffered and not yet durable (a sync handed out and still
    /// running counts as not durable).
    pub fn has_unsynced(&self) -> bool {
        self.unsynced.is_some() || self.wal.durable() < self.buffered
    }

    /// Bytes in the log since its last rewrite.
    pub fn log_bytes(&self) -> u64 {
        self.wal.live_bytes()
    }

    fn state_bytes(&self) -> u64 {
        self.entry_bytes + self.snapshot.compute_size() as u64 + 256
    }

    /// Rewrites the log as identity, snapshot, hard state and entries.
    fn rewrite(&mut self) -> Result<(), NodeError> {
        let identity = self.identity.map(Identity::encode);
        let snapshot = self.snapshot.write_to_bytes()?;
        let hard_state = self.hard_state.write_to_bytes()?;
        let entries = entry_records(&self.entries, self.wal_payload_max())?;
        Ok(self.wal.compact(&mut |writer| {
            if let Some(identity) = &identity {
                writer.push(RecordKind::RAFT_IDENTITY, 0, identity)?;
            }
            writer.push(RecordKind::RAFT_SNAPSHOT_META, 0, &snapshot)?;
            for (term, payload) in &entries {
                writer.push(RecordKind::RAFT_ENTRIES, term.get(), payload)?;
            }
            // The hard state last: its commit may refer to the entries above.
            writer.push(RecordKind::RAFT_HARD_STATE, 0, &hard_state)
        })?)
    }

    fn wal_payload_max(&self) -> usize {
        self.wal.payload_max()
    }

    /// Buffers a record; the log's generation field carries the term the record is of.
    fn push(&mut self, kind: RecordKind, term: Term, payload: &[u8]) -> Result<(), NodeError> {
        let end = self.wal.append(kind, term.get(), payload)?;
        self.unsynced = Some(end);
        self.buffered = end;
        Ok(())
    }

    fn term_of(&self, index: LogIndex) -> Option<Term> {
        let meta = self.snapshot.get_metadata();
        if index.get() == meta.index {
            return Some(Term::new(meta.term));
        }
        let first = first_after(&self.snapshot);
        let at = index.get().checked_sub(first.get())?;
        self.entries.get(at as usize).map(|e| Term::new(e.term))
    }

    fn last_index(&self) -> LogIndex {
        self.entries
            .last()
            .map_or(self.snapshot_index(), |e| LogIndex::new(e.index))
    }
}

/// A sync to run: everything a [`RaftStorage`] buffered up to [`SyncRequest::through`] becomes
/// durable. `Send`: the node hands it to a thread of its own, so that its own thread keeps
/// ticking while the disk works. Requests from one storage may run in any order and at once
/// (the log commits in groups, and a sync covers everything buffered before it).
#[derive(Debug, Clone)]
pub struct SyncRequest {
    wal: Arc<Wal>,
    through: Position,
}

impl SyncRequest {
    /// The end of the last record this request covers.
    pub fn through(&self) -> Position {
        self.through
    }

    /// Writes and fdatasyncs (waiting for a sync in progress, which may carry these records
    /// too). An error poisons the log: the node must stop (DESIGN.md I9).
    pub fn run(&self) -> Result<Position, NodeError> {
        self.wal.sync_through(self.through)?;
        Ok(self.through)
    }
}

/// Packs entries into `RAFT_ENTRIES` payloads of at most `max` bytes, each a run of
/// length-prefixed encodings, with the term of its last entry. Refuses an entry that cannot fit
/// in a record of its own.
fn entry_records(entries: &[Entry], max: usize) -> Result<Vec<(Term, Vec<u8>)>, NodeError> {
    let mut records = Vec::new();
    let mut chunk = Vec::new();
    let mut term = Term::ZERO;
    for entry in entries {
        let bytes = entry.write_to_bytes()?;
        if 4 + bytes.len() > max {
            return Err(LogError::RecordTooLarge {
                len: bytes.len(),
                max: max - 4,
            }
            .into());
        }
        if !chunk.is_empty() && chunk.len() + 4 + bytes.len() > max {
            records.push((term, std::mem::take(&mut chunk)));
        }
        chunk.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        chunk.extend_from_slice(&bytes);
        term = Term::new(entry.term);
    }
    if !chunk.is_empty() {
        records.push((term, chunk));
    }
    Ok(records)
}

/// An entry's size in a record: its encoding and a 4-byte length.
fn encoded_size(entry: &Entry) -> u64 {
    entry.compute_size() as u64 + 4
}

/// The index of the first entry after a snapshot.
fn first_after(snapshot: &Snapshot) -> LogIndex {
    LogIndex::new(snapshot.get_metadata().index + 1)
}

fn install_snapshot(
    hard_state: &mut HardState,
    snapshot: &mut Snapshot,
    entries: &mut Vec<Entry>,
    snap: Snapshot,
) {
    let index = snap.get_metadata().index;
    // Entries past the snapshot that agree with it stay (a local compaction); otherwise the
    // snapshot replaces the whole log (one received from the leader).
    let keep = entries
        .iter()
        .position(|e| e.index == index)
        .filter(|&at| entries[at].term == snap.get_metadata().term);
    match keep {
        Some(at) => {
            entries.drain(..=at);
        }
        None => entries.clear(),
    }
    hard_state.term = hard_state.term.max(snap.get_metadata().term);
    hard_state.commit = hard_state.commit.max(index);
    *snapshot = snap;
}

/// Why a run of entries cannot follow `entries` (which start at index `first`), if it cannot.
fn check_run(entries: &[Entry], first: LogIndex, run: &[Entry]) -> Result<(), String> {
    let Some(head) = run.first() else {
        return Ok(());
    };
    let first = first.get();
    let last = entries.last().map_or(first - 1, |e| e.index);
    if head.index < first {
        return Err(format!(
            "entries from index {} overwrite the snapshot, which covers up to {}",
            head.index,
            first - 1
        ));
    }
    if head.index > last + 1 {
        return Err(format!(
            "entries from index {} leave a gap after the last index {last}",
            head.index
        ));
    }
    for pair in run.windows(2) {
        if pair[1].index != pair[0].index + 1 {
            return Err(format!(
                "entry indexes jump from {} to {}",
                pair[0].index, pair[1].index
            ));
        }
    }
    Ok(())
}

/// Appends `run` to `entries` (which start at `first`), replacing the suffix it overlaps.
fn splice(entries: &mut Vec<Entry>, first: LogIndex, run: Vec<Entry>) -> Result<(), String> {
    check_run(entries, first, &run)?;
    if let Some(head) = run.first() {
        entries.truncate((head.index - first.get()) as usize);
        entries.extend(run);
    }
    Ok(())
}

pub(crate) fn decode_entries(record: &Record<'_>) -> Result<Vec<Entry>, LogError> {
    let mut rest = record.payload;
    let mut run = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| record.corrupt("truncated entry length"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len {
            return Err(record.corrupt("entry longer than its record"));
        }
        let entry = Entry::parse_from_bytes(&tail[..len])
            .map_err(|e| record.corrupt(format!("entry: {e}")))?;
        run.push(entry);
        rest = &tail[len..];
    }
    Ok(run)
}

fn storage_error(e: StorageError) -> raft::Error {
    raft::Error::Store(e)
}

impl raft::Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.snapshot_conf_state().clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let first = first_after(&self.snapshot).get();
        if low < first {
            return Err(storage_error(StorageError::Compacted));
        }
        if high > self.last_index().get() + 1 || low > high {
            return Err(storage_error(StorageError::Unavailable));
        }
        let mut run = self.entries[(low - first) as usize..(high - first) as usize].to_vec();
        raft::util::limit_size(&mut run, max_size.into());
        Ok(run)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let index = LogIndex::new(index);
        if index < self.snapshot_index() {
            return Err(storage_error(StorageError::Compacted));
        }
        self.term_of(index)
            .map(Term::get)
            .ok_or_else(|| storage_error(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(first_after(&self.snapshot).get())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(RaftStorage::last_index(self).get())
    }

    fn snapshot(&self, _request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // raft-rs refuses to restore a snapshot whose membership does not name the recipient
        // (a node added after the last compaction). Only the host can make a newer one: until
        // it compacts again, the leader keeps asking.
        let cs = self.snapshot_conf_state();
        let names = |ids: &[u64]| ids.contains(&to);
        if !(names(&cs.voters)
            || names(&cs.learners)
            || names(&cs.voters_outgoing)
            || names(&cs.learners_next))
        {
            return Err(storage_error(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(self.snapshot.clone())
    }
}
