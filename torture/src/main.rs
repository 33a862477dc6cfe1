//! `fencekit-torture`: fencekit's processes in network namespaces of their own, under kernel
//! packet drops, clock, process and disk faults drawn from a seed, with a workload whose every
//! request is recorded and a checker that shares no code with the kernel or the store.

// Temporary: nothing calls the checker until the run is wired up.
#![allow(dead_code)]

mod checker;
mod history;

fn main() {}
