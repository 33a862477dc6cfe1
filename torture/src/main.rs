//! `fencekit-torture`: fencekit's processes in network namespaces of their own, under kernel
//! packet drops, clock, process and disk faults drawn from a seed, with a workload whose every
//! request is recorded and a checker that shares no code with the kernel or the store. The same
//! schedule is played first against the naive side (a TTL lock and an unfenced store), which
//! the checker must catch, then against fencekit, where it must find nothing.

mod checker;
mod cluster;
mod disk;
mod history;
mod http;
mod nemesis;
mod net;
mod observer;
mod plan;
mod run;
mod run_clock;
mod summary;
mod timeline;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::Parser;

use history::{FaultKind, Mode};
use net::Net;
use run::Setup;
use summary::RunSummary;

/// The torture run: real processes in network namespaces, faults from a seed, an independent
/// checker. Linux, as root.
#[derive(Parser, Debug)]
#[command(name = "fencekit-torture", version, about)]
struct Args {
    /// The short run of the test command: every kind of fault at least once, in about
    /// 2.5 minutes for both runs.
    #[arg(long, conflicts_with = "duration")]
    quick: bool,
    /// How long faults are played in each run: 90s, 10m, 1h.
    #[arg(long, value_parser = parse_duration_ms, default_value = "5m")]
    duration: i64,
    /// The seed the schedule is drawn from (default: from the time). The same seed plays the
    /// same schedule.
    #[arg(long)]
    seed: Option<u64>,
    /// How many nodes, 3 to 7.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=7))]
    nodes: u64,
    /// Extra clients writing through the fence with a node's token (default: one per node).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=64))]
    clients: Option<u64>,
    /// Clock rates beyond the drift bound the leases allow for (0.5× to 2×): the lease check
    /// then excuses overlaps while clocks were out of bounds, and the fence must still hold.
    #[arg(long)]
    beyond_drift: bool,
    /// Play one side only: `fenced` (no control run) or `naive` (the control alone; two
    /// processes can then play both sides of a long run at once).
    #[arg(long, value_parser = ["fenced", "naive"])]
    only: Option<String>,
    /// Print the summary as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Where to write the HTML report with the timelines.
    #[arg(long, default_value = "fencekit-torture.html")]
    html: PathBuf,
    /// Where the runs keep their files: certificates, each process's output, the recorded
    /// histories (history-naive.json, history-fenced.json).
    #[arg(long, default_value = "fencekit-torture-out")]
    out: PathBuf,
    /// Judge a recorded history again (`history-fenced.json` of an earlier run), with this
    /// build's checker, instead of playing a run.
    #[arg(long, conflicts_with_all = ["quick", "only"])]
    check: Option<PathBuf>,
    /// The `fencekit` command to torture (default: the one beside this program).
    #[arg(long)]
    fencekit: Option<PathBuf>,
}

fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{text:?}: give a number and s, m or h (90s, 10m, 1h)"))?;
    let ms = match unit {
        "s" | "" => n * 1_000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(format!("{text:?}: the unit is s, m or h")),
    };
    if !(10_000..=7 * 24 * 3_600_000).contains(&ms) {
        return Err(format!("{text:?}: give 10s to 168h"));
    }
    Ok(ms)
}

/// How a run ended, as its exit code says: 0 held (or skipped), 1 a promise broken (or the
/// checker shown blind, a crash, a clock fault that did not take), 2 bad arguments (clap), 3 the
/// harness could not run or finish, 130 interrupted.
enum Ending {
    Held,
    Broken,
    Interrupted,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(Ending::Held) => ExitCode::SUCCESS,
        Ok(Ending::Broken) => ExitCode::from(1),
        Ok(Ending::Interrupted) => ExitCode::from(130),
        Err(e) => {
            eprintln!("fencekit-torture: {e:#}");
            ExitCode::from(3)
        }
    }
}

/// The libfaketime the clock faults preload, where the machine has it.
fn faketime() -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime",
        "/usr/lib/aarch64-linux-gnu/faketime",
        "/usr/lib/faketime",
    ]
    .iter()
    .map(|dir| Path::new(dir).join("libfaketimeMT.so.1"))
    .find(|p| p.exists())
}

fn fencekit_command(given: Option<&PathBuf>) -> Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.clone());
    }
    let beside = std::env::current_exe()?.with_file_name("fencekit");
    if beside.exists() {
        return Ok(beside);
    }
    bail!(
        "no fencekit command beside {}: build it (cargo build --release -p fencekit-cli) or give \
         --fencekit PATH",
        std::env::current_exe()?.display()
    )
}

