"""The node and policies from Python."""

import pathlib
import socket
import threading
import time
from typing import List

import pytest

import fencekit

MAX_PAYLOAD_WAT = b"""(module (memory (export "memory") 1)
  (func (export "fk_abi_version") (result i32) (i32.const 1))
  (func (export "fk_input") (result i32) (i32.const 4096))
  (func (export "fk_input_capacity") (result i32) (i32.const 61440))
  (func (export "fk_validate") (param i32) (result i32)
    (if (result i32) (i32.gt_u (i32.load offset=44 (i32.const 4096)) (i32.const 256))
      (then (i32.const 1)) (else (i32.const 0)))))"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def single(tmp_path: pathlib.Path, **extra: object) -> dict:
    return {"id": 1, "cluster": 5, "data_dir": str(tmp_path / "node"),
            "listen": f"127.0.0.1:{free_port()}", **extra}


def wait_for_leadership(node: fencekit.Node, seconds: float = 10.0) -> fencekit.Leadership:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        leadership = node.leadership()
        if leadership is not None:
            return leadership
        time.sleep(0.01)
    raise AssertionError("no leadership")


def test_a_single_node_leads_proposes_and_stops(tmp_path: pathlib.Path) -> None:
    with fencekit.Node(single(tmp_path)) as node:
        leadership = wait_for_leadership(node)
        assert leadership.token.holder == 1 and leadership.lease_remaining_ns > 0
        events = [node.next_event(1.0) for _ in range(3)]
        assert any(e is not None and e.kind == "elected" for e in events)
        index = node.propose(b"hello")
        assert index >= 2
        applied = [node.next_applied(1.0) for _ in range(index)]
        assert fencekit.Applied("entry", index, leadership.token.generation, b"hello") in applied
        status = node.status()
        assert status["role"] == "leader" and status["id"] == 1
        with pytest.raises(TypeError):
            node.propose("not bytes")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            node.next_event(-1)
        node.stop()
        with pytest.raises(fencekit.StoppedError):
            node.stop()
        assert node.leadership() is None
    with pytest.raises(fencekit.ClosedError):
        node.status()


def test_bad_configs_raise_with_the_field_named(tmp_path: pathlib.Path) -> None:
    with pytest.raises(fencekit.InvalidConfigError, match="does not parse"):
        fencekit.Node("{")
    with pytest.raises(fencekit.InvalidConfigError, match="colour"):
        fencekit.Node(single(tmp_path, colour="blue"))
    with pytest.raises(fencekit.InvalidConfigError, match="id = 0"):
        fencekit.Node({**single(tmp_path), "id": 0})


def test_policies_check_payloads_and_refusals_name_the_cause(tmp_path: pathlib.Path) -> None:
    with fencekit.Fence(tmp_path / "fence") as fence:
        fence.set_validator(fencekit.Policy(MAX_PAYLOAD_WAT))
        r = fence.register("ledger")
        assert fence.check_write(r, (1, 1), b"short").accepted
        refused = fence.check_write(r, (1, 1), b"x" * 300)
        assert not refused.accepted and refused.rejection_code == 1
        assert refused.fence.kind == "accepted"
        fence.set_validator(None)
        assert fence.check_write(r, (1, 1), b"x" * 300).accepted
    with pytest.raises(fencekit.PolicyRefusedError, match="fd_write"):
        fencekit.Policy(b'(module (import "wasi_snapshot_preview1" "fd_write" (func)))')
    with pytest.raises(ValueError):
        fencekit.Policy(MAX_PAYLOAD_WAT, kind="oracle")


def test_closing_a_node_while_other_threads_wait_in_it_is_safe(tmp_path: pathlib.Path) -> None:
    node = fencekit.Node(single(tmp_path))
    wait_for_leadership(node)
    errors: List[BaseException] = []

    def busy() -> None:
        try:
            while True:
                node.propose(b"busy", timeout=1.0)
                node.next_event(0.05)
        except fencekit.FencekitError as e:
            errors.append(e)

    threads = [threading.Thread(target=busy) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    node.close()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert len(errors) == 4
    assert all(isinstance(e, (fencekit.ClosedError, fencekit.StoppedError, fencekit.NotLeaderError))
               for e in errors), errors
    # Freed once the last call returned: the directory is free for a new node.
    with fencekit.Node(single(tmp_path)) as again:
        wait_for_leadership(again)
