//! Tokens minted by the coordinators people already run, so that a storage in any language can
//! check them with the fence (with the matching [`crate::Source`]). The C ABI, the Go and the
//! Python bindings map them the same way; each mapping's numbers only grow from one leader to
//! the next within one source, which is all the fence needs.
//!
//! | coordinator | generation | holder | source |
//! |---|---|---|---|
//! | etcd `concurrency.Election` / `Mutex` | the leader (owner) key's create revision | the session's lease id | [`crate::Source::etcd_cluster`] |
//! | ZooKeeper election or lock recipe | the winning znode's `czxid` | its `ephemeralOwner` (session id) | [`crate::Source::zookeeper_ensemble`] |
//! | Kubernetes Lease (client-go `leaderelection`) | `spec.leaseTransitions` + 1 | [`holder_of_identity`] of `spec.holderIdentity` | [`crate::Source::kubernetes_lease`] |
//!
//! Why they grow: an etcd candidate's key is created when it campaigns and the leader is the
//! oldest key, so each successor's key is younger (a higher revision); ZooKeeper's sequential
//! znodes are ordered by creation, hence by zxid; client-go adds one to `leaseTransitions`
//! whenever the Lease changes hands.

use crate::error::{FenceError, FenceFault};
use crate::token::{NodeId, Token};

impl Token {
    /// The token of an etcd election's leader or a mutex's owner: the create revision of its
    /// key (`Election.Rev()`, or the owner key's `CreateRevision`) and the session's lease id.
    pub fn from_etcd(create_revision: i64, lease_id: i64) -> Result<Token, FenceError> {
        if create_revision <= 0 {
            return Err(FenceFault::InvalidToken(
                "an etcd create revision is 1 or more (0 is a key that does not exist)",
            )
            .into());
        }
        if lease_id == 0 {
            return Err(FenceFault::InvalidToken(
                "etcd lease id 0 is no lease: use the session's lease (Session.Lease())",
            )
            .into());
        }
        Token::from_parts(create_revision as u64, lease_id as u64)
    }

    /// The token of a ZooKeeper election's leader or a lock's owner: the winning znode's
    /// `czxid` and `ephemeralOwner` (its session id, taken as the 64 bits it is).
    pub fn from_zookeeper(czxid: i64, ephemeral_owner: i64) -> Result<Token, FenceError> {
        if czxid <= 0 {
            return Err(FenceFault::InvalidToken("a ZooKeeper czxid is 1 or more").into());
        }
        if ephemeral_owner == 0 {
            return Err(FenceFault::InvalidToken(
                "ephemeralOwner 0: the znode is not ephemeral, so no session holds it",
            )
            .into());
        }
        Token::from_parts(czxid as u64, ephemeral_owner as u64)
    }

    /// The token of a Kubernetes Lease's holder: `spec.leaseTransitions` + 1 and the holder
    /// identity's [`holder_of_identity`].
    pub fn from_kubernetes_lease(
        lease_transitions: i32,
        holder_identity: &str,
    ) -> Result<Token, FenceError> {
        if lease_transitions < 0 {
            return Err(FenceFault::InvalidToken("a Lease's leaseTransitions is 0 or more").into());
        }
        if holder_identity.is_empty() {
            return Err(FenceFault::InvalidToken(
                "a Lease with no holderIdentity is held by nobody",
            )
            .into());
        }
        Ok(Token::new(
            crate::token::Generation::new(lease_transitions as u64 + 1)?,
            holder_of_identity(holder_identity.as_bytes()),
        ))
    }
}

/// A holder number for a holder named by text (a Kubernetes `holderIdentity`, a pod name):
/// 64-bit FNV-1a of its bytes, 1 where that is 0. FNV-1a because every language has it or
/// writes it in five lines (Go's `hash/fnv`), so that all bindings agree. Two identities may
/// share a number; the fence can then not tell them apart within one generation, which the
/// coordinator already gives one holder.
pub fn holder_of_identity(identity: &[u8]) -> NodeId {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = identity
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    NodeId::new(hash.max(1)).expect("at least 1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        // From the FNV reference test suite (and Go's hash/fnv).
        assert_eq!(holder_of_identity(b"").get(), 0xcbf2_9ce4_8422_2325);
        assert_eq!(holder_of_identity(b"a").get(), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(holder_of_identity(b"foobar").get(), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn mappings_refuse_what_no_coordinator_hands_out() {
        assert!(Token::from_etcd(0, 7).is_err());
        assert!(Token::from_etcd(-1, 7).is_err());
        assert!(Token::from_etcd(5, 0).is_err());
        let etcd = Token::from_etcd(1_000_000, 0x694d_8f0a_2c11_e703).unwrap();
        assert_eq!(etcd.generation.get(), 1_000_000);
        // A session id with its top bit set (server ids from 128 up) is the same 64 bits.
        let zk = Token::from_zookeeper(0x1_0000_0003, -0x7eff_ffff_ffff_fffe).unwrap();
        assert_eq!(zk.holder.get(), 0x8100_0000_0000_0002);
        assert!(Token::from_zookeeper(3, 0).is_err());
        assert!(Token::from_zookeeper(0, 3).is_err());
        let k8s = Token::from_kubernetes_lease(0, "pod-a").unwrap();
        assert_eq!(k8s.generation.get(), 1);
        assert_eq!(k8s.holder, holder_of_identity(b"pod-a"));
        assert!(Token::from_kubernetes_lease(-1, "pod-a").is_err());
        assert!(Token::from_kubernetes_lease(0, "").is_err());
    }
}
