//! I5's conflict rule: one generation, two holders, is split brain. Rejected by default; a
//! tie-breaker may hand the generation over (durably), and one that panics fails closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fencekit::{ConflictResolution, Fence, TieBreaker, Token, Verdict};

use crate::support::small_fence;

fn t(generation: u64, holder: u64) -> Token {
    Token::from_parts(generation, holder).unwrap()
}

#[test]
fn a_conflict_is_rejected_and_counted_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let fence = Fence::open(dir.path(), small_fence()).unwrap();
    let id = fence.register(b"primary").unwrap();
    fence.check(id, t(7, 1)).unwrap();
    assert_eq!(
        fence.check(id, t(7, 2)).unwrap(),
        Verdict::Conflict { current: t(7, 1) }
    );
    assert_eq!(fence.check(id, t(7, 1)).unwrap(), Verdict::Accepted);
    assert_eq!(fence.counters(id).unwrap().conflicts, 1);
}

/// Prefers the higher node id, and counts the alarms it was given.
struct HigherNodeWins(AtomicUsize);

impl TieBreaker for HigherNodeWins {
    fn resolve_conflict(
        &self,
        key: &[u8],
        current: Token,
        challenger: Token,
    ) -> ConflictResolution {
        assert_eq!(key, b"primary");
        self.0.fetch_add(1, Ordering::SeqCst);
        if challenger.holder > current.holder {
            ConflictResolution::Challenger
        } else {
            ConflictResolution::KeepCurrent
        }
    }
}

#[test]
fn a_tie_breaker_can_hand_the_generation_over_durably() {
    let dir = tempfile::tempdir().unwrap();
    let policy = Arc::new(HigherNodeWins(AtomicUsize::new(0)));
    {
        let fence = Fence::open(dir.path(), small_fence()).unwrap();
        fence.set_tie_breaker(policy.clone());
        let id = fence.register(b"primary").unwrap();
        fence.check(id, t(7, 2)).unwrap();
        assert_eq!(
            fence.check(id, t(7, 1)).unwrap(),
            Verdict::Conflict { current: t(7, 2) }
        );
        assert_eq!(
            fence.check(id, t(7, 3)).unwrap(),
            Verdict::Advanced {
                previous: Some(t(7, 2))
            }
        );
        assert_eq!(
            fence.check(id, t(7, 2)).unwrap(),
            Verdict::Conflict { current: t(7, 3) }
        );
        assert_eq!(fence.counters(id).unwrap().conflicts, 3);
    }
    assert_eq!(
        policy.0.load(Ordering::SeqCst),
        3,
        "every conflict reaches the policy"
    );
    let fence = Fence::open(dir.path(), small_fence()).unwrap();
    let id = fence.lookup(b"primary").unwrap();
    assert_eq!(
        fence.mark(id).unwrap(),
        Some(t(7, 3)),
        "the hand-over survived reopening"
    );
}

struct Panics;

impl TieBreaker for Panics {
    fn resolve_conflict(&self, _: &[u8], _: Token, _: Token) -> ConflictResolution {
        panic!("a broken policy")
    }
}

#[test]
fn a_panicking_tie_breaker_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let fence = Fence::open(dir.path(), small_fence()).unwrap();
    fence.set_tie_breaker(Arc::new(Panics));
    let id = fence.register(b"primary").unwrap();
    fence.check(id, t(7, 1)).unwrap();
    assert_eq!(
        fence.check(id, t(7, 2)).unwrap(),
        Verdict::Conflict { current: t(7, 1) }
    );
    assert_eq!(fence.mark(id).unwrap(), Some(t(7, 1)));
}

/// Answers `Challenger` after a pause, having said that it started.
struct SlowChallenger {
    started: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    pause: std::time::Duration,
}

impl TieBreaker for SlowChallenger {
    fn resolve_conflict(&self, _: &[u8], _: Token, _: Token) -> ConflictResolution {
        if let Some(started) = self.started.lock().unwrap().take() {
            let _ = started.send(());
        }
        std::thread::sleep(self.pause);
        ConflictResolution::Challenger
    }
}

#[test]
fn a_slow_tie_breaker_holds_no_lock_a_newer_leader_needs_and_its_answer_never_undoes_it() {
    let dir = tempfile::tempdir().unwrap();
    let fence = Arc::new(Fence::open(dir.path(), small_fence()).unwrap());
    let (started, started_rx) = std::sync::mpsc::channel();
    fence.set_tie_breaker(Arc::new(SlowChallenger {
        started: std::sync::Mutex::new(Some(started)),
        pause: std::time::Duration::from_millis(500),
    }));
    let id = fence.register(b"primary").unwrap();
    fence.check(id, t(7, 1)).unwrap();
    let conflicting = {
        let fence = fence.clone();
        std::thread::spawn(move || fence.check(id, t(7, 2)).unwrap())
    };
    started_rx.recv().unwrap();
    // While the policy deliberates, the next leader advances at once.
    let began = std::time::Instant::now();
    assert_eq!(
        fence.check(id, t(8, 3)).unwrap(),
        Verdict::Advanced {
            previous: Some(t(7, 1))
        }
    );
    assert!(
        began.elapsed() < std::time::Duration::from_millis(250),
        "the advance waited {:?} for the tie-breaker",
        began.elapsed()
    );
    // The policy's late `Challenger` does not take the mark back to generation 7.
    assert_eq!(
        conflicting.join().unwrap(),
        Verdict::Stale { current: t(8, 3) }
    );
    assert_eq!(fence.mark(id).unwrap(), Some(t(8, 3)));
}
