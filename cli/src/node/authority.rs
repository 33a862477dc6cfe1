//! Who may run jobs now, in the demo's two worlds. `Fenced` asks fencekit: the node leads
//! with a live lease, and every write carries its token. `Naive` holds a TTL lock from the
//! store and trusts its own clock to tell when the TTL ends, as a lease client does: a pause
//! longer than the TTL goes unnoticed.

use std::sync::Arc;
use std::time::Duration;

use fencekit::node::Node;
use fencekit::time::{Clock, Instant};

use crate::store_api::StoreClient;

/// The right to act, as one authority grants it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Credential {
    /// The generation every write must carry; `None` when writes are unfenced.
    pub(crate) generation: Option<u64>,
    /// How long the right lasts, as this node's clock measures it.
    pub(crate) remaining: Duration,
}

/// Says whether this node may act now.
pub(crate) trait Authority: Send {
    fn acting(&mut self) -> Option<Credential>;
}

/// fencekit's leadership: a generation with a lease.
pub(crate) struct Fenced {
    pub(crate) node: Arc<Node>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Authority for Fenced {
    fn acting(&mut self) -> Option<Credential> {
        let leadership = self.node.leadership()?;
        Some(Credential {
            generation: Some(leadership.token.generation.get()),
            remaining: leadership
                .lease_deadline
                .saturating_duration_since(self.clock.now()),
        })
    }
}

/// A TTL lock from the store, renewed every third of its TTL.
pub(crate) struct Naive {
    store: StoreClient,
    holder: u64,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    /// Until when this node believes it holds the lock.
    believed_until: Option<Instant>,
    renew_at: Option<Instant>,
}

impl Naive {
    pub(crate) fn new(
        store: StoreClient,
        holder: u64,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Naive {
        Naive {
            store,
            holder,
            ttl,
            clock,
            believed_until: None,
            renew_at: None,
        }
    }
}

impl Authority for Naive {
    fn acting(&mut self) -> Option<Credential> {
        let now = self.clock.now();
        if self.renew_at.is_none_or(|at| now >= at) {
            match self.store.lock(self.holder, self.ttl) {
                // Counted from before the request: the lock cannot outlive that on the store.
                Ok(answer) if answer.held => {
                    self.believed_until = Some(now.saturating_add(self.ttl))
                }
                Ok(_) => self.believed_until = None,
                // The store is unreachable: the holder goes on believing until its TTL ends.
                Err(_) => {}
            }
            self.renew_at = Some(now.saturating_add(self.ttl / 3));
        }
        let until = self.believed_until.filter(|&until| now < until)?;
        Some(Credential {
            generation: None,
            remaining: until.saturating_duration_since(now),
        })
    }
}
