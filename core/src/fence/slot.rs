//! One resource's high-water mark and the source it came from, readable without a lock.
//!
//! The mark lives in one packed word whenever it fits, which is every realistic mark of
//! fencekit's own group: `generation << 23 | source << 16 | holder` for a generation below
//! 2^40, one of the fence's first 128 sources and a holder below 2^16. The hot check is then
//! one atomic load and a compare against the token packed the same way (with the source it is
//! presented from), and a writer replaces the mark with one atomic store.
//!
//! A mark that does not fit (a huge term, 64-bit random node ids, an etcd lease id as holder)
//! is kept in three wide words, the packed word holding `WIDE`. They are written under a
//! seqlock whose sequence number is odd while a writer is at work:
//!
//! ```text
//! writer: seq += 1; fence(Release); generation, holder, source = ...; seq += 1 (Release); packed = WIDE
//! reader: s1 = seq (Acquire); read the words; fence(Acquire); s2 = seq; consistent iff s1 == s2, even
//! ```
//!
//! The wide words are never touched when a compact mark is published, so a reader that saw
//! `WIDE` reads either the wide mark it saw or a newer one: each was the mark at some instant
//! during its check.
//!
//! Every publish ends with a SeqCst store of `packed`, so that once an advance has returned,
//! a check that starts afterwards on any thread sees it.
//!
//! The source a resource is *bound* to (`bound`) is read and written only under the slot's
//! lock: a resource without a mark may already be bound (a rebase names its next source), and
//! a mark is always of the bound source.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::sync::{Mutex, MutexGuard, OnceLock};

use super::SourceId;
use super::rebase::History;
use crate::token::Token;

/// `packed` for a mark kept in the wide words.
const WIDE: u64 = 1 << 63;
/// What [`pack`] gives for a token that does not fit: equal to no `packed` value.
const UNPACKABLE: u64 = u64::MAX;
const HOLDER_BITS: u32 = 16;
const SOURCE_BITS: u32 = 7;
const GENERATION_PACKED_MAX: u64 = (1 << (63 - HOLDER_BITS - SOURCE_BITS)) - 1;
/// `bound` of a resource that has taken no token yet.
const UNBOUND: u32 = u32::MAX;

/// The packed form of `token` presented from `source`, or [`UNPACKABLE`].
#[inline(always)]
fn pack(token: Token, source: SourceId) -> u64 {
    let (generation, holder) = (token.generation.get(), token.holder.get());
    let source = source.as_u32() as u64;
    if generation <= GENERATION_PACKED_MAX
        && holder < (1 << HOLDER_BITS)
        && source < (1 << SOURCE_BITS)
    {
        (generation << (HOLDER_BITS + SOURCE_BITS)) | (source << HOLDER_BITS) | holder
    } else {
        UNPACKABLE
    }
}

fn unpack(packed: u64) -> Option<(Token, SourceId)> {
    let token = Token::from_parts(
        packed >> (HOLDER_BITS + SOURCE_BITS),
        packed & ((1 << HOLDER_BITS) - 1),
    )
    .ok()?;
    let source = (packed >> HOLDER_BITS) & ((1 << SOURCE_BITS) - 1);
    Some((token, SourceId::from_u32(source as u32)))
}

/// Proof that the caller holds a slot's advance lock.
pub(super) struct AdvanceGuard<'a>(
    #[allow(dead_code, reason = "held for its Drop")] MutexGuard<'a, ()>,
);

#[derive(Debug)]
pub(super) struct Slot {
    /// 0: no mark. `WIDE`: the mark is in the wide words. Otherwise the packed mark.
    packed: AtomicU64,
    /// The wide words' seqlock: odd while a writer rewrites them.
    seq: AtomicU64,
    generation: AtomicU64,
    holder: AtomicU64,
    source: AtomicU32,
    /// The source this resource takes tokens from, `UNBOUND` before its first. Under the lock.
    bound: AtomicU32,
    /// Serialises the slow path (advances, stale and conflict decisions, rebases).
    advance: Mutex<()>,
    pub(super) key: OnceLock<Box<[u8]>>,
    pub(super) advanced: AtomicU64,
    pub(super) stale: AtomicU64,
    pub(super) conflicts: AtomicU64,
    pub(super) foreign: AtomicU64,
    /// The rebases the resource keeps (each former source's last), for rebases back to a
    /// former source, compaction and reports. Taken under the advance lock when both are.
    pub(super) rebases: Mutex<History>,
}

