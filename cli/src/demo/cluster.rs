//! The demo's processes: a store and a group of nodes on loopback, in one temporary directory,
//! and the nemesis's hands on them (signals, partitions, clock rates). Everything is killed
//! and removed when the cluster is dropped, and each child is also killed by the kernel if
//! the demo itself dies.

use std::ffi::OsString;
use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use fencekit::NodeId;
use fencekit::transport::tcp::dev_certs;
use fencekit::transport::tcp::tls::TlsFiles;
use tempfile::TempDir;

use crate::client::Client;
use crate::node::scheduler::Mode;
use crate::store_api::{Entry, StoreClient};

/// The scheduler's settings every node of a run shares.
#[derive(Clone, Debug)]
pub(crate) struct Schedule {
    pub(crate) mode: Mode,
    pub(crate) jobs: Vec<String>,
    pub(crate) period_ms: u64,
    pub(crate) job_ms: u64,
    pub(crate) start_ms: u64,
    pub(crate) lock_ttl_ms: u64,
}

struct Member {
    id: u64,
    status_addr: String,
    admin_addr: String,
    args: Vec<OsString>,
    child: Option<Child>,
}

/// A store and its nodes.
pub(crate) struct Cluster {
    dir: TempDir,
    exe: PathBuf,
    store: Option<Child>,
    store_client: StoreClient,
    members: Vec<Member>,
    admin: Client,
    /// The token of the nodes' admin endpoints.
    admin_token: String,
}

/// A free loopback port below the kernel's ephemeral range. A port the kernel hands out for
/// `:0` lies in that range, which the demo's own outbound connections draw their local ports
/// from: between choosing it and a child binding it, a connection could take it ("Address
/// already in use"). Ports handed out once are not handed out again by this process.
fn free_port() -> Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    // The low end of the ephemeral range (Linux's default when unreadable).
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let high = ephemeral.max(2048);
    let low = high.saturating_sub(12_000).max(1024);
    let span = u32::from(high - low);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for i in 0..span {
        let port = low + ((seed.wrapping_add(i)) % span) as u16;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return Ok(port);
        }
    }
    bail!("no free loopback port from {low} to {high}")
}

impl Cluster {
    /// Starts a store and `size` nodes running `schedule`, and waits until they answer.
    pub(crate) fn start(size: usize, schedule: &Schedule) -> Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("fencekit-demo-")
            .tempdir()
            .context("creating the demo's temporary directory")?;
        let exe = std::env::current_exe().context("finding the fencekit executable")?;
        let store_addr = format!("127.0.0.1:{}", free_port()?);
        // Every process speaks TLS, as any deployment should, with certificates of its own:
        // the nodes to each other and to the store, which knows each writer by its
        // certificate.
        let certs = dir.path().join("certs");
        let ids = (1..=size as u64)
            .map(NodeId::new)
            .collect::<Result<Vec<_>, _>>()?;
        dev_certs::init(&certs, fencekit::ClusterId::new(1), &ids)
            .context("making the demo's certificates")?;
        dev_certs::add_store(&certs, &["127.0.0.1".to_owned()])
            .context("making the demo store's certificate")?;
        // The observer reads the ledger as node 1.
        let reader = TlsFiles::in_dir(dev_certs::node_dir(&certs, ids[0])).read()?;
        let admin_token = admin_token()?;
        let token_file = dir.path().join("admin.token");
        write_secret(&token_file, &admin_token)?;
        let mut cluster = Cluster {
            exe,
            store: None,
            store_client: StoreClient::new(&store_addr, Duration::from_secs(2), Some(&reader)),
            members: Vec::new(),
            admin: Client::new(Duration::from_millis(500)),
            admin_token,
            dir,
        };
        let mut store_args: Vec<OsString> = vec![
            "store".into(),
            "--data".into(),
            cluster.dir.path().join("store").into(),
            "--listen".into(),
            store_addr.clone().into(),
            "--tls-dir".into(),
            dev_certs::store_dir(&certs).into(),
        ];
        if schedule.mode == Mode::Naive {
            store_args.push("--unfenced".into());
        }
        cluster.store = Some(cluster.spawn("store", &store_args)?);
        cluster.wait_until("the store", |c| c.store_client.check_reachable().is_ok())?;

