//! Crash tests: a child process appends and advances, reporting each acknowledgement on
//! stdout; the parent SIGKILLs it at a random moment, reopens the log, and checks that every
//! acknowledged record and advance survived (I6, and I5's "every Advanced is the floor").
//!
//! The child is this very test binary, re-executed with an environment variable that makes
//! `child_entry` play the child.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fencekit::{Fence, FenceOptions, Source, Token};

use crate::support::{kind, open_wal, payload, small_fence};

const ROLE: &str = "FENCEKIT_CRASH_CHILD";
const DIR: &str = "FENCEKIT_CRASH_DIR";

/// The child's side; does nothing unless this process was started as a crash child.
#[test]
fn child_entry() {
    let (Ok(role), Ok(dir)) = (std::env::var(ROLE), std::env::var(DIR)) else {
        return;
    };
    let dir = Path::new(&dir);
    match role.as_str() {
        "wal" => child_appends(dir),
        "fence" => child_advances(dir),
        "rebase" => child_rebases(dir),
        other => panic!("unknown crash child role {other}"),
    }
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ACK {line}").unwrap();
    out.flush().unwrap();
}

fn child_appends(dir: &Path) {
    let (wal, existing) = open_wal(dir).unwrap();
    let wal = Arc::new(wal);
    let base = existing.len() as u64;
    // Four appenders at once, so group commit is what gets killed.
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                for i in 0.. {
                    let id = base + i * 4 + t;
                    wal.append_sync(kind(3), id, &payload(id, (id % 200) as usize + 8))
                        .unwrap();
                    say(format!("{id}"));
                }
            })
        })
        .collect();
    // The threads run until the parent kills this process; a panic in one ends it early.
    threads.into_iter().for_each(|t| t.join().unwrap());
}

/// Options for the advancing child: small segments, but compaction rare, because a
/// compaction flushes and snapshots everything and would hide an advance that skipped its sync.
fn crash_fence() -> FenceOptions {
    FenceOptions {
        compact_after_bytes: 1 << 20,
        ..small_fence()
    }
}

fn child_advances(dir: &Path) {
    let fence = Arc::new(Fence::open(dir, crash_fence()).unwrap());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let fence = Arc::clone(&fence);
            std::thread::spawn(move || {
                let key = format!("resource/{t}");
                let id = fence.register(key.as_bytes()).unwrap();
                let mut generation = fence
                    .mark(id)
                    .unwrap()
                    .map_or(1, |m| m.generation.get() + 1);
                loop {
                    let token = Token::from_parts(generation, t + 1).unwrap();
                    assert!(fence.check(id, token).unwrap().is_accepted());
                    say(format!("{key} {generation}"));
                    generation += 1;
                }
            })
        })
        .collect();
    // The threads run until the parent kills this process; a panic in one ends it early.
    threads.into_iter().for_each(|t| t.join().unwrap());
}

/// Binds a resource to one etcd cluster at revision 1,000,000, rebases it to another, says
/// so, and waits to be killed.
fn child_rebases(dir: &Path) {
    let fence = Fence::open(dir, crash_fence()).unwrap();
    let old = fence.source_id(&Source::etcd_cluster(0xa)).unwrap();
    let id = fence.register(b"jobs").unwrap();
    let zombie = Token::from_parts(1_000_000, 7).unwrap();
    assert!(fence.check_from(id, old, zombie).unwrap().is_accepted());
    fence
        .rebase(b"jobs", &Source::etcd_cluster(0xb), "ops")
        .unwrap();
    say("rebased".into());
    std::thread::sleep(Duration::from_secs(3600));
}

