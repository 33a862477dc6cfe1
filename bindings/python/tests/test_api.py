"""The shape of the Python API: kinds as enums, typed arguments refused with TypeError, the
lease clock, the version, context managers, and documentation that help() shows."""

import enum
import importlib.metadata
import inspect
import pathlib
import pydoc
import re
import time
from typing import List

import pytest

import fencekit
from fencekit import EventKind, LostReason, Token, VerdictKind
from ports import free_port
from test_node import wait_for_leadership

ROOT = pathlib.Path(__file__).resolve().parents[3]
ALLOW_ALL_WAT = b"""(module (memory (export "memory") 1)
  (func (export "fk_abi_version") (result i32) (i32.const 1))
  (func (export "fk_input") (result i32) (i32.const 4096))
  (func (export "fk_input_capacity") (result i32) (i32.const 61440))
  (func (export "fk_validate") (param i32) (result i32) (i32.const 0)))"""


def insecure_node(tmp_path: pathlib.Path) -> fencekit.NodeConfig:
    return {"id": 1, "cluster": 3, "data_dir": str(tmp_path / "node"),
            "listen": f"127.0.0.1:{free_port()}", "insecure": True}




def test_kinds_are_enums_that_still_compare_as_their_names(tmp_path: pathlib.Path) -> None:
    with fencekit.Fence(tmp_path) as fence:
        r = fence.register("r")
        advanced = fence.check(r, (2, 1))
        assert advanced.kind is VerdictKind.ADVANCED and advanced.kind == "advanced"
        assert fence.check(r, (2, 1)).kind is VerdictKind.ACCEPTED
        assert fence.check(r, (1, 1)).kind is VerdictKind.STALE
        assert fence.check(r, (2, 7)).kind is VerdictKind.CONFLICT
        batch = fence.batch([(r, (2, 1))])
        assert batch.kind(0) is VerdictKind.NONE, "before its first check"
        batch.check()
        assert batch.kind(0) is VerdictKind.ACCEPTED
        # Printed as the bare name, as the strings were.
        assert f"{advanced.kind}" == "advanced" and str(advanced.kind) == "advanced"
        assert {k.value for k in VerdictKind} == {"accepted", "advanced", "stale", "conflict", "foreign_source", "none"}
    with pytest.raises(ValueError):
        fencekit.Verdict("acepted", None, None)  # a typo makes no verdict
    assert {k.value for k in EventKind} == {"elected", "lost", "leader_changed", "membership_changed"}
    assert {k.value for k in LostReason} == {"lease_expired", "stepped_down", "transferring", "removed",
                                             "stopped", "failed"}
    assert fencekit.PolicyKind("tie-breaker") is fencekit.TIE_BREAKER
    for kind in (VerdictKind, EventKind, LostReason, fencekit.AppliedKind, fencekit.PolicyKind):
        assert issubclass(kind, enum.Enum) and issubclass(kind, str)


def test_node_answers_carry_kinds(tmp_path: pathlib.Path) -> None:
    with fencekit.Node(insecure_node(tmp_path)) as node:
        wait_for_leadership(node)
        events: List[fencekit.Event] = []
        while (event := node.next_event(0.5)) is not None:
            events.append(event)
        elected = [e for e in events if e.kind is EventKind.ELECTED]
        assert elected and elected[0].lost_reason is None and elected[0].lease_deadline_ns is not None
        changed = [e for e in events if e.kind is EventKind.LEADER_CHANGED]
        assert all(e.lease_deadline_ns is None for e in changed)
        index = node.propose(b"x")
        items = [node.next_applied(1.0) for _ in range(index)]
        assert any(i is not None and i.kind is fencekit.AppliedKind.ENTRY and i.data == b"x" for i in items)
        node.stop()
        lost: List[fencekit.Event] = []
        with pytest.raises(fencekit.StoppedError):
            while True:
                event = node.next_event(0.5)
                assert event is not None
                lost.append(event)
        assert lost[-1].kind is EventKind.LOST and lost[-1].lost_reason is LostReason.STOPPED


