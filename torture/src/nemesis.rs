//! Plays the schedule against the running processes: kernel packet drops between namespaces,
//! SIGSTOP/SIGCONT, SIGKILL and restart, clock rates through libfaketime, full disks. Faults
//! overlap; a member under one process, clock or disk fault is not given another until it heals.
//! Everything played is recorded for the checker: the faults, when each member was down, the
//! nodes' clock rates, and the ledger as read after each store restart.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cluster::{Cluster, node_name};
use crate::history::{Fault, FaultKind, JobSchedule, LedgerEntry, RateSpan, Snapshot, Span};
use crate::http::Http;
use crate::net::Net;
use crate::observer::Observations;
use crate::plan::Planned;
use crate::run_clock::RunClock;

/// A directed pair of members whose packets are dropped.
type Pair = (String, String);

/// What the nemesis recorded.
#[derive(Default)]
pub(crate) struct Record {
    pub(crate) faults: Vec<Fault>,
    pub(crate) down: BTreeMap<String, Vec<Span>>,
    pub(crate) rates: Vec<RateSpan>,
    pub(crate) snapshots: Vec<Snapshot>,
    /// Faults not played: every candidate target was under another fault.
    pub(crate) skipped: u64,
    /// Restarts the supervisor made (a member that exited, or reported a failure).
    pub(crate) supervisor_restarts: Vec<(i64, String)>,
    /// Things that went wrong in the harness itself (a ledger read that failed, say).
    pub(crate) notes: Vec<String>,
}

/// A fault in force and how to undo it.
enum Effect {
    Blocked(BTreeSet<Pair>),
    Flapping {
        pairs: BTreeSet<Pair>,
        on: bool,
        next_ms: i64,
    },
    Paused(String),
    Killed(String),
    Rate(String),
    DiskFull(String),
    /// A zombie waiting for the leader to be at work on a run (at most until `deadline_ms`).
    Armed {
        deadline_ms: i64,
    },
}

struct Active {
    /// Index into `Record::faults`, once played.
    fault: Option<usize>,
    planned: Planned,
    ends_ms: i64,
    effect: Effect,
}

/// The player.
pub(crate) struct Nemesis<'a, 'n> {
    pub(crate) cluster: &'a mut Cluster<'n>,
    pub(crate) net: &'n Net,
    pub(crate) observations: &'a Observations,
    pub(crate) clock: RunClock,
    pub(crate) stop: &'a AtomicBool,
    pub(crate) record: Record,
    active: Vec<Active>,
    blocked: BTreeSet<Pair>,
    probe: Http,
    next_supervision_ms: i64,
    last_restart: BTreeMap<String, i64>,
}

/// How often exited or failed members are looked for.
const SUPERVISE_EVERY_MS: i64 = 500;
/// The least time between two restarts of one member by the supervisor.
const RESTART_BACKOFF_MS: i64 = 2_000;

impl<'a, 'n> Nemesis<'a, 'n> {
    pub(crate) fn new(
        cluster: &'a mut Cluster<'n>,
        net: &'n Net,
        observations: &'a Observations,
        clock: RunClock,
        stop: &'a AtomicBool,
    ) -> Nemesis<'a, 'n> {
        Nemesis {
            cluster,
            net,
            observations,
            clock,
            stop,
            record: Record::default(),
            active: Vec::new(),
            blocked: BTreeSet::new(),
            probe: Http::plain(Duration::from_millis(300)),
            next_supervision_ms: 0,
            last_restart: BTreeMap::new(),
        }
    }

