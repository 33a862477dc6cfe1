//! `--app-listen`: the node as a sidecar of a local application in any language. A shell
//! script or a Java service asks the node whether it leads, with the token to carry and the
//! lease deadline on `CLOCK_BOOTTIME` (the clock the application itself reads), waits for the
//! next change with a long poll, and proposes; it links nothing.
//!
//! The rule that makes it safe: act only while `CLOCK_BOOTTIME` is before the deadline, carry
//! the token on every write, and let the fence refuse the rest. An answer read a moment ago may
//! be stale by the time it is used; the deadline says until when it may be used at all, and
//! the fence catches the writes of an application paused past it.
//!
//! Who can reach it: a Unix socket is made for this user only (0600); a TCP address must be
//! loopback and every request must bear the token of `--app-token-file`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use clap::Args;
use fencekit::node::Node;
use fencekit::time::{Clock, MonotonicClock};
use fencekit::{ClusterId, NodeId, Token};
use serde_json::json;

use super::admin::{bears, read_token_file};
use super::skew::SkewedClock;
use crate::http::{Bind, Reply, Request};

#[derive(Args, Debug, Clone)]
pub(crate) struct AppArgs {
    /// Serve the local application its leadership, token and lease deadline, a long poll for
    /// changes, and propose: `unix:/run/fencekit.sock` (this user only), or a loopback
    /// `127.0.0.1:PORT` with --app-token-file.
    #[arg(long)]
    pub(crate) app_listen: Option<String>,
    /// A file holding the token the application's requests must bear (`Authorization: Bearer
    /// TOKEN`): 16 to 256 printable characters, readable by this user only. Required with a
    /// TCP --app-listen.
    #[arg(long, requires = "app_listen")]
    pub(crate) app_token_file: Option<PathBuf>,
}

impl AppArgs {
    /// Where to serve the application, and the token its requests must bear; `None` when
    /// --app-listen is not given.
    pub(crate) fn resolve(&self) -> Result<Option<(Bind, Option<String>)>> {
        let Some(listen) = &self.app_listen else {
            return Ok(None);
        };
        let token = self
            .app_token_file
            .as_ref()
            .map(|path| read_token_file("--app-token-file", path))
            .transpose()?;
        let bind = match listen.strip_prefix("unix:") {
            Some("") => bail!("--app-listen unix:PATH: give the socket's path"),
            Some(path) => Bind::Unix(PathBuf::from(path)),
            None => {
                let addr: SocketAddr = listen.parse().map_err(|_| {
                    anyhow!(
                        "--app-listen {listen:?}: give unix:/path/to/socket or a loopback \
                         address such as 127.0.0.1:7000"
                    )
                })?;
                if !addr.ip().is_loopback() {
                    bail!(
                        "--app-listen {addr}: the application endpoint serves this machine's \
                         application only; use a Unix socket or a loopback address"
                    );
                }
                if token.is_none() {
                    bail!(
                        "--app-listen {addr}: a TCP endpoint needs --app-token-file (any local \
                         user can connect to a loopback port)"
                    );
                }
                Bind::Tcp(addr)
            }
        };
        Ok(Some((bind, token)))
    }
}

/// The longest long poll, and how many may wait at once (each holds a thread).
const WAIT_MAX: Duration = Duration::from_secs(60);
const WAITERS_MAX: usize = 32;
/// How often the watcher looks at the node's leadership.
const WATCH_EVERY: Duration = Duration::from_millis(5);
/// How long a proposal may take to commit before the answer says it is unknown.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The most bytes one proposal carries through this endpoint (a query string).
const PROPOSAL_BYTES_MAX: usize = 4096;

/// Who leads as this node sees it; a change of either is a new version.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
struct Seen {
    mine: Option<Token>,
    leader: Option<NodeId>,
}

struct Watch {
    state: Mutex<(u64, Seen)>,
    changed: Condvar,
}

/// The application endpoint of one node.
pub(crate) struct App {
    node: Arc<Node>,
    /// The node's clock: lease deadlines are on it.
    clock: Arc<SkewedClock>,
    /// `CLOCK_BOOTTIME`, the clock the application reads.
    boot: MonotonicClock,
    token: Option<String>,
    /// The source name a storage checks this group's tokens from.
    source: String,
    watch: Arc<Watch>,
    waiting: AtomicUsize,
}

impl App {
    pub(crate) fn start(
        node: Arc<Node>,
        clock: Arc<SkewedClock>,
        cluster: ClusterId,
        token: Option<String>,
    ) -> Arc<App> {
        // Versions start from the wall clock, in microseconds, so that a client long-polling
        // across a restart of the node never sees a version it saw before.
        let first = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        let watch = Arc::new(Watch {
            state: Mutex::new((first, Seen::default())),
            changed: Condvar::new(),
        });
        let app = Arc::new(App {
            node,
            clock,
            boot: MonotonicClock::since_boot(),
            token,
            source: fencekit::Source::fencekit_group(cluster).to_string(),
            watch,
            waiting: AtomicUsize::new(0),
        });
        let weak = Arc::downgrade(&app);
        std::thread::Builder::new()
            .name("app-watch".into())
            .spawn(move || watch_loop(&weak))
            .expect("spawn the app endpoint's watcher");
        app
    }

