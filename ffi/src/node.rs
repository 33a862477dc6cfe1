//! `fk_node`: one member of a Raft group over TCP, with leadership, its lease and its events.

use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;
use kernel::node::{Applied, Event, LostReason, Node};
use kernel::time::{Clock, MonotonicClock};
use kernel::transport::tcp::TcpTransport;
use kernel::{LogError, LogIndex, NodeError, NodeId};

use crate::boundary::{
    self, Failure, Handle, Out, bytes, text, with_handle, with_handle_out,
    with_handle_out_or_reject, without_handle_out,
};
use crate::buf::fk_buf;
use crate::node_config;
use crate::policy::fk_policy;
use crate::status::*;
use crate::token::fk_token;

/// A running node. Start it with `fk_node_start`; stop it with `fk_node_stop` and free it with
/// `fk_node_free`.
pub struct fk_node {
    node: Node,
    clock: std::sync::Arc<MonotonicClock>,
    test_hooks: bool,
    /// Set by the first `fk_node_stop`: of concurrent stops, one succeeds and the others
    /// answer `FK_STATUS_STOPPED`, as a later one does.
    stop_claimed: AtomicBool,
    poison: AtomicBool,
}

impl Handle for fk_node {
    fn poison(&self) -> &AtomicBool {
        &self.poison
    }
}

/// Usable leadership: the token every write must carry, and until when the node may act.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct fk_leadership {
    /// The generation (Raft term) and this node.
    pub token: fk_token,
    /// The lease's end, in nanoseconds on `CLOCK_BOOTTIME` (`fk_now_ns`, `fk_node_now_ns`).
    pub lease_deadline_ns: u64,
    /// Time left on the lease when the call returned, in nanoseconds.
    pub lease_remaining_ns: u64,
}

/// What kind of event an `fk_event` is: a `uint32_t` with the `FK_EVENT_*` values.
pub type fk_event_kind = u32;
/// This node became usable leader: `token`, `lease_deadline_ns`.
pub const FK_EVENT_ELECTED: fk_event_kind = 1;
/// This node's usable leadership ended: `token`, `lost_reason`.
pub const FK_EVENT_LOST: fk_event_kind = 2;
/// The leader this node knows of changed: `leader` (0: none known), `term`.
pub const FK_EVENT_LEADER_CHANGED: fk_event_kind = 3;
/// A membership change was applied; `fk_node_status_json` lists the members.
pub const FK_EVENT_MEMBERSHIP_CHANGED: fk_event_kind = 4;

/// Why leadership ended: a `uint32_t` with the `FK_LOST_*` values.
pub type fk_lost_reason = u32;
/// No quorum acknowledged a heartbeat round in time (a partition, a pause, slow peers).
pub const FK_LOST_LEASE_EXPIRED: fk_lost_reason = 1;
/// Raft stepped down: a higher term was seen, or check-quorum found no quorum.
pub const FK_LOST_STEPPED_DOWN: fk_lost_reason = 2;
/// The lease was revoked to hand leadership to another node.
pub const FK_LOST_TRANSFERRING: fk_lost_reason = 3;
/// This node was removed from the membership.
pub const FK_LOST_REMOVED: fk_lost_reason = 4;
/// The node stopped.
pub const FK_LOST_STOPPED: fk_lost_reason = 5;
/// The node failed; `fk_node_status_json` and every later call say why.
pub const FK_LOST_FAILED: fk_lost_reason = 6;

/// One event, in the order they happened. Fields that do not apply to `kind` are zero.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct fk_event {
    /// `FK_EVENT_*`.
    pub kind: fk_event_kind,
    /// For `FK_EVENT_LOST`: `FK_LOST_*`.
    pub lost_reason: fk_lost_reason,
    /// For `FK_EVENT_ELECTED` and `FK_EVENT_LOST`: the token.
    pub token: fk_token,
    /// For `FK_EVENT_ELECTED`: the lease's end when it was reported (later rounds extend it), on
    /// `CLOCK_BOOTTIME` (`fk_now_ns`).
    pub lease_deadline_ns: u64,
    /// For `FK_EVENT_LEADER_CHANGED`: the leader, or 0 when none is known.
    pub leader: u64,
    /// For `FK_EVENT_LEADER_CHANGED`: the term.
    pub term: u64,
}

