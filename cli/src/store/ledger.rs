//! The job ledger on disk: a SQLite database, `<data>/ledger.sqlite`, owned by the store's one
//! committer thread, which stages decided completions and makes a whole batch durable in one
//! transaction (the group commit) before the store answers any of them.
//!
//! The schema (version 1; `PRAGMA application_id` [`APPLICATION_ID`] marks the file as ours):
//!
//! | table         | columns                                                  | why |
//! |---------------|----------------------------------------------------------|-----|
//! | `completions` | `seq` INTEGER PRIMARY KEY, `job`, `run`, `holder`, `generation` (NULL unfenced), `outcome` ('accepted', 'unfenced'), `at_ms`; index (`job`, `run`) | the product's data, kept for ever; `landed` looks a run up by the index |
//! | `rejections`  | the same, `outcome` ('stale', 'conflict')                 | evidence that a deposed leader tried; only the newest `rejections_kept` stay, so a flood of refused writes cannot grow the file without bound |
//! | `meta`        | `key` TEXT PRIMARY KEY, `value`                          | `schema_version`; `last_seq`; `max_generation`; `rejections_ever`; `imported_jsonl` |
//!
//! `seq` is one decision order across both tables, strictly increasing and never reused:
//! `meta.last_seq` is written in every commit, so pruning the newest rejections (with
//! `rejections_kept` 0) cannot hand a seq out twice. `meta.max_generation` is the largest
//! generation ever recorded, pruned rejections included, because the store checks its fence's
//! mark against it at start (a stale completion at generation g proves the mark was above g).
//! The tables are STRICT and check their outcomes. A u64 (run, holder, generation, at_ms) is
//! stored as its bits in SQLite's signed 64-bit integer: values above 2^63-1 read negative in
//! the sqlite3 shell, and round-trip exactly here.
//!
//! Durability: WAL journal with `synchronous=FULL`. A commit appends the batch's pages to the
//! WAL and fsyncs it once before COMMIT returns (FULL syncs every commit; NORMAL would sync
//! only at checkpoints and lose the last acknowledged batches at a power loss). A rollback
//! journal with FULL needs at least two fsyncs per commit (the journal, then the database)
//! and a file deleted and created per transaction. WAL frames carry checksums, so a torn
//! tail of the WAL after a crash is ignored at recovery, as the old ledger cut its torn line.
//! Checkpoints run automatically after a commit is durable; one that fails leaves the frames
//! in the WAL, from which the next checkpoint copies them again.
//!
//! `locking_mode=EXCLUSIVE`: the connection takes the file's lock at open and never releases
//! it, so a second store on the same directory is refused at once (busy timeout 0, never a
//! hang), and the WAL index lives in heap memory (no `-shm` file).
//!
//! The promise: nothing the store answered for is lost, and nothing it could not record is
//! answered with success. How each step keeps it:
//!
//! 1. `stage` begins the transaction if none is open and inserts the entry there; queries on
//!    this connection see it at once, so the committer decides the next request of the same
//!    batch against it. Nothing is answered yet.
//! 2. `commit` prunes rejections beyond the retention, writes `meta`, and COMMITs: one fsync.
//!    Only then are the in-memory figures (`counts`, `max_generation`) moved on.
//! 3. If any step of 1 or 2 fails, the transaction is rolled back and the ledger *poisoned*:
//!    every later stage and commit is refused, naming the first failure, until the store
//!    restarts and reloads the ledger from the disk. After a failed fsync Linux may already
//!    have marked the pages clean, and a second sync reports success for bytes that never
//!    reached the disk (PostgreSQL's "fsyncgate", 2018, whose answer was to stop and recover
//!    from what is durable). A refused batch was never answered with success; as with any
//!    failed request, whether it was recorded is unknown to the callers, who may find it
//!    after a restart if its WAL frames reached the disk.
//! 4. Opening refuses, naming the file and changing nothing: anything at the database's
//!    paths that is not a regular file (a FIFO would hang the open), a file that is not
//!    SQLite, a SQLite database of another program, a ledger of an unknown schema version,
//!    and a ledger another store holds. No `integrity_check` at open: it reads the whole file.
//! 5. Import of the old JSON-lines ledger (see `import`): when `ledger.jsonl` is there and
//!    the database is new, its entries (seq in file order, every rejection, then the
//!    retention applied as in any commit) and its fingerprint are committed with the schema
//!    in one transaction, then the file is renamed to `ledger.jsonl.imported` and the
//!    directory synced. A crash before the commit leaves a new database (imported again); a
//!    crash after it leaves both files, and the recorded fingerprint says to finish the
//!    rename. Both files without that record are refused: which one holds the truth is the
//!    operator's call.

mod import;

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, ffi, params};

use crate::store_api::{Entry, Outcome};
use import::Jsonl;

/// The database's file name in the data directory.
const FILE: &str = "ledger.sqlite";
/// Files SQLite keeps beside the database (`-shm` only outside exclusive mode): checked as
/// the database is, since SQLite opens them without asking.
const SIDE_FILES: [&str; 3] = ["-wal", "-journal", "-shm"];
/// The schema this code reads and writes.
const SCHEMA_VERSION: i64 = 1;
/// `PRAGMA application_id`: "fkld", a fencekit ledger.
const APPLICATION_ID: i32 = 0x666b_6c64;
/// How many rejections are kept by default: the newest, a few MiB of evidence.
const REJECTIONS_KEPT_DEFAULT: u64 = 100_000;

const SCHEMA: &str = "
    CREATE TABLE completions (
        seq INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        run INTEGER NOT NULL,
        holder INTEGER NOT NULL,
        generation INTEGER,
        outcome TEXT NOT NULL CHECK (outcome IN ('accepted', 'unfenced')),
        at_ms INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX completions_by_run ON completions (job, run);
    CREATE TABLE rejections (
        seq INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        run INTEGER NOT NULL,
        holder INTEGER NOT NULL,
        generation INTEGER,
        outcome TEXT NOT NULL CHECK (outcome IN ('stale', 'conflict')),
        at_ms INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value ANY) STRICT, WITHOUT ROWID;
";

/// How the ledger is kept.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LedgerOptions {
    /// Rejections kept, the newest; older ones are deleted in the committing transaction.
    pub(crate) rejections_kept: u64,
}

