//! Opening a connection, from either side: TCP, then TLS (unless insecure), then the
//! handshake, all under one deadline. After that a [`Connection`] is a byte stream.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection, StreamOwned};

use crate::limits::ANSWER_MAX;
use crate::limits::{CONNECT_TIMEOUT, HANDSHAKE_TIMEOUT, IDLE_MAX};
use crate::token::NodeId;
use crate::transport::tcp::Shared;
use crate::transport::tcp::socket::Socket;
use crate::transport::tcp::tls::{Identity, identity_of};
use crate::transport::tcp::wire::{ACCEPTED, Handshake, read_frame, write_frame};

/// An established connection: plaintext, or either side of a TLS session.
pub(crate) enum Connection {
    Plain(TcpStream),
    Client(Box<StreamOwned<ClientConnection, Socket>>),
    Server(Box<StreamOwned<ServerConnection, Socket>>),
}

impl Connection {
    /// The TCP socket underneath.
    pub(crate) fn socket(&self) -> &TcpStream {
        match self {
            Connection::Plain(s) => s,
            Connection::Client(s) => &s.sock.0,
            Connection::Server(s) => &s.sock.0,
        }
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Connection::Plain(s) => s.read(buf),
            Connection::Client(s) => s.read(buf),
            Connection::Server(s) => s.read(buf),
        }
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Connection::Plain(s) => s.write(buf),
            Connection::Client(s) => s.write(buf),
            Connection::Server(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Connection::Plain(s) => s.flush(),
            Connection::Client(s) => s.flush(),
            Connection::Server(s) => s.flush(),
        }
    }
}

/// A socket whose reads and writes fail once `until` has passed: one deadline for a whole
/// handshake, however slowly the peer trickles its bytes.
struct Deadline<'a> {
    socket: &'a TcpStream,
    until: Instant,
}

impl Deadline<'_> {
    fn left(&self) -> io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the handshake took longer than {HANDSHAKE_TIMEOUT:?}"),
            ));
        }
        Ok(left)
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.set_read_timeout(Some(self.left()?))?;
        (&mut &*self.socket).read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.socket.set_write_timeout(Some(self.left()?))?;
        (&mut &*self.socket).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs a TLS handshake to its end under `io`'s deadline.
fn complete<C, D>(conn: &mut C, io: &mut Deadline<'_>) -> io::Result<()>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>>,
{
    while conn.is_handshaking() {
        conn.complete_io(io)?;
    }
    // The last flight (the client's Finished) must leave before the handshake frame.
    while conn.wants_write() {
        conn.write_tls(io)?;
    }
    Ok(())
}

/// Why a connection to a peer failed. `refused`: the peer answered and said no (or named
/// itself as someone else), rather than being unreachable.
pub(crate) struct DialError {
    pub(crate) reason: String,
    pub(crate) refused: bool,
}

impl DialError {
    fn unreachable(reason: String) -> DialError {
        DialError {
            reason,
            refused: false,
        }
    }
}

/// Connects to node `to` at `address` and completes TLS and the handshake.
pub(crate) fn dial(shared: &Shared, to: NodeId, address: &str) -> Result<Connection, DialError> {
    let addr = address
        .to_socket_addrs()
        .map_err(|e| DialError::unreachable(format!("node {to} address {address:?}: {e}")))?
        .next()
        .ok_or_else(|| {
            DialError::unreachable(format!("node {to} address {address:?} resolves to nothing"))
        })?;
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|e| DialError::unreachable(format!("connect to node {to} at {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let mut io = Deadline {
        socket: &stream,
        until: Instant::now() + HANDSHAKE_TIMEOUT,
    };
    let handshake = Handshake {
        cluster: shared.cluster,
        from: shared.node.get(),
        to: to.get(),
    };
    let fail =
        |e: io::Error| DialError::unreachable(format!("handshake with node {to} at {addr}: {e}"));
    let mut answer = Vec::new();
    let mut tls = match &shared.tls {
        None => {
            io.write_all(&handshake.encode()).map_err(fail)?;
            read_answer(&mut io, &mut answer).map_err(fail)?;
            None
        }
        Some(tls) => {
            let name = ServerName::IpAddress(addr.ip().into());
            let mut conn = ClientConnection::new(tls.current().client.clone(), name)
                .map_err(|e| DialError::unreachable(format!("TLS with node {to}: {e}")))?;
            complete(&mut conn, &mut io).map_err(fail)?;
            // The chain verified against the group's CA; now, is it the node we dialled?
            let expected = Identity {
                cluster: shared.cluster,
                node: to,
            };
            let named = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| identity_of(c))
                .unwrap_or_else(|| Err("no certificate".into()));
            match named {
                Ok(named) if named == expected => {}
                Ok(named) => {
                    return Err(DialError {
                        reason: format!(
                            "{addr} presented the certificate of {named}, not of {expected}"
                        ),
                        refused: true,
                    });
                }
                Err(e) => {
                    return Err(DialError {
                        reason: format!("{addr}'s certificate: {e}"),
                        refused: true,
                    });
                }
            }
            let mut stream_io = rustls::Stream::new(&mut conn, &mut io);
            stream_io.write_all(&handshake.encode()).map_err(fail)?;
            stream_io.flush().map_err(fail)?;
            read_answer(&mut stream_io, &mut answer).map_err(fail)?;
            Some(conn)
        }
    };
    if answer != ACCEPTED {
        let reason = String::from_utf8_lossy(answer.strip_prefix(b"NO").unwrap_or(&answer))
            .trim()
            .to_string();
        let reason = if reason.is_empty() {
            "no reason given (its log says why)".into()
        } else {
            reason
        };
        return Err(DialError {
            reason: format!("node {to} at {addr} refused this node: {reason}"),
            refused: true,
        });
    }
    // A peer that stops reading must not block the sending thread for ever.
    let _ = stream.set_write_timeout(Some(IDLE_MAX));
    let _ = stream.set_read_timeout(None);
    Ok(match tls.take() {
        None => Connection::Plain(stream),
        Some(conn) => Connection::Client(Box::new(StreamOwned::new(conn, Socket(stream)))),
    })
}

fn read_answer(input: &mut impl Read, answer: &mut Vec<u8>) -> io::Result<()> {
    if !read_frame(input, answer, ANSWER_MAX)? {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "closed the connection at the handshake",
        ));
    }
    Ok(())
}

