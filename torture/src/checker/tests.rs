//! The checker against hand-made histories: a valid one passes every check, and each planted
//! bug is reported by exactly the check whose promise it breaks.

use std::collections::BTreeMap;

use super::{Check, VIOLATIONS_KEPT, check};
use crate::history::{
    Answer, Call, Fault, FaultKind, History, JobSchedule, LedgerEntry, Mode, Op, OpClock, RateSpan,
    Sample, Snapshot, Span,
};

const NAMES: [&str; 6] = [
    "no-run-twice",
    "tokens-never-go-back",
    "one-holder-per-generation",
    "acknowledged-completions-durable",
    "due-runs-done",
    "one-live-lease",
];

fn answer(outcome: &str, generation: Option<u64>, done: bool, seq: Option<u64>) -> Option<Answer> {
    Some(Answer {
        outcome: outcome.to_string(),
        generation,
        done,
        seq,
    })
}

/// A request; a node's scheduler reads its own clock, an extra client the harness's.
fn op(
    client: &str,
    call: Call,
    (job, run): (&str, u64),
    (holder, generation): (u64, Option<u64>),
    invoke_ms: i64,
    answer: Option<Answer>,
) -> Op {
    Op {
        client: client.to_string(),
        call,
        job: job.to_string(),
        run,
        holder,
        generation,
        invoke_ms,
        complete_ms: invoke_ms + 10,
        clock: if client.starts_with("node-") {
            OpClock::Node
        } else {
            OpClock::Harness
        },
        error: answer.is_none().then(|| "timed out".to_string()),
        answer,
    }
}

fn entry(
    seq: u64,
    (job, run): (&str, u64),
    holder: u64,
    generation: u64,
    outcome: &str,
    at_ms: i64,
) -> LedgerEntry {
    LedgerEntry {
        seq,
        job: job.to_string(),
        run,
        holder,
        generation: Some(generation),
        outcome: outcome.to_string(),
        at_ms,
    }
}

fn sample(
    node: u64,
    sent_ms: i64,
    term: u64,
    generation: Option<u64>,
    lease: Option<f64>,
) -> Sample {
    Sample {
        node,
        sent_ms,
        received_ms: sent_ms + 5,
        role: if generation.is_some() {
            "leader"
        } else {
            "follower"
        }
        .to_string(),
        term,
        generation,
        lease_remaining_ms: lease,
        clock_ns: None,
    }
}

fn span(start_ms: i64, end_ms: Option<i64>) -> Span {
    Span { start_ms, end_ms }
}

