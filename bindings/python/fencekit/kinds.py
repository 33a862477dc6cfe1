"""The names of kinds: verdicts, events, reasons a leadership ended, applied items, policies.

Each is an `enum.Enum` whose members are also `str`s: `verdict.kind is VerdictKind.STALE`,
`verdict.kind == "stale"`, a `match` on either, and JSON all work, and a type checker knows
the complete set. `str(kind)` and f-strings give the bare name ("stale"), as before.
"""

from __future__ import annotations

import enum


class _Kind(str, enum.Enum):
    # Python 3.11 formats a (str, Enum) member as "Class.MEMBER"; the name is what a log line
    # or a message wants (enum.StrEnum does the same, but only from 3.11).
    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class VerdictKind(_Kind):
    """The fence's answer to a token. Only ACCEPTED and ADVANCED let a write land."""

    ACCEPTED = "accepted"
    """The token is the resource's current mark."""
    ADVANCED = "advanced"
    """The token is newer than the mark and is now the durable mark."""
    STALE = "stale"
    """The token is older than the mark (a deposed leader)."""
    CONFLICT = "conflict"
    """Another holder has the token's generation (split brain)."""
    FOREIGN_SOURCE = "foreign_source"
    """The token comes from another source than the resource takes tokens from (numbers of
    two coordinators are not comparable): `Fence.bound_source` names the resource's source,
    and an operator's `Fence.rebase` moves it. A rejection, whatever the token's numbers."""
    NONE = "none"
    """No verdict: a batch item after a failed check. A rejection."""


class EventKind(_Kind):
    """What an `Event` reports."""

    ELECTED = "elected"
    """This node became usable leader: `token`, `lease_deadline_ns`."""
    LOST = "lost"
    """This node's usable leadership ended: `token`, `lost_reason`."""
    LEADER_CHANGED = "leader_changed"
    """The leader this node knows of changed: `leader` (None: none known), `term`."""
    MEMBERSHIP_CHANGED = "membership_changed"
    """A membership change was applied; `Node.status()` lists the members."""


class LostReason(_Kind):
    """Why a leadership ended (`Event.lost_reason` of a LOST event)."""

    LEASE_EXPIRED = "lease_expired"
    """No quorum acknowledged a heartbeat round in time (a partition, a pause, slow peers)."""
    STEPPED_DOWN = "stepped_down"
    """Raft stepped down: a higher term was seen, or check-quorum found no quorum."""
    TRANSFERRING = "transferring"
    """The lease was revoked to hand leadership to another node."""
    REMOVED = "removed"
    """This node was removed from the membership."""
    STOPPED = "stopped"
    """The node stopped."""
    FAILED = "failed"
    """The node failed; every later call raises NodeFailedError."""


class AppliedKind(_Kind):
    """What an `Applied` item is."""

    ENTRY = "entry"
    """A committed proposal: apply `data`."""
    SNAPSHOT = "snapshot"
    """The state as of `index`: replace the state with `data`."""


class PolicyKind(_Kind):
    """What a policy plugin decides."""

    VALIDATOR = "validator"
    """A storage validator: accepts or refuses each payload whose token the fence accepts."""
    TIE_BREAKER = "tie-breaker"
    """A tie-breaker: election priority, and the winner of a conflict."""
