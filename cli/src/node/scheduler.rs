//! A cron-like job scheduler, run by every node of the demo: each job is due once per period,
//! and whichever node may act (its [`Authority`] says) runs the oldest run not yet done.
//!
//! Running a job is the pattern every leader-elected service has: ask the store whether the
//! run is done (`begin`, with the token), do the work, record the completion (`complete`,
//! with the token). The work takes time between the check and the write: a node paused there
//! wakes up as a zombie with a write in hand.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;

use super::authority::{Authority, Credential};
use super::request_log::{Request, RequestLog};
use crate::store_api::{Answer, Call, Outcome, StoreClient, unix_ms, valid_job_name};

/// Which world the scheduler lives in.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// Act while fencekit's leadership and its lease last; every write carries the token.
    Fenced,
    /// Act while a TTL lock from the store lasts, by this node's clock; writes are unfenced.
    Naive,
}

/// The scheduler's options (`fencekit node --store ...`).
#[derive(Args, Debug, Clone)]
pub(crate) struct SchedulerArgs {
    /// Run the job scheduler, recording completions in the store at this address.
    #[arg(long)]
    pub(crate) store: Option<String>,
    /// fenced: fencekit's leadership and tokens; naive: a TTL lock and unfenced writes.
    #[arg(long, value_enum, default_value_t = Mode::Fenced)]
    pub(crate) mode: Mode,
    /// The jobs, comma-separated; each is due once per period.
    #[arg(long, value_delimiter = ',', default_value = "invoices,reports")]
    pub(crate) jobs: Vec<String>,
    /// The period, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub(crate) period_ms: u64,
    /// How long one run works, between its check and its completion, in milliseconds.
    #[arg(long, default_value_t = 250)]
    pub(crate) job_ms: u64,
    /// When run 0 is due, in milliseconds since the Unix epoch (default: when the node
    /// starts). Give every node of a group the same.
    #[arg(long)]
    pub(crate) schedule_start_ms: Option<u64>,
    /// The naive mode's lock TTL, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub(crate) lock_ttl_ms: u64,
    /// Append every request sent to the store, with its answer and times, to this file (one
    /// JSON object per line): the history a torture run checks.
    #[arg(long)]
    pub(crate) request_log: Option<PathBuf>,
}

impl SchedulerArgs {
    /// Refuses options the scheduler cannot run with.
    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(bad) = self.jobs.iter().find(|j| !valid_job_name(j)) {
            bail!("--jobs: {bad:?} is not a job name (1 to 64 letters, digits, '-', '_', '.')");
        }
        if self.period_ms < 10 {
            bail!("--period-ms {}: give at least 10", self.period_ms);
        }
        if !(1..=60_000).contains(&self.lock_ttl_ms) {
            bail!("--lock-ttl-ms {}: give 1 to 60000", self.lock_ttl_ms);
        }
        Ok(())
    }
}

/// What the scheduler is doing, for `/status`.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct View {
    pub(crate) mode: Mode,
    /// The node may act now.
    pub(crate) acting: bool,
    /// The generation it acts with (fenced mode).
    pub(crate) generation: Option<u64>,
    /// Time left, now, on the lease or lock it acts on (0 for a zombie: a node still at work
    /// on a lease that ran out while it was paused).
    pub(crate) lease_remaining_ms: Option<u64>,
    /// When that lease or lock ends.
    #[serde(skip)]
    lease_until: Option<Instant>,
    /// The run it is working on.
    pub(crate) job: Option<Working>,
    /// Its completions, by the store's answer.
    pub(crate) writes: BTreeMap<&'static str, u64>,
    /// Requests the store did not answer.
    pub(crate) store_errors: u64,
}

/// A run in progress.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct Working {
    pub(crate) job: String,
    pub(crate) run: u64,
    pub(crate) elapsed_ms: u64,
    #[serde(skip)]
    started: Option<Instant>,
}

/// A running scheduler; dropping it stops it.
pub(crate) struct Scheduler {
    view: Arc<Mutex<View>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Scheduler {
    /// Starts scheduling `args.jobs` as `holder`.
    pub(crate) fn start(
        args: &SchedulerArgs,
        store: StoreClient,
        holder: u64,
        authority: Box<dyn Authority>,
        writes: Family<Vec<(&'static str, &'static str)>, Counter>,
    ) -> Result<Scheduler> {
        let view = Arc::new(Mutex::new(View {
            mode: args.mode,
            acting: false,
            generation: None,
            lease_remaining_ms: None,
            lease_until: None,
            job: None,
            writes: BTreeMap::new(),
            store_errors: 0,
        }));
        // Every outcome from the start, so that a scrape shows zeros rather than nothing.
        for outcome in Outcome::ALL {
            let _created = writes.get_or_create(&vec![("outcome", outcome.as_str())]);
        }
        let request_log = args
            .request_log
            .as_deref()
            .map(RequestLog::open)
            .transpose()?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut worker = Worker {
            jobs: args.jobs.clone(),
            next_run: vec![0; args.jobs.len()],
            period_ms: args.period_ms,
            work: Duration::from_millis(args.job_ms),
            start_ms: args.schedule_start_ms.unwrap_or_else(unix_ms),
            store,
            request_log,
            holder,
            authority,
            writes,
            view: view.clone(),
            stop: stop.clone(),
            last_warning: None,
        };
        let thread = std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || worker.run())?;
        Ok(Scheduler {
            view,
            stop,
            thread: Some(thread),
        })
    }