/// A valid fenced run of three nodes. Jobs a and b are due every second from 1000 ms; runs 0
/// to 2 are required (the cutoff is 3500 ms). n1 leads generation 1 and completes runs 0 and
/// 1 (b/1 through client-1, with n1's token), and is killed at 2400 ms; the store restarts
/// over 2600..2700 ms and is read after; n2 leads generation 2 from 2700 ms and completes
/// runs 2, after which client-1's late write at generation 1 is refused as stale. n3 follows,
/// its clock 2% fast.
fn fenced() -> History {
    let g1 = (1, Some(1));
    let g2 = (2, Some(2));
    let ok = |g: u64, seq: Option<u64>| answer("accepted", Some(g), false, seq);
    let ops = vec![
        op("node-1", Call::Begin, ("a", 0), g1, 1000, ok(1, None)),
        op("node-1", Call::Complete, ("a", 0), g1, 1050, ok(1, Some(1))),
        op("node-1", Call::Begin, ("b", 0), g1, 1010, ok(1, None)),
        op("node-1", Call::Complete, ("b", 0), g1, 1060, ok(1, Some(2))),
        op("node-1", Call::Begin, ("a", 1), g1, 2000, ok(1, None)),
        op("node-1", Call::Complete, ("a", 1), g1, 2050, ok(1, Some(3))),
        op("client-1", Call::Begin, ("b", 1), g1, 2010, ok(1, None)),
        op(
            "client-1",
            Call::Complete,
            ("b", 1),
            g1,
            2060,
            ok(1, Some(4)),
        ),
        op("node-1", Call::Begin, ("a", 2), g1, 2390, None),
        op("node-2", Call::Begin, ("a", 2), g2, 3000, ok(2, None)),
        op("node-2", Call::Complete, ("a", 2), g2, 3050, ok(2, Some(5))),
        op("node-2", Call::Begin, ("b", 2), g2, 3010, ok(2, None)),
        op("node-2", Call::Complete, ("b", 2), g2, 3060, ok(2, Some(6))),
        op(
            "client-1",
            Call::Complete,
            ("a", 2),
            g1,
            3100,
            answer("stale", Some(2), true, Some(7)),
        ),
    ];
    let ledger = vec![
        entry(1, ("a", 0), 1, 1, "accepted", 1055),
        entry(2, ("b", 0), 1, 1, "accepted", 1065),
        entry(3, ("a", 1), 1, 1, "accepted", 2055),
        entry(4, ("b", 1), 1, 1, "accepted", 2065),
        entry(5, ("a", 2), 2, 2, "accepted", 3055),
        entry(6, ("b", 2), 2, 2, "accepted", 3065),
        entry(7, ("a", 2), 1, 1, "stale", 3105),
    ];
    let samples = vec![
        sample(1, 500, 1, Some(1), Some(600.0)),
        sample(2, 500, 1, None, None),
        sample(3, 500, 1, None, None),
        sample(1, 1000, 1, Some(1), Some(600.0)),
        sample(1, 1500, 1, Some(1), Some(600.0)),
        sample(2, 1500, 1, None, None),
        sample(1, 2000, 1, Some(1), Some(300.0)),
        sample(3, 2000, 1, None, None),
        sample(2, 2700, 2, Some(2), Some(600.0)),
        sample(3, 2700, 2, None, None),
        sample(2, 3200, 2, Some(2), Some(600.0)),
        sample(2, 3700, 2, Some(2), Some(600.0)),
    ];
    let mut down = BTreeMap::new();
    down.insert("n1".to_string(), vec![span(2400, None)]);
    down.insert("store".to_string(), vec![span(2600, Some(2700))]);
    History {
        mode: Mode::Fenced,
        seed: 7,
        nodes: vec![1, 2, 3],
        max_drift: 0.05,
        ops,
        snapshots: vec![
            Snapshot {
                started_ms: Some(2700),
                taken_ms: 2750,
                why: "restart 1".to_string(),
                entries: ledger[..4].to_vec(),
            },
            Snapshot {
                started_ms: Some(4950),
                taken_ms: 5000,
                why: "final".to_string(),
                entries: ledger,
            },
        ],
        samples,
        faults: vec![
            Fault {
                kind: FaultKind::KillNode,
                targets: vec!["n1".to_string()],
                start_ms: 2400,
                end_ms: None,
                detail: "kill -9".to_string(),
            },
            Fault {
                kind: FaultKind::KillStore,
                targets: vec!["store".to_string()],
                start_ms: 2600,
                end_ms: Some(2700),
                detail: "kill -9, restarted".to_string(),
            },
            Fault {
                kind: FaultKind::ClockRate,
                targets: vec!["n3".to_string()],
                start_ms: 0,
                end_ms: None,
                detail: "rate 1.02".to_string(),
            },
        ],
        down,
        rates: vec![RateSpan {
            node: 3,
            rate: 1.02,
            span: span(0, None),
        }],
        schedule: JobSchedule {
            jobs: vec!["a".to_string(), "b".to_string()],
            start_ms: 1000,
            period_ms: 1000,
        },
        liveness_cutoff_ms: 3500,
        ended_ms: 5000,
    }
}

