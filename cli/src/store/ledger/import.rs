//! The JSON-lines ledger that earlier versions of the store wrote (`<data>/ledger.jsonl`, one
//! serde_json [`Entry`] per line, each synced before its answer), read once to import it
//! into the SQLite ledger.
//!
//! The reading rules are the old ledger's: a last line without its newline is the torn tail
//! of an append a crash left, never acknowledged (the newline was the last byte written, and
//! a JSON line holds no raw newline), so it is left out; any other line that does not parse
//! is damage, refused with the file, line and byte offset, and nothing is imported. The file
//! itself is never changed: after the import it is renamed to `ledger.jsonl.imported`.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::store_api::Entry;

/// The old ledger's file name.
pub(super) const FILE: &str = "ledger.jsonl";
/// What it is renamed to once its entries are committed to the SQLite ledger.
pub(super) const IMPORTED: &str = "ledger.jsonl.imported";

/// A JSON-lines ledger, read whole.
pub(super) struct Jsonl {
    pub(super) path: PathBuf,
    bytes: Vec<u8>,
}

impl Jsonl {
    /// Reads `path`, or `None` if there is nothing there. The caller has refused anything
    /// there that is not a regular file (a FIFO would block the read forever).
    pub(super) fn read(path: &Path) -> Result<Option<Jsonl>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(Jsonl {
                path: path.to_owned(),
                bytes,
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// What the SQLite ledger records of an import, to recognise this very file again after
    /// a crash between the import's commit and the rename: its length and CRC-32C.
    pub(super) fn fingerprint(&self) -> String {
        format!(
            "{} bytes, crc32c {:08x}",
            self.bytes.len(),
            crc32c::crc32c(&self.bytes)
        )
    }

    /// Every entry, in file order, or the first damaged line.
    pub(super) fn entries(&self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        let mut offset = 0;
        for (index, line) in self.bytes.split_inclusive(|&b| b == b'\n').enumerate() {
            if line.last() != Some(&b'\n') {
                log::warn!(
                    "{}: leaving out a torn last line ({} bytes) that was never acknowledged",
                    self.path.display(),
                    line.len()
                );
                break;
            }
            let entry: Entry = serde_json::from_slice(line).with_context(|| {
                format!(
                    "{} line {} is damaged (it starts at byte {offset}): nothing was imported; \
                     restore the file or move it away",
                    self.path.display(),
                    index + 1
                )
            })?;
            entries.push(entry);
            offset += line.len();
        }
        Ok(entries)
    }
}