/// What kind of item an `fk_applied` is: a `uint32_t` with the `FK_APPLIED_*` values.
pub type fk_applied_kind = u32;
/// A committed proposal: apply `data`.
pub const FK_APPLIED_ENTRY: fk_applied_kind = 1;
/// The host's state as of `index` from a snapshot: replace the state with `data`.
pub const FK_APPLIED_SNAPSHOT: fk_applied_kind = 2;

/// A committed item of the log, delivered in index order.
#[repr(C)]
#[derive(Debug)]
pub struct fk_applied {
    /// `FK_APPLIED_*`.
    pub kind: fk_applied_kind,
    /// Zero.
    pub reserved: u32,
    /// Its log index.
    pub index: u64,
    /// Its term.
    pub term: u64,
    /// The data; the caller releases it with `fk_buf_release`.
    pub data: fk_buf,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn event(event: Event) -> fk_event {
    let mut out = fk_event::default();
    match event {
        Event::Elected {
            token,
            lease_deadline,
        } => {
            out.kind = FK_EVENT_ELECTED;
            out.token = fk_token::from_kernel(Some(token));
            out.lease_deadline_ns = lease_deadline.as_nanos();
        }
        Event::Lost { token, reason } => {
            out.kind = FK_EVENT_LOST;
            out.token = fk_token::from_kernel(Some(token));
            out.lost_reason = match reason {
                LostReason::LeaseExpired => FK_LOST_LEASE_EXPIRED,
                LostReason::SteppedDown => FK_LOST_STEPPED_DOWN,
                LostReason::Transferring => FK_LOST_TRANSFERRING,
                LostReason::Removed => FK_LOST_REMOVED,
                LostReason::Stopped => FK_LOST_STOPPED,
                LostReason::Failed(_) => FK_LOST_FAILED,
            };
        }
        Event::LeaderChanged { leader, term } => {
            out.kind = FK_EVENT_LEADER_CHANGED;
            out.leader = leader.map_or(0, NodeId::get);
            out.term = term.get();
        }
        Event::MembershipChanged { .. } => out.kind = FK_EVENT_MEMBERSHIP_CHANGED,
    }
    out
}

/// Waits up to `timeout_ms` (0: do not wait) for the next item of `receiver`.
fn receive<T>(
    node: &Node,
    receiver: &crossbeam_channel::Receiver<T>,
    timeout_ms: u32,
    what: &'static str,
) -> Result<T, Failure> {
    // In a child after fork, the queues hold the parent's news (its "elected" included).
    node.check_process()?;
    receiver
        .recv_timeout(Duration::from_millis(timeout_ms.into()))
        .map_err(|e| match e {
            // A failed node's thread may still be shutting down: nothing more will come.
            RecvTimeoutError::Timeout => match node.failure() {
                Some(cause) => NodeError::Failed(cause).into(),
                None => NodeError::Timeout(what).into(),
            },
            RecvTimeoutError::Disconnected => ended(node).into(),
        })
}

/// The error for a node whose thread has ended: why it failed, or that it stopped.
fn ended(node: &Node) -> NodeError {
    node.failure().map_or(NodeError::Stopped, NodeError::Failed)
}

/// Starts a node from its JSON configuration (`config_len` bytes of UTF-8; the fields are in
/// `ffi/README.md`): opens its log in `data_dir`, listens on `listen`, and joins or forms the
/// group. On success `*out` is the running node.
///
/// Fails with `FK_STATUS_INVALID_CONFIG` naming the field, `FK_STATUS_TRANSPORT` if the port is
/// in use, `FK_STATUS_WRONG_CLUSTER` for a data directory of another cluster or node,
/// `FK_STATUS_LOCKED` if another node holds the directory.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `config` points to `config_len` readable bytes; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_node_start(
    config: *const c_char,
    config_len: usize,
    out: *mut *mut fk_node,
) -> fk_status {
    // SAFETY: `out` is NULL or writable (the caller's contract).
    let out = unsafe { Out::new(out) };
    without_handle_out(out, "out", || {
        // SAFETY: `config_len` readable bytes (the caller's contract).
        unsafe { start(config, config_len, None) }
    })
}

