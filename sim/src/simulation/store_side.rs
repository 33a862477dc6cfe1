//! The store's side of the world: requests decided as they arrive, its crashes (which its disk
//! answers) and restarts, and what it did reported to the checkers.

use super::lifecycle::Crash;
use super::{STEP_NS, Simulation};
use crate::network::{Endpoint, Packet, Payload};
use crate::store::{Refusal, StoreFact, StoreReply};

impl Simulation {
    /// A packet reaches the store: it decides, and its answer goes back through the network.
    pub(super) fn deliver_to_store(&mut self, packet: Packet) {
        let Payload::Request(request) = &packet.payload else {
            return;
        };
        let reply = self.store.handle(request, &mut self.facts);
        self.absorb_facts();
        let Some(reply) = reply else {
            return;
        };
        if let StoreReply::Refused {
            token,
            reason: Refusal::Stale | Refusal::Conflict,
            ..
        } = &reply
        {
            self.trace.note(
                self.now,
                format_args!("store refuses {token} ({request:?})"),
            );
        }
        if !self.store.is_up() {
            self.store_down(Crash::Power { torn: true });
        }
        let packet = Packet {
            from: Endpoint::Store,
            to: packet.from,
            payload: Payload::Reply(reply),
        };
        self.net.send(&mut self.rng, self.now, packet);
    }

    pub(super) fn absorb_facts(&mut self) {
        for fact in std::mem::take(&mut self.facts) {
            self.checker.on_store(&fact);
        }
    }

    /// Crashes the store.
    pub fn crash_store(&mut self, how: Crash) {
        if self.store.is_up() {
            self.store.crash();
            self.store_down(how);
        }
    }

    pub(super) fn store_down(&mut self, how: Crash) {
        self.stats.store_crashes += 1;
        match how {
            Crash::Process => self.store.disk().crash_process(),
            Crash::Power { torn } => {
                self.store.disk().lose_power(&mut self.rng, torn);
            }
        }
        self.trace
            .note(self.now, format_args!("store crashes ({how:?})"));
        self.store_restart_at = Some(self.now + self.down_time());
    }

    /// Restarts the store now.
    pub fn restart_store(&mut self) {
        self.store_restart_at = None;
        match self.store.start() {
            Ok(mark) => {
                self.trace
                    .note(self.now, format_args!("store restarts with mark {mark:?}"));
                self.checker.on_store(&StoreFact::Recovered(mark));
            }
            Err(e) => {
                self.trace
                    .note(self.now, format_args!("store cannot restart: {e}"));
                self.store_restart_at = Some(self.now + 50 * STEP_NS);
            }
        }
    }

    pub(crate) fn store_restart_pending(&self) -> bool {
        self.store_restart_at.is_some()
    }
}
