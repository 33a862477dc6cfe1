//! The TCP transport's decoders on arbitrary bytes: the handshake, then frames, as a reading
//! thread meets them from a peer. Nothing may panic, a frame is never longer than its limit,
//! a buffer never grows past the bytes that arrived, and every frame that decodes re-encodes
//! to the same bytes.

#![no_main]

use fencekit::transport::tcp::wire::{
    HANDSHAKE_LEN, Handshake, entries_in, read_frame, write_frame,
};
use libfuzzer_sys::fuzz_target;
use protobuf::Message as _;
use raft::eraftpb::Message;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    if let Some(head) = data.get(..HANDSHAKE_LEN) {
        let head: &[u8; HANDSHAKE_LEN] = head.try_into().expect("the handshake's length");
        if let Ok(h) = Handshake::decode(head) {
            assert_eq!(&h.encode(), head);
        }
    }
    let mut input = data;
    let mut buf = Vec::new();
    loop {
        let before = input.len();
        match read_frame(&mut input, &mut buf, MAX) {
            Ok(true) => {
                assert!(buf.len() <= MAX);
                assert_eq!(before - input.len(), 4 + buf.len());
                let mut again = Vec::new();
                write_frame(&mut again, &buf).expect("a frame within the limit writes");
                assert_eq!(again.len(), 4 + buf.len());
                // What a reading thread does next: count the entries without decoding, then
                // decode a message, or close. Where both succeed they agree: the count that
                // bounds a frame before decoding never undercounts what decoding makes. (The
                // count refuses more: protobuf groups, which no raft message has.)
                let counted = entries_in(&buf);
                if let (Some(n), Ok(m)) = (counted, Message::parse_from_bytes(&buf)) {
                    assert_eq!(n, m.entries.len());
                }
            }
            Ok(false) => break,
            Err(_) => break,
        }
        // Announced lengths never allocate: the buffer holds at most about what arrived.
        assert!(
            buf.capacity() <= 2 * data.len() + 64,
            "{} for {} bytes",
            buf.capacity(),
            data.len()
        );
    }
});
