"""The conformance vectors of tests/vectors/ (format: tests/vectors/README.md) through the
Python binding, as the Rust and C tests run them."""

import json
import pathlib
from typing import Any, Dict, List, Optional, Tuple

import pytest

import fencekit
from fencekit._native import lib

VECTORS = pathlib.Path(__file__).resolve().parents[3] / "tests" / "vectors"
STATUS = {
    fencekit.InvalidTokenError: "invalid_token",
    fencekit.InvalidKeyError: "invalid_key",
    fencekit.UnknownResourceError: "unknown_resource",
    fencekit.InvalidBatchError: "invalid_batch",
}


def number(value: Any) -> int:
    return int(value)


def token(value: List[Any]) -> Tuple[int, int]:
    return (number(value[0]), number(value[1]))


def key(step: Dict[str, Any]) -> bytes:
    if "key" in step:
        return step["key"].encode()
    return b"k" * number(step["key_len"])


def optional_token(value: Any) -> Optional[fencekit.Token]:
    return None if value is None else fencekit.Token(*token(value))


class Failed:
    """A step that raised: the status's name, and for a batch what its verdicts read after."""

    def __init__(self, status: str, verdicts: Optional[List[fencekit.Verdict]] = None) -> None:
        self.status = status
        self.verdicts = verdicts

    def __repr__(self) -> str:
        return f"Failed({self.status!r}, {self.verdicts!r})"


def status_of(error: fencekit.FencekitError) -> str:
    return next(name for cls, name in STATUS.items() if isinstance(error, cls))


def reused_batch(fence: fencekit.Fence, items: List[Tuple[int, Tuple[int, int]]]) -> Any:
    """Checks `items` as a Batch reused from an earlier check whose every answer was
    "accepted" (tests/vectors/README.md): its verdicts, or Failed with what they read after."""
    batch = fence.batch(items)
    for i in range(len(batch)):
        batch._out[i].kind = lib.FK_VERDICT_ACCEPTED
    assert all(batch.accepted(i) for i in range(len(batch)))
    try:
        batch.check()
    except fencekit.FencekitError as error:
        return Failed(status_of(error), batch.verdicts())
    return batch.verdicts()


def run_step(fence: fencekit.Fence, ids: Dict[bytes, int], step: Dict[str, Any]) -> Any:
    op = step["op"]
    if op == "register":
        ids[key(step)] = fence.register(key(step))
        return "ok"
    if op == "lookup":
        fence.lookup(key(step))
        return "ok"
    if op == "check":
        return fence.check(ids[key(step)], token(step["token"]))
    if op == "check_id":
        return fence.check(number(step["id"]), token(step["token"]))
    if op == "check_key":
        verdict = fence.check_key(key(step), token(step["token"]))
        ids[key(step)] = fence.lookup(key(step))
        return verdict
    if op == "batch":
        return reused_batch(fence, [(ids[key(i)], token(i["token"])) for i in step["items"]])
    if op == "mark":
        return ("mark", fence.mark(ids[key(step)]))
    if op == "counters":
        return fence.counters(ids[key(step)])
    raise AssertionError(f"unknown op {op}")


