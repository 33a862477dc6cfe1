//! Key to resource lookup: an insert-only, open-addressing hash index that readers probe
//! without a lock.
//!
//! Resources are never unregistered and the fence's capacity is fixed when it opens, so the
//! index is allocated once at twice the capacity (load factor at most 1/2) and never resizes:
//! readers need no reclamation scheme, only an Acquire load per probed bucket. Writers are
//! serialised by the fence's registration lock. The hash is seeded per fence, so a client that
//! chooses keys cannot aim collisions at it.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};

use super::slot::Slot;

#[derive(Debug)]
pub(super) struct KeyIndex {
    /// 0: empty. Otherwise a resource index + 1. Invariant: a non-zero bucket's slot has its
    /// key set before the bucket is published.
    buckets: Box<[AtomicU32]>,
    mask: usize,
    hasher: foldhash::fast::RandomState,
}

impl KeyIndex {
    pub(super) fn with_capacity(resources: usize) -> KeyIndex {
        let len = (resources * 2).next_power_of_two();
        KeyIndex {
            buckets: (0..len).map(|_| AtomicU32::new(0)).collect(),
            mask: len - 1,
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// The resource index of `key`, if registered.
    #[inline]
    pub(super) fn find(&self, key: &[u8], slots: &[Slot]) -> Option<usize> {
        let mut bucket = self.hasher.hash_one(key) as usize & self.mask;
        loop {
            let entry = self.buckets[bucket].load(Ordering::Acquire);
            if entry == 0 {
                return None;
            }
            let index = entry as usize - 1;
            if slots[index].key.get().is_some_and(|k| **k == *key) {
                return Some(index);
            }
            bucket = (bucket + 1) & self.mask;
        }
    }

    /// Publishes `index` under `key`. The caller holds the registration lock, has set the
    /// slot's key, and knows the key is absent; the load factor bound guarantees a free bucket.
    pub(super) fn insert(&self, key: &[u8], index: usize) {
        let mut bucket = self.hasher.hash_one(key) as usize & self.mask;
        while self.buckets[bucket].load(Ordering::Relaxed) != 0 {
            bucket = (bucket + 1) & self.mask;
        }
        let entry = u32::try_from(index + 1).expect("resource index fits u32 (limits.rs)");
        self.buckets[bucket].store(entry, Ordering::Release);
    }
}
