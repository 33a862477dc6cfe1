//! Who may write to `fencekit store`, as real processes: on HTTPS the writer is the node its
//! client certificate names (node 2 cannot write as node 3; no certificate, no write; another
//! CA's certificate, no connection), a generation far above the mark is refused and counted,
//! and refused writes cannot grow the ledger without bound.

mod common;

use std::path::Path;

use common::{
    Https, certs, fencekit, free_port, get, post, spawn, start_tls_store, store_tls_dir, text,
    wait_healthy,
};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The value of the store's metric `name` (no labels).
fn metric(addr_get: impl Fn(&str) -> (u16, String), name: &str) -> f64 {
    let (_, text) = addr_get("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn a_writer_is_the_node_its_certificate_names() {
    let root = tempfile::tempdir().unwrap();
    let certs = certs(root.path(), 3);
    let (_store, addr) = start_tls_store(&root.path().join("s"), &certs);
    let node2 = Https::new(&certs, Some(2));
    let anonymous = Https::new(&certs, None);

    // Node 2 cannot write as node 3.
    let (code, body) = node2.post(&addr, "/begin?job=j&run=1&holder=3&generation=7");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("cannot write as node 3"), "{body}");
    // As itself, with or without saying so, it writes as node 2.
    let (code, body) = node2.post(&addr, "/begin?job=j&run=1&generation=7");
    assert_eq!(code, 200, "{body}");
    let (code, body) = node2.post(&addr, "/complete?job=j&run=1&holder=2&generation=7");
    assert_eq!(code, 200, "{body}");
    // Node 3 with the same generation is a conflict, and its answer hands out no token.
    let node3 = Https::new(&certs, Some(3));
    let (code, body) = node3.post(&addr, "/complete?job=j&run=2&generation=7");
    assert_eq!(code, 409, "{body}");
    assert_eq!(json(&body)["outcome"], "conflict");
    assert!(!body.contains("holder"), "{body}");

    // No certificate: no write, no ledger; health and metrics stay open to probes.
    for (path, post_it) in [
        ("/complete?job=j&run=3&holder=2&generation=7", true),
        ("/lock?holder=2&ttl_ms=100", true),
        ("/ledger", false),
        ("/first-undone?job=j", false),
    ] {
        let (code, body) = if post_it {
            anonymous.post(&addr, path)
        } else {
            anonymous.get(&addr, path)
        };
        assert_eq!(code, 401, "{path}: {body}");
    }
    // A node reads where a job stands: run 1 landed, run 0 not.
    let (code, body) = node2.get(&addr, "/first-undone?job=j");
    assert_eq!(
        (code, json(&body)["run"].as_u64()),
        (200, Some(0)),
        "{body}"
    );
    let (code, body) = node2.get(&addr, "/first-undone?job=a%20b");
    assert_eq!(code, 400, "{body}");
    assert_eq!(anonymous.get(&addr, "/healthz").0, 200);
    assert_eq!(anonymous.get(&addr, "/metrics").0, 200);

    // A certificate of another CA (even one for cluster 1) does not connect at all.
    let other_root = tempfile::tempdir().unwrap();
    let other = certs_in(other_root.path());
    let stranger = Https::new(&other, Some(2));
    let refused = stranger.try_post(&addr, "/complete?job=j&run=4&generation=7");
    assert!(refused.is_err(), "{refused:?}");
    // Plain HTTP to the HTTPS port gets nothing done.
    let plain =
        std::panic::catch_unwind(|| post(&addr, "/complete?job=j&run=5&holder=2&generation=7"));
    assert!(!matches!(plain, Ok((200, _))), "{plain:?}");

    let (_, ledger) = node2.get(&addr, "/ledger");
    let entries = json(&ledger)["entries"].as_array().cloned().unwrap();
    let written: Vec<(u64, u64, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["run"].as_u64().unwrap(),
                e["holder"].as_u64().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        written,
        [(1, 2, "accepted"), (2, 3, "conflict")],
        "{ledger}"
    );
}

fn certs_in(root: &Path) -> std::path::PathBuf {
    certs(root, 3)
}

