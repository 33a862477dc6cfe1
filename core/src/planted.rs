//! Bugs planted on purpose, to show that the simulator catches each one.
//!
//! A bug can be switched on only when the crate is built with the `planted-bugs` feature,
//! which only the simulator (`sim/`) enables, and then only for the calling thread, so tests
//! running in parallel do not see each other's bugs. Without the feature every check below is
//! a constant `false` and compiles away.

/// A bug that can be planted.
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
    pub const ALL: [PlantedBug; 3] = [
        PlantedBug::LeaseIgnored,
        PlantedBug::FenceAckBeforeDurable,
        PlantedBug::VoteBeforePersist,
    ];

    /// The bug's name on a command line.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::LeaseIgnored => "lease-ignored",
            PlantedBug::FenceAckBeforeDurable => "fence-ack-before-durable",
            PlantedBug::VoteBeforePersist => "vote-before-persist",
        }
    }
}

#[cfg(feature = "planted-bugs")]
thread_local! {
    static PLANTED: std::cell::Cell<Option<PlantedBug>> = const { std::cell::Cell::new(None) };
}

/// Plants `bug` (or none) for the calling thread.
#[cfg(feature = "planted-bugs")]
pub fn plant(bug: Option<PlantedBug>) {
    PLANTED.with(|p| p.set(bug));
}

/// Whether `bug` is planted on this thread.
#[cfg(feature = "planted-bugs")]
pub(crate) fn active(bug: PlantedBug) -> bool {
    PLANTED.with(|p| p.get() == Some(bug))
}

/// Whether `bug` is planted on this thread: never, without the `planted-bugs` feature.
#[cfg(not(feature = "planted-bugs"))]
pub(crate) const fn active(_bug: PlantedBug) -> bool {
    false
}
