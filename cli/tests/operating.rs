//! What an operator sees of a real group: leadership changes in the nodes' logs (text and
//! JSON), and `fencekit status`'s configuration checks (--expect-voters, clock rates).

mod common;

use std::time::{Duration, Instant};

use common::{Group, fencekit, get, text, wait_healthy};

/// The node (1-based) that leads with a live lease in a term above `above`, and that term,
/// among the nodes not in `dead`; waits up to 20 s.
fn leader(group: &Group, dead: &[usize], above: u64) -> (usize, u64) {
    for n in (1..=group.status.len()).filter(|n| !dead.contains(n)) {
        wait_healthy(&group.status[n - 1]);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for n in 1..=group.status.len() {
            if dead.contains(&n) {
                continue;
            }
            let (code, body) = get(&group.status[n - 1], "/status");
            if code != 200 {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
            if let Some(generation) = v["leading_generation"].as_u64()
                && generation > above
            {
                return (n, generation);
            }
        }
        assert!(Instant::now() < deadline, "no leader above term {above}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits up to 10 s for node `n`'s stderr to hold a line that `wanted` accepts; returns it.
fn line(group: &Group, n: usize, what: &str, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let said = group.stderr(n);
        if let Some(l) = said.lines().find(|l| wanted(l)) {
            return l.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "node {n} never logged {what}; its stderr:\n{said}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the leader of a fresh group; returns (old leader, its term, new leader, new term,
/// the third node).
fn fail_over(group: &mut Group) -> (usize, u64, usize, u64, usize) {
    let (old, old_term) = leader(group, &[], 0);
    group.kill(old);
    let (new, new_term) = leader(group, &[old], old_term);
    let third = (1..=3)
        .find(|&n| n != old && n != new)
        .expect("a third node");
    (old, old_term, new, new_term, third)
}

/// With the default logger, a failover is visible in the logs without any RUST_LOG: the first
/// leader's `became leader`, the successor's, and the third node's `leader changed` naming
/// the successor and its term; the kernel's debug chatter stays hidden.
#[test]
fn a_failover_is_logged_by_default() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let mut group = Group::start_logged(root.path(), 3, &[]);
    let (old, old_term, new, new_term, third) = fail_over(&mut group);

    line(&group, old, "its election", |l| {
        l.contains(&format!("became leader term={old_term}"))
    });
    let became = format!("became leader term={new_term}");
    let elected = line(&group, new, &became, |l| l.contains(&became));
    assert!(elected.contains("INFO"), "{elected}");
    let changed = format!("to={new} term={new_term}");
    line(&group, third, &changed, |l| {
        l.contains("leader changed from=") && l.contains(&changed)
    });
    for n in [new, third] {
        let said = group.stderr(n);
        assert!(!said.contains("DEBUG"), "node {n}: {said}");
        assert!(!said.contains("panicked"), "node {n}: {said}");
    }
}

/// With `--log-format json`, every line a node writes is one JSON object with ts, level,
/// target and msg, and the leadership lines carry their key=value pairs as fields.
#[test]
fn a_json_log_is_json_on_every_line() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let mut group = Group::start_logged(root.path(), 3, &["--log-format", "json"]);
    let (old, _, new, new_term, third) = fail_over(&mut group);

    let parse = |l: &str| serde_json::from_str::<serde_json::Value>(l).ok();
    let elected = line(&group, new, "became leader", |l| {
        parse(l).is_some_and(|v| v["msg"] == format!("became leader term={new_term}"))
    });
    let elected = parse(&elected).expect("JSON");
    assert_eq!(elected["term"], new_term, "{elected}");
    assert_eq!(elected["level"], "info", "{elected}");
    assert_eq!(elected["target"], "fencekit::cli::leadership", "{elected}");
    line(&group, third, "leader changed", |l| {
        parse(l).is_some_and(|v| {
            v["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("leader changed"))
                && v["to"] == new as u64
                && v["term"] == new_term
        })
    });

    // The killed node's log too: everything it wrote before SIGKILL.
    for n in [old, new, third] {
        let said = group.stderr(n);
        assert!(said.lines().count() >= 2, "node {n} said little: {said}");
        for l in said.lines() {
            let v = parse(l).unwrap_or_else(|| panic!("node {n}: not JSON: {l}"));
            for key in ["ts", "level", "target", "msg"] {
                assert!(v[key].is_string(), "node {n}: no {key}: {l}");
            }
        }
    }
}

/// `status --expect-voters N` passes when every node reports N voters, and otherwise fails
/// naming a node and the count it reports; a clock skewed beyond the drift bound is an
/// anomaly that names the pair.
#[test]
fn status_checks_the_voter_count_and_the_clock_rates() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let group = Group::start(root.path(), 3, &[]);
    leader(&group, &[], 0);
    let nodes = group.status.join(",");

    let right = fencekit(&["status", "--nodes", &nodes, "--expect-voters", "3"]);
    assert!(right.status.success(), "{}", text(&right));

    let wrong = fencekit(&["status", "--nodes", &nodes, "--expect-voters", "5"]);
    let said = text(&wrong);
    assert!(!wrong.status.success(), "{said}");
    assert!(said.contains("--expect-voters 5: node "), "{said}");
    assert!(said.contains("reports 3 voters"), "{said}");
    assert!(!said.contains("panicked"), "{said}");

    // 1.3 against 1.0: 0.77, far below 1 - max_drift (0.95 by default).
    let (code, body) = group.admin_post(2, "/admin/clock?rate=1.3");
    assert_eq!(code, 200, "{body}");
    let skewed = fencekit(&["status", "--nodes", &nodes]);
    let said = text(&skewed);
    assert!(!skewed.status.success(), "{said}");
    assert!(
        said.contains("ANOMALY: clock rates of node") && said.contains("1.3"),
        "{said}"
    );
}
