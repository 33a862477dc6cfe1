//! `fencekit store` as a process: tokens checked against one durable mark for the ledger, the
//! ledger and the mark surviving a restart, the naive TTL lock, metrics, and bad input.

mod common;

use std::path::Path;

use common::{Daemon, assert_one_line_error, fencekit, free_port, get, post};

fn start_store(data: &Path, extra: &[&str]) -> (Daemon, String) {
    common::start_insecure_store(data, extra)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn a_new_leaders_first_request_fences_every_older_token_and_it_survives_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("store");
    let (store, addr) = start_store(&data, &[]);

    let (code, body) = post(&addr, "/begin?job=report&run=1&holder=1&generation=3");
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["done"], false);
    // The new leader, generation 4, begins the same run: the old token is fenced from now on.
    let (code, body) = post(&addr, "/begin?job=report&run=1&holder=2&generation=4");
    assert_eq!(
        (code, json(&body)["outcome"].clone()),
        (200, "accepted".into())
    );
    let (code, body) = post(&addr, "/complete?job=report&run=1&holder=1&generation=3");
    assert_eq!(code, 409, "{body}");
    let answer = json(&body);
    assert_eq!(answer["outcome"], "stale");
    assert_eq!(answer["generation"], 4, "refused by generation 4: {body}");
    assert!(
        !body.contains("holder"),
        "a refusal names no holder another writer could present: {body}"
    );
    let (code, body) = post(&addr, "/complete?job=report&run=1&holder=2&generation=4");
    assert_eq!(code, 200);
    let seq = json(&body)["seq"].clone();
    let (_, ledger) = get(&addr, "/ledger");
    assert_eq!(
        json(&ledger)["entries"][1]["seq"],
        seq,
        "/ledger shows the seq /complete answered: {ledger}"
    );
    let (_, body) = post(&addr, "/begin?job=report&run=1&holder=2&generation=4");
    assert_eq!(json(&body)["done"], true, "the run landed once");
    // The same generation held by another node: split brain.
    let (code, body) = post(&addr, "/complete?job=report&run=2&holder=3&generation=4");
    assert_eq!(
        (code, json(&body)["outcome"].clone()),
        (409, "conflict".into())
    );

    let (_, metrics) = get(&addr, "/metrics");
    let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text");
    let stale = scrape.samples.iter().find(|s| {
        s.metric == "fencekit_store_decisions_total"
            && s.labels.get("outcome") == Some("stale")
            && s.labels.get("request") == Some("complete")
    });
    assert!(
        matches!(
            stale.map(|s| &s.value),
            Some(prometheus_parse::Value::Counter(n) | prometheus_parse::Value::Untyped(n)) if *n == 1.0
        ),
        "{metrics}"
    );

    drop(store);
    let (_store, addr) = start_store(&data, &[]);
    let (_, body) = get(&addr, "/ledger");
    let entries = json(&body)["entries"].as_array().cloned().unwrap();
    let outcomes: Vec<&str> = entries
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["stale", "accepted", "conflict"], "{body}");
    let (code, _) = post(&addr, "/complete?job=report&run=3&holder=1&generation=3");
    assert_eq!(
        code, 409,
        "the mark is durable: generation 3 stays fenced after a restart"
    );
}

#[test]
fn an_unfenced_store_takes_anything_and_lends_a_ttl_lock() {
    let root = tempfile::tempdir().unwrap();
    let (_store, addr) = start_store(&root.path().join("s"), &["--unfenced"]);
    for holder in [1, 2] {
        let (code, body) = post(&addr, &format!("/complete?job=j&run=0&holder={holder}"));
        assert_eq!(
            (code, json(&body)["outcome"].clone()),
            (200, "unfenced".into())
        );
    }
    let (_, metrics) = get(&addr, "/metrics");
    assert!(
        metrics.contains("fencekit_store_duplicate_runs 1"),
        "{metrics}"
    );

    let (_, body) = post(&addr, "/lock?holder=1&ttl_ms=60000");
    assert_eq!(json(&body)["held"], true);
    let (_, body) = post(&addr, "/lock?holder=2&ttl_ms=60000");
    let answer = json(&body);
    assert_eq!(
        (answer["held"].clone(), answer["holder"].clone()),
        (false.into(), 1.into())
    );
}

#[test]
fn bad_requests_get_a_clear_400_and_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (_store, addr) = start_store(&root.path().join("s"), &[]);
    for (path, says) in [
        ("/complete?job=j&run=0&holder=1", "this store is fenced"),
        (
            "/complete?job=a%2Fb&run=0&holder=1&generation=1",
            "a job name is",
        ),
        (
            "/complete?job=j&run=x&holder=1&generation=1",
            "run=\"x\": not a number",
        ),
        ("/complete?job=j&run=0&holder=0&generation=1", "holder"),
        (
            "/complete?job=j&run=0&holder=1&generation=0",
            "give a generation, 1 to 2^63-1",
        ),
        (
            "/complete?job=j&run=0&holder=1&generation=9223372036854775808",
            "give a generation, 1 to 2^63-1",
        ),
        ("/lock?holder=1&ttl_ms=0", "ttl_ms"),
    ] {
        let (code, body) = post(&addr, path);
        assert_eq!(code, 400, "{path}: {body}");
        assert!(
            json(&body)["error"].as_str().unwrap().contains(says),
            "{path}: {body}"
        );
    }
    let (code, body) = get(&addr, "/nowhere");
    assert_eq!(code, 404, "{body}");
    let (_, body) = get(&addr, "/ledger");
    assert_eq!(json(&body)["entries"], serde_json::json!([]));
}

#[test]
fn a_busy_port_and_a_locked_directory_are_one_line_each() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("s");
    let (_store, addr) = start_store(&data, &[]);
    let elsewhere = root.path().join("t").to_string_lossy().into_owned();
    assert_one_line_error(
        &fencekit(&[
            "store",
            "--data",
            &elsewhere,
            "--listen",
            &addr,
            "--insecure",
        ]),
        "is another process using the port?",
    );
    let free = format!("127.0.0.1:{}", free_port());
    assert_one_line_error(
        &fencekit(&[
            "store",
            "--data",
            &data.to_string_lossy(),
            "--listen",
            &free,
            "--insecure",
        ]),
        "is locked by another open log",
    );
}

/// A node whose store does not answer at its start still starts (it is a voter of its group
/// first) and says what is wrong; its scheduler keeps trying.
#[test]
fn a_node_starts_without_its_store_and_says_so() {
    let root = tempfile::tempdir().unwrap();
    let down = format!("127.0.0.1:{}", free_port());
    let status = format!("127.0.0.1:{}", free_port());
    let mut args = common::lone_node(&root.path().join("n"), &status);
    args.extend(["--store".into(), down, "--insecure".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut node = std::process::Command::new(common::FENCEKIT)
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_healthy(&status);
    let (_, body) = common::get(&status, "/status");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        view["scheduler"]["store_errors"].as_u64().is_some(),
        "{view}"
    );
    node.kill().unwrap();
    let out = node.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("does not answer: start `fencekit store") && said.contains("keeps trying"),
        "{said}"
    );
}
