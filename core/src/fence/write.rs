//! Checked writes: the fence's verdict on the token first, then the validator's on the payload.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Fence, ResourceId, Verdict};
use crate::error::FenceError;
use crate::policy::{Rejection, Validation, WriteValidator};
use crate::token::Token;

/// The answer to [`Fence::check_write`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteVerdict {
    /// The fence accepted the token (`Accepted` or `Advanced`) and the validator, if any, the
    /// payload: the write may land.
    Accepted(Verdict),
    /// The fence rejected the token (`Stale` or `Conflict`); the validator was not asked.
    Fenced(Verdict),
    /// The fence accepted the token but the validator refused the payload: the write must not
    /// land. An advance the token caused stands: the token is newer whatever its payload.
    Invalid {
        /// The fence's verdict on the token.
        verdict: Verdict,
        /// Why the payload was refused.
        rejection: Rejection,
    },
}

impl WriteVerdict {
    /// True only for [`WriteVerdict::Accepted`].
    pub fn is_accepted(&self) -> bool {
        matches!(self, WriteVerdict::Accepted(_))
    }

    /// The fence's verdict on the token.
    pub fn fence_verdict(&self) -> Verdict {
        match self {
            WriteVerdict::Accepted(v) | WriteVerdict::Fenced(v) => *v,
            WriteVerdict::Invalid { verdict, .. } => *verdict,
        }
    }
}

impl Fence {
    /// Sets the validator [`Fence::check_write`] asks (`None`: payloads are not checked), and
    /// returns the one it replaces. Checks in flight finish with the validator they loaded.
    /// Every validator set stays in memory until the fence is dropped (the price of a check
    /// that reads it without taking a reference): replace validators rarely, not per request.
    pub fn set_validator(
        &self,
        validator: Option<Arc<dyn WriteValidator>>,
    ) -> Option<Arc<dyn WriteValidator>> {
        let mut kept = self.validators.lock().unwrap_or_else(|p| p.into_inner());
        let pointer = match validator {
            Some(validator) => {
                let boxed = Box::new(validator);
                // The box's heap address: it stays put when the box moves into `kept`.
                let pointer = std::ptr::from_ref::<Arc<dyn WriteValidator>>(&*boxed).cast_mut();
                kept.push(boxed);
                pointer
            }
            None => std::ptr::null_mut(),
        };
        let previous = self.validator.swap(pointer, Ordering::AcqRel);
        // SAFETY: null or a pointer into a box of `kept`, which lives as long as `self`.
        unsafe { previous.as_ref() }.cloned()
    }

    /// Checks a write: `token` against the mark of `id` (as [`Fence::check`] does, advancing
    /// it durably when the token is newer), then, if the fence accepts, `payload` with the
    /// validator. A validator that panics rejects (fail closed).
    pub fn check_write(
        &self,
        id: ResourceId,
        token: Token,
        payload: &[u8],
    ) -> Result<WriteVerdict, FenceError> {
        let verdict = self.check(id, token)?;
        let mark = match verdict {
            Verdict::Accepted => Some(token),
            Verdict::Advanced { previous } => previous,
            Verdict::Stale { .. } | Verdict::Conflict { .. } | Verdict::ForeignSource { .. } => {
                return Ok(WriteVerdict::Fenced(verdict));
            }
        };
        // SAFETY: null or a pointer into a box of `self.validators`, freed only with `self`.
        let Some(validator) = (unsafe { self.validator.load(Ordering::Acquire).as_ref() }) else {
            return Ok(WriteVerdict::Accepted(verdict));
        };
        let key = self.key(id)?;
        let validation = catch_unwind(AssertUnwindSafe(|| {
            validator.validate(key, token, mark, payload)
        }))
        .unwrap_or_else(|_| {
            Validation::Reject(Rejection {
                code: Rejection::FAILED,
                reason: "the validator panicked".into(),
            })
        });
        Ok(match validation {
            Validation::Accept => WriteVerdict::Accepted(verdict),
            Validation::Reject(rejection) => WriteVerdict::Invalid { verdict, rejection },
        })
    }
}