/// `fk_node_start` with a tie-breaker policy deciding the node's election priority. The
/// configuration's `"descriptor"` fields describe the nodes to the policy.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// As for `fk_node_start`; `tie_breaker` is NULL (no policy) or a live policy.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_node_start_with_policy(
    config: *const c_char,
    config_len: usize,
    tie_breaker: *const fk_policy,
    out: *mut *mut fk_node,
) -> fk_status {
    // SAFETY: `out` is NULL or writable (the caller's contract).
    let out = unsafe { Out::new(out) };
    without_handle_out(out, "out", || {
        // SAFETY: NULL or live (the caller's contract).
        let policy = unsafe { tie_breaker.as_ref() };
        // SAFETY: `config_len` readable bytes (the caller's contract).
        unsafe { start(config, config_len, policy) }
    })
}

/// Starts a node, the handle `fk_node_start` hands out.
///
/// # Safety
///
/// `config` points to `config_len` readable bytes.
unsafe fn start(
    config: *const c_char,
    config_len: usize,
    policy: Option<&fk_policy>,
) -> Result<*mut fk_node, Failure> {
    // SAFETY: `config_len` readable bytes (the caller's contract).
    let json = unsafe { text(config, config_len, "config") }?;
    let parsed = node_config::parse(json)?;
    let mut config = parsed.node;
    if let Some(policy) = policy {
        config.tie_breaker = policy.tie_breaker_with(parsed.descriptors)?;
    }
    // One clock for every node and fk_now_ns: CLOCK_BOOTTIME, as the host reads it.
    let clock = crate::clock::CLOCK.clone();
    let test_hooks = config.test_hooks;
    let tcp = parsed.tcp;
    let node = Node::start_with_clock(config, clock.clone(), |inbox| {
        Ok(TcpTransport::bind(tcp, inbox)?)
    })?;
    Ok(Box::into_raw(Box::new(fk_node {
        node,
        clock,
        test_hooks,
        stop_claimed: AtomicBool::new(false),
        poison: AtomicBool::new(false),
    })))
}

/// Stops the node: its lease ends, pending proposals fail, its threads exit. Its log stays.
/// A second stop fails with `FK_STATUS_STOPPED` and changes nothing; stopping a failed node
/// releases its threads and fails with `FK_STATUS_NODE_FAILED` and the cause.
///
/// Thread safety: any thread, concurrently with any call but `fk_node_free`.
///
/// # Safety
///
/// `node` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_node_stop(node: *const fk_node) -> fk_status {
    // SAFETY: `node` is NULL or live (the caller's contract).
    let node = unsafe { node.as_ref() };
    with_handle(node, "node", |n| {
        if let Some(cause) = n.node.failure() {
            // Reaps the failed node's thread; the caller still hears why it ended.
            n.node.stop();
            return Err(NodeError::Failed(cause).into());
        }
        if let Some(reason) = n.node.stopped() {
            return Err(Failure::new(
                FK_STATUS_STOPPED,
                format!("stopped already: {reason}"),
            ));
        }
        if n.stop_claimed.swap(true, Ordering::AcqRel) {
            return Err(Failure::new(
                FK_STATUS_STOPPED,
                "stopped already: another fk_node_stop stopped it",
            ));
        }
        n.node.stop();
        Ok(())
    })
}

