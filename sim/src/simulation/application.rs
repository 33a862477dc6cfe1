//! Each node's application: the job scheduler while `leadership()` says it leads, a stream of
//! proposals from the leader, and compaction of the replicated state machine.

use fencekit::LogIndex;
use fencekit::time::Instant;
use rand::Rng;

use super::Simulation;
use super::lifecycle::Slot;

/// The application compacts the log after this many entries.
const COMPACT_EVERY: u64 = 2_000;

impl Simulation {
    /// The application's turn: the scheduler and the proposals.
    pub(super) fn act(&mut self, n: u64, slot: &mut Slot, local: Instant) {
        if !self.config.workload {
            return;
        }
        let replica = slot.replica.as_mut().expect("running");
        let leadership = replica.leadership(local);
        slot.scheduler
            .poll(local.as_nanos(), leadership, &mut slot.outbox);
        if replica.raft().state == raft::StateRole::Leader {
            for _ in 0..self.config.proposals_per_step {
                let data = self.rng.r#gen::<[u8; 24]>().to_vec();
                // Refused when not the leader after all, or over the in-flight limit.
                let _ = replica.propose(data, 0);
            }
        }
        if slot.machine.index >= slot.last_compact + COMPACT_EVERY {
            let (index, data) = (slot.machine.index, slot.machine.encode());
            match replica.compact(LogIndex::new(index), &data) {
                Ok(()) => slot.last_compact = index,
                Err(e) => self.node_failed(n, slot, e),
            }
        }
    }
}
