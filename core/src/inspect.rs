//! Log records told in words, for operators (`fencekit wal inspect`): what each record of a
//! fence's or a node's log says, decoded by the component that wrote it.

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, HardState, Snapshot};

use crate::error::LogError;
use crate::fence::mark::{self, FenceRecord};
use crate::raft_storage::{Identity, decode_entries};
use crate::wal::{Record, RecordKind};

/// Bytes of an entry's data shown before "...".
const DATA_SHOWN: usize = 48;

/// One line describing `record`'s contents; a multi-entry Raft record gives one line per
/// entry. A payload its kind cannot decode is a corruption error naming the record.
pub fn describe(record: &Record<'_>) -> Result<Vec<String>, LogError> {
    let one = |line: String| Ok(vec![line]);
    match record.kind {
        RecordKind::FENCE_MARK | RecordKind::FENCE_SOURCED_MARK | RecordKind::FENCE_REBASE => {
            one(match mark::decode(record)? {
                FenceRecord::Mark { key, source, token } if source.is_unnamed() => {
                    format!("mark {} = {token}", show_bytes(key, usize::MAX))
                }
                FenceRecord::Mark { key, source, token } => {
                    format!(
                        "mark {} = {token} from {source}",
                        show_bytes(key, usize::MAX)
                    )
                }
                FenceRecord::Rebase { key, rebase } => format!(
                    "rebase {} from {} to {} by {:?} at {} ms since the epoch, clearing mark {}",
                    show_bytes(key, usize::MAX),
                    rebase
                        .from
                        .map_or("no source".to_owned(), |s| s.to_string()),
                    rebase.to,
                    rebase.by,
                    rebase.at_unix_ms,
                    rebase
                        .cleared_mark
                        .map_or("(none)".to_owned(), |t| t.to_string())
                ),
            })
        }
        RecordKind::RAFT_IDENTITY => {
            let identity = Identity::decode(record)?;
            one(format!(
                "identity: cluster {}, node {}",
                identity.cluster, identity.node
            ))
        }
        RecordKind::RAFT_HARD_STATE => {
            let hs = HardState::parse_from_bytes(record.payload)
                .map_err(|e| record.corrupt(format!("hard state: {e}")))?;
            one(format!(
                "hard state: term {}, vote {}, commit {}",
                hs.term, hs.vote, hs.commit
            ))
        }
        RecordKind::RAFT_CONF_STATE => {
            let cs = ConfState::parse_from_bytes(record.payload)
                .map_err(|e| record.corrupt(format!("conf state: {e}")))?;
            one(format!("conf state: {}", conf_state(&cs)))
        }
        RecordKind::RAFT_SNAPSHOT_META => {
            let snap = Snapshot::parse_from_bytes(record.payload)
                .map_err(|e| record.corrupt(format!("snapshot: {e}")))?;
            let meta = snap.get_metadata();
            one(format!(
                "snapshot: index {}, term {}, {}, {} bytes of host state",
                meta.index,
                meta.term,
                conf_state(meta.get_conf_state()),
                snap.data.len()
            ))
        }
        RecordKind::RAFT_ENTRIES => Ok(decode_entries(record)?.iter().map(entry).collect()),
        other => Err(record.corrupt(format!(
            "record kind {:#04x} is unknown to this version",
            other.get()
        ))),
    }
}

fn conf_state(cs: &ConfState) -> String {
    let mut text = format!("voters {:?}", cs.voters);
    if !cs.learners.is_empty() {
        text.push_str(&format!(", learners {:?}", cs.learners));
    }
    if !cs.voters_outgoing.is_empty() {
        text.push_str(&format!(", outgoing voters {:?}", cs.voters_outgoing));
    }
    text
}

fn entry(e: &Entry) -> String {
    let head = format!("entry {} (term {})", e.index, e.term);
    match e.get_entry_type() {
        EntryType::EntryNormal if e.data.is_empty() => format!("{head}: empty (a new leader's)"),
        EntryType::EntryNormal => format!(
            "{head}: {} bytes: {}",
            e.data.len(),
            show_bytes(&e.data, DATA_SHOWN)
        ),
        EntryType::EntryConfChange => match ConfChange::parse_from_bytes(&e.data) {
            Ok(cc) => format!(
                "{head}: membership: {:?} node {}",
                cc.get_change_type(),
                cc.node_id
            ),
            Err(_) => format!("{head}: membership change that does not parse"),
        },
        EntryType::EntryConfChangeV2 => match ConfChangeV2::parse_from_bytes(&e.data) {
            Ok(cc) => {
                let changes: Vec<String> = cc
                    .get_changes()
                    .iter()
                    .map(|c| format!("{:?} node {}", c.get_change_type(), c.node_id))
                    .collect();
                format!("{head}: membership: {}", changes.join(", "))
            }
            Err(_) => format!("{head}: membership change that does not parse"),
        },
    }
}

/// Bytes as a quoted string when they are printable UTF-8, otherwise as hex; at most `max`
/// bytes, then "...".
pub(crate) fn show_bytes(bytes: &[u8], max: usize) -> String {
    let shown = &bytes[..bytes.len().min(max)];
    let more = if shown.len() < bytes.len() { "..." } else { "" };
    match std::str::from_utf8(shown) {
        Ok(text) if !text.chars().any(char::is_control) => format!("{text:?}{more}"),
        _ => {
            let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}{more}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_show_as_text_when_printable_and_as_hex_otherwise() {
        assert_eq!(show_bytes(b"jobs/42", 48), "\"jobs/42\"");
        assert_eq!(show_bytes(&[0, 1, 0xff], 48), "0x0001ff");
        assert_eq!(show_bytes(b"abcdef", 3), "\"abc\"...");
    }
}