/// Stops the node if it runs, and frees it. NULL is a no-op.
///
/// Thread safety: call once, after every other call on this node has returned.
///
/// # Safety
///
/// `node` is NULL or a node from `fk_node_start` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_node_free(node: *mut fk_node) {
    // SAFETY: NULL or a live node from fk_node_start, freed once (the caller's contract).
    unsafe { boundary::free(node) }
}

/// Writes this node's usable leadership to `*out`, or fails with `FK_STATUS_NOT_LEADER` (or
/// `FK_STATUS_NODE_FAILED`, with the cause, once the node failed); a failed call writes all
/// zero to a non-NULL `*out` (token 0, no lease), so a reused struct never reads as leadership. Usable
/// means: this node committed an entry in its term and its lease holds now; it is computed at
/// the call, so a node paused past its lease answers "not leader" the moment it wakes.
///
/// Thread safety: any thread, concurrently with any call but `fk_node_free`.
///
/// # Safety
///
/// `node` is NULL or live; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_node_leadership(
    node: *const fk_node,
    out: *mut fk_leadership,
) -> fk_status {
    // SAFETY: `node` is NULL or live; `out` is NULL or writable (the caller's contract).
    let (node, out) = unsafe { (node.as_ref(), Out::new(out)) };
    with_handle_out_or_reject(node, "node", out, "out", |n| {
        let Some(leadership) = n.node.leadership() else {
            if let Some(cause) = n.node.failure() {
                return Err(NodeError::Failed(cause).into());
            }
            let hint = n.node.status().ok().and_then(|s| s.leader).map(NodeId::get);
            return Err(NodeError::NotLeader { hint }.into());
        };
        let now = n.clock.now();
        Ok(fk_leadership {
            token: fk_token::from_kernel(Some(leadership.token)),
            lease_deadline_ns: leadership.lease_deadline.as_nanos(),
            lease_remaining_ns: nanos(leadership.lease_deadline.saturating_duration_since(now)),
        })
    })
}

/// Writes the node's clock, in nanoseconds, to `*out`: the clock of `lease_deadline_ns`,
/// `CLOCK_BOOTTIME` on Linux (as `fk_now_ns`).
///
/// Thread safety: any thread, concurrently with any call but `fk_node_free`.
///
/// # Safety
///
/// `node` is NULL or live; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_node_now_ns(node: *const fk_node, out: *mut u64) -> fk_status {
    // SAFETY: `node` is NULL or live; `out` is NULL or writable (the caller's contract).
    let (node, out) = unsafe { (node.as_ref(), Out::new(out)) };
    with_handle_out(node, "node", out, "out", |n| Ok(n.clock.now().as_nanos()))
}

/// Waits up to `timeout_ms` (0: do not wait) for the next event and writes it to `*out`.
/// Fails with `FK_STATUS_TIMEOUT` if none came, `FK_STATUS_STOPPED` (or
/// `FK_STATUS_NODE_FAILED`) once the node has stopped (or failed) and every event was read; a
/// failed call writes all zero (no event) to a non-NULL `*out`. Events are news; `fk_node_leadership` is the truth.
///
/// Thread safety: any thread; with several readers, each event goes to one of them.
///
/// # Safety
///
/// `node` is NULL or live; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_node_next_event(
    node: *const fk_node,
    timeout_ms: u32,
    out: *mut fk_event,
) -> fk_status {
    // SAFETY: `node` is NULL or live; `out` is NULL or writable (the caller's contract).
    let (node, out) = unsafe { (node.as_ref(), Out::new(out)) };
    with_handle_out_or_reject(node, "node", out, "out", |n| {
        let next = receive(&n.node, n.node.events(), timeout_ms, "waiting for an event")?;
        Ok(event(next))
    })
}

