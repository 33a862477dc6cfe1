//! Connection floods against real `fencekit node` processes: 200 connections per node held
//! open by a stranger, half silent and half sending a byte now and then, each reopened as
//! soon as it is cut off. A new connection cuts off the oldest handshake in progress, so the
//! members still get in (a follower killed in the middle restarts and rejoins), and each
//! node's memory and threads stay bounded (before this, 200 such connections took a node from
//! 19 MB to 843 MB and 211 threads).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Group, get};

const HELD: usize = 200;
/// fencekit::limits::HANDSHAKES_MAX: openings a node serves at once.
const HANDSHAKES_MAX: u64 = 32;

/// VmRSS (KiB) and Threads of a process.
fn process(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("a number")
    };
    (field("VmRSS:"), field("Threads:"))
}

/// What a node's /status says: term, role, leader, voters.
type View = (u64, String, Option<u64>, Vec<u64>);

/// Each node's view (`None`: it did not answer).
fn views(group: &Group) -> Vec<Option<View>> {
    group
        .status
        .iter()
        .map(|addr| {
            let url = format!("http://{addr}/status");
            let body = ureq::get(&url)
                .config()
                .timeout_global(Some(Duration::from_secs(2)))
                .build()
                .call()
                .ok()?
                .into_body()
                .read_to_string()
                .ok()?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            Some((
                v["term"].as_u64()?,
                v["role"].as_str()?.to_owned(),
                v["leader"].as_u64(),
                v["voters"]
                    .as_array()?
                    .iter()
                    .filter_map(|x| x.as_u64())
                    .collect(),
            ))
        })
        .collect()
}

/// Waits until every node answers, agrees on one leader, and keeps voters [1, 2, 3].
fn wait_agreed(group: &Group, what: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let views = views(group);
        let leaders: Vec<u64> = views
            .iter()
            .flatten()
            .filter(|v| v.1 == "leader")
            .map(|v| v.0)
            .collect();
        let agreed = views.iter().all(|v| {
            v.as_ref()
                .is_some_and(|v| v.2.is_some() && v.2 == views[0].as_ref().and_then(|w| w.2))
        });
        for v in views.iter().flatten() {
            assert_eq!(v.3, [1, 2, 3], "{what}: the membership changed: {views:?}");
        }
        if agreed && leaders.len() == 1 {
            return views[0].as_ref().and_then(|v| v.2).expect("a leader");
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no agreed leader within 20 s: {views:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The stranger: keeps `HELD` connections open to each address, reopening each the moment the
/// node cuts it off; half of them send a byte every 300 ms, the others nothing.
fn hold(addrs: &[String], stop: &AtomicBool) {
    let mut held: Vec<(usize, TcpStream)> = Vec::new();
    let mut last_trickle = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        // Open and silent, a connection would block a read; anything else (its end, or the
        // alert a node sends as it closes it) means it is gone and is replaced.
        held.retain(|(_, s)| {
            let mut byte = [0u8; 1];
            matches!(s.peek(&mut byte), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
        });
        if last_trickle.elapsed() > Duration::from_millis(300) {
            last_trickle = Instant::now();
            for (i, (_, s)) in held.iter_mut().enumerate() {
                if i % 2 == 0 {
                    let _ = s.write_all(&[0x16]);
                }
            }
        }
        for (i, addr) in addrs.iter().enumerate() {
            while held.iter().filter(|(n, _)| *n == i).count() < HELD {
                match TcpStream::connect(addr) {
                    Ok(s) => {
                        let _ = s.set_nonblocking(true);
                        held.push((i, s));
                    }
                    Err(_) => break,
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_slow_connection_flood_is_bounded_and_locks_no_member_out() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let mut group = Group::start(root.path(), 3, &[]);
    for addr in &group.status {
        common::wait_healthy(addr);
    }
    let leader = wait_agreed(&group, "before the flood") as usize;
    let follower = leader % 3 + 1;
    let before: Vec<(u64, u64)> = (1..=3).map(|n| process(group.pid(n))).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let (addrs, stop) = (group.raft.clone(), stop.clone());
        std::thread::spawn(move || hold(&addrs, &stop))
    };
    let mut peak = [(0u64, 0u64); 3];
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(8) {
        round += 1;
        for n in 1..=3 {
            if n == follower && round > 2 {
                continue; // restarted: its baseline is gone
            }
            let (rss, threads) = process(group.pid(n));
            peak[n - 1] = (peak[n - 1].0.max(rss), peak[n - 1].1.max(threads));
        }
        if round == 2 {
            group.restart(follower);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // The restarted follower got in through the flood: every node agrees on one leader.
    wait_agreed(&group, "during the flood");
    let term = views(&group)[0].as_ref().map(|v| v.0);
    for n in 1..=3 {
        if n == follower {
            continue;
        }
        let ((rss, threads), (peak_rss, peak_threads)) = (before[n - 1], peak[n - 1]);
        // At most twice HANDSHAKES_MAX threads in openings (those cut off on their way out
        // included), and one per authenticated peer connection.
        assert!(
            peak_threads <= threads + 2 * HANDSHAKES_MAX + 4,
            "node {n}: threads went from {threads} to {peak_threads}"
        );
        assert!(
            peak_rss <= rss + 64 * 1024,
            "node {n}: resident memory went from {rss} KiB to {peak_rss} KiB"
        );
    }
    let metrics = get(&group.status[leader - 1], "/metrics").1;
    assert!(
        !metrics.contains("fencekit_peer_connections{outcome=\"shed\"} 0"),
        "no connection was cut off: {metrics}"
    );
    stop.store(true, Ordering::SeqCst);
    attacker.join().expect("the attacker");
    assert_eq!(
        wait_agreed(&group, "after the flood") as usize,
        leader,
        "leadership moved (term {term:?})"
    );
}
