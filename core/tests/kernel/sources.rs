//! Token sources: a resource takes tokens from one source, refuses every other, and moves to
//! another only by an operator's durable rebase.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fencekit::wal::LogOwner;
use fencekit::{
    ClusterId, Fence, FenceError, FenceFault, LogError, RecordKind, Source, Token, Verdict, Wal,
};

use crate::support::{small_fence, small_wal};

fn t(generation: u64, holder: u64) -> Token {
    Token::from_parts(generation, holder).unwrap()
}

/// etcd tokens: a lease id as holder, which takes the wide mark.
const LEASE: u64 = 0x694d_8f0a_2c11_e703;

#[test]
fn a_token_from_another_source_is_refused_whatever_its_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let fence = Fence::open(dir.path(), small_fence()).unwrap();
    let old_etcd = fence.source_id(&Source::etcd_cluster(0xa)).unwrap();
    let new_etcd = fence.source_id(&Source::etcd_cluster(0xb)).unwrap();
    let id = fence.register(b"jobs").unwrap();
    for (holder, generation) in [(LEASE, 1_000_000), (3, 7)] {
        let id = fence.register(format!("jobs/{holder}").as_bytes()).unwrap();
        let mark = t(generation, holder);
        assert!(fence.check_from(id, old_etcd, mark).unwrap().is_accepted());
        // The same numbers from another source, the unnamed one included: the hot path must
        // not take them for the mark.
        for other in [new_etcd, fencekit::SourceId::UNNAMED] {
            for token in [mark, t(generation + 1, holder), t(1, 1)] {
                assert_eq!(
                    fence.check_from(id, other, token).unwrap(),
                    Verdict::ForeignSource { bound: old_etcd }
                );
            }
        }
        assert_eq!(
            fence.check_from(id, old_etcd, mark).unwrap(),
            Verdict::Accepted
        );
        assert_eq!(fence.counters(id).unwrap().foreign, 6);
    }
    // An unnamed check binds the unnamed source, as every fence did before sources.
    assert!(fence.check(id, t(4, 1)).unwrap().is_accepted());
    assert_eq!(fence.bound_source(id).unwrap(), Some(Source::UNNAMED));
    assert_eq!(
        fence.check_from(id, old_etcd, t(5, 1)).unwrap(),
        Verdict::ForeignSource {
            bound: fencekit::SourceId::UNNAMED
        }
    );
}

#[test]
fn a_re_created_coordinator_is_let_back_in_only_by_a_rebase_that_lasts() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (Source::etcd_cluster(0xa), Source::etcd_cluster(0xb));
    {
        let fence = Fence::open(dir.path(), small_fence()).unwrap();
        let old_id = fence.source_id(&old).unwrap();
        let id = fence.register(b"scheduler").unwrap();
        assert!(
            fence
                .check_from(id, old_id, t(1_000_000, LEASE))
                .unwrap()
                .is_accepted()
        );
        let rebase = fence.rebase(b"scheduler", &new, "alice (CHG-7)").unwrap();
        assert_eq!(rebase.from, Some(old.clone()));
        assert_eq!(rebase.cleared_mark, Some(t(1_000_000, LEASE)));
        // The re-created cluster's revisions restart low, and are taken.
        let new_id = fence.source_id(&new).unwrap();
        assert_eq!(
            fence.check_from(id, new_id, t(5, 77)).unwrap(),
            Verdict::Advanced { previous: None }
        );
        // The old cluster's zombie, however high its revision, is refused.
        assert!(matches!(
            fence.check_from(id, old_id, t(2_000_000, LEASE)).unwrap(),
            Verdict::ForeignSource { .. }
        ));
    }
    for compact in [false, true] {
        let fence = Fence::open(dir.path(), small_fence()).unwrap();
        if compact {
            fence.compact().unwrap();
        }
        let id = fence.lookup(b"scheduler").unwrap();
        assert_eq!(fence.bound_source(id).unwrap(), Some(new.clone()));
        assert_eq!(fence.mark(id).unwrap(), Some(t(5, 77)));
        let rebase = fence.last_rebase(id).unwrap().expect("the rebase is kept");
        assert_eq!(
            (rebase.by.as_str(), rebase.to.clone()),
            ("alice (CHG-7)", new.clone())
        );
        let old_id = fence.source_id(&old).unwrap();
        assert!(matches!(
            fence.check_from(id, old_id, t(2_000_000, LEASE)).unwrap(),
            Verdict::ForeignSource { .. }
        ));
        let new_id = fence.source_id(&new).unwrap();
        assert!(matches!(
            fence.check_from(id, new_id, t(4, 1)).unwrap(),
            Verdict::Stale { .. }
        ));
    }
}

