"""The compiled check (`Fence.check` and `check_from`, fencekit/_fence_core.c) against
hostile input: it takes plain arguments only and hands everything else to the Python path,
so for every input it answers exactly as the Python path does (the same verdict, or the same
exception with the same message), and no input crashes it."""

import enum
import gc
import inspect
import multiprocessing
import pathlib
import threading
import time
from typing import Any, Callable, List, Tuple

import pytest

import fencekit
from fencekit import Token
from fencekit._native import _FenceCore, ffi


class Term(enum.IntEnum):
    FOUR = 4


class IndexRaises(int):
    """An int whose conversions all raise: only its value, read directly, is an int."""

    def __index__(self) -> int:
        raise RuntimeError("__index__ called")

    def __int__(self) -> int:
        raise RuntimeError("__int__ called")


class LiesAboutRange(int):
    """An int that claims to be in every range."""

    def __ge__(self, other: object) -> bool:
        return True

    def __le__(self, other: object) -> bool:
        return True


class LongTuple(tuple):  # type: ignore[type-arg]
    """Three items that call themselves two."""

    def __len__(self) -> int:
        return 2


class IterLies(tuple):  # type: ignore[type-arg]
    """A pair whose iteration yields other values than it holds."""

    def __iter__(self) -> Any:
        return iter((1, 1))


class GetItemRaises(tuple):  # type: ignore[type-arg]
    def __getitem__(self, index: Any) -> Any:
        raise RuntimeError("__getitem__ called")


class MyToken(Token):
    """A Token subclass: a Token, through the Python path."""


class Name(str):
    pass


BIG = [2**32, 2**63, 2**64 - 1, 2**64, 2**100, -1, -(2**64), -(2**100)]

TOKENS: List[Any] = [
    (1, 1), Token(1, 1), (2, 1), Token(2, 1), (1, 1), (2, 5), [2, 1], [3, 1],
    (0, 1), (1, 0), (0, 0), (2**63 - 1 - 5, 1), (2**63, 1), (1, 2**64 - 1), (1, 2**63),
    *[(b, 1) for b in BIG], *[(1, b) for b in BIG],
    (1.0, 1), (1, 1.0), (True, 1), (1, False), (True, True), ("1", 1), (None, 1), (b"", 1),
    (Term.FOUR, 1), (IndexRaises(5), 1), (1, IndexRaises(5)), (LiesAboutRange(-1), 1),
    (LiesAboutRange(2**64), 1), LongTuple((6, 1, 9)), IterLies((7, 1)), GetItemRaises((7, 1)),
    MyToken(7, 1), MyToken(True, 1), Token(1.0, 1), Token(-1, 1), Token(0, 1),
    (), (1,), (1, 1, 1), [1, 1, 1], "ab", b"ab", {1: 2, 3: 4}, {1, 2}, 7, None, object(),
    iter((1, 1)),
]

RESOURCES: List[Any] = [
    "r", True, False, 1.0, -1, 2**32, 2**64, -(2**64), 2**100, None, "0", Term.FOUR,
    IndexRaises(0), LiesAboutRange(-1), 4242, 2**32 - 1,
]


def outcome(call: Callable[[], Any]) -> Tuple[Any, ...]:
    try:
        verdict = call()
    except Exception as e:  # noqa: BLE001 - the outcome is compared, whatever it is
        return ("raised", type(e), str(e))
    return ("verdict", type(verdict), verdict.kind, verdict.current, verdict.previous, bool(verdict))


def twins(tmp_path: pathlib.Path) -> Tuple[fencekit.Fence, fencekit.Fence]:
    """Two fences with the same history: one checked the compiled way, one the Python way."""
    return fencekit.Fence(tmp_path / "compiled"), fencekit.Fence(tmp_path / "python")


