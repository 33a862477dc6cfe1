//! One run: the group and the store started in their namespaces, the samplers and the extra
//! clients started, a warm-up, the schedule played, everything healed, time to settle, and the
//! history gathered (the nodes' request logs, the final ledger).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};

use crate::cluster::{Cluster, Exit, Settings, node_name};
use crate::history::{Answer, Call, History, JobSchedule, Mode, Op, OpClock};
use crate::http::Http;
use crate::nemesis::{Nemesis, read_snapshot};
use crate::net::Net;
use crate::observer::Observations;
use crate::plan::Planned;
use crate::run_clock::RunClock;
use crate::workload::{ClientSetup, run_client};

/// What every run of an invocation shares.
#[derive(Clone, Debug)]
pub(crate) struct Setup {
    pub(crate) seed: u64,
    pub(crate) nodes: u64,
    pub(crate) clients: u64,
    pub(crate) fencekit: PathBuf,
    pub(crate) faketime: Option<PathBuf>,
    pub(crate) warmup_ms: i64,
    pub(crate) settle_ms: i64,
    pub(crate) period_ms: u64,
    pub(crate) job_ms: u64,
    pub(crate) lock_ttl_ms: u64,
    /// The nodes' drift bound (`fencekit node`'s default).
    pub(crate) max_drift: f64,
}

/// The jobs every node's scheduler runs.
pub(crate) const JOBS: [&str; 2] = ["invoices", "reports"];

/// A finished run: its history and what the harness saw besides.
pub(crate) struct Outcome {
    pub(crate) history: History,
    pub(crate) exits: Vec<Exit>,
    pub(crate) supervisor_restarts: Vec<(i64, String)>,
    pub(crate) skipped: u64,
    pub(crate) notes: Vec<String>,
    /// The run was interrupted (Ctrl-C) before it ended.
    pub(crate) interrupted: bool,
    /// Why the harness ended the run early, if it did.
    pub(crate) aborted: Option<String>,
    /// What the history lacks (a node's request log that is missing).
    pub(crate) gaps: Vec<String>,
}

impl Outcome {
    /// A history recorded earlier, judged again: what the harness saw besides is not kept.
    pub(crate) fn recorded(history: History) -> Outcome {
        Outcome {
            history,
            exits: Vec::new(),
            supervisor_restarts: Vec::new(),
            skipped: 0,
            notes: Vec::new(),
            interrupted: false,
            aborted: None,
            gaps: Vec::new(),
        }
    }
}