def test_a_missing_or_bool_token_or_id_is_a_type_error_everywhere(tmp_path: pathlib.Path) -> None:
    """None ("no token") or True (cffi would pass it as 1) where a token, a resource id or a
    node id belongs raises TypeError, naming what is wrong, and checks nothing."""
    with fencekit.Fence(tmp_path / "fence") as fence:
        fence.set_validator(fencekit.Policy(ALLOW_ALL_WAT))
        r = fence.register("r")
        for token in [None, (True, 1), (1, False), Token(True, 1), "ab", b"\x01\x02", {1: 1, 2: 2},
                      {1, 2}, (1, 2, 3), (1,), 12]:
            calls = [
                lambda t=token: fence.check(r, t),  # type: ignore[misc]
                lambda t=token: fence.check_key("r", t),  # type: ignore[misc]
                lambda t=token: fence.check_write(r, t, b"p"),  # type: ignore[misc]
                lambda t=token: fence.check_batch([(r, t)]),  # type: ignore[misc]
                lambda t=token: fence.batch([(r, t)]),  # type: ignore[misc]
            ]
            for call in calls:
                with pytest.raises(TypeError, match="token|int"):
                    call()
        with pytest.raises(TypeError, match="None"):
            fence.check(r, None)  # type: ignore[arg-type]
        # A resource id is an int too: True would be resource 1.
        fence.register("s")
        for resource in [True, False, 1.0, "r", None]:
            for call in [lambda x=resource: fence.check(x, (1, 1)),  # type: ignore[misc]
                         lambda x=resource: fence.mark(x),  # type: ignore[misc]
                         lambda x=resource: fence.counters(x),  # type: ignore[misc]
                         lambda x=resource: fence.check_write(x, (1, 1), b"p"),  # type: ignore[misc]
                         lambda x=resource: fence.check_batch([(x, (1, 1))])]:  # type: ignore[misc]
                with pytest.raises(TypeError, match="resource id is an int"):
                    call()
        for resource in [-1, 2**32]:
            with pytest.raises(fencekit.UnknownResourceError):
                fence.check(resource, (1, 1))
            with pytest.raises(fencekit.UnknownResourceError):
                fence.mark(resource)
        with pytest.raises(TypeError, match="pair"):
            fence.check_batch([r])  # type: ignore[list-item]
        # A batch's item index is an int within the batch, as any other id.
        batch = fence.batch([(r, (1, 1)), (r, (1, 1))])
        with pytest.raises(TypeError, match="item index is an int"):
            batch.accepted(True)  # type: ignore[arg-type]
        for index in [2, -1]:
            with pytest.raises(IndexError, match="of a batch of 2"):
                batch.accepted(index)
            with pytest.raises(IndexError, match="of a batch of 2"):
                batch.kind(index)

        with pytest.raises(TypeError):
            fence.set_validator("policy")  # type: ignore[arg-type]
        assert fence.mark(r) is None and fence.mark(1) is None, "nothing was checked"
    with pytest.raises(TypeError, match="max_resources"):
        fencekit.Fence(tmp_path / "other", max_resources=True)  # type: ignore[arg-type]
    with fencekit.Node(insecure_node(tmp_path)) as node:
        wait_for_leadership(node)
        for to in [True, None, 2.0, "2"]:
            with pytest.raises(TypeError, match="int"):
                node.transfer(to)  # type: ignore[arg-type]
        with pytest.raises(fencekit.InvalidTokenError):
            node.transfer(0)
        for timeout in [True, "1", None]:
            with pytest.raises(TypeError, match="timeout"):
                node.propose(b"x", timeout)  # type: ignore[arg-type]
        # An infinite timeout is the longest the library waits, as for next_event.
        assert node.propose(b"x", float("inf")) > 0
        with pytest.raises(ValueError):
            node.next_event(float("nan"))
        assert node.leadership() is not None, "the bad transfers changed nothing"
    with pytest.raises(TypeError, match="dict or JSON"):
        fencekit.Node(42)  # type: ignore[arg-type]