def compare(context: str, got: Any, expect: Dict[str, Any]) -> None:
    if "status" in expect:
        status = got.status if isinstance(got, Failed) else "ok"
        assert status == expect["status"], f"{context}: {got!r}"
        if isinstance(got, Failed) and got.verdicts is not None:
            # A failed batch: what its reused verdicts read now.
            if "verdicts" in expect:
                assert [v.kind for v in got.verdicts] == expect["verdicts"], f"{context}: {got!r}"
            if "accepted" in expect:
                assert [bool(v) for v in got.verdicts] == expect["accepted"], f"{context}: {got!r}"
                assert [v.accepted for v in got.verdicts] == expect["accepted"], context
        elif "accepted" in expect:
            # A failed check raised: no verdict came back to read as acceptance.
            assert expect["accepted"] is False and isinstance(got, Failed), f"{context}: {got!r}"
    elif "verdict" in expect:
        assert isinstance(got, fencekit.Verdict), f"{context}: {got!r}"
        assert got.kind == expect["verdict"], context
        if "current" in expect:
            assert got.current == optional_token(expect["current"]), context
        if "previous" in expect:
            assert got.previous == optional_token(expect["previous"]), context
        if "accepted" in expect:
            # The idiom: `if fence.check(r, token):`.
            assert bool(got) is expect["accepted"], f"{context}: {got!r} reads {bool(got)}"
            assert got.accepted is expect["accepted"], context
    elif "verdicts" in expect:
        assert [v.kind for v in got] == expect["verdicts"], context
        if "accepted" in expect:
            assert [bool(v) for v in got] == expect["accepted"], context
    elif "mark" in expect:
        assert got == ("mark", optional_token(expect["mark"])), context
    elif "counters" in expect:
        c = expect["counters"]
        assert got == fencekit.Counters(c["accepted"], c["advanced"], c["stale"], c["conflicts"]), context
    else:
        raise AssertionError(f"{context}: unknown expectation {expect}")


def run(path: pathlib.Path, directory: pathlib.Path) -> None:
    vector = json.loads(path.read_text())
    fence = fencekit.Fence(directory)
    ids: Dict[bytes, int] = {}
    try:
        for index, step in enumerate(vector["steps"]):
            context = f"{vector['name']} step {index} ({step['op']})"
            if step["op"] == "reopen":
                fence.close()
                fence = fencekit.Fence(directory)
                ids = {k: fence.lookup(k) for k in ids}
                continue
            try:
                got = run_step(fence, ids, step)
            except fencekit.FencekitError as error:
                got = Failed(status_of(error))
            if "expect" in step:
                compare(context, got, step["expect"])
    finally:
        fence.close()


@pytest.mark.parametrize("path", sorted(VECTORS.glob("*.json")), ids=lambda p: p.stem)
def test_vector(path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    run(path, tmp_path)


def test_there_are_vectors() -> None:
    assert len(list(VECTORS.glob("*.json"))) >= 5


def test_the_runner_catches_a_wrong_expectation(tmp_path: pathlib.Path) -> None:
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps({"name": "planted", "steps": [
        {"op": "check_key", "key": "k", "token": [2, 1], "expect": {"verdict": "advanced"}},
        {"op": "check_key", "key": "k", "token": [1, 1], "expect": {"verdict": "accepted"}},
    ]}))
    with pytest.raises(AssertionError):
        run(planted, tmp_path / "fence")


def test_the_runner_catches_a_verdict_that_reads_as_acceptance(tmp_path: pathlib.Path, monkeypatch: Any) -> None:
    """A verdict true for every kind, as a NamedTuple verdict was, fails fail_closed.json."""
    monkeypatch.setattr(fencekit.Verdict, "__bool__", lambda self: True)
    with pytest.raises(AssertionError, match="stale"):
        run(VECTORS / "fail_closed.json", tmp_path)


def test_the_runner_catches_a_failed_batch_that_keeps_its_acceptances(
    tmp_path: pathlib.Path, monkeypatch: Any
) -> None:
    """A library whose failed batch leaves the verdict array as it was (as it did for a NULL
    or poisoned fence, NULL items or too long a batch) fails fail_closed.json."""
    from fencekit._native import ffi

    class Leaving:
        def __getattr__(self, name: str) -> Any:
            return getattr(lib, name)

        def fk_fence_check_batch(self, fence: Any, items: Any, out: Any, n: int) -> int:
            scratch = ffi.new("fk_verdict[]", max(1, n))
            status = lib.fk_fence_check_batch(fence, items, scratch, n)
            if status == lib.FK_STATUS_OK:
                ffi.memmove(out, scratch, ffi.sizeof("fk_verdict") * n)
            return status

    monkeypatch.setattr(fencekit.fence, "lib", Leaving())
    with pytest.raises(AssertionError, match="Failed\\('invalid_batch'"):
        run(VECTORS / "fail_closed.json", tmp_path)
