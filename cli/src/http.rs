//! The HTTP servers behind `fencekit node` and `fencekit store`: hyper on a small tokio
//! runtime, every request handled on a blocking thread (the kernel is synchronous), with the
//! limits of [`limits`] on what a client may send, how long it may take, and how many may be
//! served at once. Overload is answered with 503, never by hanging.

mod limits;
mod request;
mod service;

use std::net::SocketAddr;
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

/// One address to serve, and how.
pub(crate) struct Listener {
    pub(crate) addr: SocketAddr,
    /// The flag that chose the address, for errors.
    pub(crate) what: &'static str,
    /// HTTPS with this configuration (it says whether clients must show certificates).
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) handler: Handler,
}

/// Running servers; dropping them stops them.
pub(crate) struct Server {
    runtime: Option<tokio::runtime::Runtime>,
    addrs: Vec<SocketAddr>,
}

impl Server {
    /// Binds every listener (failing, naming its flag, if one cannot be bound), then serves
    /// them all with `limits`.
    pub(crate) fn start(listeners: Vec<Listener>, limits: Limits) -> Result<Server> {
        let mut bound = Vec::new();
        for listener in listeners {
            let socket = std::net::TcpListener::bind(listener.addr).map_err(|e| {
                anyhow!(
                    "cannot listen on {} ({}): {e}; is another process using the port?",
                    listener.addr,
                    listener.what
                )
            })?;
            socket.set_nonblocking(true)?;
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
            addrs.push(socket.local_addr()?);
            let _entered = runtime.enter();
            let socket = tokio::net::TcpListener::from_std(socket)?;
            runtime.spawn(service::accept_loop(socket, listener, limits.clone()));
        }
        Ok(Server {
            runtime: Some(runtime),
            addrs,
        })
    }

    /// The address the `i`th listener is bound to (its port, if it asked for port 0).
    pub(crate) fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i]
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        }
    }
}
