//! `fencekit node`: one member of a Raft group over TCP, with an HTTP endpoint for operators
//! (`/status`, `/metrics`, `/healthz`) and, with `--admin`, one for the demo's nemesis
//! (`/admin/partition`, `/admin/clock`).

mod admin;
mod app;
mod authority;
mod leadership_log;
mod metrics;
mod partition;
pub(crate) mod peers;
mod request_log;
pub(crate) mod scheduler;
pub(crate) mod security;
mod skew;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use fencekit::lease::Timing;
use fencekit::node::{Node, NodeConfig};
use fencekit::transport::tcp::{Security, TcpConfig, TcpMonitor, TcpTransport};
use fencekit::{ClusterId, NodeId};

use crate::http::{self, Handler, Limits, Listener, Reply, Request};
use crate::store_api::StoreClient;
use crate::termination::Termination;
use admin::{Admin, AdminArgs};
use app::{App, AppArgs};
use authority::{Authority, Fenced, Naive};
use metrics::NodeMetrics;
use partition::{DropRules, Partitionable};
use peers::Member;
use scheduler::{Mode, Scheduler, SchedulerArgs};
use security::SecurityArgs;
use skew::SkewedClock;

/// Runs one node of a group.
#[derive(Args, Debug, Clone)]
pub(crate) struct NodeArgs {
    /// This node's id (1 to 2^64-1).
    #[arg(long)]
    pub(crate) id: u64,
    /// Every member of the group, this node included, as ID=HOST:PORT,...; this node listens
    /// on its own entry's address.
    #[arg(long)]
    pub(crate) peers: String,
    /// The node's data directory (its Raft log). A new log is created only in an empty (or
    /// missing) directory.
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Size of each log segment file, in bytes: a multiple of 4096 from 64 KiB to 1 GiB.
    #[arg(long, default_value_t = fencekit::limits::SEGMENT_SIZE_DEFAULT)]
    pub(crate) segment_size: u64,
    /// Where to serve /status, /metrics and /healthz.
    #[arg(long)]
    pub(crate) status_addr: SocketAddr,
    /// The group's id: the same on every member.
    #[arg(long, default_value_t = 1)]
    pub(crate) cluster: u64,
    /// The Raft tick, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub(crate) tick_ms: u64,
    /// Ticks without a leader before a follower campaigns.
    #[arg(long, default_value_t = 20)]
    pub(crate) election_tick: usize,
    #[command(flatten)]
    pub(crate) security: SecurityArgs,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
    #[command(flatten)]
    pub(crate) app: AppArgs,
    #[command(flatten)]
    pub(crate) scheduler: SchedulerArgs,
    /// Test-only: the node thread panics this long after the start, to show that a failed
    /// node says so (/healthz 503, /status, /metrics).
    #[arg(long, hide = true)]
    pub(crate) test_panic_after_ms: Option<u64>,
}

/// A running node and what its endpoint serves.
pub(crate) struct Running {
    pub(crate) node: Arc<Node>,
    clock: Arc<SkewedClock>,
    rules: DropRules,
    metrics: NodeMetrics,
    max_drift: f64,
    scheduler: Option<Scheduler>,
    /// The transport's refusals (a peer of another cluster, say).
    monitor: Option<TcpMonitor>,
    /// The group, for the warning of a node that finds no leader.
    peers: String,
}

