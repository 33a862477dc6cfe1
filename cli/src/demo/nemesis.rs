//! The nemesis: a fixed schedule of faults played against a running cluster, the same for the
//! naive run and the fenced one. It aims at whoever acts as leader when the fault begins, and
//! pauses a leader only mid-job, where a pause does its harm.

use anyhow::{Result, bail};
use serde::Serialize;

use super::cluster::Cluster;
use super::observer::Observer;
use crate::termination::Termination;

/// A kind of fault.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FaultKind {
    /// SIGSTOP the leader mid-job, SIGCONT it after the hold: the zombie leader.
    Pause,
    /// Cut the leader off from the other nodes (the store stays reachable), then heal.
    Partition,
    /// kill -9 the leader, restart it after the hold.
    Kill,
    /// Run a follower's clock fast, within the drift bound the lease allows for.
    Skew,
}

/// One step of the schedule.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Step {
    pub(crate) kind: FaultKind,
    /// How long the fault lasts.
    pub(crate) hold_ms: u64,
    /// The quiet time after it.
    pub(crate) after_ms: u64,
}

impl Step {
    const fn new(kind: FaultKind, hold_ms: u64, after_ms: u64) -> Step {
        Step {
            kind,
            hold_ms,
            after_ms,
        }
    }
}

/// The whole schedule of a run, and the cluster's settings it was written for.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// Before the first fault: an election and a few jobs.
    pub(crate) warmup_ms: u64,
    pub(crate) steps: Vec<Step>,
    /// After the last fault: time for the runs due to be caught up.
    pub(crate) settle_ms: u64,
    pub(crate) period_ms: u64,
    pub(crate) job_ms: u64,
    pub(crate) lock_ttl_ms: u64,
    /// The skewed clock's rate (the lease allows for 5 % drift).
    pub(crate) skew_rate: f64,
}

impl Plan {
    /// About 28 s a run.
    pub(crate) fn standard() -> Plan {
        Plan {
            warmup_ms: 2500,
            steps: vec![
                Step::new(FaultKind::Pause, 2500, 2500),
                Step::new(FaultKind::Partition, 2500, 2500),
                Step::new(FaultKind::Kill, 2000, 2500),
                Step::new(FaultKind::Skew, 2500, 500),
                Step::new(FaultKind::Pause, 2500, 2500),
            ],
            settle_ms: 2500,
            period_ms: 1000,
            job_ms: 300,
            lock_ttl_ms: 1000,
            skew_rate: 1.04,
        }
    }

    /// About 15 s a run: every kind of fault once.
    pub(crate) fn quick() -> Plan {
        Plan {
            warmup_ms: 1500,
            steps: vec![
                Step::new(FaultKind::Pause, 2500, 1500),
                Step::new(FaultKind::Partition, 1500, 1500),
                Step::new(FaultKind::Kill, 1000, 1500),
                Step::new(FaultKind::Skew, 1500, 300),
            ],
            settle_ms: 2000,
            ..Plan::standard()
        }
    }
}

/// A fault as it was played.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct Fault {
    pub(crate) kind: FaultKind,
    pub(crate) node: u64,
    /// When it began and ended, in milliseconds since the run began.
    pub(crate) start_ms: u64,
    pub(crate) end_ms: u64,
    /// The node was acting as leader when the fault began.
    pub(crate) hit_leader: bool,
    /// The fault in words.
    pub(crate) what: String,
}

/// The nemesis's view of its surroundings: whom it hurts, how it sees, and what it reports.
pub(crate) struct Nemesis<'a> {
    pub(crate) cluster: &'a mut Cluster,
    pub(crate) observer: &'a Observer,
    pub(crate) termination: &'a Termination,
    /// Called about every 100 ms with what is going on.
    pub(crate) progress: &'a mut dyn FnMut(&Cluster, &Observer, &str),
}

