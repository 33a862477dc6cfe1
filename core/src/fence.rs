//! The fencing check (DESIGN.md I5): the storage side's final word on whether a write may land.
//!
//! For each resource the fence keeps a durable high-water mark, the newest token it accepted.
//! A token is checked against it:
//!
//! | token vs. mark                          | verdict                                   |
//! |-----------------------------------------|-------------------------------------------|
//! | same generation, same holder            | [`Verdict::Accepted`] (the hot path)      |
//! | higher generation, or no mark yet       | [`Verdict::Advanced`], durable first      |
//! | lower generation                        | [`Verdict::Stale`]                        |
//! | same generation, another holder         | [`Verdict::Conflict`] unless the [`TieBreaker`] hands the generation over |
//! | from another source than the resource's | [`Verdict::ForeignSource`], whatever the numbers |
//!
//! Each resource takes tokens from one source (`source.rs`): the first token it accepts binds
//! it, and only an operator's [`Fence::rebase`] moves it to another. [`Fence::check`] presents
//! tokens of the unnamed source; [`Fence::check_from`] names theirs.
//!
//! The hot path is two or three atomic loads and a compare, with no allocation, lock, log or
//! syscall. Everything else takes the resource's lock; an advance appends the new mark to the
//! write-ahead log and waits for fdatasync (group-committed with concurrent advances) before it
//! publishes the mark and returns, so every `Advanced` ever returned survives a crash.

mod accepted;
mod key_index;
pub(crate) mod mark;
mod rebase;
mod slot;
mod sources;
mod write;

use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::{FenceError, FenceFault, LogError, OutOfRange};
use crate::fork::Usable;
use crate::limits::{
    BATCH_MAX, COMPACT_AFTER_BYTES_DEFAULT, COMPACT_AFTER_BYTES_MAX, COMPACT_AFTER_BYTES_MIN,
    KEY_LEN_MAX, RESOURCES_DEFAULT, RESOURCES_MAX,
};
use crate::planted::{self, PlantedBug};
use crate::policy::{ConflictResolution, RejectConflicts, TieBreaker, WriteValidator};
use crate::source::Source;
use crate::token::Token;
use crate::wal::{LogOwner, RecordKind, RecoveryReport, Wal, WalOptions};
use accepted::AcceptedCounters;
use key_index::KeyIndex;
use mark::Replayed;
pub use rebase::{Rebase, validate_by_len};
use slot::{AdvanceGuard, Slot};
pub use sources::SourceId;
use sources::Sources;
pub use write::WriteVerdict;

/// A key and its state as replaying the log gives them.
type KeyState = (Box<[u8]>, Replayed);

/// A registered resource of one [`Fence`]: an index, valid only with the fence that returned
/// it (ids are not stable across reopening; keys are).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId(u32);

impl ResourceId {
    /// The id's number.
    pub const fn as_u32(self) -> u32 {
        self.0
    }

    /// An id from its number, as received across an ABI; the fence checks it on use.
    pub const fn from_u32(raw: u32) -> ResourceId {
        ResourceId(raw)
    }

    #[inline(always)]
    const fn index(self) -> usize {
        self.0 as usize
    }
}

/// The fence's answer to a token.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The token is the current mark: the write may land.
    Accepted,
    /// The token is newer than the mark (or took over a conflict): the new mark is durable and
    /// the write may land. `previous` is the mark it replaced, `None` for a resource's first.
    Advanced {
        /// The mark before this one.
        previous: Option<Token>,
    },
    /// The token is older than the mark: a deposed leader. The write must not land.
    Stale {
        /// The mark that outranks the token.
        current: Token,
    },
    /// Another holder has the token's generation: split brain. The write must not land.
    Conflict {
        /// The mark of the other holder.
        current: Token,
    },
    /// The token comes from another source than the resource's (numbers from two
    /// coordinators are not comparable). The write must not land. An operator moves a
    /// resource to a new source with [`Fence::rebase`].
    ForeignSource {
        /// The source the resource takes tokens from ([`Fence::source`] names it).
        bound: SourceId,
    },
}

