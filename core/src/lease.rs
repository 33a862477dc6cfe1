//! Lease arithmetic (DESIGN.md I3): how long a leader may act on the strength of one heartbeat
//! round that a quorum acknowledged, so that its lease ends before any successor can be elected.
//!
//! A follower that hears from the leader refuses every vote for `election_tick` of its own ticks
//! (raft-rs's check-quorum lease). Ticks are discrete: the heartbeat may arrive just before a
//! tick, so the refusal window is at least `(election_tick − 1)` tick intervals on the
//! follower's clock. With clock rates differing by at most `max_drift`, that is at least
//! `(election_tick − 1) × tick × (1 − max_drift)` on the leader's clock. The leader's lease,
//! counted from the *send* time of the acknowledged round, is
//! `election_timeout × (1 − max_drift) − margin`, and [`Timing::validate`] refuses any
//! configuration whose lease would outlive that window (a margin below one tick).
//!
//! The rounds themselves, and how an acknowledged one extends the lease, are in
//! `lease/rounds.rs`.

use std::time::Duration;

use crate::error::{NodeError, OutOfRange};
use crate::limits::{ELECTION_TICK_MAX, ELECTION_TICK_MIN, TICK_MAX};

pub(crate) mod rounds;

/// Ticks, timeouts and the drift bound of a Raft group. Every member must use the same.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Timing {
    /// Length of one Raft tick.
    pub tick: Duration,
    /// Ticks without hearing from a leader before a follower campaigns (the minimum; raft-rs
    /// randomizes in `[election_tick, 2 × election_tick)`), and the follower's vote-refusal window.
    pub election_tick: usize,
    /// Ticks between the leader's heartbeats, and between its lease rounds.
    pub heartbeat_tick: usize,
    /// The largest relative difference between two members' clock rates, in `[0, 0.5)`.
    pub max_drift: f64,
    /// Subtracted from the lease; at least one tick (the follower's window may start a tick late).
    pub margin: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            tick: Duration::from_millis(10),
            election_tick: 20,
            heartbeat_tick: 3,
            max_drift: 0.05,
            margin: Duration::from_millis(10),
        }
    }
}

impl Timing {
    /// The election timeout: `election_tick` ticks.
    pub fn election_timeout(&self) -> Duration {
        self.tick * self.election_tick as u32
    }

    /// The interval between heartbeats.
    pub fn heartbeat_interval(&self) -> Duration {
        self.tick * self.heartbeat_tick as u32
    }

    /// How long a lease lasts from the send time of the round a quorum acknowledged.
    pub fn lease_duration(&self) -> Duration {
        self.election_timeout()
            .mul_f64(1.0 - self.max_drift)
            .saturating_sub(self.margin)
    }

    /// The shortest vote-refusal window a follower keeps after hearing from the leader, as
    /// the leader's clock may measure it: `(election_tick − 1)` ticks, shrunk by the drift.
    pub fn refusal_window_floor(&self) -> Duration {
        (self.tick * (self.election_tick as u32).saturating_sub(1)).mul_f64(1.0 - self.max_drift)
    }

    /// Checks every bound; the message names the field and what it must be.
    pub fn validate(&self) -> Result<(), NodeError> {
        let bad = |reason: String| Err(NodeError::InvalidConfig(reason));
        let in_range = |range: OutOfRange| {
            if range.holds() {
                Ok(())
            } else {
                Err(NodeError::ConfigOutOfRange(range))
            }
        };
        in_range(OutOfRange::new(
            "tick (ns)",
            u64::try_from(self.tick.as_nanos()).unwrap_or(u64::MAX),
            1,
            TICK_MAX.as_nanos() as u64,
        ))?;
        in_range(OutOfRange::new(
            "election_tick",
            self.election_tick as u64,
            ELECTION_TICK_MIN as u64,
            ELECTION_TICK_MAX as u64,
        ))?;
        if self.heartbeat_tick == 0 {
            in_range(OutOfRange::new(
                "heartbeat_tick",
                0,
                1,
                self.election_tick as u64 - 1,
            ))?;
        }
        if self.heartbeat_tick >= self.election_tick {
            return bad(format!(
                "heartbeat_tick = {} must be less than election_tick = {}",
                self.heartbeat_tick, self.election_tick
            ));
        }
        if !(0.0..0.5).contains(&self.max_drift) {
            return bad(format!(
                "max_drift = {}: must be in [0, 0.5)",
                self.max_drift
            ));
        }
        if self.margin < self.tick {
            return bad(format!(
                "margin = {:?} is less than one tick ({:?}): the lease could outlive a \
                 follower's vote-refusal window",
                self.margin, self.tick
            ));
        }
        let lease = self.lease_duration();
        if lease.is_zero() {
            return bad(format!(
                "the lease (election timeout {:?} × (1 − {}) − margin {:?}) is not positive",
                self.election_timeout(),
                self.max_drift,
                self.margin
            ));
        }
        // Implied by the margin rule; checked directly so that a change to either formula
        // cannot silently break I3.
        if lease > self.refusal_window_floor() {
            return bad(format!(
                "the lease {lease:?} would outlive a follower's vote-refusal window {:?}",
                self.refusal_window_floor()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_is_valid_and_the_lease_is_shorter_than_the_election_timeout() {
        let t = Timing::default();
        t.validate().unwrap();
        assert_eq!(t.lease_duration(), Duration::from_millis(180));
        assert!(t.lease_duration() < t.election_timeout());
    }

    #[test]
    fn unsafe_settings_are_refused() {
        let base = Timing::default();
        for (t, needle) in [
            (
                Timing {
                    margin: Duration::from_millis(9),
                    ..base
                },
                "less than one tick",
            ),
            (
                Timing {
                    max_drift: 0.5,
                    ..base
                },
                "max_drift",
            ),
            (
                Timing {
                    max_drift: -0.1,
                    ..base
                },
                "max_drift",
            ),
            (
                Timing {
                    heartbeat_tick: 20,
                    ..base
                },
                "less than election_tick",
            ),
            (
                Timing {
                    heartbeat_tick: 0,
                    ..base
                },
                "heartbeat_tick = 0",
            ),
            (
                Timing {
                    tick: Duration::ZERO,
                    ..base
                },
                "tick",
            ),
            (
                Timing {
                    margin: Duration::from_secs(1),
                    ..base
                },
                "not positive",
            ),
        ] {
            let err = t.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    proptest! {
        /// Whatever passes validation keeps I3's arithmetic: the lease ends before the
        /// shortest window in which a follower that acknowledged the round refuses votes.
        #[test]
        fn a_valid_lease_never_outlives_the_refusal_window(
            tick_us in 1u64..100_000,
            election_tick in 3usize..200,
            heartbeat_tick in 1usize..200,
            drift in 0.0f64..0.5,
            margin_ticks in 0.5f64..3.0,
        ) {
            let tick = Duration::from_micros(tick_us);
            let t = Timing {
                tick, election_tick, heartbeat_tick, max_drift: drift,
                margin: tick.mul_f64(margin_ticks),
            };
            if t.validate().is_ok() {
                let follower_ticks = (election_tick - 1) as f64 * tick.as_secs_f64();
                // The follower's clock may run fast by `drift` relative to the leader's.
                prop_assert!(t.lease_duration().as_secs_f64()
                    <= follower_ticks * (1.0 - drift) + 1e-9);
            }
        }
    }
}
