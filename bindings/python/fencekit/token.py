"""Tokens, verdicts and counters."""

from __future__ import annotations

import numbers
from typing import NamedTuple, Optional, Tuple, Union

from ._native import ffi, lib
from .kinds import VerdictKind

GENERATION_MAX = (1 << 63) - 1
"""The largest generation; a holder (a node id) may be anything from 1 to 2**64 - 1."""
_U32_MAX = 0xFFFF_FFFF
_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF


class Token(NamedTuple):
    """A fencing token: the generation (Raft term, 1 to 2**63 - 1) and the node holding it
    (a node id, 1 to 2**64 - 1).

    Both are ints: every call that takes a token (a `Token` or a pair) refuses a bool, a
    float or any other type with TypeError, and a value no token can have with
    InvalidTokenError. A Token is always true and says nothing about a write: "no token" is
    None (as `Fence.mark` and `Verdict.current` give it)."""

    generation: int
    holder: int


TokenLike = Union[Token, Tuple[int, int]]


def to_c(token: TokenLike) -> "ffi.CData":
    """The token as an `fk_token` struct; a value no token can have raises InvalidTokenError."""
    from .errors import InvalidTokenError

    if not isinstance(token, (tuple, list)):
        # Unpacking anything else could make a token of a two-character string or the keys
        # of a dict; None ("no token") must never reach a check as some token.
        raise TypeError(f"a token is a Token or a (generation, holder) pair, not {type(token).__name__}")
    if len(token) != 2:
        raise TypeError(f"a token is a Token or a (generation, holder) pair, not {token!r}")
    generation, holder = token
    for name, value, bound in (("generation", generation, "2**63 - 1"), ("holder", holder, "2**64 - 1")):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"a token's {name} is an int, not {type(value).__name__}")
        # What fits an fk_token goes to the library, which refuses the rest of what no token
        # can have (0, a generation above 2**63 - 1) with its own message.
        if not 0 <= value <= _U64_MAX:
            raise InvalidTokenError(
                lib.FK_STATUS_INVALID_TOKEN, f"invalid token: {name} {value} is not 1 to {bound}"
            )
    return ffi.new("fk_token *", (generation, holder))[0]


def node_id(value: object, what: str = "a node id") -> int:
    """`value` as a node id for the library: TypeError for anything but an int (a bool is
    not one: cffi would pass True as node 1), InvalidTokenError for an int no uint64_t holds."""
    from .errors import InvalidTokenError

    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{what} is an int, not {type(value).__name__}")
        value = int(value)
    # What fits a uint64_t goes to the library, which refuses 0 with its own message (the
    # conformance vectors hold every binding to it).
    if not 0 <= value <= _U64_MAX:
        raise InvalidTokenError(lib.FK_STATUS_INVALID_TOKEN, f"{what}: node id {value} is not 1 to 2**64 - 1")
    return value


def resource_id(value: object) -> int:
    """`value` as a resource id: TypeError for anything but an int (a bool is not one: cffi
    would pass True as resource 1), UnknownResourceError for an int no fence hands out."""
    from .errors import UnknownResourceError

    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"a resource id is an int, not {type(value).__name__}")
        value = int(value)
    if not 0 <= value <= _U32_MAX:
        raise UnknownResourceError(lib.FK_STATUS_UNKNOWN_RESOURCE, f"unknown resource id {value}")
    return value


def token_ints(token: TokenLike) -> Tuple[int, int]:
    """The token's generation and holder as plain ints: TypeError for anything but a pair of
    ints (a bool is not one: `(True, 1)` is no token), InvalidTokenError for a value no token
    can have."""
    c = to_c(token)
    return int(c.generation), int(c.holder)


def from_c(token: "ffi.CData") -> Optional[Token]:
    """A token from an `fk_token`, or None for the all-zero one."""
    if token.generation == 0:
        return None
    return Token(token.generation, token.holder)


