//! The TCP transport: std::net and threads, no async; mutual TLS unless the operator says
//! insecure.
//!
//! - A connection carries one direction: the connecting side sends, the accepting side
//!   reads. It opens with TLS 1.3 (both certificates verified against the group's CA, see
//!   [`tls`]) and a handshake naming the cluster, the sender and the receiver; TLS, handshake
//!   and answer share one deadline. The byte format is in [`wire`].
//! - The accepting side refuses a peer whose certificate names another node than its
//!   handshake, a peer of another cluster, one not in the membership, or a handshake meant
//!   for another node. It logs and counts the refusal, and tells the reason only to a peer
//!   whose certificate the CA signed. A stranger learns only what any TLS client sees: the
//!   node's certificate (its identity); not the CA's name, nor why it was refused.
//! - Connections are bounded: handshakes in progress (a new one cuts off the oldest, so
//!   connections held open by a stranger cannot lock members out), and connections per peer
//!   (a new one from a peer replaces its oldest). A connection idle past `IDLE_MAX` is closed; senders
//!   keep theirs alive with empty frames.
//! - Each peer has one sending thread and a bounded queue; [`Transport::send`] never blocks: a
//!   full queue drops the message (Raft retransmits). The sender reconnects with exponential
//!   backoff, and before each batch checks that the peer has not closed the connection (a
//!   restarted peer), so no message is written into a dead connection.
//! - Each accepted connection has a reading thread that decodes messages and hands them to the
//!   node's [`Inbox`]; a malformed message, or one claiming another sender, ends the
//!   connection. What the messages say is judged by the node's step boundary.

mod connection;
#[cfg(feature = "dev-certs")]
pub mod dev_certs;
mod socket;
pub mod tls;
pub mod wire;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, BufWriter, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use protobuf::Message as _;
use raft::eraftpb::Message;

use crate::cluster::ClusterId;
use crate::error::TransportError;
use crate::limits::{
    BACKOFF_MAX, BACKOFF_MIN, BUFFER_KEEP_MAX, ENTRIES_PER_MESSAGE_MAX, FRAME_MAX, HANDSHAKES_MAX,
    KEEPALIVE_INTERVAL, PEER_CONNECTIONS_MAX, PEER_QUEUE_MAX, REFUSAL_LOG_INTERVAL,
    SENDER_STOP_WAIT,
};
use crate::token::NodeId;
use crate::transport::{Inbox, Transport};
use connection::{DialError, dial, peer_gone};
use tls::{Identity, TlsFiles, TlsState};

/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// How often the certificate files are looked at for a replacement.
const TLS_RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Who may speak to the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Security {
    /// Mutual TLS: only holders of a certificate from the group's CA that names them
    /// (`fencekit://<cluster>/<node>`) may connect, and only as that node.
    Tls(TlsFiles),
    /// Plaintext and unauthenticated: anyone who reaches the port can speak Raft as any
    /// member, join the group, and hand out tokens every fence accepts. Only for a closed
    /// machine (tests, a demo on loopback); the transport logs a warning when it starts.
    Insecure,
}

/// How to run one node's TCP transport.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// The group's id; peers of another cluster are refused.
    pub cluster: ClusterId,
    /// This node.
    pub node: NodeId,
    /// Where to listen (port 0: any free port; see [`TcpTransport::local_addr`]).
    pub listen: SocketAddr,
    /// The other members and their addresses.
    pub peers: Vec<(NodeId, String)>,
    /// Mutual TLS, or explicitly none.
    pub security: Security,
}

/// Counters of the transport, for status and metrics.
#[derive(Debug, Default)]
pub struct TcpStats {
    /// Messages dropped because a peer's queue was full or the peer is unknown.
    pub dropped: AtomicU64,
    /// Connections refused at TLS or the handshake.
    pub refused: AtomicU64,
    /// Connections cut off in their opening to admit newer ones (too many at once).
    pub shed: AtomicU64,
    /// Connections ended for a protocol violation (bad frame, bad message).
    pub broken: AtomicU64,
    /// Connections closed after `IDLE_MAX` without a frame.
    pub idle_closed: AtomicU64,
    /// Certificate files reloaded after they changed.
    pub tls_reloads: AtomicU64,
    /// Certificate reloads that failed (the previous certificates stay in use).
    pub tls_reload_failures: AtomicU64,
}

