//! `fencekit demo --quick --json`: the drill end to end, asserted on its summary. The naive
//! side must show the zombie's double run and fencekit's side must not.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{FENCEKIT, text};

/// Command lines of running processes that mention `path`.
fn processes_mentioning(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect()
}

/// What the demo left in its temporary directory.
fn leftovers(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .expect("the demo's TMPDIR")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_zombie_double_runs_a_job_under_a_ttl_lock_and_is_fenced_under_fencekit() {
    let root = tempfile::tempdir().unwrap();
    let html = root.path().join("report.html");
    let tmp = root.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let out = Command::new(FENCEKIT)
        .args(["demo", "--quick", "--json", "--html"])
        .arg(&html)
        .env("TMPDIR", &tmp)
        .output()
        .expect("run fencekit demo");
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
    assert_eq!(n(fenced, "recorded_twice"), 0, "{said}");
    assert_eq!(n(fenced, "conflicts"), 0, "{said}");
    assert!(
        n(fenced, "stale_rejected") >= 1,
        "the zombie's write was fenced: {said}"
    );
    assert_eq!(
        n(fenced, "not_recorded"),
        0,
        "every due run ran after failover: {said}"
    );
    assert!(
        n(naive, "recorded_twice") >= 1,
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
            n(side, "recorded_once") + n(side, "recorded_twice") + n(side, "not_recorded"),
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
    // Everything it started is gone: its processes and its directories.
    assert_eq!(leftovers(&tmp), Vec::<String>::new());
    assert_eq!(processes_mentioning(&tmp), Vec::<String>::new());
}

#[test]
fn ctrl_c_stops_every_process_and_removes_every_directory() {
    let root = tempfile::tempdir().unwrap();
    let tmp = root.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut demo = Command::new(FENCEKIT)
        .args(["demo", "--quick", "--html"])
        .arg(root.path().join("report.html"))
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fencekit demo");
    // Interrupt it while the leader is stopped mid-job: the cruellest moment to leave.
    let mut lines = BufReader::new(demo.stderr.take().unwrap()).lines();
    let said: Vec<String> = lines
        .by_ref()
        .map_while(Result::ok)
        .take_while(|line| !line.contains("SIGSTOP"))
        .collect();
    assert!(
        !processes_mentioning(&tmp).is_empty(),
        "the demo runs: {said:?}"
    );
    let pid = i32::try_from(demo.id()).unwrap();
    // SAFETY: kill(2) on our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = demo.wait().unwrap();
    assert!(!status.success());
    assert!(
        rest.iter()
            .any(|l| l.contains("interrupted: the demo's processes were stopped")),
        "{rest:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_mentioning(&tmp).is_empty() {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            processes_mentioning(&tmp)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(leftovers(&tmp), Vec::<String>::new());
}