impl Default for LedgerOptions {
    fn default() -> LedgerOptions {
        LedgerOptions {
            rejections_kept: REJECTIONS_KEPT_DEFAULT,
        }
    }
}

/// The committed figures /metrics shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LedgerCounts {
    /// Completions that landed (accepted or unfenced).
    pub(crate) completions: u64,
    /// Rejections in the file (at most `rejections_kept`).
    pub(crate) rejections_retained: u64,
    /// Rejections ever recorded, pruned ones included.
    pub(crate) rejections_ever: u64,
    /// Job runs that landed more than once.
    pub(crate) duplicate_runs: u64,
}

/// What the open transaction adds to the committed figures.
#[derive(Default)]
struct Staged {
    completions: u64,
    rejections: u64,
    duplicate_runs: u64,
    max_generation: Option<u64>,
}

/// The ledger: its connection (holding the file's lock) and its committed figures.
pub(crate) struct Ledger {
    conn: Connection,
    path: PathBuf,
    options: LedgerOptions,
    /// Invariant: no row of either table has a seq above `last_seq`; it is `meta.last_seq`
    /// plus the staged entries.
    last_seq: u64,
    /// `meta.last_seq` as committed.
    committed_seq: u64,
    /// Invariant: the committed tables' figures; staged entries are in `staged`.
    committed: LedgerCounts,
    /// `meta.max_generation` as committed.
    max_generation: Option<u64>,
    staged: Staged,
    /// Why stage and commit are refused until a restart (step 3), if they are.
    poisoned: Option<String>,
}

/// A u64 as the bits of SQLite's signed integer (see the module comment).
fn to_sql(value: u64) -> i64 {
    i64::from_ne_bytes(value.to_ne_bytes())
}

fn from_sql(value: i64) -> u64 {
    u64::from_ne_bytes(value.to_ne_bytes())
}

/// Refuses anything at `path` that is not a regular file, before anything opens it.
fn refuse_unless_regular(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => bail!(
            "{} is not a regular file (a FIFO, device, directory or symbolic link): refused, \
             and left as it is",
            path.display()
        ),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("looking at {}", path.display())),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing the directory {}", dir.display()))
}

impl Ledger {
    /// Opens `<dir>/ledger.sqlite`, creating it if missing, and imports `<dir>/ledger.jsonl`
    /// once (step 5 of the module comment).
    pub(crate) fn open(dir: &Path, options: LedgerOptions) -> Result<Ledger> {
        let path = dir.join(FILE);
        let jsonl_path = dir.join(import::FILE);
        refuse_unless_regular(&path)?;
        for suffix in SIDE_FILES {
            let mut side = path.clone().into_os_string();
            side.push(suffix);
            refuse_unless_regular(Path::new(&side))?;
        }
        refuse_unless_regular(&jsonl_path)?;
        let existed = path.exists();
        let jsonl = Jsonl::read(&jsonl_path)?;
        // A damaged old ledger is refused before a database is made beside it.
        let mut to_import = match (&jsonl, existed) {
            (Some(jsonl), false) => Some(jsonl.entries()?),
            _ => None,
        };

        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(|e| refusal(&path, e))?;
        let setup = |conn: &Connection| -> rusqlite::Result<()> {
            conn.busy_timeout(std::time::Duration::ZERO)?;
            conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
        };
        setup(&conn).map_err(|e| refusal(&path, e))?;
        let new = is_new(&conn, &path)?;
        // Only now, the file known to be ours (or new), is anything written to it.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| refusal(&path, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            bail!(
                "{}: SQLite refused the WAL journal (it kept {mode})",
                path.display()
            );
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .and_then(|()| conn.execute_batch("BEGIN EXCLUSIVE"))
            .map_err(|e| refusal(&path, e))?;

