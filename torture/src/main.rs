//! `fencekit-torture`: fencekit's processes in network namespaces of their own, under kernel
//! packet drops, clock, process and disk faults drawn from a seed, with a workload whose every
//! request is recorded and a checker that shares no code with the kernel or the store.

// Until the run is wired up, nothing calls the network and disk modules.
#![allow(dead_code)]

mod checker;
mod disk;
mod history;
mod net;

fn main() {}
