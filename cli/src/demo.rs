//! `fencekit demo`: the split-brain drill. A group of node processes and a store on loopback;
//! every node runs the job scheduler; a nemesis pauses, partitions, kills and skews the
//! leader. The same schedule runs twice, once with a naive TTL lock and unfenced writes, once
//! with fencekit, and the ledgers are compared: the zombie leader double-runs jobs in the
//! first and is fenced in the second.

mod cluster;
mod nemesis;
mod observer;
mod progress;
mod summary;
mod timeline;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::node::scheduler::Mode;
use crate::store_api::unix_ms;
use crate::termination::Termination;
use cluster::{Cluster, Schedule};
use nemesis::{Nemesis, Plan};
use observer::Observer;
use progress::Progress;
use summary::{RECORDED_TWICE, Run, rows};

/// Plays the split-brain drill twice, naive then fenced, and compares the ledgers.
#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// How many nodes, 3 to 7.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=7))]
    nodes: u64,
    /// A shorter schedule (every kind of fault once; about 40 s in all).
    #[arg(long)]
    quick: bool,
    /// Print the summary as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Where to write the HTML report with the timelines.
    #[arg(long, default_value = "fencekit-demo.html")]
    html: PathBuf,
}

/// The jobs each node schedules.
const JOBS: [&str; 2] = ["invoices", "reports"];

pub(crate) fn run(args: &DemoArgs) -> Result<()> {
    let termination = Termination::install()?;
    // Fail before a minute of work, not after it.
    let mut report = std::fs::File::create(&args.html).with_context(|| {
        format!(
            "cannot write the report to {}: choose another --html",
            args.html.display()
        )
    })?;
    let plan = if args.quick {
        Plan::quick()
    } else {
        Plan::standard()
    };
    eprintln!(
        "fencekit demo: {} nodes and a job ledger on loopback; the same faults played twice, \
         with a naive TTL lock, then with fencekit",
        args.nodes
    );
    let naive = play(Mode::Naive, &plan, args.nodes, &termination)?;
    let fenced = play(Mode::Fenced, &plan, args.nodes, &termination)?;
    let (naive_summary, fenced_summary) = (naive.summarize(), fenced.summarize());
    let page = timeline::html(&[(&naive, &naive_summary), (&fenced, &fenced_summary)]);
    report
        .write_all(page.as_bytes())
        .with_context(|| format!("writing the report to {}", args.html.display()))?;
    let safe = fenced_summary.recorded_twice == 0 && fenced_summary.conflicts == 0;
    if args.json {
        let summary = serde_json::json!({
            "nodes": args.nodes,
            "quick": args.quick,
            "html": args.html,
            "fenced_safe": safe,
            "naive": naive_summary,
            "fenced": fenced_summary,
        });
        println!("{summary:#}");
    } else {
        println!("\n{:<24} {:>16} {:>12}", "", "naive TTL lock", "fencekit");
        for (name, a, b) in rows(&naive_summary, &fenced_summary) {
            println!("{name:<24} {a:>16} {b:>12}");
        }
        println!("\ntimeline: {}", args.html.display());
    }
    if !safe {
        bail!(
            "fencekit's side {} {} runs and met {} conflicts: a safety bug; see {}",
            RECORDED_TWICE,
            fenced_summary.recorded_twice,
            fenced_summary.conflicts,
            args.html.display()
        );
    }
    Ok(())
}

/// One run of the schedule, in its own processes and directories (gone when it returns).
fn play(mode: Mode, plan: &Plan, nodes: u64, termination: &Termination) -> Result<Run> {
    let began_ms = unix_ms();
    let schedule = Schedule {
        mode,
        jobs: JOBS.iter().map(|&j| j.to_owned()).collect(),
        period_ms: plan.period_ms,
        job_ms: plan.job_ms,
        start_ms: began_ms + plan.warmup_ms / 2,
        lock_ttl_ms: plan.lock_ttl_ms,
    };
    let mut cluster = Cluster::start(usize::try_from(nodes)?, &schedule)?;
    let observer = Observer::start(cluster.status_addrs(), began_ms);
    let mut progress = Progress::new(mode);
    let faults = Nemesis {
        cluster: &mut cluster,
        observer: &observer,
        termination,
        progress: &mut |cluster, observer, what| progress.tick(cluster, observer, what),
    }
    .play(plan);
    progress.finish();
    let faults = faults?;
    let duration_ms = observer.now_ms();
    let mut entries = cluster.ledger()?;
    for entry in &mut entries {
        entry.at_ms = entry.at_ms.saturating_sub(began_ms);
    }
    Ok(Run {
        mode,
        jobs: schedule.jobs,
        period_ms: plan.period_ms,
        schedule_start_ms: schedule.start_ms - began_ms,
        cutoff_ms: duration_ms.saturating_sub(plan.settle_ms),
        duration_ms,
        nodes: cluster.ids(),
        entries,
        samples: observer.finish(),
        faults,
    })
}
