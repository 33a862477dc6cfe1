//! `fencekit demo --quick --json`: the drill end to end, asserted on its summary. The naive
//! side must show the zombie's double run and fencekit's side must not.

mod common;

use common::{fencekit, text};

#[test]
fn the_zombie_double_runs_a_job_under_a_ttl_lock_and_is_fenced_under_fencekit() {
    let root = tempfile::tempdir().unwrap();
    let html = root.path().join("report.html");
    let out = fencekit(&[
        "demo",
        "--quick",
        "--json",
        "--html",
        &html.to_string_lossy(),
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {said}"));
    let (naive, fenced) = (&summary["naive"], &summary["fenced"]);
    let n = |side: &serde_json::Value, field: &str| {
        side[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{field} in {side}"))
    };

    assert_eq!(summary["fenced_safe"], true);
    assert_eq!(n(fenced, "executed_twice"), 0, "{said}");
    assert_eq!(n(fenced, "conflicts"), 0, "{said}");
    assert!(
        n(fenced, "stale_rejected") >= 1,
        "the zombie's write was fenced: {said}"
    );
    assert_eq!(
        n(fenced, "not_executed"),
        0,
        "every due run ran after failover: {said}"
    );
    assert!(
        n(naive, "executed_twice") >= 1,
        "the zombie double-ran a job: {said}"
    );
    assert_eq!(
        n(naive, "stale_rejected"),
        0,
        "nothing checks tokens: {said}"
    );
    for side in [naive, fenced] {
        assert!(n(side, "jobs_due") >= 10, "{side}");
        assert_eq!(
            n(side, "executed_once") + n(side, "executed_twice") + n(side, "not_executed"),
            n(side, "jobs_due")
        );
        let kinds: Vec<&str> = side["faults"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["pause", "partition", "kill", "skew"], "{side}");
    }
    assert!(
        !fenced["failover_ms"].as_array().unwrap().is_empty(),
        "failovers were measured: {fenced}"
    );

    let page = std::fs::read_to_string(&html).expect("the HTML report");
    assert_eq!(page.matches("<svg").count(), 2, "a timeline per run");
    assert!(
        page.contains("rejected as stale"),
        "the fenced write is on the timeline"
    );
    assert!(
        page.contains("landed AGAIN"),
        "the double run is on the timeline"
    );
    // Everything it started is gone: its children died with it, its directories too.
    let leftovers = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("fencekit-demo-")
        })
        .count();
    assert_eq!(leftovers, 0, "temporary directories left behind");
}