/// Waits up to `timeout_ms` for the next committed item and writes it to `*out`; the caller
/// releases `out->data` with `fk_buf_release`. Read them: they queue until read.
///
/// Thread safety: any thread; with several readers, each item goes to one of them.
///
/// # Safety
///
/// `node` is NULL or live; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_node_next_applied(
    node: *const fk_node,
    timeout_ms: u32,
    out: *mut fk_applied,
) -> fk_status {
    // SAFETY: `node` is NULL or live; `out` is NULL or writable (the caller's contract).
    let (node, out) = unsafe { (node.as_ref(), Out::new(out)) };
    with_handle_out(node, "node", out, "out", |n| {
        let item = receive(
            &n.node,
            n.node.applied(),
            timeout_ms,
            "waiting for a committed entry",
        )?;
        let (kind, index, term, data) = match item {
            Applied::Entry { index, term, data } => (FK_APPLIED_ENTRY, index, term, data),
            Applied::Snapshot { index, term, data } => (FK_APPLIED_SNAPSHOT, index, term, data),
        };
        Ok(fk_applied {
            kind,
            reserved: 0,
            index: index.get(),
            term: term.get(),
            data: fk_buf::new(data),
        })
    })
}

/// Proposes `data` (`len` bytes) and waits up to `timeout_ms` for it to commit, then writes its
/// log index to `*out_index`. Fails at once with `FK_STATUS_TOO_LARGE` for more than 2^19 bytes
/// (before a byte is read), `FK_STATUS_NOT_LEADER` on a follower, and with `FK_STATUS_TIMEOUT` if it did not commit in time (it may still commit later).
///
/// Thread safety: any thread, concurrently with any call but `fk_node_free`.
///
/// # Safety
///
/// `node` is NULL or live; `data` points to `len` readable bytes; `out_index` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_node_propose(
    node: *const fk_node,
    data: *const u8,
    len: usize,
    timeout_ms: u32,
    out_index: *mut u64,
) -> fk_status {
    // SAFETY: `node` is NULL or live; `out_index` is NULL or writable (the caller's
    // contract).
    let (node, out_index) = unsafe { (node.as_ref(), Out::new(out_index)) };
    with_handle_out(node, "node", out_index, "out_index", |n| {
        // The length first: a claimed length is never copied before it is known to fit.
        kernel::node::validate_proposal_len(len)?;
        // SAFETY: `len` readable bytes (the caller's contract).
        let data = unsafe { bytes(data, len, "data") }?;
        let ticket = n.node.propose(data.to_vec())?;
        Ok(ticket.wait(Duration::from_millis(timeout_ms.into()))?.get())
    })
}

