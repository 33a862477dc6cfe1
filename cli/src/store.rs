//! `fencekit store`: a small storage server that embeds the fence. It keeps a job ledger
//! ("job J, run R, done by holder H with token T") whose every request carries a token,
//! checked against one durable mark for the whole ledger: a new leader's first request fences
//! every older token at once. It also lends the naive side of the demo a TTL lock.

mod ledger;
mod metrics;
mod ttl_lock;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use fencekit::wal::LogOwner;
use fencekit::{Fence, FenceOptions, NodeId, ResourceId, Token, Verdict};

use crate::http::{self, Reply, Request};
use crate::store_api::{Answer, Call, Entry, Mark, Outcome, unix_ms, valid_job_name};
use crate::termination::Termination;
use ledger::Ledger;
use metrics::StoreMetrics;
use ttl_lock::TtlLock;

/// Runs the fenced job ledger.
#[derive(Args, Debug, Clone)]
pub(crate) struct StoreArgs {
    /// The store's data directory (its fence log and its ledger).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Where to serve the ledger, the lock, /metrics and /healthz.
    #[arg(long)]
    pub(crate) listen: SocketAddr,
    /// Size of each segment file of the fence's log, in bytes: a multiple of 4096 from
    /// 64 KiB to 1 GiB.
    #[arg(long, default_value_t = fencekit::limits::SEGMENT_SIZE_DEFAULT)]
    pub(crate) segment_size: u64,
    /// Accept writes without checking tokens, as storage that knows nothing of leaders does
    /// (the naive side of the demo).
    #[arg(long)]
    pub(crate) unfenced: bool,
}

/// The ledger's one fenced resource.
const LEDGER_KEY: &[u8] = b"job-ledger";

/// A job name: what the ledger accepts.
const JOB_NAME: &str = "1 to 64 letters, digits, '-', '_' or '.'";

struct Store {
    /// `None` for an unfenced store.
    fence: Option<(Fence, ResourceId)>,
    state: Mutex<State>,
    metrics: StoreMetrics,
}

/// Decisions and the ledger change together, in one order.
struct State {
    ledger: Ledger,
    lock: TtlLock,
}

/// A `/begin` or `/complete` request, checked.
struct Decide<'a> {
    job: &'a str,
    run: u64,
    holder: u64,
    generation: Option<u64>,
}

impl Store {
    fn open(args: &StoreArgs) -> Result<Store> {
        std::fs::create_dir_all(&args.data)
            .with_context(|| format!("creating --data {}", args.data.display()))?;
        let fence = if args.unfenced {
            None
        } else {
            let options = FenceOptions {
                max_resources: 1,
                owner: LogOwner::Store,
                wal: fencekit::WalOptions {
                    segment_size: args.segment_size,
                    ..Default::default()
                },
                ..FenceOptions::default()
            };
            let fence = Fence::open(args.data.join("fence"), options)
                .map_err(|e| anyhow!("the store's fence: {e}"))?;
            let ledger = fence
                .register(LEDGER_KEY)
                .map_err(|e| anyhow!("the store's fence: {e}"))?;
            Some((fence, ledger))
        };
        let ledger = Ledger::open(&args.data)?;
        if let Some((fence, id)) = &fence {
            check_fence_against_ledger(fence, *id, &ledger, &args.data)?;
            bind_fence_to_data(fence, &args.data)?;
        }
        Ok(Store {
            fence,
            state: Mutex::new(State {
                ledger,
                lock: TtlLock::default(),
            }),
            metrics: StoreMetrics::new(),
        })
    }

