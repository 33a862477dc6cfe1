//! A node's job scheduler against a real store: it runs each due job once, through the fence,
//! and counts the store's verdicts in its metrics.

mod common;

use std::time::{Duration, Instant};

use common::{Https, certs, free_port, get, spawn, start_tls_store, tls_dir, wait_healthy};

#[test]
fn a_leader_runs_each_due_job_once_with_its_token() {
    let root = tempfile::tempdir().unwrap();
    let status_addr = format!("127.0.0.1:{}", free_port());
    let data = |name: &str| root.path().join(name).to_string_lossy().into_owned();
    let certs = certs(root.path(), 1);
    let (_store, store_addr) = start_tls_store(&root.path().join("store"), &certs);
    let reader = Https::new(&certs, Some(1));
    let _node = spawn(&[
        "node",
        "--id",
        "1",
        "--peers",
        &format!("1=127.0.0.1:{}", free_port()),
        "--data",
        &data("node"),
        "--status-addr",
        &status_addr,
        "--store",
        &store_addr,
        "--jobs",
        "a,b",
        "--period-ms",
        "100",
        "--job-ms",
        "5",
        "--tls-dir",
        &tls_dir(&certs, 1),
        "--request-log",
        &data("requests.jsonl"),
    ]);
    wait_healthy(&status_addr);

    let deadline = Instant::now() + Duration::from_secs(20);
    let entries = loop {
        let (_, body) = reader.get(&store_addr, "/ledger");
        let ledger: serde_json::Value = serde_json::from_str(&body).unwrap();
        let entries = ledger["entries"].as_array().cloned().unwrap();
        if entries.len() >= 10 {
            break entries;
        }
        assert!(
            Instant::now() < deadline,
            "the scheduler ran too little: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut runs: Vec<(String, u64)> = entries
        .iter()
        .map(|e| {
            assert_eq!(e["outcome"], "accepted", "{e}");
            assert_eq!(e["holder"], 1, "{e}");
            assert!(e["generation"].as_u64().unwrap() >= 1, "{e}");
            (
                e["job"].as_str().unwrap().to_owned(),
                e["run"].as_u64().unwrap(),
            )
        })
        .collect();
    let total = runs.len();
    runs.sort();
    runs.dedup();
    assert_eq!(runs.len(), total, "no run twice: {entries:?}");

    let (_, status) = get(&status_addr, "/status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["scheduler"]["mode"], "fenced");
    assert_eq!(status["scheduler"]["acting"], true, "{status}");
    let (_, metrics) = get(&status_addr, "/metrics");
    let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text");
    let count = |outcome: &str| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "fencekit_scheduler_writes_total"
                    && s.labels.get("outcome") == Some(outcome)
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(n) | prometheus_parse::Value::Untyped(n) => n,
                _ => f64::NAN,
            })
    };
    assert!(count("accepted").is_some_and(|n| n >= 10.0), "{metrics}");
    assert_eq!(count("stale"), Some(0.0), "{metrics}");

    // --request-log: every completion the ledger holds was asked for and acknowledged, at the
    // place in the ledger's order the answer gave, with the times of the request.
    let log = std::fs::read_to_string(data("requests.jsonl")).unwrap();
    let requests: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for entry in &entries {
        let acknowledged = requests.iter().find(|r| {
            r["call"] == "complete"
                && r["answer"]["seq"] == entry["seq"]
                && r["job"] == entry["job"]
                && r["run"] == entry["run"]
        });
        let request = acknowledged.unwrap_or_else(|| panic!("{entry} not in the log:\n{log}"));
        assert_eq!(request["answer"]["outcome"], "accepted", "{request}");
        assert_eq!(request["generation"], entry["generation"], "{request}");
        assert!(request["invoke_ms"].as_u64() <= request["complete_ms"].as_u64());
    }
    let begins = requests.iter().filter(|r| r["call"] == "begin").count();
    assert!(
        begins >= entries.len(),
        "a begin before each completion: {log}"
    );
}

/// A node that takes over (here: restarted, its scheduler's memory gone) asks the store where
/// to start, instead of asking about every run from 0.
#[test]
fn a_node_taking_over_starts_at_the_first_undone_run() {
    let root = tempfile::tempdir().unwrap();
    let data = |name: &str| root.path().join(name).to_string_lossy().into_owned();
    let certs = certs(root.path(), 1);
    let (_store, store_addr) = start_tls_store(&root.path().join("store"), &certs);
    let reader = Https::new(&certs, Some(1));
    let raft = format!("1=127.0.0.1:{}", free_port());
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let node = |log: &str| {
        let status_addr = format!("127.0.0.1:{}", free_port());
        let daemon = spawn(&[
            "node",
            "--id",
            "1",
            "--peers",
            &raft,
            "--data",
            &data("node"),
            "--status-addr",
            &status_addr,
            "--store",
            &store_addr,
            "--jobs",
            "a",
            "--period-ms",
            "20",
            "--job-ms",
            "1",
            "--schedule-start-ms",
            &start,
            "--tls-dir",
            &tls_dir(&certs, 1),
            "--request-log",
            &data(log),
        ]);
        wait_healthy(&status_addr);
        daemon
    };
    let first = node("first.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    while ledger_len(&reader, &store_addr) < 30 {
        assert!(Instant::now() < deadline, "the first node ran too little");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(first);
    let done = ledger_len(&reader, &store_addr);

    let _second = node("second.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    let begins = loop {
        let log = std::fs::read_to_string(data("second.jsonl")).unwrap_or_default();
        let begins: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["call"] == "begin")
            .collect();
        if begins.len() >= 5 {
            break begins;
        }
        assert!(
            Instant::now() < deadline,
            "the second node ran too little: {log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let runs: Vec<u64> = begins.iter().map(|b| b["run"].as_u64().unwrap()).collect();
    assert!(
        runs[0] + 1 >= done as u64,
        "the second node began at run {}, with {done} runs done: {runs:?}",
        runs[0]
    );
    let asked_done = begins
        .iter()
        .filter(|b| b["answer"]["done"] == true)
        .count();
    assert!(
        asked_done <= 1,
        "it asked about {asked_done} done runs: {runs:?}"
    );
}

fn ledger_len(reader: &Https, store: &str) -> usize {
    let (_, body) = reader.get(store, "/ledger");
    let ledger: serde_json::Value = serde_json::from_str(&body).expect("the ledger as JSON");
    ledger["entries"].as_array().map_or(0, Vec::len)
}
