//! Refusing use after `fork`.
//!
//! A child made by `fork` (gunicorn `--preload`, Celery prefork, Python's `multiprocessing`)
//! inherits a copy of every fence, log and node of its parent, and the `flock` on their
//! directories. Parent and child would then advance one fence each, unaware of the other, and a
//! mark acknowledged in one is overwritten by the other: a stale token accepted. So every
//! object that owns durable state remembers the process it was opened in, and refuses to work
//! in another.
//!
//! A `pthread_atfork` child handler bumps a process-wide counter (an atomic add is
//! async-signal-safe, as a handler run between `fork` and `exec` must be). An object compares
//! the counter with its value at opening: one relaxed load of a word no one writes in a process
//! that does not fork, so even the fence's hot path can afford it.

use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::Forked;

/// On a cache line of its own: the fence's hot path reads it on every check, and a line
/// shared with a static that something writes would cost that read a miss each time.
#[repr(align(128))]
struct Forks(AtomicU32);

static FORKS: Forks = Forks(AtomicU32::new(0));
static INSTALL: Once = Once::new();

extern "C" fn in_child() {
    FORKS.0.fetch_add(1, Ordering::Relaxed);
}

/// The process an object was opened in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenedIn {
    forks: u32,
    pid: u32,
}

impl OpenedIn {
    /// The current process.
    pub(crate) fn here() -> OpenedIn {
        INSTALL.call_once(|| {
            // SAFETY: registers a handler that only does an atomic add. A failure (ENOMEM)
            // leaves forks undetected; it is not worth failing every open for.
            unsafe {
                libc::pthread_atfork(None, None, Some(in_child));
            }
        });
        OpenedIn {
            forks: FORKS.0.load(Ordering::Relaxed),
            pid: std::process::id(),
        }
    }

    /// True in the process the object was opened in.
    #[inline(always)]
    pub(crate) fn is_here(&self) -> bool {
        FORKS.0.load(Ordering::Relaxed) == self.forks
    }

    /// An error if this is not the process the object was opened in.
    pub(crate) fn check(&self, what: &'static str) -> Result<(), Forked> {
        if self.is_here() {
            return Ok(());
        }
        Err(Forked {
            what,
            opened_in: self.pid,
            used_in: std::process::id(),
        })
    }
}

/// An [`OpenedIn`] that can also be revoked for good (a fence whose log failed): its check is
/// the same one relaxed load and compare, so the fence's hot path refuses both at no cost.
#[derive(Debug)]
pub(crate) struct Usable {
    opened: OpenedIn,
    /// `opened.forks` while usable; [`REVOKED`] after a failure.
    expect: AtomicU32,
}

/// No fork count reaches it in practice (4 billion forks of one process).
const REVOKED: u32 = u32::MAX;

impl Usable {
    pub(crate) fn here() -> Usable {
        let opened = OpenedIn::here();
        Usable {
            opened,
            expect: AtomicU32::new(opened.forks),
        }
    }

    /// True in the opening process, until revoked.
    #[inline(always)]
    pub(crate) fn now(&self) -> bool {
        FORKS.0.load(Ordering::Relaxed) == self.expect.load(Ordering::Relaxed)
    }

    /// Makes [`Usable::now`] false from here on.
    pub(crate) fn revoke(&self) {
        self.expect.store(REVOKED, Ordering::Relaxed);
    }

    /// The process it was opened in.
    pub(crate) fn opened(&self) -> &OpenedIn {
        &self.opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_after_fork_is_told_apart() {
        let opened = OpenedIn::here();
        assert!(opened.check("fence").is_ok());
        // SAFETY: the child only reads atomics and calls `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = match opened.check("fence") {
                Err(Forked { .. }) if OpenedIn::here().is_here() => 0,
                _ => 1,
            };
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status));
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "the child did not see the fork"
        );
        assert!(opened.is_here(), "the parent is still the opener");
    }
}