impl Verdict {
    /// True for [`Verdict::Accepted`] and [`Verdict::Advanced`]: the write may land.
    #[inline]
    pub const fn is_accepted(&self) -> bool {
        matches!(self, Verdict::Accepted | Verdict::Advanced { .. })
    }
}

/// What a fence has decided for one resource since it was opened (not persisted).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Checks answered [`Verdict::Accepted`] while counting them was on (it is unless the host
    /// turned it off with [`Fence::set_count_accepted`]).
    pub accepted: u64,
    /// Checks answered [`Verdict::Advanced`].
    pub advanced: u64,
    /// Checks answered [`Verdict::Stale`].
    pub stale: u64,
    /// Conflicts met, whichever way the tie-breaker settled them.
    pub conflicts: u64,
    /// Checks answered [`Verdict::ForeignSource`].
    pub foreign: u64,
}

/// Options of [`Fence::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceOptions {
    /// How many resources the fence can hold, at most [`RESOURCES_MAX`]. Memory is reserved
    /// for all of them when the fence opens: about 90 bytes each, plus 8 bytes per resource
    /// for each thread that checks (counter rows cost address space only until then).
    pub max_resources: usize,
    /// Compact the log once it holds this many bytes more than its last snapshot (and at
    /// least as many as the snapshot itself, so compaction costs amortise).
    pub compact_after_bytes: u64,
    /// The log's options.
    pub wal: WalOptions,
    /// What the log belongs to: [`LogOwner::Fence`], or [`LogOwner::Store`] for a fencekit
    /// store. A directory of another owner is refused.
    pub owner: LogOwner,
}

impl Default for FenceOptions {
    fn default() -> Self {
        FenceOptions {
            max_resources: RESOURCES_DEFAULT,
            compact_after_bytes: COMPACT_AFTER_BYTES_DEFAULT,
            wal: WalOptions::default(),
            owner: LogOwner::Fence,
        }
    }
}

/// The durable fencing check of one storage. `Send + Sync`; every method takes `&self`.
pub struct Fence {
    /// Invariant: slots `..registered` have keys; their marks are durable in `wal`.
    slots: Box<[Slot]>,
    registered: AtomicUsize,
    register_lock: Mutex<()>,
    index: KeyIndex,
    accepted: AcceptedCounters,
    wal: Wal,
    /// Advances hold it shared from append to publish; compaction holds it exclusively, so a
    /// snapshot sees every mark the log it replaces holds.
    compaction_gate: RwLock<()>,
    /// Log size at which the next compaction runs.
    compact_at: AtomicU64,
    compact_after_bytes: u64,
    tie_breaker: RwLock<Arc<dyn TieBreaker>>,
    sources: Sources,
    /// The validator [`Fence::check_write`] asks: read on every write, so a bare pointer load.
    /// Invariant: null, or a pointer into a box of `validators`.
    validator: std::sync::atomic::AtomicPtr<Arc<dyn WriteValidator>>,
    /// Every validator ever set on this fence, kept until it closes, so that a check that
    /// loaded one just before it was replaced never sees it freed. Replacing is rare.
    #[allow(
        clippy::vec_box,
        reason = "`validator` points into these boxes: they must not move when the Vec grows"
    )]
    validators: Mutex<Vec<Box<Arc<dyn WriteValidator>>>>,
    /// False in a child after fork (`fork.rs`), and once the log failed: the hot path then
    /// refuses too, since another process may by now own the marks (a directory moved away
    /// and reopened) and this fence can no longer advance.
    usable: Usable,
}

