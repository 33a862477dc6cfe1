//! The fence's log records: a resource's high-water mark, and a rebase.
//!
//! - [`RecordKind::FENCE_MARK`]: a mark of the unnamed source (every mark written before
//!   sources existed). Generation field: the mark's generation. Payload: holder (u64 LE), key.
//! - [`RecordKind::FENCE_SOURCED_MARK`]: a mark of a named source. Generation field: the
//!   mark's generation. Payload: holder (u64 LE), source name (u16 LE length, bytes), key.
//! - [`RecordKind::FENCE_REBASE`]: the resource moved to another source, its mark cleared.
//!   Generation field: the cleared mark's generation, 0 for none. Payload: when (u64 LE, ms
//!   since the Unix epoch), the cleared mark's holder (u64 LE, 0 for none), the source it was
//!   bound to (u16 LE length, bytes; length 0 for none), the new source (u16 LE length, bytes), who
//!   did it (u16 LE length, UTF-8), key.
//!
//! Replaying a resource's records in log order gives its state: a mark supersedes the mark
//! before it and must be of the resource's source with a generation no lower; a rebase clears
//! the mark and binds the new source. Anything else is corruption.

use crate::error::LogError;
use crate::limits::{KEY_LEN_MAX, REBASED_BY_MAX};
use crate::source::Source;
use crate::token::Token;
use crate::wal::{Record, RecordKind};

use super::rebase::{History, Rebase};

/// One decoded fence record.
pub(crate) enum FenceRecord<'a> {
    Mark {
        key: &'a [u8],
        source: Source,
        token: Token,
    },
    Rebase {
        key: &'a [u8],
        rebase: Rebase,
    },
}

impl<'a> FenceRecord<'a> {
    /// The key the record is about.
    pub(crate) fn key(&self) -> &'a [u8] {
        match self {
            FenceRecord::Mark { key, .. } | FenceRecord::Rebase { key, .. } => key,
        }
    }
}

/// A resource's state as the records so far give it.
#[derive(Default)]
pub(super) struct Replayed {
    /// `None` before its first mark or rebase.
    pub(super) source: Option<Source>,
    pub(super) mark: Option<Token>,
    pub(super) rebases: History,
}

impl Replayed {
    /// Applies the next record of this resource, or says why it cannot follow the ones before.
    pub(super) fn apply(&mut self, record: FenceRecord<'_>) -> Result<(), String> {
        match record {
            FenceRecord::Mark { source, token, .. } => {
                if let Some(bound) = &self.source
                    && *bound != source
                {
                    return Err(format!(
                        "fence mark {token} from {source} for a resource bound to {bound}"
                    ));
                }
                if let Some(previous) = self.mark
                    && token.generation < previous.generation
                {
                    return Err(format!(
                        "fence mark {token} for a key whose mark was already {previous}"
                    ));
                }
                self.source = Some(source);
                self.mark = Some(token);
            }
            FenceRecord::Rebase { mut rebase, .. } => {
                // As `Fence::rebase` decided: a former source gets its last mark back.
                rebase.restored_mark = self.rebases.former_mark(&rebase.to);
                self.source = Some(rebase.to.clone());
                self.mark = rebase.restored_mark;
                self.rebases.push(rebase);
            }
        }
        Ok(())
    }
}

/// The kind, generation field and payload of the record of `token` from `source`.
pub(super) fn encode_mark(token: Token, source: &Source, key: &[u8]) -> (RecordKind, Vec<u8>) {
    let mut payload = Vec::with_capacity(8 + 1 + source.as_str().len() + key.len());
    payload.extend_from_slice(&token.holder.get().to_le_bytes());
    if source.is_unnamed() {
        payload.extend_from_slice(key);
        return (RecordKind::FENCE_MARK, payload);
    }
    push_short(&mut payload, source.as_str().as_bytes());
    payload.extend_from_slice(key);
    (RecordKind::FENCE_SOURCED_MARK, payload)
}

/// The generation field and payload of a rebase record.
pub(super) fn encode_rebase(rebase: &Rebase, key: &[u8]) -> (u64, Vec<u8>) {
    let mut payload = Vec::new();
    payload.extend_from_slice(&rebase.at_unix_ms.to_le_bytes());
    let (generation, holder) = rebase
        .cleared_mark
        .map_or((0, 0), |t| (t.generation.get(), t.holder.get()));
    payload.extend_from_slice(&holder.to_le_bytes());
    push_short(
        &mut payload,
        rebase
            .from
            .as_ref()
            .map_or(&[][..], |s| s.as_str().as_bytes()),
    );
    push_short(&mut payload, rebase.to.as_str().as_bytes());
    let by = rebase.by.as_bytes();
    payload.extend_from_slice(&(by.len() as u16).to_le_bytes());
    payload.extend_from_slice(by);
    payload.extend_from_slice(key);
    (generation, payload)
}

