//! Use after `fork` (see `fork.rs`), as a value each layer wraps.

/// A fence, log or node used in a child process after `fork`: the child holds a copy that its
/// parent keeps changing, so using it could move a mark backwards. Open it anew in the child
/// (one per worker process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this {what} was opened in process {opened_in} and is used after fork in process \
     {used_in}; open a new {what} in each process instead of sharing one across fork"
)]
pub struct Forked {
    /// What was used: "fence", "log" or "node".
    pub what: &'static str,
    /// The process that opened it.
    pub opened_in: u32,
    /// The process that used it.
    pub used_in: u32,
}
