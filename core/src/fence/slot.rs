//! One resource's high-water mark, readable without a lock.
//!
//! The mark lives in one packed word whenever it fits, which is every realistic mark:
//! `generation << 16 | holder` for a generation below 2^47 and a holder below 2^16. The hot
//! check is then one atomic load and a compare against the token packed the same way, and a
//! writer replaces the mark with one atomic store.
//!
//! A mark that does not fit (a huge term, or 64-bit random node ids) is kept in two words and
//! the packed word holds `WIDE`. Those two words are written as a tiny seqlock whose version is
//! the generation word itself:
//!
//! ```text
//! writer: generation = BUSY; holder = h (Release); generation = g (Release); packed = WIDE
//! reader: g1 = generation (Acquire); h = holder (Acquire); g2 = generation; consistent iff g1 == g2
//! ```
//!
//! If a reader sees the new holder, the Release/Acquire pair on `holder` makes its second read
//! of `generation` see `BUSY` or the new generation, never the old one, so a mix of an old
//! generation with a new holder is always detected. `BUSY` (the top bit) is no valid generation.
//! The wide words are never touched when a compact mark is published, so a reader that saw
//! `WIDE` reads either the wide mark it saw or a newer one: each was the mark at some instant
//! during its check.
//!
//! Every publish ends with a SeqCst store of `packed`, so that once an advance has returned,
//! a check that starts afterwards on any thread sees it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::token::{Generation, Token};

const BUSY: u64 = 1 << 63;
const _: () = assert!(Generation::MAX < BUSY);

/// `packed` for a mark kept in the wide words.
const WIDE: u64 = 1 << 63;
/// What [`pack`] gives for a token that does not fit: equal to no `packed` value.
const UNPACKABLE: u64 = u64::MAX;
const HOLDER_BITS: u32 = 16;
const GENERATION_PACKED_MAX: u64 = (1 << (63 - HOLDER_BITS)) - 1;

/// The packed form of `token`, or [`UNPACKABLE`].
#[inline(always)]
fn pack(token: Token) -> u64 {
    let (generation, holder) = (token.generation.get(), token.holder.get());
    if generation <= GENERATION_PACKED_MAX && holder < (1 << HOLDER_BITS) {
        (generation << HOLDER_BITS) | holder
    } else {
        UNPACKABLE
    }
}

fn unpack(packed: u64) -> Option<Token> {
    Token::from_parts(packed >> HOLDER_BITS, packed & ((1 << HOLDER_BITS) - 1)).ok()
}

/// Proof that the caller holds a slot's advance lock.
pub(super) struct AdvanceGuard<'a>(
    #[allow(dead_code, reason = "held for its Drop")] MutexGuard<'a, ()>,
);

#[derive(Debug, Default)]
pub(super) struct Slot {
    /// 0: no mark yet. `WIDE`: the mark is in the wide words. Otherwise the packed mark.
    packed: AtomicU64,
    /// The wide mark's generation, or `BUSY` while it is rewritten.
    generation: AtomicU64,
    holder: AtomicU64,
    /// Serialises the slow path (advances, stale and conflict decisions) of this resource.
    advance: Mutex<()>,
    pub(super) key: OnceLock<Box<[u8]>>,
    pub(super) advanced: AtomicU64,
    pub(super) stale: AtomicU64,
    pub(super) conflicts: AtomicU64,
}

impl Slot {
    /// The hot path: true iff `token` is the current mark, generation and holder.
    #[inline(always)]
    pub(super) fn holds(&self, token: Token) -> bool {
        let packed = self.packed.load(Ordering::Acquire);
        if packed == pack(token) {
            return true;
        }
        packed == WIDE && self.wide_holds(token)
    }

    #[cold]
    #[inline(never)]
    fn wide_holds(&self, token: Token) -> bool {
        let generation = self.generation.load(Ordering::Acquire);
        if generation != token.generation.get() {
            return false;
        }
        let holder = self.holder.load(Ordering::Acquire);
        holder == token.holder.get() && self.generation.load(Ordering::Relaxed) == generation
    }

    /// The current mark, read consistently without the lock.
    pub(super) fn current(&self) -> Option<Token> {
        match self.packed.load(Ordering::Acquire) {
            0 => None,
            WIDE => loop {
                let generation = self.generation.load(Ordering::Acquire);
                if generation & BUSY != 0 {
                    std::hint::spin_loop();
                    continue;
                }
                let holder = self.holder.load(Ordering::Acquire);
                if self.generation.load(Ordering::Relaxed) == generation {
                    break Token::from_parts(generation, holder).ok();
                }
            },
            packed => unpack(packed),
        }
    }

    pub(super) fn lock(&self) -> AdvanceGuard<'_> {
        // Nothing panics while the lock is held between consistent states.
        AdvanceGuard(self.advance.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The current mark; with the lock held no writer runs.
    pub(super) fn current_locked(&self, _guard: &AdvanceGuard<'_>) -> Option<Token> {
        self.current()
    }

    /// Replaces the mark. The caller has made it durable first.
    pub(super) fn publish(&self, _guard: &AdvanceGuard<'_>, token: Token) {
        let packed = pack(token);
        if packed != UNPACKABLE {
            self.packed.store(packed, Ordering::SeqCst);
            return;
        }
        self.generation.store(BUSY, Ordering::Relaxed);
        self.holder.store(token.holder.get(), Ordering::Release);
        self.generation
            .store(token.generation.get(), Ordering::Release);
        self.packed.store(WIDE, Ordering::SeqCst);
    }

    /// Sets the mark while the fence is being opened, before any reader exists.
    pub(super) fn restore(&mut self, token: Token) {
        match pack(token) {
            UNPACKABLE => {
                *self.generation.get_mut() = token.generation.get();
                *self.holder.get_mut() = token.holder.get();
                *self.packed.get_mut() = WIDE;
            }
            packed => *self.packed.get_mut() = packed,
        }
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
    fn marks_move_between_packed_and_wide_forms() {
        let slot = Slot::default();
        let compact = Token::from_parts(5, 3).unwrap();
        let wide_holder = Token::from_parts(6, 1 << 40).unwrap();
        let wide_generation = Token::from_parts(1 << 50, 3).unwrap();
        let guard = slot.lock();
        for token in [compact, wide_holder, wide_generation, compact, wide_holder] {
            slot.publish(&guard, token);
            assert_eq!(slot.current(), Some(token));
            assert!(slot.holds(token));
            for other in [compact, wide_holder, wide_generation] {
                assert_eq!(slot.holds(other), other == token, "{token:?} vs {other:?}");
            }
        }
        // A packed value never equals an unpackable token's, nor the no-mark value.
        assert_ne!(pack(wide_generation), 0);
        assert_ne!(pack(wide_generation), WIDE);
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
