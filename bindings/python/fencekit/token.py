"""Tokens, verdicts and counters."""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple, Union

from ._native import ffi, lib

GENERATION_MAX = (1 << 63) - 1


class Token(NamedTuple):
    """A fencing token: the generation (Raft term) and the node holding it."""

    generation: int
    holder: int


TokenLike = Union[Token, Tuple[int, int]]


def to_c(token: TokenLike) -> "ffi.CData":
    """The token as an `fk_token` struct; a value no token can have raises InvalidTokenError."""
    from .errors import InvalidTokenError

    try:
        generation, holder = token
    except (TypeError, ValueError):
        raise TypeError(f"a token is (generation, holder), not {token!r}") from None
    for name, value in (("generation", generation), ("holder", holder)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"a token's {name} is an int, not {type(value).__name__}")
        if not 0 <= value <= 0xFFFF_FFFF_FFFF_FFFF:
            raise InvalidTokenError(
                lib.FK_STATUS_INVALID_TOKEN, f"invalid token: {name} {value} is not 1 to 2**63 - 1"
            )
    return ffi.new("fk_token *", (generation, holder))[0]


def from_c(token: "ffi.CData") -> Optional[Token]:
    """A token from an `fk_token`, or None for the all-zero one."""
    if token.generation == 0:
        return None
    return Token(token.generation, token.holder)


_KINDS = {
    lib.FK_VERDICT_ACCEPTED: "accepted",
    lib.FK_VERDICT_ADVANCED: "advanced",
    lib.FK_VERDICT_STALE: "stale",
    lib.FK_VERDICT_CONFLICT: "conflict",
}


class Verdict(NamedTuple):
    """The fence's answer to a token.

    `kind` is "accepted", "advanced", "stale" or "conflict"; only the first two let a write
    land (`accepted` is True for them). `current` is the resource's mark after the check;
    `previous` the mark an advance replaced (None for a resource's first).
    """

    kind: str
    current: Optional[Token]
    previous: Optional[Token]

    @property
    def accepted(self) -> bool:
        return self.kind in ("accepted", "advanced")

    @staticmethod
    def from_c(verdict: "ffi.CData") -> "Verdict":
        return Verdict(_KINDS.get(verdict.kind, "none"), from_c(verdict.current), from_c(verdict.previous))


class Counters(NamedTuple):
    """What a fence decided for one resource since it was opened."""

    accepted: int
    advanced: int
    stale: int
    conflicts: int