#[test]
fn a_store_without_tls_must_be_told_insecure() {
    let root = tempfile::tempdir().unwrap();
    let out = fencekit(&[
        "store",
        "--data",
        &root.path().join("s").to_string_lossy(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("--tls-dir") && said.contains("--insecure"),
        "{said}"
    );
    let with_tls_dir = |dir: &str| {
        fencekit(&[
            "store",
            "--data",
            &root.path().join("s").to_string_lossy(),
            "--listen",
            "127.0.0.1:0",
            "--tls-dir",
            dir,
        ])
    };
    // A node's certificate is not the store's.
    let certs = certs(root.path(), 1);
    common::assert_one_line_error(
        &with_tls_dir(&certs.join("node-1").to_string_lossy()),
        "store.crt",
    );
    // A FIFO in the key's place would block the read for ever: refused at once.
    let key = certs.join("store").join("store.key");
    std::fs::remove_file(&key).unwrap();
    common::mkfifo(&key);
    common::assert_one_line_error(&with_tls_dir(&store_tls_dir(&certs)), "not a regular file");
}

#[test]
fn generation_jumps_are_refused_counted_and_move_nothing_even_in_steps() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("s");
    let addr = format!("127.0.0.1:{}", free_port());
    let store_args = [
        "store",
        "--data",
        &data.to_string_lossy(),
        "--listen",
        &addr,
        "--insecure",
        "--max-generation-jump",
        "100",
        "--generation-jump-window",
        "2",
    ];
    let store = spawn(&store_args);
    wait_healthy(&addr);
    let begin = |holder: u64, generation: u64| {
        let (code, body) = post(
            &addr,
            &format!("/begin?job=j&run=1&holder={holder}&generation={generation}"),
        );
        (
            code,
            json(&body)["outcome"].as_str().unwrap_or("").to_owned(),
            body,
        )
    };
    let jumps = || {
        metric(
            |p| get(&addr, p),
            "fencekit_store_generation_jumps_refused_total",
        )
    };
    // The forged token of the issue: it would have fenced every real leader for good.
    let (code, outcome, body) = begin(1, 9_223_372_036_854_775_807);
    assert_eq!((code, outcome.as_str()), (409, "jump"), "{body}");
    assert!(body.contains("the mark did not move"), "{body}");
    assert_eq!(jumps(), 1.0);
    // Steps each within the bound add up within the window.
    assert_eq!(begin(1, 60).0, 200);
    let (code, outcome, body) = begin(2, 120);
    assert_eq!(
        (code, outcome.as_str()),
        (409, "jump"),
        "60 + 60 > 100: {body}"
    );
    assert_eq!(begin(2, 100).0, 200, "60 + 40 fits");
    assert_eq!(begin(3, 101).1, "jump", "the budget is spent");
    assert_eq!(jumps(), 3.0);
    // Once the window has passed, the group may move on.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(begin(3, 150).0, 200);
    // Refused jumps are not kept in the ledger: the store starts again on its mark.
    drop(store);
    let _store = spawn(&store_args);
    wait_healthy(&addr);
    let (code, body) = post(&addr, "/complete?job=j&run=1&holder=3&generation=150");
    assert_eq!(code, 200, "{body}");
    let (code, body) = post(&addr, "/complete?job=j&run=2&holder=2&generation=100");
    assert_eq!(code, 409, "{body}");
    // A bound of 0 would refuse everything: refused at start.
    let out = fencekit(&[
        "store",
        "--data",
        &root.path().join("t").to_string_lossy(),
        "--listen",
        "127.0.0.1:0",
        "--insecure",
        "--max-generation-jump",
        "0",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
}

#[test]
fn a_flood_of_refused_writes_keeps_a_bounded_ledger() {
    let root = tempfile::tempdir().unwrap();
    let (_store, addr) =
        common::start_insecure_store(&root.path().join("s"), &["--rejections-kept", "10"]);
    let (code, _) = post(&addr, "/begin?job=j&run=0&holder=1&generation=5");
    assert_eq!(code, 200);
    for run in 0..50 {
        let (code, body) = post(
            &addr,
            &format!("/complete?job=z&run={run}&holder=2&generation=4"),
        );
        assert_eq!(code, 409, "{body}");
    }
    assert_eq!(
        metric(|p| get(&addr, p), "fencekit_store_ledger_rejections_kept"),
        10.0
    );
    let (_, ledger) = get(&addr, "/ledger");
    let runs: Vec<u64> = json(&ledger)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["run"].as_u64().unwrap())
        .collect();
    assert_eq!(runs, (40..50).collect::<Vec<_>>(), "the newest 10 are kept");
}