/// The same run in the control world: a TTL lock, unfenced writes, no generations, and so
/// no stale write either.
fn naive() -> History {
    let mut h = fenced();
    h.mode = Mode::Naive;
    h.ops
        .retain(|op| op.answer.as_ref().is_none_or(|a| a.landed()));
    for op in &mut h.ops {
        op.generation = None;
        if let Some(a) = &mut op.answer {
            a.outcome = "unfenced".to_string();
            a.generation = None;
        }
    }
    for snapshot in &mut h.snapshots {
        snapshot.entries.retain(|e| e.landed());
        for e in &mut snapshot.entries {
            e.generation = None;
            e.outcome = "unfenced".to_string();
        }
    }
    for s in &mut h.samples {
        s.generation = None;
    }
    h
}

fn final_entries(h: &mut History) -> &mut Vec<LedgerEntry> {
    &mut h.snapshots.last_mut().expect("a final snapshot").entries
}

fn by_name<'c>(checks: &'c [Check], name: &str) -> &'c Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .expect("every check is run")
}

/// The names of the checks that reported anything.
fn reporting(checks: &[Check]) -> Vec<&'static str> {
    checks
        .iter()
        .filter(|c| c.violations_total > 0)
        .map(|c| c.name)
        .collect()
}

/// Asserts that `name` is the one check reporting, and returns it.
fn only(history: &History, name: &str) -> Check {
    let checks = check(history);
    assert_eq!(reporting(&checks), vec![name], "{checks:#?}");
    by_name(&checks, name).clone()
}

fn assert_clean(history: &History) -> Vec<Check> {
    let checks = check(history);
    assert_eq!(reporting(&checks), Vec::<&str>::new(), "{checks:#?}");
    checks
}

#[test]
fn a_valid_fenced_history_passes_every_check() {
    let checks = assert_clean(&fenced());
    let names: Vec<&str> = checks.iter().map(|c| c.name).collect();
    assert_eq!(names, NAMES);
    for c in &checks {
        assert!(c.applies, "{}", c.name);
        assert!(c.examined > 0, "{} examined nothing", c.name);
        assert!(c.violations.is_empty() && c.excused == 0, "{c:?}");
        assert!(!c.promise.is_empty());
    }
    // 6 required runs; 6 acknowledged completions; 7 lease claims.
    assert_eq!(by_name(&checks, "due-runs-done").examined, 6);
    assert_eq!(
        by_name(&checks, "acknowledged-completions-durable").examined,
        6
    );
    assert_eq!(by_name(&checks, "one-live-lease").examined, 7);
}

#[test]
fn a_valid_naive_history_passes_and_the_token_checks_do_not_apply() {
    let checks = assert_clean(&naive());
    for c in &checks {
        let token_check = c.name == "tokens-never-go-back" || c.name == "one-holder-per-generation";
        assert_eq!(c.applies, !token_check, "{}", c.name);
        assert_eq!(c.examined > 0, !token_check, "{}", c.name);
    }
}

#[test]
fn the_token_checks_ignore_a_naive_history_that_would_break_them() {
    let mut h = naive();
    // Generations going back, generation 9 with two holders: meaningless without a fence.
    let last = final_entries(&mut h);
    last.push(entry(8, ("c", 0), 1, 9, "unfenced", 3200));
    last.push(entry(9, ("c", 1), 2, 9, "unfenced", 3300));
    last.push(entry(10, ("c", 2), 3, 1, "unfenced", 3400));
    let checks = assert_clean(&h);
    assert!(!by_name(&checks, "tokens-never-go-back").applies);
    assert!(!by_name(&checks, "one-holder-per-generation").applies);
}

#[test]
fn a_naive_run_done_twice_is_found() {
    let mut h = naive();
    h.ops.push(op(
        "node-2",
        Call::Complete,
        ("a", 1),
        (2, None),
        2100,
        answer("unfenced", None, true, Some(8)),
    ));
    let mut twice = entry(8, ("a", 1), 2, 0, "unfenced", 2105);
    twice.generation = None;
    final_entries(&mut h).push(twice);
    let c = only(&h, "no-run-twice");
    // The ledger's two entries; the answer saying it ran again is the same double run.
    assert_eq!(c.violations_total, 1, "{c:#?}");
}

