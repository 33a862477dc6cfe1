//! `fencekit store`: a small storage server that embeds the fence. It keeps a job ledger
//! ("job J, run R, done by holder H with token T") whose every request carries a token,
//! checked against one durable mark for the whole ledger: a new leader's first request fences
//! every older token at once. It also lends the naive side of the demo a TTL lock.
//!
//! On HTTPS (`--tls-dir`) a writer is the node its client certificate names; `--insecure`
//! serves plain HTTP and believes the `holder` parameter. Decisions go through one committer
//! ([`committer`]: the fence, then the ledger's group commit, then the answers).

mod committer;
mod fence_binding;
mod https;
mod jump_budget;
mod ledger;
mod metrics;
mod ttl_lock;
mod writer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use clap::Args;
use fencekit::wal::LogOwner;
use fencekit::{Fence, FenceOptions};

use crate::http::{self, Handled, Handler, Limits, Listener, Reply, Request};
use crate::store_api::{Call, LEDGER_PAGE_MAX, valid_job_name};
use crate::termination::Termination;
use committer::{Committer, Decision, Read, StoreFence};
use jump_budget::JumpBudget;
use ledger::{Ledger, LedgerOptions};
use metrics::StoreMetrics;
use ttl_lock::TtlLock;
use writer::Writers;

/// Runs the fenced job ledger.
#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("security").required(true).args(["tls_dir", "insecure"])))]
pub(crate) struct StoreArgs {
    /// The store's data directory (its fence log and its ledger).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Where to serve the ledger, the lock, /metrics and /healthz.
    #[arg(long)]
    pub(crate) listen: SocketAddr,
    /// A directory with the store's store.crt, store.key and ca.crt (`fencekit certs init`
    /// makes one in DIR/store/): HTTPS, and writers known by their node certificates.
    #[arg(long)]
    pub(crate) tls_dir: Option<PathBuf>,
    /// Plain HTTP: anyone who reaches the port can write as any holder and present any
    /// generation. Only on a machine you trust entirely (a demo, a test).
    #[arg(long)]
    pub(crate) insecure: bool,
    /// How far the fence's mark may rise (from 0 for the first token) within any
    /// --generation-jump-window: a token that would take it further is refused and counted.
    /// One forged huge generation, or many large steps, would otherwise fence every real
    /// leader for good. A Raft term rises by one per election.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_generation_jump: u64,
    /// The window of --max-generation-jump, in seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) generation_jump_window: u64,
    /// Refused completions kept in the ledger (the oldest go first); accepted ones are all
    /// kept.
    #[arg(long, default_value_t = LedgerOptions::default().rejections_kept)]
    pub(crate) rejections_kept: u64,
    /// Size of each segment file of the fence's log, in bytes: a multiple of 4096 from
    /// 64 KiB to 1 GiB.
    #[arg(long, default_value_t = fencekit::limits::SEGMENT_SIZE_DEFAULT)]
    pub(crate) segment_size: u64,
    /// Accept writes without checking tokens, as storage that knows nothing of leaders does
    /// (the naive side of the demo).
    #[arg(long)]
    pub(crate) unfenced: bool,
}

/// A job name: what the ledger accepts.
const JOB_NAME: &str = "1 to 64 letters, digits, '-', '_' or '.'";

struct Store {
    /// `None` for an unfenced store.
    fence: Option<Arc<Fence>>,
    committer: Committer,
    writers: Writers,
    lock: Mutex<TtlLock>,
    metrics: Arc<StoreMetrics>,
}

