//! Terms and log indexes: the two numbers raft-rs names every entry by.
//!
//! raft-rs speaks in bare `u64`s, and a term and an index are both one; mixed up, a lease
//! round of the wrong term or a compaction at a term-numbered index would type-check. Ours are
//! distinct types from the moment a number leaves raft-rs ([`Term::new`], [`LogIndex::new`])
//! to the moment it goes back in ([`Term::get`], [`LogIndex::get`]). Every `u64` is a valid
//! term and a valid index (0 is the term before any election and the index before any entry),
//! so neither refuses a value; the bounds a *peer's* numbers must keep are the step guard's
//! (`limits::TERM_JUMP_MAX`, `limits::INDEX_MAX`).
//!
//! A term is never an index:
//!
//! ```compile_fail
//! use fencekit::{LogIndex, Term};
//! let commit: LogIndex = Term::new(3);
//! ```
//!
//! nor compared with one:
//!
//! ```compile_fail
//! use fencekit::{LogIndex, Term};
//! assert!(Term::new(3) < LogIndex::new(4));
//! ```

use std::fmt;

use crate::token::Generation;

/// A Raft term: the number of an election. Term 0 precedes the first election.
#[derive(Copy, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term(u64);

impl Term {
    /// The term before any election.
    pub const ZERO: Term = Term(0);

    /// A term from raft-rs's number.
    #[inline]
    pub const fn new(value: u64) -> Term {
        Term(value)
    }

    /// The term's number, as raft-rs takes it.
    #[inline]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The fencing generation of a leadership won in this term: `None` for term 0 (no
    /// leadership) and for terms above [`Generation::MAX`], which no token may carry.
    pub fn generation(self) -> Option<Generation> {
        Generation::new(self.0).ok()
    }
}

/// A position in the Raft log: entry `n` is the `n`-th ever appended. Index 0 precedes the
/// first entry.
#[derive(Copy, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogIndex(u64);

impl LogIndex {
    /// The index before any entry.
    pub const ZERO: LogIndex = LogIndex(0);

    /// An index from raft-rs's number.
    #[inline]
    pub const fn new(value: u64) -> LogIndex {
        LogIndex(value)
    }

    /// The index's number, as raft-rs takes it.
    #[inline]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The index before this one (index 0 stays 0).
    pub const fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

impl fmt::Debug for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i{}", self.0)
    }
}

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_term_is_a_generation_only_where_a_token_can_carry_it() {
        for (term, generation) in [
            (0, None),
            (1, Some(1)),
            (Generation::MAX, Some(Generation::MAX)),
            (Generation::MAX + 1, None),
            (u64::MAX, None),
        ] {
            assert_eq!(
                Term::new(term).generation().map(Generation::get),
                generation,
                "term {term}"
            );
        }
    }

    #[test]
    fn numbers_round_trip_and_print_as_numbers() {
        assert_eq!(Term::new(7).get(), 7);
        assert_eq!(LogIndex::new(9).get(), 9);
        assert_eq!(format!("{} {:?}", Term::new(7), Term::new(7)), "7 t7");
        assert_eq!(
            format!("{} {:?}", LogIndex::new(9), LogIndex::new(9)),
            "9 i9"
        );
        assert_eq!(LogIndex::ZERO.prev(), LogIndex::ZERO);
        assert_eq!(LogIndex::new(9).prev(), LogIndex::new(8));
    }
}