#[test]
fn a_run_landed_twice_in_the_ledger() {
    let mut h = fenced();
    final_entries(&mut h).push(entry(8, ("a", 0), 2, 2, "accepted", 3200));
    let c = only(&h, "no-run-twice");
    assert_eq!(c.violations_total, 1);
    let v = &c.violations[0];
    assert!(v.what.contains("job a run 0 landed twice"), "{}", v.what);
    assert!(
        v.what.contains("seq 1 ") && v.what.contains("seq 8 "),
        "{}",
        v.what
    );
    assert_eq!(v.at_ms, Some(3200));
}

#[test]
fn a_run_landed_twice_is_reported_once_across_snapshots() {
    let mut h = fenced();
    let twice = entry(4, ("a", 0), 1, 1, "accepted", 2065);
    h.snapshots[0].entries[3] = twice.clone();
    final_entries(&mut h)[3] = twice;
    // The store's answer to client-1 claimed b/1 went to seq 4: not the point here.
    h.ops
        .retain(|op| !(op.client == "client-1" && op.job == "b"));
    h.schedule.jobs = vec!["a".to_string()];
    let c = only(&h, "no-run-twice");
    assert_eq!(c.violations_total, 1, "{c:#?}");
    assert!(c.violations[0].what.contains("\"restart 1\""), "{c:#?}");
}

#[test]
fn a_landed_complete_answered_done() {
    let mut h = fenced();
    h.ops.push(op(
        "node-2",
        Call::Complete,
        ("a", 1),
        (2, Some(2)),
        3070,
        answer("accepted", Some(2), true, Some(8)),
    ));
    final_entries(&mut h).push(entry(8, ("a", 1), 2, 2, "accepted", 3075));
    // The ledger shows the double run: reported once, from the ledger.
    let c = only(&h, "no-run-twice");
    assert_eq!(c.violations_total, 1, "{c:#?}");
    assert!(c.violations[0].what.contains("landed twice"), "{c:#?}");
    // A ledger that does not show it (read before the second landed, say): the answer does.
    for snapshot in &mut h.snapshots {
        snapshot.entries.retain(|e| e.seq != 8);
    }
    h.snapshots.pop();
    let mut last = h.snapshots.last().cloned().expect("a snapshot");
    last.why = "final".to_owned();
    last.entries
        .push(entry(8, ("a", 1), 2, 2, "accepted", 3075));
    last.entries
        .retain(|e| !(e.job == "a" && e.run == 1 && e.seq != 8));
    h.snapshots.push(last);
    let checks = check(&h);
    let c = by_name(&checks, "no-run-twice");
    assert_eq!(c.violations_total, 1, "{c:#?}");
    assert!(
        c.violations[0].what.contains("ran a second time") && c.violations[0].at_ms.is_none(),
        "the answer, on a node's clock (not the harness's): {c:#?}"
    );
}

#[test]
fn two_first_completions_of_one_run() {
    let mut h = fenced();
    // Each answered as the first; the store lost one's entry (no seq given here).
    h.ops.push(op(
        "client-2",
        Call::Complete,
        ("b", 2),
        (2, Some(2)),
        3080,
        answer("accepted", Some(2), false, None),
    ));
    let c = only(&h, "no-run-twice");
    assert_eq!(c.violations_total, 1);
    let v = &c.violations[0];
    assert!(
        v.what
            .contains("job b run 2 landed as its first completion twice"),
        "{}",
        v.what
    );
    assert!(
        v.what.contains("node-2") && v.what.contains("client-2"),
        "{}",
        v.what
    );
    assert_eq!(v.at_ms, Some(3090));
}

#[test]
fn a_generation_that_goes_back_in_the_ledger() {
    let mut h = fenced();
    final_entries(&mut h).push(entry(8, ("c", 0), 1, 1, "accepted", 3200));
    let c = only(&h, "tokens-never-go-back");
    assert_eq!(c.violations_total, 1);
    let v = &c.violations[0];
    assert!(v.what.contains("from generation 2 to 1"), "{}", v.what);
    assert!(
        v.what.contains("seq 8 ") && v.what.contains("seq 5 "),
        "{}",
        v.what
    );
}

