//! SIGINT and SIGTERM (and SIGHUP): a request to finish, which the long-running commands
//! check between steps so that they stop their node, their children and their temporary
//! directories cleanly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use crossbeam_channel::Receiver;

/// Whether termination was requested; clones share it.
#[derive(Clone)]
pub(crate) struct Termination {
    requested: Arc<AtomicBool>,
    wake: Receiver<()>,
}

impl Termination {
    /// Installs the process's handler; call once.
    pub(crate) fn install() -> Result<Termination> {
        let requested = Arc::new(AtomicBool::new(false));
        let (wake_tx, wake) = crossbeam_channel::bounded(1);
        let flag = requested.clone();
        ctrlc::set_handler(move || {
            flag.store(true, Ordering::SeqCst);
            let _ = wake_tx.try_send(());
        })
        .context("installing the signal handler")?;
        Ok(Termination { requested, wake })
    }

    pub(crate) fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Sleeps up to `timeout`, less if termination is requested; says whether it was.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        if !self.requested() {
            let _ = self.wake.recv_timeout(timeout);
        }
        self.requested()
    }
}