/// Runs the control and the fenced run: held when fencekit held and the checker was shown able
/// to fail.
fn run(args: &Args) -> Result<Ending> {
    if let Some(path) = &args.check {
        return judge_again(path);
    }
    if let Some(reason) = Net::unavailable() {
        // Not a failure: a machine that cannot make namespaces cannot run this.
        if args.json {
            println!("{}", serde_json::json!({ "skipped": reason }));
        }
        eprintln!("fencekit-torture: skipped: {reason}");
        return Ok(Ending::Held);
    }
    let fencekit = fencekit_command(args.fencekit.as_ref())?;
    let seed = args
        .seed
        .unwrap_or_else(|| run_clock::unix_ms() % 1_000_000);
    let faketime = faketime();
    let setup = Setup {
        seed,
        nodes: args.nodes,
        clients: args.clients.unwrap_or(args.nodes),
        fencekit,
        faketime: faketime.clone(),
        warmup_ms: 4_000,
        settle_ms: if args.quick { 8_000 } else { 15_000 },
        period_ms: 500,
        job_ms: 100,
        lock_ttl_ms: 1_000,
        max_drift: 0.05,
    };
    let mut kinds = plan::ALL_KINDS.to_vec();
    let mut left_out = vec![
        "slow links and packet loss (the kernel has no netem qdisc)".to_owned(),
        "losing a disk's unsynced writes (no device-mapper or fault-injecting filesystem here)"
            .to_owned(),
    ];
    if faketime.is_none() {
        kinds.retain(|&k| k != FaultKind::ClockRate);
        left_out
            .push("clock rates (libfaketime is not installed: apt-get install faketime)".into());
    }
    let duration_ms = if args.quick { 50_000 } else { args.duration };
    let planned = plan::draw(&plan::Draw {
        seed,
        duration_ms,
        quick: args.quick,
        kinds,
        beyond_drift: args.beyond_drift,
        max_drift: setup.max_drift,
        longest_lease_ms: i64::try_from(setup.lock_ttl_ms)?,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::Relaxed) {
            // A second Ctrl-C: no more waiting for a clean end.
            net::teardown_all();
            std::process::exit(130);
        }
        eprintln!("fencekit-torture: stopping (Ctrl-C again to abandon the cleanup)");
    })
    .context("installing the Ctrl-C handler")?;
    eprintln!(
        "fencekit-torture: seed {seed}, {} nodes, {} faults planned over {} s per run; left out: {}",
        setup.nodes,
        planned.len(),
        duration_ms / 1000,
        left_out.join("; ")
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let _lock = lock_out_dir(&args.out)?;
    // Fail before the run, not after it.
    let html = std::fs::File::create(&args.html).with_context(|| {
        format!(
            "cannot write the report to {}: choose another --html",
            args.html.display()
        )
    })?;
    let modes = match args.only.as_deref() {
        Some("fenced") => vec![Mode::Fenced],
        Some(_) => vec![Mode::Naive],
        None => vec![Mode::Naive, Mode::Fenced],
    };
    let mut runs = Vec::new();
    for mode in modes {
        let name = mode_name(mode);
        eprintln!("fencekit-torture: the {name} run");
        let dir = args.out.join(name);
        if dir.exists() {
            disk::Disk::unmount_leftovers(&dir)?;
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("removing the last run's {}", dir.display()))?;
        }
        let mut members = vec!["store".to_owned()];
        members.extend((1..=setup.nodes).map(cluster::node_name));
        let member_refs: Vec<&str> = members.iter().map(String::as_str).collect();
        let net = Net::create(&member_refs)?;
        // The harness's threads (samplers, the store's reader) live in the run's network.
        net.enter("ctl")?;
        eprintln!("fencekit-torture: network: {}", net.describe());
        let outcome = run::play(&setup, mode, &planned, &net, &dir, &stop)?;
        drop(net);
        let checks = checker::check(&outcome.history);
        let summary = summary::summarize(&outcome, checks);
        let history_file = args.out.join(format!("history-{name}.json"));
        std::fs::write(&history_file, serde_json::to_vec(&outcome.history)?)
            .with_context(|| format!("writing {}", history_file.display()))?;
        let interrupted = outcome.interrupted;
        runs.push((outcome.history, summary));
        if interrupted {
            eprintln!(
                "fencekit-torture: interrupted; the history so far is in {}",
                history_file.display()
            );
            return Ok(Ending::Interrupted);
        }
    }
    report(args, html, &runs, seed, &left_out)
}

/// `--check FILE`: the checks of a recorded history, printed as a run's are.
fn judge_again(path: &Path) -> Result<Ending> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let history: history::History = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a recorded history", path.display()))?;
    let checks = checker::check(&history);
    let outcome = run::Outcome::recorded(history);
    let summary = summary::summarize(&outcome, checks);
    println!("{}", summary::table(&[&summary]));
    for check in summary.checks.iter().filter(|c| c.violations_total > 0) {
        println!("{}: {}", check.name, check.promise);
        for v in check.violations.iter().take(5) {
            println!("  {}", v.what);
        }
    }
    let failures = failures(&[&summary]);
    Ok(ending(&failures))
}

/// Holds `out/.lock` for the run: a second run with the same `--out` would delete this one's
/// files and unmount its disks.
fn lock_out_dir(out: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = out.join(".lock");
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    // SAFETY: flock(2) on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!(
            "another run is using {}: give each run its own --out",
            out.display()
        );
    }
    Ok(file)
}

