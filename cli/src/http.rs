//! The HTTP servers behind `fencekit node` and `fencekit store`: hyper on a small tokio
//! runtime, every request handled on a blocking thread (the kernel is synchronous), with the
//! limits of [`limits`] on what a client may send, how long it may take, and how many may be
//! served at once. Overload is answered with 503, never by hanging.

mod limits;
mod request;
mod service;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};

pub(crate) use limits::Limits;
pub(crate) use request::{Reply, Request};

/// What answers requests.
#[derive(Clone)]
pub(crate) enum Handler {
    /// A function that may block (on a node's thread, say): run on a blocking thread.
    Blocking(Arc<dyn Fn(&Request) -> Reply + Send + Sync>),
    /// A function that never blocks, run where the request was read: it answers at once, or
    /// hands the request to a thread of its own that answers later (the store's committer),
    /// with no thread held while it waits.
    Deferring(Arc<dyn Fn(&Request) -> Handled + Send + Sync>),
}

/// A [`Handler::Deferring`]'s answer.
pub(crate) enum Handled {
    Now(Reply),
    /// Sent when ready; a dropped sender is answered 500.
    Later(tokio::sync::oneshot::Receiver<Reply>),
}

/// Where a listener listens.
#[derive(Clone, Debug)]
pub(crate) enum Bind {
    Tcp(SocketAddr),
    /// A Unix socket, made readable and writable by this user only.
    Unix(PathBuf),
}

impl From<SocketAddr> for Bind {
    fn from(addr: SocketAddr) -> Bind {
        Bind::Tcp(addr)
    }
}

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bind::Tcp(addr) => write!(f, "{addr}"),
            Bind::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// One address to serve, and how.
pub(crate) struct Listener {
    pub(crate) addr: Bind,
    /// The flag that chose the address, for errors.
    pub(crate) what: &'static str,
    /// HTTPS with this configuration (it says whether clients must show certificates).
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) handler: Handler,
}

/// Running servers; dropping them stops them.
pub(crate) struct Server {
    runtime: Option<tokio::runtime::Runtime>,
    addrs: Vec<Bind>,
    /// Unix sockets this server made, removed when it stops.
    sockets: Vec<PathBuf>,
}

/// A bound socket, not yet served.
enum Bound {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// Binds a Unix socket at `path` that only this user can connect to. A socket file left by a
/// process that is gone is replaced; anything else at `path` is refused, not removed.
fn bind_unix(path: &Path, what: &str) -> Result<(std::os::unix::net::UnixListener, PathBuf)> {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    use std::os::unix::net::{UnixListener, UnixStream};
    let fail = |why: String| anyhow!("cannot listen on unix:{} ({what}): {why}", path.display());
    // Whoever may write a directory on the way could put a socket of their own in its place
    // and answer for the node.
    fencekit::transport::tcp::tls::check_private_path(path).map_err(fail)?;
    // Bound (and later removed) where the path leads now, not through links that could move.
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(fail(
            "give a socket's path, a directory and a file name".into(),
        ));
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let path = std::fs::canonicalize(dir)
        .map_err(|e| fail(format!("{}: {e}", dir.display())))?
        .join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(&path).is_ok() {
                return Err(fail(format!(
                    "another process serves it (the socket belongs to uid {}); if that is not \
                     this node's user, someone took the name while the node was down: use a \
                     directory of the node's own, such as /run/fencekit (0700)",
                    meta.uid()
                )));
            }
            std::fs::remove_file(&path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?;
        }
        Ok(_) => {
            return Err(fail(
                "it exists and is not a socket; choose another path".into(),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    // The socket is made 0600 from its first instant: a umask, not a chmod after the bind
    // (which would leave a moment when others may connect). Files other threads create
    // meanwhile are made no more open than 0600, which is how fencekit makes its files.
    // SAFETY: umask has no memory effects; it is restored right after.
    let previous = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(&path);
    // SAFETY: as above.
    unsafe { libc::umask(previous) };
    Ok((bound.map_err(|e| fail(e.to_string()))?, path))
}

impl Server {
    /// Binds every listener (failing, naming its flag, if one cannot be bound), then serves
    /// them all with `limits`.
    pub(crate) fn start(listeners: Vec<Listener>, limits: Limits) -> Result<Server> {
        let mut bound = Vec::new();
        let mut sockets = Vec::new();
        for listener in listeners {
            let socket = match &listener.addr {
                Bind::Tcp(addr) => {
                    let socket = std::net::TcpListener::bind(addr).map_err(|e| {
                        anyhow!(
                            "cannot listen on {addr} ({}): {e}; is another process using the \
                             port?",
                            listener.what
                        )
                    })?;
                    socket.set_nonblocking(true)?;
                    Bound::Tcp(socket)
                }
                Bind::Unix(path) => {
                    let (socket, bound) = bind_unix(path, listener.what)?;
                    sockets.push(bound);
                    socket.set_nonblocking(true)?;
                    Bound::Unix(socket)
                }
            };
            bound.push((socket, listener));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            // Blocking handlers (a node's status) run here, bounded by the in-flight limit,
            // not on the workers.
            .max_blocking_threads(limits.in_flight_max + 8)
            .thread_name("http")
            .enable_io()
            .enable_time()
            .build()
            .context("starting the HTTP runtime")?;
        let mut addrs = Vec::new();
        for (socket, listener) in bound {
            let _entered = runtime.enter();
            match socket {
                Bound::Tcp(socket) => {
                    addrs.push(Bind::Tcp(socket.local_addr()?));
                    let socket = tokio::net::TcpListener::from_std(socket)?;
                    runtime.spawn(service::accept_loop(socket, listener, limits.clone()));
                }
                Bound::Unix(socket) => {
                    addrs.push(listener.addr.clone());
                    let socket = tokio::net::UnixListener::from_std(socket)?;
                    runtime.spawn(service::accept_loop(socket, listener, limits.clone()));
                }
            }
        }
        Ok(Server {
            runtime: Some(runtime),
            addrs,
            sockets,
        })
    }

    /// The address the `i`th listener is bound to (its port, if it asked for port 0).
    pub(crate) fn addr(&self, i: usize) -> &Bind {
        &self.addrs[i]
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        }
        for path in &self.sockets {
            let _ = std::fs::remove_file(path);
        }
    }
}
