//! The TCP socket under a TLS session, written without raising SIGPIPE.
//!
//! rustls sends its records with `write_vectored`, which `std` implements with `writev(2)`: unlike
//! `send(2)`, it cannot pass `MSG_NOSIGNAL`, so writing to a peer that has reset the connection
//! raises SIGPIPE. Rust programs ignore SIGPIPE, but a C host keeps the default disposition, and
//! there a peer killed at the wrong moment would kill the host with it. Every write here goes
//! through `send`/`sendmsg` with `MSG_NOSIGNAL`, and a dead peer is an `EPIPE` error instead.

use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;

/// A connected TCP socket whose writes never raise SIGPIPE.
pub(crate) struct Socket(pub(crate) TcpStream);

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // std writes a TcpStream with send(2) and MSG_NOSIGNAL.
        self.0.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        socket2::SockRef::from(&self.0).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    static SIGPIPES: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn count(_: libc::c_int) {
        SIGPIPES.fetch_add(1, Ordering::SeqCst);
    }

    /// A socket whose peer has reset the connection.
    fn reset_by_peer() -> TcpStream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        socket2::SockRef::from(&peer)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(peer);
        std::thread::sleep(Duration::from_millis(50));
        ours
    }

    /// Writes vectored until the socket says EPIPE (the first error is ECONNRESET).
    fn write_until_epipe(writer: &mut impl Write) {
        let bufs = [IoSlice::new(b"alert"), IoSlice::new(b"record")];
        for _ in 0..4 {
            if let Err(e) = writer.write_vectored(&bufs)
                && e.kind() == io::ErrorKind::BrokenPipe
            {
                return;
            }
        }
        panic!("no EPIPE from a socket reset by its peer");
    }

    #[test]
    fn writing_to_a_reset_connection_raises_no_sigpipe() {
        // SAFETY: a handler that only increments an atomic is async-signal-safe; the previous
        // disposition is put back below. Counting instead of ignoring keeps the test honest in a
        // process (the test harness) that ignores SIGPIPE anyway.
        let previous = unsafe {
            libc::signal(
                libc::SIGPIPE,
                count as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
        SIGPIPES.store(0, Ordering::SeqCst);
        write_until_epipe(&mut Socket(reset_by_peer()));
        let through_socket = SIGPIPES.load(Ordering::SeqCst);
        // The control: a bare TcpStream's vectored write does raise it.
        write_until_epipe(&mut reset_by_peer());
        let through_std = SIGPIPES.load(Ordering::SeqCst);
        // SAFETY: restoring the disposition saved above.
        unsafe { libc::signal(libc::SIGPIPE, previous) };
        assert_eq!(through_socket, 0, "Socket raised SIGPIPE");
        assert!(
            through_std > 0,
            "the control raised no SIGPIPE: the test proves nothing"
        );
    }
}