        let mut ledger = Ledger {
            conn,
            path,
            options,
            last_seq: 0,
            committed_seq: 0,
            committed: LedgerCounts::default(),
            max_generation: None,
            staged: Staged::default(),
            poisoned: None,
        };
        if new {
            ledger.create_schema()?;
            if let (Some(jsonl), None) = (&jsonl, &to_import) {
                // A database made before a crash, its schema never committed.
                to_import = Some(jsonl.entries()?);
            }
            if let (Some(jsonl), Some(entries)) = (&jsonl, to_import) {
                for entry in &entries {
                    ledger.stage(entry)?;
                }
                ledger
                    .set_meta("imported_jsonl", Some(jsonl.fingerprint()))
                    .map_err(|e| ledger.fail("importing into", &e))?;
                log::warn!(
                    "{}: imported {} entries from {}",
                    ledger.path.display(),
                    entries.len(),
                    jsonl.path.display()
                );
            }
            ledger.commit()?;
            sync_dir(dir)?;
        } else {
            ledger.check_schema()?;
            ledger.load()?;
            ledger
                .conn
                .execute_batch("COMMIT")
                .map_err(|e| refusal(&ledger.path, e))?;
            if let Some(jsonl) = &jsonl {
                let recorded: Option<String> = ledger
                    .meta("imported_jsonl")
                    .map_err(|e| refusal(&ledger.path, e))?;
                if recorded.as_deref() != Some(jsonl.fingerprint().as_str()) {
                    bail!(
                        "{} and {} are both there, and the database did not import this \
                         JSON-lines ledger: move {} away to keep the database, or move {} \
                         away to import the JSON-lines ledger again",
                        ledger.path.display(),
                        jsonl.path.display(),
                        import::FILE,
                        FILE
                    );
                }
                // A crash came between the import's commit and the rename: finish it.
            }
        }
        if jsonl.is_some() {
            let imported = dir.join(import::IMPORTED);
            std::fs::rename(&jsonl_path, &imported).with_context(|| {
                format!(
                    "renaming the imported {} to {}",
                    jsonl_path.display(),
                    imported.display()
                )
            })?;
            sync_dir(dir)?;
        }
        Ok(ledger)
    }

    /// Inside the open transaction: the tables and their first `meta` rows.
    fn create_schema(&mut self) -> Result<()> {
        let created = self
            .conn
            .pragma_update(None, "application_id", APPLICATION_ID)
            .and_then(|()| self.conn.execute_batch(SCHEMA))
            .and_then(|()| self.set_meta("schema_version", Some(SCHEMA_VERSION)))
            .and_then(|()| self.set_meta("last_seq", Some(0_i64)))
            .and_then(|()| self.set_meta("max_generation", None::<i64>))
            .and_then(|()| self.set_meta("rejections_ever", Some(0_i64)));
        created.map_err(|e| self.fail("creating", &e))
    }

    /// Refuses a ledger of another schema version.
    fn check_schema(&self) -> Result<()> {
        let version: Option<i64> = self
            .meta("schema_version")
            .map_err(|e| refusal(&self.path, e))?;
        match version {
            Some(SCHEMA_VERSION) => Ok(()),
            Some(v) => bail!(
                "{} is a ledger of schema version {v}, and this fencekit reads version \
                 {SCHEMA_VERSION} (was it written by a newer one?): refused, and left as it is",
                self.path.display()
            ),
            None => bail!(
                "{} has no schema version in its meta table: refused, and left as it is",
                self.path.display()
            ),
        }
    }

    /// The committed figures, from the file.
    fn load(&mut self) -> Result<()> {
        let count = |sql: &str| -> Result<u64> {
            let n: i64 = self
                .conn
                .query_row(sql, [], |row| row.get(0))
                .map_err(|e| refusal(&self.path, e))?;
            Ok(from_sql(n))
        };
        let max_seq = count(
            "SELECT max(coalesce((SELECT max(seq) FROM completions), 0), \
                        coalesce((SELECT max(seq) FROM rejections), 0))",
        )?;
        self.committed = LedgerCounts {
            completions: count("SELECT count(*) FROM completions")?,
            rejections_retained: count("SELECT count(*) FROM rejections")?,
            rejections_ever: 0,
            duplicate_runs: count(
                "SELECT count(*) FROM \
                 (SELECT 1 FROM completions GROUP BY job, run HAVING count(*) > 1)",
            )?,
        };
        let meta = |key: &str| -> Result<Option<u64>> {
            let value: Option<i64> = self.meta(key).map_err(|e| refusal(&self.path, e))?;
            Ok(value.map(from_sql))
        };
        let last_seq = meta("last_seq")?.unwrap_or(0);
        let rejections_ever = meta("rejections_ever")?.unwrap_or(0);
        let max_generation = meta("max_generation")?;
        self.committed.rejections_ever = rejections_ever;
        self.max_generation = max_generation;
        // Every commit writes both in one transaction: a row beyond last_seq is damage, and
        // handing its seq out again would give two decisions one place in the order.
        if max_seq > last_seq {
            bail!(
                "{} is damaged: it holds seq {max_seq}, beyond the last seq {last_seq} its meta \
                 table records: refused, and left as it is",
                self.path.display()
            );
        }
        self.last_seq = last_seq;
        self.committed_seq = last_seq;
        Ok(())
    }

    fn meta<T: rusqlite::types::FromSql>(&self, key: &str) -> rusqlite::Result<Option<T>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map(Option::flatten)
    }

    fn set_meta<T: rusqlite::ToSql>(&self, key: &str, value: Option<T>) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])
            .map(drop)
    }

    fn refuse_if_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(refusal) => bail!("{refusal}"),
            None => Ok(()),
        }
    }

    /// Records `entry` in the open transaction (beginning one if needed) and returns its seq.
    /// On an error the open transaction is rolled back, every entry staged in it lost, and
    /// the ledger poisoned (step 3 of the module comment).
    pub(crate) fn stage(&mut self, entry: &Entry) -> Result<u64> {
        self.stage_counted(entry, None)
    }

    /// [`Ledger::stage`], given how many times the entry's run has landed (what
    /// [`Ledger::landed`] just said, nothing staged since), so as not to look it up again.
    pub(crate) fn stage_counted(&mut self, entry: &Entry, landed: Option<u32>) -> Result<u64> {
        self.refuse_if_poisoned()?;
        self.try_stage(entry, landed)
            .map_err(|e| self.fail("staging an entry in", &e))
    }

    fn try_stage(&mut self, entry: &Entry, known: Option<u32>) -> rusqlite::Result<u64> {
        if self.conn.is_autocommit() {
            self.begin()?;
        }
        let seq = self.last_seq + 1;
        let landed = entry.outcome.landed();
        // Counted before the insert: the run's second landing makes it a duplicate.
        let duplicate = landed
            && match known {
                Some(times) => times,
                None => self.count_landed(&entry.job, entry.run)?,
            } == 1;
        let sql = if landed {
            "INSERT INTO completions (seq, job, run, holder, generation, outcome, at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        } else {
            "INSERT INTO rejections (seq, job, run, holder, generation, outcome, at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        };
        self.conn.prepare_cached(sql)?.execute(params![
            to_sql(seq),
            entry.job,
            to_sql(entry.run),
            to_sql(entry.holder),
            entry.generation.map(to_sql),
            entry.outcome.as_str(),
            to_sql(entry.at_ms),
        ])?;
        self.last_seq = seq;
        if landed {
            self.staged.completions += 1;
        } else {
            self.staged.rejections += 1;
        }
        self.staged.duplicate_runs += u64::from(duplicate);
        self.staged.max_generation = self.staged.max_generation.max(entry.generation);
        Ok(seq)
    }

    /// Records that the fence's mark stood at `generation` or above when a decision was made
    /// (a `begin` that advanced it records no entry; a refusal's entry holds the refused
    /// generation, not the mark's): kept in `meta.max_generation` by the next commit, so the
    /// store's start-up check sees every advance it answered for. Opens the transaction only
    /// when the generation is new.
    pub(crate) fn witness(&mut self, generation: u64) -> Result<()> {
        self.refuse_if_poisoned()?;
        let known = self.max_generation.max(self.staged.max_generation);
        if known.is_some_and(|known| known >= generation) {
            return Ok(());
        }
        if self.conn.is_autocommit() {
            self.begin()
                .map_err(|e| self.fail("witnessing a generation in", &e))?;
        }
        self.staged.max_generation = Some(generation);
        Ok(())
    }

    /// Makes every staged entry durable in one transaction (one fsync), pruning rejections
    /// beyond the retention in it. On an error it is rolled back and the ledger poisoned
    /// (step 3 of the module comment).
    pub(crate) fn commit(&mut self) -> Result<()> {
        self.refuse_if_poisoned()?;
        if self.conn.is_autocommit() {
            return Ok(());
        }
        let retained = self
            .try_commit()
            .map_err(|e| self.fail("committing to", &e))?;
        let staged = std::mem::take(&mut self.staged);
        self.committed.completions += staged.completions;
        self.committed.rejections_retained = retained;
        self.committed.rejections_ever += staged.rejections;
        self.committed.duplicate_runs += staged.duplicate_runs;
        self.max_generation = self.max_generation.max(staged.max_generation);
        self.committed_seq = self.last_seq;
        Ok(())
    }

    /// Commits; returns how many rejections the file holds then.
    fn try_commit(&mut self) -> rusqlite::Result<u64> {
        let mut retained = self.committed.rejections_retained + self.staged.rejections;
        let kept = self.options.rejections_kept;
        if retained > kept {
            // The newest `kept` stay: everything at or below the (kept+1)-th newest goes.
            self.conn.execute(
                "DELETE FROM rejections WHERE seq <= \
                 (SELECT seq FROM rejections ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
                [i64::try_from(kept).unwrap_or(i64::MAX)],
            )?;
            retained = kept;
        }
        self.set_meta("last_seq", Some(to_sql(self.last_seq)))?;
        if self.staged.rejections > 0 {
            let ever = self.committed.rejections_ever + self.staged.rejections;
            self.set_meta("rejections_ever", Some(to_sql(ever)))?;
        }
        let max_generation = self.max_generation.max(self.staged.max_generation);
        if max_generation != self.max_generation {
            self.set_meta("max_generation", max_generation.map(to_sql))?;
        }
        // Prepared once, as `begin`'s statement: parsing it at every commit showed in the
        // profile of a lone writer.
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(retained)
    }

    /// Opens the transaction the next entries are staged in.
    fn begin(&self) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("BEGIN IMMEDIATE")?
            .execute([])
            .map(drop)
    }

    /// Rolls back what is staged and poisons the ledger after `e` failed `doing` (step 3).
    /// Returns the error for the caller.
    fn fail(&mut self, doing: &str, e: &rusqlite::Error) -> anyhow::Error {
        let said = self.describe(e);
        if !self.conn.is_autocommit() {
            // A failed rollback changes nothing here: the ledger is refused until a restart,
            // which reads only what the disk holds.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.staged = Staged::default();
        self.last_seq = self.committed_seq;
        let path = self.path.display();
        self.poisoned.get_or_insert_with(|| {
            format!(
                "{path} refuses new entries since {doing} it failed ({said}); restart the \
                 store, which reloads the ledger from the disk"
            )
        });
        anyhow!(
            "{doing} {path}: {said}; the entries of this commit were not recorded, and no more \
             are taken until the store restarts"
        )
    }

    /// SQLite's word on a failure, with the step (sync, write) and the system's error where
    /// there is one: "disk I/O error" alone does not tell a full disk from a failed sync.
    fn describe(&self, e: &rusqlite::Error) -> String {
        let rusqlite::Error::SqliteFailure(failure, _) = e else {
            return e.to_string();
        };
        let step = match failure.extended_code {
            ffi::SQLITE_IOERR_FSYNC | ffi::SQLITE_IOERR_DIR_FSYNC => ", syncing",
            ffi::SQLITE_IOERR_WRITE => ", writing",
            ffi::SQLITE_IOERR_TRUNCATE => ", truncating",
            _ => "",
        };
        let mut said = format!("{e}{step}");
        if matches!(
            failure.code,
            ErrorCode::SystemIoFailure | ErrorCode::DiskFull
        ) {
            // SAFETY: the handle is this open connection's, valid while `self.conn` lives;
            // sqlite3_system_errno only reads the errno it recorded.
            let errno = unsafe { ffi::sqlite3_system_errno(self.conn.handle()) };
            if errno != 0 {
                said.push_str(&format!(": {}", io::Error::from_raw_os_error(errno)));
            }
        }
        said
    }

    fn count_landed(&self, job: &str, run: u64) -> rusqlite::Result<u32> {
        self.conn
            .prepare_cached("SELECT count(*) FROM completions WHERE job = ?1 AND run = ?2")?
            .query_row(params![job, to_sql(run)], |row| row.get(0))
    }

    /// How many times `job`'s run `run` landed (accepted or unfenced), staged ones included.
    pub(crate) fn landed(&self, job: &str, run: u64) -> Result<u32> {
        self.count_landed(job, run)
            .with_context(|| format!("reading {}", self.path.display()))
    }

    /// The lowest run of `job` that has not landed: every run below it has. What a scheduler
    /// taking over needs, instead of asking about every run from 0.
    pub(crate) fn first_undone(&self, job: &str) -> Result<u64> {
        let read = || -> rusqlite::Result<Option<i64>> {
            self.conn
                .prepare_cached(
                    "SELECT CASE \
                       WHEN NOT EXISTS (SELECT 1 FROM completions WHERE job = ?1 AND run = 0) \
                         THEN 0 \
                       ELSE (SELECT min(c.run) + 1 FROM completions c WHERE c.job = ?1 \
                             AND NOT EXISTS (SELECT 1 FROM completions d \
                                             WHERE d.job = ?1 AND d.run = c.run + 1)) \
                     END",
                )?
                .query_row(params![job], |row| row.get(0))
        };
        let run = read().with_context(|| format!("reading {}", self.path.display()))?;
        Ok(run.map_or(0, from_sql))
    }

    /// The largest token generation ever committed, in completions and rejections, pruned
    /// ones included.
    pub(crate) fn max_generation(&self) -> Option<u64> {
        self.max_generation
    }

    /// Entries with a seq above `after`, oldest first, at most `limit`: completions and
    /// retained rejections merged in decision order.
    pub(crate) fn page(&self, after: u64, limit: usize) -> Result<Vec<(u64, Entry)>> {
        // Seqs are at most 2^63-1 (they count from 1); nothing lies beyond that.
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let read = || -> rusqlite::Result<Vec<(u64, Entry, String)>> {
            let mut statement = self.conn.prepare_cached(
                "SELECT seq, job, run, holder, generation, outcome, at_ms FROM completions \
                 WHERE seq > ?1 \
                 UNION ALL \
                 SELECT seq, job, run, holder, generation, outcome, at_ms FROM rejections \
                 WHERE seq > ?1 \
                 ORDER BY seq LIMIT ?2",
            )?;
            let rows = statement.query_map(params![after, limit], |row| {
                let entry = Entry {
                    job: row.get(1)?,
                    run: from_sql(row.get(2)?),
                    holder: from_sql(row.get(3)?),
                    generation: row.get::<_, Option<i64>>(4)?.map(from_sql),
                    // Set below; the CHECK constraints admit only the four outcomes.
                    outcome: Outcome::Accepted,
                    at_ms: from_sql(row.get(6)?),
                };
                Ok((from_sql(row.get(0)?), entry, row.get(5)?))
            })?;
            rows.collect()
        };
        let rows = read().with_context(|| format!("reading {}", self.path.display()))?;
        rows.into_iter()
            .map(|(seq, mut entry, outcome)| {
                entry.outcome = Outcome::ALL
                    .into_iter()
                    .find(|o| o.as_str() == outcome)
                    .ok_or_else(|| {
                        anyhow!(
                            "{} is damaged: seq {seq} has the outcome {outcome:?}",
                            self.path.display()
                        )
                    })?;
                Ok((seq, entry))
            })
            .collect()
    }

    /// The committed figures; kept in memory, so this costs nothing.
    pub(crate) fn counts(&self) -> LedgerCounts {
        self.committed
    }

    /// Why the ledger refuses stage and commit until a restart, if it does.
    pub(crate) fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }
}

