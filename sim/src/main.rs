//! `fencekit-sim`: runs seeds of the deterministic simulator and reports each, the totals and
//! the throughput; a failing seed prints how to reproduce it and what happened last.

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use fencekit::planted::PlantedBug;
use fencekit_sim::run;
use fencekit_sim::simulation::{Outcome, SimConfig};

/// Deterministic simulation of fencekit under seeded faults.
#[derive(Parser, Debug)]
#[command(name = "fencekit-sim", version)]
struct Args {
    /// Seeds to run, as START..END (END excluded).
    #[arg(long, value_parser = parse_range, default_value = "0..100")]
    seeds: Range<u64>,
    /// One seed (overrides --seeds), with its full trace.
    #[arg(long)]
    seed: Option<u64>,
    /// Let clock drift exceed the configured bound (and clocks jump): leases may overlap, the
    /// fence must still reject every stale write and no job may run twice.
    #[arg(long)]
    beyond_drift: bool,
    /// Plant a bug to see the simulator catch it: lease-ignored, fence-ack-before-durable,
    /// vote-before-persist.
    #[arg(long, value_parser = parse_bug)]
    bug: Option<PlantedBug>,
    /// Simulated seconds of the safety phase (faults) per seed.
    #[arg(long, default_value_t = 4.0)]
    safety_secs: f64,
    /// Simulated seconds of the liveness phase (healed) per seed.
    #[arg(long, default_value_t = 3.0)]
    liveness_secs: f64,
    /// Print only failures and the totals.
    #[arg(long)]
    quiet: bool,
    /// Go on after a failure.
    #[arg(long)]
    keep_going: bool,
}

fn parse_range(text: &str) -> Result<Range<u64>, String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("expected START..END, got {text:?}"))?;
    let a: u64 = a.parse().map_err(|e| format!("bad start {a:?}: {e}"))?;
    let b: u64 = b.parse().map_err(|e| format!("bad end {b:?}: {e}"))?;
    if b <= a {
        return Err(format!("empty range {text:?}"));
    }
    Ok(a..b)
}

fn parse_bug(text: &str) -> Result<PlantedBug, String> {
    PlantedBug::ALL
        .into_iter()
        .find(|b| b.name() == text)
        .ok_or_else(|| {
            let names: Vec<&str> = PlantedBug::ALL.iter().map(|b| b.name()).collect();
            format!("unknown bug {text:?}; known: {}", names.join(", "))
        })
}

fn config(args: &Args, seed: u64) -> SimConfig {
    let mut config = SimConfig::swarm(seed, args.beyond_drift);
    config.bug = args.bug;
    config.safety = Duration::from_secs_f64(args.safety_secs);
    config.liveness = Duration::from_secs_f64(args.liveness_secs);
    config
}

fn run_seed(config: SimConfig) -> Outcome {
    let seed = config.seed;
    let nodes = config.nodes;
    let faults = config.faults.summary();
    match catch_unwind(AssertUnwindSafe(|| run(config))) {
        Ok(outcome) => outcome,
        Err(panic) => {
            let detail = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            Outcome {
                seed,
                violation: Some(fencekit_sim::checker::Violation {
                    invariant: "panic",
                    detail,
                }),
                trace: Vec::new(),
                stats: Default::default(),
                nodes,
                faults,
            }
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let seeds = match args.seed {
        Some(seed) => seed..seed + 1,
        None => args.seeds.clone(),
    };
    let started = Instant::now();
    let (mut ran, mut failed, mut committed, mut simulated) = (0u64, 0u64, 0u64, 0f64);
    let (mut refused, mut overlaps, mut jobs) = (0u64, 0u64, 0u64);
    for seed in seeds.clone() {
        let config = config(&args, seed);
        simulated += (config.safety + config.liveness).as_secs_f64();
        let outcome = run_seed(config);
        ran += 1;
        let s = &outcome.stats;
        committed += s.committed;
        refused += s.refused_writes;
        overlaps += s.lease_overlaps;
        jobs += s.jobs;
        let verdict = match &outcome.violation {
            None => "ok".to_string(),
            Some(v) => format!("FAIL {}: {}", v.invariant, v.detail),
        };
        if !args.quiet || outcome.violation.is_some() {
            println!(
                "seed {seed}: {verdict}  nodes={} committed={} jobs={} elections={} crashes={} \
                 power={} pauses={} partitions={} flips={} refused_restarts={} full={} \
                 store_crashes={} stale_rejected={} overlaps={}  [{}]",
                outcome.nodes,
                s.committed,
                s.jobs,
                s.elections,
                s.crashes,
                s.power_losses,
                s.pauses,
                s.partitions,
                s.bit_flips,
                s.refused_restarts,
                s.disk_full,
                s.store_crashes,
                s.refused_writes,
                s.lease_overlaps,
                outcome.faults
            );
        }
        if outcome.violation.is_some() {
            failed += 1;
            println!("  last events:");
            let skip = if args.seed.is_some() {
                0
            } else {
                outcome.trace.len().saturating_sub(25)
            };
            for line in outcome.trace.iter().skip(skip) {
                println!("    {line}");
            }
            let mut flags = String::new();
            if args.beyond_drift {
                flags.push_str(" --beyond-drift");
            }
            if let Some(bug) = args.bug {
                flags.push_str(&format!(" --bug {}", bug.name()));
            }
            println!(
                "reproduce with: cargo run -p fencekit-sim --release -- --seed {seed}{flags} \
                 --safety-secs {} --liveness-secs {}",
                args.safety_secs, args.liveness_secs
            );
            if !args.keep_going {
                break;
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "seeds {}..{}: {ran} run, {failed} failed; {committed} entries committed, {jobs} jobs done, \
         {refused} stale writes rejected, {overlaps} lease overlaps; {simulated:.0} s simulated in \
         {wall:.1} s: {:.0} committed entries/s, {:.1} simulated s per s",
        seeds.start,
        seeds.end,
        committed as f64 / wall,
        simulated / wall
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
