//! Samples every node's `/status` many times a second, from the harness's own namespace (no
//! partition cuts it off): the lease check reads the samples, and the nemesis asks who leads and
//! whether the leader is at work on a run (when a pause makes a zombie).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::history::{Mode, Sample};
use crate::http::Http;
use crate::run_clock::RunClock;

/// How often each node is asked. The lease is 180 ms: a sample every 25 ms sees it.
const EVERY: Duration = Duration::from_millis(25);
/// A node that does not answer within this is not waited for.
const TIMEOUT: Duration = Duration::from_millis(300);

/// What a node said last.
#[derive(Clone, Debug)]
struct Latest {
    received_ms: i64,
    /// It believed it held the right to act.
    acting: bool,
    /// Its scheduler was at work on a run.
    working: bool,
    generation: Option<u64>,
}

/// The samples, and the latest answer of each node.
#[derive(Default)]
pub(crate) struct Observations {
    samples: Mutex<Vec<Sample>>,
    latest: Mutex<BTreeMap<u64, Latest>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Observations {
    /// Samples node `id` at `addr` until `stop`; run on a thread of its own per node, so that
    /// a paused node holds up no other's samples.
    pub(crate) fn sample(
        &self,
        id: u64,
        addr: &str,
        mode: Mode,
        clock: RunClock,
        stop: &AtomicBool,
    ) {
        let http = Http::plain(TIMEOUT);
        while !stop.load(Ordering::Relaxed) {
            let sent_ms = clock.now_ms();
            let answer = http.get(addr, "/status");
            let received_ms = clock.now_ms_ceil();
            if let Ok((200, body)) = answer
                && let Ok(status) = serde_json::from_str::<serde_json::Value>(&body)
            {
                let sample = parse(id, sent_ms, received_ms, mode, &status);
                let latest = Latest {
                    received_ms,
                    acting: sample.lease_remaining_ms.is_some_and(|r| r > 0.0),
                    working: !status["scheduler"]["job"].is_null(),
                    generation: sample.generation,
                };
                lock(&self.latest).insert(id, latest);
                lock(&self.samples).push(sample);
            }
            std::thread::sleep(EVERY);
        }
    }

    /// The node acting as leader now (by answers at most 300 ms old): the one with the highest
    /// generation if several believe they act.
    pub(crate) fn acting(&self, now_ms: i64) -> Option<u64> {
        self.fresh(now_ms, |l| l.acting)
    }

    /// The acting node, if it is at work on a run now.
    pub(crate) fn working(&self, now_ms: i64) -> Option<u64> {
        self.fresh(now_ms, |l| l.acting && l.working)
    }

    fn fresh(&self, now_ms: i64, wanted: impl Fn(&Latest) -> bool) -> Option<u64> {
        lock(&self.latest)
            .iter()
            .filter(|(_, l)| now_ms - l.received_ms <= 300 && wanted(l))
            .max_by_key(|(_, l)| (l.generation, l.received_ms))
            .map(|(&id, _)| id)
    }

    /// Every sample taken, in the order they were received.
    pub(crate) fn into_samples(self) -> Vec<Sample> {
        self.samples.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

/// One `/status` answer as a sample: fencekit's lease on the fenced side, the scheduler's TTL
/// lock on the naive side (where the Raft group still runs but decides nothing).
fn parse(
    node: u64,
    sent_ms: i64,
    received_ms: i64,
    mode: Mode,
    status: &serde_json::Value,
) -> Sample {
    let (generation, lease_remaining_ms) = match mode {
        Mode::Fenced => {
            let generation = status["leading_generation"].as_u64();
            let remaining = generation.and(status["lease_remaining_ms"].as_f64());
            (generation, remaining)
        }
        Mode::Naive => {
            let scheduler = &status["scheduler"];
            let remaining = scheduler["lease_remaining_ms"]
                .as_f64()
                .filter(|_| scheduler["acting"].as_bool() == Some(true));
            (None, remaining)
        }
    };
    Sample {
        node,
        sent_ms,
        received_ms,
        role: status["role"].as_str().unwrap_or("unknown").to_owned(),
        term: status["term"].as_u64().unwrap_or(0),
        generation,
        lease_remaining_ms,
        clock_ns: status["at_ns"].as_u64(),
    }
}