/// Why an inbound connection was refused, and whether the peer had proved who it is (only
/// then is it told why).
pub(crate) struct Refusal {
    pub(crate) reason: String,
    pub(crate) authenticated: bool,
}

/// Takes an inbound connection through TLS and the handshake. On success, the peer's node id
/// and the connection, reading with the idle timeout.
pub(crate) fn accept(shared: &Shared, stream: TcpStream) -> Result<(NodeId, Connection), Refusal> {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let mut io = Deadline {
        socket: &stream,
        until: Instant::now() + HANDSHAKE_TIMEOUT,
    };
    let stranger = |reason: String| Refusal {
        reason,
        authenticated: false,
    };
    let (handshake, certified, tls) = match &shared.tls {
        None => {
            let handshake = Handshake::read(&mut io).map_err(|e| stranger(e.to_string()))?;
            (handshake, None, None)
        }
        Some(tls) => {
            let mut conn = ServerConnection::new(tls.current().server.clone())
                .map_err(|e| stranger(format!("TLS: {e}")))?;
            complete(&mut conn, &mut io).map_err(|e| stranger(format!("TLS handshake: {e}")))?;
            let certified = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| identity_of(c))
                .unwrap_or_else(|| Err("no client certificate".into()))
                .map_err(|e| stranger(format!("its certificate: {e}")))?;
            let handshake = Handshake::read(&mut rustls::Stream::new(&mut conn, &mut io))
                .map_err(|e| stranger(e.to_string()))?;
            (handshake, Some(certified), Some(conn))
        }
    };
    let mut tls = tls;
    let verdict = handshake
        .map_err(|e| e.to_string())
        .and_then(|h| check(shared, &h, certified));
    let answer: Vec<u8> = match &verdict {
        Ok(_) => ACCEPTED.to_vec(),
        // Only a peer whose certificate the CA signed learns why.
        Err(reason) if certified.is_some() => format!("NO {reason}").into_bytes(),
        Err(_) => b"NO".to_vec(),
    };
    let sent = match tls.as_mut() {
        None => write_frame(&mut io, &answer),
        Some(conn) => {
            let mut stream_io = rustls::Stream::new(conn, &mut io);
            write_frame(&mut stream_io, &answer).and_then(|()| stream_io.flush())
        }
    };
    let peer = verdict.map_err(|reason| Refusal {
        reason,
        authenticated: certified.is_some(),
    })?;
    sent.map_err(|e| stranger(format!("answering the handshake: {e}")))?;
    let _ = stream.set_read_timeout(Some(IDLE_MAX));
    let _ = stream.set_write_timeout(Some(IDLE_MAX));
    let connection = match tls {
        None => Connection::Plain(stream),
        Some(conn) => Connection::Server(Box::new(StreamOwned::new(conn, Socket(stream)))),
    };
    Ok((peer, connection))
}

/// Checks a handshake: this cluster, addressed to this node, from a member, and (with TLS)
/// from the node its certificate names.
fn check(shared: &Shared, h: &Handshake, certified: Option<Identity>) -> Result<NodeId, String> {
    if let Some(cert) = certified {
        if cert.cluster != shared.cluster {
            return Err(format!("its certificate is for cluster {}", cert.cluster));
        }
        if cert.node.get() != h.from {
            return Err(format!(
                "it claims to be node {} but its certificate names node {}",
                h.from, cert.node
            ));
        }
    }
    if h.cluster != shared.cluster {
        return Err(format!("cluster {} is not this node's cluster", h.cluster));
    }
    if h.to != shared.node.get() {
        return Err(format!("addressed to node {}, not to this node", h.to));
    }
    let from = NodeId::new(h.from).map_err(|_| "sender id 0".to_string())?;
    let members = shared.members.lock().unwrap_or_else(|p| p.into_inner());
    if from == shared.node || !members.contains(&from.get()) {
        return Err(format!("node {from} is not a member of this group"));
    }
    Ok(from)
}

/// Whether the connecting side's connection has ended: the accepting side never sends
/// anything after its answer, so a readable socket means a FIN, a reset, or a TLS alert.
/// Checked before each batch, so that a peer that restarted is reconnected to before a
/// message is written into a connection it already closed.
pub(crate) fn peer_gone(socket: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut poll = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for a descriptor `socket` keeps open during the call.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready != 0
}