def test_check_answers_every_input_as_the_python_path_does(tmp_path: pathlib.Path) -> None:
    compiled, python = twins(tmp_path)
    for fence in (compiled, python):
        assert fence.register("r") == 0 and fence.register("s") == 1
    differences = []
    for resource in RESOURCES:
        for token in TOKENS:
            r = 0 if resource == "r" and type(resource) is str else resource
            fast = outcome(lambda: compiled.check(r, token))
            slow = outcome(lambda: python._check_slow(r, token))
            if fast != slow:
                differences.append((resource, token, fast, slow))
    assert differences == []
    assert compiled.mark(0) == python.mark(0) and compiled.counters(0) == python.counters(0)
    # A value outside a range is never clipped into it: 2**32 is no resource 0, and 2**64 + 2
    # no generation 2.
    before = compiled.counters(0)
    with pytest.raises(fencekit.UnknownResourceError):
        compiled.check(2**32, compiled.mark(0))
    with pytest.raises(fencekit.InvalidTokenError):
        compiled.check(0, (2**64 + 2, 1))
    assert compiled.counters(0) == before
    for fence in (compiled, python):
        fence.close()
    for resource in RESOURCES[:4]:
        for token in TOKENS[:12]:
            r = 0 if resource == "r" else resource
            assert outcome(lambda: compiled.check(r, token)) == outcome(lambda: python._check_slow(r, token))
            assert outcome(lambda: compiled.check(r, token))[1] is fencekit.ClosedError


def test_check_from_answers_every_input_as_the_python_path_does(tmp_path: pathlib.Path) -> None:
    compiled, python = twins(tmp_path)
    zk = fencekit.zookeeper_source("prod-zk")
    sources: List[Any] = [zk, Name(zk), "unnamed", 0, 1, 2, 5, -1, 2**32, 2**64, True, 1.0, None,
                          "not a source", "etcd:xyz", fencekit.etcd_source(1), b"unnamed",
                          "zookeeper:\udc80", IndexRaises(1), Term.FOUR, zk]
    for fence in (compiled, python):
        fence.register("r")
        fence.register("s")
    differences = []
    for source in sources:
        for resource in [0, 1, True, -1, 2**32, 4242]:
            for token in TOKENS[:20] + [(True, 1), (1.0, 1), [4, 1], MyToken(4, 1), None, (1,)]:
                fast = outcome(lambda: compiled.check_from(resource, source, token))
                slow = outcome(lambda: python._check_from_slow(resource, source, token))
                if fast != slow:
                    differences.append((source, resource, token, fast, slow))
    assert differences == []
    assert compiled.bound_source(0) == python.bound_source(0) == zk
    assert compiled.mark(0) == python.mark(0) and compiled.counters(0) == python.counters(0)
    compiled.close()
    assert outcome(lambda: compiled.check_from(0, zk, (1, 1)))[1] is fencekit.ClosedError


def test_keywords_and_wrong_argument_counts_behave_as_a_python_method(tmp_path: pathlib.Path) -> None:
    with fencekit.Fence(tmp_path) as fence:
        r = fence.register("r")
        assert fence.check(r, token=(2, 1)).kind == "advanced"
        assert fence.check(resource=r, token=Token(2, 1)).kind == "accepted"
        assert fence.check_from(r, "unnamed", token=(2, 1)).kind == "accepted"
        assert fence.check_from(resource=r, source=0, token=(2, 1)).kind == "accepted"
        for call in [
            lambda: fence.check(),  # type: ignore[call-arg]
            lambda: fence.check(r),  # type: ignore[call-arg]
            lambda: fence.check(r, (2, 1), 3),  # type: ignore[call-arg]
            lambda: fence.check(r, (2, 1), token=(2, 1)),  # type: ignore[misc]
            lambda: fence.check(r, tokens=(2, 1)),  # type: ignore[call-arg]
            lambda: fence.check_from(r, 0),  # type: ignore[call-arg]
            lambda: fence.check_from(r, 0, (2, 1), 4),  # type: ignore[call-arg]
            lambda: fencekit.Fence.check(object(), r, (2, 1)),  # type: ignore[arg-type]
            lambda: _FenceCore.check(r, (2, 1)),  # type: ignore[call-arg]
        ]:
            with pytest.raises(TypeError):
                call()
        assert fence.counters(r) == fencekit.Counters(3, 1, 0, 0)
        assert list(inspect.signature(fencekit.Fence.check).parameters) == ["self", "resource", "token"]


