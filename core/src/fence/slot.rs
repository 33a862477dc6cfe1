//! One resource's high-water mark, readable without a lock.
//!
//! The mark is two words, generation and holder. Readers never lock; the one writer (holding
//! `advance`) rewrites the pair as a tiny seqlock whose version is the generation word itself:
//!
//! ```text
//! writer: generation = BUSY; holder = h (Release); generation = g (SeqCst)
//! reader: g1 = generation (Acquire); h = holder (Acquire); g2 = generation; consistent iff g1 == g2
//! ```
//!
//! If a reader sees the new holder, the Release/Acquire pair on `holder` makes its second read
//! of `generation` see `BUSY` or the new generation, never the old one; so a mix of an old
//! generation with a new holder is always detected. `BUSY` (the top bit) is no valid generation,
//! so a reader that meets it falls to the slow path, which waits for the writer's lock. The
//! final store is SeqCst so that once an advance has returned, a check that starts afterwards on
//! any thread sees it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::token::{Generation, Token};

const BUSY: u64 = 1 << 63;
const _: () = assert!(Generation::MAX < BUSY);

/// Proof that the caller holds a slot's advance lock.
pub(super) struct AdvanceGuard<'a>(
    #[allow(dead_code, reason = "held for its Drop")] MutexGuard<'a, ()>,
);

#[derive(Debug, Default)]
pub(super) struct Slot {
    /// 0: no mark yet. `BUSY`: being rewritten. Otherwise the mark's generation.
    generation: AtomicU64,
    holder: AtomicU64,
    /// Serialises the slow path (advances, stale and conflict decisions) of this resource.
    advance: Mutex<()>,
    pub(super) key: OnceLock<Box<[u8]>>,
    pub(super) advanced: AtomicU64,
    pub(super) stale: AtomicU64,
    pub(super) conflicts: AtomicU64,
}

fn token_of(generation: u64, holder: u64) -> Option<Token> {
    // Both words come from a published pair: a valid token or none.
    Token::from_parts(generation, holder).ok()
}

impl Slot {
    /// The hot path: true iff `token` is the current mark, generation and holder.
    #[inline(always)]
    pub(super) fn holds(&self, token: Token) -> bool {
        let generation = self.generation.load(Ordering::Acquire);
        if generation != token.generation.get() {
            return false;
        }
        let holder = self.holder.load(Ordering::Acquire);
        holder == token.holder.get() && self.generation.load(Ordering::Relaxed) == generation
    }

    /// The current mark, read consistently without the lock.
    pub(super) fn current(&self) -> Option<Token> {
        loop {
            let generation = self.generation.load(Ordering::Acquire);
            if generation & BUSY != 0 {
                std::hint::spin_loop();
                continue;
            }
            let holder = self.holder.load(Ordering::Acquire);
            if self.generation.load(Ordering::Relaxed) == generation {
                return token_of(generation, holder);
            }
        }
    }

    pub(super) fn lock(&self) -> AdvanceGuard<'_> {
        // Nothing panics while the lock is held between consistent states.
        AdvanceGuard(self.advance.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The current mark; with the lock held no writer runs, so plain reads are consistent.
    pub(super) fn current_locked(&self, _guard: &AdvanceGuard<'_>) -> Option<Token> {
        token_of(
            self.generation.load(Ordering::Acquire),
            self.holder.load(Ordering::Acquire),
        )
    }

    /// Replaces the mark. The caller has made it durable first.
    pub(super) fn publish(&self, _guard: &AdvanceGuard<'_>, token: Token) {
        self.generation.store(BUSY, Ordering::Relaxed);
        self.holder.store(token.holder.get(), Ordering::Release);
        self.generation
            .store(token.generation.get(), Ordering::SeqCst);
    }

    /// Sets the mark while the fence is being opened, before any reader exists.
    pub(super) fn restore(&mut self, token: Token) {
        *self.generation.get_mut() = token.generation.get();
        *self.holder.get_mut() = token.holder.get();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_slot_holds_nothing() {
        let slot = Slot::default();
        assert_eq!(slot.current(), None);
        assert!(!slot.holds(Token::from_parts(1, 1).unwrap()));
    }

    #[test]
    fn publish_replaces_both_words() {
        let slot = Slot::default();
        let a = Token::from_parts(3, 7).unwrap();
        let b = Token::from_parts(3, 8).unwrap();
        let guard = slot.lock();
        slot.publish(&guard, a);
        assert!(slot.holds(a) && !slot.holds(b));
        slot.publish(&guard, b);
        assert!(slot.holds(b) && !slot.holds(a));
        assert_eq!(slot.current_locked(&guard), Some(b));
        drop(guard);
        assert_eq!(slot.current(), Some(b));
    }
}