/// Plays `plan` in `mode`, keeping its files under `dir`.
pub(crate) fn play(
    setup: &Setup,
    mode: Mode,
    plan: &[Planned],
    net: &Net,
    dir: &Path,
    stop: &AtomicBool,
) -> Result<Outcome> {
    let clock = RunClock::start();
    let schedule_start_ms = setup.warmup_ms / 2;
    let settings = Settings {
        mode,
        nodes: setup.nodes,
        jobs: JOBS.iter().map(|&j| j.to_owned()).collect(),
        period_ms: setup.period_ms,
        job_ms: setup.job_ms,
        lock_ttl_ms: setup.lock_ttl_ms,
        schedule_start_unix_ms: clock.unix_ms_at(u64::try_from(schedule_start_ms)?),
        fencekit: setup.fencekit.clone(),
        faketime: setup.faketime.clone(),
    };
    let mut cluster = Cluster::start(net, settings, dir)?;
    let ids = cluster.ids();
    let observations = Observations::default();
    let ops = Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    let clients: Vec<ClientSetup> = (0..setup.clients)
        .map(|i| {
            let node = ids[usize::try_from(i)? % ids.len()];
            Ok(ClientSetup {
                node,
                status_addr: cluster.status_addr(node),
                store_addr: cluster.store_addr(),
                store: Http::https(std::time::Duration::from_secs(2), &cluster.node_certs(node))?,
                mode,
                seed: setup.seed,
            })
        })
        .collect::<Result<_>>()?;
    let status_addrs: Vec<(u64, String)> = ids
        .iter()
        .map(|&id| (id, cluster.status_addr(id)))
        .collect();

    let schedule = JobSchedule {
        jobs: JOBS.iter().map(|&j| j.to_owned()).collect(),
        start_ms: schedule_start_ms,
        period_ms: i64::try_from(setup.period_ms)?,
    };
    let (mut record, interrupted, mut aborted, ended_ms) =
        std::thread::scope(|scope| -> Result<_> {
            for (id, addr) in &status_addrs {
                let observations = &observations;
                let done = &done;
                scope.spawn(move || observations.sample(*id, addr, mode, clock, done));
            }
            for client in &clients {
                let (ops, done) = (&ops, &done);
                let name = node_name(client.node);
                scope.spawn(move || {
                    // The client lives in its node's namespace: a partition that cuts the node
                    // from the store cuts its client too.
                    match net.enter(&name) {
                        Ok(()) => run_client(client, clock, done, ops),
                        Err(e) => eprintln!("fencekit-torture: client of {name}: {e:#}"),
                    }
                });
            }
            let mut nemesis = Nemesis::new(&mut cluster, net, &observations, clock, stop);
            let played = (|| -> Result<bool> {
                if !nemesis.idle(setup.warmup_ms)? {
                    return Ok(false);
                }
                let start_ms = nemesis.clock.now_ms();
                nemesis.play(plan, start_ms)?;
                if !nemesis.idle(setup.settle_ms)? {
                    return Ok(false);
                }
                // The liveness check asks for the runs due up to half the settling time before
                // the end: the schedulers get up to four settling times to get there.
                nemesis.catch_up(&schedule, setup.settle_ms / 2, 4 * setup.settle_ms)
            })();
            // Whatever happened, the faults end and the threads stop.
            let healed = nemesis.heal_all();
            done.store(true, Ordering::Relaxed);
            // A harness failure (a store that does not come back, say) ends the run early, and
            // what was recorded until then is still judged.
            let mut aborted = None;
            let completed = played.unwrap_or_else(|e| {
                aborted = Some(format!("{e:#}"));
                false
            });
            if let Err(e) = healed {
                aborted.get_or_insert(format!("healing the faults: {e:#}"));
            }
            let ended_ms = nemesis.clock.now_ms();
            Ok((nemesis.record, !completed, aborted, ended_ms))
        })?;
    // The final read comes after every writer has stopped: the clients are joined (the scope
    // ended), the nodes killed. A completion acknowledged after the read would look lost.
    cluster.stop_nodes();
    match read_snapshot(&cluster, clock, "final") {
        Ok(snapshot) => record.snapshots.push(snapshot),
        Err(e) => {
            aborted.get_or_insert(format!("the final ledger read failed: {e:#}"));
        }
    }
    cluster.stop();

    let mut all_ops = ops.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut gaps = Vec::new();
    for &id in &ids {
        match read_request_log(&cluster.request_log(id), id, clock)? {
            Some(ops) => all_ops.extend(ops),
            None => gaps.push(format!(
                "node {id} left no request log ({}): its scheduler's requests are not in the \
                 history",
                cluster.request_log(id).display()
            )),
        }
    }
    all_ops.sort_by_key(|op| op.invoke_ms);
    let history = History {
        mode,
        seed: setup.seed,
        nodes: ids,
        max_drift: setup.max_drift,
        ops: all_ops,
        snapshots: record.snapshots,
        samples: observations.into_samples(),
        faults: record.faults,
        down: record.down,
        rates: record.rates,
        schedule,
        // Runs due in the first half of the settling time must be done by its end.
        liveness_cutoff_ms: ended_ms - setup.settle_ms / 2,
        ended_ms,
    };
    Ok(Outcome {
        history,
        exits: cluster.exits.clone(),
        supervisor_restarts: record.supervisor_restarts,
        skipped: record.skipped,
        notes: record.notes,
        interrupted: interrupted && aborted.is_none(),
        aborted,
        gaps,
    })
}

/// A node's `--request-log`, as operations on the node's clock; `None` if there is none (every
/// node makes its log when it starts, whether it ever leads or not).
fn read_request_log(path: &Path, node: u64, clock: RunClock) -> Result<Option<Vec<Op>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    #[derive(serde::Deserialize)]
    struct Line {
        call: Call,
        job: String,
        run: u64,
        holder: u64,
        generation: Option<u64>,
        invoke_ms: u64,
        complete_ms: u64,
        answer: Option<Answer>,
        error: Option<String>,
    }
    let mut ops = Vec::new();
    for (n, line) in text.lines().enumerate() {
        // A node killed mid-write leaves at most its last line cut short.
        let Ok(line) = serde_json::from_str::<Line>(line) else {
            if n + 1 == text.lines().count() {
                continue;
            }
            anyhow::bail!("{} line {}: not a request record", path.display(), n + 1);
        };
        ops.push(Op {
            client: format!("node-{node}"),
            call: line.call,
            job: line.job,
            run: line.run,
            holder: line.holder,
            generation: line.generation,
            invoke_ms: clock.since_began(line.invoke_ms),
            complete_ms: clock.since_began(line.complete_ms),
            clock: OpClock::Node,
            answer: line.answer,
            error: line.error,
        });
    }
    Ok(Some(ops))
}
