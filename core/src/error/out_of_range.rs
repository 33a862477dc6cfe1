//! A value outside its allowed range, as values: the bound comes from `limits.rs`, not prose.

use std::fmt;

/// `what` was `given`, outside `min..=max` (or not a multiple of `multiple_of`). One
/// [`Display`](fmt::Display) for every limit, so each message names the thing, the value and
/// the range it must be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange {
    /// What the value is ("FenceOptions::max_resources", "batch length", ...).
    pub what: &'static str,
    /// The value given.
    pub given: u64,
    /// The smallest value allowed.
    pub min: u64,
    /// The largest value allowed.
    pub max: u64,
    /// The value must be a multiple of this (1: any value).
    pub multiple_of: u64,
}

impl OutOfRange {
    /// `what` = `given` is not in `min..=max`.
    pub fn new(what: &'static str, given: u64, min: u64, max: u64) -> OutOfRange {
        OutOfRange {
            what,
            given,
            min,
            max,
            multiple_of: 1,
        }
    }

    /// The value must also be a multiple of `step`.
    pub fn multiple_of(self, step: u64) -> OutOfRange {
        OutOfRange {
            multiple_of: step,
            ..self
        }
    }

    /// True if `given` is in range.
    pub fn holds(&self) -> bool {
        (self.min..=self.max).contains(&self.given)
            && self.given.is_multiple_of(self.multiple_of.max(1))
    }
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {} is out of range: give {}",
            self.what,
            self.given,
            self.expected()
        )
    }
}

/// What an [`OutOfRange`] value must be: "a multiple of 4096 from 65536 (2^16) to ...".
pub struct Expected<'a>(&'a OutOfRange);

impl OutOfRange {
    /// What the value must be, for a message that names the value its own way.
    pub fn expected(&self) -> Expected<'_> {
        Expected(self)
    }
}

impl fmt::Display for Expected<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = self.0;
        if range.multiple_of > 1 {
            write!(f, "a multiple of {} ", range.multiple_of)?;
        }
        write!(f, "from {} to {}", Shown(range.min), Shown(range.max))
    }
}

/// A bound as written: a power of two of 1024 or more also as `2^n`, as the docs give them.
struct Shown(u64);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 1024 && self.0.is_power_of_two() {
            write!(f, "{} (2^{})", self.0, self.0.trailing_zeros())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message names the thing, the value and the range, with the bound as a power of two.
    #[test]
    fn names_the_thing_the_value_and_the_range() {
        let e = OutOfRange::new("FenceOptions::max_resources", 0, 1, 1 << 20);
        assert!(!e.holds());
        assert_eq!(
            e.to_string(),
            "FenceOptions::max_resources = 0 is out of range: give from 1 to 1048576 (2^20)"
        );
        let e = OutOfRange::new("segment_size", 5000, 1 << 16, 1 << 30).multiple_of(4096);
        assert!(!e.holds());
        assert!(
            e.to_string()
                .contains("give a multiple of 4096 from 65536 (2^16)"),
            "{e}"
        );
        assert!(
            OutOfRange::new("x", 8192, 4096, 8192)
                .multiple_of(4096)
                .holds()
        );
    }
}
