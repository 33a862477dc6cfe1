//! A run's private network: network namespaces joined by a bridge, partitions played as
//! nftables drop rules inside them.
//!
//! Layout: a hub namespace holds bridge `br0`; each member (and "ctl", the harness's own seat)
//! has a namespace with `lo` and `eth0`, the latter a veth whose peer is a port of the bridge.
//! Addresses (10.77.0.0/24) live only inside the run's namespaces: the root namespace gains no
//! interface, address or rule, so the host's own traffic is never touched. IPv6 address
//! generation is off on every veth and on the bridge: no link-local addresses, no duplicate
//! address detection, no IPv6 chatter on the bridge.
//!
//! Namespaces are named `fkt<pid>.<n>-<member>` (the hub `fkt<pid>.<n>.hub`), `<n>` counting
//! the `Net`s of this process, so parallel tests and parallel runs never collide, and a run
//! killed with -9 leaves namespaces whose pid is dead: the next `create` removes them.

mod firewall;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use anyhow::{Context, Result, bail};

/// Where `ip netns` keeps a named namespace's file.
const NETNS_DIR: &str = "/run/netns";
/// Every namespace of the harness starts with this, then the creating process's pid.
const PREFIX: &str = "fkt";
/// The harness's own member name.
const CTL: &str = "ctl";

/// Numbers this process's `Net`s (and probes), for unique namespace names.
static NEXT: AtomicU64 = AtomicU64::new(0);
/// Namespaces this process made and has not deleted yet, for [`teardown_all`].
static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// One member's seat in the network.
struct Seat {
    /// The namespace's name (its file is `/run/netns/<ns>`).
    ns: String,
    addr: Ipv4Addr,
}

/// A run's private network: a hub namespace holding a bridge, one namespace per member, veth
/// pairs onto the bridge, 10.77.0.0/24 addresses only inside them. Dropping it tears everything
/// down.
pub(crate) struct Net {
    hub: String,
    /// By member name, "ctl" included.
    seats: BTreeMap<String, Seat>,
    /// The ruleset last applied in each member's namespace; a member missing here is in an
    /// unknown state (a failed apply) and gets its ruleset again on the next `set_blocked`.
    applied: Mutex<BTreeMap<String, String>>,
}

impl Net {
    /// Says why namespaces cannot be made here (not root, no `ip`, no nft, a test namespace
    /// refused): the run then skips with this message. Probes once per process.
    pub(crate) fn unavailable() -> Option<String> {
        static ANSWER: OnceLock<Option<String>> = OnceLock::new();
        ANSWER.get_or_init(probe).clone()
    }

    /// Creates the hub, a "ctl" namespace for the harness itself and one namespace per member,
    /// each with an address on the bridge; removes first the leftovers of runs whose process
    /// is dead.
    pub(crate) fn create(members: &[&str]) -> Result<Net> {
        let mut names = vec![CTL];
        for &m in members {
            if m.is_empty()
                || m.len() > 32
                || !m
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                bail!("member name {m:?}: want 1 to 32 of [A-Za-z0-9_-]");
            }
            if names.contains(&m) {
                bail!("member name {m:?} given twice (or \"ctl\", which is the harness's)");
            }
            names.push(m);
        }
        // .1 to .254 of the /24.
        if names.len() > 254 {
            bail!("{} members: at most 253", members.len());
        }
        remove_leftovers();