    /// What it is doing now.
    pub(crate) fn view(&self) -> View {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut view = lock(&self.view).clone();
        let now = Instant::now();
        view.lease_remaining_ms = view
            .lease_until
            .map(|until| millis(until.saturating_duration_since(now)));
        if let Some(job) = &mut view.job {
            job.elapsed_ms = job
                .started
                .map_or(0, |s| millis(now.saturating_duration_since(s)));
        }
        view
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(view: &Mutex<View>) -> std::sync::MutexGuard<'_, View> {
    view.lock().unwrap_or_else(|p| p.into_inner())
}

struct Worker {
    jobs: Vec<String>,
    /// For each job, the oldest run this node does not know to be done.
    next_run: Vec<u64>,
    period_ms: u64,
    work: Duration,
    start_ms: u64,
    store: StoreClient,
    request_log: Option<RequestLog>,
    holder: u64,
    authority: Box<dyn Authority>,
    writes: Family<Vec<(&'static str, &'static str)>, Counter>,
    view: Arc<Mutex<View>>,
    stop: Arc<AtomicBool>,
    last_warning: Option<Instant>,
}

/// How a run attempt ended.
enum Attempt {
    /// The run is done (by this node or another).
    Done,
    /// The store refused this node's token: a newer leader exists.
    Refused,
}

const IDLE: Duration = Duration::from_millis(10);

impl Worker {
    fn run(&mut self) {
        let mut was_acting = false;
        let mut skipped = false;
        while !self.stop.load(Ordering::Relaxed) {
            let credential = self.authority.acting();
            if credential.is_none() || !was_acting {
                skipped = false;
            }
            was_acting = credential.is_some();
            {
                let mut view = lock(&self.view);
                view.acting = credential.is_some();
                view.generation = credential.and_then(|c| c.generation);
                view.lease_until = credential.map(|c| Instant::now() + c.remaining);
            }
            // Until the store has said where each job stands, no run is begun: a store that
            // cannot say that cannot take a begin either.
            if credential.is_some() && !skipped {
                skipped = self.skip_done_runs();
                if !skipped {
                    lock(&self.view).store_errors += 1;
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
            let (Some(credential), Some((job, run))) = (credential, self.oldest_due()) else {
                std::thread::sleep(IDLE);
                continue;
            };
            match self.attempt(job, run, credential) {
                Ok(Attempt::Done) => self.next_run[job] = run + 1,
                Ok(Attempt::Refused) => std::thread::sleep(IDLE),
                Err(e) => {
                    lock(&self.view).store_errors += 1;
                    self.warn(&format!("{e:#}; retrying"));
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// On taking over, skips the runs the store says are done, instead of asking about each
    /// from where this node last left off (from run 0 for a node just started: after a day of
    /// runs every 500 ms, 172,800 questions per job before the first due run, which the
    /// torture run showed as minutes of lateness). Only a speed-up: a run is still begun with
    /// the token, and the store still says whether it is done.
    /// True when the store answered for every job.
    fn skip_done_runs(&mut self) -> bool {
        for job in 0..self.jobs.len() {
            match self.store.first_undone(&self.jobs[job]) {
                Ok(run) => self.next_run[job] = self.next_run[job].max(run),
                Err(e) => {
                    self.warn(&format!("{e:#}; retrying"));
                    return false;
                }
            }
        }
        true
    }

    /// The job whose oldest undone run is oldest, if one is due.
    fn oldest_due(&self) -> Option<(usize, u64)> {
        let now = unix_ms();
        let due = now.checked_sub(self.start_ms)? / self.period_ms;
        self.next_run
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, run)| run <= due)
            .min_by_key(|&(_, run)| run)
    }

    fn attempt(&mut self, job: usize, run: u64, credential: Credential) -> Result<Attempt> {
        let begin = self.decide(Call::Begin, job, run, credential)?;
        if !begin.outcome.landed() {
            return Ok(Attempt::Refused);
        }
        if begin.done {
            return Ok(Attempt::Done);
        }
        lock(&self.view).job = Some(Working {
            job: self.jobs[job].clone(),
            run,
            elapsed_ms: 0,
            started: Some(Instant::now()),
        });
        // The work. A pause that lands here outlives the lease, and the write below carries
        // the token of a generation that may be over.
        std::thread::sleep(self.work);
        let answer = self.decide(Call::Complete, job, run, credential);
        let name = &self.jobs[job];
        let mut view = lock(&self.view);
        view.job = None;
        let answer = answer?;
        let outcome = answer.outcome.as_str();
        *view.writes.entry(outcome).or_default() += 1;
        drop(view);
        self.writes.get_or_create(&vec![("outcome", outcome)]).inc();
        if answer.outcome.landed() {
            return Ok(Attempt::Done);
        }
        let mark = answer
            .generation
            .map_or_else(String::new, |g| format!(" (refused by generation {g})"));
        log::warn!(
            target: "fencekit::cli::scheduler",
            "job {name} run {run}: the store refused our completion as {outcome}{mark}: \
             generation {} is over",
            credential.generation.unwrap_or(0)
        );
        Ok(Attempt::Refused)
    }

    /// Sends `call` for `job`'s run with the credential's token, and logs it with --request-log.
    fn decide(
        &mut self,
        call: Call,
        job: usize,
        run: u64,
        credential: Credential,
    ) -> Result<Answer> {
        let request = Request {
            call,
            job: &self.jobs[job],
            run,
            holder: self.holder,
            generation: credential.generation,
            invoke_ms: unix_ms(),
        };
        let result = self
            .store
            .decide(call, request.job, run, request.holder, request.generation);
        if let Some(log) = &mut self.request_log {
            log.record(&request, unix_ms(), &result);
        }
        result
    }

    /// Prints `message`, at most once a second.
    fn warn(&mut self, message: &str) {
        if self
            .last_warning
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            log::warn!(target: "fencekit::cli::scheduler", "scheduler: {message}");
            self.last_warning = Some(Instant::now());
        }
    }
}
