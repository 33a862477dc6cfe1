//! The processes under test: `fencekit node` in each node's namespace and `fencekit store` in
//! the store's, each with its data on a small tmpfs of its own (a disk that can fill), started,
//! killed, paused and restarted as the nemesis asks, and restarted when one exits on its own.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::disk::Disk;
use crate::history::Mode;
use crate::http::Http;
use crate::net::Net;

/// The port every node's Raft transport listens on (each in its own namespace).
const RAFT_PORT: u16 = 7100;
/// The port of every node's `/status`.
const STATUS_PORT: u16 = 7200;
/// The store's port.
const STORE_PORT: u16 = 7000;
/// Each member's data disk: enough for a long run's logs, small enough to fill at once.
const DISK_BYTES: u64 = 64 << 20;

/// What every node of a run is started with.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) mode: Mode,
    pub(crate) nodes: u64,
    pub(crate) jobs: Vec<String>,
    pub(crate) period_ms: u64,
    pub(crate) job_ms: u64,
    pub(crate) lock_ttl_ms: u64,
    /// When run 0 of every job is due, in ms since the Unix epoch.
    pub(crate) schedule_start_unix_ms: u64,
    /// The `fencekit` command.
    pub(crate) fencekit: PathBuf,
    /// libfaketime, where the machine has it.
    pub(crate) faketime: Option<PathBuf>,
}

/// One process of the run.
struct Member {
    child: Option<Child>,
    /// SIGSTOPped by the nemesis.
    paused: bool,
    /// The nemesis killed it, and it stays down until restarted.
    held_down: bool,
    /// The clock rate it runs (and is restarted) with.
    rate: f64,
    disk: Disk,
}

/// A member that exited without the nemesis killing it.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Exit {
    pub(crate) member: String,
    pub(crate) status: String,
    /// Killed by a signal nobody sent it, or a panic (exit code 101): a bug. Otherwise it
    /// refused to go on with an error (a node that cannot reach the store at its start, say).
    pub(crate) crashed: bool,
    /// The last lines of its log.
    pub(crate) log_tail: String,
}

/// The running group and store.
pub(crate) struct Cluster<'n> {
    net: &'n Net,
    settings: Settings,
    dir: PathBuf,
    certs: PathBuf,
    members: BTreeMap<String, Member>,
    /// Reads the store (as node 1: the ledger needs a client certificate).
    store_reader: Http,
    /// Members that exited on their own.
    pub(crate) exits: Vec<Exit>,
}

/// The name of node `id`'s member.
pub(crate) fn node_name(id: u64) -> String {
    format!("n{id}")
}

