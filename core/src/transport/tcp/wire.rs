//! The TCP transport's byte format: a handshake, then frames. With TLS, all of it travels
//! inside the TLS session; without (`Security::Insecure`), in the clear.
//!
//! ```text
//! handshake (connecting side → accepting side), exactly 28 bytes:
//!          0  [u8; 4]  magic "FKT2" (the protocol version: "FKT1" peers are refused)
//!          4  u64      cluster id
//!         12  u64      sender node id
//!         20  u64      receiver node id
//!
//! answer (accepting side → connecting side), one frame:
//!          "OK"            accepted; frames follow, one way only (connecting → accepting)
//!          "NO" [reason]   refused; the reason only to a peer whose certificate the accepting
//!                          side verified, never to an unauthenticated stranger
//!
//! frame:   0  u32      payload length, at most FRAME_MAX
//!          4  payload  one protobuf-encoded raft Message, at most ENTRIES_PER_MESSAGE_MAX
//!                      entries; length 0 is a keepalive
//! ```
//!
//! All integers are little-endian. The handshake has a fixed length so that it is read as
//! exactly its bytes: a stranger cannot make the accepting side allocate anything on the
//! strength of a length it sent. A frame's buffer grows with the bytes that actually arrive,
//! not with the length prefix, so a peer that announces 4 MiB and sends one byte costs one
//! byte. Keepalives let the accepting side close a connection that has been idle too long
//! (a peer that vanished without a FIN) and let the connecting side notice a dead connection
//! before a message is lost on it.

use std::io::{self, Read, Write};

use crate::cluster::ClusterId;
use crate::limits::FRAME_MAX;

/// Bytes of a handshake.
pub const HANDSHAKE_LEN: usize = 4 + 8 + 8 + 8;
const MAGIC: &[u8; 4] = b"FKT2";
/// The accepting side's answer when it takes the connection.
pub(crate) const ACCEPTED: &[u8] = b"OK";

/// The opening of a connection: who speaks to whom, in which cluster.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// The cluster id.
    pub cluster: ClusterId,
    /// The connecting node.
    pub from: u64,
    /// The node it means to reach.
    pub to: u64,
}

impl Handshake {
    /// The handshake's bytes.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[..4].copy_from_slice(MAGIC);
        out[4..12].copy_from_slice(&self.cluster.get().to_le_bytes());
        out[12..20].copy_from_slice(&self.from.to_le_bytes());
        out[20..28].copy_from_slice(&self.to.to_le_bytes());
        out
    }

    /// Decodes a handshake, or says why the bytes are not one.
    pub fn decode(bytes: &[u8; HANDSHAKE_LEN]) -> Result<Handshake, &'static str> {
        if &bytes[..4] != MAGIC {
            return Err("not a fencekit handshake (or another protocol version)");
        }
        let field = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        Ok(Handshake {
            cluster: ClusterId::new(field(4)),
            from: field(12),
            to: field(20),
        })
    }

    /// Reads exactly one handshake.
    pub fn read(input: &mut impl Read) -> io::Result<Result<Handshake, &'static str>> {
        let mut bytes = [0u8; HANDSHAKE_LEN];
        input.read_exact(&mut bytes)?;
        Ok(Handshake::decode(&bytes))
    }
}

/// How many entries the raft message in `payload` carries (field 7, `repeated Entry
/// entries`), counted from the field tags without decoding anything. Decoded, an entry takes
/// some 120 bytes whatever its size on the wire (as little as 2), so a frame's entries are
/// bounded before it is decoded. `None`: not a protobuf message.
pub fn entries_in(payload: &[u8]) -> Option<usize> {
    const ENTRIES_FIELD: u32 = 7;
    let mut input = protobuf::CodedInputStream::from_bytes(payload);
    let mut count = 0;
    while !input.eof().ok()? {
        let (field, wire_type) = input.read_tag_unpack().ok()?;
        count += usize::from(field == ENTRIES_FIELD);
        input.skip_field(wire_type).ok()?;
    }
    Some(count)
}

/// Writes one frame.
pub fn write_frame(out: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    if payload.len() > FRAME_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a frame of {} bytes exceeds the limit of {FRAME_MAX}",
                payload.len()
            ),
        ));
    }
    out.write_all(&(payload.len() as u32).to_le_bytes())?;
    out.write_all(payload)
}

/// Reads one frame of at most `max` bytes into `buf` (replacing its contents). `Ok(false)`:
/// the peer closed the connection cleanly before a frame began. A length above `max` is
/// `InvalidData` before anything is read or allocated for it.
pub fn read_frame(input: &mut impl Read, buf: &mut Vec<u8>, max: usize) -> io::Result<bool> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match input.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes exceeds the limit of {max}"),
        ));
    }
    buf.clear();
    // Grows with what arrives (read_to_end), never to the announced length up front.
    let read = input.take(len as u64).read_to_end(buf)?;
    if read < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_round_trips_and_other_bytes_are_refused() {
        let h = Handshake {
            cluster: ClusterId::new(7),
            from: 2,
            to: u64::MAX,
        };
        assert_eq!(Handshake::decode(&h.encode()), Ok(h));
        let mut old = h.encode();
        old[..4].copy_from_slice(b"FKT1");
        assert!(Handshake::decode(&old).is_err());
        assert!(Handshake::decode(&[0u8; HANDSHAKE_LEN]).is_err());
    }

    #[test]
    fn frames_round_trip_and_bad_lengths_are_refused() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"hello").unwrap();
        write_frame(&mut wire, b"").unwrap();
        let mut input = &wire[..];
        let mut buf = Vec::new();
        assert!(read_frame(&mut input, &mut buf, 16).unwrap());
        assert_eq!(buf, b"hello");
        assert!(read_frame(&mut input, &mut buf, 16).unwrap());
        assert!(buf.is_empty());
        assert!(!read_frame(&mut input, &mut buf, 16).unwrap());

        let huge = (u32::MAX).to_le_bytes();
        let err = read_frame(&mut &huge[..], &mut buf, 16).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // A frame cut short, and a length cut short.
        let mut cut = Vec::new();
        write_frame(&mut cut, b"hello").unwrap();
        for end in [2, 6] {
            let err = read_frame(&mut &cut[..end], &mut buf, 16).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        }
    }

    #[test]
    fn entries_are_counted_without_decoding() {
        use protobuf::Message as _;
        let mut m = raft::eraftpb::Message::default();
        m.set_msg_type(raft::eraftpb::MessageType::MsgAppend);
        m.index = 5;
        for i in 0..3 {
            m.mut_entries().push(raft::eraftpb::Entry {
                index: 6 + i,
                term: 1,
                ..Default::default()
            });
        }
        let bytes = m.write_to_bytes().unwrap();
        assert_eq!(entries_in(&bytes), Some(3));
        assert_eq!(entries_in(&[]), Some(0));
        assert_eq!(entries_in(&[0xFF; 8]), None);
    }

    /// A peer that announces the largest frame and sends one byte makes the reader hold one
    /// byte, not the announced length.
    #[test]
    fn the_buffer_grows_with_what_arrives() {
        let mut wire = (FRAME_MAX as u32).to_le_bytes().to_vec();
        wire.push(1);
        let mut buf = Vec::new();
        let err = read_frame(&mut &wire[..], &mut buf, FRAME_MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(buf.capacity() < 64 * 1024, "{}", buf.capacity());
    }
}