/// Is the database new (no schema), or a fencekit ledger? Reads only: a file of anything
/// else is refused before a byte of it is written.
fn is_new(conn: &Connection, path: &Path) -> Result<bool> {
    let probe = || -> rusqlite::Result<(i32, i64)> {
        let id = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
        let objects = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))?;
        Ok((id, objects))
    };
    match probe().map_err(|e| refusal(path, e))? {
        (0, 0) => Ok(true),
        (APPLICATION_ID, _) => Ok(false),
        (id, _) => bail!(
            "{} is a SQLite database of another program (application_id {id:#x}), not a \
             fencekit ledger: refused, and left as it is",
            path.display()
        ),
    }
}

/// An error of opening or reading the database at `path`, said for the operator.
fn refusal(path: &Path, e: rusqlite::Error) -> anyhow::Error {
    let path = path.display();
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            anyhow!("{path} is in use by another store: one store per --data directory")
        }
        Some(ErrorCode::NotADatabase) => anyhow!(
            "{path} is not a SQLite database ({e}): refused, and left as it is; restore the \
             ledger or move it away"
        ),
        _ => anyhow!("{path}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(job: &str, run: u64, outcome: Outcome, generation: u64) -> Entry {
        Entry {
            job: job.into(),
            run,
            holder: 1,
            generation: Some(generation),
            outcome,
            at_ms: 7,
        }
    }

    fn landed(job: &str, run: u64) -> Entry {
        entry(job, run, Outcome::Accepted, 2)
    }

    fn open(dir: &Path) -> Ledger {
        Ledger::open(dir, LedgerOptions::default()).unwrap()
    }

    fn open_err(dir: &Path) -> String {
        match Ledger::open(dir, LedgerOptions::default()) {
            Ok(_) => panic!("{} opened", dir.display()),
            Err(e) => format!("{e:#}"),
        }
    }

    /// Every entry, in order, as (seq, job, outcome).
    fn all(ledger: &Ledger) -> Vec<(u64, String, Outcome)> {
        let page = ledger.page(0, usize::MAX).unwrap();
        page.into_iter()
            .map(|(seq, e)| (seq, e.job, e.outcome))
            .collect()
    }

    fn jobs(ledger: &Ledger) -> Vec<String> {
        all(ledger).into_iter().map(|(_, job, _)| job).collect()
    }

    /// The first undone run: 0 for a job never run, the first gap otherwise; refused
    /// completions do not count as done.
    #[test]
    fn the_first_undone_run_is_the_first_gap() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = open(dir.path());
        assert_eq!(ledger.first_undone("a").unwrap(), 0);
        for run in [0, 1, 2, 4] {
            ledger.stage(&landed("a", run)).unwrap();
        }
        ledger.stage(&landed("b", 1)).unwrap();
        ledger.stage(&entry("c", 0, Outcome::Stale, 1)).unwrap();
        ledger.commit().unwrap();
        assert_eq!(ledger.first_undone("a").unwrap(), 3);
        assert_eq!(ledger.first_undone("b").unwrap(), 0);
        assert_eq!(ledger.first_undone("c").unwrap(), 0);
        ledger.stage(&landed("a", 3)).unwrap();
        ledger.commit().unwrap();
        assert_eq!(ledger.first_undone("a").unwrap(), 5);
        drop(ledger);
        assert_eq!(
            open(dir.path()).first_undone("a").unwrap(),
            5,
            "after a restart"
        );
    }

    /// Staged entries count for the committer's next decision at once (a run staged in this
    /// batch is done), but for /metrics and after a crash only once committed.
    #[test]
    fn staged_entries_are_seen_by_landed_and_kept_only_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = open(dir.path());
        assert_eq!(ledger.stage(&landed("a", 1)).unwrap(), 1);
        assert_eq!(ledger.landed("a", 1).unwrap(), 1, "staged, seen");
        assert_eq!(ledger.counts().completions, 0, "not committed yet");
        ledger.stage(&landed("a", 1)).unwrap();
        ledger.stage(&entry("b", 1, Outcome::Stale, 1)).unwrap();
        ledger.commit().unwrap();
        assert_eq!(ledger.landed("a", 1).unwrap(), 2);
        assert_eq!(
            ledger.landed("b", 1).unwrap(),
            0,
            "a stale write did not land"
        );
        let counts = LedgerCounts {
            completions: 2,
            rejections_retained: 1,
            rejections_ever: 1,
            duplicate_runs: 1,
        };
        assert_eq!(ledger.counts(), counts);
        // Staged, never committed: a crash (here, closing) loses it, nothing else.
        ledger.stage(&landed("c", 1)).unwrap();
        assert_eq!(ledger.landed("c", 1).unwrap(), 1);
        drop(ledger);
        let ledger = open(dir.path());
        assert_eq!(ledger.landed("c", 1).unwrap(), 0);
        assert_eq!(jobs(&ledger), ["a", "a", "b"]);
        assert_eq!(ledger.counts(), counts, "the figures reload as committed");
    }

    /// A run is one duplicate however often it landed again; the count moves when a run's
    /// landings go from 1 to 2, including across a reopen.
    #[test]
    fn duplicate_runs_count_runs_not_landings() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = open(dir.path());
        for e in [
            landed("a", 1),
            landed("a", 1),
            landed("a", 1),
            landed("a", 2),
        ] {
            ledger.stage(&e).unwrap();
        }
        ledger.commit().unwrap();
        assert_eq!(ledger.counts().duplicate_runs, 1);
        drop(ledger);
        let mut ledger = open(dir.path());
        assert_eq!(ledger.counts().duplicate_runs, 1);
        ledger.stage(&landed("a", 2)).unwrap();
        ledger.commit().unwrap();
        assert_eq!(ledger.counts().duplicate_runs, 2);
    }

    /// One decision order across both tables, never handed out twice: not after a reopen,
    /// not after the newest rejections were pruned, not after a rolled-back batch.
    #[test]
    fn seq_is_strictly_increasing_across_tables_reopen_and_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let keep_none = LedgerOptions { rejections_kept: 0 };
        let mut ledger = Ledger::open(dir.path(), keep_none).unwrap();
        assert_eq!(ledger.stage(&landed("a", 1)).unwrap(), 1);
        assert_eq!(
            ledger.stage(&entry("b", 1, Outcome::Conflict, 3)).unwrap(),
            2
        );
        ledger.commit().unwrap();
        assert_eq!(all(&ledger), [(1, "a".to_owned(), Outcome::Accepted)]);
        drop(ledger);
        let mut ledger = Ledger::open(dir.path(), keep_none).unwrap();
        assert_eq!(
            ledger.stage(&landed("c", 1)).unwrap(),
            3,
            "seq 2 was a pruned rejection's"
        );
        ledger.commit().unwrap();
        drop(ledger);
        let mut ledger = open(dir.path());
        assert_eq!(ledger.stage(&entry("d", 1, Outcome::Stale, 1)).unwrap(), 4);
        ledger.commit().unwrap();
        let seqs: Vec<u64> = all(&ledger).into_iter().map(|(s, _, _)| s).collect();
        assert_eq!(seqs, [1, 3, 4]);
        assert_eq!(
            ledger.page(1, 1).unwrap()[0].0,
            3,
            "a page starts after `after`"
        );
        assert!(ledger.page(u64::MAX, 10).unwrap().is_empty());
    }

    /// A flood of refused writes keeps exactly the newest `rejections_kept` of them; the
    /// completions among them all stay.
    #[test]
    fn retention_prunes_exactly_the_oldest_rejections() {
        let dir = tempfile::tempdir().unwrap();
        let options = LedgerOptions { rejections_kept: 3 };
        let mut ledger = Ledger::open(dir.path(), options).unwrap();
        for i in 0..10 {
            ledger
                .stage(&entry(&format!("r{i}"), 1, Outcome::Stale, 1))
                .unwrap();
            if i % 4 == 0 {
                ledger.stage(&landed(&format!("c{i}"), 1)).unwrap();
            }
            // Batches of several, and commits of one.
            if i % 3 != 1 {
                ledger.commit().unwrap();
            }
        }
        ledger.commit().unwrap();
        assert_eq!(jobs(&ledger), ["c0", "c4", "r7", "r8", "c8", "r9"]);
        let counts = ledger.counts();
        assert_eq!(counts.rejections_retained, 3);
        assert_eq!(counts.rejections_ever, 10);
        assert_eq!(counts.completions, 3);
        drop(ledger);
        let ledger = Ledger::open(dir.path(), options).unwrap();
        assert_eq!(ledger.counts(), counts);
    }

    /// The store checks its fence's mark against the largest generation ever recorded: a
    /// pruned rejection at a high generation still counts.
    #[test]
    fn max_generation_survives_pruning_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let options = LedgerOptions { rejections_kept: 1 };
        let mut ledger = Ledger::open(dir.path(), options).unwrap();
        assert_eq!(ledger.max_generation(), None);
        ledger.stage(&entry("a", 1, Outcome::Accepted, 5)).unwrap();
        ledger.stage(&entry("b", 1, Outcome::Conflict, 9)).unwrap();
        assert_eq!(ledger.max_generation(), None, "only committed ones count");
        ledger.commit().unwrap();
        ledger.stage(&entry("c", 1, Outcome::Stale, 2)).unwrap();
        ledger.commit().unwrap();
        assert_eq!(
            jobs(&ledger),
            ["a", "c"],
            "the generation-9 rejection was pruned"
        );
        assert_eq!(ledger.max_generation(), Some(9));
        drop(ledger);
        assert_eq!(open(dir.path()).max_generation(), Some(9));
    }

    /// A mark seen without an entry (a `begin` that advanced it, the mark that refused a
    /// request) counts too, once committed; a lower one changes nothing.
    #[test]
    fn a_witnessed_generation_is_kept_without_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = open(dir.path());
        ledger.stage(&entry("a", 1, Outcome::Accepted, 5)).unwrap();
        ledger.commit().unwrap();
        ledger.witness(10).unwrap();
        assert_eq!(
            ledger.max_generation(),
            Some(5),
            "only committed ones count"
        );
        ledger.commit().unwrap();
        assert_eq!(ledger.max_generation(), Some(10));
        ledger.witness(7).unwrap();
        ledger.commit().unwrap();
        assert_eq!(jobs(&ledger), ["a"], "a witness is no entry");
        drop(ledger);
        assert_eq!(open(dir.path()).max_generation(), Some(10));
    }

    /// Runs, holders and unfenced generations are any u64; they round-trip.
    #[test]
    fn u64_values_above_i64_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = open(dir.path());
        let big = Entry {
            job: "big".into(),
            run: u64::MAX,
            holder: u64::MAX - 1,
            generation: Some(1 << 63),
            outcome: Outcome::Unfenced,
            at_ms: u64::MAX,
        };
        ledger.stage(&big).unwrap();
        ledger.commit().unwrap();
        drop(ledger);
        let ledger = open(dir.path());
        assert_eq!(ledger.page(0, 10).unwrap(), [(1, big)]);
        assert_eq!(ledger.landed("big", u64::MAX).unwrap(), 1);
        assert_eq!(ledger.max_generation(), Some(1 << 63));
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused_while_the_first_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = open(dir.path());
        let said = open_err(dir.path());
        assert!(said.contains("in use by another store"), "{said}");
        assert!(said.contains("ledger.sqlite"), "{said}");
        // The first goes on, undisturbed.
        first.stage(&landed("a", 1)).unwrap();
        first.commit().unwrap();
        drop(first);
        assert_eq!(jobs(&open(dir.path())), ["a"]);
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let bytes = b"not a database, but someone's precious notes\n".repeat(200);
        std::fs::write(&path, &bytes).unwrap();
        let said = open_err(dir.path());
        assert!(said.contains("is not a SQLite database"), "{said}");
        assert!(said.contains(&path.display().to_string()), "{said}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE], "no -wal or -journal made beside it");
    }

    #[test]
    fn another_programs_database_or_an_unknown_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let other = Connection::open(&path).unwrap();
        other.execute_batch("CREATE TABLE t (x)").unwrap();
        drop(other);
        let before = std::fs::read(&path).unwrap();
        let said = open_err(dir.path());
        assert!(said.contains("not a fencekit ledger"), "{said}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "left as it is");

        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        let newer = Connection::open(dir.path().join(FILE)).unwrap();
        newer
            .execute("UPDATE meta SET value = 2 WHERE key = 'schema_version'", [])
            .unwrap();
        drop(newer);
        let said = open_err(dir.path());
        assert!(said.contains("schema version 2"), "{said}");
        assert!(said.contains(FILE), "{said}");
    }

    #[test]
    fn anything_but_a_regular_file_at_the_ledgers_paths_is_refused_before_opening() {
        for name in [
            FILE,
            "ledger.sqlite-wal",
            "ledger.sqlite-journal",
            "ledger.jsonl",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(name);
            let fifo = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a NUL-terminated path that outlives the call.
            assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
            // A FIFO would block the open for ever: this returns at once, or hangs the test.
            let said = open_err(dir.path());
            assert!(said.contains("not a regular file"), "{name}: {said}");
            assert!(said.contains(name), "{name}: {said}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/null", dir.path().join(FILE)).unwrap();
        assert!(open_err(dir.path()).contains("not a regular file"));
    }

    /// What the old ledger wrote: one serde_json entry per line.
    fn jsonl(entries: &[Entry]) -> String {
        entries
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect()
    }

    #[test]
    fn the_old_ledger_is_imported_once_in_order_without_its_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let old = [
            landed("a", 1),
            entry("b", 1, Outcome::Stale, 7),
            landed("a", 1),
        ];
        let text = jsonl(&old) + "{\"job\":\"torn\",\"ru";
        std::fs::write(dir.path().join("ledger.jsonl"), &text).unwrap();
        let ledger = open(dir.path());
        let imported: Vec<Entry> = ledger
            .page(0, 10)
            .unwrap()
            .into_iter()
            .map(|p| p.1)
            .collect();
        assert_eq!(imported, old);
        assert_eq!(ledger.counts().duplicate_runs, 1);
        assert_eq!(ledger.max_generation(), Some(7));
        assert!(!dir.path().join("ledger.jsonl").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ledger.jsonl.imported")).unwrap(),
            text,
            "the old file is kept, unchanged, under its new name"
        );
        drop(ledger);
        let mut ledger = open(dir.path());
        assert_eq!(jobs(&ledger), ["a", "b", "a"], "imported once");
        assert_eq!(ledger.stage(&landed("c", 1)).unwrap(), 4);
    }

    /// Every rejection of the old ledger is imported and counted, then the retention applies
    /// as in any commit; the largest generation survives the pruning.
    #[test]
    fn an_import_counts_every_rejection_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let old = [
            entry("r1", 1, Outcome::Stale, 8),
            landed("a", 1),
            entry("r2", 1, Outcome::Conflict, 3),
            entry("r3", 1, Outcome::Stale, 1),
        ];
        std::fs::write(dir.path().join("ledger.jsonl"), jsonl(&old)).unwrap();
        let options = LedgerOptions { rejections_kept: 1 };
        let ledger = Ledger::open(dir.path(), options).unwrap();
        assert_eq!(
            all(&ledger),
            [
                (2, "a".to_owned(), Outcome::Accepted),
                (4, "r3".to_owned(), Outcome::Stale)
            ]
        );
        assert_eq!(ledger.counts().rejections_ever, 3);
        assert_eq!(ledger.max_generation(), Some(8));
    }

    #[test]
    fn a_damaged_old_ledger_is_refused_by_line_and_offset_and_nothing_is_imported() {
        let dir = tempfile::tempdir().unwrap();
        let whole = serde_json::to_string(&landed("a", 1)).unwrap();
        let text = format!("{whole}\n{}{whole}\n{whole}\n", &whole[..10]);
        std::fs::write(dir.path().join("ledger.jsonl"), &text).unwrap();
        let said = open_err(dir.path());
        let at = whole.len() + 1;
        assert!(
            said.contains(&format!(
                "ledger.jsonl line 2 is damaged (it starts at byte {at})"
            )),
            "{said}"
        );
        assert!(said.contains("nothing was imported"), "{said}");
        assert!(!dir.path().join(FILE).exists(), "no database beside it");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ledger.jsonl")).unwrap(),
            text
        );
    }

    /// A crash between the import's commit and the rename leaves both files; the database
    /// recorded this very file, so the rename is finished and nothing imported twice.
    #[test]
    fn both_files_after_a_crash_between_import_and_rename_finish_the_rename() {
        let dir = tempfile::tempdir().unwrap();
        let text = jsonl(&[landed("a", 1), landed("b", 1)]);
        std::fs::write(dir.path().join("ledger.jsonl"), &text).unwrap();
        drop(open(dir.path()));
        std::fs::rename(
            dir.path().join("ledger.jsonl.imported"),
            dir.path().join("ledger.jsonl"),
        )
        .unwrap();
        let ledger = open(dir.path());
        assert_eq!(jobs(&ledger), ["a", "b"]);
        assert!(!dir.path().join("ledger.jsonl").exists());
        assert!(dir.path().join("ledger.jsonl.imported").exists());
    }

    /// A JSON-lines ledger the database never imported (another copy, or one changed since)
    /// beside a database: which holds the truth is the operator's call.
    #[test]
    fn both_files_without_a_record_of_that_import_are_refused_saying_how_to_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let text = jsonl(&[landed("a", 1)]);
        std::fs::write(dir.path().join("ledger.jsonl"), &text).unwrap();
        drop(open(dir.path()));
        // The same file with one more line: not what was imported.
        let more = text.clone() + &jsonl(&[landed("b", 1)]);
        std::fs::write(dir.path().join("ledger.jsonl"), &more).unwrap();
        let said = open_err(dir.path());
        assert!(said.contains("move ledger.jsonl away"), "{said}");
        assert!(said.contains("move ledger.sqlite away"), "{said}");
        // And where the database imported nothing at all.
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        std::fs::write(dir.path().join("ledger.jsonl"), &text).unwrap();
        assert!(open_err(dir.path()).contains("both there"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ledger.jsonl")).unwrap(),
            text,
            "left as it is"
        );
    }

    /// A failure while staging (here the database may not grow: SQLITE_FULL, as a full
    /// disk) rolls back the whole open batch and poisons the ledger: nothing of it is kept,
    /// and every later stage and commit is refused, naming the first failure, until a
    /// reopen.
    #[test]
    fn a_failed_stage_rolls_the_batch_back_and_poisons_until_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = open(dir.path());
        ledger.stage(&landed("kept", 1)).unwrap();
        ledger.commit().unwrap();
        let pages: i64 = ledger
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .unwrap();
        ledger
            .conn
            .pragma_update(None, "max_page_count", pages)
            .unwrap();
        let long = "x".repeat(64);
        let said = (0..10_000)
            .find_map(|i| ledger.stage(&landed(&long, i)).err())
            .map(|e| format!("{e:#}"))
            .expect("the database fills");
        assert!(said.contains("full"), "{said}");
        assert!(said.contains("not recorded"), "{said}");
        assert_eq!(ledger.landed(&long, 0).unwrap(), 0, "the batch rolled back");
        let poison = ledger.poisoned().expect("poisoned").to_owned();
        assert!(poison.contains("restart the store"), "{poison}");
        let refused = format!("{:#}", ledger.stage(&landed("later", 1)).unwrap_err());
        assert_eq!(refused, poison);
        assert_eq!(format!("{:#}", ledger.commit().unwrap_err()), poison);
        assert_eq!(jobs(&ledger), ["kept"], "reads still answer");
        drop(ledger);
        let mut ledger = open(dir.path());
        assert_eq!(jobs(&ledger), ["kept"]);
        assert_eq!(ledger.stage(&landed("after", 1)).unwrap(), 2);
        ledger.commit().unwrap();
    }

    /// A failure inside the committing transaction (a planted trigger refuses the meta
    /// update) rolls every staged entry back and poisons: the fsyncgate rule, never retry.
    #[test]
    fn a_failed_commit_rolls_back_and_poisons_until_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = open(dir.path());
        ledger.stage(&landed("kept", 1)).unwrap();
        ledger.commit().unwrap();
        ledger
            .conn
            .execute_batch(
                "CREATE TEMP TRIGGER planted BEFORE UPDATE ON main.meta \
                 BEGIN SELECT RAISE(ABORT, 'planted failure'); END",
            )
            .unwrap();
        ledger.stage(&landed("lost", 1)).unwrap();
        ledger.stage(&entry("lost", 2, Outcome::Stale, 9)).unwrap();
        let said = format!("{:#}", ledger.commit().unwrap_err());
        assert!(said.contains("committing to"), "{said}");
        assert!(said.contains("planted failure"), "{said}");
        assert!(said.contains("not recorded"), "{said}");
        assert_eq!(ledger.landed("lost", 1).unwrap(), 0);
        assert_eq!(ledger.counts().completions, 1);
        assert_eq!(ledger.max_generation(), Some(2));
        let refused = format!("{:#}", ledger.stage(&landed("later", 1)).unwrap_err());
        assert!(
            refused.contains("since committing to it failed"),
            "{refused}"
        );
        assert!(refused.contains("planted failure"), "{refused}");
        drop(ledger);
        let ledger = open(dir.path());
        assert_eq!(jobs(&ledger), ["kept"]);
        assert_eq!(ledger.poisoned(), None, "a restart reloads from the disk");
    }
}
