//! The node's log syncer: a thread of its own that runs the [`SyncRequest`]s a
//! [`crate::node::Replica`] hands out, so that the node thread never waits on the disk.
//!
//! Why a thread: a node thread blocked in fdatasync cannot tick, so a leader cut off from its
//! followers does not step down (check-quorum) and does not say that its lease ended until the
//! disk answers; etcd#13527 is that stall, with two nodes leading. And a leader that syncs on
//! its own thread sends nothing while it syncs: with the sync beside it, its followers sync
//! their copy of a batch while it syncs its own.
//!
//! Requests are coalesced: the syncer takes every request queued, syncs through the furthest
//! (which covers the others) and reports that position. A failed sync is reported and ends the
//! thread: the log is poisoned, and the node must stop (DESIGN.md I9).

use std::thread::JoinHandle;

use crossbeam_channel::{Sender, unbounded};

use crate::error::NodeError;
use crate::raft_storage::SyncRequest;
use crate::wal::Position;

/// A thread running syncs; see the module documentation.
#[derive(Debug)]
pub struct Syncer {
    requests: Option<Sender<SyncRequest>>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    /// Starts the thread, named `name`. `done` is called on it after each sync with the
    /// position the log is durable through, or the error that poisoned it (the last call).
    pub fn spawn(
        name: String,
        done: impl Fn(Result<Position, NodeError>) + Send + 'static,
    ) -> std::io::Result<Syncer> {
        let (tx, rx) = unbounded::<SyncRequest>();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            while let Ok(mut request) = rx.recv() {
                for next in rx.try_iter() {
                    if next.through() > request.through() {
                        request = next;
                    }
                }
                let result = request.run();
                let failed = result.is_err();
                done(result);
                if failed {
                    return;
                }
            }
        })?;
        Ok(Syncer {
            requests: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a sync. Never blocks.
    pub fn request(&self, request: SyncRequest) {
        if let Some(tx) = &self.requests {
            // A syncer whose thread ended after a failure has reported it already.
            let _ = tx.send(request);
        }
    }

    /// Stops taking requests and waits for the thread to finish what it has (at most the
    /// syncs queued: they are coalesced into one).
    pub fn stop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}