/// Proposes `count` items at once, item `i` being `lens[i]` bytes at `items[i]`: raft-rs takes
/// them as one proposal, so they reach the log in one Ready, are made durable by one sync on each
/// node and are replicated in one append per follower. Waits up to `timeout_ms` in all for every
/// item to commit, then writes the index of the first to `*out_first_index`; the others follow it
/// in order, at consecutive indexes. All or nothing up front: `FK_STATUS_INVALID_BATCH` for no
/// items or more than 4096, `FK_STATUS_TOO_LARGE` for an item of more than 2^19 bytes (before a
/// byte is read), `FK_STATUS_INVALID_ARGUMENT` for an empty item,
/// `FK_STATUS_NOT_LEADER` on a follower; `FK_STATUS_TIMEOUT` if not every item committed in time
/// (they may still commit later).
///
/// Thread safety: any thread, concurrently with any call but `fk_node_free`.
///
/// # Safety
///
/// `node` is NULL or live; `items` and `lens` are NULL or point to `count` readable elements;
/// each `items[i]` points to `lens[i]` readable bytes; `out_first_index` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_node_propose_batch(
    node: *const fk_node,
    items: *const *const u8,
    lens: *const usize,
    count: usize,
    timeout_ms: u32,
    out_first_index: *mut u64,
) -> fk_status {
    // SAFETY: `node` is NULL or live; `out_first_index` is NULL or writable (the caller's
    // contract).
    let (node, out_first_index) = unsafe { (node.as_ref(), Out::new(out_first_index)) };
    with_handle_out(node, "node", out_first_index, "out_first_index", |n| {
        if count > kernel::node::PROPOSE_BATCH_MAX {
            kernel::node::validate_batch_len(count)?;
        }
        let mut batch = Vec::with_capacity(count);
        if count > 0 {
            if items.is_null() {
                return Err(Failure::null("items"));
            }
            if lens.is_null() {
                return Err(Failure::null("lens"));
            }
            // SAFETY: non-NULL, `count` readable elements (the caller's contract); `count` is
            // at most PROPOSE_BATCH_MAX, so the slices are small.
            let (items, lens) = unsafe {
                (
                    std::slice::from_raw_parts(items, count),
                    std::slice::from_raw_parts(lens, count),
                )
            };
            // Every length before any copy: a claimed length over the limit is refused before a
            // byte of any item is read.
            for &len in lens {
                kernel::node::validate_proposal_len(len)?;
            }
            for (&item, &len) in items.iter().zip(lens) {
                // SAFETY: `len` readable bytes (the caller's contract).
                batch.push(unsafe { bytes(item, len, "items[i]") }?.to_vec());
            }
        }
        let tickets = n.node.propose_batch(batch)?;
        let deadline = std::time::Instant::now() + Duration::from_millis(timeout_ms.into());
        let mut first = None;
        for ticket in tickets {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let index = ticket.wait(left)?;
            first.get_or_insert(index);
        }
        Ok(first.expect("a batch holds at least one item").get())
    })
}

/// Revokes this leader's lease, then hands leadership to node `to`.
///
/// Fails, with the lease untouched, with `FK_STATUS_NOT_LEADER` unless this node leads,
/// `FK_STATUS_MEMBERSHIP` (naming the node) when `to` is this node or not a voter of the group
/// (pick another from the `voters` of `fk_node_status_json`), `FK_STATUS_INVALID_TOKEN` when
/// `to` is 0, `FK_STATUS_STOPPED` once the node stopped.
///
/// Thread safety: any thread, concurrently with any call but `fk_node_free`.
///
/// # Safety
///
/// `node` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_node_transfer(node: *const fk_node, to: u64) -> fk_status {
    // SAFETY: `node` is NULL or live (the caller's contract).
    let node = unsafe { node.as_ref() };
    with_handle(node, "node", |n| {
        let to = NodeId::new(to)?;
        Ok(n.node.transfer_leadership(to)?)
    })
}

/// Revokes this leader's lease and hands leadership to the most up-to-date other voter, whose
/// id it writes to `*out_successor`. Fails with `FK_STATUS_MEMBERSHIP` when there is no other
/// voter, `FK_STATUS_NOT_LEADER` unless this node leads.
///
/// Thread safety: any thread, concurrently with any call but `fk_node_free`.
///
/// # Safety
///
/// `node` is NULL or live; `out_successor` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_node_step_down(
    node: *const fk_node,
    out_successor: *mut u64,
) -> fk_status {
    // SAFETY: `node` is NULL or live; `out_successor` is NULL or writable (the caller's
    // contract).
    let (node, out_successor) = unsafe { (node.as_ref(), Out::new(out_successor)) };
    with_handle_out(node, "node", out_successor, "out_successor", |n| {
        Ok(n.node.step_down()?.get())
    })
}

