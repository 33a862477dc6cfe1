//! `raft::Storage` on the log: what was persisted is exactly what a reopen finds.

use fencekit::raft_storage::{Identity, RaftStorage};
use fencekit::{ClusterId, FenceFault, LogError, LogIndex, NodeError, NodeId, WalOptions};
use raft::Storage as _;
use raft::eraftpb::{ConfState, Entry, HardState};

fn entry(index: u64, term: u64, data: &str) -> Entry {
    Entry {
        index,
        term,
        data: data.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

fn identity(cluster: u64, node: u64) -> Identity {
    Identity {
        cluster: ClusterId::new(cluster),
        node: NodeId::new(node).unwrap(),
    }
}

fn open(dir: &std::path::Path) -> RaftStorage {
    open_as(dir, identity(7, 1)).unwrap()
}

fn open_as(dir: &std::path::Path, identity: Identity) -> Result<RaftStorage, NodeError> {
    RaftStorage::open(
        dir,
        identity,
        WalOptions {
            segment_size: 1 << 16,
            ..WalOptions::default()
        },
    )
}

fn voters() -> Vec<NodeId> {
    vec![NodeId::new(1).unwrap(), NodeId::new(2).unwrap()]
}

#[test]
fn reopen_recovers_hard_state_entries_and_membership() {
    let dir = tempfile::tempdir().unwrap();
    let mut hs = HardState::default();
    {
        let mut s = open(dir.path());
        s.bootstrap(identity(7, 1), &voters()).unwrap();
        // The bootstrap wrote the membership as entries 1 and 2.
        s.append(&[entry(3, 2, "a"), entry(4, 2, "b"), entry(5, 2, "c")])
            .unwrap();
        // A new leader's entries replace the conflicting suffix from index 4.
        s.append(&[entry(4, 3, "B"), entry(5, 3, "C"), entry(6, 3, "D")])
            .unwrap();
        hs.term = 3;
        hs.vote = 2;
        hs.commit = 4;
        s.set_hard_state(&hs).unwrap();
        s.sync().unwrap();
    }
    let s = open(dir.path());
    assert_eq!(s.identity(), Some(identity(7, 1)));
    let state = s.initial_state().unwrap();
    assert_eq!(state.hard_state, hs);
    // The membership is in the log, re-applied by raft on start.
    assert!(state.conf_state.voters.is_empty());
    assert_eq!(s.first_index().unwrap(), 1);
    assert_eq!(s.last_index().unwrap(), 6);
    let got = s
        .entries(3, 7, None, raft::GetEntriesContext::empty(false))
        .unwrap();
    let data: Vec<&[u8]> = got.iter().map(|e| &e.data[..]).collect();
    assert_eq!(data, vec![&b"a"[..], b"B", b"C", b"D"]);
    assert_eq!(s.term(1).unwrap(), 1);
    assert_eq!(s.term(4).unwrap(), 3);
    assert!(s.term(9).is_err());
}

#[test]
fn unsynced_records_are_not_claimed_and_synced_ones_survive_many_segments() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path());
        s.bootstrap(identity(7, 1), &voters()).unwrap();
        let big = "x".repeat(3000);
        for i in 2..200 {
            s.append(&[entry(i, 2, &big)]).unwrap();
        }
        assert!(s.has_unsynced());
        s.sync().unwrap();
        assert!(!s.has_unsynced());
    }
    let s = open(dir.path());
    assert_eq!(s.last_index().unwrap(), 199);
}

#[test]
fn compaction_keeps_what_follows_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path());
        s.bootstrap(identity(7, 1), &voters()).unwrap();
        s.append(&[entry(3, 2, "a"), entry(4, 2, "b"), entry(5, 2, "c")])
            .unwrap();
        let hs = HardState {
            term: 2,
            commit: 4,
            ..Default::default()
        };
        s.set_hard_state(&hs).unwrap();
        let cs = ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        };
        s.compact(LogIndex::new(4), cs, b"host-state").unwrap();
        // Past the commit index is refused and changes nothing.
        assert!(matches!(
            s.compact(LogIndex::new(5), ConfState::default(), b""),
            Err(NodeError::InvalidRaftLog(_))
        ));
        s.sync().unwrap();
    }
    let s = open(dir.path());
    assert_eq!(s.first_index().unwrap(), 5);
    assert_eq!(s.last_index().unwrap(), 5);
    assert_eq!(s.term(4).unwrap(), 2);
    assert!(matches!(
        s.term(3),
        Err(raft::Error::Store(raft::StorageError::Compacted))
    ));
    let snap = s.snapshot(0, 2).unwrap();
    assert_eq!(&snap.data[..], b"host-state");
    assert_eq!(snap.get_metadata().get_conf_state().voters, vec![1, 2, 3]);
}

#[test]
fn a_directory_of_another_cluster_or_node_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path());
        s.bootstrap(identity(7, 1), &voters()).unwrap();
    }
    let err = open_as(dir.path(), identity(8, 1)).unwrap_err();
    assert!(
        matches!(
            err,
            NodeError::Log(LogError::WrongCluster {
                found_cluster: 7,
                expected_cluster: 8,
                ..
            })
        ),
        "{err}"
    );
    let err = open_as(dir.path(), identity(7, 2)).unwrap_err();
    assert!(err.to_string().contains("node 1"), "{err}");
    // A fence refuses a node's directory, and the node still opens it.
    let err = fencekit::Fence::open(dir.path(), Default::default()).unwrap_err();
    assert!(
        matches!(err.fault(), FenceFault::Log(LogError::WrongOwner { .. })),
        "{err}"
    );
    let mut s = open(dir.path());
    s.bootstrap(identity(7, 1), &voters()).unwrap();
}

#[test]
fn entries_that_leave_a_gap_or_overwrite_the_snapshot_are_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.bootstrap(identity(7, 1), &voters()).unwrap();
    s.append(&[entry(3, 2, "a")]).unwrap();
    let err = s.append(&[entry(5, 2, "gap")]).unwrap_err();
    assert!(err.to_string().contains("gap"), "{err}");
    let err = s.append(&[entry(3, 2, "a"), entry(5, 2, "b")]).unwrap_err();
    assert!(err.to_string().contains("jump"), "{err}");
    s.sync().unwrap();
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.last_index().unwrap(), 3);
}
