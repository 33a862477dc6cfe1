//! The fence's log record: one resource's high-water mark.
//!
//! Kind [`RecordKind::FENCE_MARK`]; the record's generation field is the mark's generation;
//! the payload is the holder (u64, little-endian) followed by the key. Replaying the records of
//! a resource in log order gives its mark: each record supersedes the previous one, and a
//! record whose generation is lower than its predecessor's is corruption.

use crate::error::Error;
use crate::limits::KEY_LEN_MAX;
use crate::token::Token;
use crate::wal::{Record, RecordKind};

pub(super) fn encode(token: Token, key: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(8 + key.len());
    payload.extend_from_slice(&token.holder.get().to_le_bytes());
    payload.extend_from_slice(key);
    payload
}

/// The key and token of a mark record, or a corruption error naming the record.
pub(crate) fn decode<'a>(record: &Record<'a>) -> Result<(&'a [u8], Token), Error> {
    if record.kind != RecordKind::FENCE_MARK {
        return Err(record.corrupt(format!(
            "record kind {:#04x} is not a fence mark: is this another component's log?",
            record.kind.get()
        )));
    }
    let payload = record.payload;
    if payload.len() < 8 + 1 || payload.len() > 8 + KEY_LEN_MAX {
        return Err(record.corrupt(format!(
            "fence mark payload of {} bytes (a holder and a key of 1 to {KEY_LEN_MAX} bytes)",
            payload.len()
        )));
    }
    let (holder, key) = payload.split_at(8);
    let mut word = [0u8; 8];
    word.copy_from_slice(holder);
    let token = Token::from_parts(record.generation, u64::from_le_bytes(word))
        .map_err(|e| record.corrupt(format!("fence mark with an {e}")))?;
    Ok((key, token))
}