impl Nemesis<'_> {
    /// Plays `plan` from warm-up to settling; returns the faults played.
    pub(crate) fn play(&mut self, plan: &Plan) -> Result<Vec<Fault>> {
        self.wait(plan.warmup_ms, "warming up: an election, then jobs")?;
        let mut faults = Vec::new();
        for step in &plan.steps {
            let fault = self.fault(step, plan)?;
            self.wait(step.after_ms, "recovering")?;
            faults.push(fault);
        }
        self.wait(plan.settle_ms, "settling: runs due are caught up")?;
        Ok(faults)
    }

    fn fault(&mut self, step: &Step, plan: &Plan) -> Result<Fault> {
        let (node, hit_leader) = match step.kind {
            FaultKind::Pause => self.leader(Some(plan.job_ms / 2))?,
            FaultKind::Partition | FaultKind::Kill => self.leader(None)?,
            FaultKind::Skew => (self.follower(), false),
        };
        let secs = step.hold_ms as f64 / 1e3;
        let what = match step.kind {
            FaultKind::Pause => format!("SIGSTOP node {node} mid-job for {secs:.1} s"),
            FaultKind::Partition => format!("partition node {node} from its peers for {secs:.1} s"),
            FaultKind::Kill => format!("kill -9 node {node}, restart it after {secs:.1} s"),
            FaultKind::Skew => {
                format!(
                    "node {node}'s clock runs at x{} for {secs:.1} s",
                    plan.skew_rate
                )
            }
        };
        let start_ms = self.observer.now_ms();
        match step.kind {
            FaultKind::Pause => self.cluster.pause(node)?,
            FaultKind::Partition => {
                let others: Vec<u64> = self
                    .cluster
                    .ids()
                    .into_iter()
                    .filter(|&id| id != node)
                    .collect();
                self.cluster.partition(node, &others)?;
            }
            FaultKind::Kill => self.cluster.kill(node)?,
            FaultKind::Skew => self.cluster.skew(node, plan.skew_rate)?,
        }
        let held = self.wait(step.hold_ms, &what);
        // Undo the fault even when the wait was interrupted, so that nothing stays stopped.
        let undone = match step.kind {
            FaultKind::Pause => self.cluster.resume(node),
            FaultKind::Partition => self.cluster.heal(),
            FaultKind::Kill => self.cluster.restart(node),
            FaultKind::Skew => self.cluster.skew(node, 1.0),
        };
        held?;
        undone?;
        Ok(Fault {
            kind: step.kind,
            node,
            start_ms,
            end_ms: self.observer.now_ms(),
            hit_leader,
            what,
        })
    }

    /// The node acting as leader, mid-job if `mid_job_before_ms` is given (a run that has
    /// worked less than that); waits up to 3 s for one, then takes node 1.
    fn leader(&mut self, mid_job_before_ms: Option<u64>) -> Result<(u64, bool)> {
        let deadline = self.observer.now_ms() + 3000;
        loop {
            if let Some(acting) = self.observer.acting() {
                let ready = match mid_job_before_ms {
                    None => true,
                    Some(limit) => acting.working.as_ref().is_some_and(|w| w.2 < limit),
                };
                if ready {
                    return Ok((acting.node, true));
                }
            }
            if self.observer.now_ms() > deadline {
                let acting = self.observer.acting();
                return Ok((acting.as_ref().map_or(1, |a| a.node), acting.is_some()));
            }
            self.check()?;
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// A node not acting as leader.
    fn follower(&self) -> u64 {
        let acting = self.observer.acting().map(|a| a.node);
        let ids = self.cluster.ids();
        ids.iter()
            .copied()
            .find(|&id| Some(id) != acting)
            .unwrap_or(ids[0])
    }

    fn check(&mut self) -> Result<()> {
        if self.termination.requested() {
            bail!("interrupted: the demo's processes were stopped and its directories removed");
        }
        self.cluster.check_running()
    }

    /// Waits `ms`, reporting progress, and stops early on Ctrl-C or a process that died.
    fn wait(&mut self, ms: u64, what: &str) -> Result<()> {
        let until = self.observer.now_ms() + ms;
        loop {
            self.check()?;
            (self.progress)(self.cluster, self.observer, what);
            let now = self.observer.now_ms();
            if now >= until {
                return Ok(());
            }
            self.termination
                .wait(std::time::Duration::from_millis((until - now).min(100)));
        }
    }
}
