"""Policies: WebAssembly plugins (plugin ABI v1, plugins/README.md)."""

from __future__ import annotations

from ._native import ffi, lib
from .errors import ClosedError, check

VALIDATOR = "validator"
TIE_BREAKER = "tie-breaker"
_KINDS = {VALIDATOR: lib.FK_POLICY_VALIDATOR, TIE_BREAKER: lib.FK_POLICY_TIE_BREAKER}


class Policy:
    """A loaded policy plugin: `kind` is "validator" or "tie-breaker"; `module` the bytes of a
    .wasm module or WAT text. A refused module raises PolicyRefusedError naming the cause.
    Attach a validator with `Fence.set_validator`, a tie-breaker with
    `Fence.set_tie_breaker` or `Node(..., tie_breaker=)`.
    """

    def __init__(self, module: bytes, kind: str = VALIDATOR) -> None:
        if kind not in _KINDS:
            raise ValueError(f"kind is 'validator' or 'tie-breaker', not {kind!r}")
        if not isinstance(module, (bytes, bytearray, memoryview)):
            raise TypeError(f"module is bytes, not {type(module).__name__}")
        raw = bytes(module)
        out = ffi.new("fk_policy **")
        check(lib.fk_policy_load_wasm(raw, len(raw), _KINDS[kind], ffi.NULL, out))
        self._policy = ffi.gc(out[0], lib.fk_policy_free)
        self.kind = kind

    @classmethod
    def load_wasm(cls, module: bytes, kind: str = VALIDATOR) -> "Policy":
        """Loads a policy plugin (the same as the constructor)."""
        return cls(module, kind)

    def _handle(self) -> "ffi.CData":
        policy = self._policy
        if policy is None:
            raise ClosedError("policy")
        return policy

    def close(self) -> None:
        """Frees the policy; fences and nodes it was attached to keep using it."""
        self._policy = None
