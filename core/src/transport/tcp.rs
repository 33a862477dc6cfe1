//! The TCP transport: std::net and threads, no async.
//!
//! - Every frame is a little-endian `u32` length and that many bytes; a length above
//!   [`FRAME_MAX`] ends the connection before anything is allocated.
//! - A connection opens with a handshake (`FKT1`, cluster id, sender, receiver). The receiving
//!   side refuses a peer of another cluster, one not in the membership, or a handshake meant
//!   for another node, answers with the reason, logs the refusal and closes.
//! - Each peer has one sending thread and a bounded queue; [`Transport::send`] never blocks: a
//!   full queue drops the message (Raft retransmits). The sender reconnects with exponential
//!   backoff.
//! - Each accepted connection has a reading thread that decodes messages and hands them to the
//!   node's [`Inbox`]; a malformed message, or one claiming another sender, ends the connection.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use protobuf::Message as _;
use raft::eraftpb::Message;

use crate::error::Error;
use crate::limits::{FRAME_MAX, PEER_QUEUE_MAX};
use crate::token::NodeId;
use crate::transport::{Inbox, Transport};

const MAGIC: &[u8; 4] = b"FKT1";
const HANDSHAKE_LEN: usize = 4 + 8 + 8 + 8;
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(100);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How to run one node's TCP transport.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// The group's id; peers of another cluster are refused.
    pub cluster: u64,
    /// This node.
    pub node: NodeId,
    /// Where to listen (port 0: any free port; see [`TcpTransport::local_addr`]).
    pub listen: SocketAddr,
    /// The other members and their addresses.
    pub peers: Vec<(NodeId, String)>,
}

/// Counters of the transport, for status and metrics.
#[derive(Debug, Default)]
pub struct TcpStats {
    /// Messages dropped because a peer's queue was full or the peer is unknown.
    pub dropped: AtomicU64,
    /// Connections refused at the handshake.
    pub refused: AtomicU64,
    /// Connections ended for a protocol violation (bad frame, bad message).
    pub broken: AtomicU64,
}

struct Shared {
    cluster: u64,
    node: NodeId,
    members: Mutex<HashSet<u64>>,
    stop: AtomicBool,
    stats: TcpStats,
    /// The last refusal or protocol error, for tests and operators.
    last_refusal: Mutex<Option<String>>,
    /// Accepted connections, shut down on stop to end their blocking reads.
    inbound: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn refuse(&self, reason: String) {
        log::warn!("fencekit tcp node {}: {reason}", self.node);
        *self.last_refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
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
    /// Binds the listening socket and starts the threads. A port in use is an error naming
    /// the address.
    pub fn bind(config: TcpConfig, inbox: Inbox) -> Result<TcpTransport, Error> {
        let listener = TcpListener::bind(config.listen)
            .map_err(|e| Error::Transport(format!("cannot listen on {}: {e}", config.listen)))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::Transport(format!("local address: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::Transport(format!("listener: {e}")))?;
        let mut members: HashSet<u64> = config.peers.iter().map(|(id, _)| id.get()).collect();
        members.insert(config.node.get());
        let shared = Arc::new(Shared {
            cluster: config.cluster,
            node: config.node,
            members: Mutex::new(members),
            stop: AtomicBool::new(false),
            stats: TcpStats::default(),
            last_refusal: Mutex::new(None),
            inbound: Mutex::new(Vec::new()),
        });
        let accept_shared = shared.clone();
        let listener = std::thread::Builder::new()
            .name(format!("fencekit-tcp-accept-{}", config.node))
            .spawn(move || accept_loop(listener, accept_shared, inbox))
            .map_err(|e| Error::Transport(format!("spawn: {e}")))?;
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
            drop(peer.queue);
            let _ = peer.thread.join();
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
            }
        }
    }

    fn shut_down(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let ids: Vec<u64> = self.peers.keys().copied().collect();
        for id in ids {
            self.disconnect(id);
        }
        for stream in self
            .shared
            .inbound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = stream.shutdown(Shutdown::Both);
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

fn write_frame(out: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(payload)
}

/// Reads one frame. `Ok(None)`: the peer closed the connection cleanly.
fn read_frame(input: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<()>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > FRAME_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {FRAME_MAX}"),
        ));
    }
    buf.resize(len, 0);
    input.read_exact(buf)?;
    Ok(Some(()))
}

fn handshake_bytes(cluster: u64, from: NodeId, to: NodeId) -> [u8; HANDSHAKE_LEN] {
    let mut out = [0u8; HANDSHAKE_LEN];
    out[..4].copy_from_slice(MAGIC);
    out[4..12].copy_from_slice(&cluster.to_le_bytes());
    out[12..20].copy_from_slice(&from.get().to_le_bytes());
    out[20..28].copy_from_slice(&to.get().to_le_bytes());
    out
}

