"""The conformance vectors of tests/vectors/ (format: tests/vectors/README.md) through the
Python binding, as the Rust and C tests run them; and the node vectors of tests/vectors/node,
as the C and Go tests run them."""

import json
import pathlib
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest

import fencekit
from fencekit._native import lib

VECTORS = pathlib.Path(__file__).resolve().parents[3] / "tests" / "vectors"
NODE_VECTORS = VECTORS / "node"


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
    """A step that raised: the status's name, the exception's message, and for a batch what
    its verdicts read after."""

    def __init__(self, error: fencekit.FencekitError, verdicts: Optional[List[fencekit.Verdict]] = None) -> None:
        self.status = status_of(error)
        self.message = str(error)
        self.verdicts = verdicts

    def __repr__(self) -> str:
        return f"Failed({self.status!r}, {self.message!r}, {self.verdicts!r})"


def status_of(error: fencekit.FencekitError) -> str:
    """The status as the vectors name it: FK_STATUS_INVALID_KEY is "invalid_key"."""
    return error.status_name.removeprefix("FK_STATUS_").lower()


def compare_message(context: str, got: Any, expect: Dict[str, Any]) -> None:
    """Every string of the expectation's "message" is in the exception's message."""
    if isinstance(got, Failed):
        for part in expect.get("message", []):
            assert part in got.message, f"{context}: the message does not name {part!r}: {got.message!r}"


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
        return Failed(error, batch.verdicts())
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
        items = [(number(i["id"]) if "id" in i else ids[key(i)], token(i["token"])) for i in step["items"]]
        return reused_batch(fence, items)
    if op == "mark":
        return ("mark", fence.mark(ids[key(step)]))
    if op == "counters":
        return fence.counters(ids[key(step)])
    raise AssertionError(f"unknown op {op}")


def compare(context: str, got: Any, expect: Dict[str, Any]) -> None:
    if "status" in expect:
        status = got.status if isinstance(got, Failed) else "ok"
        assert status == expect["status"], f"{context}: {got!r}"
        compare_message(context, got, expect)
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
                got = Failed(error)
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


# ---- node vectors -------------------------------------------------------------------------


def merge(base: Dict[str, Any], patch: Dict[str, Any]) -> None:
    """Merges `patch` into `base`: objects field by field, a None (null) field left out."""
    for name, value in patch.items():
        if value is None:
            base.pop(name, None)
        elif isinstance(value, dict) and isinstance(base.get(name), dict):
            merge(base[name], value)
        else:
            base[name] = value


def run_node_vector(path: pathlib.Path, directory: pathlib.Path) -> None:
    vector = json.loads(path.read_text())
    node: Optional[fencekit.Node] = None
    try:
        for index, step in enumerate(vector["steps"]):
            op = step["op"]
            context = f"{vector['name']} step {index} ({op})"
            expect = step.get("expect", {})
            got: Any = "ok"
            try:
                if op == "start":
                    config: Dict[str, Any] = {
                        "id": 1, "cluster": 1, "data_dir": str(directory / f"node-{index}"),
                        "listen": "127.0.0.1:0", "insecure": True,
                        "timing": {"tick_ms": 10, "margin_ms": 10},
                    }
                    merge(config, step.get("config", {}))
                    started = fencekit.Node(config)
                    if node is not None:
                        node.close()
                    node = started
                elif op == "await_leadership":
                    deadline = time.monotonic() + 10
                    while node.leadership() is None and time.monotonic() < deadline:
                        time.sleep(0.01)
                    if node.leadership() is None:
                        got = "not_leader"
                elif op == "transfer":
                    node.transfer(number(step["to"]))
                elif op == "step_down":
                    node.step_down()
                elif op == "stop":
                    node.stop()
                elif op == "status":
                    got = node.status()
                else:
                    raise AssertionError(f"{context}: unknown op")
            except fencekit.FencekitError as error:
                got = Failed(error)
            if "status" in expect:
                status = got.status if isinstance(got, Failed) else got if isinstance(got, str) else "ok"
                assert status == expect["status"], f"{context}: {got!r}"
                compare_message(context, got, expect)
            if "status_json" in expect:
                assert isinstance(got, dict), f"{context}: {got!r}"
                for name, value in expect["status_json"].items():
                    assert name in got and got[name] == value, f"{context}: {name} is {got.get(name)!r}, not {value!r}: {got}"
    finally:
        if node is not None:
            node.close()


@pytest.mark.parametrize("path", sorted(NODE_VECTORS.glob("*.json")), ids=lambda p: p.stem)
def test_node_vector(path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    run_node_vector(path, tmp_path)


def test_there_are_node_vectors() -> None:
    assert len(list(NODE_VECTORS.glob("*.json"))) >= 2


def test_the_node_runner_catches_a_wrong_expectation(tmp_path: pathlib.Path) -> None:
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps({"name": "planted", "steps": [
        {"op": "start", "config": {"timing": {"tick_ms": -1}}, "expect": {"status": "invalid_config", "message": ["timing.margin_ms"]}},
    ]}))
    with pytest.raises(AssertionError, match="does not name"):
        run_node_vector(planted, tmp_path / "node")
