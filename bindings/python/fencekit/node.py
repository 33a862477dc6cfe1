"""The node: one member of a Raft group over TCP, with leadership, its lease and its events."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, NamedTuple, Optional, Union

from ._native import ffi, lib
from .errors import ClosedError, FencekitTimeoutError, NotLeaderError, check
from .policy import Policy
from .token import Token, from_c


class Leadership(NamedTuple):
    """Usable leadership: write with `token` until `lease_deadline_ns` on the node's clock.

    `Node.leadership()` returns one only when the node may act as leader, None otherwise, so
    `if node.leadership():` is the test. A Leadership is always true: it is an answer of one
    moment, and does not turn false when its lease ends. Ask again before each write."""

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
    """A change: `kind` is "elected", "lost", "leader_changed" or "membership_changed".

    For "lost", `lost_reason` says why the leadership ended: "lease_expired",
    "stepped_down", "transferring", "removed", "stopped", or "failed" (the node failed while
    it led; every later call raises NodeFailedError).

    Every event is true, a "lost" one too: `Node.next_event()` returns None when none came,
    and `if event:` must mean "an event came", never skip the news of a loss. Events are news;
    `Node.leadership()` is the truth."""

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
    lib.FK_LOST_FAILED: "failed",
}


def _json_value(value: object) -> str:
    """Paths (pathlib, os.PathLike) in a configuration, as the strings JSON needs."""
    if isinstance(value, os.PathLike):
        return os.fsdecode(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _timeout_ms(timeout: float) -> int:
    if timeout < 0:
        raise ValueError(f"timeout {timeout} is negative")
    return min(int(timeout * 1000), 0xFFFF_FFFF)


class Node:
    """A running node. `config` is the JSON configuration of ffi/README.md, as a dict (paths
    may be `pathlib.Path`) or a string: `id`, `cluster`, `data_dir`, `listen`, `peers`
    ([{"id", "addr"}]), its security, and optionally `voters`, `join`, `timing`,
    `descriptor`. `tie_breaker` is an optional Policy.

    Security is required: `"tls": {"dir": D}` (D holds node.crt, node.key and ca.crt, the
    layout `make_dev_certs` and `fencekit certs init` make) or `"tls": {"cert": C, "key": K,
    "ca": A}`, and peers then authenticate with mutual TLS; or `"insecure": True`, which lets
    anyone who reaches the port join the group. Neither, or both, raises InvalidConfigError;
    unusable TLS files raise TlsError (the message names the file). `"test_hooks": True`
    enables `_panic_for_testing` (tests only, never in production).

    Ask `leadership()` before each write: it is the truth (events are news). A node that
    failed (its thread panicked, its log could not be written) raises NodeFailedError from
    `leadership()`, `propose()`, `stop()` and the other calls but one: `status()` still
    answers, with "failed": true and the cause in "failure". Close the
    node with `close()` or use it as a context manager. Thread-safe.
    """

    def __init__(self, config: Union[Dict[str, Any], str], *, tie_breaker: Optional[Policy] = None) -> None:
        text = config if isinstance(config, str) else json.dumps(config, default=_json_value)
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
        """Usable leadership now, or None when this node may not act as leader. Raises
        NodeFailedError, with the cause, once the node failed: a failed node never leads."""
        out = ffi.new("fk_leadership *")
        try:
            check(lib.fk_node_leadership(self._handle(), out))
        except NotLeaderError:
            return None
        token = from_c(out.token)
        assert token is not None
        return Leadership(token, out.lease_deadline_ns, out.lease_remaining_ns)

    def next_event(self, timeout: float = 0.0) -> Optional[Event]:
        """The next event, waiting up to `timeout` seconds; None if none came. Once the node
        stopped (or failed) and every event was read, raises StoppedError (NodeFailedError).
        A node that fails while it leads delivers a "lost" event with lost_reason "failed"
        first."""
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
        """Revokes this leader's lease, then hands leadership to node `to`. MembershipError
        (naming it, the lease untouched) if `to` is this node or not a voter: pick one of
        `status()["voters"]`; NotLeaderError if this node does not lead."""
        check(lib.fk_node_transfer(self._handle(), to))

    def step_down(self) -> int:
        """Revokes this leader's lease and hands over to the most up-to-date voter; its id."""
        out = ffi.new("uint64_t *")
        check(lib.fk_node_step_down(self._handle(), out))
        return out[0]

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
            return json.loads(ffi.unpack(ffi.cast("char *", out.data), out.len))
        finally:
            lib.fk_buf_release(out)

    def stop(self) -> None:
        """Stops the node (its lease ends); StoppedError if it was stopped already,
        NodeFailedError (with the cause) if it failed."""
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
        StoppedError; each holds a reference to the library's node, which is freed when the
        last one goes, never under a running call."""
        node, self._node = self._node, None
        if node is not None:
            lib.fk_node_stop(node)

    def __enter__(self) -> "Node":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
