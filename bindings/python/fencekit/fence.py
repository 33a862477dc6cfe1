"""The fence: the storage side's durable fencing check."""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from . import _native
from ._native import ffi, lib
from .errors import ClosedError, InvalidArgumentError, InvalidBatchError, InvalidSourceError, RebaseRefusedError, check
from .policy import Policy
from .kinds import VerdictKind
from .token import (
    Counters,
    Token,
    TokenLike,
    Verdict,
    _refuse_comparison,
    _set,
    from_c,
    resource_id,
    to_c,
    token_ints,
)

Key = Union[bytes, str]
BATCH_MAX = lib.FK_BATCH_MAX
_ACCEPTED = lib.FK_VERDICT_ACCEPTED
_ADVANCED = lib.FK_VERDICT_ADVANCED
_TOKENS_CACHED = 1024
_check = lib.fkpy_check
_check_from = lib.fkpy_check_from
_U32_MAX = 0xFFFF_FFFF

# The compiled base class of Fence (fencekit/_fence_core.c), put into the extension module,
# imported under the name importlib gave it, as `_FenceCore`.
if lib.fkpy_core_install((_native.__spec__.name if _native.__spec__ else _native.__name__).encode()) != 0:
    raise ImportError("fencekit: the compiled part of Fence could not be set up (its error is above)")
from ._native import _FenceCore  # noqa: E402


class WriteVerdict:
    """The answer to `Fence.check_write`: the write may land only when `accepted`, and the
    write verdict is true exactly then (`if fence.check_write(...):` is the test). `fence` is
    the fence's verdict on the token alone: it is true for an accepted token whose payload
    the validator refused, so never test it for the write. `rejection_code` is why the
    validator refused the payload (0 when it did not).

    Like `Verdict`, it is not a tuple (nothing to unpack or index) and refuses to be compared
    with a tuple or a string; it is immutable, and equal to another with equal fields.
    """

    __slots__ = ("accepted", "fence", "rejection_code")

    accepted: bool
    fence: Verdict
    rejection_code: int

    def __init__(self, accepted: bool, fence: Verdict, rejection_code: int) -> None:
        if type(accepted) is not bool:
            raise TypeError(f"accepted is a bool, not {type(accepted).__name__}")
        _set(self, "accepted", accepted)
        _set(self, "fence", fence)
        _set(self, "rejection_code", rejection_code)

    def __bool__(self) -> bool:
        return self.accepted

    def __eq__(self, other: object) -> bool:
        if type(other) is WriteVerdict:
            return (self.accepted, self.fence, self.rejection_code) == (
                other.accepted,
                other.fence,
                other.rejection_code,
            )
        return _refuse_comparison(self, other)

    # Unhashable for the same reason as a Verdict: a set or dict lookup would never compare.
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"WriteVerdict(accepted={self.accepted!r}, fence={self.fence!r}, "
            f"rejection_code={self.rejection_code!r})"
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a write verdict is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a write verdict is immutable: cannot delete {name!r}")

    def __reduce__(self) -> Tuple[type, Tuple[bool, Verdict, int]]:
        return (WriteVerdict, (self.accepted, self.fence, self.rejection_code))


def _key(key: Key) -> bytes:
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"a key is bytes or str, not {type(key).__name__}")


def _option(value: object, name: str) -> int:
    """An option's value: an int (a bool is not one), in what a uint64_t holds (the library
    checks the option's own range and names it)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} is an int, not {type(value).__name__}")
    if not 0 <= value <= 0xFFFF_FFFF_FFFF_FFFF:
        raise InvalidArgumentError(lib.FK_STATUS_INVALID_ARGUMENT, f"{name} = {value}: out of range")
    return value


def _policy(policy: Optional[Policy]) -> "ffi.CData":
    """The library's policy, or NULL for None."""
    if policy is None:
        return ffi.NULL
    if not isinstance(policy, Policy):
        raise TypeError(f"a policy is a fencekit.Policy or None, not {type(policy).__name__}")
    return policy._handle()