/// Compacts the log: the host's state as of `index` (an index it has applied) is `data`.
/// Fails with `FK_STATUS_TOO_LARGE` for more than 2^20 bytes, before a byte is read.
///
/// Thread safety: any thread, concurrently with any call but `fk_node_free`.
///
/// # Safety
///
/// `node` is NULL or live; `data` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_node_compact(
    node: *const fk_node,
    index: u64,
    data: *const u8,
    len: usize,
) -> fk_status {
    // SAFETY: `node` is NULL or live (the caller's contract).
    let node = unsafe { node.as_ref() };
    with_handle(node, "node", |n| {
        // The state goes into one log record, so the log's record limit bounds it; checked
        // before the caller's bytes are copied.
        if len > kernel::limits::RECORD_PAYLOAD_MAX {
            return Err(LogError::RecordTooLarge {
                len,
                max: kernel::limits::RECORD_PAYLOAD_MAX,
            }
            .into());
        }
        // SAFETY: `len` readable bytes (the caller's contract).
        let data = unsafe { bytes(data, len, "data") }?;
        Ok(n.node.compact(LogIndex::new(index), data.to_vec())?)
    })
}

/// Writes the node's status as one JSON object to `*out` (id, term, role, leader,
/// leading_generation, lease_remaining_ms, commit, applied, voters, failed, stopped, ...);
/// release it with `fk_buf_release`. It answers after `fk_node_stop` and after a failure too:
/// such a node takes no part, so its status claims no leadership (`"role": "follower"`,
/// `"leader"`, `"leading_generation"` and the lease fields null) and says why
/// (`"stopped": true`, or `"failed": true` with the cause in `"failure"`).
///
/// Thread safety: any thread, concurrently with any call but `fk_node_free`.
///
/// # Safety
///
/// `node` is NULL or live; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_node_status_json(node: *const fk_node, out: *mut fk_buf) -> fk_status {
    // SAFETY: `node` is NULL or live; `out` is NULL or writable (the caller's contract).
    let (node, out) = unsafe { (node.as_ref(), Out::new(out)) };
    with_handle_out(node, "node", out, "out", |n| {
        Ok(fk_buf::new(n.node.status()?.to_json().into_bytes()))
    })
}