impl<'n> Cluster<'n> {
    /// Makes the certificates, mounts the disks, starts the store and then the nodes.
    pub(crate) fn start(net: &'n Net, settings: Settings, dir: &Path) -> Result<Cluster<'n>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let certs = dir.join("certs");
        let ids: Vec<String> = (1..=settings.nodes).map(|i| i.to_string()).collect();
        let status = Command::new(&settings.fencekit)
            .args(["certs", "init", "--dir"])
            .arg(&certs)
            .args(["--nodes", &ids.join(",")])
            .args(["--store-hosts", &net.addr("store").to_string()])
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("running {}", settings.fencekit.display()))?;
        if !status.success() {
            bail!("fencekit certs init failed ({status})");
        }
        let mut members = BTreeMap::new();
        let names = std::iter::once("store".to_owned()).chain((1..=settings.nodes).map(node_name));
        for name in names {
            let disk = Disk::mount(&dir.join(&name).join("disk"), DISK_BYTES)?;
            members.insert(
                name,
                Member {
                    child: None,
                    paused: false,
                    held_down: false,
                    rate: 1.0,
                    disk,
                },
            );
        }
        let store_reader = Http::https(Duration::from_secs(5), &certs.join("node-1"))?;
        let mut cluster = Cluster {
            net,
            settings,
            dir: dir.to_owned(),
            certs,
            members,
            store_reader,
            exits: Vec::new(),
        };
        cluster.spawn("store")?;
        cluster.wait_store_healthy(Duration::from_secs(20))?;
        for id in 1..=cluster.settings.nodes {
            cluster.spawn(&node_name(id))?;
        }
        Ok(cluster)
    }

    /// The nodes' ids.
    pub(crate) fn ids(&self) -> Vec<u64> {
        (1..=self.settings.nodes).collect()
    }

    /// The store's address, as the nodes reach it.
    pub(crate) fn store_addr(&self) -> String {
        format!("{}:{STORE_PORT}", self.net.addr("store"))
    }

    /// Node `id`'s `/status` address.
    pub(crate) fn status_addr(&self, id: u64) -> String {
        format!("{}:{STATUS_PORT}", self.net.addr(&node_name(id)))
    }

    /// Node `id`'s certificate directory.
    pub(crate) fn node_certs(&self, id: u64) -> PathBuf {
        self.certs.join(format!("node-{id}"))
    }

    /// Where node `id` appends every request its scheduler sends (`--request-log`).
    pub(crate) fn request_log(&self, id: u64) -> PathBuf {
        self.dir.join(node_name(id)).join("requests.jsonl")
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("output.log")
    }

    fn command(&self, name: &str) -> Result<Command> {
        let member = &self.members[name];
        let data = member.disk.dir().join("data");
        let mut command = self.net.command(name, &self.settings.fencekit)?;
        if name == "store" {
            command
                .arg("store")
                .arg("--data")
                .arg(&data)
                .args(["--listen", &self.store_addr()])
                .arg("--tls-dir")
                .arg(self.certs.join("store"));
            if self.settings.mode == Mode::Naive {
                command.arg("--unfenced");
            }
            return Ok(command);
        }
        let id: u64 = name[1..].parse().context("a node's name")?;
        let peers: Vec<String> = self
            .ids()
            .iter()
            .map(|&p| format!("{p}={}:{RAFT_PORT}", self.net.addr(&node_name(p))))
            .collect();
        let s = &self.settings;
        command
            .arg("node")
            .args(["--id", &id.to_string(), "--peers", &peers.join(",")])
            .arg("--data")
            .arg(&data)
            .args(["--status-addr", &self.status_addr(id)])
            .arg("--tls-dir")
            .arg(self.node_certs(id))
            .args(["--store", &self.store_addr()])
            .args(["--mode", mode_arg(s.mode), "--jobs", &s.jobs.join(",")])
            .args(["--period-ms", &s.period_ms.to_string()])
            .args(["--job-ms", &s.job_ms.to_string()])
            .args(["--lock-ttl-ms", &s.lock_ttl_ms.to_string()])
            .args(["--schedule-start-ms", &s.schedule_start_unix_ms.to_string()])
            .arg("--request-log")
            .arg(self.request_log(id));
        if member.rate != 1.0 {
            let Some(lib) = &s.faketime else {
                bail!("a clock rate for {name}, and no libfaketime");
            };
            // libfaketime computes the faked time from the process's start: "+0 x1.02" runs
            // every clock of the process (CLOCK_BOOTTIME, which the lease reads, included)
            // 1.02 times as fast as real time, from the real time at its start.
            command
                .env("LD_PRELOAD", lib)
                .env("FAKETIME", format!("+0 x{}", member.rate));
        }
        Ok(command)
    }

    fn spawn(&mut self, name: &str) -> Result<()> {
        let mut command = self.command(name)?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(name))
            .with_context(|| format!("{name}'s log"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let member = self.member(name)?;
        member.child = Some(child);
        member.paused = false;
        member.held_down = false;
        Ok(())
    }

    fn member(&mut self, name: &str) -> Result<&mut Member> {
        self.members
            .get_mut(name)
            .with_context(|| format!("no member {name}"))
    }

    /// SIGKILLs the member; it stays down until [`Cluster::restart`].
    pub(crate) fn kill(&mut self, name: &str) -> Result<()> {
        let member = self.member(name)?;
        member.held_down = true;
        member.paused = false;
        if let Some(mut child) = member.child.take() {
            // A stopped process dies of SIGKILL too.
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    /// Starts a killed member again.
    pub(crate) fn restart(&mut self, name: &str) -> Result<()> {
        self.kill(name)?;
        self.spawn(name)?;
        if name == "store" {
            self.wait_store_healthy(Duration::from_secs(20))?;
        }
        Ok(())
    }

    /// Restarts node `name` with its clock at `rate`.
    pub(crate) fn restart_at_rate(&mut self, name: &str, rate: f64) -> Result<()> {
        self.member(name)?.rate = rate;
        self.restart(name)
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`).
    pub(crate) fn pause(&mut self, name: &str, stop: bool) -> Result<()> {
        let signal = if stop { libc::SIGSTOP } else { libc::SIGCONT };
        let member = self.member(name)?;
        let Some(child) = &member.child else {
            return Ok(());
        };
        let pid = libc::pid_t::try_from(child.id())?;
        // SAFETY: kill(2) with a pid of our own child, which we have not reaped (it is still
        // in `member.child`), so the pid cannot have been reused.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error()).context("kill(2)");
        }
        member.paused = stop;
        Ok(())
    }

    /// Fills (`true`) or frees (`false`) the member's disk.
    pub(crate) fn fill_disk(&mut self, name: &str, fill: bool) -> Result<()> {
        let member = self.member(name)?;
        if fill {
            member.disk.fill(0)
        } else {
            member.disk.free()
        }
    }

    /// Restarts members that exited on their own (recording why), and those that report a
    /// failure they cannot leave without a restart: a node that failed (its disk filled, say)
    /// answers 503 on `/healthz`, as does a store whose commit failed. That is what an operator's
    /// supervisor does. Returns the members restarted.
    pub(crate) fn supervise(
        &mut self,
        probe: &Http,
        skip: &BTreeSet<String>,
    ) -> Result<Vec<String>> {
        let mut restarted = Vec::new();
        let names: Vec<String> = self.members.keys().cloned().collect();
        for name in names.into_iter().filter(|n| !skip.contains(n)) {
            let exited = {
                let member = self.member(&name)?;
                if member.held_down || member.paused {
                    continue;
                }
                match member.child.as_mut().map(Child::try_wait) {
                    Some(Ok(Some(status))) => Some((
                        status.to_string(),
                        status.signal().is_some() || status.code() == Some(101),
                    )),
                    Some(Ok(None)) => None,
                    Some(Err(e)) => Some((e.to_string(), false)),
                    None => Some(("not running".to_owned(), false)),
                }
            };
            let failed = exited.is_none() && self.reports_failure(&name, probe);
            let restart = exited.is_some() || failed;
            if let Some((status, crashed)) = exited {
                self.exits.push(Exit {
                    member: name.clone(),
                    status,
                    crashed,
                    log_tail: tail(&self.log_path(&name), 6),
                });
            }
            if restart {
                self.restart(&name)?;
                restarted.push(name);
            }
        }
        Ok(restarted)
    }

    fn reports_failure(&self, name: &str, probe: &Http) -> bool {
        let answer = if name == "store" {
            self.store_reader.get(&self.store_addr(), "/healthz")
        } else {
            let id = name[1..].parse().unwrap_or(0);
            probe.get(&self.status_addr(id), "/healthz")
        };
        // No answer at all is a partition or a slow machine, not a failure.
        matches!(answer, Ok((503, _)))
    }

    fn wait_store_healthy(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            match self.store_reader.get(&self.store_addr(), "/healthz") {
                Ok((200, _)) => return Ok(()),
                answer if Instant::now() >= deadline => bail!(
                    "the store did not become healthy within {within:?} ({answer:?}); its log:\n{}",
                    tail(&self.log_path("store"), 20)
                ),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The lowest run of `job` not done yet, by the store's `/first-undone`.
    pub(crate) fn first_undone(&self, job: &str) -> Result<u64> {
        let (code, body) = self
            .store_reader
            .get(&self.store_addr(), &format!("/first-undone?job={job}"))?;
        if code != 200 {
            bail!(
                "the store answered {code} to /first-undone: {}",
                body.trim()
            );
        }
        let answer: serde_json::Value = serde_json::from_str(&body)?;
        answer["run"].as_u64().context("/first-undone's run")
    }

    /// The whole ledger, oldest first, as raw JSON entries.
    pub(crate) fn ledger(&self) -> Result<Vec<serde_json::Value>> {
        let mut entries = Vec::new();
        let mut after = 0u64;
        loop {
            let path = format!("/ledger?after={after}&limit=1000");
            let (code, body) = self.store_reader.get(&self.store_addr(), &path)?;
            if code != 200 {
                bail!("the store answered {code} to {path}: {}", body.trim());
            }
            let mut page: serde_json::Value =
                serde_json::from_str(&body).context("the store's /ledger")?;
            let next = page["next"].as_u64();
            if let Some(items) = page["entries"].as_array_mut() {
                entries.append(items);
            }
            match next {
                Some(next) if next > after => after = next,
                _ => return Ok(entries),
            }
        }
    }

    /// Stops the nodes (and with them their schedulers), leaving the store up.
    pub(crate) fn stop_nodes(&mut self) {
        for (name, member) in &mut self.members {
            if name == "store" {
                continue;
            }
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            member.held_down = true;
        }
    }

    /// Stops every process (SIGCONT first, so that a stopped one can die of SIGTERM... or
    /// SIGKILL, which needs no cooperation).
    pub(crate) fn stop(&mut self) {
        for member in self.members.values_mut() {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Cluster<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

fn mode_arg(mode: Mode) -> &'static str {
    match mode {
        Mode::Fenced => "fenced",
        Mode::Naive => "naive",
    }
}

/// The last `lines` lines of a log file.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
