//! Counting accepted checks without a shared atomic read-modify-write on the hot path.
//!
//! A `fetch_add` costs more than the whole check and, from many threads, bounces one cache
//! line between cores. Instead each thread claims a private row of counters (one per resource)
//! for as long as it lives; only the owner writes its row, with a plain load and store. Rows
//! are laid out row-major so threads never write the same cache line. When more threads are
//! alive than there are rows, the extra threads share one last row through `fetch_add`:
//! correct, merely slower. Totals sum all rows.
//!
//! A host that never reads the accepted counts turns counting off ([`AcceptedCounters::set_on`]):
//! the hot path then pays one relaxed load of a flag instead of the thread-local lookup and the
//! counter's load and store.

use std::alloc::{Layout, alloc_zeroed, handle_alloc_error};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::limits::COUNTER_SHARDS_MAX;

/// The row shared by threads that found no private row.
const SHARED: usize = COUNTER_SHARDS_MAX;
const UNCLAIMED: usize = usize::MAX;

static OWNED: [AtomicBool; COUNTER_SHARDS_MAX] =
    [const { AtomicBool::new(false) }; COUNTER_SHARDS_MAX];

thread_local! {
    /// This thread's row: `UNCLAIMED`, `SHARED`, or a row it owns. No destructor, so reading
    /// it is a plain thread-local load.
    static ROW: Cell<usize> = const { Cell::new(UNCLAIMED) };
    /// Releases the owned row when the thread exits.
    static RELEASE: RowRelease = const { RowRelease(Cell::new(UNCLAIMED)) };
}

struct RowRelease(Cell<usize>);

impl Drop for RowRelease {
    fn drop(&mut self) {
        let row = self.0.get();
        if row < SHARED {
            // Anything this thread still counts from here on goes to the shared row.
            ROW.with(|r| r.set(SHARED));
            OWNED[row].store(false, Ordering::Release);
        }
    }
}

#[cold]
fn claim_row() -> usize {
    let claimed = (0..COUNTER_SHARDS_MAX).find(|&row| {
        OWNED[row]
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    });
    let row = match claimed {
        // Registering the release can fail only while the thread is exiting.
        Some(row) if RELEASE.try_with(|r| r.0.set(row)).is_ok() => row,
        Some(row) => {
            OWNED[row].store(false, Ordering::Release);
            SHARED
        }
        None => SHARED,
    };
    ROW.with(|r| r.set(row));
    row
}

#[inline(always)]
fn this_threads_row() -> usize {
    let row = ROW.with(Cell::get);
    if row == UNCLAIMED { claim_row() } else { row }
}

#[derive(Debug)]
pub(super) struct AcceptedCounters {
    /// `(COUNTER_SHARDS_MAX + 1) * resources` counters, row-major.
    cells: Box<[AtomicU64]>,
    resources: usize,
    /// Whether accepted checks are counted (they are unless the host turned counting off).
    on: AtomicBool,
}

/// The calling thread's row, fetched once per call (or once per batch).
pub(super) struct Row<'a> {
    /// This row's counters, one per resource: a slice, so a batch keeps its bounds in a register.
    cells: &'a [AtomicU64],
    shared: bool,
}

impl Row<'_> {
    /// Counts one accepted check of resource `index` (below the capacity).
    #[inline(always)]
    pub(super) fn add(&self, index: usize) {
        add(&self.cells[index], self.shared);
    }
}

/// Adds one to `cell`, a cell of the shared row (`shared`) or of the calling thread's own.
#[inline(always)]
fn add(cell: &AtomicU64, shared: bool) {
    if shared {
        cell.fetch_add(1, Ordering::Relaxed);
    } else {
        // Only this thread writes this row: no read-modify-write needed.
        cell.store(cell.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

impl AcceptedCounters {
    pub(super) fn new(resources: usize) -> AcceptedCounters {
        let len = (COUNTER_SHARDS_MAX + 1) * resources;
        AcceptedCounters {
            cells: zeroed_counters(len),
            resources,
            on: AtomicBool::new(true),
        }
    }

    /// Turns counting on or off; the counts so far are kept.
    pub(super) fn set_on(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    #[inline(always)]
    pub(super) fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Counts one accepted check of resource `index` (below the capacity), if counting is on.
    #[inline(always)]
    pub(super) fn count(&self, index: usize) {
        if self.is_on() {
            // One bounds check, not the row slice's two: this is the single check's hot path.
            let row = this_threads_row();
            add(&self.cells[row * self.resources + index], row == SHARED);
        }
    }

    /// The calling thread's row if counting is on, for a caller counting many checks.
    #[inline(always)]
    pub(super) fn row_if_on(&self) -> Option<Row<'_>> {
        self.is_on().then(|| self.row())
    }

    #[inline(always)]
    fn row(&self) -> Row<'_> {
        let row = this_threads_row();
        let start = row * self.resources;
        Row {
            cells: &self.cells[start..start + self.resources],
            shared: row == SHARED,
        }
    }

    pub(super) fn total(&self, index: usize) -> u64 {
        (0..=COUNTER_SHARDS_MAX)
            .map(|row| self.cells[row * self.resources + index].load(Ordering::Relaxed))
            .sum()
    }
}

/// A zeroed counter array straight from the allocator: the pages of rows that no thread
/// claims are never touched, so they cost address space only.
fn zeroed_counters(len: usize) -> Box<[AtomicU64]> {
    if len == 0 {
        return Box::new([]);
    }
    let layout = Layout::array::<AtomicU64>(len).expect("counter array size fits isize");
    // SAFETY: `layout` has non-zero size. An all-zero AtomicU64 is a valid value (0), the
    // allocation has the layout of `[AtomicU64; len]`, and the Box frees it with that layout.
    unsafe {
        let ptr = alloc_zeroed(layout).cast::<AtomicU64>();
        if ptr.is_null() {
            handle_alloc_error(layout);
        }
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn many_threads_count_exactly() {
        // More threads than private rows, so the shared row is exercised as well.
        let threads = COUNTER_SHARDS_MAX + 8;
        let counters = Arc::new(AcceptedCounters::new(4));
        let all_alive = Arc::new(std::sync::Barrier::new(threads));
        let threads: Vec<_> = (0..threads)
            .map(|_| {
                let counters = Arc::clone(&counters);
                let all_alive = Arc::clone(&all_alive);
                std::thread::spawn(move || {
                    counters.row().add(0);
                    all_alive.wait();
                    for i in 1..1000 {
                        counters.row().add(i % 4);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let total: u64 = (0..4).map(|i| counters.total(i)).sum();
        assert_eq!(total, 1000 * (COUNTER_SHARDS_MAX as u64 + 8));
    }
}
