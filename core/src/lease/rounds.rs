//! The lease's heartbeat rounds (DESIGN.md I3, I4): the bookkeeping that turns a quorum's
//! acknowledgement into lease time, beside the arithmetic of how much ([`Timing`]).
//!
//! A round rides on raft-rs's safe read index: its context goes to `read_index`, raft-rs
//! broadcasts a heartbeat carrying it and hands it back (a `ReadState`) once a quorum has
//! answered that very heartbeat. The lease then runs from the round's *send* time, never from
//! when the answers came, so time spent on the way only shortens it. The replica decides when
//! a round may start and whether an acknowledged one still counts (it must still lead, in the
//! round's term, with no transfer begun); see the order of operations in `node/replica.rs`.

use std::collections::VecDeque;

use crate::lease::Timing;
use crate::limits::ROUNDS_IN_FLIGHT_MAX;
use crate::node::{Event, Leadership};
use crate::term::Term;
use crate::time::Instant;
use crate::token::Token;

/// A heartbeat round: the term it was sent in and when it left.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Round {
    /// The leader's term when it sent the round.
    pub(crate) term: Term,
    /// Numbers are never reused, so an answer names exactly one round.
    number: u64,
    /// The lease counts from here.
    pub(crate) sent: Instant,
}

impl Round {
    /// Bytes of [`Round::context`].
    const CONTEXT_LEN: usize = 16;

    /// The read-index context: term then number, little-endian.
    fn context(&self) -> Vec<u8> {
        let mut ctx = Vec::with_capacity(Self::CONTEXT_LEN);
        ctx.extend_from_slice(&self.term.get().to_le_bytes());
        ctx.extend_from_slice(&self.number.to_le_bytes());
        ctx
    }

    /// The number of the round whose context this is.
    fn number_of(ctx: &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(ctx.get(8..16)?.try_into().ok()?))
    }
}

/// The rounds a leader has in flight, oldest first, and when the next is due.
#[derive(Debug, Default)]
pub(crate) struct Rounds {
    /// Invariant: at most [`ROUNDS_IN_FLIGHT_MAX`], numbers increasing.
    in_flight: VecDeque<Round>,
    next: u64,
    ticks_since: usize,
}

impl Rounds {
    /// Counts a tick; whether a round is due (one every `heartbeat_tick` ticks).
    pub(crate) fn tick(&mut self, heartbeat_tick: usize) -> bool {
        self.ticks_since += 1;
        self.ticks_since >= heartbeat_tick
    }

    /// Starts a round sent at `now` in `term`; returns the context to give raft-rs's
    /// `read_index`. The oldest round is forgotten beyond [`ROUNDS_IN_FLIGHT_MAX`]: its
    /// acknowledgement then counts for nothing, which only shortens the lease.
    pub(crate) fn start(&mut self, term: Term, now: Instant) -> Vec<u8> {
        self.ticks_since = 0;
        let round = Round {
            term,
            number: self.next,
            sent: now,
        };
        self.next += 1;
        if self.in_flight.len() == ROUNDS_IN_FLIGHT_MAX {
            self.in_flight.pop_front();
        }
        self.in_flight.push_back(round);
        round.context()
    }

    /// The round a quorum acknowledged, from the context raft-rs handed back; it and every
    /// older round are settled. `None` for a context that names no round in flight.
    pub(crate) fn settle(&mut self, ctx: &[u8]) -> Option<Round> {
        let number = Round::number_of(ctx)?;
        let at = self.in_flight.iter().position(|r| r.number == number)?;
        let round = self.in_flight[at];
        self.in_flight.drain(..=at);
        Some(round)
    }

    /// Forgets every round in flight (leadership ended or was revoked).
    pub(crate) fn clear(&mut self) {
        self.in_flight.clear();
    }

    /// Whether no round is in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }
}

/// Extends `lease` by `round`, which a quorum acknowledged and which still counts for
/// `token`: the lease then lasts until the round's send time plus the lease duration, and is
/// never shortened. A deadline already past at `now` changes nothing. Returns the event to
/// report when this begins the lease.
pub(crate) fn extend(
    lease: &mut Option<Leadership>,
    round: Round,
    token: Token,
    timing: &Timing,
    now: Instant,
) -> Option<Event> {
    let deadline = round.sent.saturating_add(timing.lease_duration());
    if deadline <= now {
        return None;
    }
    match lease {
        Some(lease) => {
            lease.lease_deadline = lease.lease_deadline.max(deadline);
            None
        }
        None => {
            *lease = Some(Leadership {
                token,
                lease_deadline: deadline,
            });
            Some(Event::Elected {
                token,
                lease_deadline: deadline,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::ZERO.saturating_add(Duration::from_millis(ms))
    }

    #[test]
    fn an_acknowledged_round_settles_every_older_one() {
        let mut rounds = Rounds::default();
        let contexts: Vec<Vec<u8>> = (0..3).map(|i| rounds.start(Term::new(4), at(i))).collect();
        let round = rounds.settle(&contexts[1]).unwrap();
        assert_eq!((round.term, round.sent), (Term::new(4), at(1)));
        assert_eq!(
            rounds.settle(&contexts[0]),
            None,
            "older rounds are settled"
        );
        assert_eq!(rounds.settle(&contexts[1]), None, "a round counts once");
        assert!(rounds.settle(&contexts[2]).is_some());
        assert!(rounds.is_empty());
        assert_eq!(rounds.settle(b"short"), None);
    }

    #[test]
    fn rounds_beyond_the_limit_are_forgotten_oldest_first() {
        let mut rounds = Rounds::default();
        let first = rounds.start(Term::new(1), at(0));
        for i in 0..ROUNDS_IN_FLIGHT_MAX {
            rounds.start(Term::new(1), at(i as u64 + 1));
        }
        assert_eq!(rounds.settle(&first), None);
    }

    #[test]
    fn a_round_is_due_every_heartbeat_and_starting_one_resets_the_count() {
        let mut rounds = Rounds::default();
        assert!(!rounds.tick(3));
        assert!(!rounds.tick(3));
        assert!(rounds.tick(3));
        rounds.start(Term::new(1), at(0));
        assert!(!rounds.tick(3));
    }

    #[test]
    fn the_lease_runs_from_the_send_time_and_never_shrinks() {
        let timing = Timing::default();
        let token = Token::from_parts(2, 1).unwrap();
        let round = |sent| Round {
            term: Term::new(2),
            number: 0,
            sent: at(sent),
        };
        let mut lease = None;
        // A round whose lease would already be over by the time its answers came is no lease.
        assert_eq!(extend(&mut lease, round(0), token, &timing, at(180)), None);
        assert!(lease.is_none());
        let elected = extend(&mut lease, round(100), token, &timing, at(150));
        assert!(
            matches!(elected, Some(Event::Elected { lease_deadline, .. }) if lease_deadline == at(280))
        );
        assert_eq!(extend(&mut lease, round(50), token, &timing, at(160)), None);
        assert_eq!(
            lease.unwrap().lease_deadline,
            at(280),
            "an older round never shortens it"
        );
        extend(&mut lease, round(120), token, &timing, at(160));
        assert_eq!(lease.unwrap().lease_deadline, at(300));
    }
}
