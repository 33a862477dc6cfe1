//! The operator files in ops/: the alert rules pass promtool (its syntax check and the rules'
//! unit tests), and every metric the rules and the dashboard query is one a real node or a
//! real store exports.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, get, spawn, start_insecure_store, wait_healthy};

/// Set by test.sh, which installs promtool: there a missing promtool fails the test instead of
/// skipping it.
const REQUIRE_PROMTOOL: &str = "FENCEKIT_REQUIRE_PROMTOOL";

fn ops(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../ops")
        .join(path)
}

/// Runs `promtool ARGS`; `None` when promtool is not installed and not required.
fn promtool(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("promtool").args(args).output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os(REQUIRE_PROMTOOL).is_none(),
                "promtool is not installed, and {REQUIRE_PROMTOOL} requires it: \
                 apt-get install prometheus"
            );
            eprintln!("skipped: promtool is not installed (apt-get install prometheus)");
            None
        }
        Err(e) => panic!("promtool: {e}"),
    }
}

fn assert_promtool(args: &[&str]) {
    if let Some(out) = promtool(args) {
        assert!(
            out.status.success(),
            "promtool {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_alert_rules_pass_promtool_check() {
    let rules = ops("prometheus/fencekit-alerts.yml");
    assert_promtool(&["check", "rules", &rules.to_string_lossy()]);
}

/// The rules' own unit tests: two leaders in one cluster fire and scrape skew does not, two
/// leaders of one generation, no leader, conflicts, stale writes.
#[test]
fn the_alert_rules_pass_their_unit_tests() {
    let tests = ops("prometheus/fencekit-alerts.test.yml");
    assert_promtool(&["test", "rules", &tests.to_string_lossy()]);
}

/// Every `fencekit_*` name in `query`.
fn metric_names(query: &str, into: &mut BTreeSet<String>) {
    let mut rest = query;
    while let Some(at) = rest.find("fencekit_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        into.insert(name);
    }
}

/// The `expr` of every rule: the value after `expr:` on its line, or the indented block after
/// `expr: |`.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((indent, value)) = line
            .find("expr:")
            .filter(|&i| line[..i].trim().is_empty())
            .map(|i| (i, line[i + "expr:".len()..].trim()))
        else {
            continue;
        };
        if !value.starts_with('|') && !value.starts_with('>') {
            exprs.push(value.to_owned());
            continue;
        }
        let mut block = String::new();
        while let Some(next) = lines.peek() {
            let deeper = next.len() - next.trim_start().len() > indent;
            if !next.trim().is_empty() && !deeper {
                break;
            }
            block.push_str(next);
            block.push('\n');
            lines.next();
        }
        exprs.push(block);
    }
    exprs
}

/// Every `expr` in the dashboard's JSON, wherever it is (panel targets, rows).
fn dashboard_exprs(value: &serde_json::Value, into: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(expr)) => into.push(expr.clone()),
                    _ => dashboard_exprs(v, into),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, into)),
        _ => {}
    }
}

/// The names of the samples and families a /metrics page exposes.
fn exported(page: &str, into: &mut BTreeSet<String>) {
    for line in page.lines() {
        let name = match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split(' ').next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        };
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            into.insert(name.to_owned());
        }
    }
}

/// Polls `addr`'s /metrics until it exposes `name`; returns the page.
fn metrics_with(addr: &str, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, page) = get(addr, "/metrics");
        if code == 200 && page.contains(name) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "{addr}/metrics never had {name}: {page}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A metric renamed in the code, or mistyped in a rule or a panel, makes an alert that never
/// fires and a panel that stays empty: every name they use must be exported by a running
/// node (with its scheduler writing, so that its counters have samples) or store.
#[test]
fn every_metric_the_rules_and_the_dashboard_use_is_exported() {
    let rules = std::fs::read_to_string(ops("prometheus/fencekit-alerts.yml")).expect("rules");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ops("grafana/fencekit-dashboard.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut exprs = rule_exprs(&rules);
    assert!(exprs.len() >= 5, "rules without exprs? {exprs:?}");
    let from_rules = exprs.len();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() > from_rules + 5, "a dashboard without queries?");
    let mut used = BTreeSet::new();
    for expr in &exprs {
        metric_names(expr, &mut used);
    }

    let root = tempfile::tempdir().expect("a temporary directory");
    let data = |name: &str| root.path().join(name).to_string_lossy().into_owned();
    let status_addr = format!("127.0.0.1:{}", free_port());
    let (_store, store_addr) = start_insecure_store(&root.path().join("store"), &[]);
    let _node = spawn(&[
        "node",
        "--id",
        "1",
        "--insecure",
        "--peers",
        &format!("1=127.0.0.1:{}", free_port()),
        "--data",
        &data("node"),
        "--status-addr",
        &status_addr,
        "--store",
        &store_addr,
        "--jobs",
        "a",
        "--period-ms",
        "100",
        "--job-ms",
        "5",
    ]);
    wait_healthy(&status_addr);
    let mut available = BTreeSet::new();
    exported(
        &metrics_with(&status_addr, "fencekit_scheduler_writes_total"),
        &mut available,
    );
    exported(
        &metrics_with(&store_addr, "fencekit_store_decisions_total"),
        &mut available,
    );

    let missing: Vec<&String> = used
        .iter()
        .filter(|name| !available.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "used by the rules or the dashboard but exported by neither a node nor a store: \
         {missing:?}\nexported: {available:?}"
    );
}

/// The extraction finds what it must: a checker that found no names would pass anything.
#[test]
fn the_name_extraction_finds_names_in_one_line_and_block_exprs() {
    let yaml = "rules:\n  - alert: A\n    expr: fencekit_a == 0\n    for: 1m\n  - alert: B\n    \
                expr: |\n      sum(rate(fencekit_b_total[5m]))\n        > fencekit_c\n    labels:\n      \
                x: fencekit_not_an_expr\n";
    let mut names = BTreeSet::new();
    for expr in rule_exprs(yaml) {
        metric_names(&expr, &mut names);
    }
    let want: BTreeSet<String> = ["fencekit_a", "fencekit_b_total", "fencekit_c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want);
}
