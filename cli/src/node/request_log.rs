//! `fencekit node --request-log FILE`: every request the scheduler sends the store, with the
//! answer and the times, one JSON object per line. A torture run's checker reads it as the
//! history of what each node asked and was told (torture/README.md).
//!
//! Each line is written with one `write` on a file opened for appending, so a node killed
//! with SIGKILL leaves whole lines behind (the request in flight is simply not there). The
//! file is not synced: a history survives a process crash, not a machine crash.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::store_api::{Answer, Call};

/// One line of the log.
#[derive(Serialize)]
struct Line<'a> {
    call: &'static str,
    job: &'a str,
    run: u64,
    holder: u64,
    generation: Option<u64>,
    /// When the request was sent and the answer (or the error) came, in milliseconds since the
    /// Unix epoch on this node's clock.
    invoke_ms: u64,
    complete_ms: u64,
    /// `None` when the store did not answer with a decision.
    answer: Option<&'a Answer>,
    error: Option<String>,
}

/// What the scheduler asked, in one place.
pub(crate) struct Request<'a> {
    pub(crate) call: Call,
    pub(crate) job: &'a str,
    pub(crate) run: u64,
    pub(crate) holder: u64,
    pub(crate) generation: Option<u64>,
    pub(crate) invoke_ms: u64,
}

/// An open request log.
pub(crate) struct RequestLog {
    file: File,
    path: PathBuf,
    failed: bool,
}

impl RequestLog {
    /// Opens (or creates) `path` for appending.
    pub(crate) fn open(path: &Path) -> Result<RequestLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("--request-log {}", path.display()))?;
        Ok(RequestLog {
            file,
            path: path.to_owned(),
            failed: false,
        })
    }

    /// Appends the request and how it ended.
    pub(crate) fn record(
        &mut self,
        request: &Request<'_>,
        complete_ms: u64,
        result: &Result<Answer>,
    ) {
        let line = Line {
            call: request.call.name(),
            job: request.job,
            run: request.run,
            holder: request.holder,
            generation: request.generation,
            invoke_ms: request.invoke_ms,
            complete_ms,
            answer: result.as_ref().ok(),
            error: result.as_ref().err().map(|e| format!("{e:#}")),
        };
        let written = serde_json::to_string(&line)
            .map_err(std::io::Error::from)
            .and_then(|mut text| {
                text.push('\n');
                self.file.write_all(text.as_bytes())
            });
        // A history with a hole would mislead whoever reads it: say so, once.
        if let Err(e) = written
            && !self.failed
        {
            self.failed = true;
            log::error!(
                target: "fencekit::cli::scheduler",
                "--request-log {}: cannot append ({e}): the log is incomplete from here on",
                self.path.display()
            );
        }
    }
}
