//! Tests of the Raft node: the deterministic replica harness (virtual clocks, simulated
//! network) for leadership, leases, transfer, membership and restarts; the threaded node; and
//! a cluster over real TCP.

#![allow(
    clippy::unwrap_used,
    reason = "a test that meets an error should stop right there"
)]

mod attack;
mod disk_stall;
mod harness;
mod replica;
mod step_guard;
mod storage;
mod tcp;
mod threaded;
