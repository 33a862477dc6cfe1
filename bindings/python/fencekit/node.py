"""The node: one member of a Raft group over TCP, with leadership, its lease and its events."""

from __future__ import annotations

import json
from typing import Any, Dict, NamedTuple, Optional, Union

from ._native import ffi, lib
from .errors import ClosedError, FencekitTimeoutError, NotLeaderError, check
from .policy import Policy
from .token import Token, from_c


class Leadership(NamedTuple):
    """Usable leadership: write with `token` until `lease_deadline_ns` on the node's clock."""

    token: Token
    lease_deadline_ns: int
    lease_remaining_ns: int


class Applied(NamedTuple):
    """A committed item of the log, in index order: `kind` is "entry" (a committed proposal:
    apply `data`) or "snapshot" (the state as of `index`: replace the state with `data`)."""

    kind: str
    index: int
    term: int
    data: bytes


class Event(NamedTuple):
    """A change: `kind` is "elected", "lost", "leader_changed" or "membership_changed"."""

    kind: str
    token: Optional[Token]
    lease_deadline_ns: int
    lost_reason: Optional[str]
    leader: Optional[int]
    term: int


_EVENTS = {
    lib.FK_EVENT_ELECTED: "elected",
    lib.FK_EVENT_LOST: "lost",
    lib.FK_EVENT_LEADER_CHANGED: "leader_changed",
    lib.FK_EVENT_MEMBERSHIP_CHANGED: "membership_changed",
}
_LOST = {
    lib.FK_LOST_LEASE_EXPIRED: "lease_expired",
    lib.FK_LOST_STEPPED_DOWN: "stepped_down",
    lib.FK_LOST_TRANSFERRING: "transferring",
    lib.FK_LOST_REMOVED: "removed",
    lib.FK_LOST_STOPPED: "stopped",
}


def _timeout_ms(timeout: float) -> int:
    if timeout < 0:
        raise ValueError(f"timeout {timeout} is negative")
    return min(int(timeout * 1000), 0xFFFF_FFFF)


class Node:
    """A running node. `config` is the JSON configuration of ffi/README.md, as a dict or a
    string: `id`, `cluster`, `data_dir`, `listen`, `peers` ([{"id", "addr"}]), and optionally
    `voters`, `join`, `timing`, `descriptor`. `tie_breaker` is an optional Policy.

    Ask `leadership()` before each write: it is the truth (events are news). Close the node
    with `close()` or use it as a context manager. Thread-safe.
    """

    def __init__(self, config: Union[Dict[str, Any], str], *, tie_breaker: Optional[Policy] = None) -> None:
        text = config if isinstance(config, str) else json.dumps(config)
        encoded = text.encode("utf-8")
        out = ffi.new("fk_node **")
        policy = tie_breaker._handle() if tie_breaker is not None else ffi.NULL
        check(lib.fk_node_start_with_policy(encoded, len(encoded), policy, out))
        self._node = ffi.gc(out[0], lib.fk_node_free)

    def _handle(self) -> "ffi.CData":
        node = self._node
        if node is None:
            raise ClosedError("node")
        return node

    def leadership(self) -> Optional[Leadership]:
        """Usable leadership now, or None when this node may not act as leader."""
        out = ffi.new("fk_leadership *")
        try:
            check(lib.fk_node_leadership(self._handle(), out))
        except NotLeaderError:
            return None
        token = from_c(out.token)
        assert token is not None
        return Leadership(token, out.lease_deadline_ns, out.lease_remaining_ns)

    def next_event(self, timeout: float = 0.0) -> Optional[Event]:
        """The next event, waiting up to `timeout` seconds; None if none came."""
        out = ffi.new("fk_event *")
        try:
            check(lib.fk_node_next_event(self._handle(), _timeout_ms(timeout), out))
        except FencekitTimeoutError:
            return None
        return Event(
            _EVENTS.get(out.kind, "unknown"),
            from_c(out.token),
            out.lease_deadline_ns,
            _LOST.get(out.lost_reason),
            out.leader or None,
            out.term,
        )

    def next_applied(self, timeout: float = 0.0) -> Optional[Applied]:
        """The next committed item, waiting up to `timeout` seconds; None if none came. A
        node whose host proposes must read them: they queue until read."""
        out = ffi.new("fk_applied *")
        try:
            check(lib.fk_node_next_applied(self._handle(), _timeout_ms(timeout), out))
        except FencekitTimeoutError:
            return None
        try:
            data = ffi.unpack(ffi.cast("char *", out.data.data), out.data.len) if out.data.len else b""
        finally:
            lib.fk_buf_release(ffi.addressof(out, "data"))
        kind = "entry" if out.kind == lib.FK_APPLIED_ENTRY else "snapshot"
        return Applied(kind, out.index, out.term, data)

    def propose(self, data: bytes, timeout: float = 5.0) -> int:
        """Replicates `data` and waits for it to commit; returns its log index."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data is bytes, not {type(data).__name__}")
        raw = bytes(data)
        out = ffi.new("uint64_t *")
        check(lib.fk_node_propose(self._handle(), raw, len(raw), _timeout_ms(timeout), out))
        return out[0]

    def transfer(self, to: int) -> None:
        """Revokes this leader's lease, then hands leadership to node `to`."""
        check(lib.fk_node_transfer(self._handle(), to))

    def step_down(self) -> int:
        """Revokes this leader's lease and hands over to the most up-to-date voter; its id."""
        out = ffi.new("uint64_t *")
        check(lib.fk_node_step_down(self._handle(), out))
        return out[0]

    def status(self) -> Dict[str, Any]:
        """The node's view (term, role, leader, lease_remaining_ms, commit, voters, ...)."""
        out = ffi.new("fk_buf *")
        check(lib.fk_node_status_json(self._handle(), out))
        try:
            return json.loads(ffi.unpack(ffi.cast("char *", out.data), out.len))
        finally:
            lib.fk_buf_release(out)

    def stop(self) -> None:
        """Stops the node (its lease ends); StoppedError if it was stopped already."""
        check(lib.fk_node_stop(self._handle()))

    def close(self) -> None:
        """Stops the node if it runs and frees it. Closing twice is fine.

        Calls waiting in other threads (a proposal, `next_event`) return at once with
        StoppedError; each holds a reference to the library's node, which is freed when the
        last one goes, never under a running call."""
        node, self._node = self._node, None
        if node is not None:
            lib.fk_node_stop(node)

    def __enter__(self) -> "Node":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
