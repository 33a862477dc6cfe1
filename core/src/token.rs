//! Generations, node ids and fencing tokens.
//!
//! A [`Token`] is what a leader attaches to every write: the [`Generation`] of its leadership
//! (the Raft term) and the [`NodeId`] that holds it. Storage compares tokens by generation; two
//! tokens of one generation from different holders are evidence of split brain, never an order.

use std::fmt;
use std::num::NonZeroU64;

use crate::error::{FenceError, FenceFault};

/// A generation of leadership (the Raft term). Zero means "none" and is not representable.
///
/// Invariant: `1 <= value <= Generation::MAX`. The top bit is reserved so the fence can mark a
/// high-water mark that is being rewritten (see `fence/slot.rs`).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(NonZeroU64);

impl Generation {
    /// The largest generation a token may carry: 2^63 - 1.
    pub const MAX: u64 = (1 << 63) - 1;

    /// The first generation.
    pub const FIRST: Generation = Generation(NonZeroU64::MIN);

    /// A generation from its number; `0` ("none") and numbers above [`Generation::MAX`] are
    /// refused.
    #[inline]
    pub fn new(value: u64) -> Result<Generation, FenceError> {
        if value > Self::MAX {
            return Err(FenceFault::InvalidToken("generation above 2^63 - 1").into());
        }
        // A match, not `ok_or(error)`: an eagerly built Error is dropped on the success path,
        // a call to its drop glue that the fence check across the C ABI paid twice per token.
        match NonZeroU64::new(value) {
            Some(value) => Ok(Generation(value)),
            None => {
                Err(FenceFault::InvalidToken("generation 0 means none and is never valid").into())
            }
        }
    }

    /// The generation's number.
    #[inline]
    pub const fn get(self) -> u64 {
        self.0.get()
    }

    /// The generation after this one, or `None` at [`Generation::MAX`].
    pub fn next(self) -> Option<Generation> {
        Generation::new(self.get() + 1).ok()
    }
}

/// A node of a group, as Raft numbers it. Zero is raft-rs's `INVALID_ID` and is not
/// representable.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(NonZeroU64);

impl NodeId {
    /// A node id from its number; `0` is refused.
    #[inline]
    pub fn new(value: u64) -> Result<NodeId, FenceError> {
        match NonZeroU64::new(value) {
            Some(value) => Ok(NodeId(value)),
            None => Err(FenceFault::InvalidToken(
                "holder or node id 0 is none: a token's holder (a fencekit node id, an etcd \
                 lease id, a ZooKeeper session id) is 1 to 2^64 - 1",
            )
            .into()),
        }
    }

    /// The node id's number.
    #[inline]
    pub const fn get(self) -> u64 {
        self.0.get()
    }
}

/// A fencing token: the generation of leadership and the node holding it.
///
/// Ordering is by generation first; the holder only breaks ties so that the order is total and
/// agrees with equality. The fence never lets the holder order decide anything: two tokens of
/// one generation with different holders are a *conflict* (see `Verdict::Conflict`).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token {
    /// The generation of leadership the write was made under.
    pub generation: Generation,
    /// The node that held that generation.
    pub holder: NodeId,
}

impl Token {
    /// Length of [`Token::to_bytes`].
    pub const ENCODED_LEN: usize = 16;

    /// A token for `holder` in `generation`.
    pub const fn new(generation: Generation, holder: NodeId) -> Token {
        Token { generation, holder }
    }

    /// A token from raw numbers, refusing generation 0, generations above
    /// [`Generation::MAX`] and holder 0.
    #[inline]
    pub fn from_parts(generation: u64, holder: u64) -> Result<Token, FenceError> {
        Ok(Token::new(
            Generation::new(generation)?,
            NodeId::new(holder)?,
        ))
    }

    /// The stable 16-byte encoding: generation then holder, each big-endian, so that the
    /// bytes of two tokens compare (memcmp) exactly as the tokens do.
    pub fn to_bytes(self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[..8].copy_from_slice(&self.generation.get().to_be_bytes());
        out[8..].copy_from_slice(&self.holder.get().to_be_bytes());
        out
    }

    /// Decodes [`Token::to_bytes`]; a slice of another length or an invalid part is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Token, FenceError> {
        let bytes: &[u8; Self::ENCODED_LEN] = bytes
            .try_into()
            .map_err(|_| FenceFault::InvalidToken("an encoded token is exactly 16 bytes"))?;
        let (generation, holder) = bytes.split_at(8);
        let number = |half: &[u8]| {
            let mut word = [0u8; 8];
            word.copy_from_slice(half);
            u64::from_be_bytes(word)
        };
        Token::from_parts(number(generation), number(holder))
    }
}

impl fmt::Debug for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.get())
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.get())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({:?}, {:?})", self.generation, self.holder)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "generation {}, holder {}", self.generation, self.holder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zero_and_out_of_range_parts_are_refused() {
        let cases: &[(u64, u64, bool)] = &[
            (0, 1, false),
            (1, 0, false),
            (Generation::MAX + 1, 1, false),
            (u64::MAX, 1, false),
            (1, 1, true),
            (Generation::MAX, u64::MAX, true),
        ];
        for &(generation, holder, valid) in cases {
            assert_eq!(
                Token::from_parts(generation, holder).is_ok(),
                valid,
                "({generation}, {holder})"
            );
        }
    }

    #[test]
    fn encoding_is_stable() {
        // A fixed vector: changing the encoding breaks every stored token and every binding.
        let token = Token::from_parts(0x0102_0304_0506_0708, 0x1112_1314_1516_1718).unwrap();
        assert_eq!(
            token.to_bytes(),
            [
                1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18
            ]
        );
        assert!(
            Token::from_bytes(&[0u8; 16]).is_err(),
            "the all-zero token is 'none'"
        );
        assert!(Token::from_bytes(&[1u8; 15]).is_err());
    }

    fn any_token() -> impl Strategy<Value = Token> {
        (1..=Generation::MAX, 1..=u64::MAX).prop_map(|(g, h)| Token::from_parts(g, h).unwrap())
    }

    proptest! {
        #[test]
        fn encoding_round_trips(token in any_token()) {
            prop_assert_eq!(Token::from_bytes(&token.to_bytes()).unwrap(), token);
        }

        #[test]
        fn byte_order_is_token_order(a in any_token(), b in any_token()) {
            prop_assert_eq!(a.cmp(&b), a.to_bytes().cmp(&b.to_bytes()));
        }

        #[test]
        fn generation_decides_the_order(a in any_token(), b in any_token()) {
            if a.generation != b.generation {
                prop_assert_eq!(a.cmp(&b), a.generation.cmp(&b.generation));
            }
        }
    }
}
