//! What one client may ask of a server: sizes, times and counts, each answered with a clear
//! status when exceeded (README.md, "HTTP limits").

use std::time::Duration;

/// The limits of a server; [`Limits::default`] is what `fencekit node` and `store` use.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    /// The request line and headers together; beyond it, 431 and the connection closes
    /// (a 300 MB request line is refused after 16 KiB, not buffered).
    pub(crate) header_bytes_max: usize,
    /// Header fields per request.
    pub(crate) headers_max: usize,
    /// Time to send a whole request head, and the longest an idle keep-alive connection is
    /// kept: a client that sends nothing holds a connection this long at most.
    pub(crate) header_timeout: Duration,
    /// Time to complete a TLS handshake.
    pub(crate) handshake_timeout: Duration,
    /// The longest a connection lives, however busy: after it the server closes it once the
    /// request in progress is answered (a client that never reads its answer is cut off).
    pub(crate) connection_lifetime: Duration,
    /// Connections open at once on one listener; beyond it a new one is answered 503 (plain
    /// HTTP) or closed (HTTPS) at once.
    pub(crate) connections_max: usize,
    /// Requests being handled at once on one listener; beyond it, 503 with Retry-After.
    pub(crate) in_flight_max: usize,
    /// Query parameters per request.
    pub(crate) params_max: usize,
    /// The longest a request handed on (the store's decisions) waits for its answer; then
    /// 503, saying it may or may not have been carried out.
    pub(crate) answer_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_bytes_max: 16 * 1024,
            headers_max: 64,
            header_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(300),
            connections_max: 512,
            in_flight_max: 128,
            params_max: 16,
            answer_timeout: Duration::from_secs(30),
        }
    }
}
