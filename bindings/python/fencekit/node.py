"""The node: one member of a Raft group over TCP, with leadership, its lease and its events."""

from __future__ import annotations

import collections
import json
import math
import os
import threading
import time
from typing import (Any, Callable, Deque, Dict, Generic, List, Mapping, NamedTuple, Optional,
                    Sequence, TypeVar, Union)

from ._native import ffi, lib
from .config import NodeConfig
from .errors import ClosedError, FencekitError, NotLeaderError, check
from .kinds import AppliedKind, EventKind, LostReason
from .policy import Policy
from .token import Token, from_c, node_id


class Leadership(NamedTuple):
    """Usable leadership: write with `token` until `lease_deadline_ns`.

    `lease_deadline_ns` is on CLOCK_BOOTTIME (`fencekit.now_ns()` reads it), so
    `lease_deadline_ns - fencekit.now_ns()` is the time left; `lease_remaining_ns` is what
    was left when `Node.leadership()` answered.

    `Node.leadership()` returns one only when the node may act as leader, None otherwise, so
    `if node.leadership():` is the test. A Leadership is always true: it is an answer of one
    moment, and does not turn false when its lease ends. Ask again before each write."""

    token: Token
    lease_deadline_ns: int
    lease_remaining_ns: int


class Applied(NamedTuple):
    """A committed item of the log, in index order: `kind` is `AppliedKind.ENTRY` ("entry": a
    committed proposal, apply `data`) or `AppliedKind.SNAPSHOT` ("snapshot": the state as of
    `index`, replace the state with `data`)."""

    kind: AppliedKind
    # The field shadows tuple.index, as it always has: the log index is what a host reads.
    index: int  # type: ignore[assignment]
    term: int
    data: bytes


class Event(NamedTuple):
    """A change: `kind` is an `EventKind`: "elected", "lost", "leader_changed" or
    "membership_changed".

    "elected" gives `token` and `lease_deadline_ns` (on CLOCK_BOOTTIME, as
    `Leadership.lease_deadline_ns`; later rounds extend the lease: ask `Node.leadership()`).
    "lost" gives `token` and `lost_reason`, a `LostReason`: "lease_expired",
    "stepped_down", "transferring", "removed", "stopped", or "failed" (the node failed
    while it led; every later call raises NodeFailedError). "leader_changed" gives `leader`
    (None when no leader is known) and `term`. Fields that do not apply are None (`term`: 0).

    Every event is true, a "lost" one too: `Node.next_event()` returns None when none came,
    and `if event:` must mean "an event came", never skip the news of a loss. Events are news;
    `Node.leadership()` is the truth."""

    kind: EventKind
    token: Optional[Token]
    lease_deadline_ns: Optional[int]
    lost_reason: Optional[LostReason]
    leader: Optional[int]
    term: int


_EVENTS = {
    lib.FK_EVENT_ELECTED: EventKind.ELECTED,
    lib.FK_EVENT_LOST: EventKind.LOST,
    lib.FK_EVENT_LEADER_CHANGED: EventKind.LEADER_CHANGED,
    lib.FK_EVENT_MEMBERSHIP_CHANGED: EventKind.MEMBERSHIP_CHANGED,
}
_LOST = {
    lib.FK_LOST_LEASE_EXPIRED: LostReason.LEASE_EXPIRED,
    lib.FK_LOST_STEPPED_DOWN: LostReason.STEPPED_DOWN,
    lib.FK_LOST_TRANSFERRING: LostReason.TRANSFERRING,
    lib.FK_LOST_REMOVED: LostReason.REMOVED,
    lib.FK_LOST_STOPPED: LostReason.STOPPED,
    lib.FK_LOST_FAILED: LostReason.FAILED,
}

WAIT_SLICE = 0.05
"""The longest one wait inside the library lasts, in seconds. A longer `timeout` is waited
in slices, so that Ctrl-C (KeyboardInterrupt) and a cancelled asyncio wait act within one."""