class Fence(_FenceCore):
    """The durable high-water mark of every resource of one storage.

        with fencekit.Fence("/var/lib/app/fence") as fence:
            jobs = fence.register("jobs/nightly-report")     # once, at start
            if fence.check(jobs, leadership.token):          # per write
                storage.write(...)

    Open it on a directory (created if needed; one process per directory, LockedError
    otherwise); check the token of every write with `check` (by resource id) or `check_key`
    (by name). A write may land only when the verdict is true (`if fence.check(r, token):`;
    its `accepted` says the same): "accepted" (the current mark) or "advanced" (a newer
    generation, made durable before the call returned). "stale" (a deposed leader's token)
    and "conflict" (another holder of the same generation: split brain) are false, and so
    is "foreign_source" (a token of another coordinator than the resource's). A failed
    check raises; a token that is not a `Token` or a pair of ints raises TypeError.

    Tokens of another coordinator (etcd, ZooKeeper, a Kubernetes Lease: `fencekit.
    token_from_zookeeper` and the others) are checked with `check_from`, naming their source;
    `bound_source` tells a resource's, and an operator's `rebase` moves it to another.
    `batch` and `check_batch` check many writes in one call; `check_write` asks a validator
    policy about the payload too; `mark` and `counters` tell what the fence holds and did.
    Close it with `close()` or use it as a context manager. Thread-safe: share one fence
    between threads. A fence opened before `fork()` refuses every call in the child
    (ForkedError): open it in the process that uses it.
    """

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        *,
        max_resources: Optional[int] = None,
        segment_size: Optional[int] = None,
    ) -> None:
        options = ffi.new("fk_fence_options *")
        check(lib.fk_fence_options_default(options))
        if max_resources is not None:
            options.max_resources = _option(max_resources, "max_resources")
        if segment_size is not None:
            options.segment_size = _option(segment_size, "segment_size")
        encoded = os.fsencode(path)
        out = ffi.new("fk_fence **")
        check(lib.fk_fence_open(encoded, len(encoded), options, out))
        self._fence = ffi.gc(out[0], lib.fk_fence_free)
        # The verdict that accepts a token, per token, for the checks that go through Python
        # (the compiled check keeps its own): a leader writes with one token many times, and
        # building the verdict per call costs more than the check itself.
        self._accepted: Dict[Tuple[int, int], Verdict] = {}
        # Source ids by name: the library's ids hold while this fence is open.
        self._source_ids: Dict[str, int] = {}
        self._open_core(self._fence, self._source_ids, Token)

    def _handle(self) -> "ffi.CData":
        fence = self._fence
        if fence is None:
            raise ClosedError("fence")
        return fence

    def close(self) -> None:
        """Closes the fence; every mark it reported is already durable. Closing twice is fine.

        A call running in another thread keeps the library's fence alive until it returns
        (each call holds a reference), so closing never frees it under that call; the fence
        is freed, and its directory unlocked, when the last reference goes."""
        self._fence = None
        self._close_core()

    def __enter__(self) -> "Fence":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def register(self, key: Key) -> int:
        """Registers the resource named `key` (1 to 256 bytes); returns its id."""
        k = _key(key)
        out = ffi.new("uint32_t *")
        check(lib.fk_fence_register(self._handle(), k, len(k), out))
        return int(out[0])

    def lookup(self, key: Key) -> int:
        """The id of a registered key; UnknownResourceError if it is not registered."""
        k = _key(key)
        out = ffi.new("uint32_t *")
        check(lib.fk_fence_lookup(self._handle(), k, len(k), out))
        return int(out[0])

    # `check` and `check_from` are _FenceCore's, compiled (fencekit/_fence_core.c): a check
    # whose arguments are plain (a resource id of type int, a tuple or Token of two ints, a
    # source id or a known source name) runs in C and, when the library accepts the token,
    # returns its verdict from a cache there. Everything else comes to the methods below.

    def _check_slow(self, resource: int, token: TokenLike) -> Verdict:
        """`check` for what its compiled fast path hands over: a closed fence, keywords, and
        a resource id or token of any other type (a list, a Token subclass, an int subclass,
        a bool, a float) or out of range. Raises what a check always raised for bad input:
        ClosedError first, then the resource id's error, then the token's."""
        fence = self._handle()
        resource = resource_id(resource)
        generation, holder = token_ints(token)
        return self._answer(_check(fence, resource, generation, holder), generation, holder)

    def _answer(self, answer: int, generation: int, holder: int) -> Verdict:
        """The verdict of the glue's answer (fkpy_check, fkpy_check_from): the verdict kind,
        or a failed status negated."""
        if answer == _ACCEPTED:
            return self._accepted_verdict(generation, holder)
        if answer < 0:
            check(-answer)
        out = ffi.new("fk_verdict *")
        lib.fkpy_last_verdict(out)
        return Verdict.from_c(out)

    def _verdict_of(
        self,
        status: int,
        kind: int,
        current_generation: int,
        current_holder: int,
        previous_generation: int,
        previous_holder: int,
    ) -> Verdict:
        """The compiled check's answer when it is not "accepted": raises for a failed
        status, else the verdict from the library's fields."""
        check(status)
        verdict = ffi.new(
            "fk_verdict *",
            {
                "kind": kind,
                "current": (current_generation, current_holder),
                "previous": (previous_generation, previous_holder),
            },
        )
        return Verdict.from_c(verdict)

    def _accepted_verdict(self, generation: int, holder: int) -> Verdict:
        """The accepting verdict of a token (kept: a leader writes with one token many times,
        and building the verdict costs more than the check)."""
        verdict = self._accepted.get((generation, holder))
        if verdict is None:
            verdict = Verdict(VerdictKind.ACCEPTED, Token(generation, holder), None)
            if len(self._accepted) >= _TOKENS_CACHED:
                self._accepted.clear()
            self._accepted[(generation, holder)] = verdict
        return verdict

    def check_key(self, key: Key, token: TokenLike) -> Verdict:
        """Checks `token` for the resource named `key`, registering it if new."""
        k = _key(key)
        verdict = ffi.new("fk_verdict *")
        check(lib.fk_fence_check_key(self._handle(), k, len(k), to_c(token), verdict))
        return Verdict.from_c(verdict)

    def source_id(self, name: str) -> int:
        """This fence's id for the token source `name` (`<kind>:<identity>`, as
        `fencekit.zookeeper_source("prod-zk")` makes it, or "unnamed"), given on first use (at
        most 1024 sources per fence: TooManySourcesError). Ids hold while this fence is open,
        not across reopening. InvalidSourceError for a name that is no source name."""
        if not isinstance(name, str):
            raise TypeError(f"a source name is a str, not {type(name).__name__}")
        # Surrogates pass as the bytes they would be, which the library refuses as not UTF-8.
        encoded = name.encode("utf-8", "surrogatepass")
        out = ffi.new("uint32_t *")
        check(lib.fk_fence_source_id(self._handle(), encoded, len(encoded), out))
        source = int(out[0])
        self._source_ids[name] = source
        return source

    def _source(self, source: Union[int, str]) -> int:
        """A source id from an id or a name (looked up once per name)."""
        if type(source) is int:
            if not 0 <= source <= _U32_MAX:
                raise InvalidSourceError(lib.FK_STATUS_INVALID_SOURCE, f"source id {source}: this fence never gave it")
            return source
        if isinstance(source, str):
            known = self._source_ids.get(source)
            return known if known is not None else self.source_id(source)
        raise TypeError(f"a source is a source id (int) or a source name (str), not {type(source).__name__}")

    def _check_from_slow(self, resource: int, source: Union[int, str], token: TokenLike) -> Verdict:
        """`check_from` for what its compiled fast path hands over (as `_check_slow`): a
        source name this fence has not looked up yet, and everything `_check_slow` takes."""
        source = self._source(source)
        fence = self._handle()
        resource = resource_id(resource)
        generation, holder = token_ints(token)
        return self._answer(_check_from(fence, resource, source, generation, holder), generation, holder)

    def bound_source(self, resource: int) -> Optional[str]:
        """The name of the source `resource` takes tokens from: "unnamed" for `check`'s, None
        for a resource that has taken no token and had no rebase (its first token binds it)."""
        out = ffi.new("fk_buf *")
        check(lib.fk_fence_bound_source(self._handle(), resource_id(resource), out))
        try:
            name = ffi.unpack(ffi.cast("char *", out.data), out.len).decode("ascii") if out.len else None
        finally:
            lib.fk_buf_release(out)
        return name

    def rebase(self, key: Key, to: str, by: str) -> Optional[Token]:
        """Moves the resource named `key` (registering it if new) to the source `to`, an
        operator's act recorded durably with `by` (who did it: a person or a change ticket,
        1 to 256 bytes of UTF-8 without control characters) and the time; returns the mark it
        cleared (None if it had none). From then on a token of any other source is refused as
        "foreign_source", and the first token of `to` sets the mark whatever its generation;
        a resource moved back to a source it took tokens from before gets that source's last
        mark back instead (`mark()` reads it), so its old tokens stay stale.

        For a coordinator re-created from scratch (an etcd cluster has a new id then; give a
        ZooKeeper ensemble whose data was wiped a new name) or a migration; fencekit never
        rebases by itself. RebaseRefusedError, nothing changed, when the resource already
        takes tokens from `to` or `by` is not acceptable."""
        k = _key(key)
        if not isinstance(to, str):
            raise TypeError(f"a source name is a str, not {type(to).__name__}")
        if not isinstance(by, str):
            raise TypeError(f"by (who rebases) is a str, not {type(by).__name__}")
        target = to.encode("utf-8", "surrogatepass")
        try:
            who = by.encode("utf-8")
        except UnicodeEncodeError as e:
            raise RebaseRefusedError(lib.FK_STATUS_REBASE_REFUSED, f"by {by!r} is not UTF-8: {e}") from None
        out = ffi.new("fk_token *")
        check(lib.fk_fence_rebase(self._handle(), k, len(k), target, len(target), who, len(who), out))
        return from_c(out[0])

    def check_batch(self, items: Sequence[Tuple[int, TokenLike]]) -> List[Verdict]:
        """Checks each (resource, token) in one call and returns the verdicts in order (each
        true exactly when its write may land: `all(fence.check_batch(items))` says that
        every write may). Raises, returning no verdicts, when the call fails."""
        batch = Batch(self, items)
        batch.check()
        return batch.verdicts()

    def batch(self, items: Sequence[Tuple[int, TokenLike]]) -> "Batch":
        """A batch prepared once and checked many times (see `Batch`)."""
        return Batch(self, items)

    def mark(self, resource: int) -> Optional[Token]:
        """The resource's current mark, or None if it has none yet."""
        out = ffi.new("fk_token *")
        check(lib.fk_fence_mark(self._handle(), resource_id(resource), out))
        return from_c(out[0])

    def counters(self, resource: int) -> Counters:
        """What the fence decided for `resource` since it was opened."""
        out = ffi.new("fk_counters *")
        check(lib.fk_fence_counters(self._handle(), resource_id(resource), out))
        return Counters(out.accepted, out.advanced, out.stale, out.conflicts)

    def set_count_accepted(self, on: bool) -> None:
        """Turns the counting of accepted checks (`Counters.accepted`) on or off; it is on when
        a fence opens. A service that never reads that count turns it off to take its cost off
        the check; the other counts, and the accepted checks counted so far, are kept."""
        if not isinstance(on, bool):
            raise TypeError(f"set_count_accepted takes True or False, not {type(on).__name__}")
        check(lib.fk_fence_set_count_accepted(self._handle(), on))

    def __len__(self) -> int:
        out = ffi.new("size_t *")
        check(lib.fk_fence_len(self._handle(), out))
        return int(out[0])

    def set_validator(self, policy: Optional["Policy"]) -> None:
        """Attaches a validator policy (None detaches it): `check_write` asks it about every
        payload whose token the fence accepts. Attach rarely: every validator attached stays
        in memory until the fence closes."""
        check(lib.fk_fence_set_validator(self._handle(), _policy(policy)))

    def set_tie_breaker(self, policy: Optional["Policy"]) -> None:
        """Lets a tie-breaker policy settle conflicts (None: reject them all, the default)."""
        check(lib.fk_fence_set_tie_breaker(self._handle(), _policy(policy)))

    def check_write(self, resource: int, token: TokenLike, payload: bytes) -> "WriteVerdict":
        """Checks the token, then the payload with the attached validator. The write verdict
        is true exactly when the write may land."""
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload is bytes, not {type(payload).__name__}")
        raw = bytes(payload)
        out = ffi.new("fk_write_verdict *")
        check(lib.fk_fence_check_write(self._handle(), resource_id(resource), to_c(token), raw, len(raw), out))
        return WriteVerdict(bool(out.accepted), Verdict.from_c(out.fence), out.rejection_code)

    def compact(self) -> None:
        """Rewrites the fence's log as one snapshot of the current marks."""
        check(lib.fk_fence_compact(self._handle()))