        let raft_ports = (0..size).map(|_| free_port()).collect::<Result<Vec<_>>>()?;
        let peers: Vec<String> = raft_ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{}=127.0.0.1:{port}", i + 1))
            .collect();
        for i in 0..size {
            let id = i as u64 + 1;
            let status_addr = format!("127.0.0.1:{}", free_port()?);
            let admin_addr = format!("127.0.0.1:{}", free_port()?);
            let args: Vec<OsString> = [
                "node",
                "--id",
                &id.to_string(),
                "--peers",
                &peers.join(","),
                "--status-addr",
                &status_addr,
                "--store",
                &store_addr,
                "--mode",
                match schedule.mode {
                    Mode::Fenced => "fenced",
                    Mode::Naive => "naive",
                },
                "--jobs",
                &schedule.jobs.join(","),
                "--period-ms",
                &schedule.period_ms.to_string(),
                "--job-ms",
                &schedule.job_ms.to_string(),
                "--schedule-start-ms",
                &schedule.start_ms.to_string(),
                "--lock-ttl-ms",
                &schedule.lock_ttl_ms.to_string(),
                "--admin",
                "--admin-addr",
                &admin_addr,
                "--data",
            ]
            .into_iter()
            .map(OsString::from)
            .chain([
                cluster.dir.path().join(format!("node-{id}")).into(),
                "--tls-dir".into(),
                dev_certs::node_dir(&certs, NodeId::new(id)?).into(),
                "--admin-token-file".into(),
                token_file.clone().into(),
            ])
            .collect();
            let child = cluster.spawn(&format!("node-{id}"), &args)?;
            cluster.members.push(Member {
                id,
                status_addr,
                admin_addr,
                args,
                child: Some(child),
            });
        }
        cluster.wait_until("every node", |c| {
            c.members
                .iter()
                .all(|m| c.admin.get(&m.status_addr, "/healthz").is_ok())
        })?;
        Ok(cluster)
    }

    /// Spawns `fencekit ARGS`, its stderr kept in the directory under `name`.
    fn spawn(&self, name: &str, args: &[OsString]) -> Result<Child> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(name))?;
        let mut command = Command::new(&self.exe);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; it asks the kernel to kill the child when the
        // thread that spawned it (the demo's main thread) dies, so that no node outlives a
        // demo killed by SIGKILL.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// Waits up to 10 s for `ready`, failing early if a process exits.
    fn wait_until(&mut self, what: &str, ready: impl Fn(&Cluster) -> bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready(self) {
            self.check_running()?;
            if Instant::now() > deadline {
                bail!("{what} did not start within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Fails, naming the cause a process gave, if one that should run has exited.
    pub(crate) fn check_running(&mut self) -> Result<()> {
        let dir = self.dir.path().to_owned();
        let mut children: Vec<(String, &mut Child)> = Vec::new();
        if let Some(store) = &mut self.store {
            children.push(("store".into(), store));
        }
        for member in &mut self.members {
            if let Some(child) = &mut member.child {
                children.push((format!("node-{}", member.id), child));
            }
        }
        for (name, child) in children {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the demo's {name} exited ({status}): {}",
                    last_line(&dir.join(format!("{name}.log")))
                );
            }
        }
        Ok(())
    }

    pub(crate) fn ids(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.id).collect()
    }

    pub(crate) fn status_addrs(&self) -> Vec<String> {
        self.members.iter().map(|m| m.status_addr.clone()).collect()
    }

    fn member(&mut self, id: u64) -> Result<&mut Member> {
        self.members
            .iter_mut()
            .find(|m| m.id == id)
            .ok_or_else(|| anyhow!("no node {id}"))
    }

    fn signal(&mut self, id: u64, signal: libc::c_int) -> Result<()> {
        let member = self.member(id)?;
        let child = member
            .child
            .as_ref()
            .ok_or_else(|| anyhow!("node {id} is not running"))?;
        let pid = libc::pid_t::try_from(child.id())?;
        // SAFETY: kill(2) on our own child, which has not been reaped (we hold its Child).
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error()).context(format!("signalling node {id}"));
        }
        Ok(())
    }

    /// SIGSTOP: the node freezes mid-step, as in a long GC pause or a VM migration.
    pub(crate) fn pause(&mut self, id: u64) -> Result<()> {
        self.signal(id, libc::SIGSTOP)
    }

    /// SIGCONT: the frozen node goes on as if nothing happened.
    pub(crate) fn resume(&mut self, id: u64) -> Result<()> {
        self.signal(id, libc::SIGCONT)
    }

    /// kill -9, and reap it.
    pub(crate) fn kill(&mut self, id: u64) -> Result<()> {
        self.signal(id, libc::SIGKILL)?;
        if let Some(mut child) = self.member(id)?.child.take() {
            child.wait()?;
        }
        Ok(())
    }

    /// Starts a killed node again, on its data directory.
    pub(crate) fn restart(&mut self, id: u64) -> Result<()> {
        let args = self.member(id)?.args.clone();
        let child = self.spawn(&format!("node-{id}"), &args)?;
        self.member(id)?.child = Some(child);
        Ok(())
    }

    /// Cuts node `id` off from `from` (both ways), or heals it with an empty `from`.
    pub(crate) fn partition(&mut self, id: u64, from: &[u64]) -> Result<()> {
        let ids: Vec<u64> = self.ids();
        for other in ids {
            let drop: Vec<String> = if other == id {
                from.iter().map(u64::to_string).collect()
            } else if from.contains(&other) {
                vec![id.to_string()]
            } else {
                continue;
            };
            self.admin_post(other, &format!("/admin/partition?drop={}", drop.join(",")))?;
        }
        Ok(())
    }

    /// Heals every partition.
    pub(crate) fn heal(&mut self) -> Result<()> {
        for id in self.ids() {
            self.admin_post(id, "/admin/partition?drop=")?;
        }
        Ok(())
    }

    /// Runs node `id`'s clock at `rate`.
    pub(crate) fn skew(&mut self, id: u64, rate: f64) -> Result<()> {
        self.admin_post(id, &format!("/admin/clock?rate={rate}"))
    }

    fn admin_post(&mut self, id: u64, path: &str) -> Result<()> {
        let addr = self.member(id)?.admin_addr.clone();
        let (code, body) = self.admin.post_authorized(&addr, path, &self.admin_token)?;
        if code != 200 {
            bail!("node {id} answered {code} to {path}: {}", body.trim());
        }
        Ok(())
    }

    pub(crate) fn ledger(&self) -> Result<Vec<Entry>> {
        self.store_client.ledger()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let children = self
            .members
            .iter_mut()
            .filter_map(|m| m.child.as_mut())
            .chain(self.store.as_mut());
        for child in children {
            // SIGKILL ends a stopped process too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A fresh random token for the admin endpoints.
fn admin_token() -> Result<String> {
    let mut bytes = [0u8; 24];
    File::open("/dev/urandom")
        .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut bytes))
        .context("reading /dev/urandom for the admin token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `text` to a new file only this user may read.
fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

/// The last line a process wrote to its log: usually why it stopped.
fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.lines().last().map(str::to_owned))
        .unwrap_or_else(|| "it said nothing".into())
}