/// A rebase acknowledged and then lost would let the former cluster's zombies back in. After
/// a SIGKILL, tail damage that wipes the rebase record (it would otherwise pass for a torn
/// write, since the superblock records durability only every so many syncs) must be refused,
/// not replayed as a log that never rebased.
#[test]
fn a_rebase_cannot_be_lost_unseen_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let acked = run_and_kill("rebase", dir.path(), Duration::from_secs(2));
    assert_eq!(acked, ["rebased"]);
    let mut rebase_at = None;
    fencekit::Wal::inspect(dir.path(), &Default::default(), &mut |record| {
        if record.kind == fencekit::RecordKind::FENCE_REBASE {
            rebase_at = Some(record.position);
        }
        Ok(())
    })
    .unwrap();
    let at = rebase_at.expect("the rebase record");
    let segment = crate::support::segments(dir.path())
        .into_iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{:016}", at.segment()))
        })
        .expect("its segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    let end = bytes.len();
    bytes[at.offset() as usize..end].fill(0);
    std::fs::write(&segment, &bytes).unwrap();
    match Fence::open(dir.path(), crash_fence()) {
        Err(e) => assert_eq!(e.kind(), fencekit::ErrorKind::Corrupt, "{e}"),
        Ok(fence) => {
            let id = fence.lookup(b"jobs").unwrap();
            let old = fence.source_id(&Source::etcd_cluster(0xa)).unwrap();
            let zombie = Token::from_parts(1_000_001, 7).unwrap();
            panic!(
                "the rebase vanished unseen: the former cluster's token is now {:?}",
                fence.check_from(id, old, zombie)
            );
        }
    }
}

/// Runs a child of `role` on `dir`, kills it with SIGKILL after `run`, and returns the lines
/// it acknowledged.
fn run_and_kill(role: &str, dir: &Path, run: Duration) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env(DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // The harness prints `test crash::child_entry ... ` without a line end before the
            // child's first line: an acknowledgement may follow it on the same line.
            .filter_map(|line| line.split_once("ACK ").map(|(_, ack)| ack.to_owned()))
            .collect::<Vec<_>>()
    });
    let start = Instant::now();
    while start.elapsed() < run {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("crash child exited by itself: {status}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    reader.join().unwrap()
}

/// A small deterministic generator, so that a failing run can be repeated.
fn kill_delays(seed: u64, n: usize) -> Vec<Duration> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Duration::from_millis(30 + x % 170)
        })
        .collect()
}

#[test]
fn every_acknowledged_record_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked_total = 0;
    for (round, delay) in kill_delays(0xC0FFEE, 8).into_iter().enumerate() {
        let acked = run_and_kill("wal", dir.path(), delay);
        let (_, records) = open_wal(dir.path()).unwrap();
        let present: std::collections::HashSet<u64> =
            records.iter().map(|r| r.generation).collect();
        for line in &acked {
            let id: u64 = line.parse().unwrap();
            assert!(
                present.contains(&id),
                "round {round}: acknowledged record {id} lost"
            );
            let record = records.iter().find(|r| r.generation == id).unwrap();
            assert_eq!(record.payload, payload(id, (id % 200) as usize + 8));
        }
        acked_total += acked.len();
    }
    assert!(acked_total > 0, "the child never acknowledged anything");
}

#[test]
fn every_acknowledged_advance_is_still_the_floor_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut highest: HashMap<String, u64> = HashMap::new();
    for (round, delay) in kill_delays(0xFE11CE, 8).into_iter().enumerate() {
        for line in run_and_kill("fence", dir.path(), delay) {
            let (key, generation) = line.split_once(' ').unwrap();
            let generation: u64 = generation.parse().unwrap();
            let entry = highest.entry(key.to_owned()).or_default();
            *entry = (*entry).max(generation);
        }
        let fence = Fence::open(dir.path(), crash_fence()).unwrap();
        for (key, &generation) in &highest {
            let id = fence.lookup(key.as_bytes()).unwrap();
            let mark = fence.mark(id).unwrap().unwrap();
            assert!(
                mark.generation.get() >= generation,
                "round {round}: {key} acknowledged generation {generation}, recovered {mark}"
            );
            // And the generation below the acknowledged one is rejected.
            if generation > 1 {
                let older = Token::from_parts(generation - 1, 1).unwrap();
                assert!(!fence.check(id, older).unwrap().is_accepted());
            }
        }
    }
    assert!(!highest.is_empty(), "the child never advanced");
}