#[test]
fn a_generation_that_goes_back_in_the_answers_and_the_ledger() {
    let mut h = fenced();
    h.ops.push(op(
        "client-1",
        Call::Complete,
        ("c", 0),
        (1, Some(1)),
        3190,
        answer("accepted", Some(1), false, Some(8)),
    ));
    final_entries(&mut h).push(entry(8, ("c", 0), 1, 1, "accepted", 3195));
    let c = only(&h, "tokens-never-go-back");
    assert_eq!(c.violations_total, 2, "{c:#?}");
    assert!(
        c.violations
            .iter()
            .any(|v| v.what.contains("answers") && v.at_ms == Some(3200))
    );
}

#[test]
fn refused_entries_may_go_back() {
    // The fenced history's seq 7 is a stale generation 1 after generation 2: refused, fine.
    let h = fenced();
    assert_eq!(h.snapshots[1].entries[6].outcome, "stale");
    assert_clean(&h);
}

#[test]
fn generation_5_held_by_nodes_1_and_2() {
    let mut h = fenced();
    h.ops.push(op(
        "node-2",
        Call::Begin,
        ("a", 3),
        (2, Some(5)),
        4000,
        answer("accepted", Some(5), false, None),
    ));
    h.ops.push(op(
        "client-1",
        Call::Begin,
        ("a", 3),
        (1, Some(5)),
        4100,
        answer("accepted", Some(5), false, None),
    ));
    let c = only(&h, "one-holder-per-generation");
    assert_eq!(c.violations_total, 1);
    let v = &c.violations[0];
    assert!(v.what.contains("generation 5 has 2 holders"), "{}", v.what);
    assert!(
        v.what.contains("node 1 (") && v.what.contains("node 2 ("),
        "{}",
        v.what
    );
    assert!(
        v.what.contains("client-1's begin") && v.what.contains("node-2's begin"),
        "{}",
        v.what
    );
    // node-2's time is its own clock's: the second holder is known on the harness's at 4110.
    assert_eq!(v.at_ms, Some(4110));
}

#[test]
fn a_second_holder_seen_only_in_a_nodes_status() {
    let mut h = fenced();
    h.samples.push(sample(3, 3000, 2, Some(2), None));
    let c = only(&h, "one-holder-per-generation");
    assert!(c.violations[0].what.contains("n3's /status"), "{c:#?}");
}

#[test]
fn an_acknowledged_completion_missing_from_the_final_ledger() {
    let mut h = fenced();
    // Run 3 is due after the cutoff: only its durability is at stake.
    h.ops.push(op(
        "node-2",
        Call::Complete,
        ("a", 3),
        (2, Some(2)),
        4050,
        answer("accepted", Some(2), false, Some(8)),
    ));
    let c = only(&h, "acknowledged-completions-durable");
    assert_eq!(c.violations_total, 1);
    let v = &c.violations[0];
    assert!(
        v.what.contains("job a run 3") && v.what.contains("seq 8"),
        "{}",
        v.what
    );
    assert!(
        v.what
            .contains("missing from the ledger read for \"final\""),
        "{}",
        v.what
    );
    assert_eq!(v.at_ms, Some(5000));
}

#[test]
fn an_acknowledged_completion_replaced_at_its_seq_after_a_store_restart() {
    let mut h = fenced();
    // Acknowledged at seq 5 at 2510 ms; the store lost it at its restart and gave seq 5 to
    // n2's completion of a/2 (renumbered here as the store did).
    h.ops.push(op(
        "client-1",
        Call::Complete,
        ("z", 0),
        (1, Some(1)),
        2500,
        answer("accepted", Some(1), false, Some(5)),
    ));
    let c = only(&h, "acknowledged-completions-durable");
    assert_eq!(c.violations_total, 1);
    let v = &c.violations[0];
    assert!(
        v.what
            .contains("missing from the ledger read for \"restart 1\""),
        "{}",
        v.what
    );
    assert!(
        v.what
            .contains("\"final\" at 5000 ms holds seq 5 (job a run 2"),
        "{}",
        v.what
    );
    assert_eq!(v.at_ms, Some(2750));
}