#[test]
fn a_rebase_to_the_same_source_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = Source::etcd_cluster(0xa);
    {
        let fence = Fence::open(dir.path(), small_fence()).unwrap();
        let sid = fence.source_id(&source).unwrap();
        let id = fence.register(b"k").unwrap();
        fence.check_from(id, sid, t(9, 2)).unwrap();
        let e = fence.rebase(b"k", &source, "bob").unwrap_err();
        assert!(matches!(e.fault(), FenceFault::RebaseRefused(_)), "{e}");
        assert!(e.to_string().contains("new source"), "{e}");
        assert!(matches!(
            fence
                .rebase(b"k", &Source::etcd_cluster(0xb), "\n")
                .map_err(FenceError::into_fault),
            Err(FenceFault::RebaseRefused(_))
        ));
        assert!(matches!(
            fence
                .rebase(b"", &Source::etcd_cluster(0xb), "bob")
                .map_err(FenceError::into_fault),
            Err(FenceFault::InvalidKey { len: 0 })
        ));
    }
    let fence = Fence::open(dir.path(), small_fence()).unwrap();
    let id = fence.lookup(b"k").unwrap();
    assert_eq!(fence.mark(id).unwrap(), Some(t(9, 2)));
    assert_eq!(fence.last_rebase(id).unwrap(), None);
}

/// A to B and back to A: A's numbering goes on where it was, so its old zombies stay out,
/// after reopening and compaction too.
#[test]
fn a_resource_moved_back_to_a_former_source_gets_its_last_mark_back() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Source::etcd_cluster(0xa), Source::etcd_cluster(0xb));
    {
        let fence = Fence::open(dir.path(), small_fence()).unwrap();
        let (a_id, b_id) = (fence.source_id(&a).unwrap(), fence.source_id(&b).unwrap());
        let id = fence.register(b"jobs").unwrap();
        assert!(
            fence
                .check_from(id, a_id, t(1000, LEASE))
                .unwrap()
                .is_accepted()
        );
        fence.rebase(b"jobs", &b, "migrate").unwrap();
        assert!(fence.check_from(id, b_id, t(3, 1)).unwrap().is_accepted());
        let back = fence.rebase(b"jobs", &a, "roll back").unwrap();
        assert_eq!(back.restored_mark, Some(t(1000, LEASE)));
        assert_eq!(back.cleared_mark, Some(t(3, 1)));
        for stale in [t(1, 1), t(999, LEASE)] {
            assert!(matches!(
                fence.check_from(id, a_id, stale).unwrap(),
                Verdict::Stale { .. }
            ));
        }
        assert_eq!(
            fence.check_from(id, a_id, t(1000, LEASE)).unwrap(),
            Verdict::Accepted
        );
        // And forth again: B's mark 3 comes back.
        let forth = fence.rebase(b"jobs", &b, "again").unwrap();
        assert_eq!(forth.restored_mark, Some(t(3, 1)));
        assert!(matches!(
            fence.check_from(id, b_id, t(2, 1)).unwrap(),
            Verdict::Stale { .. }
        ));
        fence.rebase(b"jobs", &a, "and back").unwrap();
    }
    for compact in [false, true] {
        let fence = Fence::open(dir.path(), small_fence()).unwrap();
        if compact {
            fence.compact().unwrap();
        }
        let id = fence.lookup(b"jobs").unwrap();
        let a_id = fence.source_id(&a).unwrap();
        assert_eq!(fence.mark(id).unwrap(), Some(t(1000, LEASE)));
        assert!(matches!(
            fence.check_from(id, a_id, t(999, LEASE)).unwrap(),
            Verdict::Stale { .. }
        ));
        assert_eq!(fence.last_rebase(id).unwrap().unwrap().by, "and back");
    }
}

