//! How far the store's mark may rise: at most `--max-generation-jump` within any
//! `--generation-jump-window`. A Raft term rises by one per election, so a healthy group moves
//! the mark by a handful an hour; a token far above it is a bug, a forgery or a compromised
//! member. Bounding each step alone was not enough: a thousand steps each just under the bound
//! carried the mark past every real leader in seconds. With a budget over a window, a writer
//! that would fence the group for good can move the mark by the budget at most, then is
//! refused (and counted) until the window passes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The rises of the mark within the window, and what they may add up to.
#[derive(Debug)]
pub(crate) struct JumpBudget {
    max: u64,
    window: Duration,
    /// When each rise was accepted, and by how much, oldest first.
    rises: VecDeque<(Instant, u64)>,
}

impl JumpBudget {
    pub(crate) fn new(max: u64, window: Duration) -> JumpBudget {
        JumpBudget {
            max,
            window,
            rises: VecDeque::new(),
        }
    }

    /// The most the mark may rise now.
    pub(crate) fn left(&mut self, now: Instant) -> u64 {
        while let Some(&(at, _)) = self.rises.front() {
            if now.saturating_duration_since(at) < self.window {
                break;
            }
            self.rises.pop_front();
        }
        let spent: u64 = self
            .rises
            .iter()
            .fold(0u64, |sum, (_, rise)| sum.saturating_add(*rise));
        self.max.saturating_sub(spent)
    }

    /// Records a rise of the mark by `rise`, accepted at `now`.
    pub(crate) fn spend(&mut self, rise: u64, now: Instant) {
        if rise > 0 {
            self.rises.push_back((now, rise));
        }
    }

    /// The budget, for messages.
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// The window, for messages.
    pub(crate) fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_add_up_within_the_window_and_free_up_after_it() {
        let t0 = Instant::now();
        let mut budget = JumpBudget::new(100, Duration::from_secs(60));
        assert_eq!(budget.left(t0), 100);
        budget.spend(60, t0);
        assert_eq!(budget.left(t0), 40, "a second step sees the first");
        budget.spend(40, t0 + Duration::from_secs(30));
        assert_eq!(budget.left(t0 + Duration::from_secs(59)), 0);
        assert_eq!(
            budget.left(t0 + Duration::from_secs(60)),
            60,
            "the first step has left the window"
        );
        assert_eq!(budget.left(t0 + Duration::from_secs(90)), 100);
    }

    #[test]
    fn huge_rises_saturate_instead_of_wrapping() {
        let t0 = Instant::now();
        let mut budget = JumpBudget::new(u64::MAX, Duration::from_secs(60));
        budget.spend(u64::MAX, t0);
        budget.spend(u64::MAX, t0);
        assert_eq!(budget.left(t0), 0);
    }
}
