//! The fence's errors (`fence.rs`): tokens, keys, sources, resources, batches, rebases, and
//! the fence's own log failures.

use crate::limits::KEY_LEN_MAX;

use super::{ErrorKind, Forked, LogError, OutOfRange};

/// An error of the fence. One pointer wide: `Fence::check` returns `Result<Verdict,
/// FenceError>` on the hot path, and a wide error would make every call move its bytes (a
/// test bounds the size). What went wrong is [`FenceError::fault`]; its class,
/// [`FenceError::kind`].
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct FenceError(Box<FenceFault>);

/// What went wrong in the fence. A failed operation leaves the fence unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FenceFault {
    /// A token, generation or node id that is not valid (zero, out of range, badly encoded).
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),

    /// A resource key that is empty or too long.
    #[error(
        "invalid key: a key is 1 to {KEY_LEN_MAX} bytes; this one is {}",
        if *len == 0 { String::from("empty") } else { format!("{len} bytes") }
    )]
    InvalidKey {
        /// The key's length.
        len: usize,
    },

    /// The fence holds as many resources as it was opened for.
    #[error(
        "the fence already holds {max} resources; open it with a larger FenceOptions::max_resources"
    )]
    TooManyResources {
        /// The configured capacity.
        max: usize,
    },

    /// A token source name that is not valid (see `source.rs`), or a source id this fence
    /// never gave.
    #[error("invalid token source {0}")]
    InvalidSource(String),

    /// The fence already knows as many token sources as it can.
    #[error(
        "the fence already knows {max} token sources; a storage has a few, not one per request"
    )]
    TooManySources {
        /// The most a fence knows.
        max: usize,
    },

    /// A rebase the fence refuses (the message says why); nothing was written.
    #[error("rebase refused: {0}")]
    RebaseRefused(String),

    /// A `ResourceId` that this fence never handed out.
    #[error("unknown resource id {0}: register the key with this fence first")]
    UnknownResource(u32),

    /// A batch with a bad item (the message begins `item <index>: `), or whose output is not
    /// as long as its input.
    #[error("invalid batch: {0}")]
    InvalidBatch(String),

    /// A batch longer than `limits::BATCH_MAX`.
    #[error("invalid batch: {0}; split it")]
    BatchTooLong(OutOfRange),

    /// A fence option outside its range.
    #[error("fence option {0}")]
    Option(OutOfRange),

    /// The fence's log failed, or holds something else than a fence's marks.
    #[error(transparent)]
    Log(#[from] LogError),

    /// The fence was used in a child process after `fork`.
    #[error(transparent)]
    Forked(#[from] Forked),
}

impl FenceError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind()
    }

    /// What went wrong.
    pub fn fault(&self) -> &FenceFault {
        &self.0
    }

    /// What went wrong, by value.
    pub fn into_fault(self) -> FenceFault {
        *self.0
    }
}

impl FenceFault {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            FenceFault::InvalidToken(_) => ErrorKind::InvalidToken,
            FenceFault::InvalidKey { .. } => ErrorKind::InvalidKey,
            FenceFault::TooManyResources { .. } => ErrorKind::TooManyResources,
            FenceFault::InvalidSource(_) => ErrorKind::InvalidSource,
            FenceFault::TooManySources { .. } => ErrorKind::TooManySources,
            FenceFault::RebaseRefused(_) => ErrorKind::RebaseRefused,
            FenceFault::UnknownResource(_) => ErrorKind::UnknownResource,
            FenceFault::InvalidBatch(_) | FenceFault::BatchTooLong(_) => ErrorKind::InvalidBatch,
            FenceFault::Option(_) => ErrorKind::OutOfRange,
            FenceFault::Log(e) => e.kind(),
            FenceFault::Forked(_) => ErrorKind::Forked,
        }
    }
}

impl From<FenceFault> for FenceError {
    // Off the hot path: building an error allocates, which a check that succeeds never does.
    #[cold]
    fn from(fault: FenceFault) -> FenceError {
        FenceError(Box::new(fault))
    }
}

impl From<LogError> for FenceError {
    #[cold]
    fn from(e: LogError) -> FenceError {
        FenceFault::Log(e).into()
    }
}

impl From<Forked> for FenceError {
    #[cold]
    fn from(e: Forked) -> FenceError {
        FenceFault::Forked(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fence::Verdict;

    /// The fence's hot path returns `Result<Verdict, FenceError>`: it must stay as small as a
    /// verdict (24 bytes: a tag and a token), so a check moves no more than that.
    #[test]
    fn a_check_result_is_no_larger_than_a_verdict() {
        assert_eq!(size_of::<FenceError>(), size_of::<usize>());
        assert!(size_of::<Verdict>() <= 24, "{}", size_of::<Verdict>());
        // The error fits beside the verdict's tag: the result costs nothing over the verdict.
        assert_eq!(
            size_of::<Result<Verdict, FenceError>>(),
            size_of::<Verdict>()
        );
    }

    /// A key's error says whether it was empty or how long it was, and the bound.
    #[test]
    fn a_key_error_says_what_is_wrong() {
        let empty = FenceError::from(FenceFault::InvalidKey { len: 0 });
        assert_eq!(empty.kind(), ErrorKind::InvalidKey);
        assert!(empty.to_string().contains("empty"), "{empty}");
        let long = FenceError::from(FenceFault::InvalidKey { len: 300 });
        assert!(long.to_string().contains("this one is 300 bytes"), "{long}");
        assert!(
            long.to_string().contains(&KEY_LEN_MAX.to_string()),
            "{long}"
        );
    }
}
