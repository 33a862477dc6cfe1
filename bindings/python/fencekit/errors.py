"""Exceptions, one per status code family of the C ABI (ffi/README.md)."""

from __future__ import annotations

from ._native import ffi, lib


class FencekitError(Exception):
    """A call into fencekit failed. `status` is the C ABI's code, `status_name` its name."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.status_name = ffi.string(lib.fk_status_name(status)).decode()


class InvalidArgumentError(FencekitError, ValueError):
    """An argument out of its range, NULL where it must not be, or not valid UTF-8."""


class InvalidTokenError(InvalidArgumentError):
    """A token (or node id) that no token can have: a generation that is not 1 to 2**63 - 1,
    or a holder that is not 1 to 2**64 - 1 (a holder is a node id; 0 is none)."""


class InvalidKeyError(InvalidArgumentError):
    """A resource key that is empty or longer than 256 bytes."""


class InvalidBatchError(InvalidArgumentError):
    """A batch that is too long, or holds a bad item: a bad token, or a resource id the fence
    never gave out. The message names the item by its index ("item 3: ...")."""


class InvalidConfigError(InvalidArgumentError):
    """A node configuration that does not parse or is not safe."""


class UnknownResourceError(FencekitError, KeyError):
    """A resource id the fence never handed out, or a key it does not hold."""

    def __str__(self) -> str:
        return str(self.args[0])


class TooManyResourcesError(FencekitError):
    """The fence holds as many resources as it was opened for."""


class TooLargeError(InvalidArgumentError):
    """A payload or proposal larger than the log accepts."""


class InvalidSourceError(InvalidArgumentError):
    """A token source name that is not `<kind>:<identity>` (printable ASCII without spaces, at
    most 200 bytes, the kind of lowercase letters, digits and '-') or `unnamed`, or a source id
    the fence never gave. The message names the source."""


class TooManySourcesError(FencekitError):
    """The fence already knows as many token sources as it can (1024)."""


class RebaseRefusedError(FencekitError):
    """A rebase refused: to the source the resource already takes tokens from (a coordinator
    re-created from scratch is a new source: give it a new name), or without an acceptable
    `by` (who did it: 1 to 256 bytes of UTF-8 without control characters). Nothing changed."""


class StorageError(FencekitError, OSError):
    """An I/O failure, or a log that cannot be used."""


class CorruptError(StorageError):
    """A log damaged before its tail (the message names the file and offset)."""


class LockedError(StorageError):
    """The directory is in use by another open fence or node."""


class WrongClusterError(StorageError):
    """The directory belongs to another cluster or node."""


class WrongOwnerError(StorageError):
    """The directory holds something else: the log of another kind (a node's data directory
    opened as a fence), or files but no log (a new log is made only in an empty directory)."""


class ForkedError(FencekitError):
    """A Fence or Node used in a child process after fork (gunicorn --preload, Celery prefork,
    multiprocessing's "fork" start method). Parent and child would each advance their own copy
    of the marks, so a token refused in one could be accepted in the other: open the Fence
    (or start the Node) in each worker process instead, after the fork."""


class NotLeaderError(FencekitError):
    """This node does not hold usable leadership."""


class MembershipError(FencekitError):
    """A membership change was refused, or leadership was handed to a node that cannot take
    it: this node, or one that is not a voter (the message names it; pick one of
    `status()["voters"]`)."""


class RaftError(FencekitError):
    """Raft refused an operation."""


class StoppedError(FencekitError):
    """The node has stopped."""


class NodeFailedError(FencekitError):
    """The node failed: its thread panicked (a bug in fencekit or raft-rs), or it could not
    write its log. The message gives the cause. A failed node reports no leadership and
    refuses every call with this error until it is restarted (a new `Node` on its data
    directory). Deliberately not a StoppedError: a host that treats "stopped" as a normal
    shutdown must not mistake a failure for one."""


class FencekitTimeoutError(FencekitError, TimeoutError):
    """Nothing arrived, or nothing finished, in time."""


class TransportError(FencekitError):
    """The network transport failed (a port in use, a peer that does not resolve)."""


class TlsError(FencekitError):
    """TLS files that cannot be used: a key readable by its group or others, a file that is not
    PEM, a certificate naming another node or not signed by the CA (the message names the
    file); or development certificates that cannot be made (a directory that holds a CA
    already, a node that has certificates already)."""


class PolicyRefusedError(FencekitError):
    """A policy plugin was refused at load (the message names the cause)."""


class PluginsDisabledError(FencekitError):
    """This build of the library has no WebAssembly plugin host (built without the ffi
    crate's `plugins` feature): no policy can be loaded."""


class PanicError(FencekitError):
    """A bug inside fencekit panicked; the handle is poisoned."""


class PoisonedError(FencekitError):
    """The handle was poisoned by an earlier panic and refuses every call."""


class ClosedError(FencekitError):
    """The object was closed."""

    def __init__(self, what: str) -> None:
        Exception.__init__(self, f"this {what} is closed")
        self.status = -1
        self.status_name = "CLOSED"


_BY_STATUS: dict[int, type[FencekitError]] = {
    lib.FK_STATUS_NULL_ARGUMENT: InvalidArgumentError,
    lib.FK_STATUS_INVALID_ARGUMENT: InvalidArgumentError,
    lib.FK_STATUS_INVALID_UTF8: InvalidArgumentError,
    lib.FK_STATUS_INVALID_TOKEN: InvalidTokenError,
    lib.FK_STATUS_INVALID_KEY: InvalidKeyError,
    lib.FK_STATUS_INVALID_BATCH: InvalidBatchError,
    lib.FK_STATUS_INVALID_CONFIG: InvalidConfigError,
    lib.FK_STATUS_UNKNOWN_RESOURCE: UnknownResourceError,
    lib.FK_STATUS_TOO_MANY_RESOURCES: TooManyResourcesError,
    lib.FK_STATUS_TOO_LARGE: TooLargeError,
    lib.FK_STATUS_INVALID_SOURCE: InvalidSourceError,
    lib.FK_STATUS_TOO_MANY_SOURCES: TooManySourcesError,
    lib.FK_STATUS_REBASE_REFUSED: RebaseRefusedError,
    lib.FK_STATUS_IO: StorageError,
    lib.FK_STATUS_CORRUPT: CorruptError,
    lib.FK_STATUS_LOCKED: LockedError,
    lib.FK_STATUS_WRONG_CLUSTER: WrongClusterError,
    lib.FK_STATUS_LOG_FAILED: StorageError,
    lib.FK_STATUS_INVALID_RAFT_LOG: StorageError,
    lib.FK_STATUS_ENCODING: StorageError,
    lib.FK_STATUS_WRONG_OWNER: WrongOwnerError,
    lib.FK_STATUS_FORKED: ForkedError,
    lib.FK_STATUS_NOT_LEADER: NotLeaderError,
    lib.FK_STATUS_STOPPED: StoppedError,
    lib.FK_STATUS_TIMEOUT: FencekitTimeoutError,
    lib.FK_STATUS_MEMBERSHIP: MembershipError,
    lib.FK_STATUS_RAFT: RaftError,
    lib.FK_STATUS_TRANSPORT: TransportError,
    lib.FK_STATUS_NODE_FAILED: NodeFailedError,
    lib.FK_STATUS_TLS: TlsError,
    lib.FK_STATUS_POLICY_REFUSED: PolicyRefusedError,
    lib.FK_STATUS_PLUGINS_DISABLED: PluginsDisabledError,
    lib.FK_STATUS_PANIC: PanicError,
    lib.FK_STATUS_POISONED: PoisonedError,
}


def check(status: int) -> None:
    """Raises the exception for `status` (with the thread's last error message) unless OK."""
    if status != lib.FK_STATUS_OK:
        message = ffi.string(lib.fk_last_error_message()).decode("utf-8", "replace")
        raise _BY_STATUS.get(status, FencekitError)(status, message)
