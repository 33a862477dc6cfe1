//! The last notable things a run did (faults, elections, refusals), printed with a failure.

use std::collections::VecDeque;
use std::fmt::Write as _;

/// Lines kept.
const KEPT: usize = 80;

/// A bounded trace of one run.
#[derive(Debug, Default)]
pub struct Trace {
    lines: VecDeque<String>,
}

impl Trace {
    /// Records `what` at global time `now` (ns).
    pub fn note(&mut self, now: u64, what: impl std::fmt::Display) {
        if self.lines.len() == KEPT {
            self.lines.pop_front();
        }
        let mut line = String::new();
        let _ = write!(line, "{:>9.3} ms  {what}", now as f64 / 1e6);
        self.lines.push_back(line);
    }

    /// The lines, oldest first.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }
}
