//! Moving a resource to another token source: an operator's explicit, durable act.
//!
//! Numbers from two coordinators are not comparable, so a fence never moves a resource from one
//! source to another by itself: a re-created etcd cluster restarts its revisions at 1, and a
//! fence that took them as stale would lock its new leader out for good, while one that took
//! them as new could not refuse the old cluster's zombies. [`Fence::rebase`] binds the resource
//! to the new source and clears its mark, durably and with who did it; from then on the old
//! source's tokens are refused as foreign and the new source's first token sets the mark.
//!
//! A resource moved back to a source it took tokens from before gets that source's last mark
//! back, not an empty one: the numbering goes on where it was, and the tokens it had already
//! passed stay stale (A to B and back to A must not let A's old zombies in). So a resource
//! keeps, across compaction, its latest rebase away from each former source ([`History`]).

use std::time::{SystemTime, UNIX_EPOCH};

use super::{Fence, mark};
use crate::error::{FenceError, FenceFault};
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
    /// The mark `to` had when the resource was last moved away from it, restored by this
    /// rebase; `None` for a source the resource never took tokens from (no mark).
    pub restored_mark: Option<Token>,
    /// Who did it, as they said.
    pub by: String,
    /// When, in milliseconds since the Unix epoch (the wall clock of the machine that did it).
    pub at_unix_ms: u64,
}

/// The rebases a resource keeps: its latest away from each former source, oldest first, so
/// that each former source's last mark is known. The last is the resource's last rebase.
/// Bounded by the sources one resource was ever bound to.
#[derive(Clone, Debug, Default)]
pub(super) struct History(Vec<Rebase>);

impl History {
    pub(super) fn last(&self) -> Option<&Rebase> {
        self.0.last()
    }

    /// The mark `source` had when the resource was last moved away from it.
    pub(super) fn former_mark(&self, source: &Source) -> Option<Token> {
        self.0
            .iter()
            .rev()
            .find(|r| r.from.as_ref() == Some(source))
            .and_then(|r| r.cleared_mark)
    }