/// Starts the node described by `args`.
pub(crate) fn start(args: &NodeArgs) -> Result<Running> {
    args.scheduler.validate()?;
    let security = args.security.security()?;
    let store = match &args.scheduler.store {
        Some(addr) => {
            // A secure node shows the store its own certificate: the store takes the writer's
            // identity from it.
            let tls = match &security {
                Security::Tls(files) => Some(files.read().map_err(|e| anyhow!("{e}"))?),
                Security::Insecure => None,
            };
            let store = StoreClient::new(addr, Duration::from_secs(1), tls.as_ref());
            // A store started alongside its nodes may take a moment to answer.
            let mut reachable = store.check_reachable();
            for _ in 0..4 {
                if reachable.is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
                reachable = store.check_reachable();
            }
            // A node is a voter first: one restarted while its store is down must still rejoin
            // its group (the torture run restarted nodes during store outages, and they stayed
            // out). The scheduler keeps trying, and says so.
            if let Err(e) = reachable {
                log::warn!(
                    target: LOG_TARGET,
                    "node {}: {e:#}; the scheduler keeps trying",
                    args.id
                );
            }
            Some(store)
        }
        None => None,
    };
    let members = peers::parse(&args.peers).map_err(|e| anyhow!("--peers: {e}"))?;
    let id = NodeId::new(args.id).map_err(|_| anyhow!("--id {}: must be 1 to 2^64-1", args.id))?;
    let me = members.iter().find(|m| m.id == id).ok_or_else(|| {
        anyhow!("--peers does not list this node ({id}): list every member, this one included")
    })?;
    let cluster = ClusterId::new(args.cluster);
    let mut config = NodeConfig::new(
        id,
        cluster,
        &args.data,
        members.iter().map(|m| m.id).collect(),
    );
    config.timing = Timing {
        tick: Duration::from_millis(args.tick_ms),
        election_tick: args.election_tick,
        ..Timing::default()
    };
    config.test_hooks = args.test_panic_after_ms.is_some();
    config.wal.segment_size = args.segment_size;
    config
        .validate()
        .map_err(|e| anyhow!("the node's configuration: {e}"))?;
    let max_drift = config.timing.max_drift;
    let tcp = TcpConfig {
        cluster,
        node: id,
        listen: me.addr,
        peers: members
            .iter()
            .filter(|m| m.id != id)
            .map(|m: &Member| (m.id, m.addr.to_string()))
            .collect(),
        security,
    };
    let clock = Arc::new(SkewedClock::new());
    let rules = DropRules::default();
    let transport_rules = rules.clone();
    let (monitor_tx, monitor_rx) = crossbeam_channel::bounded(1);
    let node = Node::start_with_clock(config, clock.clone(), move |inbox| {
        let inner = TcpTransport::bind(tcp, inbox)?;
        let _ = monitor_tx.try_send(inner.monitor());
        Ok(Partitionable {
            inner,
            rules: transport_rules,
        })
    })
    .map_err(start_error)?;
    let monitor = monitor_rx.try_recv().ok();
    let node = Arc::new(node);
    let metrics = NodeMetrics::new(args.cluster, id.get());
    let scheduler = match store {
        None => None,
        Some(store) => {
            let authority: Box<dyn Authority> = match args.scheduler.mode {
                Mode::Fenced => Box::new(Fenced {
                    node: node.clone(),
                    clock: clock.clone(),
                }),
                Mode::Naive => Box::new(Naive::new(
                    store.clone(),
                    id.get(),
                    Duration::from_millis(args.scheduler.lock_ttl_ms),
                    clock.clone(),
                )),
            };
            let started = Scheduler::start(
                &args.scheduler,
                store,
                id.get(),
                authority,
                metrics.writes.clone(),
            );
            Some(started.inspect_err(|_| node.stop())?)
        }
    };
    Ok(Running {
        node,
        clock,
        rules,
        metrics,
        max_drift,
        scheduler,
        monitor,
        peers: args.peers.clone(),
    })
}

/// What failed to start, and what to do about it (the library's messages say it already,
/// except for a port in use).
fn start_error(e: fencekit::NodeError) -> anyhow::Error {
    match e.kind() {
        fencekit::ErrorKind::Transport => {
            anyhow!("{e}: is another process using the port? Fix this node's entry in --peers")
        }
        _ => anyhow!("{e}"),
    }
}

impl Running {
    /// Answers one request to the node's endpoint.
    pub(crate) fn handle(&self, request: &Request) -> Reply {
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/status") => match self.status_json() {
                Ok(json) => Reply::json(200, json),
                Err(e) => Reply::error(503, e),
            },
            ("GET", "/metrics") => match self.node.status() {
                Ok(status) => Reply::metrics(self.metrics.render(&status, self.monitor.as_ref())),
                Err(e) => Reply::error(503, e),
            },
            ("GET", "/healthz") => match (self.node.failure(), self.node.stopped()) {
                (Some(cause), _) => Reply::text(503, format!("failed: {cause}\n")),
                (None, Some(reason)) => Reply::text(503, format!("stopped: {reason}\n")),
                (None, None) => Reply::text(200, "ok\n"),
            },
            (_, path) if path.starts_with("/admin/") => Reply::error(
                404,
                format!(
                    "no {path} here: the admin endpoints are off unless the node runs with \
                     --admin, and then served on --admin-addr"
                ),
            ),
            (_, path) => Reply::error(404, format!("no {path}: GET /status, /metrics, /healthz")),
        }
    }

    fn status_json(&self) -> Result<String> {
        let status = self.node.status()?;
        let mut value: serde_json::Value = serde_json::from_str(&status.to_json())?;
        if let Some(object) = value.as_object_mut() {
            object.insert("partitioned_from".into(), self.rules.peers().into());
            object.insert("clock_rate".into(), self.clock.rate().into());
            object.insert("max_drift".into(), self.max_drift.into());
            if let Some(scheduler) = &self.scheduler {
                object.insert("scheduler".into(), serde_json::to_value(scheduler.view())?);
            }
        }
        Ok(value.to_string())
    }
}

/// The target of the node's own lines (its start, a failure, no leader found): operator
/// lines, shown by default (see `crate::logging`), and JSON lines with `--log-format json`.
const LOG_TARGET: &str = "fencekit::cli::node";