fn send_loop(shared: Arc<Shared>, to: NodeId, address: String, queue: Receiver<Message>) {
    let mut backoff = BACKOFF_MIN;
    'connect: while !shared.stop.load(Ordering::SeqCst) {
        let stream = match open(&shared, to, &address) {
            Ok(stream) => stream,
            Err(reason) => {
                log::debug!("fencekit tcp node {}: {reason}", shared.node);
                // Wait out the backoff, but drain the queue meanwhile: stale messages are
                // useless once we reconnect, and a full queue would drop fresh ones.
                let deadline = std::time::Instant::now() + backoff;
                loop {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
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
        backoff = BACKOFF_MIN;
        let mut out = BufWriter::new(&stream);
        loop {
            let message = match queue.recv_timeout(POLL) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => {
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut result = encode_and_write(&mut out, &message);
            // Batch what is already queued into the same flush.
            while result.is_ok() {
                match queue.try_recv() {
                    Ok(message) => result = encode_and_write(&mut out, &message),
                    Err(_) => break,
                }
            }
            if let Err(e) = result.and_then(|()| out.flush()) {
                log::debug!("fencekit tcp node {}: lost node {to}: {e}", shared.node);
                continue 'connect;
            }
        }
    }
}

fn encode_and_write(out: &mut impl Write, message: &Message) -> io::Result<()> {
    let bytes = message
        .write_to_bytes()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    write_frame(out, &bytes)
}

/// Connects to `to` and completes the handshake, or says why not.
fn open(shared: &Shared, to: NodeId, address: &str) -> Result<TcpStream, String> {
    let addr = address
        .to_socket_addrs()
        .map_err(|e| format!("node {to} address {address:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("node {to} address {address:?} resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("connect to node {to} at {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    write_frame(
        &mut stream,
        &handshake_bytes(shared.cluster, shared.node, to),
    )
    .map_err(|e| format!("handshake with node {to}: {e}"))?;
    let mut answer = Vec::new();
    match read_frame(&mut stream, &mut answer) {
        Ok(Some(())) if answer == b"OK" => {}
        Ok(Some(())) => {
            let reason = String::from_utf8_lossy(answer.strip_prefix(b"NO ").unwrap_or(&answer));
            let reason = format!("node {to} at {addr} refused this node: {reason}");
            shared.refuse(reason.clone());
            return Err(reason);
        }
        Ok(None) => return Err(format!("node {to} closed the connection at the handshake")),
        Err(e) => return Err(format!("handshake with node {to}: {e}")),
    }
    let _ = stream.set_read_timeout(None);
    Ok(stream)
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, inbox: Inbox) {
    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, from)) => {
                let shared = shared.clone();
                let inbox = inbox.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("fencekit-tcp-recv-{}", shared.node))
                    .spawn(move || receive(stream, from, &shared, &inbox));
                if let Ok(reader) = spawned {
                    readers.push(reader);
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

/// Serves one inbound connection until it closes, breaks the protocol, or the transport stops.
fn receive(stream: TcpStream, from_addr: SocketAddr, shared: &Shared, inbox: &Inbox) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let mut reader = io::BufReader::new(&stream);
    let mut buf = Vec::new();
    let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let peer = match read_frame(&mut reader, &mut buf) {
        Ok(Some(())) => match check_handshake(shared, &buf) {
            Ok(peer) => {
                let _ = write_frame(&mut &stream, b"OK");
                peer
            }
            Err(reason) => {
                shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                shared.refuse(format!("refused a connection from {from_addr}: {reason}"));
                let _ = write_frame(&mut &stream, format!("NO {reason}").as_bytes());
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
        },
        _ => return,
    };
    let _ = stream.set_read_timeout(None);
    match stream.try_clone() {
        Ok(clone) => {
            let mut inbound = shared.inbound.lock().unwrap_or_else(|p| p.into_inner());
            inbound.retain(|s| s.peer_addr().is_ok());
            inbound.push(clone);
        }
        Err(_) => return,
    }
    // A stop that began before the clone was registered would not shut it down.
    if shared.stop.load(Ordering::SeqCst) {
        return;
    }
    loop {
        match read_frame(&mut reader, &mut buf) {
            Ok(Some(())) => {}
            Ok(None) => return,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                shared.stats.broken.fetch_add(1, Ordering::Relaxed);
                shared.refuse(format!("closed the connection from node {peer}: {e}"));
                return;
            }
            // The peer went away (restart, reset) or the transport is stopping.
            Err(e) => {
                log::debug!("fencekit tcp node {}: node {peer} left: {e}", shared.node);
                return;
            }
        }
        let message = match Message::parse_from_bytes(&buf) {
            Ok(message) => message,
            Err(e) => {
                shared.stats.broken.fetch_add(1, Ordering::Relaxed);
                shared.refuse(format!("malformed message from node {peer}: {e}"));
                return;
            }
        };
        if message.from != peer.get() || message.to != shared.node.get() {
            shared.stats.broken.fetch_add(1, Ordering::Relaxed);
            shared.refuse(format!(
                "node {peer} sent a message from {} to {}; closing",
                message.from, message.to
            ));
            return;
        }
        if !inbox.deliver(message) {
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn check_handshake(shared: &Shared, bytes: &[u8]) -> Result<NodeId, String> {
    if bytes.len() != HANDSHAKE_LEN || &bytes[..4] != MAGIC {
        return Err("not a fencekit handshake".into());
    }
    let field = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let (cluster, from, to) = (field(4), field(12), field(20));
    if cluster != shared.cluster {
        return Err(format!(
            "cluster {cluster:#x} is not this node's cluster {:#x}",
            shared.cluster
        ));
    }
    if to != shared.node.get() {
        return Err(format!(
            "addressed to node {to}, but this is node {}",
            shared.node
        ));
    }
    let from = NodeId::new(from).map_err(|_| "sender id 0".to_string())?;
    let members = shared.members.lock().unwrap_or_else(|p| p.into_inner());
    if !members.contains(&from.get()) || from == shared.node {
        return Err(format!("node {from} is not a member of this group"));
    }
    Ok(from)
}
