//! Integration tests of the kernel: one binary, a module per concern (raft-rs's harness
//! layout). Crash tests re-execute this binary as the child they kill.

#![allow(
    clippy::unwrap_used,
    reason = "a test that meets an error should stop right there"
)]

mod bad_input;
mod concurrency;
mod conflicts;
mod crash;
mod damage;
mod fence_model;
mod full_disk;
mod sources;
mod support;
mod vectors;
mod wal_recovery;
mod write_validation;
