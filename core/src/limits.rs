//! Every limit of the kernel, named and checked together (TigerBeetle's `constants.zig`).

use std::time::Duration;

/// Longest resource key, in bytes.
pub const KEY_LEN_MAX: usize = 256;

/// The longest token source name, in bytes (`source.rs`): room for a Kubernetes Lease's
/// namespace (63), name (253) and uid (36) with their separators.
pub const SOURCE_NAME_MAX: usize = 400;

/// How many token sources one fence knows at most: a storage's tokens come from a few
/// coordinators, and the names clients send must not grow the fence's memory without bound.
pub const SOURCES_MAX: usize = 1024;

/// The longest "who did it" of a rebase, in bytes.
pub const REBASED_BY_MAX: usize = 256;

/// Most resources one fence can be opened for (`FenceOptions::max_resources`).
pub const RESOURCES_MAX: usize = 1 << 20;

/// Resources a fence is opened for unless told otherwise.
pub const RESOURCES_DEFAULT: usize = 1 << 16;

/// Fewest and most bytes a fence's log grows past its last snapshot before it is compacted
/// (`FenceOptions::compact_after_bytes`). The most is more than any log holds (256 TiB), so
/// it means "never"; beyond it the arithmetic of the next threshold could overflow.
pub const COMPACT_AFTER_BYTES_MIN: u64 = 1 << 12;
/// See [`COMPACT_AFTER_BYTES_MIN`].
pub const COMPACT_AFTER_BYTES_MAX: u64 = 1 << 48;
/// Bytes of log a fence lets grow before it rewrites the log as its marks, unless told
/// otherwise.
pub const COMPACT_AFTER_BYTES_DEFAULT: u64 = 8 << 20;

/// Most checks in one `Fence::check_batch` call.
pub const BATCH_MAX: usize = 4096;

/// Largest record payload the log takes.
pub const RECORD_PAYLOAD_MAX: usize = 1 << 20;

/// Smallest and largest segment file, and the default.
pub const SEGMENT_SIZE_MIN: u64 = 1 << 16;
/// Largest segment file: record offsets inside a segment are 32-bit.
pub const SEGMENT_SIZE_MAX: u64 = 1 << 30;
/// Highest segment number: a log position keeps the segment number in 32 bits. At the
/// smallest segment size that is 256 TiB of log.
pub const SEGMENT_NUMBER_MAX: u64 = u32::MAX as u64;
/// How often (in syncs) the superblock records how far the log is durable. Recovery cannot
/// tell the records synced since from a torn tail after a crash, so this bounds that window;
/// each recording costs two more fdatasyncs, 3 % more at 64.
pub const SUPERBLOCK_DURABLE_EVERY_SYNCS: u32 = 64;
/// Segment size unless told otherwise.
pub const SEGMENT_SIZE_DEFAULT: u64 = 16 << 20;

/// A Raft log is rewritten as its live state once it has grown past this many bytes and four
/// times that state.
pub const RAFT_LOG_COMPACT_MIN_BYTES: u64 = 64 << 20;

/// Largest proposal payload: an entry must fit in one log record, with room for its framing.
pub const PROPOSAL_MAX: usize = RECORD_PAYLOAD_MAX / 2;

/// Largest frame the TCP transport reads; a larger length prefix ends the connection.
pub const FRAME_MAX: usize = 4 * RECORD_PAYLOAD_MAX;

/// How long a TCP connection may take to open (the SYN's answer).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One deadline for a connection's whole opening: TLS, handshake and answer. A peer that
/// trickles its bytes is cut off here, however slowly it sends.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// Inbound connections in their opening at once; beyond this, a new connection is closed
/// before a byte is read. Each holds a thread until its handshake ends or its deadline passes.
pub const HANDSHAKES_MAX: usize = 32;

/// Authenticated inbound connections kept per peer; a newer one replaces the oldest.
pub const PEER_CONNECTIONS_MAX: usize = 2;

/// A connection that carries nothing for this long is closed by its reading side.
pub const IDLE_MAX: Duration = Duration::from_secs(30);

/// A sender with nothing to send writes an empty frame this often, so that an idle but live
/// connection is never taken for a dead one.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// Largest certificate, key or CA file read.
pub const TLS_FILE_MAX: u64 = 1 << 20;

/// Most entries in one peer message. An honest append holds at most 1 MiB of entries (raft-rs
/// `max_size_per_msg`), of at least 4 bytes each; decoded, each takes some 120 bytes, so this
/// bounds a frame's decoded entries to about 30 MiB, whatever a peer packs into 4 MiB.
pub const ENTRIES_PER_MESSAGE_MAX: usize = 1 << 18;

/// Messages queued per peer by the TCP transport; beyond this, messages are dropped (Raft
/// retransmits) rather than stalling the node thread.
pub const PEER_QUEUE_MAX: usize = 4096;

/// How far ahead of a node's term a peer's message may be. Each term is one election; no
/// honest history reaches 2^32 elections while a member is away, and an attacker needs 2^31
/// accepted jumps to exhaust the generations.
pub const TERM_JUMP_MAX: u64 = 1 << 32;

/// The largest Raft log index a peer's message may name. A million entries a second would
/// take 146,000 years to reach it; past it, raft-rs's index arithmetic would overflow.
pub const INDEX_MAX: u64 = 1 << 62;

/// Events kept for a consumer that does not read them; the oldest are dropped beyond this.
pub const EVENT_QUEUE_MAX: usize = 1024;

/// Threads that count accepted checks on a private counter row; further threads share one
/// atomic row (correct, slower).
pub const COUNTER_SHARDS_MAX: usize = 64;