impl Store {
    fn open(args: &StoreArgs, writers: Writers) -> Result<Store> {
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
            let id = fence
                .register(fencekit::ledger::KEY)
                .map_err(|e| anyhow!("the store's fence: {e}"))?;
            Some((Arc::new(fence), id))
        };
        let ledger = Ledger::open(
            &args.data,
            LedgerOptions {
                rejections_kept: args.rejections_kept,
            },
        )?;
        if let Some((fence, id)) = &fence {
            fence_binding::check_and_bind(fence, *id, &ledger, &args.data)?;
        }
        let metrics = Arc::new(StoreMetrics::new());
        let store_fence = fence.as_ref().map(|(fence, id)| StoreFence {
            fence: fence.clone(),
            id: *id,
            budget: JumpBudget::new(
                args.max_generation_jump,
                Duration::from_secs(args.generation_jump_window),
            ),
        });
        let committer = Committer::start(ledger, store_fence, metrics.clone())?;
        Ok(Store {
            fence: fence.map(|(fence, _)| fence),
            committer,
            writers,
            lock: Mutex::new(TtlLock::default()),
            metrics,
        })
    }

    /// Answers a request; never blocks (decisions and ledger pages are the committer's).
    fn handle(&self, request: &Request) -> Handled {
        let reply = match (request.method.as_str(), request.path.as_str()) {
            ("POST", "/begin") => return self.decide(request, Call::Begin),
            ("POST", "/complete") => return self.decide(request, Call::Complete),
            ("GET", "/ledger") => return self.ledger(request),
            ("GET", "/first-undone") => return self.first_undone(request),
            ("POST", "/lock") => self.lock(request),
            ("GET", "/metrics") => {
                let text = self.metrics.render(&self.committer.published().counts);
                Reply::metrics(text)
            }
            // No silent failure: a ledger that refuses appends until a restart says so here.
            ("GET", "/healthz") => {
                let fence_failure = self.fence.as_ref().and_then(|fence| fence.failure());
                let poisoned = self.committer.published().poisoned.clone();
                match (poisoned, fence_failure) {
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
                    "no {path}: POST /begin or /complete?job=J&run=R&generation=G, \
                     /lock?ttl_ms=T; GET /ledger?after=S&limit=N, /first-undone?job=J, \
                     /metrics, /healthz"
                ),
            ),
        };
        Handled::Now(reply)
    }

    fn decide(&self, request: &Request, call: Call) -> Handled {
        let holder = match self.writers.writer(request) {
            Ok(holder) => holder,
            Err(refusal) => return Handled::Now(refusal),
        };
        match parse_decision(request, call, holder) {
            Ok(decision) => self.committer.decide(decision),
            Err(reason) => Handled::Now(Reply::error(400, reason)),
        }
    }

    fn ledger(&self, request: &Request) -> Handled {
        if let Err(refusal) = self.writers.reader(request) {
            return Handled::Now(refusal);
        }
        let after = match request.param("after") {
            None => Ok(0),
            Some(_) => number(request, "after"),
        };
        let limit = match request.param("limit") {
            None => Ok(LEDGER_PAGE_MAX),
            Some(_) => number(request, "limit").and_then(|l| match usize::try_from(l) {
                Ok(l @ 1..=LEDGER_PAGE_MAX) => Ok(l),
                _ => Err(format!("limit={l}: give 1 to {LEDGER_PAGE_MAX}")),
            }),
        };
        match (after, limit) {
            (Ok(after), Ok(limit)) => self.committer.read(Read::Page { after, limit }),
            (Err(reason), _) | (_, Err(reason)) => Handled::Now(Reply::error(400, reason)),
        }
    }

    fn first_undone(&self, request: &Request) -> Handled {
        if let Err(refusal) = self.writers.reader(request) {
            return Handled::Now(refusal);
        }
        let job = request.param("job").unwrap_or("");
        if !valid_job_name(job) {
            return Handled::Now(Reply::error(
                400,
                format!("job={job:?}: a job name is {JOB_NAME}"),
            ));
        }
        self.committer.read(Read::FirstUndone {
            job: job.to_owned(),
        })
    }

    fn lock(&self, request: &Request) -> Reply {
        let holder = match self.writers.writer(request) {
            Ok(holder) => holder,
            Err(refusal) => return refusal,
        };
        match number(request, "ttl_ms") {
            Ok(ttl @ 1..=60_000) => {
                let ttl = Duration::from_millis(ttl);
                let answer = self.lock.lock().unwrap_or_else(|p| p.into_inner()).acquire(
                    holder.get(),
                    ttl,
                    Instant::now(),
                );
                Reply::json(200, serde_json::to_string(&answer).unwrap_or_default())
            }
            Ok(_) => Reply::error(400, "ttl_ms: give 1 to 60000 milliseconds"),
            Err(reason) => Reply::error(400, reason),
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
        .map_err(|_| format!("{name}={value:?}: not a number (0 to 2^64-1)"))
}

fn parse_decision(
    request: &Request,
    call: Call,
    holder: fencekit::NodeId,
) -> Result<Decision, String> {
    let job = request.param("job").unwrap_or("");
    if !valid_job_name(job) {
        return Err(format!("job={job:?}: a job name is {JOB_NAME}"));
    }
    let generation = match request.param("generation") {
        None => None,
        Some(text) => Some(
            text.parse::<u64>()
                .ok()
                .filter(|g| (1..=fencekit::Generation::MAX).contains(g))
                .ok_or_else(|| format!("generation={text:?}: give a generation, 1 to 2^63-1"))?,
        ),
    };
    Ok(Decision {
        call,
        job: job.to_owned(),
        run: number(request, "run")?,
        holder,
        generation,
    })
}

/// The target of the store's own lines.
const LOG_TARGET: &str = "fencekit::cli::store";

/// `fencekit store`: serves until SIGINT or SIGTERM.
pub(crate) fn run(args: &StoreArgs) -> Result<()> {
    let termination = Termination::install()?;
    let (tls, writers) = match &args.tls_dir {
        Some(dir) => {
            let tls = https::load(dir)?;
            let writers = Writers::Certified {
                cluster: tls.cluster,
            };
            (Some(tls.config), writers)
        }
        None => (None, Writers::Declared),
    };
    let store = Arc::new(Store::open(args, writers)?);
    let serving = store.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = http::Server::start(
        vec![Listener {
            addr: args.listen.into(),
            what: "--listen",
            tls,
            handler: Handler::Deferring(Arc::new(move |r| serving.handle(r))),
        }],
        Limits::default(),
    )?;
    log::info!(
        target: LOG_TARGET,
        "{} store: serving {scheme}://{}/ledger",
        if args.unfenced { "unfenced" } else { "fenced" },
        server.addr(0)
    );
    if args.insecure {
        log::warn!(
            target: LOG_TARGET,
            "WARNING: the store runs --insecure: anyone who reaches {} can write as any holder \
             and present any generation. Use --tls-dir outside a test.",
            server.addr(0)
        );
    }
    while !termination.wait(Duration::from_secs(3600)) {}
    // No new requests; then the fence's log records how far it is durable while it is
    // stopped (a request still in a handler is refused by the closed fence).
    drop(server);
    if let Some(fence) = &store.fence {
        fence
            .close()
            .map_err(|e| anyhow!("closing the store's fence: {e}"))?;
    }
    Ok(())
}