def test_an_accepted_verdict_is_always_the_checked_tokens(tmp_path: pathlib.Path) -> None:
    """The compiled check keeps accepted verdicts in a small cache by the token's integers:
    however many tokens share its slots, the verdict is the one of the token checked, and only
    an acceptance by the library reads it."""
    with fencekit.Fence(tmp_path) as fence:
        ids = [fence.register(f"r{i}") for i in range(300)]
        tokens = [(1 + i % 7, 1 + i * 7919) for i in range(300)]
        for r, token in zip(ids, tokens):
            assert fence.check(r, token).kind == "advanced"
        for _ in range(3):
            for r, token in zip(ids, tokens):
                verdict = fence.check(r, token)
                assert verdict.kind == "accepted" and verdict.current == token and verdict.previous is None
                assert verdict is fence.check(r, token), "a hit returns the kept verdict"
        # A token accepted on one resource is stale or a conflict on another: never accepted,
        # though its accepted verdict is kept.
        other = fence.check(ids[1], tokens[0])
        assert other.kind in ("stale", "conflict") and not other and other.current == tokens[1]


def test_threads_churning_the_verdict_cache_while_the_fence_closes(tmp_path: pathlib.Path) -> None:
    """Threads check many tokens (each acceptance replaces cache slots the others read) while
    the fence is closed under them: every verdict is its own token's, each thread ends with
    ClosedError, and the fence is freed once they are done."""
    fence = fencekit.Fence(tmp_path)
    ids = [fence.register(f"r{i}") for i in range(64)]
    for i, r in enumerate(ids):
        assert fence.check(r, (1, 1000 + i))
    wrong: List[Any] = []
    closed: List[Exception] = []
    started = threading.Barrier(5)

    def worker(offset: int) -> None:
        started.wait()
        try:
            for n in range(10**9):
                i = (n * 7 + offset) % 64
                token = (1, 1000 + i)
                verdict = fence.check_from(ids[i], 0, token) if n % 3 else fence.check(ids[i], token)
                if verdict.kind != "accepted" or verdict.current != token:
                    wrong.append(verdict)
        except fencekit.ClosedError as e:
            closed.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.2)
    fence.close()
    for t in threads:
        t.join(10)
    assert wrong == [] and len(closed) == 4
    fencekit.Fence(tmp_path).close()


def test_python_code_the_check_calls_may_raise(tmp_path: pathlib.Path) -> None:
    """The compiled check calls back into Python to make verdicts: what those calls raise
    comes out of the check, and the fence works on."""

    class Failing(fencekit.Fence):
        fail = True

        def _accepted_verdict(self, generation: int, holder: int) -> fencekit.Verdict:
            if self.fail:
                raise RuntimeError("no verdict")
            return super()._accepted_verdict(generation, holder)

        def _verdict_of(self, *fields: int) -> fencekit.Verdict:
            if self.fail:
                raise RuntimeError("no other verdict")
            return super()._verdict_of(*fields)

    with Failing(tmp_path) as fence:
        r = fence.register("r")
        with pytest.raises(RuntimeError, match="no other verdict"):
            fence.check(r, (2, 1))  # advanced, durably, but the verdict could not be made
        with pytest.raises(RuntimeError, match="no verdict"):
            fence.check(r, (2, 1))
        fence.fail = False
        assert fence.check(r, (2, 1)).kind == "accepted"
        assert fence.check(r, (1, 1)).kind == "stale"


def test_a_fence_closed_by_a_source_names_lookup_is_not_used(tmp_path: pathlib.Path) -> None:
    """Looking a source name up can run Python code (the __eq__ of a str subclass the fence
    was given the name as), which can close the fence: the check must then see it closed
    (a first draft of the compiled check used the freed fence here and crashed)."""
    fence = fencekit.Fence(tmp_path)
    r = fence.register("r")

    class Closing(str):
        def __eq__(self, other: object) -> bool:
            fence.close()
            return str.__eq__(self, other)

        __hash__ = str.__hash__

    zk = fencekit.zookeeper_source("prod-zk")
    fence.source_id(Closing(zk))
    with pytest.raises(fencekit.ClosedError):
        fence.check_from(r, zk, (1, 1))


