//! Checked writes: the fence's verdict on the token first, then the validator's on the payload.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::{Fence, ResourceId, Verdict};
use crate::error::Error;
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
    pub fn set_validator(
        &self,
        validator: Option<Arc<dyn WriteValidator>>,
    ) -> Option<Arc<dyn WriteValidator>> {
        self.validator
            .swap(validator.map(Arc::new))
            .map(|previous| Arc::clone(&*previous))
    }

    /// Checks a write: `token` against the mark of `id` (as [`Fence::check`] does, advancing
    /// it durably when the token is newer), then, if the fence accepts, `payload` with the
    /// validator. A validator that panics rejects (fail closed).
    pub fn check_write(
        &self,
        id: ResourceId,
        token: Token,
        payload: &[u8],
    ) -> Result<WriteVerdict, Error> {
        let verdict = self.check(id, token)?;
        let mark = match verdict {
            Verdict::Accepted => Some(token),
            Verdict::Advanced { previous } => previous,
            Verdict::Stale { .. } | Verdict::Conflict { .. } => {
                return Ok(WriteVerdict::Fenced(verdict));
            }
        };
        let loaded = self.validator.load();
        let Some(validator) = loaded.as_ref() else {
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
