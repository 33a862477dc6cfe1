"""Token sources: the names of the coordinators whose numbers a fence checks.

A generation means something only beside the other generations of the coordinator that
numbered it: revision 1,000,000 of one etcd cluster says nothing about revision 5 of another.
So a fence remembers, per resource, the source its tokens come from, and answers
"foreign_source" to a token of any other (`Fence.check_from`). A source is named
`<kind>:<identity>`; these helpers build the names exactly as the kernel does (core's
`Source` constructors), from what makes each coordinator's numbering unique:

| helper | name | its numbering restarts when |
|---|---|---|
| `fencekit_source(cluster)` | `fencekit:<cluster id, decimal>` | the group is re-created |
| `etcd_source(cluster_id)` | `etcd:<cluster id, 16 lowercase hex digits>` | the cluster is re-created (a new id) |
| `zookeeper_source(ensemble)` | `zookeeper:<ensemble>` | the ensemble's data is wiped |
| `kubernetes_lease_source(namespace, name, uid)` | `k8s-lease:<namespace>/<name>/<uid>` | the Lease is re-created (a new uid) |
| `named_source(name)` | `named:<name>` | whatever its owner says |

`UNNAMED_SOURCE` ("unnamed") is the source of `Fence.check`'s tokens.
"""

from __future__ import annotations

from ._native import lib
from .errors import InvalidSourceError, check

SOURCE_NAME_MAX: int = lib.FK_SOURCE_NAME_MAX
"""The longest source name, in bytes."""

UNNAMED_SOURCE = "unnamed"
"""The source of tokens checked without naming one (`Fence.check`, `Fence.check_key`)."""

_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF


def check_source_name(name: str) -> str:
    """`name` itself if it names a token source as the kernel takes it (`<kind>:<identity>`,
    or "unnamed"); InvalidSourceError, naming what is wrong, otherwise. Any kind is taken, so
    that a coordinator fencekit does not know can be named; its identity must make its
    numbering unique. The library decides (`fk_source_validate`): the rules live in one place."""
    if not isinstance(name, str):
        raise TypeError(f"a source name is a str, not {type(name).__name__}")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate: not text at all, let alone a source name.
        raise InvalidSourceError(
            lib.FK_STATUS_INVALID_SOURCE,
            f"invalid token source {name!r}: a source name is printable ASCII without spaces",
        ) from None
    check(lib.fk_source_validate(encoded, len(encoded)))
    return name


def _identity(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} is a str, not {type(value).__name__}")
    return value


def fencekit_source(cluster: int) -> str:
    """A fencekit group's terms: `fencekit:<cluster id>`, the id its nodes run with
    (`--cluster`, `NodeConfig`'s `cluster`), in decimal."""
    if isinstance(cluster, bool) or not isinstance(cluster, int):
        raise TypeError(f"a cluster id is an int, not {type(cluster).__name__}")
    return check_source_name(f"fencekit:{cluster}")


def etcd_source(cluster_id: int) -> str:
    """An etcd cluster's revisions: `etcd:<cluster id as 16 lowercase hex digits>`, the
    `cluster_id` of every response header (a re-created cluster has another)."""
    if isinstance(cluster_id, bool) or not isinstance(cluster_id, int):
        raise TypeError(f"an etcd cluster id is an int, not {type(cluster_id).__name__}")
    if not 0 <= cluster_id <= _U64_MAX:
        raise InvalidSourceError(
            lib.FK_STATUS_INVALID_SOURCE,
            f"invalid token source 'etcd:{cluster_id}': an etcd cluster id is 0 to 2**64 - 1",
        )
    return f"etcd:{cluster_id:016x}"


def zookeeper_source(ensemble: str) -> str:
    """A ZooKeeper ensemble's zxids: `zookeeper:<ensemble>`, a name the operator chooses.
    ZooKeeper has no cluster id, and its zxids restart when its data is wiped: name the
    ensemble anew then (and rebase the resources it fenced), or the fence, holding the old
    ensemble's high zxids, refuses every new leader as stale."""
    return check_source_name("zookeeper:" + _identity(ensemble, "an ensemble name"))


def kubernetes_lease_source(namespace: str, name: str, uid: str) -> str:
    """A Kubernetes Lease's leader transitions: `k8s-lease:<namespace>/<name>/<uid>`, with the
    Lease's `metadata.uid` (a re-created Lease has another)."""
    parts = (
        _identity(namespace, "a namespace"),
        _identity(name, "a Lease name"),
        _identity(uid, "a uid"),
    )
    return check_source_name("k8s-lease:" + "/".join(parts))


def named_source(name: str) -> str:
    """Any other coordinator, by a name of its owner's choosing: `named:<name>`."""
    return check_source_name("named:" + _identity(name, "a source's name"))
