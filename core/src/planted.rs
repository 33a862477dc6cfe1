//! Bugs planted on purpose, to show that the simulator catches each one.
//!
//! A bug can be switched on only in the simulator's own build of this crate: the package
//! `fencekit-planted` (`sim/kernel/`) compiles these same sources with the cfg
//! `fencekit_planted`, which its build script sets for that crate alone. A cargo feature would
//! not do: cargo unifies features, so `cargo build --workspace` would compile the planted code
//! into the shipped binaries. In the `fencekit` package this module is private, holds no
//! switch, and every check below is a constant `false`: the branches it guards are dead code that
//! optimised builds remove (a debug build keeps them, unreachable, since nothing can plant). Even where it is
//! compiled in, a bug is switched on only for the calling thread, so tests running in parallel
//! do not see each other's bugs.

/// A bug that can be planted.
#[cfg_attr(
    not(fencekit_planted),
    allow(
        dead_code,
        unreachable_pub,
        reason = "a private module here, named only by checks that are constant false"
    )
)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PlantedBug {
    /// The node reports leadership after its lease has run out: it acts without checking the
    /// lease (I3, I4).
    LeaseIgnored,
    /// The fence reports an advance before the new high-water mark is durable; the mark rides
    /// with a later sync (I5, I6).
    FenceAckBeforeDurable,
    /// A node answers a vote (or takes a new term) before its hard state is durable; the hard
    /// state rides with a later sync (I2).
    VoteBeforePersist,
}

impl PlantedBug {
    /// Every bug, for tools that list them.
    #[cfg(fencekit_planted)]
    pub const ALL: [PlantedBug; 3] = [
        PlantedBug::LeaseIgnored,
        PlantedBug::FenceAckBeforeDurable,
        PlantedBug::VoteBeforePersist,
    ];

    /// The bug's name on a command line.
    #[cfg(fencekit_planted)]
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::LeaseIgnored => "lease-ignored",
            PlantedBug::FenceAckBeforeDurable => "fence-ack-before-durable",
            PlantedBug::VoteBeforePersist => "vote-before-persist",
        }
    }
}

#[cfg(fencekit_planted)]
thread_local! {
    static PLANTED: std::cell::Cell<Option<PlantedBug>> = const { std::cell::Cell::new(None) };
}

/// Plants `bug` (or none) for the calling thread.
#[cfg(fencekit_planted)]
pub fn plant(bug: Option<PlantedBug>) {
    PLANTED.with(|p| p.set(bug));
}

/// Whether `bug` is planted on this thread.
#[cfg(fencekit_planted)]
pub(crate) fn active(bug: PlantedBug) -> bool {
    PLANTED.with(|p| p.get() == Some(bug))
}

/// Whether `bug` is planted on this thread: never, outside the simulator's build.
#[cfg(not(fencekit_planted))]
pub(crate) const fn active(_bug: PlantedBug) -> bool {
    false
}