/// The command line that plays the same schedule again.
fn replay(args: &Args, seed: u64) -> String {
    let mut line = format!("fencekit-torture --seed {seed}");
    if args.quick {
        line.push_str(" --quick");
    } else {
        line.push_str(&format!(" --duration {}s", args.duration / 1000));
    }
    line.push_str(&format!(" --nodes {}", args.nodes));
    if let Some(clients) = args.clients {
        line.push_str(&format!(" --clients {clients}"));
    }
    if args.beyond_drift {
        line.push_str(" --beyond-drift");
    }
    if let Some(only) = &args.only {
        line.push_str(&format!(" --only {only}"));
    }
    if let Some(fencekit) = &args.fencekit {
        line.push_str(&format!(" --fencekit {}", fencekit.display()));
    }
    line
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Naive => "naive",
        Mode::Fenced => "fenced",
    }
}

/// Why the runs do not show what they must: empty when fencekit held and the control failed.
fn failures(summaries: &[&RunSummary]) -> Vec<String> {
    let mut failures = Vec::new();
    for s in summaries {
        let run = mode_name(s.mode);
        match s.mode {
            Mode::Fenced if s.violations > 0 => failures.push(format!(
                "fencekit's run broke {} promises: see the checks",
                s.violations
            )),
            Mode::Naive
                if !s
                    .checks
                    .iter()
                    .any(|c| c.name == "no-run-twice" && c.violations_total > 0) =>
            {
                failures.push(
                    "the naive control ran no job twice: the schedule did not bite, or the \
                     checker is blind"
                        .to_owned(),
                )
            }
            _ => {}
        }
        // A check with nothing to look at proves nothing.
        for c in s.checks.iter().filter(|c| c.applies && c.examined == 0) {
            failures.push(format!(
                "check {} had nothing to examine in the {run} run: the history lacks its evidence",
                c.name
            ));
        }
        if let Some(why) = &s.aborted {
            failures.push(format!("the {run} run ended early: {why}"));
        }
        for gap in &s.history_gaps {
            failures.push(format!("the {run} run's history is incomplete: {gap}"));
        }
        for exit in s.unexpected_exits.iter().filter(|e| e.crashed) {
            failures.push(format!(
                "{} crashed in the {run} run ({}): {}",
                exit.member,
                exit.status,
                exit.log_tail.lines().last().unwrap_or("")
            ));
        }
        for c in s
            .clock_checks
            .iter()
            .filter(|c| !c.took_effect && !c.too_short)
        {
            let measured = c.measured.map_or_else(
                || "a rate it could not measure".to_owned(),
                |m| format!("{m}×"),
            );
            failures.push(format!(
                "node {}'s clock ran at {measured}, not the {}× libfaketime was asked for",
                c.node, c.intended
            ));
        }
    }
    failures
}

/// Prints the summary, writes the HTML report, and judges the runs.
fn report(
    args: &Args,
    mut html: std::fs::File,
    runs: &[(history::History, RunSummary)],
    seed: u64,
    left_out: &[String],
) -> Result<Ending> {
    use std::io::Write as _;
    let summaries: Vec<&RunSummary> = runs.iter().map(|(_, s)| s).collect();
    let table = summary::table(&summaries);
    let failures = failures(&summaries);
    if args.json {
        let json = serde_json::json!({
            "seed": seed,
            "replay": replay(args, seed),
            "left_out": left_out,
            "html": args.html,
            "runs": summaries,
            "passed": failures.is_empty(),
            "failures": failures,
        });
        println!("{json:#}");
    } else {
        println!("\n{table}");
        for s in &summaries {
            let run = mode_name(s.mode);
            for check in s.checks.iter().filter(|c| c.violations_total > 0) {
                println!("{run} {}: {}", check.name, check.promise);
                for v in check.violations.iter().take(5) {
                    match v.at_ms {
                        Some(at) => println!("  at {at} ms: {}", v.what),
                        None => println!("  {}", v.what),
                    }
                }
            }
            for exit in &s.unexpected_exits {
                println!(
                    "{run}: {} exited ({}): {}",
                    exit.member,
                    exit.status,
                    exit.log_tail.lines().last().unwrap_or("")
                );
            }
            for note in &s.notes {
                println!("{run}: {note}");
            }
        }
        println!("left out: {}", left_out.join("; "));
        println!("timeline: {}", args.html.display());
        println!("replay: {}", replay(args, seed));
    }
    let pairs: Vec<(&history::History, &RunSummary)> = runs.iter().map(|(h, s)| (h, s)).collect();
    html.write_all(timeline::html(&pairs, &table).as_bytes())
        .with_context(|| format!("writing {}", args.html.display()))?;
    Ok(ending(&failures))
}

/// Reports each failure; the run held when there is none.
fn ending(failures: &[String]) -> Ending {
    for failure in failures {
        eprintln!("fencekit-torture: FAILED: {failure}");
    }
    if failures.is_empty() {
        Ending::Held
    } else {
        Ending::Broken
    }
}