        let run = format!(
            "{PREFIX}{}.{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut net = Net {
            hub: format!("{run}.hub"),
            seats: BTreeMap::new(),
            applied: Mutex::new(BTreeMap::new()),
        };
        for (i, name) in (1u8..).zip(&names) {
            let seat = Seat {
                ns: format!("{run}-{name}"),
                addr: Ipv4Addr::new(10, 77, 0, i),
            };
            net.seats.insert(name.to_string(), seat);
        }
        // From here on, a failure drops `net`, which deletes whatever was made.
        net.build(&names)
            .with_context(|| format!("building the run's network {run}"))?;
        Ok(net)
    }

    fn build(&mut self, names: &[&str]) -> Result<()> {
        let mut all = vec![self.hub.clone()];
        all.extend(names.iter().map(|n| self.seats[*n].ns.clone()));
        for ns in &all {
            // Registered before it exists: teardown of a name that does not exist is a no-op.
            live().insert(ns.clone());
            ip(None, &["netns", "add", ns])?;
        }

        let mut hub = vec![
            "link set lo up".to_string(),
            "link add br0 type bridge".to_string(),
            "link set br0 addrgenmode none".to_string(),
            "link set br0 up".to_string(),
        ];
        for (i, name) in names.iter().enumerate() {
            let ns = &self.seats[*name].ns;
            // The hub side of veth i is `v<i>`; the member side is created in the member's
            // namespace directly as eth0, so it never appears in the root namespace.
            hub.push(format!("link add v{i} type veth peer name eth0 netns {ns}"));
            hub.push(format!("link set v{i} addrgenmode none"));
            hub.push(format!("link set v{i} master br0"));
            hub.push(format!("link set v{i} up"));
        }
        ip_batch(&self.hub, &hub)?;

        for name in names {
            let seat = &self.seats[*name];
            ip_batch(
                &seat.ns,
                &[
                    "link set lo up".to_string(),
                    "link set eth0 addrgenmode none".to_string(),
                    format!("addr add {}/24 dev eth0", seat.addr),
                    "link set eth0 up".to_string(),
                ],
            )?;
        }
        let clear = firewall::ruleset("", &BTreeSet::new(), &BTreeMap::new())?;
        *self.applied.lock().unwrap_or_else(PoisonError::into_inner) = names
            .iter()
            .map(|n| (n.to_string(), clear.clone()))
            .collect();
        Ok(())
    }

    /// A member's (or "ctl"'s) address.
    ///
    /// # Panics
    /// If `member` is not one of the run's: a bug of the caller's.
    pub(crate) fn addr(&self, member: &str) -> Ipv4Addr {
        match self.seats.get(member) {
            Some(seat) => seat.addr,
            None => panic!("no member {member:?} in this run's network"),
        }
    }

    fn seat(&self, member: &str) -> Result<&Seat> {
        self.seats
            .get(member)
            .with_context(|| format!("no member {member:?} in this run's network"))
    }

    /// Moves the calling thread into a member's (or "ctl"'s) namespace with setns(2); threads
    /// it spawns afterwards inherit it. Sockets opened before stay where they were opened.
    pub(crate) fn enter(&self, member: &str) -> Result<()> {
        let file = open_ns(&self.seat(member)?.ns)?;
        // SAFETY: setns only reads the descriptor, which `file` keeps open across the call.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setns into {member}'s network namespace"));
        }
        Ok(())
    }

    /// A command that runs `program` inside a member's (or "ctl"'s) network namespace: the
    /// child joins it with setns before exec, so its pid is the program's and it shares the
    /// harness's mount namespace (unlike `ip netns exec`).
    pub(crate) fn command(&self, member: &str, program: &Path) -> Result<Command> {
        command_in(&self.seat(member)?.ns, program)
    }

    /// Replaces every drop rule: `blocked` holds directed pairs (from, to) of member names whose
    /// packets from → to are dropped. Each affected namespace gets its new rules in one atomic
    /// nft transaction: from's output drops to's address, to's input drops from's address. An
    /// empty set heals everything. "ctl" is blocked only if named.
    ///
    /// The rules match every packet, established connections included, and not ARP, so a
    /// healed pair talks again at once. An output drop makes a UDP or ICMP sender in `from`
    /// get EPERM from sendto; TCP retransmits silently and times out, as across a real
    /// partition. The namespaces change one after another, not all at once: for a moment a new
    /// partition may hold in one direction only.
    pub(crate) fn set_blocked(&self, blocked: &BTreeSet<(String, String)>) -> Result<()> {
        for (from, to) in blocked {
            self.seat(from)?;
            self.seat(to)?;
            if from == to {
                bail!("blocking {from:?} from itself");
            }
        }
        let addrs: BTreeMap<String, Ipv4Addr> = self
            .seats
            .iter()
            .map(|(name, seat)| (name.clone(), seat.addr))
            .collect();
        let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        let mut errors = Vec::new();
        for (name, seat) in &self.seats {
            let rules = firewall::ruleset(name, blocked, &addrs)?;
            if applied.get(name) == Some(&rules) {
                continue;
            }
            // Forgotten first: if applying fails the state is unknown, so retried next time.
            applied.remove(name);
            let result = command_in(&seat.ns, &tool("nft"))
                .and_then(|nft| firewall::apply(nft, &rules))
                .with_context(|| format!("drop rules in {name}'s namespace {}", seat.ns));
            match result {
                Ok(()) => {
                    applied.insert(name.clone(), rules);
                }
                // The others are still applied: a partial partition beats a stale one.
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        if !errors.is_empty() {
            bail!("{}", errors.join("\n"));
        }
        Ok(())
    }

    /// The namespaces' names and addresses, for the report.
    pub(crate) fn describe(&self) -> String {
        let mut out = format!("hub {} (bridge br0)", self.hub);
        for (name, seat) in &self.seats {
            out.push_str(&format!("; {name} {} {}", seat.ns, seat.addr));
        }
        out
    }

    /// The names of every namespace of this run, hub included.
    #[cfg(test)]
    fn namespaces(&self) -> Vec<String> {
        let mut all: Vec<String> = self.seats.values().map(|s| s.ns.clone()).collect();
        all.push(self.hub.clone());
        all
    }

    /// Deletes the run's namespaces, members first, then the hub (whose deletion cuts the
    /// veths of any member namespace a still-running process keeps alive). Idempotent; best
    /// effort, failures logged to stderr.
    pub(crate) fn teardown(&self) {
        let mut all: Vec<&str> = self.seats.values().map(|s| s.ns.as_str()).collect();
        all.push(&self.hub);
        for ns in all {
            delete_ns(ns);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Deletes every namespace any `Net` of this process still has: for a Ctrl-C handler, which
/// cannot reach the `Net`s themselves. The `Net`s' own teardown afterwards finds nothing left.
pub(crate) fn teardown_all() {
    let names: Vec<String> = live().iter().cloned().collect();
    // Members before hubs, as in `Net::teardown`.
    for ns in names.iter().filter(|n| !n.ends_with(".hub")) {
        delete_ns(ns);
    }
    for ns in names.iter().filter(|n| n.ends_with(".hub")) {
        delete_ns(ns);
    }
}

fn live() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Deletes a namespace of ours if it exists, logging a failure.
fn delete_ns(ns: &str) {
    if Path::new(NETNS_DIR).join(ns).exists()
        && let Err(e) = ip(None, &["netns", "del", ns])
    {
        eprintln!("fencekit-torture: removing network namespace {ns}: {e:#}");
        return;
    }
    live().remove(ns);
}

/// Removes the namespaces of earlier runs (ours by name) whose process is dead, such as a run
/// killed with -9. A pid reused since by another process keeps its leftovers until it exits.
fn remove_leftovers() {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    let mut dead: Vec<String> = dir
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| owner_pid(name).is_some_and(|pid| !alive(pid)))
        .collect();
    // Hubs last (see `teardown_all`).
    dead.sort_by_key(|n| n.ends_with(".hub"));
    for ns in dead {
        kill_processes_in(&ns);
        if let Err(e) = ip(None, &["netns", "del", &ns]) {
            // Another run may be removing the same leftovers right now.
            if Path::new(NETNS_DIR).join(&ns).exists() {
                eprintln!("fencekit-torture: removing leftover network namespace {ns}: {e:#}");
            }
        }
    }
}

/// SIGKILLs whatever still runs in a dead run's namespace (its members die with the harness,
/// but a program it started some other way might not).
fn kill_processes_in(ns: &str) {
    let Ok(out) = Command::new(tool("ip"))
        .args(["netns", "pids", ns])
        .output()
    else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<libc::pid_t>()
            && pid > 0
        {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// The pid in a name of ours, `fkt<pid>.<rest>`.
fn owner_pid(name: &str) -> Option<libc::pid_t> {
    let (pid, _) = name.strip_prefix(PREFIX)?.split_once('.')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|&p| p > 0)
}

fn alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 sends nothing; kill only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn open_ns(ns: &str) -> Result<File> {
    let path = Path::new(NETNS_DIR).join(ns);
    File::open(&path).with_context(|| format!("opening {}", path.display()))
}

/// `program` to run in namespace `ns`, joined with setns between fork and exec.
fn command_in(ns: &str, program: &Path) -> Result<Command> {
    // Opened here, before the fork: the child may only make async-signal-safe calls. The
    // descriptor is close-on-exec, so the program does not inherit it.
    let file = open_ns(ns)?;
    let mut cmd = Command::new(program);
    // SAFETY: the closure runs in the forked child, where only async-signal-safe calls are
    // allowed: it makes the prctl(2) and setns(2) system calls and reads errno, nothing that
    // allocates or takes a lock. `file` lives in the closure, so the descriptor is open until
    // it runs.
    unsafe {
        cmd.pre_exec(move || {
            // The program dies with the thread that started it, even when the harness is
            // killed with -9: no member outlives its run. (The harness starts members from its
            // main thread, which lives as long as the run.)
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// A system tool by name: from PATH, else from the sbin directories a non-login root shell's
/// PATH may lack.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Runs `ip [-n ns] args...`, failing with its stderr.
fn ip(ns: Option<&str>, args: &[&str]) -> Result<()> {
    let mut cmd = Command::new(tool("ip"));
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    cmd.args(args);
    run(cmd, None)
}

/// Runs `ip -n ns -batch -` with one command a line; ip stops at the first that fails.
fn ip_batch(ns: &str, lines: &[String]) -> Result<()> {
    let mut cmd = Command::new(tool("ip"));
    cmd.args(["-n", ns, "-batch", "-"]);
    let mut input = lines.join("\n");
    input.push('\n');
    run(cmd, Some(&input))
}

fn run(mut cmd: Command, stdin: Option<&str>) -> Result<()> {
    let shown = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("running {shown}"))?;
    let written = match (child.stdin.take(), stdin) {
        (Some(mut pipe), Some(text)) => pipe.write_all(text.as_bytes()),
        _ => Ok(()),
    };
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            stdin.map(|s| format!("\ninput:\n{s}")).unwrap_or_default()
        );
    }
    written.with_context(|| format!("writing to {shown}"))?;
    Ok(())
}

/// Why this machine cannot host a run's network, if it cannot: tries the whole path once
/// (a namespace, a veth, an nft table in it).
fn probe() -> Option<String> {
    // SAFETY: geteuid cannot fail and has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespaces need root (run as root or skip the torture run)".into());
    }
    for (name, arg, package) in [("ip", "-V", "iproute2"), ("nft", "--version", "nftables")] {
        let ok = Command::new(tool(name))
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!("no working `{name}` (apt-get install {package})"));
        }
    }
    let ns = format!(
        "{PREFIX}{}.{}.probe",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    live().insert(ns.clone());
    let tried = (|| -> Result<()> {
        ip(None, &["netns", "add", &ns])?;
        ip_batch(
            &ns,
            &[
                "link set lo up".to_string(),
                "link add eth0 type veth peer name eth1".to_string(),
            ],
        )?;
        let rules = firewall::ruleset(
            "a",
            &BTreeSet::from([("a".to_string(), "b".to_string())]),
            &BTreeMap::from([("b".to_string(), Ipv4Addr::new(10, 77, 0, 2))]),
        )?;
        firewall::apply(command_in(&ns, &tool("nft"))?, &rules)
    })();
    delete_ns(&ns);
    tried
        .err()
        .map(|e| format!("a test network namespace was refused: {e:#}"))
}
