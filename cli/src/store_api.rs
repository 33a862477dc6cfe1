//! The job ledger's protocol over HTTP: what `fencekit store` answers, and the client the
//! scheduler and the demo call it with. The protocol itself (the ledger's key, the verbs, what
//! the fence's verdict means for each) is `fencekit::ledger`, which the simulator's store
//! keeps too.
//!
//! Running a job is two requests, both carrying the token: `POST /begin` (the fence checks
//! the token, advancing the mark for a new leader, and the store says whether the run is done
//! already) and, after the work, `POST /complete`. Because a new leader's `begin` advances the
//! mark before it reads, a deposed leader's `complete` that arrives afterwards is stale, and
//! one that arrived before is seen as done: no run lands twice.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use fencekit::ledger;
use fencekit::transport::tcp::tls::TlsMaterial;

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
    /// The token's generation is further above the mark than `--max-generation-jump` allows:
    /// a bug or an attack, refused without touching the mark (and not kept in the ledger).
    Jump,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 5] = [
        Outcome::Accepted,
        Outcome::Unfenced,
        Outcome::Stale,
        Outcome::Conflict,
        Outcome::Jump,
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
            Outcome::Jump => "jump",
        }
    }
}

impl From<ledger::Outcome> for Outcome {
    fn from(outcome: ledger::Outcome) -> Outcome {
        match outcome {
            ledger::Outcome::Accepted => Outcome::Accepted,
            ledger::Outcome::Stale => Outcome::Stale,
            ledger::Outcome::Conflict => Outcome::Conflict,
        }
    }
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

/// The answer to `/begin` and `/complete` (README.md, "The store's answers"): 200 when the
/// request went through, 409 when the fence refused it.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct Answer {
    pub(crate) outcome: Outcome,
    /// The generation of the fence's mark after the decision: the request's own when it was
    /// accepted, the one that refused it otherwise (`None` on an unfenced store). Never the
    /// mark's holder: an answer hands out nothing another writer could present.
    pub(crate) generation: Option<u64>,
    /// The run had landed before this request: for `begin`, skip it; for `complete`, this
    /// write ran it a second time.
    pub(crate) done: bool,
    /// Where a completion was recorded in the ledger's order (`None` for `begin`).
    #[serde(default)]
    pub(crate) seq: Option<u64>,
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

/// An entry of a `/ledger` page, with its place in the ledger's order (the `seq` that
/// `/complete` answered).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct PagedEntry {
    pub(crate) seq: u64,
    #[serde(flatten)]
    pub(crate) entry: Entry,
}

/// A page of the ledger as `/ledger?after=S&limit=N` returns it: entries with a sequence
/// number above `after`, oldest first.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct LedgerPage {
    pub(crate) entries: Vec<PagedEntry>,
    /// The sequence number of the last entry given: ask for `after=next` to go on; `None`
    /// when the page is empty.
    pub(crate) next: Option<u64>,
}

/// The answer to `/first-undone?job=J`: every run of the job below `run` is done.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct FirstUndone {
    pub(crate) job: String,
    pub(crate) run: u64,
}

/// The two requests of running a job: the protocol's verbs.
pub(crate) use fencekit::ledger::Call;

/// The path the store serves `call` at: `/begin` or `/complete`.
pub(crate) fn path(call: Call) -> &'static str {
    match call {
        Call::Begin => "/begin",
        Call::Complete => "/complete",
    }
}

/// A client of one store.
#[derive(Clone)]
pub(crate) struct StoreClient {
    client: Client,
    addr: String,
}

impl StoreClient {
    /// A client of the store at `addr`: over HTTPS, showing `tls`'s certificate, if given.
    pub(crate) fn new(addr: &str, timeout: Duration, tls: Option<&TlsMaterial>) -> StoreClient {
        StoreClient {
            client: match tls {
                Some(tls) => Client::https(timeout, tls),
                None => Client::new(timeout),
            },
            addr: addr.to_owned(),
        }
    }

    /// Fails unless a store answers at the address.
    pub(crate) fn check_reachable(&self) -> Result<()> {
        let (code, body) = self.client.get(&self.addr, "/healthz").with_context(|| {
            format!(
                "the store at {} does not answer: start `fencekit store --listen {}` first, or \
                 fix --store (a node with --tls-dir speaks HTTPS to it, an --insecure node \
                 plain HTTP: the store must do the same)",
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
        let what = path(call);
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

    /// The lowest run of `job` not done yet (every run below it is).
    pub(crate) fn first_undone(&self, job: &str) -> Result<u64> {
        let path = format!("/first-undone?job={job}");
        let (code, body) = self.client.get(&self.addr, &path)?;
        if code != 200 {
            bail!(
                "the store answered {code} to /first-undone: {}",
                body.trim()
            );
        }
        let answer: FirstUndone =
            serde_json::from_str(&body).context("the store's answer to /first-undone")?;
        Ok(answer.run)
    }

    /// Every completion the store decided on and still keeps, oldest first.
    pub(crate) fn ledger(&self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        let mut after = 0;
        loop {
            let path = format!("/ledger?after={after}&limit={LEDGER_PAGE_MAX}");
            let (code, body) = self.client.get(&self.addr, &path)?;
            if code != 200 {
                bail!("the store answered {code} to /ledger: {}", body.trim());
            }
            let page: LedgerPage = serde_json::from_str(&body).context("the store's /ledger")?;
            entries.extend(page.entries.into_iter().map(|paged| paged.entry));
            match page.next {
                Some(next) if next > after => after = next,
                _ => return Ok(entries),
            }
        }
    }
}

/// The most entries one `/ledger` answer holds.
pub(crate) const LEDGER_PAGE_MAX: usize = 1000;

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
