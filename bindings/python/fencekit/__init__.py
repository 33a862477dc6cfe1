"""fencekit: split-brain prevention for Python services.

A storage checks the fencing token of every write with a `Fence`; a write may land only when
the verdict is accepted. A service elects a leader with a `Node` (Raft over TCP) and writes
with the token of its usable leadership. The library is libfencekit, linked into this
package's compiled extension.
"""

from .errors import (
    ClosedError,
    CorruptError,
    FencekitError,
    FencekitTimeoutError,
    InvalidArgumentError,
    InvalidBatchError,
    InvalidConfigError,
    InvalidKeyError,
    InvalidTokenError,
    LockedError,
    NotLeaderError,
    PanicError,
    PoisonedError,
    PolicyRefusedError,
    StoppedError,
    StorageError,
    TooLargeError,
    TooManyResourcesError,
    TransportError,
    UnknownResourceError,
    WrongClusterError,
)
from .fence import BATCH_MAX, Batch, Fence
from .token import Counters, Token, Verdict

__all__ = [
    "BATCH_MAX",
    "Batch",
    "ClosedError",
    "CorruptError",
    "Counters",
    "Fence",
    "FencekitError",
    "FencekitTimeoutError",
    "InvalidArgumentError",
    "InvalidBatchError",
    "InvalidConfigError",
    "InvalidKeyError",
    "InvalidTokenError",
    "LockedError",
    "NotLeaderError",
    "PanicError",
    "PoisonedError",
    "PolicyRefusedError",
    "StoppedError",
    "StorageError",
    "Token",
    "TooLargeError",
    "TooManyResourcesError",
    "TransportError",
    "UnknownResourceError",
    "Verdict",
    "WrongClusterError",
]
