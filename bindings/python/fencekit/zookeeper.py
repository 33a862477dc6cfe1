"""Fencing tokens of kazoo's ZooKeeper recipes: the leader of an `Election`, the holder of a
`Lock`.

    from fencekit.zookeeper import election_token, ensemble_source

    SOURCE = ensemble_source("prod-zk")          # the storage checks tokens from this source

    def lead() -> None:
        token = election_token(election)         # read once per election, never kept past it
        while leading:
            storage.write(job, token)            # the storage: fence.check_from(r, SOURCE, token)

    election = client.Election("/app/scheduler", "worker-1")
    election.run(lead)

The token is the winning znode's `czxid` (the zxid that created it) and `ephemeralOwner` (the
session holding it): the recipes' znodes are sequential, the holder is the lowest, and each
holder's znode is younger than its predecessor's, so each holder's czxid is higher than every
earlier holder's within one ensemble. kazoo's `Election` hides its znode; `election_token`
finds it under the election's path (the lowest contender, as the recipe orders them) and
reads its stat, and answers only if that znode belongs to this client's session and to this
contender: a deposed leader never gets its successor's token.

The source is `zookeeper:<ensemble name>`, a name the operator gives the ensemble: ZooKeeper
has no cluster id, and its zxids restart from 0 when its data is wiped, so the fence, holding
the old ensemble's high zxids, would refuse every new leader as stale. Name the ensemble anew
then, and rebase the resources it fenced (`Fence.rebase`, an operator's act).

Needs kazoo (`pip install 'fencekit-kernel[zookeeper]'`); `import fencekit` does not.
"""

from __future__ import annotations

import re
from typing import Any, List, Optional, Tuple

try:
    from kazoo.exceptions import NoNodeError  # type: ignore[import-untyped, import-not-found, unused-ignore]
    from kazoo.recipe.lock import ReadLock, Semaphore  # type: ignore[import-untyped, import-not-found, unused-ignore]
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fencekit.zookeeper needs kazoo: pip install 'fencekit-kernel[zookeeper]' (or kazoo)"
    ) from e

from .coordinators import token_from_zookeeper
from .source import zookeeper_source
from .token import Token

__all__ = ["election_token", "ensemble_source", "holder_token", "lock_token", "znode_token"]

# A contender of kazoo's Lock, WriteLock and ReadLock (and so of Election, which is a Lock):
# "<uuid>__lock__<10-digit sequence>" ("__rlock__" for readers). kazoo orders contenders by
# that sequence (as text, as here); the lowest holds the lock.
_CONTENDER = re.compile(r"(?:__lock__|__rlock__)(-?\d{10})$")
_U64 = (1 << 64) - 1


def ensemble_source(name: str) -> str:
    """The source of an ensemble's tokens, `zookeeper:<name>` (`fencekit.zookeeper_source`).
    Choose a new name when the ensemble's data is wiped: its zxids restart then."""
    return zookeeper_source(name)


def znode_token(stat: Any) -> Token:
    """The token of an ephemeral znode from its stat (kazoo's `ZnodeStat`): its `czxid` and
    `ephemeralOwner`. InvalidTokenError for a persistent znode (ephemeralOwner 0)."""
    return token_from_zookeeper(stat.czxid, stat.ephemeralOwner)


def holder_token(client: Any, path: str, node: Optional[str] = None) -> Optional[Token]:
    """The token of the holder of the lock (or election) at `path` if this client's session
    holds it now, else None.

    The holder is the lowest of the contenders' znodes under `path` (as kazoo's recipes order
    them). It is ours if its `ephemeralOwner` is this client's session and, when `node` (our
    znode's name) is given, it is that znode; otherwise the answer is None, never another
    holder's token. None too when the client is not connected (stopped, ZooKeeper
    unreachable, or its session expired and no new one is up yet) or `path` does not exist:
    then nobody can say who holds it, so act on nothing. A connection lost during the call
    raises kazoo's exception (ConnectionLoss, SessionExpiredError...).
    """
    client_id = client.client_id
    if client_id is None:
        return None
    session = int(client_id[0])
    try:
        children: List[str] = client.get_children(path)
    except NoNodeError:
        return None
    contenders: List[Tuple[str, str]] = []
    for child in children:
        found = _CONTENDER.search(child)
        if found is not None:
            contenders.append((found.group(1), child))
    if not contenders:
        return None
    lowest = min(contenders)[1]
    if node is not None and lowest != node:
        return None
    stat = client.exists(f"{path.rstrip('/')}/{lowest}")
    if stat is None or (int(stat.ephemeralOwner) & _U64) != (session & _U64):
        return None
    # The session may have changed since client_id was read: the znode's owner is what
    # decides, and it was compared with the session read before the znode was.
    return znode_token(stat)


def lock_token(lock: Any) -> Optional[Token]:
    """The token of a kazoo `Lock` (or `WriteLock`) this client holds: None unless it is
    acquired and its znode is still the holder (not after its session expired). A `ReadLock`
    or `Semaphore` has several holders at once, which one token cannot fence: TypeError."""
    if isinstance(lock, (ReadLock, Semaphore)):
        raise TypeError(f"a {type(lock).__name__} has many holders at once: fence an exclusive Lock")
    if not lock.is_acquired or lock.node is None:
        return None
    return holder_token(lock.client, lock.path, lock.node)


def election_token(election: Any) -> Optional[Token]:
    """The token of this contender of a kazoo `Election` while it leads (inside the function
    `election.run` called), else None. Read it once at the start of each leadership and pass
    it with every write of that leadership; never keep it across elections."""
    lock = getattr(election, "lock", None)
    if lock is None:
        raise TypeError(f"an election is a kazoo Election, not {type(election).__name__}")
    return lock_token(lock)