    pub(crate) fn handle(&self, request: &Request) -> Reply {
        if let Some(token) = &self.token
            && !bears(request, token)
        {
            return Reply::error(
                401,
                "requests need `Authorization: Bearer TOKEN`, the token of the node's \
                 --app-token-file",
            );
        }
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/v1/leadership") => self.leadership(request),
            ("POST", "/v1/propose") => self.propose(request),
            ("GET", "/v1/now") => Reply::json(
                200,
                json!({ "boottime_ns": self.boot.now().as_nanos() }).to_string(),
            ),
            (_, path) => Reply::error(
                404,
                format!(
                    "no {} {path}: GET /v1/leadership[?wait_ms=MS&version=V], POST \
                     /v1/propose?data=TEXT|data_hex=HEX, GET /v1/now",
                    request.method
                ),
            ),
        }
    }

    fn seen(&self) -> Seen {
        Seen {
            mine: self.node.leadership().map(|l| l.token),
            leader: self.node.status().ok().and_then(|s| s.leader),
        }
    }

    /// The answer, read from the node at this instant (never from the watcher's copy, which
    /// may be up to one look old).
    fn leadership(&self, request: &Request) -> Reply {
        let version = match self.wait_for_change(request) {
            Ok(version) => version,
            Err(reply) => return reply,
        };
        let now_node = self.clock.now();
        let now_boot = self.boot.now().as_nanos();
        let leader_hint = self
            .node
            .status()
            .ok()
            .and_then(|s| s.leader)
            .map(|id| id.get());
        let mut answer = json!({
            "node": self.node.id().get(),
            "version": version,
            "leader_id": leader_hint,
            "now_boottime_ns": now_boot,
            "source": self.source,
        });
        match self.node.leadership() {
            Some(leadership) => {
                // The lease's remaining time on the node's clock, made real time. A clock the
                // admin endpoint runs at another rate is converted whichever way is shorter.
                let remaining = leadership
                    .lease_deadline
                    .saturating_duration_since(now_node);
                let rate = self.clock.rate();
                let real = remaining.min(remaining.div_f64(rate.max(f64::MIN_POSITIVE)));
                let real_ns = u64::try_from(real.as_nanos()).unwrap_or(u64::MAX);
                answer["leader"] = true.into();
                answer["generation"] = leadership.token.generation.get().into();
                answer["holder"] = leadership.token.holder.get().into();
                answer["lease_deadline_boottime_ns"] = now_boot.saturating_add(real_ns).into();
                answer["lease_remaining_ms"] = (real_ns / 1_000_000).into();
            }
            None => answer["leader"] = false.into(),
        }
        Reply::json(200, answer.to_string())
    }

    /// With `wait_ms` (and `version`, the one the client last saw), waits until the version
    /// differs or the time is up; the version to report.
    fn wait_for_change(&self, request: &Request) -> Result<u64, Reply> {
        let current = || self.watch.state.lock().unwrap_or_else(|p| p.into_inner()).0;
        let Some(wait) = request.param("wait_ms") else {
            return Ok(current());
        };
        let wait = wait
            .parse::<u64>()
            .ok()
            .map(Duration::from_millis)
            .filter(|w| *w <= WAIT_MAX)
            .ok_or_else(|| {
                Reply::error(
                    400,
                    format!("wait_ms: 0 to {} milliseconds", WAIT_MAX.as_millis()),
                )
            })?;
        let seen = match request.param("version").map(str::parse::<u64>) {
            None => current(),
            Some(Ok(version)) => version,
            Some(Err(_)) => return Err(Reply::error(400, "version: the number an answer gave")),
        };
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= WAITERS_MAX {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Reply::error(
                503,
                format!("{WAITERS_MAX} long polls wait already: poll without wait_ms, or later"),
            ));
        }
        let deadline = Instant::now() + wait;
        let mut state = self.watch.state.lock().unwrap_or_else(|p| p.into_inner());
        while state.0 == seen {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .watch
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let version = state.0;
        drop(state);
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        Ok(version)
    }

    fn propose(&self, request: &Request) -> Reply {
        let data = match (request.param("data"), request.param("data_hex")) {
            (Some(text), None) => text.as_bytes().to_vec(),
            (None, Some(hex)) => match decode_hex(hex) {
                Some(bytes) => bytes,
                None => return Reply::error(400, "data_hex: hexadecimal digits, two per byte"),
            },
            _ => return Reply::error(400, "give data=TEXT or data_hex=HEX, one of them"),
        };
        if data.is_empty() {
            return Reply::error(400, "an empty proposal: give data=TEXT or data_hex=HEX");
        }
        if data.len() > PROPOSAL_BYTES_MAX {
            return Reply::error(
                413,
                format!("a proposal here is at most {PROPOSAL_BYTES_MAX} bytes"),
            );
        }
        let ticket = match self.node.propose(data) {
            Ok(ticket) => ticket,
            Err(e @ fencekit::NodeError::NotLeader { .. }) => return Reply::error(409, e),
            Err(e) => return Reply::error(503, e),
        };
        match ticket.wait(PROPOSE_TIMEOUT) {
            Ok(index) => Reply::json(200, json!({ "index": index.get() }).to_string()),
            Err(e @ fencekit::NodeError::Timeout(_)) => Reply::error(
                503,
                format!("{e}: the proposal may or may not commit; look before proposing again"),
            ),
            Err(e) => Reply::error(409, e),
        }
    }
}

/// Bumps the version whenever who leads changes, until the endpoint is gone.
fn watch_loop(app: &Weak<App>) {
    loop {
        let Some(app) = app.upgrade() else { return };
        let seen = app.seen();
        {
            let mut state = app.watch.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.1 != seen {
                *state = (state.0 + 1, seen);
                app.watch.changed.notify_all();
            }
        }
        drop(app);
        std::thread::sleep(WATCH_EVERY);
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}
