//! Every limit of the kernel, named and checked together (TigerBeetle's `constants.zig`).

/// Longest resource key, in bytes.
pub const KEY_LEN_MAX: usize = 256;

/// Most resources one fence can be opened for (`FenceOptions::max_resources`).
pub const RESOURCES_MAX: usize = 1 << 20;

/// Resources a fence is opened for unless told otherwise.
pub const RESOURCES_DEFAULT: usize = 1 << 16;

/// Most checks in one `Fence::check_batch` call.
pub const BATCH_MAX: usize = 4096;

/// Largest record payload the log takes.
pub const RECORD_PAYLOAD_MAX: usize = 1 << 20;

/// Smallest and largest segment file, and the default.
pub const SEGMENT_SIZE_MIN: u64 = 1 << 16;
/// Largest segment file: record offsets inside a segment are 32-bit.
pub const SEGMENT_SIZE_MAX: u64 = 1 << 30;
/// Segment size unless told otherwise.
pub const SEGMENT_SIZE_DEFAULT: u64 = 16 << 20;

/// A Raft log is rewritten as its live state once it has grown past this many bytes and four
/// times that state.
pub const RAFT_LOG_COMPACT_MIN_BYTES: u64 = 64 << 20;

/// Largest proposal payload: an entry must fit in one log record, with room for its framing.
pub const PROPOSAL_MAX: usize = RECORD_PAYLOAD_MAX / 2;

/// Largest frame the TCP transport reads; a larger length prefix ends the connection.
pub const FRAME_MAX: usize = 4 * RECORD_PAYLOAD_MAX;

/// Messages queued per peer by the TCP transport; beyond this, messages are dropped (Raft
/// retransmits) rather than stalling the node thread.
pub const PEER_QUEUE_MAX: usize = 4096;

/// How far ahead of a node's term a peer's message may be. Each term is one election; no
/// honest history reaches 2^32 elections while a member is away, and an attacker needs 2^31
/// accepted jumps to exhaust the generations.
pub const TERM_JUMP_MAX: u64 = 1 << 32;

/// Events kept for a consumer that does not read them; the oldest are dropped beyond this.
pub const EVENT_QUEUE_MAX: usize = 1024;

/// Threads that count accepted checks on a private counter row; further threads share one
/// atomic row (correct, slower).
pub const COUNTER_SHARDS_MAX: usize = 64;

// A fence mark record (holder + key) must fit in the smallest segment with room to spare.
const _: () = assert!(8 + KEY_LEN_MAX < RECORD_PAYLOAD_MAX);
const _: () = assert!((SEGMENT_SIZE_MIN as usize) > 64 + 32 + 8 + KEY_LEN_MAX);
// Resource ids are u32 and the key index is twice the resource capacity.
const _: () = assert!(RESOURCES_MAX <= (u32::MAX as usize) / 2);
const _: () = assert!(RESOURCES_DEFAULT <= RESOURCES_MAX);
const _: () =
    assert!(SEGMENT_SIZE_MIN <= SEGMENT_SIZE_DEFAULT && SEGMENT_SIZE_DEFAULT <= SEGMENT_SIZE_MAX);
const _: () = assert!(SEGMENT_SIZE_MAX <= u32::MAX as u64);