#[test]
fn a_different_entry_at_an_acknowledged_seq() {
    let mut h = fenced();
    // Acknowledged as a/3 (not yet due) at seq 8; the ledger has a/4 there.
    h.ops.push(op(
        "node-2",
        Call::Complete,
        ("a", 3),
        (2, Some(2)),
        3900,
        answer("accepted", Some(2), false, Some(8)),
    ));
    final_entries(&mut h).push(entry(8, ("a", 4), 2, 2, "accepted", 3905));
    let c = only(&h, "acknowledged-completions-durable");
    assert_eq!(c.violations_total, 1, "{c:#?}");
    let what = &c.violations[0].what;
    assert!(
        what.contains("holds seq 8 (job a run 4, holder 2"),
        "{what}"
    );
}

#[test]
fn a_node_clock_time_does_not_place_a_completion_before_a_snapshot() {
    // n2's clock said 100 ms (a slow clock) for a completion acknowledged at seq 8, which the
    // restart snapshot (read at 2750 ms, holding up to seq 4) need not hold.
    let mut h = fenced();
    let mut late = op(
        "node-2",
        Call::Complete,
        ("a", 3),
        (2, Some(2)),
        90,
        answer("accepted", Some(2), false, Some(8)),
    );
    h.ops.push(late.clone());
    final_entries(&mut h).push(entry(8, ("a", 3), 2, 2, "accepted", 3300));
    assert_clean(&h);

    // On the harness's clock, the same time proves the restart snapshot came after it.
    late.client = "client-2".to_string();
    late.clock = OpClock::Harness;
    *h.ops.last_mut().expect("pushed") = late;
    let c = only(&h, "acknowledged-completions-durable");
    let what = &c.violations[0].what;
    assert!(
        what.contains("missing from the ledger read for \"restart 1\""),
        "{what}"
    );
    assert!(!what.contains("\"final\""), "{what}");
}

#[test]
fn a_completion_acknowledged_while_a_ledger_read_went_on_need_not_be_in_it() {
    // The restart snapshot was read from 2700 to 2750 ms; a completion acknowledged at 2720 ms
    // (seq 8, in the final ledger) may have come after the page that would hold it.
    let mut h = fenced();
    let mut during = op(
        "client-2",
        Call::Complete,
        ("a", 3),
        (2, Some(2)),
        2715,
        answer("accepted", Some(2), false, Some(8)),
    );
    during.clock = OpClock::Harness;
    h.ops.push(during.clone());
    final_entries(&mut h).push(entry(8, ("a", 3), 2, 2, "accepted", 2718));
    assert_clean(&h);
    // Acknowledged before the read began, it must be there.
    during.invoke_ms = 2600;
    during.complete_ms = 2605;
    *h.ops.last_mut().expect("pushed") = during;
    let c = only(&h, "acknowledged-completions-durable");
    assert!(
        c.violations[0]
            .what
            .contains("missing from the ledger read for"),
        "{c:#?}"
    );
}