/// Test hook: makes the node's thread panic, as a bug in fencekit or raft-rs would, so that a
/// host's tests can check that a failed node is reported (`FK_STATUS_NODE_FAILED` from every
/// call, an `FK_LOST_FAILED` event if it led, `"failed": true` in its status). Returns once the
/// failure is visible. Refused with
/// `FK_STATUS_INVALID_ARGUMENT` unless the node's configuration says `"test_hooks": true`.
///
/// Thread safety: any thread, concurrently with any call but `fk_node_free`.
///
/// # Safety
///
/// `node` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_node_panic_for_testing(node: *const fk_node) -> fk_status {
    // SAFETY: `node` is NULL or live (the caller's contract).
    let node = unsafe { node.as_ref() };
    with_handle(node, "node", |n| {
        if !n.test_hooks {
            return Err(Failure::new(
                FK_STATUS_INVALID_ARGUMENT,
                "test hooks are off: start the node with \"test_hooks\": true in its \
                 configuration (never in production)",
            ));
        }
        Ok(n.node.panic_for_testing()?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-node group (plaintext on a loopback port this test picks) through the C ABI.
    fn start_single(dir: &std::path::Path) -> *mut fk_node {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = format!(
            "{{\"id\": 1, \"cluster\": 9, \"data_dir\": \"{}\", \"listen\": \"127.0.0.1:{port}\", \
             \"insecure\": true}}",
            dir.display()
        );
        let mut node = std::ptr::null_mut();
        // SAFETY: the config is `len` readable bytes; `node` is writable.
        let status = unsafe { fk_node_start(config.as_ptr().cast(), config.len(), &mut node) };
        assert_eq!(status, FK_STATUS_OK);
        node
    }

    #[test]
    fn a_batch_commits_at_consecutive_indexes_and_a_bad_one_is_refused_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let node = start_single(dir.path());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        // SAFETY: `node` is live.
        while unsafe { &*node }.node.leadership().is_none() {
            assert!(std::time::Instant::now() < deadline, "no leadership");
            std::thread::sleep(Duration::from_millis(5));
        }
        let items: Vec<Vec<u8>> = (0..8).map(|i| format!("item-{i}").into_bytes()).collect();
        let ptrs: Vec<*const u8> = items.iter().map(|i| i.as_ptr()).collect();
        let lens: Vec<usize> = items.iter().map(Vec::len).collect();
        let mut first = 0;
        // SAFETY: live node; `count` readable pointers and lengths; writable output.
        let status = unsafe {
            fk_node_propose_batch(node, ptrs.as_ptr(), lens.as_ptr(), 8, 5000, &mut first)
        };
        assert_eq!(status, FK_STATUS_OK);
        assert!(first >= 2);
        let mut seen = Vec::new();
        // SAFETY: `node` is live.
        let applied = unsafe { &*node }.node.applied();
        while seen.len() < 8 {
            match applied
                .recv_timeout(Duration::from_secs(5))
                .expect("applied")
            {
                Applied::Entry { index, data, .. } if data.starts_with(b"item-") => {
                    seen.push((index, data));
                }
                _ => {}
            }
        }
        for (i, (index, data)) in seen.iter().enumerate() {
            assert_eq!(index.get(), first + i as u64);
            assert_eq!(data, &items[i]);
        }

        let empty: [u8; 0] = [];
        let bad = [ptrs[0], empty.as_ptr()];
        let bad_lens = [lens[0], 0];
        // SAFETY: as above.
        let status = unsafe {
            fk_node_propose_batch(node, bad.as_ptr(), bad_lens.as_ptr(), 2, 100, &mut first)
        };
        assert_eq!(status, FK_STATUS_INVALID_ARGUMENT);
        // SAFETY: as above; no items.
        let status = unsafe {
            fk_node_propose_batch(node, std::ptr::null(), std::ptr::null(), 0, 100, &mut first)
        };
        assert_eq!(status, FK_STATUS_INVALID_BATCH);
        // SAFETY: as above; NULL arrays with a count.
        let status = unsafe {
            fk_node_propose_batch(node, std::ptr::null(), lens.as_ptr(), 1, 100, &mut first)
        };
        assert_eq!(status, FK_STATUS_NULL_ARGUMENT);
        // SAFETY: live node, freed once.
        unsafe {
            assert_eq!(fk_node_stop(node), FK_STATUS_OK);
            fk_node_free(node);
        }
    }

    /// A claimed length over the limit is refused before a byte is copied: a short buffer with
    /// a claimed length of 2^40 or usize::MAX would abort the host (allocation failure) or fault
    /// if any of these copied first.
    #[test]
    fn a_huge_claimed_length_is_too_large_before_any_copy() {
        let dir = tempfile::tempdir().expect("temp dir");
        let node = start_single(dir.path());
        let short = [7u8; 4];
        for claimed in [1usize << 40, usize::MAX] {
            let mut out = 0;
            // SAFETY: live node; the claimed length is refused before `short` is read.
            let status = unsafe { fk_node_propose(node, short.as_ptr(), claimed, 100, &mut out) };
            assert_eq!(status, FK_STATUS_TOO_LARGE, "propose, {claimed}");
            let items = [short.as_ptr(), short.as_ptr()];
            let lens = [short.len(), claimed];
            // SAFETY: as above; two readable pointers and lengths.
            let status = unsafe {
                fk_node_propose_batch(node, items.as_ptr(), lens.as_ptr(), 2, 100, &mut out)
            };
            assert_eq!(status, FK_STATUS_TOO_LARGE, "propose_batch, {claimed}");
            // SAFETY: as above.
            let status = unsafe { fk_node_compact(node, 1, short.as_ptr(), claimed) };
            assert_eq!(status, FK_STATUS_TOO_LARGE, "compact, {claimed}");
        }
        // SAFETY: live node, freed once.
        unsafe {
            assert_eq!(fk_node_stop(node), FK_STATUS_OK);
            fk_node_free(node);
        }
    }
}
