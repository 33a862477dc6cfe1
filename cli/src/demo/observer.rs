//! Watches every node of a run: one thread per node asks its `/status` every 25 ms and keeps
//! what it says (who acts, with which generation, how long its lease or lock has left, which
//! job it is working on). A node that does not answer (paused, killed) leaves a gap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::store_api::unix_ms;

/// One answer of one node.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct Sample {
    /// Milliseconds since the run began.
    pub(crate) at_ms: u64,
    pub(crate) node: u64,
    pub(crate) term: u64,
    pub(crate) role: String,
    /// The node believed it may run jobs.
    pub(crate) acting: bool,
    pub(crate) generation: Option<u64>,
    pub(crate) lease_remaining_ms: Option<u64>,
    /// The run it was working on, and for how long.
    #[serde(skip)]
    pub(crate) working: Option<(String, u64, u64)>,
}

#[derive(Deserialize)]
struct Reported {
    id: u64,
    term: u64,
    role: String,
    scheduler: SchedulerReported,
}

#[derive(Deserialize)]
struct SchedulerReported {
    acting: bool,
    generation: Option<u64>,
    lease_remaining_ms: Option<u64>,
    job: Option<WorkingReported>,
}

#[derive(Deserialize)]
struct WorkingReported {
    job: String,
    run: u64,
    elapsed_ms: u64,
}

/// The watchers of one run.
pub(crate) struct Observer {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    began_ms: u64,
}

const EVERY: Duration = Duration::from_millis(25);
/// A sample older than this says nothing about now.
const FRESH_MS: u64 = 150;

impl Observer {
    /// Starts watching the nodes at `addrs`; times count from `began_ms` (Unix ms).
    pub(crate) fn start(addrs: Vec<String>, began_ms: u64) -> Observer {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = addrs
            .into_iter()
            .map(|addr| {
                let samples = samples.clone();
                let stop = stop.clone();
                std::thread::spawn(move || watch(&addr, began_ms, &samples, &stop))
            })
            .collect();
        Observer {
            samples,
            stop,
            threads,
            began_ms,
        }
    }

    /// Milliseconds since the run began.
    pub(crate) fn now_ms(&self) -> u64 {
        unix_ms().saturating_sub(self.began_ms)
    }

    /// Each node's latest sample, if it is fresh.
    pub(crate) fn latest(&self) -> Vec<Sample> {
        let now = self.now_ms();
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let mut latest: Vec<Sample> = Vec::new();
        for sample in samples.iter().rev() {
            if now.saturating_sub(sample.at_ms) > FRESH_MS {
                break;
            }
            if !latest.iter().any(|s| s.node == sample.node) {
                latest.push(sample.clone());
            }
        }
        latest
    }

    /// The node acting now, if exactly one is (by fresh samples).
    pub(crate) fn acting(&self) -> Option<Sample> {
        let acting: Vec<Sample> = self.latest().into_iter().filter(|s| s.acting).collect();
        match acting.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    }

    /// Stops watching and returns every sample, oldest first.
    pub(crate) fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let mut samples =
            std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()));
        samples.sort_by_key(|s| (s.at_ms, s.node));
        samples
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn watch(addr: &str, began_ms: u64, samples: &Mutex<Vec<Sample>>, stop: &AtomicBool) {
    let client = Client::new(Duration::from_millis(100));
    while !stop.load(Ordering::Relaxed) {
        let asked_ms = unix_ms();
        let answer = client
            .get(addr, "/status")
            .ok()
            .and_then(|(code, body)| (code == 200).then_some(body))
            .and_then(|body| serde_json::from_str::<Reported>(&body).ok());
        if let Some(r) = answer {
            let sample = Sample {
                at_ms: asked_ms.saturating_sub(began_ms),
                node: r.id,
                term: r.term,
                role: r.role,
                acting: r.scheduler.acting,
                generation: r.scheduler.generation,
                lease_remaining_ms: r.scheduler.lease_remaining_ms,
                working: r.scheduler.job.map(|j| (j.job, j.run, j.elapsed_ms)),
            };
            samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(sample);
        }
        std::thread::sleep(EVERY);
    }
}
