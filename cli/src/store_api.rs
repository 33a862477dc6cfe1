//! The job ledger's protocol: what `fencekit store` answers, and the client the scheduler and
//! the demo call it with.
//!
//! Running a job is two requests, both carrying the token: `POST /begin` (the fence checks
//! the token, advancing the mark for a new leader, and the store says whether the run is done
//! already) and, after the work, `POST /complete`. Because a new leader's `begin` advances the
//! mark before it reads, a deposed leader's `complete` that arrives afterwards is stale, and
//! one that arrived before is seen as done: no run lands twice.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::client::Client;

/// What the store decided about a request.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    /// The fence accepted the token.
    Accepted,
    /// An unfenced store: nothing was checked.
    Unfenced,
    /// The token is older than the mark: a deposed leader.
    Stale,
    /// Another holder has the token's generation: split brain.
    Conflict,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 4] = [
        Outcome::Accepted,
        Outcome::Unfenced,
        Outcome::Stale,
        Outcome::Conflict,
    ];

    /// True when the request went through (a completion landed).
    pub(crate) fn landed(self) -> bool {
        matches!(self, Outcome::Accepted | Outcome::Unfenced)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Unfenced => "unfenced",
            Outcome::Stale => "stale",
            Outcome::Conflict => "conflict",
        }
    }
}

/// A token as the store reports it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mark {
    pub(crate) generation: u64,
    pub(crate) holder: u64,
}

/// One completion the store decided on. The ledger keeps the rejected ones too: they are the
/// evidence that a zombie tried.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub(crate) job: String,
    pub(crate) run: u64,
    pub(crate) holder: u64,
    /// The token's generation; `None` for an unfenced write.
    pub(crate) generation: Option<u64>,
    pub(crate) outcome: Outcome,
    /// When the store decided, in milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
}

/// The answer to `/begin` and `/complete`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct Answer {
    pub(crate) outcome: Outcome,
    /// The fence's mark after the decision (`None` on an unfenced store).
    pub(crate) mark: Option<Mark>,
    /// The run had landed before this request: for `begin`, skip it; for `complete`, this
    /// write ran it a second time.
    pub(crate) done: bool,
}

/// The answer to `/lock`: the naive TTL lock.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct LockAnswer {
    /// The caller holds the lock now.
    pub(crate) held: bool,
    /// Who holds it.
    pub(crate) holder: Option<u64>,
    /// Time left on the holder's lock, as the store measures it.
    pub(crate) remaining_ms: u64,
}

/// The ledger as `/ledger` returns it.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct Ledger {
    pub(crate) entries: Vec<Entry>,
}

/// The two requests of running a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// Check the token (advancing the mark for a new leader) and ask whether the run is done.
    Begin,
    /// Record that the run was done.
    Complete,
}

impl Call {
    pub(crate) fn path(self) -> &'static str {
        match self {
            Call::Begin => "/begin",
            Call::Complete => "/complete",
        }
    }
}

/// A client of one store.
#[derive(Clone)]
pub(crate) struct StoreClient {
    client: Client,
    addr: String,
}

impl StoreClient {
    pub(crate) fn new(addr: &str, timeout: Duration) -> StoreClient {
        StoreClient {
            client: Client::new(timeout),
            addr: addr.to_owned(),
        }
    }

    /// Fails unless a store answers at the address.
    pub(crate) fn check_reachable(&self) -> Result<()> {
        let (code, body) = self.client.get(&self.addr, "/healthz").with_context(|| {
            format!(
                "the store at {} does not answer: start `fencekit store --listen {}` first, or \
                 fix --store",
                self.addr, self.addr
            )
        })?;
        if code != 200 || body.trim() != "ok" {
            bail!(
                "{} answered {code} to /healthz: is it a fencekit store? ({})",
                self.addr,
                body.trim()
            );
        }
        Ok(())
    }

    /// Sends `call` for `job`'s run `run` by `holder`, with the token's generation (none on
    /// the naive side).
    pub(crate) fn decide(
        &self,
        call: Call,
        job: &str,
        run: u64,
        holder: u64,
        generation: Option<u64>,
    ) -> Result<Answer> {
        let what = call.path();
        let mut path = format!("{what}?job={job}&run={run}&holder={holder}");
        if let Some(generation) = generation {
            path.push_str(&format!("&generation={generation}"));
        }
        let (code, body) = self.client.post(&self.addr, &path)?;
        // 409 is a rejection the store decided on, with the same answer as an acceptance.
        if code != 200 && code != 409 {
            bail!("the store answered {code} to {what}: {}", body.trim());
        }
        serde_json::from_str(&body).with_context(|| format!("the store's answer to {what}"))
    }

    /// Takes or renews the naive TTL lock for `holder`.
    pub(crate) fn lock(&self, holder: u64, ttl: Duration) -> Result<LockAnswer> {
        let path = format!("/lock?holder={holder}&ttl_ms={}", ttl.as_millis());
        let (code, body) = self.client.post(&self.addr, &path)?;
        if code != 200 {
            bail!("the store answered {code} to /lock: {}", body.trim());
        }
        serde_json::from_str(&body).context("the store's answer to /lock")
    }

    /// Every completion the store decided on, oldest first.
    pub(crate) fn ledger(&self) -> Result<Vec<Entry>> {
        let (code, body) = self.client.get(&self.addr, "/ledger")?;
        if code != 200 {
            bail!("the store answered {code} to /ledger: {}", body.trim());
        }
        let ledger: Ledger = serde_json::from_str(&body).context("the store's /ledger")?;
        Ok(ledger.entries)
    }
}

/// What a job name may be: 1 to 64 letters, digits, '-', '_' or '.' (it travels in a URL).
pub(crate) fn valid_job_name(job: &str) -> bool {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    !job.is_empty() && job.len() <= 64 && job.chars().all(valid)
}

/// Milliseconds since the Unix epoch: the time base the store, the scheduler and the demo
/// share (they run on one machine).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
