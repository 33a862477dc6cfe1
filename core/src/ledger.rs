//! The job ledger's protocol: exactly-once for check-then-act work ("is job J done? if not,
//! run it"), as `fencekit store` and the simulator's store both keep it (DESIGN.md,
//! "Exactly-once needs fence-before-read").
//!
//! Running a job is two requests to the store, each carrying the leader's token:
//!
//! 1. [`Call::Begin`]: the store's fence checks the token under [`KEY`] (for a new leader an
//!    advance of the mark, durable before it is acknowledged), and only then does the store
//!    read what is done. A deposed leader's completion either landed before the advance (and
//!    the new leader reads it as done) or comes after it (and is stale). Reading first would
//!    leave a window in which both see "not done" and both run the job.
//! 2. [`Call::Complete`], after the work: the fence checks the token again, and the
//!    completion lands only if the token is still the mark ([`Outcome::landed`]).
//!
//! [`Decision::of`] is the one reading of the fence's verdict both stores answer with.

use crate::fence::Verdict;
use crate::token::{Generation, Token};

/// The one resource a job ledger is fenced under: every request's token is checked against
/// this key's mark. `fencekit store` keeps the mark in its fence's log under this name, so it
/// never changes.
pub const KEY: &[u8] = b"job-ledger";

/// The two requests of running a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// Check the token (advancing the mark for a new leader), then read what is done.
    Begin,
    /// Record that a job ran, under the token it ran with.
    Complete,
}

impl Call {
    /// The verb's name: `begin` or `complete` (`fencekit store` serves `POST /begin` and
    /// `POST /complete`).
    pub const fn name(self) -> &'static str {
        match self {
            Call::Begin => "begin",
            Call::Complete => "complete",
        }
    }
}

/// What the fence's verdict on a request's token means for the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The token is the mark (or just became it): a begin reads what is done, a completion
    /// lands.
    Accepted,
    /// The token is older than the mark: a deposed leader, whose completion must not land.
    Stale,
    /// Another holder has the token's generation (split brain), or the token comes from
    /// another source than the ledger's: refused like a stale one.
    Conflict,
}

impl Outcome {
    /// Whether the request went through: a completion landed, a begin may run the job.
    pub const fn landed(self) -> bool {
        matches!(self, Outcome::Accepted)
    }
}

/// The store's decision on one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    /// What the fence's verdict means.
    pub outcome: Outcome,
    /// The generation of the mark after the check: the token's own when it was accepted, the
    /// one that refused it otherwise, `None` when the refusal names no comparable mark (another
    /// source's). Never the mark's holder: an answer hands out nothing another writer could
    /// present.
    pub mark: Option<Generation>,
}

impl Decision {
    /// The decision on a request under `token`, which the ledger's fence answered with
    /// `verdict`.
    pub fn of(token: Token, verdict: Verdict) -> Decision {
        let (outcome, mark) = match verdict {
            Verdict::Accepted | Verdict::Advanced { .. } => {
                (Outcome::Accepted, Some(token.generation))
            }
            Verdict::Stale { current } => (Outcome::Stale, Some(current.generation)),
            Verdict::Conflict { current } => (Outcome::Conflict, Some(current.generation)),
            Verdict::ForeignSource { .. } => (Outcome::Conflict, None),
        };
        Decision { outcome, mark }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fence::SourceId;

    fn token(generation: u64, holder: u64) -> Token {
        Token::from_parts(generation, holder).expect("a valid token")
    }

    #[test]
    fn only_the_mark_lands_and_a_refusal_names_the_generation_that_refused_it() {
        let t = token(5, 1);
        let cases = [
            (Verdict::Accepted, Outcome::Accepted, Some(5)),
            (
                Verdict::Advanced { previous: None },
                Outcome::Accepted,
                Some(5),
            ),
            (
                Verdict::Stale {
                    current: token(7, 2),
                },
                Outcome::Stale,
                Some(7),
            ),
            (
                Verdict::Conflict {
                    current: token(5, 2),
                },
                Outcome::Conflict,
                Some(5),
            ),
            (
                Verdict::ForeignSource {
                    bound: SourceId::UNNAMED,
                },
                Outcome::Conflict,
                None,
            ),
        ];
        for (verdict, outcome, mark) in cases {
            let decision = Decision::of(t, verdict);
            assert_eq!(decision.outcome, outcome, "{verdict:?}");
            assert_eq!(decision.mark.map(Generation::get), mark, "{verdict:?}");
            assert_eq!(decision.outcome.landed(), outcome == Outcome::Accepted);
        }
    }
}