fn push_short(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).expect("source names fit a u16 length (limits.rs)");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Reads a payload front to back, every overrun a corruption naming the record.
struct Reader<'r, 'a> {
    record: &'r Record<'a>,
    rest: &'a [u8],
}

impl<'a> Reader<'_, 'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], LogError> {
        if self.rest.len() < len {
            return Err(self.record.corrupt(format!(
                "{} record ends inside its {what}",
                kind_name(self.record.kind)
            )));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn u64(&mut self, what: &str) -> Result<u64, LogError> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(word))
    }

    fn source(&mut self, what: &str) -> Result<Option<Source>, LogError> {
        let mut len = [0u8; 2];
        len.copy_from_slice(self.take(2, what)?);
        let len = u16::from_le_bytes(len) as usize;
        if len == 0 {
            return Ok(None);
        }
        let bytes = self.take(len, what)?;
        let name = std::str::from_utf8(bytes)
            .map_err(|_| self.record.corrupt(format!("{what} is not text")))?;
        Source::parse_stored(name)
            .map(Some)
            .map_err(|e| self.record.corrupt(format!("{what}: {e}")))
    }

    fn key(self) -> Result<&'a [u8], LogError> {
        if self.rest.is_empty() || self.rest.len() > KEY_LEN_MAX {
            return Err(self.record.corrupt(format!(
                "{} record with a key of {} bytes (1 to {KEY_LEN_MAX})",
                kind_name(self.record.kind),
                self.rest.len()
            )));
        }
        Ok(self.rest)
    }
}

fn kind_name(kind: RecordKind) -> &'static str {
    kind.name().unwrap_or("fence")
}

/// The record decoded, or a corruption error naming it.
pub(crate) fn decode<'a>(record: &Record<'a>) -> Result<FenceRecord<'a>, LogError> {
    let mut reader = Reader {
        record,
        rest: record.payload,
    };
    let token = |holder: u64, what: &str| {
        Token::from_parts(record.generation, holder)
            .map_err(|e| record.corrupt(format!("{what} with an {e}")))
    };
    match record.kind {
        RecordKind::FENCE_MARK => {
            let holder = reader.u64("holder")?;
            Ok(FenceRecord::Mark {
                token: token(holder, "fence mark")?,
                source: Source::UNNAMED,
                key: reader.key()?,
            })
        }
        RecordKind::FENCE_SOURCED_MARK => {
            let holder = reader.u64("holder")?;
            let source = match reader.source("source")? {
                Some(source) if !source.is_unnamed() => source,
                _ => return Err(record.corrupt("a sourced fence mark without a named source")),
            };
            Ok(FenceRecord::Mark {
                token: token(holder, "fence mark")?,
                source,
                key: reader.key()?,
            })
        }
        RecordKind::FENCE_REBASE => {
            let at_unix_ms = reader.u64("time")?;
            let holder = reader.u64("cleared holder")?;
            let cleared_mark = match (record.generation, holder) {
                (0, 0) => None,
                _ => Some(token(holder, "fence rebase")?),
            };
            let from = reader.source("former source")?;
            let Some(to) = reader.source("new source")? else {
                return Err(record.corrupt("a fence rebase without a new source"));
            };
            let mut len = [0u8; 2];
            len.copy_from_slice(reader.take(2, "operator")?);
            let len = u16::from_le_bytes(len) as usize;
            if len > REBASED_BY_MAX {
                return Err(record.corrupt(format!("a rebase's operator of {len} bytes")));
            }
            let by = std::str::from_utf8(reader.take(len, "operator")?)
                .map_err(|_| record.corrupt("a rebase's operator is not UTF-8"))?
                .to_owned();
            Ok(FenceRecord::Rebase {
                rebase: Rebase {
                    from,
                    to,
                    cleared_mark,
                    restored_mark: None,
                    by,
                    at_unix_ms,
                },
                key: reader.key()?,
            })
        }
        other => Err(record.corrupt(format!(
            "record kind {:#04x} is not a fence record: is this another component's log, or \
             one a newer fencekit wrote?",
            other.get()
        ))),
    }
}