#[test]
fn a_later_seq_in_a_snapshot_demands_the_earlier_ones() {
    // n2's clock runs 7 s ahead: its completion at seq 5 says about 10 s, after a second
    // restart's snapshot at 3500 ms; that snapshot holds seq 6, so it came after seq 5
    // whatever the clock says, and lacks it.
    let mut h = fenced();
    for op in &mut h.ops {
        if op.client == "node-2" {
            op.invoke_ms += 7000;
            op.complete_ms += 7000;
        }
    }
    let ledger = final_entries(&mut h).clone();
    h.snapshots.insert(
        1,
        Snapshot {
            started_ms: Some(3450),
            taken_ms: 3500,
            why: "restart 2".to_string(),
            entries: ledger[..6].iter().filter(|e| e.seq != 5).cloned().collect(),
        },
    );
    h.down
        .get_mut("store")
        .expect("store spans")
        .push(span(3400, Some(3450)));
    let c = only(&h, "acknowledged-completions-durable");
    assert_eq!(c.violations_total, 1);
    let what = &c.violations[0].what;
    assert!(
        what.contains("seq 5") && what.contains("\"restart 2\""),
        "{what}"
    );
    assert!(!what.contains("\"final\""), "{what}");
}

#[test]
fn a_due_run_missing_while_a_majority_was_up() {
    let mut h = fenced();
    final_entries(&mut h).retain(|e| e.seq != 6);
    // n2's completion of b/2 got no answer: nothing was acknowledged.
    for op in &mut h.ops {
        if op.client == "node-2" && op.job == "b" && op.call == Call::Complete {
            op.answer = None;
        }
    }
    let c = only(&h, "due-runs-done");
    assert_eq!((c.examined, c.violations_total), (6, 1));
    let v = &c.violations[0];
    assert!(
        v.what
            .contains("job b run 2, due at 3000 ms while 2 of 3 nodes (n2, n3)"),
        "{}",
        v.what
    );
    assert_eq!(v.at_ms, Some(3000));
}

#[test]
fn a_due_run_is_not_required_while_no_majority_was_up() {
    let mut h = fenced();
    final_entries(&mut h).retain(|e| e.seq != 6);
    for op in &mut h.ops {
        if op.client == "node-2" && op.job == "b" && op.call == Call::Complete {
            op.answer = None;
        }
    }
    // n3 stopped over the due time: n2 alone is no majority.
    h.down
        .insert("n3".to_string(), vec![span(2900, Some(3100))]);
    let checks = assert_clean(&h);
    assert_eq!(by_name(&checks, "due-runs-done").examined, 4);
}

#[test]
fn a_due_run_is_not_required_while_the_store_was_down() {
    let mut h = fenced();
    final_entries(&mut h).retain(|e| e.seq != 6);
    for op in &mut h.ops {
        if op.client == "node-2" && op.job == "b" && op.call == Call::Complete {
            op.answer = None;
        }
    }
    h.down
        .get_mut("store")
        .expect("store spans")
        .push(span(3000, Some(3001)));
    let checks = assert_clean(&h);
    assert_eq!(by_name(&checks, "due-runs-done").examined, 4);
}

#[test]
fn without_a_final_snapshot_durability_and_liveness_cannot_be_judged() {
    let mut h = fenced();
    h.snapshots.pop();
    let checks = check(&h);
    assert_eq!(
        reporting(&checks),
        vec!["acknowledged-completions-durable", "due-runs-done"],
        "{checks:#?}"
    );
    let c = by_name(&checks, "due-runs-done");
    assert!(c.violations[0].what.contains("no final ledger snapshot"));
}

#[test]
fn two_overlapping_leases() {
    let mut h = fenced();
    // n3 claims generation 3's lease while n1 holds generation 1's: [1205, ~1690] ms.
    h.samples.push(sample(3, 1200, 3, Some(3), Some(500.0)));
    let c = only(&h, "one-live-lease");
    assert_eq!((c.violations_total, c.excused), (1, 0));
    let v = &c.violations[0];
    assert!(
        v.what.contains("n1 (generation 1") && v.what.contains("n3 (generation 3"),
        "{}",
        v.what
    );
    assert!(v.what.contains("from 1205.0 ms"), "{}", v.what);
    assert_eq!(v.at_ms, Some(1205));
}

