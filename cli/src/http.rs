//! The small HTTP server behind `fencekit node` and `fencekit store`: one thread, a handler
//! per request, plain text or JSON answers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Result, anyhow};

/// A request: its method, path and query (the endpoints take no body).
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The path, without the query.
    pub(crate) path: String,
    /// The query's `name=value` pairs, in order.
    pub(crate) query: Vec<(String, String)>,
}

impl Request {
    /// The value of query parameter `name`.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn json(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body,
        }
    }

    pub(crate) fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    /// A JSON error, `{"error": reason}`.
    pub(crate) fn error(status: u16, reason: impl std::fmt::Display) -> Reply {
        Reply::json(
            status,
            serde_json::json!({ "error": reason.to_string() }).to_string(),
        )
    }
}

/// A running server; dropping it stops it.
pub(crate) struct Server {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Server {
    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves `handler` on `addr`; `what` names the flag that chose the address, for the error.
pub(crate) fn serve(
    addr: SocketAddr,
    what: &str,
    handler: impl Fn(&Request) -> Reply + Send + 'static,
) -> Result<Server> {
    let server = tiny_http::Server::http(addr).map_err(|e| {
        anyhow!("cannot listen on {addr} ({what}): {e}; is another process using the port?")
    })?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| anyhow!("{what}: not an IP address"))?;
    let server = Arc::new(server);
    let serving = server.clone();
    let thread = std::thread::Builder::new()
        .name(format!("http {addr}"))
        .spawn(move || {
            for mut request in serving.incoming_requests() {
                let reply = match read(&mut request) {
                    Ok(parsed) => handler(&parsed),
                    Err(reason) => Reply::error(400, reason),
                };
                let header = tiny_http::Header::from_bytes("Content-Type", reply.content_type)
                    .expect("a valid static header");
                let response = tiny_http::Response::from_string(reply.body)
                    .with_status_code(reply.status)
                    .with_header(header);
                // A client that went away is its own problem.
                let _ = request.respond(response);
            }
        })?;
    Ok(Server {
        server,
        thread: Some(thread),
        addr,
    })
}

fn read(request: &mut tiny_http::Request) -> Result<Request, String> {
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (n.to_owned(), v.to_owned())
        })
        .collect();
    Ok(Request {
        method: request.method().as_str().to_owned(),
        path: path.to_owned(),
        query,
    })
}
