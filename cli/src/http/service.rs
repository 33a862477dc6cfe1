//! Accepting connections and serving requests within [`Limits`].

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

use super::{Handled, Handler, Limits, Listener, Reply, Request};
use fencekit::transport::tcp::tls::{Identity, identity_of};

/// What every connection of one listener shares.
struct Shared {
    handler: Handler,
    limits: Limits,
    in_flight: Arc<Semaphore>,
    http: hyper::server::conn::http1::Builder,
}

/// A listening socket: TCP or Unix.
pub(super) trait Accept: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Accept for TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&self) -> std::io::Result<Self::Stream> {
        let (stream, _) = TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// A Unix socket serves its own user (and root) only, whatever its file mode says: a chmod or
/// an ACL by mistake must not hand the endpoint to every local user.
impl Accept for UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept(&self) -> std::io::Result<Self::Stream> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        // One warning a minute at most: any local user can connect as often as they like.
        static LAST_WARNING: std::sync::Mutex<Option<std::time::Instant>> =
            std::sync::Mutex::new(None);
        loop {
            let (stream, _) = UnixListener::accept(self).await?;
            let refused = match stream.peer_cred() {
                Ok(cred) if cred.uid() == me || cred.uid() == 0 => return Ok(stream),
                Ok(cred) => format!("from uid {}: it serves uid {me} and root only", cred.uid()),
                Err(e) => format!("without credentials: {e}"),
            };
            let mut last = LAST_WARNING.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(60)) {
                *last = Some(std::time::Instant::now());
                log::warn!("a Unix socket connection refused {refused} (said once a minute)");
            } else {
                log::debug!("a Unix socket connection refused {refused}");
            }
        }
    }
}

/// Accepts connections on `socket` until the runtime stops.
pub(super) async fn accept_loop<A: Accept>(socket: A, listener: Listener, limits: Limits) {
    let connections = Arc::new(Semaphore::new(limits.connections_max));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.header_bytes_max)
        // The read buffer only ever holds a head (no endpoint takes a body); hyper's floor
        // for it is 8 KiB.
        .max_buf_size(limits.header_bytes_max.max(8192))
        .max_headers(limits.headers_max);
    let shared = Arc::new(Shared {
        handler: listener.handler,
        in_flight: Arc::new(Semaphore::new(limits.in_flight_max)),
        limits,
        http,
    });
    let tls = listener.tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let stream = match socket.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                // Out of descriptors, say: wait a little rather than spin.
                log::warn!("{}: accepting a connection: {e}", listener.what);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tokio::spawn(refuse_connection(stream, tls.is_some()));
            continue;
        };
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve(stream, None, shared).await,
                Some(acceptor) => {
                    let timeout = shared.limits.handshake_timeout;
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(timeout, acceptor.accept(stream)).await
                    else {
                        // A failed or slow handshake: rustls told the client why, if it could.
                        return;
                    };
                    let peer = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|cert| identity_of(cert).ok());
                    serve(stream, peer, shared).await;
                }
            }
        });
    }
}

/// Answers a connection beyond the limit with 503 (on plain HTTP; a TLS client cannot read
/// plaintext, so it is only closed) without reading its request.
async fn refuse_connection<S: AsyncWrite + Unpin>(mut stream: S, tls: bool) {
    if !tls {
        let body = r#"{"error":"too many connections: try again shortly"}"#;
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let write = stream.write_all(answer.as_bytes());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), write).await;
    }
}

/// Serves one connection's requests, for at most the connection lifetime.
async fn serve<S>(stream: S, peer: Option<Identity>, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_shared = shared.clone();
    let service = hyper::service::service_fn(move |request| {
        let shared = service_shared.clone();
        async move { Ok::<_, Infallible>(answer(request, peer, &shared).await) }
    });
    let connection = shared.http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = tokio::time::sleep(shared.limits.connection_lifetime) => {
            connection.as_mut().graceful_shutdown();
            // The request in progress gets the header timeout to finish, then the connection
            // goes regardless.
            let _ = tokio::time::timeout(shared.limits.header_timeout, connection).await;
        }
    }
}

async fn answer(
    request: hyper::Request<Incoming>,
    peer: Option<Identity>,
    shared: &Shared,
) -> Response<Full<Bytes>> {
    // Every endpoint's input is its query: a body is refused unread, and the connection is
    // closed rather than drained (a Content-Length of 2^64-1 is never waited for).
    if !request.body().is_end_stream() {
        let mut response = respond(Reply::error(
            413,
            "this endpoint takes no body: its input is the query string",
        ));
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    let Ok(permit) = shared.in_flight.clone().try_acquire_owned() else {
        let mut response = respond(Reply::error(
            503,
            "overloaded: too many requests in progress; try again shortly",
        ));
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let (parts, _) = request.into_parts();
    let request = match Request::parse(&parts, peer, shared.limits.params_max) {
        Ok(request) => request,
        Err(reason) => return respond(Reply::error(400, reason)),
    };
    let reply = match &shared.handler {
        Handler::Blocking(handler) => {
            let handler = handler.clone();
            // The permit goes with the handler: a client that hangs up does not free its
            // place while its handler still runs.
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                handler(&request)
            })
            .await
            .unwrap_or_else(|e| {
                log::error!("an HTTP handler failed: {e}");
                Reply::error(500, "the handler failed; see the server's log")
            })
        }
        Handler::Deferring(handler) => match handler(&request) {
            Handled::Now(reply) => reply,
            Handled::Later(later) => {
                match tokio::time::timeout(shared.limits.answer_timeout, later).await {
                    Ok(Ok(reply)) => reply,
                    Ok(Err(_)) => Reply::error(
                        500,
                        "the request was dropped unanswered; see the server's log",
                    ),
                    Err(_) => Reply::error(
                        503,
                        format!(
                            "no answer within {} s (a stalled disk?): the request may or may \
                             not have been carried out; look before retrying",
                            shared.limits.answer_timeout.as_secs()
                        ),
                    ),
                }
            }
        },
    };
    respond(reply)
}

fn respond(reply: Reply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    response
}