    fn handle(&self, request: &Request) -> Reply {
        match (request.method.as_str(), request.path.as_str()) {
            ("POST", "/begin") => self.decide(request, Call::Begin),
            ("POST", "/complete") => self.decide(request, Call::Complete),
            ("POST", "/lock") => self.lock(request),
            ("GET", "/ledger") => {
                let state = self.state();
                let body = serde_json::json!({ "entries": state.ledger.entries() });
                Reply::json(200, body.to_string())
            }
            ("GET", "/metrics") => {
                let state = self.state();
                Reply {
                    status: 200,
                    content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body: self
                        .metrics
                        .render(state.ledger.entries().len(), state.ledger.duplicates()),
                }
            }
            // No silent failure: a ledger that refuses appends until a restart says so here.
            ("GET", "/healthz") => {
                let fence_failure = self.fence.as_ref().and_then(|(fence, _)| fence.failure());
                match (self.state().ledger.poisoned(), fence_failure) {
                    (None, None) => Reply::text(200, "ok\n"),
                    (Some(refusal), _) => Reply::error(503, refusal),
                    (None, Some(failure)) => Reply::error(
                        503,
                        format!("the store's fence refuses every check until a restart: {failure}"),
                    ),
                }
            }
            (_, path) => Reply::error(
                404,
                format!(
                    "no {path}: POST /begin or /complete?job=J&run=R&holder=H&generation=G, \
                     /lock?holder=H&ttl_ms=T; GET /ledger, /metrics, /healthz"
                ),
            ),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn decide(&self, request: &Request, call: Call) -> Reply {
        let parsed = match parse_decide(request) {
            Ok(parsed) => parsed,
            Err(reason) => return Reply::error(400, reason),
        };
        let mut state = self.state();
        let (outcome, mark) = match self.check(&parsed) {
            Ok(checked) => checked,
            Err(reply) => return reply,
        };
        let done = state.ledger.landed(parsed.job, parsed.run) > 0;
        if call == Call::Complete {
            let entry = Entry {
                job: parsed.job.to_owned(),
                run: parsed.run,
                holder: parsed.holder,
                generation: parsed.generation,
                outcome,
                at_ms: unix_ms(),
            };
            if let Err(e) = state.ledger.append(entry) {
                return Reply::error(500, format!("{e:#}"));
            }
        }
        self.metrics.decided(call, outcome);
        let answer = Answer {
            outcome,
            mark,
            done,
        };
        let status = if outcome.landed() { 200 } else { 409 };
        Reply::json(status, serde_json::to_string(&answer).unwrap_or_default())
    }

    /// The fence's word on the request's token (or none, unfenced).
    fn check(&self, request: &Decide<'_>) -> Result<(Outcome, Option<Mark>), Reply> {
        let Some((fence, ledger)) = &self.fence else {
            return Ok((Outcome::Unfenced, None));
        };
        let Some(generation) = request.generation else {
            return Err(Reply::error(
                400,
                "this store is fenced: every request carries its token (&generation=G&holder=H); \
                 start the store with --unfenced to accept writes without one",
            ));
        };
        let token = Token::from_parts(generation, request.holder)
            .map_err(|e| Reply::error(400, format!("the token: {e}")))?;
        let verdict = fence
            .check(*ledger, token)
            .map_err(|e| Reply::error(500, format!("the fence: {e}")))?;
        let (outcome, mark) = match verdict {
            Verdict::Accepted | Verdict::Advanced { .. } => (Outcome::Accepted, token),
            Verdict::Stale { current } => (Outcome::Stale, current),
            Verdict::Conflict { current } => (Outcome::Conflict, current),
        };
        let mark = Mark {
            generation: mark.generation.get(),
            holder: mark.holder.get(),
        };
        Ok((outcome, Some(mark)))
    }

    fn lock(&self, request: &Request) -> Reply {
        let holder = number(request, "holder").and_then(|h| {
            NodeId::new(h).map_err(|_| "holder: give a node id, 1 to 2^64-1".to_owned())
        });
        let ttl = number(request, "ttl_ms").and_then(|t| match t {
            1..=60_000 => Ok(Duration::from_millis(t)),
            _ => Err("ttl_ms: give 1 to 60000 milliseconds".to_owned()),
        });
        match (holder, ttl) {
            (Ok(holder), Ok(ttl)) => {
                let answer = self.state().lock.acquire(holder.get(), ttl, Instant::now());
                Reply::json(200, serde_json::to_string(&answer).unwrap_or_default())
            }
            (Err(reason), _) | (_, Err(reason)) => Reply::error(400, reason),
        }
    }
}

/// Query parameter `name` as a number, or why not.
fn number(request: &Request, name: &str) -> Result<u64, String> {
    let value = request
        .param(name)
        .ok_or_else(|| format!("{name}: missing"))?;
    value
        .parse()
        .map_err(|_| format!("{name}={value:?}: not a number"))
}

fn parse_decide(request: &Request) -> Result<Decide<'_>, String> {
    let job = request.param("job").unwrap_or("");
    if !valid_job_name(job) {
        return Err(format!("job={job:?}: a job name is {JOB_NAME}"));
    }
    let holder = number(request, "holder")?;
    NodeId::new(holder).map_err(|_| "holder: give a node id, 1 to 2^64-1".to_owned())?;
    let generation = match request.param("generation") {
        None => None,
        Some(_) => Some(number(request, "generation")?),
    };
    Ok(Decide {
        job,
        run: number(request, "run")?,
        holder,
        generation,
    })
}

/// The ledger is the fence's witness from outside its log: every write it records, accepted
/// or refused, was decided when the fence's mark was at its generation or above. A fence whose mark is below one of them went
/// back (its directory deleted, emptied, or restored from an older copy or another store's),
/// and would accept the deposed leaders the ledger shows were fenced: refuse to start.
fn check_fence_against_ledger(
    fence: &Fence,
    id: ResourceId,
    ledger: &Ledger,
    data: &std::path::Path,
) -> Result<()> {
    let witnessed = ledger.entries().iter().filter_map(|e| e.generation).max();
    let Some(witnessed) = witnessed else {
        return Ok(());
    };
    let mark = fence
        .mark(id)
        .map_err(|e| anyhow!("the store's fence: {e}"))?
        .map(|t| t.generation.get());
    if mark.is_none_or(|mark| mark < witnessed) {
        bail!(
            "{} went back: its mark is {}, but {} records a write decided at generation \
             {witnessed}; the fence would accept writes it refused. Restore the fence \
             directory that goes with this ledger (or move both away to start empty)",
            data.join("fence").display(),
            mark.map_or("none".to_owned(), |g| format!("generation {g}")),
            data.join("ledger.jsonl").display()
        );
    }
    Ok(())
}

/// `<data>/fence.id` names the store's fence log, written when the log is made: a fence
/// directory deleted, emptied or replaced by another store's makes a log of another id, and
/// the store refuses to start on it instead of accepting every token as new.
fn bind_fence_to_data(fence: &Fence, data: &std::path::Path) -> Result<()> {
    let path = data.join("fence.id");
    let id = fence.log_identity().id.to_string();
    match read_small_regular_file(&path) {
        Ok(recorded) if recorded.trim() == id => Ok(()),
        Ok(recorded) => bail!(
            "{} holds log {id}, but {} says this store's fence is log {}: the fence directory \
             was deleted, emptied or replaced, and would accept writes it refused. Restore \
             it (or move the whole data directory away to start empty)",
            data.join("fence").display(),
            path.display(),
            recorded.trim()
        ),
        // A new log, or one a store of an earlier version made: record it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let temp = data.join("fence.id.tmp");
            // Created new, never through whatever (a planted link) has the name.
            match std::fs::remove_file(&temp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", temp.display()));
                }
                _ => {}
            }
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
                .and_then(|mut file| {
                    use std::io::Write as _;
                    file.write_all(format!("{id}\n").as_bytes())?;
                    file.sync_all()
                })
                .and_then(|()| std::fs::rename(&temp, &path))
                .and_then(|()| std::fs::File::open(data)?.sync_all())
                .with_context(|| format!("recording the fence's log id in {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The text of a small regular file: anything else at `path` (a FIFO would block, a link to
/// `/dev/zero` never end) is refused before it is opened.
fn read_small_regular_file(path: &std::path::Path) -> std::io::Result<String> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() || meta.len() > 4096 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file of at most 4 KiB (a FIFO, device, directory or link)",
        ));
    }
    std::fs::read_to_string(path)
}

/// `fencekit store`: serves until SIGINT or SIGTERM.
pub(crate) fn run(args: &StoreArgs) -> Result<()> {
    let termination = Termination::install()?;
    let store = Arc::new(Store::open(args)?);
    let serving = store.clone();
    let server = http::serve(args.listen, "--listen", move |r| serving.handle(r))?;
    eprintln!(
        "{} store: serving http://{}/ledger",
        if args.unfenced { "unfenced" } else { "fenced" },
        server.addr()
    );
    while !termination.wait(Duration::from_secs(3600)) {}
    // The server's threads still hold the store: close its fence here, so that its log says
    // how far it is durable while it is stopped.
    if let Some((fence, _)) = &store.fence {
        fence
            .close()
            .map_err(|e| anyhow!("closing the store's fence: {e}"))?;
    }
    Ok(())
}