def test_now_ns_and_lease_deadlines_are_on_clock_boottime(tmp_path: pathlib.Path) -> None:
    """The README's promise: a deadline is on CLOCK_BOOTTIME, which `now_ns()` reads. A
    deadline counted from the node's start would be hours early against this clock."""
    boottime = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    now = fencekit.now_ns()
    after = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    assert boottime <= now <= after
    assert fencekit.now_ns() >= now
    with fencekit.Node(insecure_node(tmp_path)) as node:
        leadership = wait_for_leadership(node)
        after = fencekit.now_ns()
        left = leadership.lease_deadline_ns - after
        # What was left when leadership() answered, less what passed since: within a few ms.
        assert 0 < leadership.lease_remaining_ns
        assert abs(left - leadership.lease_remaining_ns) < 20_000_000, (left, leadership)
        # Never later than the library's own deadline: at most what remained then.
        assert left <= leadership.lease_remaining_ns
        elected = next(e for e in iter(lambda: node.next_event(0.5), None) if e.kind is EventKind.ELECTED)
        assert elected.lease_deadline_ns is not None
        assert abs(elected.lease_deadline_ns - leadership.lease_deadline_ns) < 5_000_000_000
        assert elected.lease_deadline_ns > boottime


def test_the_version_is_the_workspace_version() -> None:
    workspace = re.search(r'\[workspace\.package\]\s*\nversion = "([^"]+)"', (ROOT / "Cargo.toml").read_text())
    assert workspace is not None
    assert fencekit.__version__ == workspace.group(1)
    # And the installed distribution's, whatever its name.
    distributions = importlib.metadata.packages_distributions().get("fencekit", [])
    assert distributions, "fencekit is not installed as a distribution"
    for name in distributions:
        assert importlib.metadata.version(name) == fencekit.__version__, name


def test_every_object_is_a_context_manager(tmp_path: pathlib.Path) -> None:
    with fencekit.Fence(tmp_path / "fence") as fence:
        with fencekit.Policy(ALLOW_ALL_WAT) as policy:
            assert policy.kind is fencekit.PolicyKind.VALIDATOR
            fence.set_validator(policy)
        with pytest.raises(fencekit.ClosedError, match="policy"):
            fence.set_validator(policy)
        # The fence kept its own reference.
        r = fence.register("r")
        assert fence.check_write(r, (1, 1), b"payload")
    with pytest.raises(fencekit.ClosedError):
        fence.register("r")
    with fencekit.Node(insecure_node(tmp_path)) as node:
        assert node.status()["id"] == 1
    with pytest.raises(fencekit.ClosedError):
        node.status()


def public_members(obj: object) -> List[str]:
    return [name for name, _ in inspect.getmembers(obj) if not name.startswith("_")]


def test_help_explains_every_public_class_and_method() -> None:
    import fencekit.aio

    missing = []
    for module in (fencekit, fencekit.aio):
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not (obj.__doc__ or "").strip():
                missing.append(f"{module.__name__}.{name}")
            if not inspect.isclass(obj) or issubclass(obj, (BaseException, enum.Enum)):
                continue
            for member in public_members(obj):
                attribute = inspect.getattr_static(obj, member)
                function = getattr(attribute, "__func__", attribute)
                if isinstance(attribute, property):
                    function = attribute.fget
                if inspect.isfunction(function) and not (function.__doc__ or "").strip():
                    missing.append(f"{module.__name__}.{name}.{member}")
    assert not missing, f"no docstring: {missing}"
    text = pydoc.render_doc(fencekit.Fence, renderer=pydoc.plaintext)
    assert "The durable high-water mark" in text and "Checks `token`" in text


def test_config_types_are_typed_dicts() -> None:
    assert fencekit.NodeConfig.__required_keys__ == {"id", "cluster", "data_dir", "listen"}
    assert {"peers", "tls", "insecure", "timing", "voters"} <= fencekit.NodeConfig.__optional_keys__


def test_a_batch_being_checked_is_refused_and_reads_none(tmp_path: pathlib.Path) -> None:
    """A Batch belongs to one thread: while a check() runs on it another is refused, and its
    answers read "none", never the running check's (or an earlier one's) acceptance."""
    with fencekit.Fence(tmp_path / "fence") as fence:
        batch = fence.batch([(fence.register("r"), (5, 1))])
        batch.check()
        assert batch.accepted(0)
        with batch._checking:  # as while another thread's check() runs
            with pytest.raises(fencekit.InvalidArgumentError, match="another thread"):
                batch.check()
            assert not batch.accepted(0) and batch.kind(0) == "none"
            assert not any(batch.verdicts())
        assert batch.accepted(0), "the refused check changed nothing"