_KINDS = {
    lib.FK_VERDICT_ACCEPTED: VerdictKind.ACCEPTED,
    lib.FK_VERDICT_ADVANCED: VerdictKind.ADVANCED,
    lib.FK_VERDICT_STALE: VerdictKind.STALE,
    lib.FK_VERDICT_CONFLICT: VerdictKind.CONFLICT,
    lib.FK_VERDICT_FOREIGN_SOURCE: VerdictKind.FOREIGN_SOURCE,
}


_LANDS = (VerdictKind.ACCEPTED, VerdictKind.ADVANCED)
_set = object.__setattr__


class Verdict:
    """The fence's answer to a token.

    `kind` is a `VerdictKind` (a str): "accepted", "advanced", "stale", "conflict" or
    "foreign_source" (a token of another source than the resource's: `current` and
    `previous` are None), or "none" where there is no verdict (a batch item after a failed
    call); only the first two let a write land. A
    verdict is true exactly then, so `if fence.check(resource, token):` is the test, and
    `accepted` says the same. `current` is the resource's mark after the check; `previous`
    the mark an advance replaced (None for a resource's first).

    A verdict is not a tuple: it has no positions to unpack or index (its first field, a
    kind name, would read as true for every kind), and comparing it with a kind name or a
    tuple raises TypeError (`verdict != "stale"` would hold for every verdict, `verdict ==
    "accepted"` for none). Compare `verdict.kind`. Verdicts are immutable, and equal when
    their fields are. They are not hashable: a set or dict lookup would hash before it
    compares, so `verdict not in {"stale", "conflict"}` would hold for a stale verdict; it
    raises TypeError instead. Key a dict by `verdict.kind`.
    """

    __slots__ = ("kind", "current", "previous")

    kind: VerdictKind
    current: Optional[Token]
    previous: Optional[Token]

    def __init__(self, kind: Union[VerdictKind, str], current: Optional[Token], previous: Optional[Token]) -> None:
        # ValueError for a name that is no kind: a typo must not make a verdict.
        _set(self, "kind", VerdictKind(kind))
        _set(self, "current", current)
        _set(self, "previous", previous)

    @property
    def accepted(self) -> bool:
        """True when the write may land (accepted or advanced): the same as `bool(verdict)`."""
        return self.kind in _LANDS

    def __bool__(self) -> bool:
        return self.kind in _LANDS

    def __eq__(self, other: object) -> bool:
        if type(other) is Verdict:
            return (self.kind, self.current, self.previous) == (other.kind, other.current, other.previous)
        return _refuse_comparison(self, other)

    # A lookup in a set or dict hashes first and never compares a verdict with a kind name:
    # unhashable, such a lookup raises instead of answering "not in" (I7).
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Verdict(kind={self.kind.value!r}, current={self.current!r}, previous={self.previous!r})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a verdict is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a verdict is immutable: cannot delete {name!r}")

    def __reduce__(self) -> Tuple[type, Tuple[str, Optional[Token], Optional[Token]]]:
        return (Verdict, (self.kind.value, self.current, self.previous))

    @staticmethod
    def from_c(verdict: "ffi.CData") -> "Verdict":
        """The verdict of an `fk_verdict`; an unknown kind reads as "none", a rejection."""
        return Verdict(_KINDS.get(verdict.kind, VerdictKind.NONE), from_c(verdict.current), from_c(verdict.previous))


def _refuse_comparison(answer: object, other: object) -> bool:
    """The answer to comparing a verdict with something else: TypeError for a kind name, a
    tuple, a bool or a number (the comparisons that read wrong: `verdict != "stale"` and
    `verdict != False` are true for a stale verdict, `verdict == True` false for an accepted
    one), NotImplemented (so: unequal) for anything else."""
    if isinstance(other, (str, tuple, numbers.Number)):
        what = type(answer).__name__
        raise TypeError(
            f"a {what} is not a {type(other).__name__}: compare its fields (verdict.kind), "
            f"or test the {what} itself, which is true exactly when the write may land"
        )
    result: bool = NotImplemented
    return result


class Counters(NamedTuple):
    """What a fence decided for one resource since it was opened."""

    accepted: int
    advanced: int
    stale: int
    conflicts: int
