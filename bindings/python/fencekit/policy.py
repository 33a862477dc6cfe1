"""Policies: WebAssembly plugins (plugin ABI v1, plugins/README.md)."""

from __future__ import annotations

from typing import Literal, Optional, Union

from ._native import ffi, lib
from .errors import ClosedError, check
from .kinds import PolicyKind

VALIDATOR = PolicyKind.VALIDATOR
TIE_BREAKER = PolicyKind.TIE_BREAKER
PolicyKindName = Literal["validator", "tie-breaker"]
_CODES = {PolicyKind.VALIDATOR: lib.FK_POLICY_VALIDATOR, PolicyKind.TIE_BREAKER: lib.FK_POLICY_TIE_BREAKER}


class Policy:
    """A loaded policy plugin.

    `module` is the bytes of a .wasm module or WAT text; `kind` a `PolicyKind` or its name,
    "validator" (the default) or "tie-breaker". A refused module raises PolicyRefusedError
    naming the cause. Attach a validator with `Fence.set_validator`, a tie-breaker with
    `Fence.set_tie_breaker` or `Node(..., tie_breaker=)`; fences and nodes keep their own
    reference, so closing the policy (or leaving its `with` block) after attaching it is fine.
    """

    kind: PolicyKind
    """What the policy decides."""

    def __init__(self, module: bytes, kind: Union[PolicyKind, PolicyKindName] = PolicyKind.VALIDATOR) -> None:
        try:
            policy_kind = PolicyKind(kind)
        except ValueError:
            raise ValueError(f"kind is 'validator' or 'tie-breaker', not {kind!r}") from None
        if not isinstance(module, (bytes, bytearray, memoryview)):
            raise TypeError(f"module is bytes, not {type(module).__name__}")
        raw = bytes(module)
        out = ffi.new("fk_policy **")
        check(lib.fk_policy_load_wasm(raw, len(raw), _CODES[policy_kind], ffi.NULL, out))
        self._policy: Optional["ffi.CData"] = ffi.gc(out[0], lib.fk_policy_free)
        self.kind = policy_kind

    @classmethod
    def load_wasm(cls, module: bytes, kind: Union[PolicyKind, PolicyKindName] = PolicyKind.VALIDATOR) -> "Policy":
        """Loads a policy plugin (the same as the constructor)."""
        return cls(module, kind)

    def _handle(self) -> "ffi.CData":
        policy = self._policy
        if policy is None:
            raise ClosedError("policy")
        return policy

    def close(self) -> None:
        """Frees the policy; fences and nodes it was attached to keep using it. Closing twice
        is fine; attaching a closed policy raises ClosedError."""
        self._policy = None

    def __enter__(self) -> "Policy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._policy is None else "loaded"
        return f"<fencekit.Policy {self.kind.value} ({state})>"