class Batch:
    """Items whose checks cross into the library once: build it once, `check()` it as often as
    needed (the C arrays are reused, nothing is allocated per check), read the answers with
    `accepted(i)`, `kind(i)` or `verdicts()`.

    The answers are those of the last `check()`; one that raised (a bad item, a closed or
    poisoned fence, an I/O error) leaves every answer "none", a rejection, never an earlier
    check's "accepted". Before the first check every answer is "none" too.

    A Batch belongs to one thread at a time: its answers are the last `check()`'s, whichever
    thread ran it. A `check()` while another runs on the same batch raises
    InvalidArgumentError, and answers read meanwhile are "none". Give each thread its own.
    """

    def __init__(self, fence: Fence, items: Sequence[Tuple[int, TokenLike]]) -> None:
        if len(items) > BATCH_MAX:
            raise InvalidBatchError(
                lib.FK_STATUS_INVALID_BATCH, f"{len(items)} items; a batch holds at most {BATCH_MAX}"
            )
        self._fence = fence
        # Held while a check() writes the answers (the library runs without the GIL).
        self._checking = threading.Lock()
        self._len = len(items)
        self._items = ffi.new("fk_check_item[]", max(1, self._len))
        self._out = ffi.new("fk_verdict[]", max(1, self._len))
        for i, item in enumerate(items):
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise TypeError(f"batch item {i} is a (resource, token) pair, not {item!r}")
            resource, token = item
            try:
                self._items[i].resource = resource_id(resource)
                self._items[i].token = to_c(token)
            except TypeError as e:
                raise TypeError(f"batch item {i}: {e}") from None

    def __len__(self) -> int:
        return self._len

    def check(self) -> None:
        """Checks every item (raises for a bad item, with nothing checked). When it raises,
        every answer reads "none": the library rejects the array on each of its failures,
        and a failure before the call (a closed fence) rejects it here."""
        if not self._checking.acquire(blocking=False):
            raise InvalidArgumentError(
                lib.FK_STATUS_INVALID_ARGUMENT,
                "this Batch is being checked by another thread: a Batch belongs to one thread "
                "at a time (make one per thread)",
            )
        try:
            try:
                fence = self._fence._handle()
            except ClosedError:
                ffi.memmove(self._out, bytes(ffi.sizeof(self._out)), ffi.sizeof(self._out))
                raise
            check(lib.fk_fence_check_batch(fence, self._items, self._out, self._len))
        finally:
            self._checking.release()

    def _slot(self, index: object) -> Any:
        """The verdict slot of item `index`: an int from 0 (a bool is no index) below len."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"an item index is an int, not {type(index).__name__}")
        if not 0 <= index < self._len:
            raise IndexError(f"item {index} of a batch of {self._len}")
        return self._out[index]

    def _verdict(self, slot: Any) -> Verdict:
        """The verdict in `slot`: "none" while a check() runs (its answers are half written)."""
        if self._checking.locked():
            return Verdict.from_c(ffi.new("fk_verdict *")[0])
        return Verdict.from_c(slot)

    def accepted(self, index: int) -> bool:
        """True when the last `check()` lets the write of item `index` land."""
        return bool(self._verdict(self._slot(index)))

    def kind(self, index: int) -> VerdictKind:
        """The verdict of item `index` from the last `check()`: a name, which is true for
        every kind; test `accepted(index)` for the write."""
        return self._verdict(self._slot(index)).kind

    def verdicts(self) -> List[Verdict]:
        """Every verdict of the last `check()`; each is true exactly when its write may land,
        so `all(batch.verdicts())` says that every write may."""
        return [self._verdict(self._out[i]) for i in range(self._len)]


def tokens(pairs: Iterable[Tuple[int, int]]) -> List[Token]:
    """Tokens from (generation, holder) pairs."""
    return [Token(g, h) for g, h in pairs]