def _json_value(value: object) -> str:
    """Paths (pathlib, os.PathLike) in a configuration, as the strings JSON needs."""
    if isinstance(value, os.PathLike):
        return os.fsdecode(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _seconds(timeout: object) -> float:
    """A timeout in seconds: an int or float, not negative, not NaN (a bool is no timeout)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"a timeout is a number of seconds, not {type(timeout).__name__}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout {timeout} is negative or NaN")
    return float(timeout)


def _timeout_ms(timeout: object) -> int:
    # The library waits at most 2^32 - 1 ms (49 days); a longer timeout, infinity included,
    # is that.
    return int(min(_seconds(timeout) * 1000, 0xFFFF_FFFF))


T = TypeVar("T")


class _Cancelled(Exception):
    """A wait given up by its caller (an asyncio task that was cancelled)."""


class _Queue(Generic[T]):
    """One of the node's queues (events, committed items), read in slices of WAIT_SLICE.

    `returned` holds items taken from the library for a wait that was given up: the next
    reader gets them first. The lock is held for one slice at a time, so that an item is
    never taken by one reader while an older one sits in `returned`, and readers with short
    timeouts are not held up by one with a long timeout."""

    def __init__(self, read: Callable[["ffi.CData", int], Optional[T]]) -> None:
        self._read = read
        self.lock = threading.Lock()
        self.returned: Deque[T] = collections.deque()

    def take(
        self,
        node: "ffi.CData",
        timeout: Optional[float],
        cancelled: Optional[threading.Event] = None,
        handoff: Optional[Callable[[T], bool]] = None,
    ) -> Optional[T]:
        """The next item, waiting up to `timeout` seconds (None: until one comes or the node
        stops); None if none came. `handoff`, called with the lock held, returns False when
        the caller no longer wants the item: it goes back to the front. Raises _Cancelled
        once `cancelled` is set."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if not self.lock.acquire(timeout=min(max(remaining, 0.0), WAIT_SLICE)):
                if cancelled is not None and cancelled.is_set():
                    raise _Cancelled
                if remaining <= 0:
                    return None
                continue
            try:
                if cancelled is not None and cancelled.is_set():
                    raise _Cancelled
                if self.returned:
                    item: Optional[T] = self.returned.popleft()
                else:
                    item = self._read(node, int(min(max(remaining, 0.0), WAIT_SLICE) * 1000))
                if item is not None:
                    if handoff is not None and not handoff(item):
                        self.returned.appendleft(item)
                        raise _Cancelled
                    return item
            finally:
                self.lock.release()
            if time.monotonic() >= deadline:
                return None


class Node:
    """A running node: one member of a Raft group over TCP.

    `config` is a `NodeConfig` (a dict; paths may be `pathlib.Path`) or its JSON text:
    `id`, `cluster`, `data_dir`, `listen`, `peers` ([{"id", "addr"}]), its security, and
    optionally `voters`, `join`, `timing`, `descriptor`, `segment_size` (ffi/README.md).
    `tie_breaker` is an optional Policy.

    Security is required: `"tls": {"dir": D}` (D holds node.crt, node.key and ca.crt, the
    layout `make_dev_certs` and `fencekit certs init` make) or `"tls": {"cert": C, "key": K,
    "ca": A}`, and peers then authenticate with mutual TLS; or `"insecure": True`, which lets
    anyone who reaches the port join the group. Neither, or both, raises InvalidConfigError;
    unusable TLS files raise TlsError (the message names the file). `"test_hooks": True`
    enables `_panic_for_testing` (tests only, never in production).

    Ask `leadership()` before each write: it is the truth (events are news). A node that
    failed (its thread panicked, its log could not be written) raises NodeFailedError from
    `leadership()`, `propose()`, `stop()` and the other calls but one: `status()` still
    answers, with "failed": true and the cause in "failure". Close the node with `close()`
    or use it as a context manager. Thread-safe. For asyncio, wrap it in
    `fencekit.aio.AsyncNode`.
    """

    def __init__(self, config: Union[NodeConfig, str], *, tie_breaker: Optional[Policy] = None) -> None:
        if isinstance(config, str):
            text = config
        elif isinstance(config, Mapping):
            text = json.dumps(dict(config), default=_json_value)
        else:
            raise TypeError(f"a node configuration is a dict or JSON text, not {type(config).__name__}")
        if tie_breaker is not None and not isinstance(tie_breaker, Policy):
            raise TypeError(f"tie_breaker is a fencekit.Policy or None, not {type(tie_breaker).__name__}")
        encoded = text.encode("utf-8")
        out = ffi.new("fk_node **")
        policy = tie_breaker._handle() if tie_breaker is not None else ffi.NULL
        check(lib.fk_node_start_with_policy(encoded, len(encoded), policy, out))
        self._node: Optional["ffi.CData"] = ffi.gc(out[0], lib.fk_node_free)
        self._events: _Queue[Event] = _Queue(self._read_event)
        self._applied: _Queue[Applied] = _Queue(self._read_applied)

    def _handle(self) -> "ffi.CData":
        node = self._node
        if node is None:
            raise ClosedError("node")
        return node

    def leadership(self) -> Optional[Leadership]:
        """Usable leadership now, or None when this node may not act as leader. Raises
        NodeFailedError, with the cause, once the node failed: a failed node never leads."""
        out = ffi.new("fk_leadership *")
        try:
            check(lib.fk_node_leadership(self._handle(), out))
        except NotLeaderError:
            return None
        token = from_c(out.token)
        assert token is not None
        return Leadership(token, int(out.lease_deadline_ns), int(out.lease_remaining_ns))

    def _read_event(self, node: "ffi.CData", timeout_ms: int) -> Optional[Event]:
        out = ffi.new("fk_event *")
        status = lib.fk_node_next_event(node, timeout_ms, out)
        if status == lib.FK_STATUS_TIMEOUT:
            return None
        check(status)
        kind = _EVENTS.get(out.kind)
        if kind is None:
            # A newer library's event this binding cannot read: refuse it loudly rather
            # than hand over something a host could mistake for a known kind.
            raise FencekitError(lib.FK_STATUS_INTERNAL, f"an event of unknown kind {out.kind}")
        return Event(
            kind,
            from_c(out.token),
            int(out.lease_deadline_ns) if kind is EventKind.ELECTED else None,
            _LOST.get(out.lost_reason),
            out.leader or None,
            out.term,
        )

    def _read_applied(self, node: "ffi.CData", timeout_ms: int) -> Optional[Applied]:
        out = ffi.new("fk_applied *")
        status = lib.fk_node_next_applied(node, timeout_ms, out)
        if status == lib.FK_STATUS_TIMEOUT:
            return None
        check(status)
        try:
            data = ffi.unpack(ffi.cast("char *", out.data.data), out.data.len) if out.data.len else b""
        finally:
            lib.fk_buf_release(ffi.addressof(out, "data"))
        kind = AppliedKind.ENTRY if out.kind == lib.FK_APPLIED_ENTRY else AppliedKind.SNAPSHOT
        return Applied(kind, out.index, out.term, data)

    def next_event(self, timeout: Optional[float] = 0.0) -> Optional[Event]:
        """The next event, waiting up to `timeout` seconds (None: until one comes); None if
        none came. Once the node stopped (or failed) and every event was read, raises
        StoppedError (NodeFailedError). A node that fails while it leads delivers a "lost"
        event with lost_reason "failed" first. Ctrl-C interrupts the wait within
        WAIT_SLICE."""
        seconds = None if timeout is None else _seconds(timeout)
        return self._events.take(self._handle(), seconds)

    def next_applied(self, timeout: Optional[float] = 0.0) -> Optional[Applied]:
        """The next committed item, waiting up to `timeout` seconds (None: until one comes);
        None if none came. A node whose host proposes must read them: they queue until
        read."""
        seconds = None if timeout is None else _seconds(timeout)
        return self._applied.take(self._handle(), seconds)

    def propose(self, data: bytes, timeout: float = 5.0) -> int:
        """Replicates `data` and waits up to `timeout` seconds for it to commit; returns its
        log index. NotLeaderError at once on a follower; FencekitTimeoutError if it did not
        commit in time (it may still commit later, and then comes out of `next_applied`).
        The wait is one call into the library: Ctrl-C acts when it returns."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data is bytes, not {type(data).__name__}")
        raw = bytes(data)
        timeout_ms = _timeout_ms(timeout)
        out = ffi.new("uint64_t *")
        check(lib.fk_node_propose(self._handle(), raw, len(raw), timeout_ms, out))
        return int(out[0])

    def propose_batch(self, items: Sequence[bytes], timeout: float = 5.0) -> List[int]:
        """Replicates every item of `items` at once and waits up to `timeout` seconds for all
        of them to commit; returns their log indexes, in order (consecutive). Raft takes the
        batch as one proposal: one sync per node and one append per follower for all of it.
        All or nothing up front: InvalidBatchError for no items or more than 4096,
        InvalidArgumentError for an empty item, NotLeaderError on a follower; TypeError for an
        item that is not bytes."""
        raws = []
        for i, data in enumerate(items):
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"item {i} is bytes, not {type(data).__name__}")
            raws.append(bytes(data))
        timeout_ms = _timeout_ms(timeout)
        # The buffers stay referenced (in `raws`) for the whole call.
        pointers = ffi.new("const uint8_t *[]", [ffi.from_buffer(raw) for raw in raws] or 1)
        lens = ffi.new("size_t[]", [len(raw) for raw in raws] or 1)
        out = ffi.new("uint64_t *")
        check(lib.fk_node_propose_batch(self._handle(), pointers, lens, len(raws), timeout_ms,
                                        out))
        first = int(out[0])
        return list(range(first, first + len(raws)))

    def transfer(self, to: int) -> None:
        """Revokes this leader's lease, then hands leadership to node `to`. MembershipError
        (naming it, the lease untouched) if `to` is this node or not a voter: pick one of
        `status()["voters"]`; NotLeaderError if this node does not lead; TypeError if `to`
        is not an int (a bool is not a node id)."""
        check(lib.fk_node_transfer(self._handle(), node_id(to, "the node to transfer to")))

    def step_down(self) -> int:
        """Revokes this leader's lease and hands over to the most up-to-date voter; its id."""
        out = ffi.new("uint64_t *")
        check(lib.fk_node_step_down(self._handle(), out))
        return int(out[0])

    def status(self) -> Dict[str, Any]:
        """The node's view (term, role, leader, lease_remaining_ms, commit, voters, ...).
        "failed" is True once the node failed, with the cause in "failure", and "stopped"
        once it was stopped; either way it claims no leadership: "role" is "follower" and
        "leader", "leading_generation" and the lease are None;
        "refused_messages" counts the peer messages refused as no honest peer would send
        them, the latest reason in "last_refusal". It answers on a failed node too."""
        out = ffi.new("fk_buf *")
        check(lib.fk_node_status_json(self._handle(), out))
        try:
            status: Dict[str, Any] = json.loads(ffi.unpack(ffi.cast("char *", out.data), out.len))
            return status
        finally:
            lib.fk_buf_release(out)

    def stop(self) -> None:
        """Stops the node (its lease ends); StoppedError if it was stopped already,
        NodeFailedError (with the cause) if it failed. Waits in other threads return once
        every event (item) queued was read, with StoppedError."""
        check(lib.fk_node_stop(self._handle()))

    def _panic_for_testing(self) -> None:
        """Test only: makes the node's thread panic, as a bug in fencekit or raft-rs would, so
        that a host's tests can check how it handles a failed node. InvalidArgumentError
        unless the configuration said `"test_hooks": True`.

        It returns before the failure shows: the node's thread publishes it as it dies, and
        until then `leadership()` may still answer (a leadership, or None). Wait for it to
        raise NodeFailedError."""
        check(lib.fk_node_panic_for_testing(self._handle()))

    def close(self) -> None:
        """Stops the node if it runs and frees it. Closing twice is fine.

        Calls waiting in other threads (a proposal, `next_event`) return at once with
        StoppedError (waits for events or items first deliver what was queued); each holds a
        reference to the library's node, which is freed when the last one goes, never under
        a running call."""
        node, self._node = self._node, None
        if node is not None:
            lib.fk_node_stop(node)

    def __enter__(self) -> "Node":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<fencekit.Node ({'closed' if self._node is None else 'open'})>"