/// `unnamed` is how plain `check` takes a fencekit group's terms, and `fencekit:<id>` names
/// them: a rebase between the two would clear a mark the terms go on from.
#[test]
fn a_rebase_between_unnamed_and_a_fencekit_group_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fence = Fence::open(dir.path(), small_fence()).unwrap();
    let id = fence.register(b"ledger").unwrap();
    assert!(fence.check(id, t(50, 1)).unwrap().is_accepted());
    let e = fence
        .rebase(b"ledger", &Source::fencekit_group(ClusterId::new(1)), "ops")
        .unwrap_err();
    assert!(matches!(e.fault(), FenceFault::RebaseRefused(_)), "{e}");
    assert!(matches!(
        fence.check(id, t(10, 2)).unwrap(),
        Verdict::Stale { .. }
    ));
    let other = fence.register(b"other").unwrap();
    let group = fence
        .source_id(&Source::fencekit_group(ClusterId::new(1)))
        .unwrap();
    assert!(
        fence
            .check_from(other, group, t(5, 1))
            .unwrap()
            .is_accepted()
    );
    let e = fence.rebase(b"other", &Source::UNNAMED, "ops").unwrap_err();
    assert!(matches!(e.fault(), FenceFault::RebaseRefused(_)), "{e}");
}

/// A name an earlier build wrote in the log stays readable when the rules for new names
/// grow stricter (here, an etcd cluster id in capitals).
#[test]
fn a_source_name_in_the_log_is_read_by_the_general_rules() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), LogOwner::Fence, small_wal(), &mut |_| Ok(())).unwrap();
        let name = b"etcd:5D1E0F3C2A6B4E10";
        let mut payload = 2u64.to_le_bytes().to_vec();
        payload.extend_from_slice(&(name.len() as u16).to_le_bytes());
        payload.extend_from_slice(name);
        payload.extend_from_slice(b"k");
        wal.append_sync(RecordKind::FENCE_SOURCED_MARK, 10, &payload)
            .unwrap();
    }
    let fence = Fence::open(dir.path(), small_fence()).unwrap();
    let id = fence.lookup(b"k").unwrap();
    assert_eq!(
        fence.bound_source(id).unwrap().unwrap().as_str(),
        "etcd:5D1E0F3C2A6B4E10"
    );
    assert_eq!(fence.mark(id).unwrap(), Some(t(10, 2)));
    // New names follow the new rules; the resource moves to the one spelling by a rebase.
    assert!(Source::parse("etcd:5D1E0F3C2A6B4E10").is_err());
    fence
        .rebase(b"k", &Source::etcd_cluster(0x5d1e_0f3c_2a6b_4e10), "ops")
        .unwrap();
}

#[test]
fn a_new_resource_can_be_bound_before_its_first_token() {
    let dir = tempfile::tempdir().unwrap();
    let fence = Fence::open(dir.path(), small_fence()).unwrap();
    let zk = Source::zookeeper_ensemble("prod").unwrap();
    let rebase = fence.rebase(b"orders", &zk, "deploy").unwrap();
    assert_eq!((rebase.from, rebase.cleared_mark), (None, None));
    let id = fence.lookup(b"orders").unwrap();
    assert!(matches!(
        fence.check(id, t(1, 1)).unwrap(),
        Verdict::ForeignSource { .. }
    ));
    let zk_id = fence.source_id(&zk).unwrap();
    assert!(
        fence
            .check_from(id, zk_id, t(0x1_0000_0003, 9))
            .unwrap()
            .is_accepted()
    );
}