def test_the_core_refuses_anything_but_a_cffi_fence(tmp_path: pathlib.Path) -> None:
    """`_open_core` takes only what cffi would pass to the library as an `fk_fence *`."""
    core = _FenceCore()
    for owner in [0, None, 12345, ffi.new("uint32_t *"), ffi.cast("void *", 64), ffi.NULL]:
        with pytest.raises((TypeError, ValueError)):
            core._open_core(owner, {}, Token)
    with pytest.raises(ValueError, match="NULL"):
        core._open_core(ffi.cast("fk_fence *", 0), {}, Token)
    with pytest.raises(TypeError):
        core._open_core(ffi.cast("fk_fence *", 0), [], Token)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        core._open_core(ffi.cast("fk_fence *", 0), {}, int)
    with pytest.raises(TypeError):
        core._open_core()  # type: ignore[call-arg]
    # Unbound, it hands every check to Python, which has no fence here.
    with pytest.raises(AttributeError):
        core.check(0, (1, 1))
    core._close_core()


def test_a_fence_opened_again_drops_the_former_one(tmp_path: pathlib.Path) -> None:
    """`Fence.__init__` called again binds the new fence and drops the former, as it did when
    the check was Python."""
    with fencekit.Fence(tmp_path / "a") as fence:
        r = fence.register("r")
        assert fence.check(r, (2, 1)) and fence.check(r, (2, 1))
        fence.__init__(tmp_path / "b")  # type: ignore[misc]
        fencekit.Fence(tmp_path / "a").close()  # the former fence was freed: its directory is free
        assert fence.check(fence.register("r"), (1, 1)).kind == "advanced"
        assert fence.mark(r) == Token(1, 1)


def test_a_fence_in_a_reference_cycle_is_freed_by_the_collector(tmp_path: pathlib.Path) -> None:
    fence = fencekit.Fence(tmp_path)
    r = fence.register("r")
    assert fence.check(r, (2, 1)) and fence.check(r, (2, 1))
    fence.cycle = fence  # type: ignore[attr-defined]
    del fence
    gc.collect()
    # Freed, so its directory is free again.
    fencekit.Fence(tmp_path).close()


def _check_inherited(fence: fencekit.Fence, outcomes: "multiprocessing.Queue[str]") -> None:
    for call in [lambda: fence.check(0, (2, 1)), lambda: fence.check(0, Token(3, 1)),
                 lambda: fence.check_from(0, "unnamed", (2, 1)), lambda: fence.check_from(0, 0, (4, 1))]:
        try:
            outcomes.put(f"{call().kind}")
        except fencekit.ForkedError:
            outcomes.put("ForkedError")
        except Exception as e:  # noqa: BLE001 - any other outcome is reported
            outcomes.put(f"{type(e).__name__} {e}")


def test_the_compiled_check_refuses_an_inherited_fence_in_the_child(tmp_path: pathlib.Path) -> None:
    fork = multiprocessing.get_context("fork")
    with fencekit.Fence(tmp_path) as fence:
        r = fence.register("r")
        assert fence.check(r, (2, 1)) and fence.check(r, (2, 1)), "the accepted verdict is kept"
        outcomes = fork.Queue()
        child = fork.Process(target=_check_inherited, args=(fence, outcomes))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        assert [outcomes.get(timeout=5) for _ in range(4)] == ["ForkedError"] * 4
        assert fence.check(r, (2, 1)).kind == "accepted" and fence.mark(r) == Token(2, 1)


def test_a_fence_is_not_copied(tmp_path: pathlib.Path) -> None:
    """A copy would be a second object on the same library fence (copy.copy made one before
    the check was compiled; deepcopy and pickle raised): every way raises now."""
    import copy
    import pickle

    with fencekit.Fence(tmp_path) as fence:
        for copier in (copy.copy, copy.deepcopy, pickle.dumps):
            with pytest.raises(TypeError):
                copier(fence)


def test_check_is_the_compiled_one() -> None:
    """The fast path is in use: a change that shadowed it with a Python method would keep
    every other test passing at three times the cost."""
    assert fencekit.Fence.check is _FenceCore.__dict__["check"]
    assert fencekit.Fence.check_from is _FenceCore.__dict__["check_from"]
    assert inspect.ismethoddescriptor(fencekit.Fence.check)
