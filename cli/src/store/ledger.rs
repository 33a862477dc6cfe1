//! The job ledger on disk: one JSON line per decided completion, each made durable
//! (fdatasync) before the store answers. A torn last line, left by a crash mid-append, was
//! never answered and is cut off when the ledger opens; damage anywhere else is an error.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::store_api::Entry;

/// The ledger: its file, every entry, and how many times each run landed.
pub(crate) struct Ledger {
    file: File,
    path: PathBuf,
    entries: Vec<Entry>,
    landed: HashMap<(String, u64), u32>,
}

impl Ledger {
    /// Opens (creating if needed) the ledger in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Ledger> {
        let path = dir.join("ledger.jsonl");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut ledger = Ledger {
            file: file.try_clone()?,
            path: path.clone(),
            entries: Vec::new(),
            landed: HashMap::new(),
        };
        let mut reader = BufReader::new(&mut file);
        let mut good_len = 0u64;
        let mut line = String::new();
        let mut number = 0;
        loop {
            line.clear();
            let read = reader
                .read_line(&mut line)
                .with_context(|| format!("reading {}", path.display()))?;
            if read == 0 {
                break;
            }
            number += 1;
            if !line.ends_with('\n') {
                // The torn tail of an append a crash interrupted: never acknowledged.
                break;
            }
            let entry: Entry = serde_json::from_str(&line).with_context(|| {
                format!(
                    "{} line {number} is damaged: restore the file or move it away",
                    path.display()
                )
            })?;
            good_len += read as u64;
            ledger.remember(entry);
        }
        let len = ledger.file.metadata()?.len();
        if len != good_len {
            ledger.file.set_len(good_len)?;
            ledger.file.seek(SeekFrom::End(0))?;
            ledger.file.sync_data()?;
        }
        Ok(ledger)
    }

    fn remember(&mut self, entry: Entry) {
        if entry.outcome.landed() {
            *self
                .landed
                .entry((entry.job.clone(), entry.run))
                .or_default() += 1;
        }
        self.entries.push(entry);
    }

    /// How many times `job`'s run `run` landed.
    pub(crate) fn landed(&self, job: &str, run: u64) -> u32 {
        // The map's key is owned; a lookup by borrowed parts would need a custom key type
        // for a ledger of a few thousand entries.
        self.landed
            .get(&(job.to_owned(), run))
            .copied()
            .unwrap_or(0)
    }

    /// Appends `entry`, durably, before anyone is told.
    pub(crate) fn append(&mut self, entry: Entry) -> Result<()> {
        let mut line = serde_json::to_string(&entry)?;
        line.push('\n');
        let written = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            bail!(
                "appending to {}: {e}; the write was not recorded",
                self.path.display()
            );
        }
        self.remember(entry);
        Ok(())
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Runs that landed more than once.
    pub(crate) fn duplicates(&self) -> usize {
        self.landed.values().filter(|&&n| n > 1).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store_api::Outcome;

    fn entry(job: &str, run: u64, outcome: Outcome) -> Entry {
        Entry {
            job: job.into(),
            run,
            holder: 1,
            generation: Some(2),
            outcome,
            at_ms: 7,
        }
    }

    #[test]
    fn entries_survive_reopening_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut ledger = Ledger::open(dir.path()).unwrap();
            ledger.append(entry("a", 1, Outcome::Accepted)).unwrap();
            ledger.append(entry("a", 1, Outcome::Unfenced)).unwrap();
            ledger.append(entry("b", 1, Outcome::Stale)).unwrap();
        }
        let path = dir.path().join("ledger.jsonl");
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"job\":\"c\",\"ru").unwrap();
        let mut ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(ledger.entries().len(), 3);
        assert_eq!(ledger.landed("a", 1), 2);
        assert_eq!(ledger.landed("b", 1), 0, "a stale write did not land");
        assert_eq!(ledger.duplicates(), 1);
        ledger.append(entry("c", 1, Outcome::Accepted)).unwrap();
        drop(ledger);
        let ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(
            ledger.entries().len(),
            4,
            "the torn tail is gone, the new entry kept"
        );
    }

    #[test]
    fn damage_before_the_end_is_an_error_not_a_silent_loss() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ledger.jsonl"), "garbage\n{}\n").unwrap();
        let e = Ledger::open(dir.path()).err().unwrap();
        assert!(format!("{e:#}").contains("line 1 is damaged"), "{e:#}");
    }
}