#[test]
fn source_ids_and_counts_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let fence = Fence::open(dir.path(), small_fence()).unwrap();
    let id = fence.register(b"k").unwrap();
    let never = fencekit::SourceId::from_u32(77);
    assert!(matches!(
        fence
            .check_from(id, never, t(1, 1))
            .map_err(FenceError::into_fault),
        Err(FenceFault::InvalidSource(_))
    ));
    assert!(matches!(
        fence.source(never).map_err(FenceError::into_fault),
        Err(FenceFault::InvalidSource(_))
    ));
    for i in 1..fencekit::limits::SOURCES_MAX {
        fence
            .source_id(&Source::named(&i.to_string()).unwrap())
            .unwrap();
    }
    assert!(matches!(
        fence
            .source_id(&Source::named("one-too-many").unwrap())
            .map_err(FenceError::into_fault),
        Err(FenceFault::TooManySources {
            max: fencekit::limits::SOURCES_MAX
        })
    ));
    // Known ones are still found, and the wide mark takes ids beyond the packed form's 128.
    let late = fence.source_id(&Source::named("1000").unwrap()).unwrap();
    assert!(late.as_u32() >= 128);
    assert!(fence.check_from(id, late, t(2, 2)).unwrap().is_accepted());
    assert_eq!(
        fence.check_from(id, late, t(2, 2)).unwrap(),
        Verdict::Accepted
    );
}

/// A log that says a resource took a mark from a source it was not bound to was tampered
/// with or written by a broken build: refuse to open it rather than pick one.
#[test]
fn a_log_mixing_sources_without_a_rebase_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let fence = Fence::open(dir.path(), small_fence()).unwrap();
        let sid = fence.source_id(&Source::etcd_cluster(0xa)).unwrap();
        let id = fence.register(b"k").unwrap();
        fence.check_from(id, sid, t(9, 2)).unwrap();
    }
    {
        let wal = Wal::open(dir.path(), LogOwner::Fence, small_wal(), &mut |_| Ok(())).unwrap();
        let mut payload = 2u64.to_le_bytes().to_vec();
        payload.extend_from_slice(&(b"etcd:000000000000000b".len() as u16).to_le_bytes());
        payload.extend_from_slice(b"etcd:000000000000000b");
        payload.extend_from_slice(b"k");
        wal.append_sync(RecordKind::FENCE_SOURCED_MARK, 10, &payload)
            .unwrap();
    }
    let e = Fence::open(dir.path(), small_fence()).unwrap_err();
    assert!(
        matches!(e.fault(), FenceFault::Log(LogError::Corrupt { .. })),
        "{e}"
    );
    assert!(
        e.to_string().contains("bound to etcd:000000000000000a"),
        "{e}"
    );
}

/// Once `rebase` has returned, no check of the former source is accepted, on any thread.
#[test]
fn no_check_after_a_rebase_takes_the_former_source() {
    let dir = tempfile::tempdir().unwrap();
    let fence = Arc::new(Fence::open(dir.path(), small_fence()).unwrap());
    let old = fence.source_id(&Source::etcd_cluster(0xa)).unwrap();
    let id = fence.register(b"k").unwrap();
    for (round, holder) in [(0u64, 3u64), (1, LEASE)] {
        let key = format!("k{round}");
        let id = fence.register(key.as_bytes()).unwrap();
        let mark = t(100, holder);
        fence
            .rebase(key.as_bytes(), &Source::etcd_cluster(0xa), "setup")
            .ok();
        assert!(fence.check_from(id, old, mark).unwrap().is_accepted());
        let rebased = Arc::new(AtomicBool::new(false));
        let checkers: Vec<_> = (0..2)
            .map(|_| {
                let (fence, rebased) = (Arc::clone(&fence), Arc::clone(&rebased));
                std::thread::spawn(move || {
                    let mut after = 0;
                    while after < 10_000 {
                        let done = rebased.load(Ordering::Acquire);
                        let verdict = fence.check_from(id, old, mark).unwrap();
                        if done {
                            assert!(!verdict.is_accepted(), "accepted after the rebase");
                            after += 1;
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fence
            .rebase(key.as_bytes(), &Source::etcd_cluster(0xb), "ops")
            .unwrap();
        rebased.store(true, Ordering::Release);
        for checker in checkers {
            checker.join().unwrap();
        }
    }
    let _ = id;
}
