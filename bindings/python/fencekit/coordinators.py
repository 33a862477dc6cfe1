"""Tokens minted by the coordinators people already run, mapped as the kernel maps them (core's
coordinators.rs, the C ABI's `fk_token_from_*`), so that a storage in any language checks the
same numbers:

| coordinator | generation | holder | source |
|---|---|---|---|
| etcd `concurrency.Election` / `Mutex` | the leader (owner) key's create revision | the session's lease id | `etcd_source(cluster_id)` |
| ZooKeeper election or lock recipe | the winning znode's `czxid` | its `ephemeralOwner` (session id) | `zookeeper_source(ensemble)` |
| Kubernetes Lease | `spec.leaseTransitions` + 1 | 64-bit FNV-1a of `spec.holderIdentity` (1 where 0) | `kubernetes_lease_source(ns, name, uid)` |

Each mapping's numbers only grow from one holder to the next within one source, which is all
the fence needs. Check them with `Fence.check_from` and the matching source; never with
`Fence.check`, whose tokens are a fencekit group's.

The token is the holder's at the moment it won: read it again at every election, never keep
it across one (`fencekit.zookeeper` reads it from the winning znode for kazoo's recipes).
"""

from __future__ import annotations

from ._native import ffi, lib
from .errors import InvalidTokenError, check
from .token import Token

_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1
_U64_MAX = (1 << 64) - 1
_I32_MIN = -(1 << 31)
_I32_MAX = (1 << 31) - 1


def _int(value: object, what: str, low: int, high: int) -> int:
    """`value` as an int in [low, high]: TypeError for anything but an int (a bool is not
    one), InvalidTokenError naming `what` out of range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} is an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidTokenError(lib.FK_STATUS_INVALID_TOKEN, f"invalid token: {what} {value} is out of range")
    return int(value)


def _signed64(value: int) -> int:
    """The 64 bits of a session id as the int64_t the C ABI takes."""
    return value - (1 << 64) if value > _I64_MAX else value


def _token(out: "ffi.CData") -> Token:
    return Token(int(out.generation), int(out.holder))


def token_from_etcd(create_revision: int, lease_id: int) -> Token:
    """The token of an etcd election's leader or a mutex's owner: its key's create revision
    (`Election.Rev()`, the owner key's `create_revision`) and the session's lease id. Check it
    from `etcd_source(cluster_id)`. A revision below 1 (a key that does not exist) or lease id
    0 (no lease) raises InvalidTokenError."""
    revision = _int(create_revision, "an etcd create revision", _I64_MIN, _I64_MAX)
    lease = _int(lease_id, "an etcd lease id", _I64_MIN, _I64_MAX)
    out = ffi.new("fk_token *")
    check(lib.fk_token_from_etcd(revision, lease, out))
    return _token(out)


def token_from_zookeeper(czxid: int, ephemeral_owner: int) -> Token:
    """The token of a ZooKeeper election's leader or a lock's owner: the winning znode's
    `czxid` and `ephemeralOwner` (the session id of its holder, taken as the 64 bits it is:
    kazoo's negative session ids and the unsigned form `zkCli` prints, as 0x8100000000000002,
    are the same holder). Check it from `zookeeper_source(ensemble)`. A czxid below 1 or an
    ephemeralOwner of 0 (a persistent znode, which no session holds) raises
    InvalidTokenError."""
    zxid = _int(czxid, "a ZooKeeper czxid", _I64_MIN, _I64_MAX)
    owner = _signed64(_int(ephemeral_owner, "a ZooKeeper ephemeralOwner", _I64_MIN, _U64_MAX))
    out = ffi.new("fk_token *")
    check(lib.fk_token_from_zookeeper(zxid, owner, out))
    return _token(out)


def token_from_kubernetes_lease(lease_transitions: int, holder_identity: str) -> Token:
    """The token of a Kubernetes Lease's holder: `spec.leaseTransitions` + 1 and the 64-bit
    FNV-1a of `spec.holderIdentity` (its UTF-8 bytes; 1 where the hash is 0). Check it from
    `kubernetes_lease_source(namespace, name, uid)`. The Python client leaves an unset
    `lease_transitions` None, which Kubernetes means as 0: pass `spec.lease_transitions or
    0`. A negative count or an empty identity (a Lease nobody holds) raises
    InvalidTokenError."""
    transitions = _int(lease_transitions, "a Lease's leaseTransitions", _I32_MIN, _I32_MAX)
    if not isinstance(holder_identity, str):
        raise TypeError(f"a holderIdentity is a str, not {type(holder_identity).__name__}")
    try:
        identity = holder_identity.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidTokenError(lib.FK_STATUS_INVALID_TOKEN, f"invalid token: holderIdentity {e}") from None
    out = ffi.new("fk_token *")
    check(lib.fk_token_from_kubernetes_lease(transitions, identity, len(identity), out))
    return _token(out)