/// `fencekit node`: runs until SIGINT or SIGTERM, or until the node stops on its own.
pub(crate) fn run(args: &NodeArgs) -> Result<()> {
    let termination = Termination::install()?;
    let admin_token = args.admin.token()?;
    let app = args.app.resolve()?;
    let running = Arc::new(start(args)?);
    if running
        .monitor
        .as_ref()
        .is_some_and(TcpMonitor::is_insecure)
    {
        log::warn!(
            target: LOG_TARGET,
            "WARNING: node {} runs --insecure: its peers are not authenticated and its traffic \
             is not encrypted. Anyone who reaches its Raft port can join the group and obtain \
             tokens every fence accepts. Use --tls-dir outside a test.",
            args.id
        );
    }
    if let Some(ms) = args.test_panic_after_ms {
        let node = running.node.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            let _ = node.panic_for_testing();
        });
    }
    let serving = running.clone();
    let status = Handler::Blocking(Arc::new(move |r| serving.handle(r)));
    let mut listeners = vec![Listener {
        addr: args.status_addr.into(),
        what: "--status-addr",
        tls: None,
        handler: status,
    }];
    if let Some(token) = admin_token {
        let admin = Admin {
            token,
            rules: running.rules.clone(),
            clock: running.clock.clone(),
            max_drift: running.max_drift,
        };
        listeners.push(Listener {
            addr: args.admin.admin_addr.into(),
            what: "--admin-addr",
            tls: None,
            handler: Handler::Blocking(Arc::new(move |r| admin.handle(r))),
        });
    }
    if let Some((bind, token)) = app {
        let app = App::start(
            running.node.clone(),
            running.clock.clone(),
            ClusterId::new(args.cluster),
            token,
        );
        listeners.push(Listener {
            addr: bind,
            what: "--app-listen",
            tls: None,
            handler: Handler::Blocking(Arc::new(move |r| app.handle(r))),
        });
    }
    let server =
        http::Server::start(listeners, Limits::default()).inspect_err(|_| running.node.stop())?;
    log::info!(
        target: LOG_TARGET,
        "node {} of cluster {}: serving http://{}/status",
        args.id,
        args.cluster,
        server.addr(0)
    );
    if args.admin.admin {
        log::warn!(
            target: LOG_TARGET,
            "node {}: admin endpoints on http://{}/admin/ (token required): they can partition \
             this node and skew its clock",
            args.id,
            server.addr(1)
        );
    }
    if args.app.app_listen.is_some() {
        let last = if args.admin.admin { 2 } else { 1 };
        log::info!(
            target: LOG_TARGET,
            "node {}: serving the local application on {} (/v1/leadership, /v1/propose)",
            args.id,
            server.addr(last)
        );
    }
    // Committed entries are read and dropped: this node replicates leadership, not data.
    let applied = running.node.applied().clone();
    std::thread::spawn(move || while applied.recv().is_ok() {});
    let leadership_log = leadership_log::LeadershipLog::start(&running.node)?;
    let mut leaderless = LeaderlessWarning::default();
    let mut failure_reported = false;
    loop {
        if termination.wait(Duration::from_millis(100)) {
            running.node.stop();
            leadership_log.finish();
            return Ok(());
        }
        // A failed node stays up to say so (/healthz 503, /status, /metrics) until it is
        // restarted; a node that stopped on its own (removed from the group) exits.
        if let Some(cause) = running.node.failure() {
            if !failure_reported {
                failure_reported = true;
                log::error!(
                    target: LOG_TARGET,
                    "node {}: FAILED: {cause}. It reports no leadership; /healthz answers 503. \
                     Restart it.",
                    args.id
                );
            }
            continue;
        }
        if let Some(reason) = running.node.stopped() {
            bail!("the node stopped: {reason}");
        }
        leaderless.check(&running);
    }
}

/// Says once, after a while without a leader, what is most likely wrong: the node cannot
/// reach a majority of its peers. The node goes on trying; they may start later.
#[derive(Default)]
struct LeaderlessWarning {
    since: Option<std::time::Instant>,
    warned: bool,
}

impl LeaderlessWarning {
    const AFTER: Duration = Duration::from_secs(5);

    fn check(&mut self, running: &Running) {
        let has_leader = running.node.status().is_ok_and(|s| s.leader.is_some());
        if has_leader {
            *self = LeaderlessWarning::default();
            return;
        }
        let since = *self.since.get_or_insert_with(std::time::Instant::now);
        if self.warned || since.elapsed() < Self::AFTER {
            return;
        }
        self.warned = true;
        let refusal = running
            .monitor
            .as_ref()
            .and_then(TcpMonitor::last_refusal)
            .map_or_else(String::new, |r| format!("; the transport last {r}"));
        log::warn!(
            target: LOG_TARGET,
            "node {}: no leader for {} s: are a majority of --peers ({}) running and reachable, \
             with the same --cluster?{refusal}",
            running.node.id(),
            Self::AFTER.as_secs(),
            running.peers
        );
    }
}