    /// Records `rebase`, which replaces the one away from the same source.
    pub(super) fn push(&mut self, rebase: Rebase) {
        self.0.retain(|r| r.from != rebase.from);
        self.0.push(rebase);
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Rebase> {
        self.0.iter()
    }
}

/// Refuses a "who did it" too long to keep by its length alone (the C ABI does so before it
/// reads a byte of it).
pub fn validate_by_len(len: usize) -> Result<(), FenceError> {
    if len > REBASED_BY_MAX {
        return Err(FenceFault::RebaseRefused(format!(
            "who rebases is said in at most {REBASED_BY_MAX} bytes; this is {len}"
        ))
        .into());
    }
    Ok(())
}

/// Refuses a "who did it" that would not tell anyone anything, or could forge log lines.
fn validate_by(by: &str) -> Result<(), FenceError> {
    if by.trim().is_empty() {
        return Err(FenceFault::RebaseRefused(
            "say who rebases (a person or a change ticket): the log keeps it".into(),
        )
        .into());
    }
    validate_by_len(by.len())?;
    if by.chars().any(char::is_control) {
        return Err(FenceFault::RebaseRefused(
            "who rebases is said without control characters".into(),
        )
        .into());
    }
    Ok(())
}

impl Fence {
    /// Binds the resource `key` (registering it if new) to the token source `to` and clears
    /// its mark, durably, recording `by` (who did it) and the time. From then on a token of
    /// any other source is refused ([`super::Verdict::ForeignSource`]) and the first token of
    /// `to` sets the mark, whatever its generation. A resource moved back to a source it took
    /// tokens from before gets that source's last mark back instead
    /// ([`Rebase::restored_mark`]): its old tokens stay stale.
    ///
    /// Refused ([`FenceFault::RebaseRefused`], nothing written) when the resource is already bound
    /// to `to`: its former and new numbering could not be told apart, and a zombie of the
    /// former would outrank the new leader. A re-created coordinator is a new source (see
    /// `source.rs`). Also refused: an empty `by`, or one with control characters.
    pub fn rebase(&self, key: &[u8], to: &Source, by: &str) -> Result<Rebase, FenceError> {
        self.usable.opened().check("fence")?;
        validate_by(by)?;
        let id = self.register(key)?;
        let to_id = self.sources.intern(to)?;
        let slot = &self.slots[id.as_u32() as usize];
        let guard = slot.lock();
        let bound = slot.bound(&guard);
        if bound == Some(to_id) {
            return Err(FenceFault::RebaseRefused(format!(
                "{} already takes tokens from {to}; a rebase to the same source could not tell \
                 its former numbering from the new. A re-created coordinator is a new source \
                 (etcd and Kubernetes give it a new id; give a ZooKeeper ensemble or a named \
                 source a new name)",
                show_bytes(key, usize::MAX)
            ))
            .into());
        }
        let from = bound.map(|b| self.sources.name(b)).transpose()?;
        // Plain `check` is how a fencekit group's tokens are usually checked: `unnamed` and
        // `fencekit:<id>` may well be one numbering under two names.
        if let Some(from) = &from
            && (from.is_unnamed() && to.is_fencekit_group()
                || from.is_fencekit_group() && to.is_unnamed())
        {
            return Err(FenceFault::RebaseRefused(format!(
                "{} takes tokens from {from}; {to} may be the same group's terms under another \
                 name (plain check is how a fencekit group's tokens are checked), and a rebase \
                 would clear a mark the terms go on from. Keep checking them as {from}",
                show_bytes(key, usize::MAX)
            ))
            .into());
        }
        // Lock order: the resource's lock, the compaction gate, then its history (compaction
        // holds the gate while it reads every history).
        let gate = self
            .compaction_gate
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut history = slot.rebases.lock().unwrap_or_else(|p| p.into_inner());
        let rebase = Rebase {
            from,
            to: to.clone(),
            cleared_mark: slot.current_locked(&guard).map(|(token, _)| token),
            restored_mark: history.former_mark(to),
            by: by.to_owned(),
            at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let (generation, record) = mark::encode_rebase(&rebase, key);
        if let Err(e) =
            self.wal
                .append_sync(crate::wal::RecordKind::FENCE_REBASE, generation, &record)
        {
            self.revoke_if_log_failed();
            return Err(e.into());
        }
        // A rebase lets a whole numbering in: the superblock records it at once, so that no
        // damage to the log's tail can later pass it off as never written.
        if let Err(e) = self.wal.record_durable_now() {
            // The rebase itself is durable and takes effect when the fence is reopened; until
            // then this fence refuses every check rather than go on with the former source.
            self.usable.revoke();
            return Err(e.into());
        }
        match rebase.restored_mark {
            Some(mark) => slot.publish(&guard, mark, to_id),
            None => slot.rebind(&guard, to_id),
        }
        history.push(rebase.clone());
        drop(history);
        drop(gate);
        drop(guard);
        log::warn!(
            "fence: {} rebased from {} to {to} by {by:?}; its mark {} is cleared, {}",
            show_bytes(key, usize::MAX),
            rebase
                .from
                .as_ref()
                .map_or("no source".to_owned(), |s| s.to_string()),
            rebase
                .cleared_mark
                .map_or("(none)".to_owned(), |t| t.to_string()),
            rebase
                .restored_mark
                .map_or("and the mark starts afresh".to_owned(), |t| format!(
                    "and {to}'s own last mark {t} is restored"
                )),
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
                matches!(
                    validate_by(bad).map_err(FenceError::into_fault),
                    Err(FenceFault::RebaseRefused(_))
                ),
                "{bad:?}"
            );
        }
        validate_by("alice (CHG-1234)").unwrap();
    }
}
