//! Many threads checking while others advance: no lost update, no regression, and no thread
//! ever accepted below a generation whose advance had already been reported (I5).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fencekit::{Fence, Token, Verdict};

use crate::support::small_fence;

/// Holder ids that fit the packed mark word, and ids that do not (so the mark lives in the
/// two-word seqlock form): both forms must hold up under concurrency.
const PACKED_HOLDERS: u64 = 0;
const WIDE_HOLDERS: u64 = 1 << 40;

/// One holder per generation, so a checker can rebuild the token of any generation.
fn token_maker(holder_base: u64) -> impl Fn(u64) -> Token + Copy + Send + 'static {
    move |generation| Token::from_parts(generation, holder_base + generation % 5 + 1).unwrap()
}

#[test]
fn concurrent_advances_and_checks_never_lose_or_regress() {
    race_advances_against_checks(PACKED_HOLDERS);
}

#[test]
fn concurrent_advances_and_checks_never_lose_or_regress_with_wide_marks() {
    race_advances_against_checks(WIDE_HOLDERS);
}

fn race_advances_against_checks(holder_base: u64) {
    let token = token_maker(holder_base);
    let dir = tempfile::tempdir().unwrap();
    let fence = Arc::new(Fence::open(dir.path(), small_fence()).unwrap());
    let resources: Vec<_> = (0..3)
        .map(|i| fence.register(format!("shard/{i}").as_bytes()).unwrap())
        .collect();
    let next_generation: Arc<Vec<AtomicU64>> =
        Arc::new((0..3).map(|_| AtomicU64::new(1)).collect());
    // The highest generation whose `Advanced` has been returned, per resource.
    let reported: Arc<Vec<AtomicU64>> = Arc::new((0..3).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (fence, resources) = (Arc::clone(&fence), resources.clone());
            let (next_generation, reported) = (Arc::clone(&next_generation), Arc::clone(&reported));
            std::thread::spawn(move || {
                for i in 0..150 {
                    let r = (w + i) % 3;
                    let generation = next_generation[r].fetch_add(1, Ordering::SeqCst);
                    match fence.check(resources[r], token(generation)).unwrap() {
                        Verdict::Advanced { previous } => {
                            assert!(previous.is_none_or(|p| p.generation.get() < generation));
                            reported[r].fetch_max(generation, Ordering::SeqCst);
                        }
                        Verdict::Stale { current } => {
                            assert!(current.generation.get() > generation)
                        }
                        other => panic!("generation {generation} is unique, got {other:?}"),
                    }
                }
            })
        })
        .collect();

    let checkers: Vec<_> = (0..3)
        .map(|c| {
            let (fence, resources) = (Arc::clone(&fence), resources.clone());
            let (reported, stop) = (Arc::clone(&reported), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut seen = [0u64; 3];
                let mut checks = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    for r in 0..3 {
                        let floor = reported[r].load(Ordering::SeqCst);
                        if floor > 1 {
                            // Reported before this check began: anything older must be refused.
                            let verdict = fence.check(resources[r], token(floor - 1)).unwrap();
                            assert!(
                                !verdict.is_accepted(),
                                "checker {c}: {floor}-1 got {verdict:?}"
                            );
                        }
                        if let Some(mark) = fence.mark(resources[r]).unwrap() {
                            let g = mark.generation.get();
                            assert!(
                                g >= seen[r],
                                "checker {c}: mark went back {} -> {g}",
                                seen[r]
                            );
                            assert!(g >= floor, "checker {c}: mark {g} below reported {floor}");
                            seen[r] = g;
                            // The current mark is accepted, or already superseded.
                            match fence.check(resources[r], mark).unwrap() {
                                Verdict::Accepted | Verdict::Stale { .. } => {}
                                other => panic!("checker {c}: the mark itself got {other:?}"),
                            }
                        }
                        checks += 1;
                    }
                }
                checks
            })
        })
        .collect();

    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let checks: u64 = checkers.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(checks > 0);

    // No lost update: the highest generation handed out won, and it is durable.
    let expected: Vec<_> = (0..3)
        .map(|r| token(next_generation[r].load(Ordering::SeqCst) - 1))
        .collect();
    for r in 0..3 {
        assert_eq!(fence.mark(resources[r]).unwrap(), Some(expected[r]));
        assert_eq!(
            reported[r].load(Ordering::SeqCst),
            expected[r].generation.get()
        );
    }
    drop(fence);
    let fence = Fence::open(dir.path(), small_fence()).unwrap();
    for (r, expected) in expected.iter().enumerate() {
        let id = fence.lookup(format!("shard/{r}").as_bytes()).unwrap();
        assert_eq!(fence.mark(id).unwrap(), Some(*expected));
    }
}

#[test]
fn the_hot_path_counts_every_accepted_check_from_many_threads() {
    let dir = tempfile::tempdir().unwrap();
    let fence = Arc::new(Fence::open(dir.path(), small_fence()).unwrap());
    let id = fence.register(b"hot").unwrap();
    let t = Token::from_parts(1, 1).unwrap();
    fence.check(id, t).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let fence = Arc::clone(&fence);
            std::thread::spawn(move || {
                for _ in 0..100_000 {
                    assert_eq!(fence.check(id, t).unwrap(), Verdict::Accepted);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(fence.counters(id).unwrap().accepted, 800_000);
}

#[test]
fn a_host_that_turns_accepted_counting_off_keeps_every_verdict_and_the_other_counts() {
    let dir = tempfile::tempdir().unwrap();
    let fence = Fence::open(dir.path(), small_fence()).unwrap();
    let id = fence.register(b"quiet").unwrap();
    let old = Token::from_parts(1, 1).unwrap();
    let new = Token::from_parts(2, 1).unwrap();
    assert!(fence.counts_accepted(), "counting is on when a fence opens");
    fence.check(id, old).unwrap();
    fence.check(id, old).unwrap();
    fence.set_count_accepted(false);
    assert!(!fence.counts_accepted());
    assert_eq!(fence.check(id, old).unwrap(), Verdict::Accepted);
    let mut out = [Verdict::Accepted; 2];
    fence
        .check_batch(&[(id, old), (id, old)], &mut out)
        .unwrap();
    assert_eq!(out, [Verdict::Accepted; 2]);
    assert!(matches!(
        fence.check(id, new).unwrap(),
        Verdict::Advanced { .. }
    ));
    assert!(matches!(
        fence.check(id, old).unwrap(),
        Verdict::Stale { .. }
    ));
    let counters = fence.counters(id).unwrap();
    assert_eq!(
        (counters.accepted, counters.advanced, counters.stale),
        (1, 2, 1),
        "accepted checks while counting was off are not counted; the rest are"
    );
    fence.set_count_accepted(true);
    fence.check(id, new).unwrap();
    fence.check_batch(&[(id, new)], &mut out[..1]).unwrap();
    assert_eq!(fence.counters(id).unwrap().accepted, 3);
}
