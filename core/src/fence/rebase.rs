//! Moving a resource to another token source: an operator's explicit, durable act.
//!
//! Numbers from two coordinators are not comparable, so a fence never moves a resource from one
//! source to another by itself: a re-created etcd cluster restarts its revisions at 1, and a
//! fence that took them as stale would lock its new leader out for good, while one that took
//! them as new could not refuse the old cluster's zombies. [`Fence::rebase`] binds the resource
//! to the new source and clears its mark, durably and with who did it; from then on the old
//! source's tokens are refused as foreign and the new source's first token sets the mark.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{Fence, mark};
use crate::error::Error;
use crate::inspect::show_bytes;
use crate::limits::REBASED_BY_MAX;
use crate::source::Source;
use crate::token::Token;

/// A rebase, as [`Fence::rebase`] made it and the log keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rebase {
    /// The source the resource was bound to, `None` if it had taken no token yet.
    pub from: Option<Source>,
    /// The source it takes tokens from since.
    pub to: Source,
    /// The mark the rebase cleared, `None` if it had none.
    pub cleared_mark: Option<Token>,
    /// Who did it, as they said.
    pub by: String,
    /// When, in milliseconds since the Unix epoch (the wall clock of the machine that did it).
    pub at_unix_ms: u64,
}

/// Refuses a "who did it" that would not tell anyone anything, or could forge log lines.
fn validate_by(by: &str) -> Result<(), Error> {
    if by.trim().is_empty() {
        return Err(Error::RebaseRefused(
            "say who rebases (a person or a change ticket): the log keeps it".into(),
        ));
    }
    if by.len() > REBASED_BY_MAX {
        return Err(Error::RebaseRefused(format!(
            "who rebases is said in at most {REBASED_BY_MAX} bytes; this is {}",
            by.len()
        )));
    }
    if by.chars().any(char::is_control) {
        return Err(Error::RebaseRefused(
            "who rebases is said without control characters".into(),
        ));
    }
    Ok(())
}

impl Fence {
    /// Binds the resource `key` (registering it if new) to the token source `to` and clears
    /// its mark, durably, recording `by` (who did it) and the time. From then on a token of
    /// any other source is refused ([`super::Verdict::ForeignSource`]) and the first token of
    /// `to` sets the mark, whatever its generation.
    ///
    /// Refused ([`Error::RebaseRefused`], nothing written) when the resource is already bound
    /// to `to`: its former and new numbering could not be told apart, and a zombie of the
    /// former would outrank the new leader. A re-created coordinator is a new source (see
    /// `source.rs`). Also refused: an empty `by`, or one with control characters.
    pub fn rebase(&self, key: &[u8], to: &Source, by: &str) -> Result<Rebase, Error> {
        self.usable.opened().check("fence")?;
        validate_by(by)?;
        let id = self.register(key)?;
        let to_id = self.sources.intern(to)?;
        let slot = &self.slots[id.as_u32() as usize];
        let guard = slot.lock();
        let bound = slot.bound(&guard);
        if bound == Some(to_id) {
            return Err(Error::RebaseRefused(format!(
                "{} already takes tokens from {to}; a rebase to the same source could not tell \
                 its former numbering from the new. A re-created coordinator is a new source \
                 (etcd and Kubernetes give it a new id; give a ZooKeeper ensemble or a named \
                 source a new name)",
                show_bytes(key, usize::MAX)
            )));
        }
        let from = bound.map(|b| self.sources.name(b)).transpose()?;
        let rebase = Rebase {
            from,
            to: to.clone(),
            cleared_mark: slot.current_locked(&guard).map(|(token, _)| token),
            by: by.to_owned(),
            at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let (generation, record) = mark::encode_rebase(&rebase, key);
        {
            let _gate = self
                .compaction_gate
                .read()
                .unwrap_or_else(|p| p.into_inner());
            if let Err(e) =
                self.wal
                    .append_sync(crate::wal::RecordKind::FENCE_REBASE, generation, &record)
            {
                self.revoke_if_log_failed();
                return Err(e);
            }
            slot.rebind(&guard, to_id);
            *slot.last_rebase.lock().unwrap_or_else(|p| p.into_inner()) = Some(rebase.clone());
        }
        drop(guard);
        log::warn!(
            "fence: {} rebased from {} to {to} by {by:?}; its mark {} is cleared",
            show_bytes(key, usize::MAX),
            rebase
                .from
                .as_ref()
                .map_or("no source".to_owned(), |s| s.to_string()),
            rebase
                .cleared_mark
                .map_or("(none)".to_owned(), |t| t.to_string()),
        );
        self.maybe_compact();
        Ok(rebase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_did_it_is_checked() {
        for bad in [
            "",
            "  ",
            "a\nb",
            "a\u{1b}[31m",
            &"x".repeat(REBASED_BY_MAX + 1),
        ] {
            assert!(
                matches!(validate_by(bad), Err(Error::RebaseRefused(_))),
                "{bad:?}"
            );
        }
        validate_by("alice (CHG-1234)").unwrap();
    }
}
