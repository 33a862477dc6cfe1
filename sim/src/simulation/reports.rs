//! What the nodes reported, kept for scripted tests: their events stamped with global time,
//! the leases they held as spans of global time, what each applied, and how each proposal of
//! a test was resolved.

use std::collections::BTreeMap;

use fencekit::node::{Applied, Event};
use fencekit::{LogIndex, Token};

/// Something a node reported, stamped with the global time (ns).
#[derive(Clone, Debug)]
pub struct Stamped {
    /// When.
    pub at: u64,
    /// Which node.
    pub node: u64,
    /// What.
    pub event: Event,
}

/// A lease as held, in global time (ns).
#[derive(Copy, Clone, Debug)]
pub struct LeaseSpan {
    /// The leader's token.
    pub token: Token,
    /// When it was reported.
    pub from: u64,
    /// The latest deadline it reached (converted to global time), or when it was lost, if
    /// earlier.
    pub until: u64,
}

/// What the nodes reported during a run.
#[derive(Debug, Default)]
pub struct Reports {
    /// Every event, in order.
    pub events: Vec<Stamped>,
    /// Every lease, in the order granted.
    pub leases: Vec<LeaseSpan>,
    /// What each node applied, in order. Kept only without the workload (whose state
    /// machine keeps a digest instead); a test may clear a node's list before restarting it.
    pub applied: BTreeMap<u64, Vec<Applied>>,
    /// How each proposal was resolved, by ticket: its index, or why it failed.
    pub resolved: BTreeMap<u64, Result<LogIndex, String>>,
}

impl Reports {
    /// Node `node` reported `event` at `at`.
    pub(super) fn on_event(&mut self, at: u64, node: u64, event: Event) {
        match event {
            Event::Elected { token, .. } => self.leases.push(LeaseSpan {
                token,
                from: at,
                until: at,
            }),
            Event::Lost { token, .. } => {
                if let Some(span) = self.leases.iter_mut().rev().find(|s| s.token == token) {
                    // Revoked early, or noticed at or after its deadline.
                    span.until = span.until.min(at);
                }
            }
            _ => {}
        }
        self.events.push(Stamped { at, node, event });
    }

    /// The lease of `token` reaches `until` (global): lease extensions are not events.
    pub(super) fn extend(&mut self, token: Token, until: u64) {
        if let Some(span) = self.leases.iter_mut().rev().find(|s| s.token == token) {
            span.until = span.until.max(until);
        }
    }

    /// The first `Elected` after `after` (global): when, which node, and its token.
    pub fn elected_after(&self, after: u64) -> Option<(u64, u64, Token)> {
        self.events.iter().find_map(|e| match e.event {
            Event::Elected { token, .. } if e.at > after => Some((e.at, e.node, token)),
            _ => None,
        })
    }

    /// The pairs of leases that break I3: a lease that had not ended when a lease of a later
    /// generation began. Empty when every lease granted so far ended first.
    pub fn overlapping_leases(&self) -> Vec<(LeaseSpan, LeaseSpan)> {
        let mut found = Vec::new();
        for a in &self.leases {
            for b in &self.leases {
                if a.token.generation < b.token.generation && a.until > b.from {
                    found.push((*a, *b));
                }
            }
        }
        found
    }
}