/// An inbound connection, kept to be shut down: in its handshake (when newer ones need the
/// slot, or on stop), or authenticated (on stop, or when the same peer opens more than
/// `PEER_CONNECTIONS_MAX`; `peer` is 0 until then).
struct Inbound {
    peer: u64,
    serial: u64,
    socket: TcpStream,
}

pub(crate) struct Shared {
    cluster: ClusterId,
    node: NodeId,
    tls: Option<TlsState>,
    members: Mutex<HashSet<u64>>,
    stop: AtomicBool,
    stats: TcpStats,
    /// The last refusal or protocol error, for tests and operators.
    last_refusal: Mutex<Option<String>>,
    log_gate: Mutex<LogGate>,
    /// Connections in their opening (TLS and handshake), oldest first.
    handshakes: Mutex<VecDeque<Inbound>>,
    /// Threads still in an opening, including those cut off and not yet gone.
    opening_threads: AtomicUsize,
    inbound: Mutex<Vec<Inbound>>,
    next_serial: AtomicU64,
}

/// At most one warning a second about refused connections, with a count of those that went
/// unlogged: a stranger's flood must not become a flood of the host's log.
#[derive(Default)]
struct LogGate {
    last: Option<Instant>,
    unlogged: u64,
}

impl Shared {
    fn refuse(&self, reason: String) {
        // Decided under the gate's lock, logged after it: the host's log callback may be slow,
        // and the threads of a stranger's connections must not queue on the lock behind it.
        let report = {
            let mut gate = self.log_gate.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if gate
                .last
                .is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_INTERVAL)
            {
                gate.last = Some(now);
                Some(std::mem::take(&mut gate.unlogged))
            } else {
                gate.unlogged += 1;
                None
            }
        };
        match report {
            Some(unlogged) => {
                let more = if unlogged > 0 {
                    format!(" ({unlogged} more refusals since the last report)")
                } else {
                    String::new()
                };
                log::warn!("fencekit tcp node {}: {reason}{more}", self.node);
            }
            None => log::debug!("fencekit tcp node {}: {reason}", self.node),
        }
        *self.last_refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    fn inbound(&self) -> std::sync::MutexGuard<'_, Vec<Inbound>> {
        self.inbound.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handshakes(&self) -> std::sync::MutexGuard<'_, VecDeque<Inbound>> {
        self.handshakes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends handshake `serial`; `false` if it had been cut off already.
    fn handshake_done(&self, serial: u64) -> bool {
        let mut pending = self.handshakes();
        let at = pending.iter().position(|p| p.serial == serial);
        at.and_then(|at| pending.remove(at)).is_some()
    }
}

/// Watches a [`TcpTransport`]'s counters and refusals from outside the node.
#[derive(Clone)]
pub struct TcpMonitor(Arc<Shared>);

impl std::fmt::Debug for TcpMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpMonitor")
            .field("node", &self.0.node)
            .finish_non_exhaustive()
    }
}

impl TcpMonitor {
    /// The transport's counters.
    pub fn stats(&self) -> &TcpStats {
        &self.0.stats
    }

