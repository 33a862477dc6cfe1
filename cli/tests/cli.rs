//! The fencekit command against real node processes: status and its audit, the metrics
//! endpoint, and wal inspect on the data a real run left.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    FENCEKIT, Group, assert_one_line_error, certs, fencekit, free_port, get, text, tls_dir,
    wait_healthy,
};

fn start_group(root: &Path, size: usize) -> Group {
    Group::start(root, size, &[])
}

/// The rows of a status table whose role is leader.
fn leaders(table: &str) -> usize {
    table
        .lines()
        .skip(1)
        .filter(|row| row.split_whitespace().nth(3) == Some("leader"))
        .count()
}

/// Runs `fencekit status` until it passes (a leader elected, every node answering).
fn status_until_healthy(group: &Group) -> String {
    let nodes = group.status.join(",");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = fencekit(&["status", "--nodes", &nodes]);
        let said = text(&out);
        if out.status.success() && leaders(&said) == 1 {
            return said;
        }
        assert!(Instant::now() < deadline, "no healthy group: {said}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn status_audits_a_real_group_and_names_a_dead_node() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let mut group = start_group(root.path(), 3);
    let table = status_until_healthy(&group);
    assert!(table.contains("audit: no anomaly among 3 nodes"), "{table}");
    assert_eq!(leaders(&table), 1, "{table}");

    group.kill(3);
    let out = fencekit(&["status", "--nodes", &group.status.join(",")]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("1 of 3 nodes did not answer"), "{said}");
    assert!(said.contains(&group.status[2]), "{said}");
    assert!(!said.contains("panicked"), "{said}");
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let group = start_group(root.path(), 1);
    status_until_healthy(&group);
    let body = get(&group.status[0], "/metrics").1;
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| s.value.clone())
    };
    assert!(
        matches!(value("fencekit_term"), Some(prometheus_parse::Value::Gauge(t)) if t >= 1.0),
        "{body}"
    );
    assert!(
        matches!(value("fencekit_lease_remaining_seconds"), Some(prometheus_parse::Value::Gauge(s)) if s > 0.0),
        "a single node leads with a lease: {body}"
    );
    let health = get(&group.status[0], "/healthz").1;
    assert_eq!(health.trim(), "ok");
}

#[test]
fn wal_inspect_reads_a_real_nodes_log() {
    let root = tempfile::tempdir().expect("a temporary directory");
    {
        let group = start_group(root.path(), 1);
        status_until_healthy(&group);
    }
    let out = fencekit(&[
        "wal",
        "inspect",
        &root.path().join("node-1").to_string_lossy(),
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("identity: cluster 1, node 1"), "{said}");
    assert!(said.contains("membership: AddNode node 1"), "{said}");
    assert!(said.contains("verified"), "{said}");
    // What the log is and what vouches for it: its identity, superblock and segment chain.
    assert!(said.contains("of node 1 of cluster 0x1"), "{said}");
    assert!(said.contains("4 of 4 copies valid"), "{said}");
    assert!(said.contains("segment 1 (snapshot base)"), "{said}");

    let out = fencekit(&["wal", "inspect", &root.path().to_string_lossy()]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("no log in this directory") && said.lines().count() == 1,
        "{said}"
    );
}

#[test]
fn bad_input_is_one_line_naming_the_cause() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let data = root.path().join("n");
    let data = data.to_string_lossy();
    // `fencekit node` with node ID, peer list PEERS and then `extra`.
    let node = |id: &'static str, peers: &'static str, extra: &[&'static str]| {
        let mut args = vec!["node", "--id", id, "--peers", peers, "--data", &data];
        args.extend(["--status-addr", "127.0.0.1:0"]);
        args.extend(extra);
        args
    };
    for (args, says) in [
        (node("1", "1=localhost", &["--insecure"]), "the address"),
        (
            node("1", "1=127.0.0.1:1", &[]),
            "peers must prove who they are",
        ),
        (
            node("1", "1=127.0.0.1:1", &["--tls-dir", "/nonexistent"]),
            "/nonexistent/node.crt",
        ),
        (
            node("4", "1=127.0.0.1:1", &["--insecure"]),
            "does not list this node",
        ),
        (vec!["plugin", "check", "/nonexistent.wasm"], "No such file"),
        (
            vec!["demo", "--html", "/nonexistent/report.html"],
            "choose another --html",
        ),
    ] {
        assert_one_line_error(&fencekit(&args), says);
    }
}