#[test]
fn overlapping_leases_are_excused_while_clocks_were_beyond_the_bound() {
    let mut h = fenced();
    h.rates = vec![
        RateSpan {
            node: 1,
            rate: 0.8,
            span: span(0, None),
        },
        RateSpan {
            node: 3,
            rate: 1.2,
            span: span(0, None),
        },
    ];
    h.samples.push(sample(3, 1200, 3, Some(3), Some(500.0)));
    let checks = assert_clean(&h);
    let c = by_name(&checks, "one-live-lease");
    assert_eq!(c.excused, 1);

    // The same overlap once the clocks are back within the bound is a violation.
    h.rates
        .iter_mut()
        .for_each(|r| r.span = span(0, Some(1000)));
    assert_eq!(only(&h, "one-live-lease").violations_total, 1);
}

#[test]
fn leases_that_touch_do_not_overlap() {
    let mut h = fenced();
    // n1's lease runs to 2000 + 300 = 2300 ms; n2's proven from 2300 ms.
    let mut touching = sample(2, 2290, 2, Some(2), Some(100.0));
    touching.received_ms = 2300;
    h.samples.push(touching.clone());
    let checks = assert_clean(&h);
    assert_eq!(by_name(&checks, "one-live-lease").examined, 8);

    // One millisecond earlier, they overlap.
    touching.received_ms = 2299;
    *h.samples.last_mut().expect("pushed") = touching;
    let c = only(&h, "one-live-lease");
    assert!(
        c.violations[0].what.contains("for 1.0 ms from 2299.0 ms"),
        "{c:#?}"
    );
}

#[test]
fn a_lease_proves_nothing_before_its_answer_arrived() {
    let mut h = fenced();
    // Sent while n1 held its lease, answered after it ran out: not proven live during it.
    let mut slow = sample(2, 2200, 2, Some(2), Some(400.0));
    slow.received_ms = 2350;
    h.samples.push(slow);
    assert_clean(&h);
}

#[test]
fn violations_are_capped_but_all_counted() {
    let mut h = fenced();
    let entries = final_entries(&mut h);
    for i in 0..150 {
        entries.push(entry(8 + i, ("a", 0), 2, 2, "accepted", 4000));
    }
    let c = only(&h, "no-run-twice");
    assert_eq!(c.violations.len(), VIOLATIONS_KEPT);
    assert_eq!(c.violations_total, 150);
}

#[test]
fn a_hundred_thousand_samples_are_swept() {
    let mut h = fenced();
    h.samples.clear();
    // Three nodes taking turns of a second, sampled every 10 ms: 100,000 samples.
    for i in 0..100_000i64 {
        let sent = i * 10;
        let turn = sent / 1000;
        let node = (turn % 3) as u64 + 1;
        let left = (turn + 1) * 1000 - sent - 5;
        h.samples.push(sample(
            node,
            sent,
            turn as u64,
            Some(turn as u64 + 1),
            Some(left as f64),
        ));
    }
    h.rates.clear();
    let checks = check(&h);
    let c = by_name(&checks, "one-live-lease");
    // The last 10 ms of each turn's samples have no time left once answered.
    assert_eq!((c.examined, c.violations_total), (99_000, 0), "{c:#?}");

    // n1 claiming a lease in n2's turn, among them, is found.
    h.samples.push(sample(1, 1500, 0, Some(1), Some(100.0)));
    let c = only(&h, "one-live-lease");
    assert_eq!(c.violations_total, 1, "{c:#?}");
    assert!(
        c.violations[0].what.contains("n1 (generation 1")
            && c.violations[0].what.contains("n2 (generation 2")
    );
}

#[test]
fn checks_print_as_json() {
    let mut h = fenced();
    final_entries(&mut h).push(entry(8, ("a", 0), 2, 2, "accepted", 3200));
    let json = serde_json::to_value(check(&h)).expect("checks serialize");
    let first = &json[0];
    assert_eq!(first["name"], "no-run-twice");
    assert_eq!(first["applies"], true);
    assert_eq!(first["violations_total"], 1);
    assert_eq!(first["excused"], 0);
    assert_eq!(first["violations"][0]["at_ms"], 3200);
    assert!(first["violations"][0]["what"].is_string() && first["promise"].is_string());
}
