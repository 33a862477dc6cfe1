//! The size checks of proposals, in one place: the node, its replica and the C ABI (before it
//! copies a caller's bytes) refuse the same lengths with the same error.

use crate::error::{NodeError, OutOfRange};
use crate::limits::{PROPOSAL_MAX, PROPOSE_BATCH_MAX};

/// Refuses a proposal longer than [`PROPOSAL_MAX`] bytes ([`NodeError::ProposalTooLarge`]): an
/// entry must fit in one log record. An empty proposal is the node's to refuse
/// ([`NodeError::EmptyProposal`]); this checks the length alone, so it can run before a byte is read.
pub fn validate_proposal_len(len: usize) -> Result<(), NodeError> {
    if len > PROPOSAL_MAX {
        return Err(NodeError::ProposalTooLarge(OutOfRange::new(
            "proposal length",
            len as u64,
            1,
            PROPOSAL_MAX as u64,
        )));
    }
    Ok(())
}

/// Refuses a batch of no proposals or more than [`PROPOSE_BATCH_MAX`]
/// ([`NodeError::InvalidBatch`]).
pub fn validate_batch_len(count: usize) -> Result<(), NodeError> {
    let range = OutOfRange::new("batch length", count as u64, 1, PROPOSE_BATCH_MAX as u64);
    if range.holds() {
        Ok(())
    } else {
        Err(NodeError::InvalidBatch(range))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn the_bounds_are_the_limits() {
        assert!(validate_proposal_len(0).is_ok());
        assert!(validate_proposal_len(PROPOSAL_MAX).is_ok());
        let e = validate_proposal_len(PROPOSAL_MAX + 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        assert!(matches!(e, NodeError::ProposalTooLarge(r) if r.max == PROPOSAL_MAX as u64));
        assert_eq!(
            validate_proposal_len(usize::MAX).unwrap_err().kind(),
            ErrorKind::TooLarge
        );
        assert!(validate_batch_len(1).is_ok());
        assert!(validate_batch_len(PROPOSE_BATCH_MAX).is_ok());
        for bad in [0, PROPOSE_BATCH_MAX + 1] {
            let e = validate_batch_len(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidBatch);
            assert!(e.to_string().contains("batch length"), "{e}");
        }
    }
}