impl Default for Slot {
    fn default() -> Slot {
        Slot {
            packed: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            holder: AtomicU64::new(0),
            source: AtomicU32::new(0),
            bound: AtomicU32::new(UNBOUND),
            advance: Mutex::new(()),
            key: OnceLock::new(),
            advanced: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            rebases: Mutex::new(History::default()),
        }
    }
}

impl Slot {
    /// The hot path: true iff `token` presented from `source` is the current mark.
    #[inline(always)]
    pub(super) fn holds(&self, token: Token, source: SourceId) -> bool {
        let packed = self.packed.load(Ordering::Acquire);
        if packed == pack(token, source) {
            return true;
        }
        packed == WIDE && self.wide_holds(token, source)
    }

    #[cold]
    #[inline(never)]
    fn wide_holds(&self, token: Token, source: SourceId) -> bool {
        self.read_wide() == Some((token, source))
    }

    /// The wide words, read consistently.
    fn read_wide(&self) -> Option<(Token, SourceId)> {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let generation = self.generation.load(Ordering::Relaxed);
            let holder = self.holder.load(Ordering::Relaxed);
            let source = self.source.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                let token = Token::from_parts(generation, holder).ok()?;
                return Some((token, SourceId::from_u32(source)));
            }
        }
    }

    /// The current mark and its source, read consistently without the lock.
    pub(super) fn current(&self) -> Option<(Token, SourceId)> {
        match self.packed.load(Ordering::Acquire) {
            0 => None,
            WIDE => self.read_wide(),
            packed => unpack(packed),
        }
    }

    pub(super) fn lock(&self) -> AdvanceGuard<'_> {
        // Nothing panics while the lock is held between consistent states.
        AdvanceGuard(self.advance.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The current mark; with the lock held no writer runs.
    pub(super) fn current_locked(&self, _guard: &AdvanceGuard<'_>) -> Option<(Token, SourceId)> {
        self.current()
    }

    /// The source the resource is bound to, `None` before its first token or rebase.
    pub(super) fn bound(&self, _guard: &AdvanceGuard<'_>) -> Option<SourceId> {
        match self.bound.load(Ordering::Relaxed) {
            UNBOUND => None,
            source => Some(SourceId::from_u32(source)),
        }
    }

    /// The bound source, read without the lock (for reports, not decisions).
    pub(super) fn bound_unlocked(&self) -> Option<SourceId> {
        match self.bound.load(Ordering::Acquire) {
            UNBOUND => None,
            source => Some(SourceId::from_u32(source)),
        }
    }

    /// Replaces the mark (binding the resource to its source). The caller made it durable.
    pub(super) fn publish(&self, _guard: &AdvanceGuard<'_>, token: Token, source: SourceId) {
        self.bound.store(source.as_u32(), Ordering::Release);
        let packed = pack(token, source);
        if packed != UNPACKABLE {
            self.packed.store(packed, Ordering::SeqCst);
            return;
        }
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.generation
            .store(token.generation.get(), Ordering::Relaxed);
        self.holder.store(token.holder.get(), Ordering::Relaxed);
        self.source.store(source.as_u32(), Ordering::Relaxed);
        self.seq.store(seq + 2, Ordering::Release);
        self.packed.store(WIDE, Ordering::SeqCst);
    }

    /// Removes the mark and binds the resource to `source` (a rebase). The caller made it
    /// durable. From here the slow path decides every token.
    pub(super) fn rebind(&self, _guard: &AdvanceGuard<'_>, source: SourceId) {
        self.packed.store(0, Ordering::SeqCst);
        self.bound.store(source.as_u32(), Ordering::Release);
    }

    /// Sets the binding and mark while the fence is being opened, before any reader exists.
    pub(super) fn restore(&mut self, source: SourceId, mark: Option<Token>) {
        *self.bound.get_mut() = source.as_u32();
        let Some(token) = mark else { return };
        match pack(token, source) {
            UNPACKABLE => {
                *self.generation.get_mut() = token.generation.get();
                *self.holder.get_mut() = token.holder.get();
                *self.source.get_mut() = source.as_u32();
                *self.packed.get_mut() = WIDE;
            }
            packed => *self.packed.get_mut() = packed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNNAMED: SourceId = SourceId::UNNAMED;

    #[test]
    fn an_empty_slot_holds_nothing() {
        let slot = Slot::default();
        assert_eq!(slot.current(), None);
        assert!(!slot.holds(Token::from_parts(1, 1).unwrap(), UNNAMED));
        assert_eq!(slot.bound(&slot.lock()), None);
    }

    #[test]
    fn marks_move_between_packed_and_wide_forms() {
        let slot = Slot::default();
        let compact = Token::from_parts(5, 3).unwrap();
        let wide_holder = Token::from_parts(6, 1 << 40).unwrap();
        let wide_generation = Token::from_parts(1 << 50, 3).unwrap();
        let wide_source = SourceId::from_u32(500);
        let sources = [UNNAMED, SourceId::from_u32(1), wide_source];
        let guard = slot.lock();
        for token in [compact, wide_holder, wide_generation, compact, wide_holder] {
            for source in sources {
                slot.publish(&guard, token, source);
                assert_eq!(slot.current(), Some((token, source)));
                assert_eq!(slot.bound(&guard), Some(source));
                for other in [compact, wide_holder, wide_generation] {
                    for other_source in sources {
                        assert_eq!(
                            slot.holds(other, other_source),
                            (other, other_source) == (token, source),
                            "{token:?}@{source:?} vs {other:?}@{other_source:?}"
                        );
                    }
                }
            }
        }
        // A packed value never equals an unpackable token's, nor the no-mark value.
        assert_ne!(pack(wide_generation, UNNAMED), 0);
        assert_ne!(pack(wide_generation, UNNAMED), WIDE);
        assert_eq!(pack(compact, wide_source), UNPACKABLE);
    }

    #[test]
    fn publish_replaces_every_word() {
        let slot = Slot::default();
        let a = Token::from_parts(3, 7).unwrap();
        let b = Token::from_parts(3, 8).unwrap();
        let guard = slot.lock();
        slot.publish(&guard, a, UNNAMED);
        assert!(slot.holds(a, UNNAMED) && !slot.holds(b, UNNAMED));
        slot.publish(&guard, b, UNNAMED);
        assert!(slot.holds(b, UNNAMED) && !slot.holds(a, UNNAMED));
        assert_eq!(slot.current_locked(&guard), Some((b, UNNAMED)));
        drop(guard);
        assert_eq!(slot.current(), Some((b, UNNAMED)));
    }

    #[test]
    fn a_rebind_leaves_no_mark_and_a_new_binding() {
        let slot = Slot::default();
        let token = Token::from_parts(9, 1 << 40).unwrap();
        let guard = slot.lock();
        slot.publish(&guard, token, UNNAMED);
        slot.rebind(&guard, SourceId::from_u32(2));
        assert_eq!(slot.current(), None);
        assert!(!slot.holds(token, UNNAMED));
        assert_eq!(slot.bound(&guard), Some(SourceId::from_u32(2)));
    }

    /// Readers of a wide mark being rewritten see one whole mark or another, never a mix
    /// (the holder of one with the source of another would accept a foreign token).
    #[test]
    fn wide_readers_never_see_a_mix() {
        let slot = std::sync::Arc::new(Slot::default());
        let marks = [
            (
                Token::from_parts(7, 1 << 40).unwrap(),
                SourceId::from_u32(300),
            ),
            (
                Token::from_parts(7, (1 << 40) + 1).unwrap(),
                SourceId::from_u32(301),
            ),
        ];
        // The writer rewrites until the reader has read its fill, so the two overlap however
        // the threads are scheduled (a writer that finished first left nothing to test).
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (slot, done) = (std::sync::Arc::clone(&slot), std::sync::Arc::clone(&done));
            std::thread::spawn(move || {
                let guard = slot.lock();
                let mut published = 0u64;
                while !done.load(std::sync::atomic::Ordering::Relaxed) || published < 1000 {
                    let (token, source) = marks[(published % 2) as usize];
                    slot.publish(&guard, token, source);
                    published += 1;
                }
                published
            })
        };
        let mut seen = 0u64;
        while seen < 200_000 {
            if let Some(mark) = slot.current() {
                assert!(marks.contains(&mark), "a mixed mark {mark:?}");
                seen += 1;
            }
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(writer.join().unwrap() >= 1000);
    }
}
