"""fencekit: split-brain prevention for Python services.

A storage checks the fencing token of every write with a `Fence`; a write may land only when
the verdict is accepted. A service elects a leader with a `Node` (Raft over TCP) and writes
with the token of its usable leadership; its peers authenticate with mutual TLS
(`make_dev_certs` makes development certificates). The library is libfencekit, linked into
this package's compiled extension.

Leases are on CLOCK_BOOTTIME, which `now_ns()` reads. The kernel's log records go to the
"fencekit" logger (`set_log_level`). For asyncio, `fencekit.aio.AsyncNode`.
"""

from ._native import ffi as _ffi, lib as _lib

from .errors import (
    ClosedError,
    CorruptError,
    FencekitError,
    FencekitTimeoutError,
    ForkedError,
    InvalidArgumentError,
    InvalidBatchError,
    InvalidConfigError,
    InvalidKeyError,
    InvalidSourceError,
    InvalidTokenError,
    LockedError,
    MembershipError,
    NodeFailedError,
    NotLeaderError,
    PanicError,
    PluginsDisabledError,
    PoisonedError,
    PolicyRefusedError,
    RaftError,
    RebaseRefusedError,
    StoppedError,
    StorageError,
    TlsError,
    TooLargeError,
    TooManyResourcesError,
    TooManySourcesError,
    TransportError,
    UnknownResourceError,
    WrongClusterError,
    WrongOwnerError,
)
from .clock import now_ns
from .coordinators import token_from_etcd, token_from_kubernetes_lease, token_from_zookeeper
from .config import NodeConfig, PeerConfig, TimingConfig, TlsConfig
from .dev_certs import add_dev_cert, dev_cert_dir, make_dev_certs
from .fence import BATCH_MAX, Batch, Fence, WriteVerdict
from .kinds import AppliedKind, EventKind, LostReason, PolicyKind, VerdictKind
from .logs import TRACE, get_log_level, set_log_level
from .node import WAIT_SLICE, Applied, Event, Leadership, Node
from .policy import TIE_BREAKER, VALIDATOR, Policy
from .source import (
    SOURCE_NAME_MAX,
    UNNAMED_SOURCE,
    check_source_name,
    etcd_source,
    fencekit_source,
    kubernetes_lease_source,
    named_source,
    zookeeper_source,
)
from .token import Counters, Token, TokenLike, Verdict

__version__: str = _ffi.string(_lib.fk_version()).decode()
"""The version of fencekit (the library linked in, the workspace's version)."""

if _lib.fk_abi_version() != _lib.FK_ABI_VERSION:
    raise ImportError(
        f"fencekit: the linked library speaks ABI {_lib.fk_abi_version()}, this binding {_lib.FK_ABI_VERSION}"
    )

__all__ = [
    "Applied",
    "AppliedKind",
    "BATCH_MAX",
    "Batch",
    "ClosedError",
    "CorruptError",
    "Counters",
    "Event",
    "EventKind",
    "Fence",
    "FencekitError",
    "FencekitTimeoutError",
    "ForkedError",
    "InvalidArgumentError",
    "InvalidBatchError",
    "InvalidConfigError",
    "InvalidKeyError",
    "InvalidSourceError",
    "InvalidTokenError",
    "Leadership",
    "LockedError",
    "LostReason",
    "MembershipError",
    "Node",
    "NodeConfig",
    "NodeFailedError",
    "NotLeaderError",
    "PanicError",
    "PeerConfig",
    "PluginsDisabledError",
    "PoisonedError",
    "Policy",
    "PolicyKind",
    "PolicyRefusedError",
    "RaftError",
    "RebaseRefusedError",
    "SOURCE_NAME_MAX",
    "StoppedError",
    "StorageError",
    "TIE_BREAKER",
    "TRACE",
    "TimingConfig",
    "TlsConfig",
    "TlsError",
    "Token",
    "TokenLike",
    "TooLargeError",
    "TooManyResourcesError",
    "TooManySourcesError",
    "TransportError",
    "UNNAMED_SOURCE",
    "UnknownResourceError",
    "VALIDATOR",
    "Verdict",
    "VerdictKind",
    "WAIT_SLICE",
    "WriteVerdict",
    "WrongClusterError",
    "WrongOwnerError",
    "add_dev_cert",
    "__version__",
    "check_source_name",
    "dev_cert_dir",
    "etcd_source",
    "fencekit_source",
    "get_log_level",
    "kubernetes_lease_source",
    "make_dev_certs",
    "named_source",
    "now_ns",
    "set_log_level",
    "token_from_etcd",
    "token_from_kubernetes_lease",
    "token_from_zookeeper",
    "zookeeper_source",
]