/// Most proposals in one `Replica::propose_batch` (and `Node::propose_batch`, and the C ABI's
/// batch): one raft-rs proposal, appended in one Ready and made durable by one sync.
pub const PROPOSE_BATCH_MAX: usize = 4096;

/// Inputs queued for the node thread. Peer messages beyond this are dropped (Raft
/// retransmits); host calls wait for room.
pub const INPUT_QUEUE_MAX: usize = 16 * 1024;

/// Inputs the node thread handles per wake-up before ticking and processing again, so that a
/// flood of messages cannot starve the clock.
pub const INPUTS_PER_WAKE: usize = 1024;

/// Lease rounds kept in flight; older ones are forgotten (their acknowledgements then count
/// for nothing, which only shortens the lease).
pub const ROUNDS_IN_FLIGHT_MAX: usize = 64;

/// Peers whose first refused message is logged; later refusals (and further peers) are only
/// counted, so a flood of bad messages cannot flood the log.
pub const REFUSAL_LOGS_MAX: usize = 64;

/// Bytes of entries in one append a leader sends (raft-rs `max_size_per_msg`).
pub const APPEND_BYTES_MAX: u64 = 1 << 20;

/// Appends a leader sends a follower before it hears back (raft-rs `max_inflight_msgs`).
pub const APPENDS_IN_FLIGHT_MAX: usize = 256;

/// Longest Raft tick a [`crate::lease::Timing`] takes.
pub const TICK_MAX: Duration = Duration::from_secs(10);

/// Fewest and most ticks of an election timeout (`Timing::election_tick`): below 3, a tick's
/// granularity and the margin leave no lease.
pub const ELECTION_TICK_MIN: usize = 3;
/// See [`ELECTION_TICK_MIN`].
pub const ELECTION_TICK_MAX: usize = 10_000;

/// Zeros written per call when the log pre-fills a segment: bounds the buffer it allocates.
pub const ZERO_CHUNK: usize = 1 << 20;

/// Times a held directory lock is tried again before it is reported held: a process that
/// forks shares its open files with the child until the child's `exec` closes them, so a lock
/// released and retaken in that window looks held for a moment. 25 tries 4 ms apart: 100 ms.
pub const LOCK_RETRIES: u32 = 25;
/// The pause between two tries of [`LOCK_RETRIES`].
pub const LOCK_RETRY_PAUSE: Duration = Duration::from_millis(4);

/// The TCP transport's first pause before dialling a peer again; it doubles up to
/// [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest pause between two dials of a peer. Well under an election timeout: messages
/// queued for a peer that is down are dropped, so a peer that comes back must be reached again
/// before the next election needs it. A refused attempt costs the peer one connection (or one
/// TLS handshake) per interval.
pub const BACKOFF_MAX: Duration = Duration::from_millis(100);

/// Refused TCP connections are logged at most this often (the rest are counted).
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// How long stopping the TCP transport waits for a sender to end. Its queue is closed, so it
/// ends at once unless it is inside a dial: a name lookup (the resolver's timeout, 5 s and
/// more), a connection or a handshake (bounded, but seconds). Such a sender is left to end by
/// itself: it sends nothing more, since its queue is closed and the stop flag set, and a
/// delayed message is one Raft already tolerates. A node's stop must not take a DNS outage's
/// time.
pub const SENDER_STOP_WAIT: Duration = Duration::from_millis(200);

/// A TCP frame buffer that grew past this is given back after use.
pub const BUFFER_KEEP_MAX: usize = 64 * 1024;

/// Longest answer frame the connecting side of a TCP handshake reads.
pub const ANSWER_MAX: usize = 1024;

// A fence mark record (holder + key) must fit in the smallest segment with room to spare.
const _: () = assert!(8 + KEY_LEN_MAX < RECORD_PAYLOAD_MAX);
const _: () = assert!((SEGMENT_SIZE_MIN as usize) > 128 + 32 + 8 + KEY_LEN_MAX);
// Resource ids are u32 and the key index is twice the resource capacity.
const _: () = assert!(RESOURCES_MAX <= (u32::MAX as usize) / 2);
const _: () = assert!(RESOURCES_DEFAULT <= RESOURCES_MAX);
const _: () =
    assert!(SEGMENT_SIZE_MIN <= SEGMENT_SIZE_DEFAULT && SEGMENT_SIZE_DEFAULT <= SEGMENT_SIZE_MAX);
const _: () = assert!(SEGMENT_SIZE_MAX <= u32::MAX as u64);
// Keepalives arrive well within the idle bound, and a handshake ends long before it.
const _: () = assert!(KEEPALIVE_INTERVAL.as_secs() * 3 <= IDLE_MAX.as_secs());
const _: () = assert!(HANDSHAKE_TIMEOUT.as_secs() < IDLE_MAX.as_secs());
// An append's entries fit in a frame, and their count in the decoded bound.
const _: () = assert!(APPEND_BYTES_MAX as usize <= FRAME_MAX);
const _: () = assert!(ELECTION_TICK_MIN < ELECTION_TICK_MAX);
// A thread woken by a flood drains at most one queue's worth before it ticks again.
const _: () = assert!(INPUTS_PER_WAKE <= INPUT_QUEUE_MAX);
const _: () = assert!(BACKOFF_MIN.as_millis() <= BACKOFF_MAX.as_millis());
const _: () = assert!(
    COMPACT_AFTER_BYTES_MIN <= COMPACT_AFTER_BYTES_DEFAULT
        && COMPACT_AFTER_BYTES_DEFAULT <= COMPACT_AFTER_BYTES_MAX
);