    /// The last refused connection or protocol error, with its reason.
    pub fn last_refusal(&self) -> Option<String> {
        self.0
            .last_refusal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Authenticated inbound connections open now.
    pub fn inbound_connections(&self) -> usize {
        self.0.inbound().len()
    }

    /// Whether the transport runs without TLS.
    pub fn is_insecure(&self) -> bool {
        self.0.tls.is_none()
    }

    /// Reloads the certificate files now (on SIGHUP, say); the transport also does so by
    /// itself within a second of a change. New connections use them; on an error the
    /// previous ones stay in use. `Ok` without TLS.
    pub fn reload_tls(&self) -> Result<(), TransportError> {
        match &self.0.tls {
            None => Ok(()),
            Some(tls) => {
                let outcome = tls.reload();
                let counter = match outcome {
                    Ok(()) => &self.0.stats.tls_reloads,
                    Err(_) => &self.0.stats.tls_reload_failures,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                outcome
            }
        }
    }
}

struct Peer {
    queue: Sender<Message>,
    thread: JoinHandle<()>,
}

/// A running TCP transport. Dropping it (or [`Transport::shut_down`]) stops its threads.
pub struct TcpTransport {
    shared: Arc<Shared>,
    local: SocketAddr,
    peers: HashMap<u64, Peer>,
    listener: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("node", &self.shared.node)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl TcpTransport {
    /// Loads the certificates, binds the listening socket and starts the threads. Unreadable
    /// or unsafe certificate files are an error naming the file; so is a port in use.
    pub fn bind(config: TcpConfig, inbox: Inbox) -> Result<TcpTransport, TransportError> {
        let tls = match config.security {
            Security::Tls(files) => Some(TlsState::load(
                files,
                Identity {
                    cluster: config.cluster,
                    node: config.node,
                },
            )?),
            Security::Insecure => {
                log::warn!(
                    "fencekit tcp node {}: INSECURE: peers are not authenticated and traffic is \
                     not encrypted; anyone who reaches {} can join the group and obtain tokens",
                    config.node,
                    config.listen
                );
                None
            }
        };
        let listener =
            TcpListener::bind(config.listen).map_err(|source| TransportError::Listen {
                address: config.listen.to_string(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| TransportError::Io {
            op: "local address",
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| TransportError::Io {
                op: "listener",
                source,
            })?;
        let mut members: HashSet<u64> = config.peers.iter().map(|(id, _)| id.get()).collect();
        members.insert(config.node.get());
        let shared = Arc::new(Shared {
            cluster: config.cluster,
            node: config.node,
            tls,
            members: Mutex::new(members),
            stop: AtomicBool::new(false),
            stats: TcpStats::default(),
            last_refusal: Mutex::new(None),
            log_gate: Mutex::new(LogGate::default()),
            handshakes: Mutex::new(VecDeque::new()),
            opening_threads: AtomicUsize::new(0),
            inbound: Mutex::new(Vec::new()),
            next_serial: AtomicU64::new(0),
        });
        let accept_shared = shared.clone();
        let listener = std::thread::Builder::new()
            .name(format!("fencekit-tcp-accept-{}", config.node))
            .spawn(move || accept_loop(listener, accept_shared, inbox))
            .map_err(|source| TransportError::Io {
                op: "spawn",
                source,
            })?;
        let mut transport = TcpTransport {
            shared,
            local,
            peers: HashMap::new(),
            listener: Some(listener),
        };
        for (id, address) in &config.peers {
            if *id != config.node {
                transport.connect(*id, address.clone());
            }
        }
        Ok(transport)
    }

    /// The address the transport listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A handle on the transport's counters and last refusal, usable after the transport
    /// was handed to a node.
    pub fn monitor(&self) -> TcpMonitor {
        TcpMonitor(self.shared.clone())
    }

    fn connect(&mut self, id: NodeId, address: String) {
        let (tx, rx) = bounded(PEER_QUEUE_MAX);
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("fencekit-tcp-send-{}-{id}", shared.node))
            .spawn(move || send_loop(shared, id, address, rx));
        match spawned {
            Ok(thread) => {
                self.peers.insert(id.get(), Peer { queue: tx, thread });
            }
            Err(e) => self
                .shared
                .refuse(format!("cannot start a sender for node {id}: {e}")),
        }
    }

    fn disconnect(&mut self, id: u64) {
        if let Some(peer) = self.peers.remove(&id) {
            finish_senders(vec![peer]);
        }
    }
}

impl Transport for TcpTransport {
    fn send(&mut self, message: Message) {
        let Some(peer) = self.peers.get(&message.to) else {
            self.shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            peer.queue.try_send(message)
        {
            self.shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn set_peer(&mut self, id: NodeId, address: Option<&str>) {
        if id == self.shared.node {
            return;
        }
        let mut members = self
            .shared
            .members
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match address {
            Some(address) => {
                members.insert(id.get());
                drop(members);
                self.disconnect(id.get());
                self.connect(id, address.to_string());
            }
            None => {
                members.remove(&id.get());
                drop(members);
                self.disconnect(id.get());
                // A member that left speaks no more.
                for inbound in self.shared.inbound().iter().filter(|i| i.peer == id.get()) {
                    let _ = inbound.socket.shutdown(Shutdown::Both);
                }
            }
        }
    }

    fn shut_down(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        finish_senders(self.peers.drain().map(|(_, peer)| peer).collect());
        for inbound in self.shared.inbound().drain(..) {
            let _ = inbound.socket.shutdown(Shutdown::Both);
        }
        for opening in self.shared.handshakes().iter() {
            let _ = opening.socket.shutdown(Shutdown::Both);
        }
        if let Some(listener) = self.listener.take() {
            let _ = listener.join();
        }
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Closes the senders' queues and joins those that end within [`SENDER_STOP_WAIT`].
fn finish_senders(peers: Vec<Peer>) {
    let threads: Vec<JoinHandle<()>> = peers
        .into_iter()
        .map(|peer| {
            drop(peer.queue);
            peer.thread
        })
        .collect();
    let deadline = Instant::now() + SENDER_STOP_WAIT;
    while Instant::now() < deadline && !threads.iter().all(JoinHandle::is_finished) {
        std::thread::sleep(Duration::from_millis(1));
    }
    for thread in threads {
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

fn send_loop(shared: Arc<Shared>, to: NodeId, address: String, queue: Receiver<Message>) {
    let mut backoff = BACKOFF_MIN;
    let mut encoded = Vec::new();
    // A message taken from the queue just before the connection turned out closed: it goes
    // out first on the next one.
    let mut carried: Option<Message> = None;
    // The first failure to reach the peer is a warning (an address with a typo must not pass
    // unnoticed); the retries that follow are debug records until a connection succeeds.
    let mut unreachable_reported = false;
    'connect: while !shared.stop.load(Ordering::SeqCst) {
        let connection = match dial(&shared, to, &address) {
            Ok(connection) => connection,
            Err(DialError { reason, refused }) => {
                if refused {
                    shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                    shared.refuse(reason);
                } else if !unreachable_reported {
                    unreachable_reported = true;
                    log::warn!(
                        "fencekit tcp node {}: {reason}; retrying (until it connects, further \
                         failures are logged at debug level)",
                        shared.node
                    );
                } else {
                    log::debug!("fencekit tcp node {}: {reason}", shared.node);
                }
                // Wait out the backoff, but drain the queue meanwhile: stale messages are
                // useless once we reconnect, and a full queue would drop fresh ones.
                carried = None;
                let deadline = Instant::now() + backoff;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match queue.recv_timeout(left) {
                        Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        // A dial that outlived the transport's stop (a slow name lookup) sends nothing.
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        backoff = BACKOFF_MIN;
        unreachable_reported = false;
        let socket = match connection.socket().try_clone() {
            Ok(socket) => socket,
            Err(_) => continue,
        };
        let mut out = BufWriter::new(connection);
        let mut last_write = Instant::now();
        loop {
            let wait = POLL.min(KEEPALIVE_INTERVAL.saturating_sub(last_write.elapsed()));
            let received = match carried.take() {
                Some(message) => Ok(message),
                None => queue.recv_timeout(wait),
            };
            let first = match received {
                Ok(message) => Some(message),
                Err(RecvTimeoutError::Timeout) => {
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if last_write.elapsed() < KEEPALIVE_INTERVAL {
                        continue;
                    }
                    None
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if peer_gone(&socket) {
                log::debug!(
                    "fencekit tcp node {}: node {to} closed the connection; reconnecting",
                    shared.node
                );
                carried = first;
                continue 'connect;
            }
            let mut result = match first {
                Some(message) => encode_and_write(&mut out, &message, &mut encoded),
                None => wire::write_frame(&mut out, &[]),
            };
            // Batch what is already queued into the same flush.
            while result.is_ok() {
                match queue.try_recv() {
                    Ok(message) => result = encode_and_write(&mut out, &message, &mut encoded),
                    Err(_) => break,
                }
            }
            if let Err(e) = result.and_then(|()| out.flush()) {
                log::debug!("fencekit tcp node {}: lost node {to}: {e}", shared.node);
                continue 'connect;
            }
            last_write = Instant::now();
        }
    }
}

fn encode_and_write(
    out: &mut impl Write,
    message: &Message,
    encoded: &mut Vec<u8>,
) -> io::Result<()> {
    encoded.clear();
    message
        .write_to_vec(encoded)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    wire::write_frame(out, encoded)
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, inbox: Inbox) {
    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    let mut next_reload_check = Instant::now() + TLS_RELOAD_CHECK;
    while !shared.stop.load(Ordering::SeqCst) {
        if Instant::now() >= next_reload_check {
            next_reload_check = Instant::now() + TLS_RELOAD_CHECK;
            reload_if_changed(&shared);
        }
        match listener.accept() {
            Ok((stream, from)) => {
                let Some(serial) = admit(&shared, &stream) else {
                    continue;
                };
                let worker = shared.clone();
                let inbox = inbox.clone();
                shared.opening_threads.fetch_add(1, Ordering::SeqCst);
                let spawned = std::thread::Builder::new()
                    .name(format!("fencekit-tcp-recv-{}", shared.node))
                    .spawn(move || receive(stream, from, serial, &worker, &inbox));
                match spawned {
                    Ok(reader) => readers.push(reader),
                    Err(e) => {
                        // The thread never ran: its handshake is over.
                        shared.opening_threads.fetch_sub(1, Ordering::SeqCst);
                        shared.handshake_done(serial);
                        log::warn!("fencekit tcp: cannot start a reading thread: {e}");
                    }
                }
                readers.retain(|r| !r.is_finished());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL / 10),
            Err(e) => {
                log::warn!("fencekit tcp node {}: accept: {e}", shared.node);
                std::thread::sleep(POLL);
            }
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
}

fn reload_if_changed(shared: &Shared) {
    let Some(tls) = &shared.tls else {
        return;
    };
    match tls.reload_if_changed() {
        None => {}
        Some(Ok(())) => {
            shared.stats.tls_reloads.fetch_add(1, Ordering::Relaxed);
            log::info!(
                "fencekit tcp node {}: certificates reloaded for {}",
                shared.node,
                tls.me()
            );
        }
        Some(Err(e)) => {
            shared
                .stats
                .tls_reload_failures
                .fetch_add(1, Ordering::Relaxed);
            shared.refuse(format!(
                "the replaced certificates do not load ({e}); the previous ones stay in use"
            ));
        }
    }
}

/// Records a new connection as a handshake in progress. At the bound, the oldest handshake in
/// progress is cut off: a stranger who holds connections open (silent, or a byte at a time)
/// cannot lock members out, since a member's handshake takes milliseconds and would have to
/// be outlasted by `HANDSHAKES_MAX` newer connections. `None`: the connection is unusable.
fn admit(shared: &Shared, stream: &TcpStream) -> Option<u64> {
    // Threads of openings cut off may still be on their way out: beyond twice the bound, the
    // new connection waits for none of them and is closed.
    if shared.opening_threads.load(Ordering::SeqCst) >= 2 * HANDSHAKES_MAX {
        shared.stats.shed.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let socket = stream.try_clone().ok()?;
    let serial = shared.next_serial.fetch_add(1, Ordering::Relaxed);
    let mut pending = shared.handshakes();
    if pending.len() >= HANDSHAKES_MAX
        && let Some(oldest) = pending.pop_front()
    {
        let _ = oldest.socket.shutdown(Shutdown::Both);
        shared.stats.shed.fetch_add(1, Ordering::Relaxed);
    }
    pending.push_back(Inbound {
        peer: 0,
        serial,
        socket,
    });
    Some(serial)
}

/// Serves one inbound connection until it closes, breaks the protocol, idles past
/// `IDLE_MAX`, or the transport stops.
fn receive(stream: TcpStream, from_addr: SocketAddr, serial: u64, shared: &Shared, inbox: &Inbox) {
    let accepted = connection::accept(shared, stream);
    shared.opening_threads.fetch_sub(1, Ordering::SeqCst);
    if !shared.handshake_done(serial) {
        // Cut off to admit a newer connection: counted as shed, not refused.
        return;
    }
    let (peer, connection) = match accepted {
        Ok(accepted) => accepted,
        Err(refusal) => {
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            let who = if refusal.authenticated {
                "a certified peer"
            } else {
                "a stranger"
            };
            shared.refuse(format!(
                "refused a connection from {from_addr} ({who}): {}",
                refusal.reason
            ));
            return;
        }
    };
    let Some(serial) = register(shared, peer, connection.socket()) else {
        return;
    };
    let socket = match connection.socket().try_clone() {
        Ok(socket) => socket,
        Err(_) => return,
    };
    // A frame is a length and a body: buffered, a batch of frames costs a read or two, not
    // several per frame.
    let mut connection = io::BufReader::new(connection);
    let mut buf = Vec::new();
    loop {
        let read = wire::read_frame(&mut connection, &mut buf, FRAME_MAX);
        match read {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                shared.stats.broken.fetch_add(1, Ordering::Relaxed);
                shared.refuse(format!("closed the connection from node {peer}: {e}"));
                break;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                shared.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                log::debug!(
                    "fencekit tcp node {}: closed the idle connection from node {peer}",
                    shared.node
                );
                break;
            }
            // The peer went away (restart, reset) or the transport is stopping.
            Err(e) => {
                log::debug!("fencekit tcp node {}: node {peer} left: {e}", shared.node);
                break;
            }
        }
        if buf.capacity() > BUFFER_KEEP_MAX && buf.len() <= BUFFER_KEEP_MAX {
            buf.shrink_to(BUFFER_KEEP_MAX);
        }
        if buf.is_empty() {
            continue; // a keepalive
        }
        if wire::entries_in(&buf).is_none_or(|n| n > ENTRIES_PER_MESSAGE_MAX) {
            shared.stats.broken.fetch_add(1, Ordering::Relaxed);
            shared.refuse(format!(
                "node {peer} sent a message that is not one, or holds more than \
                 {ENTRIES_PER_MESSAGE_MAX} entries; closing"
            ));
            break;
        }
        let message = match Message::parse_from_bytes(&buf) {
            Ok(message) => message,
            Err(e) => {
                shared.stats.broken.fetch_add(1, Ordering::Relaxed);
                shared.refuse(format!("malformed message from node {peer}: {e}"));
                break;
            }
        };
        if message.from != peer.get() || message.to != shared.node.get() {
            shared.stats.broken.fetch_add(1, Ordering::Relaxed);
            shared.refuse(format!(
                "node {peer} sent a message from {} to {}; closing",
                message.from, message.to
            ));
            break;
        }
        if !inbox.deliver(message) {
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
    let _ = socket.shutdown(Shutdown::Both);
    shared.inbound().retain(|i| i.serial != serial);
}

/// Records an authenticated connection from `peer`, closing its oldest beyond
/// `PEER_CONNECTIONS_MAX` (a restarted peer's old connection may linger until its FIN or the
/// idle bound; the new one is the live one). `None`: the transport is stopping.
fn register(shared: &Shared, peer: NodeId, socket: &TcpStream) -> Option<u64> {
    let clone = socket.try_clone().ok()?;
    let serial = shared.next_serial.fetch_add(1, Ordering::Relaxed);
    let mut inbound = shared.inbound();
    // Checked under the lock that shut_down drains: a stop that began before this
    // registration would not shut the connection down.
    if shared.stop.load(Ordering::SeqCst) {
        return None;
    }
    while inbound.iter().filter(|i| i.peer == peer.get()).count() >= PEER_CONNECTIONS_MAX {
        let Some(at) = inbound.iter().position(|i| i.peer == peer.get()) else {
            break;
        };
        let _ = inbound.remove(at).socket.shutdown(Shutdown::Both);
    }
    inbound.push(Inbound {
        peer: peer.get(),
        serial,
        socket: clone,
    });
    Some(serial)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::HANDSHAKE_TIMEOUT;
    use crate::node::driver::Input;

    fn inbox(n: u64) -> (Inbox, Receiver<Input>) {
        let (tx, rx) = bounded(16);
        let inbox = Inbox {
            to: NodeId::new(n).expect("node id"),
            input: tx,
        };
        (inbox, rx)
    }

    fn transport(
        n: u64,
        listen: SocketAddr,
        peer: (u64, SocketAddr),
        inbox: Inbox,
        certs: Option<&std::path::Path>,
    ) -> TcpTransport {
        let node = NodeId::new(n).expect("node id");
        let config = TcpConfig {
            cluster: ClusterId::new(7),
            node,
            listen,
            peers: vec![(NodeId::new(peer.0).expect("node id"), peer.1.to_string())],
            security: match certs {
                Some(dir) => Security::Tls(TlsFiles::in_dir(dev_certs::node_dir(dir, node))),
                None => Security::Insecure,
            },
        };
        TcpTransport::bind(config, inbox).expect("bind")
    }

    fn message(n: u64) -> Message {
        Message {
            from: 1,
            to: 2,
            term: n,
            ..Default::default()
        }
    }

    fn received(rx: &Receiver<Input>) -> Option<u64> {
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(Input::Peer(m)) => Some(m.term),
            _ => None,
        }
    }

    /// A connection whose peer restarted is noticed before a message is written into it: the
    /// peer's old socket is gone, so a message written there would be lost (the kernel
    /// answers with a reset), and with an idle link nothing would retry it until Raft's next
    /// election timeout. Here the first message after the restart must arrive.
    #[test]
    fn the_first_message_after_a_peer_restart_is_not_lost() {
        let certs = tempfile::tempdir().expect("a directory");
        let ids = [1, 2].map(|n| NodeId::new(n).expect("node id"));
        dev_certs::init(certs.path(), ClusterId::new(7), &ids).expect("certificates");
        first_message_after_restart(None);
        first_message_after_restart(Some(certs.path()));
    }

    /// Connections a stranger holds open in their opening (silent: no deadline has passed
    /// yet) do not lock a member out: the member's connection cuts off the oldest of them and
    /// its message arrives at once, not after the stranger's handshakes time out.
    #[test]
    fn held_connections_do_not_lock_a_member_out() {
        let a_addr = "127.0.0.1:0".parse().expect("addr");
        let b_addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let (b_inbox, b_rx) = inbox(2);
        let _b = transport(2, b_addr, (1, a_addr), b_inbox, None);
        let held: Vec<TcpStream> = (0..HANDSHAKES_MAX + 8)
            .map(|_| TcpStream::connect(b_addr).expect("connect"))
            .collect();
        // Let B accept them all: every opening slot is taken by a silent stranger.
        std::thread::sleep(Duration::from_millis(300));
        let (a_inbox, _a_rx) = inbox(1);
        let mut a = transport(1, a_addr, (2, b_addr), a_inbox, None);
        a.send(message(7));
        let arrived = b_rx.recv_timeout(HANDSHAKE_TIMEOUT / 2);
        assert!(
            matches!(arrived, Ok(Input::Peer(ref m)) if m.term == 7),
            "the member's message waited for the strangers' handshakes to time out"
        );
        drop(held);
    }

    fn first_message_after_restart(certs: Option<&std::path::Path>) {
        let a_addr = "127.0.0.1:0".parse().expect("addr");
        let b_addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let (a_inbox, _a_rx) = inbox(1);
        let (b_inbox, b_rx) = inbox(2);
        let mut b = transport(2, b_addr, (1, a_addr), b_inbox, certs);
        let mut a = transport(1, a_addr, (2, b_addr), a_inbox, certs);
        a.send(message(1));
        assert_eq!(received(&b_rx), Some(1));

        b.shut_down();
        drop(b);
        let (b_inbox, b_rx) = inbox(2);
        let _b = transport(2, b_addr, (1, a_addr), b_inbox, certs);
        // Long enough for the old connection's end to reach A, short of a keepalive.
        std::thread::sleep(Duration::from_millis(300));
        a.send(message(2));
        assert_eq!(
            received(&b_rx),
            Some(2),
            "the first message after the restart was lost (TLS: {})",
            certs.is_some()
        );
    }
}
