"""fencekit: split-brain prevention for Python services.

A storage checks the fencing token of every write with a `Fence`; a write may land only when
the verdict is accepted. A service elects a leader with a `Node` (Raft over TCP) and writes
with the token of its usable leadership; its peers authenticate with mutual TLS
(`make_dev_certs` makes development certificates). The library is libfencekit, linked into
this package's compiled extension.
"""

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
    InvalidTokenError,
    LockedError,
    MembershipError,
    NodeFailedError,
    NotLeaderError,
    PanicError,
    PoisonedError,
    PolicyRefusedError,
    RaftError,
    StoppedError,
    StorageError,
    TlsError,
    TooLargeError,
    TooManyResourcesError,
    TransportError,
    UnknownResourceError,
    WrongClusterError,
    WrongOwnerError,
)
from .dev_certs import add_dev_cert, dev_cert_dir, make_dev_certs
from .fence import BATCH_MAX, Batch, Fence, WriteVerdict
from .node import Applied, Event, Leadership, Node
from .policy import TIE_BREAKER, VALIDATOR, Policy
from .token import Counters, Token, Verdict

__all__ = [
    "Applied",
    "BATCH_MAX",
    "Batch",
    "ClosedError",
    "CorruptError",
    "Counters",
    "Event",
    "Fence",
    "FencekitError",
    "FencekitTimeoutError",
    "ForkedError",
    "InvalidArgumentError",
    "InvalidBatchError",
    "InvalidConfigError",
    "InvalidKeyError",
    "InvalidTokenError",
    "Leadership",
    "LockedError",
    "MembershipError",
    "Node",
    "NodeFailedError",
    "NotLeaderError",
    "PanicError",
    "PoisonedError",
    "Policy",
    "PolicyRefusedError",
    "RaftError",
    "StoppedError",
    "StorageError",
    "TIE_BREAKER",
    "TlsError",
    "Token",
    "TooLargeError",
    "TooManyResourcesError",
    "TransportError",
    "UnknownResourceError",
    "VALIDATOR",
    "Verdict",
    "WriteVerdict",
    "WrongClusterError",
    "WrongOwnerError",
    "add_dev_cert",
    "dev_cert_dir",
    "make_dev_certs",
]
