//! The extra clients: beside each node's own scheduler, a client in that node's namespace takes
//! the token the node's `/status` shows (the `leadership()` of the kernel: the generation it
//! leads with under a live lease) and runs job `orders` through the fence with it, as any
//! service embedding fencekit would. The token may be stale by the time it is used (a status
//! read, then a partition or a pause): the fence must refuse it then. Every request and answer
//! is recorded with its time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::history::{Answer, Call, Mode, Op, OpClock};
use crate::http::Http;
use crate::run_clock::RunClock;

/// The job the extra clients share.
pub(crate) const CLIENT_JOB: &str = "orders";

/// Where one client works.
pub(crate) struct ClientSetup {
    /// The node whose token and certificate it uses.
    pub(crate) node: u64,
    pub(crate) status_addr: String,
    pub(crate) store_addr: String,
    /// The store client, showing the node's certificate.
    pub(crate) store: Http,
    pub(crate) mode: Mode,
    pub(crate) seed: u64,
}

/// Runs one client until `stop`, appending every request to `ops`.
pub(crate) fn run_client(
    setup: &ClientSetup,
    clock: RunClock,
    stop: &AtomicBool,
    ops: &Mutex<Vec<Op>>,
) {
    let status = Http::plain(Duration::from_millis(300));
    let mut rng = ChaCha8Rng::seed_from_u64(setup.seed ^ setup.node);
    let mut run = 0u64;
    let pause = |ms: u64| std::thread::sleep(Duration::from_millis(ms));
    while !stop.load(Ordering::Relaxed) {
        let Some(generation) = token(&status, setup) else {
            pause(20);
            continue;
        };
        let begin = request(setup, clock, ops, Call::Begin, run, generation);
        match begin {
            None => {
                pause(100);
                continue;
            }
            Some(a) if !a.landed() => {
                pause(20);
                continue;
            }
            Some(a) if a.done => {
                run += 1;
                continue;
            }
            Some(_) => {}
        }
        // The work, between the check and the write.
        pause(rng.gen_range(5..40));
        match request(setup, clock, ops, Call::Complete, run, generation) {
            Some(a) if a.landed() => run += 1,
            // Refused or unanswered: the next begin says whether the run is done.
            _ => pause(20),
        }
    }
}

/// The generation node's leadership carries now (`Some(None)` on the naive side, where the
/// right to act is the scheduler's TTL lock and writes carry no token), or `None` when the node
/// may not act.
fn token(status: &Http, setup: &ClientSetup) -> Option<Option<u64>> {
    let (code, body) = status.get(&setup.status_addr, "/status").ok()?;
    if code != 200 {
        return None;
    }
    let status: serde_json::Value = serde_json::from_str(&body).ok()?;
    match setup.mode {
        Mode::Fenced => {
            let generation = status["leading_generation"].as_u64()?;
            let live = status["lease_remaining_ms"]
                .as_f64()
                .is_some_and(|r| r > 0.0);
            live.then_some(Some(generation))
        }
        Mode::Naive => {
            let scheduler = &status["scheduler"];
            let live = scheduler["acting"].as_bool() == Some(true)
                && scheduler["lease_remaining_ms"]
                    .as_f64()
                    .is_some_and(|r| r > 0.0);
            live.then_some(None)
        }
    }
}

/// Sends one request and records it; the answer, if the store decided.
fn request(
    setup: &ClientSetup,
    clock: RunClock,
    ops: &Mutex<Vec<Op>>,
    call: Call,
    run: u64,
    generation: Option<u64>,
) -> Option<Answer> {
    let what = match call {
        Call::Begin => "begin",
        Call::Complete => "complete",
    };
    let mut path = format!("/{what}?job={CLIENT_JOB}&run={run}&holder={}", setup.node);
    if let Some(g) = generation {
        path.push_str(&format!("&generation={g}"));
    }
    let invoke_ms = clock.now_ms();
    let result = decide(&setup.store, &setup.store_addr, &path);
    let complete_ms = clock.now_ms_ceil();
    let (answer, error) = match result {
        Ok(answer) => (Some(answer), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let op = Op {
        client: format!("client-{}", setup.node),
        call,
        job: CLIENT_JOB.to_owned(),
        run,
        holder: setup.node,
        generation,
        invoke_ms,
        complete_ms,
        clock: OpClock::Harness,
        answer: answer.clone(),
        error,
    };
    ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    answer
}

/// 200 and 409 carry the store's decision; anything else is no answer.
fn decide(store: &Http, addr: &str, path: &str) -> Result<Answer> {
    let (code, body) = store.post(addr, path)?;
    if code != 200 && code != 409 {
        anyhow::bail!("the store answered {code}: {}", body.trim());
    }
    Ok(serde_json::from_str(&body)?)
}