    /// Waits `ms`, supervising; false when the run was interrupted.
    pub(crate) fn idle(&mut self, ms: i64) -> Result<bool> {
        let until = self.clock.now_ms() + ms;
        while self.clock.now_ms() < until {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            self.supervise()?;
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(true)
    }

    /// After the faults: waits until the schedulers have caught up with every run due `lag_ms`
    /// ago or earlier, for at most `within_ms` (a long run's combined faults can leave them a
    /// minute behind, and runs are done one after another). False when interrupted.
    pub(crate) fn catch_up(
        &mut self,
        schedule: &JobSchedule,
        lag_ms: i64,
        within_ms: i64,
    ) -> Result<bool> {
        let until = self.clock.now_ms() + within_ms;
        while self.clock.now_ms() < until {
            let due_by = self.clock.now_ms() - lag_ms - schedule.start_ms;
            let wanted = u64::try_from(due_by.max(0) / schedule.period_ms.max(1))? + 1;
            let caught_up = schedule.jobs.iter().all(|job| {
                self.cluster
                    .first_undone(job)
                    .is_ok_and(|run| run >= wanted)
            });
            if caught_up {
                return Ok(true);
            }
            if !self.idle(500)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Plays `plan` from `start_ms` (run time), then heals everything.
    pub(crate) fn play(&mut self, plan: &[Planned], start_ms: i64) -> Result<()> {
        let mut next = 0;
        let end_ms = plan
            .iter()
            .map(|p| start_ms + p.at_ms + p.hold_ms)
            .max()
            .unwrap_or(start_ms);
        while self.clock.now_ms() < end_ms || !self.active.is_empty() {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let now = self.clock.now_ms();
            while next < plan.len() && start_ms + plan[next].at_ms <= now {
                self.begin(plan[next].clone(), now)?;
                next += 1;
            }
            self.tick()?;
            std::thread::sleep(Duration::from_millis(10));
        }
        self.heal_all()
    }

    /// Ends every fault still in force.
    pub(crate) fn heal_all(&mut self) -> Result<()> {
        while let Some(active) = self.active.pop() {
            self.end(active)?;
        }
        self.apply_partitions()
    }

    fn tick(&mut self) -> Result<()> {
        let now = self.clock.now_ms();
        let mut i = 0;
        while i < self.active.len() {
            if now >= self.active[i].ends_ms {
                let active = self.active.remove(i);
                self.end(active)?;
                continue;
            }
            let planned_pick = self.active[i].planned.pick;
            match &mut self.active[i].effect {
                Effect::Flapping { on, next_ms, .. } if now >= *next_ms => {
                    *on = !*on;
                    *next_ms = now + 500 + i64::try_from(planned_pick % 1_000)?;
                }
                Effect::Armed { deadline_ms } => {
                    let deadline = *deadline_ms;
                    if !self.fire_zombie(i, now, deadline)? && now >= deadline {
                        // No leader to make a zombie of.
                        self.active.remove(i);
                        self.record.skipped += 1;
                        continue;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        self.apply_partitions()?;
        self.supervise()
    }

    /// Pauses the leader at work on a run (or, past the deadline, the acting leader): true if
    /// it did.
    fn fire_zombie(&mut self, i: usize, now: i64, deadline: i64) -> Result<bool> {
        let target = self.observations.working(now).or_else(|| {
            if now >= deadline {
                self.observations.acting(now)
            } else {
                None
            }
        });
        let Some(name) = target.map(node_name).filter(|n| !self.busy(n)) else {
            return Ok(false);
        };
        self.cluster.pause(&name, true)?;
        self.open_down(&name, now);
        let fault = self.push_fault(FaultKind::Zombie, vec![name.clone()], "SIGSTOP mid-run");
        let active = &mut self.active[i];
        active.effect = Effect::Paused(name);
        active.ends_ms = now + active.planned.hold_ms;
        active.fault = Some(fault);
        Ok(true)
    }

    fn nodes(&self) -> Vec<String> {
        self.cluster.ids().into_iter().map(node_name).collect()
    }

    /// The acting leader, else a node chosen by `pick`.
    fn leader_or(&self, pick: u64) -> String {
        let now = self.clock.now_ms();
        match self.observations.acting(now) {
            Some(id) => node_name(id),
            None => choose(&self.nodes(), pick),
        }
    }

    /// A member under a process, clock or disk fault.
    fn busy(&self, name: &str) -> bool {
        self.active.iter().any(|a| match &a.effect {
            Effect::Paused(m) | Effect::Killed(m) | Effect::Rate(m) | Effect::DiskFull(m) => {
                m == name
            }
            _ => false,
        })
    }

    fn free_member(&self, candidates: Vec<String>, pick: u64) -> Option<String> {
        let free: Vec<String> = candidates.into_iter().filter(|m| !self.busy(m)).collect();
        (!free.is_empty()).then(|| choose(&free, pick))
    }

    fn begin(&mut self, planned: Planned, now: i64) -> Result<()> {
        use FaultKind as K;
        let pick = planned.pick;
        let nodes = self.nodes();
        let mut all = nodes.clone();
        all.push("store".to_owned());
        let (effect, targets, detail) = match planned.kind {
            K::PartitionSymmetric => {
                let (a, b) = split(&all, pick);
                let detail = format!("{} | {}", a.join(","), b.join(","));
                (Effect::Blocked(both_ways(&a, &b)), all.clone(), detail)
            }
            K::PartitionOneWay => {
                let from = choose(&nodes, pick);
                let to: Vec<String> = nodes.iter().filter(|n| **n != from).cloned().collect();
                let detail = format!("{from} -> {} dropped", to.join(","));
                let pairs = to.iter().map(|t| (from.clone(), t.clone())).collect();
                (Effect::Blocked(pairs), vec![from], detail)
            }
            K::PartitionBridge => {
                let bridge = choose(&nodes, pick);
                let rest: Vec<String> = nodes.iter().filter(|n| **n != bridge).cloned().collect();
                let (a, b) = split(&rest, pick / 7);
                let detail = format!("{} | {} | {} bridges", a.join(","), b.join(","), bridge);
                (Effect::Blocked(both_ways(&a, &b)), nodes.clone(), detail)
            }
            K::PartitionLeader => {
                let leader = self.leader_or(pick);
                let rest: Vec<String> = nodes.iter().filter(|n| **n != leader).cloned().collect();
                let detail = format!(
                    "{leader} cut from {}; the store still reachable",
                    rest.join(",")
                );
                let pairs = both_ways(std::slice::from_ref(&leader), &rest);
                (Effect::Blocked(pairs), vec![leader], detail)
            }
            K::PartitionFlapping => {
                let (a, b) = split(&nodes, pick);
                let detail = format!("{} | {}, on and off", a.join(","), b.join(","));
                let effect = Effect::Flapping {
                    pairs: both_ways(&a, &b),
                    on: true,
                    next_ms: now + 700,
                };
                (effect, nodes.clone(), detail)
            }
            K::PartitionStore => {
                let node = if pick.is_multiple_of(2) {
                    self.leader_or(pick / 2)
                } else {
                    choose(&nodes, pick / 2)
                };
                let pairs = both_ways(std::slice::from_ref(&node), &["store".to_owned()]);
                let detail = format!("{node} cut from the store");
                (Effect::Blocked(pairs), vec![node], detail)
            }
            K::Zombie => {
                let effect = Effect::Armed {
                    deadline_ms: now + 3_000,
                };
                // Recorded when it fires.
                self.active.push(Active {
                    fault: None,
                    ends_ms: i64::MAX,
                    planned,
                    effect,
                });
                return Ok(());
            }
            K::PauseNode | K::PauseStore | K::KillNode | K::KillStore | K::ClockRate => {
                let candidates = match planned.kind {
                    K::PauseStore | K::KillStore => vec!["store".to_owned()],
                    K::KillNode if pick.is_multiple_of(2) => vec![self.leader_or(pick / 2)],
                    _ => nodes.clone(),
                };
                let Some(target) = self.free_member(candidates, pick / 2) else {
                    self.record.skipped += 1;
                    return Ok(());
                };
                let (effect, detail) = match planned.kind {
                    K::PauseNode | K::PauseStore => {
                        self.cluster.pause(&target, true)?;
                        self.open_down(&target, now);
                        (Effect::Paused(target.clone()), "SIGSTOP".to_owned())
                    }
                    K::ClockRate => {
                        self.open_down(&target, now);
                        self.cluster.restart_at_rate(&target, planned.rate)?;
                        let restarted = self.clock.now_ms();
                        self.close_down(&target, restarted);
                        self.record.rates.push(RateSpan {
                            node: target[1..].parse().context("a node's name")?,
                            rate: planned.rate,
                            span: Span {
                                start_ms: restarted,
                                end_ms: None,
                            },
                        });
                        let detail = format!("restarted at {}× real time", planned.rate);
                        (Effect::Rate(target.clone()), detail)
                    }
                    _ => {
                        self.cluster.kill(&target)?;
                        self.open_down(&target, now);
                        (Effect::Killed(target.clone()), "SIGKILL".to_owned())
                    }
                };
                (effect, vec![target], detail)
            }
            K::DiskFullNode | K::DiskFullStore => {
                let candidates = if planned.kind == K::DiskFullStore {
                    vec!["store".to_owned()]
                } else {
                    nodes.clone()
                };
                let Some(target) = self.free_member(candidates, pick) else {
                    self.record.skipped += 1;
                    return Ok(());
                };
                self.cluster.fill_disk(&target, true)?;
                (
                    Effect::DiskFull(target.clone()),
                    vec![target],
                    "tmpfs full".to_owned(),
                )
            }
        };
        let fault = self.push_fault(planned.kind, targets, &detail);
        self.active.push(Active {
            fault: Some(fault),
            ends_ms: now + planned.hold_ms,
            planned,
            effect,
        });
        Ok(())
    }

    fn push_fault(&mut self, kind: FaultKind, targets: Vec<String>, detail: &str) -> usize {
        self.record.faults.push(Fault {
            kind,
            targets,
            start_ms: self.clock.now_ms(),
            end_ms: None,
            detail: detail.to_owned(),
        });
        self.record.faults.len() - 1
    }

    fn end(&mut self, active: Active) -> Result<()> {
        match &active.effect {
            Effect::Blocked(_) | Effect::Flapping { .. } | Effect::Armed { .. } => {}
            Effect::Paused(name) => {
                self.cluster.pause(name, false)?;
                self.close_down(name, self.clock.now_ms());
            }
            Effect::Killed(name) => {
                self.cluster.restart(name)?;
                self.close_down(name, self.clock.now_ms());
                if name == "store" {
                    self.snapshot("after a restart")?;
                }
            }
            Effect::Rate(name) => {
                let now = self.clock.now_ms();
                self.open_down(name, now);
                self.cluster.restart_at_rate(name, 1.0)?;
                let restarted = self.clock.now_ms();
                self.close_down(name, restarted);
                let node: u64 = name[1..].parse().context("a node's name")?;
                if let Some(rate) = self
                    .record
                    .rates
                    .iter_mut()
                    .rev()
                    .find(|r| r.node == node && r.span.end_ms.is_none())
                {
                    rate.span.end_ms = Some(now);
                }
            }
            Effect::DiskFull(name) => self.cluster.fill_disk(name, false)?,
        }
        if let Some(fault) = active.fault {
            self.record.faults[fault].end_ms = Some(self.clock.now_ms());
        }
        Ok(())
    }

    /// Drops what the partitions in force say, when that changed.
    fn apply_partitions(&mut self) -> Result<()> {
        let mut blocked = BTreeSet::new();
        for active in &self.active {
            match &active.effect {
                Effect::Blocked(pairs)
                | Effect::Flapping {
                    pairs, on: true, ..
                } => {
                    blocked.extend(pairs.iter().cloned());
                }
                _ => {}
            }
        }
        if blocked != self.blocked {
            self.net.set_blocked(&blocked)?;
            self.blocked = blocked;
        }
        Ok(())
    }

    /// Restarts members that exited or failed (not those a fault holds down or fills).
    fn supervise(&mut self) -> Result<()> {
        let now = self.clock.now_ms();
        if now < self.next_supervision_ms {
            return Ok(());
        }
        self.next_supervision_ms = now + SUPERVISE_EVERY_MS;
        let skip: BTreeSet<String> = self
            .active
            .iter()
            .filter_map(|a| match &a.effect {
                Effect::DiskFull(m) => Some(m.clone()),
                _ => None,
            })
            .chain(
                self.last_restart
                    .iter()
                    .filter(|(_, at)| now - **at < RESTART_BACKOFF_MS)
                    .map(|(m, _)| m.clone()),
            )
            .collect();
        let restarted = self.cluster.supervise(&self.probe, &skip)?;
        for name in restarted {
            let at = self.clock.now_ms();
            self.last_restart.insert(name.clone(), at);
            self.record.supervisor_restarts.push((at, name.clone()));
            if name == "store" {
                self.snapshot("after a restart by the supervisor")?;
            }
        }
        Ok(())
    }

    fn open_down(&mut self, name: &str, at: i64) {
        self.record
            .down
            .entry(name.to_owned())
            .or_default()
            .push(Span {
                start_ms: at,
                end_ms: None,
            });
    }

    fn close_down(&mut self, name: &str, at: i64) {
        if let Some(span) = self
            .record
            .down
            .get_mut(name)
            .and_then(|spans| spans.last_mut())
            .filter(|s| s.end_ms.is_none())
        {
            span.end_ms = Some(at);
        }
    }

    /// Reads the whole ledger into the record.
    pub(crate) fn snapshot(&mut self, why: &str) -> Result<()> {
        match read_snapshot(self.cluster, self.clock, why) {
            Ok(snapshot) => self.record.snapshots.push(snapshot),
            Err(e) => self
                .record
                .notes
                .push(format!("the ledger could not be read {why}: {e:#}")),
        }
        Ok(())
    }
}

/// The whole ledger, as read now.
pub(crate) fn read_snapshot(cluster: &Cluster<'_>, clock: RunClock, why: &str) -> Result<Snapshot> {
    let started_ms = clock.now_ms();
    let raw = cluster.ledger()?;
    let entries = raw
        .iter()
        .map(|e| ledger_entry(e, clock))
        .collect::<Result<Vec<_>>>()?;
    Ok(Snapshot {
        started_ms: Some(started_ms),
        taken_ms: clock.now_ms_ceil(),
        why: why.to_owned(),
        entries,
    })
}

/// One `/ledger` entry.
fn ledger_entry(e: &serde_json::Value, clock: RunClock) -> Result<LedgerEntry> {
    let number = |key: &str| e[key].as_u64().with_context(|| format!("{key} in {e}"));
    Ok(LedgerEntry {
        seq: number("seq")?,
        job: e["job"].as_str().context("job")?.to_owned(),
        run: number("run")?,
        holder: number("holder")?,
        generation: e["generation"].as_u64(),
        outcome: e["outcome"].as_str().context("outcome")?.to_owned(),
        at_ms: clock.since_began(number("at_ms")?),
    })
}

fn choose(from: &[String], pick: u64) -> String {
    let i = usize::try_from(pick % u64::try_from(from.len().max(1)).unwrap_or(1)).unwrap_or(0);
    from.get(i).cloned().unwrap_or_default()
}

/// Two non-empty sides, chosen by `pick`.
fn split(members: &[String], pick: u64) -> (Vec<String>, Vec<String>) {
    let n = members.len();
    let mut order: Vec<usize> = (0..n).collect();
    // A rotation and a cut, both from `pick`: every split of a small group is reachable.
    let rotate = usize::try_from(pick % n as u64).unwrap_or(0);
    order.rotate_left(rotate);
    let cut = 1 + usize::try_from((pick / 13) % (n as u64 - 1).max(1)).unwrap_or(0);
    let a = order[..cut].iter().map(|&i| members[i].clone()).collect();
    let b = order[cut..].iter().map(|&i| members[i].clone()).collect();
    (a, b)
}

fn both_ways(a: &[String], b: &[String]) -> BTreeSet<Pair> {
    let mut pairs = BTreeSet::new();
    for x in a {
        for y in b {
            pairs.insert((x.clone(), y.clone()));
            pairs.insert((y.clone(), x.clone()));
        }
    }
    pairs
}
