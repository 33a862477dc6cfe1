//! Tokens and verdicts as C structs.

use kernel::{Token, Verdict};

use crate::boundary;

/// A fencing token: the generation (Raft term, 1 to 2^63 − 1) and the node holding it (1 to
/// 2^64 − 1); the all-zero token means "none" (a resource without a mark).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct fk_token {
    /// The generation.
    pub generation: u64,
    /// Who holds it: a fencekit node id, or another coordinator's holder (an etcd lease id, a
    /// ZooKeeper session id; see `fk_token_from_etcd` and its kin). Never 0.
    pub holder: u64,
}

impl fk_token {
    #[inline(always)]
    pub(crate) fn to_kernel(self) -> Result<Token, kernel::FenceError> {
        Token::from_parts(self.generation, self.holder)
    }

    pub(crate) fn from_kernel(token: Option<Token>) -> fk_token {
        token.map_or(fk_token::default(), |t| fk_token {
            generation: t.generation.get(),
            holder: t.holder.get(),
        })
    }
}

/// What kind of answer a verdict is: a `uint32_t` with the `FK_VERDICT_*` values.
pub type fk_verdict_kind = u32;

/// No verdict (a zeroed struct, or a batch item after a failure): treat it as a rejection.
pub const FK_VERDICT_NONE: fk_verdict_kind = 0;
/// The token is the current mark: the write may land.
pub const FK_VERDICT_ACCEPTED: fk_verdict_kind = 1;
/// The token is newer than the mark, and is now the durable mark: the write may land.
pub const FK_VERDICT_ADVANCED: fk_verdict_kind = 2;
/// The token is older than the mark (a deposed leader): the write must not land.
pub const FK_VERDICT_STALE: fk_verdict_kind = 3;
/// Another holder has the token's generation (split brain): the write must not land.
pub const FK_VERDICT_CONFLICT: fk_verdict_kind = 4;
/// The token comes from another source than the resource takes tokens from (numbers from two
/// coordinators are not comparable): the write must not land. `current` and `previous` are
/// zero; `fk_fence_bound_source` names the resource's source, and `fk_fence_rebase` moves it.
pub const FK_VERDICT_FOREIGN_SOURCE: fk_verdict_kind = 5;

/// The fence's answer to one token.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct fk_verdict {
    /// `FK_VERDICT_*`. Only `FK_VERDICT_ACCEPTED` and `FK_VERDICT_ADVANCED` let a write land.
    pub kind: fk_verdict_kind,
    /// Zero.
    pub reserved: u32,
    /// The resource's mark after the check: the token itself when accepted or advanced, the
    /// mark that outranks it when stale or conflicting.
    pub current: fk_token,
    /// For `FK_VERDICT_ADVANCED`: the mark it replaced (all zero for the first). Otherwise zero.
    pub previous: fk_token,
}

impl fk_verdict {
    #[inline(always)]
    pub(crate) fn new(verdict: Verdict, token: Token) -> fk_verdict {
        let (kind, current, previous) = match verdict {
            Verdict::Accepted => (FK_VERDICT_ACCEPTED, Some(token), None),
            Verdict::Advanced { previous } => (FK_VERDICT_ADVANCED, Some(token), previous),
            Verdict::Stale { current } => (FK_VERDICT_STALE, Some(current), None),
            Verdict::Conflict { current } => (FK_VERDICT_CONFLICT, Some(current), None),
            Verdict::ForeignSource { .. } => (FK_VERDICT_FOREIGN_SOURCE, None, None),
        };
        fk_verdict {
            kind,
            reserved: 0,
            current: fk_token::from_kernel(current),
            previous: fk_token::from_kernel(previous),
        }
    }
}

/// True when `verdict` lets the write land (accepted or advanced). False for everything else,
/// including a NULL pointer and a zeroed verdict.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `verdict` is NULL or points to a readable `fk_verdict`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_verdict_is_accepted(verdict: *const fk_verdict) -> bool {
    boundary::infallible(false, || {
        // SAFETY: NULL or a readable verdict (the caller's contract).
        unsafe { verdict.as_ref() }
            .is_some_and(|v| v.kind == FK_VERDICT_ACCEPTED || v.kind == FK_VERDICT_ADVANCED)
    })
}