#[test]
fn a_data_directory_of_another_cluster_is_refused_in_one_line() {
    let root = tempfile::tempdir().expect("a temporary directory");
    {
        let group = start_group(root.path(), 1);
        status_until_healthy(&group);
    }
    let data = root.path().join("node-1");
    let out = fencekit(&[
        "node",
        "--id",
        "1",
        "--cluster",
        "2",
        "--peers",
        &format!("1=127.0.0.1:{}", free_port()),
        "--data",
        &data.to_string_lossy(),
        "--status-addr",
        "127.0.0.1:0",
        "--insecure",
    ]);
    assert_one_line_error(&out, "belongs to cluster 0x1 node 1, not cluster 0x2");
}

/// `fencekit certs` makes a CA and node certificates a secure group starts with (above), keeps
/// private keys private, refuses to overwrite, and adds one more node.
#[test]
fn certs_init_and_add() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().expect("a temporary directory");
    let dir = certs(root.path(), 2);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert_eq!(mode(&dir.join("node-2/node.key")), 0o600);
    let d = dir.to_string_lossy();
    assert_one_line_error(
        &fencekit(&["certs", "init", "--dir", &d, "--nodes", "3"]),
        "already holds a CA",
    );
    let out = fencekit(&["certs", "add", "--dir", &d, "--node", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.join("node-3/node.crt").exists());
    assert_one_line_error(
        &fencekit(&["certs", "add", "--dir", &d, "--node", "3"]),
        "has certificates already",
    );
    assert_one_line_error(
        &fencekit(&["certs", "add", "--dir", &d, "--node", "0"]),
        "must be 1 to 2^64-1",
    );
}

/// I9 through the command: a node whose thread dies answers /healthz with 503 and the cause,
/// says failed in /status and /metrics, and reports no leadership.
#[test]
fn a_failed_node_says_so_on_every_endpoint() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let group = Group::start(root.path(), 1, &["--test-panic-after-ms", "1500"]);
    let addr = &group.status[0];
    wait_healthy(addr);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = get(addr, "/healthz");
        if code == 503 {
            assert!(
                body.contains("failed") && body.contains("planted panic"),
                "{body}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node never reported its failure"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = get(addr, "/status").1;
    assert!(status.contains("\"failed\":true"), "{status}");
    assert!(status.contains("\"leading_generation\":null"), "{status}");
    let metrics = get(addr, "/metrics").1;
    assert!(metrics.contains("fencekit_failed 1"), "{metrics}");
    let out = fencekit(&["status", "--nodes", addr]);
    let said = text(&out);
    assert!(
        !out.status.success() && said.contains("node 1 failed"),
        "{said}"
    );
}

/// An insecure node says so loudly when it starts, and in its metrics.
#[test]
fn an_insecure_node_warns() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let status = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(FENCEKIT)
        .args(["node", "--id", "1", "--insecure", "--status-addr", &status])
        .args(["--peers", &format!("1=127.0.0.1:{}", free_port())])
        .arg("--data")
        .arg(root.path().join("n"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fencekit node");
    wait_healthy(&status);
    let metrics = get(&status, "/metrics").1;
    let _ = child.kill();
    let out = child.wait_with_output().expect("its output");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("WARNING") && said.contains("--insecure"),
        "{said}"
    );
    assert!(metrics.contains("fencekit_insecure 1"), "{metrics}");
}

/// A stranger on the Raft port is refused, and the node says so on stderr (once a second at
/// most), while a peer of the group never hears why.
#[test]
fn a_stranger_on_the_raft_port_is_refused_and_logged() {
    use std::io::{Read, Write};
    let root = tempfile::tempdir().expect("a temporary directory");
    let certs = certs(root.path(), 1);
    let status = format!("127.0.0.1:{}", free_port());
    let raft = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(FENCEKIT)
        .args(["node", "--id", "1", "--status-addr", &status])
        .args([
            "--peers",
            &format!("1={raft}"),
            "--tls-dir",
            &tls_dir(&certs, 1),
        ])
        .arg("--data")
        .arg(root.path().join("n"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fencekit node");
    wait_healthy(&status);
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(&raft).expect("connect");
        s.write_all(b"FKT2 hello, who are you?").expect("write");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            !answer.contains("cluster") && !answer.contains("node"),
            "{answer}"
        );
    }
    // The count follows the refusal by a moment: wait for it.
    let counted = "fencekit_peer_connections{outcome=\"refused\"} 20";
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut metrics = get(&status, "/metrics").1;
    while !metrics.contains(counted) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        metrics = get(&status, "/metrics").1;
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("its output");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("refused a connection") && said.contains("a stranger"),
        "{said}"
    );
    assert!(
        said.lines()
            .filter(|l| l.contains("refused a connection"))
            .count()
            < 20,
        "{said}"
    );
    assert!(metrics.contains(counted), "{metrics}");
}
