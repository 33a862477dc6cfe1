//! Bad input gets a typed error whose message names the problem, and changes nothing.

use std::fs;

use fencekit::limits::{BATCH_MAX, KEY_LEN_MAX};
use fencekit::{
    Fence, FenceError, FenceFault, FenceOptions, Generation, LogError, NodeId, ResourceId, Token,
    Verdict,
};

use crate::support::small_fence;

#[test]
fn empty_and_over_long_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fence = Fence::open(dir.path(), small_fence()).unwrap();
    let t = Token::from_parts(1, 1).unwrap();
    let err = fence.register(b"").unwrap_err();
    assert!(
        matches!(err.fault(), FenceFault::InvalidKey { len: 0 })
            && err.to_string().contains("empty"),
        "{err}"
    );
    let long = vec![b'k'; KEY_LEN_MAX + 1];
    let err = fence.check_key(&long, t).unwrap_err();
    assert!(err.to_string().contains("257 bytes"), "{err}");
    fence.register(&long[..KEY_LEN_MAX]).unwrap();
    assert_eq!(fence.len(), 1, "refused keys registered nothing");
}

#[test]
fn generation_zero_and_holder_zero_are_not_tokens() {
    assert!(
        Generation::new(0)
            .unwrap_err()
            .to_string()
            .contains("generation 0")
    );
    assert!(
        NodeId::new(0)
            .unwrap_err()
            .to_string()
            .contains("node id 0")
    );
    assert!(Token::from_bytes(&[0; 16]).is_err());
}

#[test]
fn unknown_ids_and_bad_batches_are_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let fence = Fence::open(dir.path(), small_fence()).unwrap();
    let id = fence.register(b"a").unwrap();
    let t = Token::from_parts(1, 1).unwrap();
    let never = ResourceId::from_u32(5);
    assert!(matches!(
        fence.check(never, t).map_err(FenceError::into_fault),
        Err(FenceFault::UnknownResource(5))
    ));
    assert!(matches!(
        fence
            .check(ResourceId::from_u32(u32::MAX), t)
            .map_err(FenceError::into_fault),
        Err(FenceFault::UnknownResource(_))
    ));

    // A batch with one bad id does nothing at all, not even the good items; like a bad token,
    // the bad id is the batch's error, and it names the item.
    let mut out = [Verdict::Accepted; 2];
    match fence
        .check_batch(&[(id, t), (never, t)], &mut out)
        .map_err(FenceError::into_fault)
    {
        Err(FenceFault::InvalidBatch(why)) => assert!(
            why.contains("item 1") && why.contains("unknown resource id 5"),
            "{why}"
        ),
        other => panic!("a batch with an unknown id answered {other:?}"),
    }
    assert_eq!(fence.mark(id).unwrap(), None);

    let err = fence.check_batch(&[(id, t)], &mut []).unwrap_err();
    assert!(
        err.to_string().contains("1 items but 0 verdict slots"),
        "{err}"
    );
    let big = vec![(id, t); BATCH_MAX + 1];
    let mut out = vec![Verdict::Accepted; BATCH_MAX + 1];
    assert!(matches!(
        fence
            .check_batch(&big, &mut out)
            .map_err(FenceError::into_fault),
        Err(FenceFault::BatchTooLong(range)) if range.given == (BATCH_MAX + 1) as u64
            && range.max == BATCH_MAX as u64
    ));
    assert_eq!(fence.mark(id).unwrap(), None);
}

#[test]
fn a_full_fence_refuses_new_resources_and_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let options = FenceOptions {
        max_resources: 2,
        ..small_fence()
    };
    let fence = Fence::open(dir.path(), options.clone()).unwrap();
    fence.register(b"a").unwrap();
    fence.register(b"b").unwrap();
    let err = fence.register(b"c").unwrap_err();
    assert!(err.to_string().contains("max_resources"), "{err}");
    assert_eq!(fence.register(b"a").unwrap().as_u32(), 0);
    let zero = FenceOptions {
        max_resources: 0,
        ..options
    };
    drop(fence);
    assert!(
        Fence::open(dir.path(), zero)
            .unwrap_err()
            .to_string()
            .contains("max_resources")
    );
}

/// A compaction threshold out of range is refused at open with its bounds, the mark kept; the
/// largest one (never compact) reopens a fence that has advanced (its next threshold used to
/// overflow).
#[test]
fn a_compaction_threshold_out_of_range_is_refused_and_the_largest_reopens() {
    use fencekit::limits::{COMPACT_AFTER_BYTES_MAX, COMPACT_AFTER_BYTES_MIN};
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        0,
        COMPACT_AFTER_BYTES_MIN - 1,
        COMPACT_AFTER_BYTES_MAX + 1,
        u64::MAX,
    ] {
        let options = FenceOptions {
            compact_after_bytes: bad,
            ..small_fence()
        };
        let err = Fence::open(dir.path(), options).unwrap_err();
        match err.fault() {
            FenceFault::Option(range) => {
                assert_eq!(range.what, "FenceOptions::compact_after_bytes");
                assert_eq!(range.given, bad);
                assert_eq!(
                    (range.min, range.max),
                    (COMPACT_AFTER_BYTES_MIN, COMPACT_AFTER_BYTES_MAX)
                );
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    let never = FenceOptions {
        compact_after_bytes: COMPACT_AFTER_BYTES_MAX,
        ..small_fence()
    };
    let token = Token::from_parts(7, 1).unwrap();
    {
        let fence = Fence::open(dir.path(), never.clone()).unwrap();
        fence.check_key(b"jobs", token).unwrap();
    }
    let fence = Fence::open(dir.path(), never).unwrap();
    assert_eq!(fence.check_key(b"jobs", token).unwrap(), Verdict::Accepted);
}

#[test]
fn a_directory_that_cannot_be_created_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, b"not a directory").unwrap();
    let err = Fence::open(file.join("data"), small_fence()).unwrap_err();
    assert!(
        matches!(err.fault(), FenceFault::Log(LogError::Io { .. })),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("create data directory") && message.contains("a-file"),
        "{message}"
    );
}

#[test]
fn a_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Fence::open(dir.path(), small_fence()).unwrap();
    let err = Fence::open(dir.path(), small_fence()).unwrap_err();
    assert!(
        matches!(err.fault(), FenceFault::Log(LogError::Locked { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn a_log_of_another_kind_is_not_taken_for_a_fence() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = crate::support::open_wal(dir.path()).unwrap();
        wal.append_sync(fencekit::RecordKind::RAFT_ENTRIES, 3, b"entries")
            .unwrap();
    }
    let err = Fence::open(dir.path(), small_fence()).unwrap_err();
    assert!(err.to_string().contains("not a fence record"), "{err}");
}

#[test]
fn a_regressing_mark_in_the_log_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = crate::support::open_wal(dir.path()).unwrap();
        let mark = |holder: u64| {
            let mut p = holder.to_le_bytes().to_vec();
            p.extend_from_slice(b"key");
            p
        };
        wal.append_sync(fencekit::RecordKind::FENCE_MARK, 5, &mark(1))
            .unwrap();
        wal.append_sync(fencekit::RecordKind::FENCE_MARK, 4, &mark(1))
            .unwrap();
    }
    let err = Fence::open(dir.path(), small_fence()).unwrap_err();
    assert!(
        matches!(err.fault(), FenceFault::Log(LogError::Corrupt { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("already"), "{err}");
}