impl fmt::Debug for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fence")
            .field("dir", &self.wal.dir())
            .field("resources", &self.len())
            .field("capacity", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// Refuses a key no fence can hold: empty, or longer than [`KEY_LEN_MAX`] bytes
/// ([`FenceFault::InvalidKey`], saying which). Every call that takes a key checks it; a lookup by
/// key across the C ABI checks it too, so that a bad key reads as bad, not as unregistered.
pub fn validate_key(key: &[u8]) -> Result<(), FenceError> {
    validate_key_len(key.len())
}

/// [`validate_key`] on a key's length alone: the C ABI refuses a length no key can have
/// before it reads a byte, so a claimed length is never hashed or copied.
pub fn validate_key_len(len: usize) -> Result<(), FenceError> {
    if len == 0 || len > KEY_LEN_MAX {
        return Err(FenceFault::InvalidKey { len }.into());
    }
    Ok(())
}

/// The verdict for a token of `source` if the resource, under its lock, takes tokens from
/// another source (counted as such), or `None` if `source` is the resource's.
fn foreign_to(slot: &Slot, guard: &AdvanceGuard<'_>, source: SourceId) -> Option<Verdict> {
    let bound = slot.bound(guard).filter(|&bound| bound != source)?;
    slot.foreign.fetch_add(1, Ordering::Relaxed);
    Some(Verdict::ForeignSource { bound })
}

impl Fence {
    /// Opens (creating if needed) the fence whose log is in `dir`, restoring every mark.
    pub fn open(dir: impl AsRef<Path>, options: FenceOptions) -> Result<Fence, FenceError> {
        if options.max_resources == 0 || options.max_resources > RESOURCES_MAX {
            return Err(FenceFault::Option(OutOfRange::new(
                "FenceOptions::max_resources",
                options.max_resources as u64,
                1,
                RESOURCES_MAX as u64,
            ))
            .into());
        }
        let compact = OutOfRange::new(
            "FenceOptions::compact_after_bytes",
            options.compact_after_bytes,
            COMPACT_AFTER_BYTES_MIN,
            COMPACT_AFTER_BYTES_MAX,
        );
        if !compact.holds() {
            return Err(FenceFault::Option(compact).into());
        }
        if matches!(options.owner, LogOwner::Node { .. }) {
            return Err(LogError::WrongOwner {
                path: dir.as_ref().to_path_buf(),
                found: format!("a fence asked to open as {}", options.owner),
                expected: "a fence opened as LogOwner::Fence or LogOwner::Store".into(),
            }
            .into());
        }
        let (wal, order) = Self::replay(dir.as_ref(), &options)?;
        let registered = order.len();
        if registered > options.max_resources {
            return Err(FenceFault::TooManyResources {
                max: options.max_resources,
            }
            .into());
        }

        let mut slots: Box<[Slot]> = (0..options.max_resources)
            .map(|_| Slot::default())
            .collect();
        let index = KeyIndex::with_capacity(options.max_resources);
        let sources = Sources::new();
        for (i, (key, state)) in order.into_iter().enumerate() {
            let source = sources.intern(state.source.as_ref().unwrap_or(&Source::UNNAMED))?;
            slots[i].restore(source, state.mark);
            *slots[i]
                .rebases
                .get_mut()
                .unwrap_or_else(|p| p.into_inner()) = state.rebases;
            index.insert(&key, i);
            slots[i].key.set(key).expect("fresh slot");
        }
        let live = wal.live_bytes();
        Ok(Fence {
            accepted: AcceptedCounters::new(options.max_resources),
            slots,
            registered: AtomicUsize::new(registered),
            register_lock: Mutex::new(()),
            index,
            wal,
            compaction_gate: RwLock::new(()),
            compact_at: AtomicU64::new(live.saturating_add(options.compact_after_bytes.max(live))),
            compact_after_bytes: options.compact_after_bytes,
            tie_breaker: RwLock::new(Arc::new(RejectConflicts)),
            sources,
            validator: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
            validators: Mutex::new(Vec::new()),
            usable: Usable::here(),
        })
    }

    /// Opens the log and replays it: each key's source, mark and last rebase, in the order
    /// the keys first appear.
    fn replay(dir: &Path, options: &FenceOptions) -> Result<(Wal, Vec<KeyState>), FenceError> {
        let mut order: Vec<KeyState> = Vec::new();
        let mut positions: HashMap<Box<[u8]>, usize> = HashMap::new();
        let wal = Wal::open(dir, options.owner, options.wal.clone(), &mut |record| {
            let decoded = mark::decode(&record)?;
            let key = decoded.key();
            let i = match positions.get(key) {
                Some(&i) => i,
                None => {
                    positions.insert(key.into(), order.len());
                    order.push((key.into(), Replayed::default()));
                    order.len() - 1
                }
            };
            order[i].1.apply(decoded).map_err(|why| record.corrupt(why))
        })?;
        Ok((wal, order))
    }

    /// Replaces the policy that settles conflicts (the default rejects them all).
    pub fn set_tie_breaker(&self, tie_breaker: Arc<dyn TieBreaker>) {
        *self.tie_breaker.write().unwrap_or_else(|p| p.into_inner()) = tie_breaker;
    }

    /// The id of `key`, registering it if new. Registration itself writes nothing durable:
    /// a resource without a mark has nothing to protect.
    pub fn register(&self, key: &[u8]) -> Result<ResourceId, FenceError> {
        self.usable.opened().check("fence")?;
        validate_key(key)?;
        if let Some(index) = self.index.find(key, &self.slots) {
            return Ok(ResourceId(index as u32));
        }
        let _guard = self.register_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(index) = self.index.find(key, &self.slots) {
            return Ok(ResourceId(index as u32));
        }
        let index = self.registered.load(Ordering::Relaxed);
        if index == self.slots.len() {
            return Err(FenceFault::TooManyResources {
                max: self.slots.len(),
            }
            .into());
        }
        self.slots[index]
            .key
            .set(key.into())
            .expect("slot beyond `registered` is fresh");
        // Publish the count before the index entry: whoever finds the key may use its id.
        self.registered.store(index + 1, Ordering::Release);
        self.index.insert(key, index);
        Ok(ResourceId(index as u32))
    }

    /// The id of `key` if it is registered.
    pub fn lookup(&self, key: &[u8]) -> Option<ResourceId> {
        self.index
            .find(key, &self.slots)
            .map(|index| ResourceId(index as u32))
    }

    /// Checks `token`, of the unnamed source, for the resource `id` (see the module docs for
    /// the verdicts).
    // Always inlined: called out of line, the verdict comes back through memory in a way
    // that stalls the caller's read of it (measured: 13.6 ns instead of 4.9 ns).
    #[inline(always)]
    pub fn check(&self, id: ResourceId, token: Token) -> Result<Verdict, FenceError> {
        self.check_from(id, SourceId::UNNAMED, token)
    }

    /// Checks `token`, minted by `source` (from [`Fence::source_id`]), for the resource `id`.
    /// A source the resource is not bound to gets [`Verdict::ForeignSource`]; an id this fence
    /// never gave is an error ([`FenceFault::InvalidSource`]).
    #[inline(always)]
    pub fn check_from(
        &self,
        id: ResourceId,
        source: SourceId,
        token: Token,
    ) -> Result<Verdict, FenceError> {
        let index = id.index();
        let Some(slot) = self.slots.get(index) else {
            return Err(FenceFault::UnknownResource(id.0).into());
        };
        if slot.holds(token, source) && self.usable.now() {
            self.accepted.count(index);
            return Ok(Verdict::Accepted);
        }
        self.check_slow(index, source, token)
    }

    /// Checks `token`, of the unnamed source, for the resource named `key`, registering the
    /// key if it is new.
    #[inline]
    pub fn check_key(&self, key: &[u8], token: Token) -> Result<Verdict, FenceError> {
        self.check_key_from(key, SourceId::UNNAMED, token)
    }

    /// [`Fence::check_from`] by key, registering the key if it is new.
    #[inline]
    pub fn check_key_from(
        &self,
        key: &[u8],
        source: SourceId,
        token: Token,
    ) -> Result<Verdict, FenceError> {
        // Before the lookup: a key no fence holds is refused, not hashed however long it is.
        validate_key_len(key.len())?;
        let id = match self.index.find(key, &self.slots) {
            Some(index) => ResourceId(index as u32),
            None => self.register(key)?,
        };
        self.check_from(id, source, token)
    }

    /// The id of token source `source` in this fence, given one if it is new (at most
    /// [`crate::limits::SOURCES_MAX`] per fence). Look it up once, not per check.
    pub fn source_id(&self, source: &Source) -> Result<SourceId, FenceError> {
        self.sources.intern(source)
    }

    /// The source of `id`, as [`Fence::source_id`] gave it or a verdict names it.
    pub fn source(&self, id: SourceId) -> Result<Source, FenceError> {
        self.sources.name(id)
    }

    /// The source the resource `id` takes tokens from: `None` until its first token (or a
    /// rebase) binds it.
    pub fn bound_source(&self, id: ResourceId) -> Result<Option<Source>, FenceError> {
        let slot = self.registered_slot(id)?;
        slot.bound_unlocked()
            .map(|b| self.sources.name(b))
            .transpose()
    }

    /// The resource's last rebase, if it had one (kept across reopening and compaction).
    pub fn last_rebase(&self, id: ResourceId) -> Result<Option<Rebase>, FenceError> {
        let slot = self.registered_slot(id)?;
        Ok(slot
            .rebases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .cloned())
    }

    /// Checks each `(id, token)` of `items`, writing the verdicts to `out` in order.
    ///
    /// `out` must be as long as `items`, and `items` at most [`BATCH_MAX`] long. Every id is
    /// validated before any check runs, so a bad id changes nothing: it fails the batch with
    /// [`FenceFault::InvalidBatch`], whose message names the item's index. An I/O error during an
    /// advance stops the batch: the items before it took effect and their verdicts are in
    /// `out`; the failing item and those after it did not.
    pub fn check_batch(
        &self,
        items: &[(ResourceId, Token)],
        out: &mut [Verdict],
    ) -> Result<(), FenceError> {
        if out.len() != items.len() {
            return Err(FenceFault::InvalidBatch(format!(
                "{} items but {} verdict slots",
                items.len(),
                out.len()
            ))
            .into());
        }
        self.check_batch_by(
            items.len(),
            |i| Ok(items[i]),
            |i, _, verdict| out[i] = verdict,
        )
    }

    /// [`Fence::check_batch`] over items that are not `(ResourceId, Token)` pairs in memory
    /// (the C ABI's records), without copying them: `item(i)` gives item `i`, or why it is not
    /// valid, and must give the same answer each time; `verdict(i, token, v)` receives each
    /// verdict with the token it answers.
    ///
    /// Every item is validated before any check runs, so a bad item changes nothing: an id
    /// this fence never handed out, or an item `item(i)` refuses, fails the batch with
    /// [`FenceFault::InvalidBatch`], whose message begins `item <i>: `.
    #[inline]
    pub fn check_batch_by(
        &self,
        len: usize,
        item: impl Fn(usize) -> Result<(ResourceId, Token), FenceError>,
        mut verdict: impl FnMut(usize, Token, Verdict),
    ) -> Result<(), FenceError> {
        if len > BATCH_MAX {
            return Err(FenceFault::BatchTooLong(OutOfRange::new(
                "batch length",
                len as u64,
                0,
                BATCH_MAX as u64,
            ))
            .into());
        }
        let registered = self.registered.load(Ordering::Acquire);
        for i in 0..len {
            match item(i) {
                // A bad id is a bad item, like a bad token: the batch's error names it.
                Ok((id, _)) if id.index() >= registered => {
                    return Err(FenceFault::InvalidBatch(format!(
                        "item {i}: {}",
                        FenceFault::UnknownResource(id.0)
                    ))
                    .into());
                }
                Ok(_) => {}
                Err(e) => return Err(FenceFault::InvalidBatch(format!("item {i}: {e}")).into()),
            }
        }
        // Read once, into locals the loop keeps in registers (the fence's own fields would be
        // reloaded after every counter write).
        let slots = &self.slots[..registered];
        let row = self.accepted.row_if_on();
        // A batch that started while the fence was usable is one that ran before it stopped
        // being so (and a fork leaves no other thread running in the child).
        let usable = self.usable.now();
        for i in 0..len {
            let (id, token) = item(i)?;
            let index = id.index();
            // Two calls of `verdict`, not one with a merged answer: an acceptance is then
            // written as a constant (one byte), not copied whole from the slow path's result.
            match slots.get(index) {
                Some(slot) if usable && slot.holds(token, SourceId::UNNAMED) => {
                    if let Some(row) = &row {
                        row.add(index);
                    }
                    verdict(i, token, Verdict::Accepted);
                }
                _ => verdict(i, token, self.check_slow(index, SourceId::UNNAMED, token)?),
            }
        }
        Ok(())
    }

    /// Everything but the current token: under the resource's lock.
    #[cold]
    #[inline(never)]
    fn check_slow(
        &self,
        index: usize,
        source: SourceId,
        token: Token,
    ) -> Result<Verdict, FenceError> {
        // Forks first: in a child, the log's locks may have been held by a parent's thread.
        self.usable.opened().check("fence")?;
        if !self.usable.now()
            && let Some(reason) = self.wal.failure()
        {
            return Err(LogError::Poisoned(reason).into());
        }
        if index >= self.registered.load(Ordering::Acquire) {
            return Err(FenceFault::UnknownResource(index as u32).into());
        }
        if !self.sources.contains(source) {
            return Err(FenceFault::InvalidSource(format!(
                "id {}: this fence gave no such id",
                source.as_u32()
            ))
            .into());
        }
        let slot = &self.slots[index];
        // Within a source marks only grow, so a token older than the mark read now is stale
        // for good (a rebase makes the source foreign): say so without waiting for the lock,
        // which an advance holds across its fdatasync.
        if let Some((current, of)) = slot.current()
            && of == source
            && token.generation < current.generation
        {
            slot.stale.fetch_add(1, Ordering::Relaxed);
            return Ok(Verdict::Stale { current });
        }
        let guard = slot.lock();
        if let Some(foreign) = foreign_to(slot, &guard, source) {
            return Ok(foreign);
        }
        let verdict = match slot.current_locked(&guard).map(|(token, _)| token) {
            None => self.advance(slot, &guard, token, source, None)?,
            Some(current) if token.generation > current.generation => {
                self.advance(slot, &guard, token, source, Some(current))?
            }
            Some(current) if token.generation < current.generation => {
                slot.stale.fetch_add(1, Ordering::Relaxed);
                Verdict::Stale { current }
            }
            // A concurrent advance to this very token finished while we waited for the lock.
            Some(current) if token.holder == current.holder => {
                self.accepted.count(index);
                Verdict::Accepted
            }
            Some(current) => {
                slot.conflicts.fetch_add(1, Ordering::Relaxed);
                drop(guard);
                return self.settle_conflict(index, slot, source, current, token);
            }
        };
        drop(guard);
        if matches!(verdict, Verdict::Advanced { .. }) {
            self.maybe_compact();
        }
        Ok(verdict)
    }

    /// A conflict, put to the tie-breaker with the resource's lock released: a policy may
    /// take its whole budget (a plugin's fuel, a slow Rust rule), and a newer leader's
    /// advance, which needs the lock, must not wait for it. The lock is taken again to act on
    /// the answer, against the mark as it is then: if it moved meanwhile, the request is
    /// decided against the new mark and the answer is not used.
    fn settle_conflict(
        &self,
        index: usize,
        slot: &Slot,
        source: SourceId,
        current: Token,
        token: Token,
    ) -> Result<Verdict, FenceError> {
        let resolution = self.resolve_conflict(slot, current, token);
        let guard = slot.lock();
        // A rebase meanwhile made the token's source foreign.
        if let Some(foreign) = foreign_to(slot, &guard, source) {
            return Ok(foreign);
        }
        let verdict = match slot.current_locked(&guard).map(|(token, _)| token) {
            Some(now) if now == current => match resolution {
                ConflictResolution::KeepCurrent => Verdict::Conflict { current },
                ConflictResolution::Challenger => {
                    self.advance(slot, &guard, token, source, Some(current))?
                }
            },
            Some(now) if token.generation < now.generation => {
                slot.stale.fetch_add(1, Ordering::Relaxed);
                Verdict::Stale { current: now }
            }
            // Another request of this holder at this generation won a tie-break meanwhile.
            Some(now) if now == token => {
                self.accepted.count(index);
                Verdict::Accepted
            }
            // The generation changed hands meanwhile: still a conflict, with the new holder
            // (not put to the policy again: a request is decided once).
            Some(now) => Verdict::Conflict { current: now },
            // Within a source marks never go back; were one gone, refusing is the safe answer.
            None => Verdict::Conflict { current },
        };
        drop(guard);
        if matches!(verdict, Verdict::Advanced { .. }) {
            self.maybe_compact();
        }
        Ok(verdict)
    }

    fn resolve_conflict(
        &self,
        slot: &Slot,
        current: Token,
        challenger: Token,
    ) -> ConflictResolution {
        let tie_breaker = Arc::clone(&self.tie_breaker.read().unwrap_or_else(|p| p.into_inner()));
        let key = slot.key.get().map_or(&[][..], |k| &k[..]);
        // Fail closed (I7): a policy that panics keeps the current holder.
        catch_unwind(AssertUnwindSafe(|| {
            tie_breaker.resolve_conflict(key, current, challenger)
        }))
        .unwrap_or(ConflictResolution::KeepCurrent)
    }

    /// Makes `token` the durable mark, then publishes it. On error nothing changed.
    fn advance(
        &self,
        slot: &Slot,
        guard: &AdvanceGuard<'_>,
        token: Token,
        source: SourceId,
        previous: Option<Token>,
    ) -> Result<Verdict, FenceError> {
        let _gate = self
            .compaction_gate
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let key = slot.key.get().expect("registered slot has a key");
        let (kind, record) = mark::encode_mark(token, &self.sources.name(source)?, key);
        let written = if planted::active(PlantedBug::FenceAckBeforeDurable) {
            self.wal.append(kind, token.generation.get(), &record)
        } else {
            self.wal.append_sync(kind, token.generation.get(), &record)
        };
        if let Err(e) = written {
            self.revoke_if_log_failed();
            return Err(e.into());
        }
        slot.publish(guard, token, source);
        slot.advanced.fetch_add(1, Ordering::Relaxed);
        Ok(Verdict::Advanced { previous })
    }

    fn maybe_compact(&self) {
        let live = self.wal.live_bytes();
        let at = self.compact_at.load(Ordering::Relaxed);
        // One advancing thread claims the compaction; the others go on.
        if live < at
            || self
                .compact_at
                .compare_exchange(at, u64::MAX, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        // A failed compaction changed nothing (or left only garbage that the next open
        // removes); try again after the log has grown as much again. If the log itself failed,
        // the next advance reports it.
        let next = match self.compact() {
            Ok(()) => {
                let snapshot = self.wal.live_bytes();
                snapshot.saturating_add(self.compact_after_bytes.max(snapshot))
            }
            Err(_) => {
                self.revoke_if_log_failed();
                live * 2
            }
        };
        self.compact_at.store(next, Ordering::Relaxed);
    }

    /// Closes the fence: every check refuses from now on, and its log records how far it is
    /// durable (see [`Wal::close`]). Dropping the fence does the same; call this where the
    /// fence is shared and a server is stopping.
    pub fn close(&self) -> Result<(), FenceError> {
        self.usable.revoke();
        Ok(self.wal.close()?)
    }

    /// After a failed write: if the log refuses writes from now on, so does every check, the
    /// hot path included (I7).
    fn revoke_if_log_failed(&self) {
        if self.wal.failure().is_some() {
            self.usable.revoke();
        }
    }

    /// Rewrites the log as one snapshot of the current marks and removes the old segments.
    /// Runs by itself as the log grows; advances wait while it runs, checks do not.
    pub fn compact(&self) -> Result<(), FenceError> {
        let _gate = self
            .compaction_gate
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let registered = self.registered.load(Ordering::Acquire);
        Ok(self.wal.compact(&mut |snapshot| {
            for slot in &self.slots[..registered] {
                let Some(key) = slot.key.get() else { continue };
                // The rebases first, oldest first: the last binds the source and says who moved
                // it there, and the others keep each former source's last mark.
                for rebase in slot
                    .rebases
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                {
                    let (generation, record) = mark::encode_rebase(rebase, key);
                    snapshot.push(RecordKind::FENCE_REBASE, generation, &record)?;
                }
                if let Some((token, source)) = slot.current() {
                    // A slot's source was interned by this fence when its mark was set.
                    let source = self.sources.name(source).expect("an interned source");
                    let (kind, record) = mark::encode_mark(token, &source, key);
                    snapshot.push(kind, token.generation.get(), &record)?;
                }
            }
            Ok(())
        })?)
    }

    /// The current mark of `id`, or `None` if it has none yet.
    pub fn mark(&self, id: ResourceId) -> Result<Option<Token>, FenceError> {
        // In a child after fork, the mark is a copy its parent may have advanced since.
        self.usable.opened().check("fence")?;
        Ok(self.registered_slot(id)?.current().map(|(token, _)| token))
    }

    /// The identity of the fence's log (its random id and owner): a host that keeps other
    /// state beside the fence can record it and check, at the next start, that the fence's
    /// directory is still the same log (not deleted and recreated, not another's).
    pub fn log_identity(&self) -> crate::wal::LogIdentity {
        self.wal.identity()
    }

    /// Why the fence refuses every check until it is reopened: its log failed (an I/O error,
    /// a full disk, its directory moved away) or it was closed. `None` while it works.
    pub fn failure(&self) -> Option<String> {
        self.wal.failure()
    }

    /// The key `id` was registered under.
    pub fn key(&self, id: ResourceId) -> Result<&[u8], FenceError> {
        let slot = self.registered_slot(id)?;
        Ok(slot.key.get().expect("registered slot has a key"))
    }

    /// Turns the counting of accepted checks ([`Counters::accepted`]) on or off; it is on when
    /// a fence opens. A host that never reads that count turns it off to take its cost (a
    /// thread-local lookup and a counter's load and store, about a third of a current token's
    /// check) off the hot path; the other counts are kept either way.
    pub fn set_count_accepted(&self, on: bool) {
        self.accepted.set_on(on);
    }

    /// Whether accepted checks are being counted ([`Fence::set_count_accepted`]).
    pub fn counts_accepted(&self) -> bool {
        self.accepted.is_on()
    }

    /// What the fence decided for `id` since it was opened.
    pub fn counters(&self, id: ResourceId) -> Result<Counters, FenceError> {
        let slot = self.registered_slot(id)?;
        Ok(Counters {
            accepted: self.accepted.total(id.index()),
            advanced: slot.advanced.load(Ordering::Relaxed),
            stale: slot.stale.load(Ordering::Relaxed),
            conflicts: slot.conflicts.load(Ordering::Relaxed),
            foreign: slot.foreign.load(Ordering::Relaxed),
        })
    }

    /// Registered resources.
    pub fn len(&self) -> usize {
        self.registered.load(Ordering::Acquire)
    }

    /// True if no resource is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids of all registered resources, in registration order.
    pub fn resources(&self) -> impl Iterator<Item = ResourceId> + '_ {
        (0..self.len()).map(|i| ResourceId(i as u32))
    }

    /// What recovering the log found when the fence opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        self.wal.recovery_report()
    }

    fn registered_slot(&self, id: ResourceId) -> Result<&Slot, FenceError> {
        if id.index() < self.len() {
            Ok(&self.slots[id.index()])
        } else {
            Err(FenceFault::UnknownResource(id.0).into())
        }
    }
}
