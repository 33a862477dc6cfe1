"""The node and policies from Python."""

import pathlib
import threading
import time
from typing import List, Optional, Tuple

import pytest

import fencekit
from ports import free_port

MAX_PAYLOAD_WAT = b"""(module (memory (export "memory") 1)
  (func (export "fk_abi_version") (result i32) (i32.const 1))
  (func (export "fk_input") (result i32) (i32.const 4096))
  (func (export "fk_input_capacity") (result i32) (i32.const 61440))
  (func (export "fk_validate") (param i32) (result i32)
    (if (result i32) (i32.gt_u (i32.load offset=44 (i32.const 4096)) (i32.const 256))
      (then (i32.const 1)) (else (i32.const 0)))))"""


CLUSTER = 5


@pytest.fixture
def certs(tmp_path: pathlib.Path) -> pathlib.Path:
    """Development certificates of cluster CLUSTER for nodes 1 to 3."""
    directory = tmp_path / "certs"
    fencekit.make_dev_certs(directory, CLUSTER, [1, 2, 3])
    return directory


def single(tmp_path: pathlib.Path, certs: Optional[pathlib.Path] = None, **extra: object) -> dict:
    """Node 1 alone: secured with `certs` if given, else with whatever `extra` says."""
    config = {"id": 1, "cluster": CLUSTER, "data_dir": str(tmp_path / "node"),
              "listen": f"127.0.0.1:{free_port()}"}
    if certs is not None:
        config["tls"] = {"dir": fencekit.dev_cert_dir(certs, 1)}
    return {**config, **extra}


def group(tmp_path: pathlib.Path, certs: pathlib.Path, size: int = 3, **extra: object) -> List[dict]:
    """The configurations of nodes 1 to `size` of one secure group."""
    ports = [free_port() for _ in range(size)]
    return [{"id": i + 1, "cluster": CLUSTER, "data_dir": str(tmp_path / f"node-{i + 1}"),
             "listen": f"127.0.0.1:{ports[i]}",
             "peers": [{"id": j + 1, "addr": f"127.0.0.1:{ports[j]}"} for j in range(size) if j != i],
             "tls": {"dir": fencekit.dev_cert_dir(certs, i + 1)}, **extra}
            for i in range(size)]


def wait_for_leadership(node: fencekit.Node, seconds: float = 10.0) -> fencekit.Leadership:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        leadership = node.leadership()
        if leadership is not None:
            return leadership
        time.sleep(0.01)
    raise AssertionError("no leadership")


def wait_for_leader(nodes: List[fencekit.Node], exclude: int = -1,
                    seconds: float = 10.0) -> Tuple[int, fencekit.Leadership]:
    """The index and leadership of the first node but nodes[exclude] to lead."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for i, node in enumerate(nodes):
            leadership = node.leadership() if i != exclude else None
            if leadership is not None:
                return i, leadership
        time.sleep(0.01)
    raise AssertionError("no leader")


def test_a_single_node_leads_proposes_and_stops(tmp_path: pathlib.Path, certs: pathlib.Path) -> None:
    with fencekit.Node(single(tmp_path, certs)) as node:
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
        assert status["failed"] is False and status["failure"] is None
        assert status["refused_messages"] == 0 and status["last_refusal"] is None
        # The test hook is off unless the configuration turns it on.
        with pytest.raises(fencekit.InvalidArgumentError, match="test_hooks"):
            node._panic_for_testing()
        with pytest.raises(TypeError):
            node.propose("not bytes")  # type: ignore[arg-type]
        # A batch is one proposal: its items commit at consecutive indexes, in order.
        indexes = node.propose_batch([b"a", bytearray(b"b"), memoryview(b"c")])
        assert indexes == list(range(indexes[0], indexes[0] + 3)) and indexes[0] > index
        got = [node.next_applied(1.0) for _ in range(indexes[-1] - index)]
        assert [a.data for a in got if a is not None and a.index in indexes] == [b"a", b"b", b"c"]
        with pytest.raises(fencekit.InvalidBatchError):
            node.propose_batch([])
        with pytest.raises(fencekit.InvalidBatchError):
            node.propose_batch([b"x"] * 4097)
        with pytest.raises(fencekit.InvalidArgumentError):
            node.propose_batch([b"x", b""])
        with pytest.raises(TypeError, match="item 1"):
            node.propose_batch([b"x", "y"])  # type: ignore[list-item]
        with pytest.raises(ValueError):
            node.next_event(-1)
        # A target that is no voter is refused as a membership matter, naming it.
        with pytest.raises(fencekit.MembershipError, match="node 2 is not a voter"):
            node.transfer(2)
        node.stop()
        # A stopped node's status claims no leadership.
        status = node.status()
        assert status["role"] == "follower" and status["leader"] is None
        assert status["leading_generation"] is None and status["lease_remaining_ms"] is None
        assert status["stopped"] is True and status["failed"] is False
        with pytest.raises(fencekit.StoppedError):
            node.stop()
        assert node.leadership() is None
    with pytest.raises(fencekit.ClosedError):
        node.status()


def test_bad_configs_raise_with_the_field_named(tmp_path: pathlib.Path, certs: pathlib.Path) -> None:
    with pytest.raises(fencekit.InvalidConfigError, match="does not parse"):
        fencekit.Node("{")
    with pytest.raises(fencekit.InvalidConfigError, match="colour"):
        fencekit.Node(single(tmp_path, certs, colour="blue"))
    with pytest.raises(fencekit.InvalidConfigError, match="id = 0"):
        fencekit.Node({**single(tmp_path, certs), "id": 0})
    # A negative number names its field by its path, as every configuration error does.
    with pytest.raises(fencekit.InvalidConfigError, match="timing.tick_ms: invalid value: integer `-1`"):
        fencekit.Node(single(tmp_path, certs, timing={"tick_ms": -1}))
    with pytest.raises(fencekit.InvalidConfigError, match="tls: give"):
        fencekit.Node(single(tmp_path, tls={"dir": ""}))
    with pytest.raises(fencekit.InvalidConfigError, match="tls: give"):
        fencekit.Node(single(tmp_path, tls={"dir": str(certs), "cert": "node.crt"}))
    with pytest.raises(TypeError, match="not JSON serializable"):
        fencekit.Node(single(tmp_path, descriptor=object()))


def test_a_node_needs_tls_or_says_insecure(tmp_path: pathlib.Path, certs: pathlib.Path) -> None:
    # Secure by default: neither "tls" nor "insecure" is refused, and so is both.
    with pytest.raises(fencekit.InvalidConfigError, match='no "tls"'):
        fencekit.Node(single(tmp_path))
    with pytest.raises(fencekit.InvalidConfigError, match="not both"):
        fencekit.Node(single(tmp_path, certs, insecure=True))
    # Saying so runs a node without TLS.
    with fencekit.Node(single(tmp_path, insecure=True)) as node:
        assert wait_for_leadership(node).token.holder == 1
    # The files named one by one, as paths: the same as "tls": {"dir": ...}.
    files = certs / "node-1"
    named = {"cert": files / "node.crt", "key": files / "node.key", "ca": files / "ca.crt"}
    with fencekit.Node(single(tmp_path, tls=named)) as node:
        assert wait_for_leadership(node).token.holder == 1


def test_policies_check_payloads_and_refusals_name_the_cause(tmp_path: pathlib.Path) -> None:
    with fencekit.Fence(tmp_path / "fence") as fence:
        fence.set_validator(fencekit.Policy(MAX_PAYLOAD_WAT))
        r = fence.register("ledger")
        assert fence.check_write(r, (1, 1), b"short").accepted
        refused = fence.check_write(r, (1, 1), b"x" * 300)
        assert not refused.accepted and refused.rejection_code == 1
        assert refused.fence.kind == "accepted"
        # I7: the write verdict itself is the test, and it is false here, though the fence
        # accepted the token (its own verdict is true).
        assert not refused and refused.fence
        assert fence.check_write(r, (1, 1), b"short")
        fence.check(r, (2, 1))
        stale = fence.check_write(r, (1, 1), b"short")
        assert not stale and not stale.fence and stale.fence.kind == "stale"
        with pytest.raises(TypeError):
            accepted, _, _ = refused  # type: ignore[misc]
        with pytest.raises(TypeError):
            refused == (False, refused.fence, 1)  # noqa: B015
        with pytest.raises(TypeError):
            fence.check_write(r, (True, 1), b"short")
        assert fence.check_write(r, (2, 1), b"short")
        fence.set_validator(None)
        assert fence.check_write(r, (2, 1), b"x" * 300).accepted
    with pytest.raises(fencekit.PolicyRefusedError, match="fd_write"):
        fencekit.Policy(b'(module (import "wasi_snapshot_preview1" "fd_write" (func)))')
    with pytest.raises(ValueError):
        fencekit.Policy(MAX_PAYLOAD_WAT, kind="oracle")


def test_closing_a_node_while_other_threads_wait_in_it_is_safe(tmp_path: pathlib.Path,
                                                             certs: pathlib.Path) -> None:
    node = fencekit.Node(single(tmp_path, certs))
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
    with fencekit.Node(single(tmp_path, certs)) as again:
        wait_for_leadership(again)


def test_a_leader_whose_thread_panics_is_reported_failed_and_the_others_elect_another(
        tmp_path: pathlib.Path, certs: pathlib.Path) -> None:
    nodes = [fencekit.Node(config) for config in group(tmp_path, certs, test_hooks=True)]
    try:
        i, first = wait_for_leader(nodes)
        failed = nodes[i]
        failed._panic_for_testing()
        # The node thread publishes the failure as it dies: until then the node may still
        # answer leadership() (a leadership, or None once its lease ran out).
        deadline = time.monotonic() + 10
        while True:
            assert time.monotonic() < deadline, "the failure was never reported"
            try:
                failed.leadership()
            except fencekit.NodeFailedError as error:
                assert error.status_name == "FK_STATUS_NODE_FAILED"
                assert "panicked" in str(error)
                break
            time.sleep(0.01)
        # Every call now says so.
        with pytest.raises(fencekit.NodeFailedError, match="panicked"):
            failed.leadership()
        with pytest.raises(fencekit.NodeFailedError, match="panicked"):
            failed.propose(b"after the panic", timeout=1.0)
        with pytest.raises(fencekit.NodeFailedError):
            failed.step_down()
        with pytest.raises(fencekit.NodeFailedError):
            failed.transfer(first.token.holder % 3 + 1)
        with pytest.raises(fencekit.NodeFailedError):
            failed._panic_for_testing()
        # The events end with the leadership it lost, then the failure.
        events: List[fencekit.Event] = []
        with pytest.raises(fencekit.NodeFailedError):
            for _ in range(1000):
                event = failed.next_event(1.0)
                assert event is not None, "a timeout instead of the failure"
                events.append(event)
        lost = [e for e in events if e.kind == "lost"]
        assert lost and lost[-1].lost_reason == "failed" and lost[-1].token == first.token, events
        # The status still answers, with the cause.
        status = failed.status()
        assert status["failed"] is True and "panicked" in status["failure"]
        assert status["lease_remaining_ms"] is None
        assert status["role"] == "follower" and status["leader"] is None
        # The other two elect a new leader, in a later generation, and go on.
        j, second = wait_for_leader(nodes, exclude=i)
        assert second.token.generation > first.token.generation
        assert nodes[j].propose(b"after the failure") > 0
        with pytest.raises(fencekit.NodeFailedError):
            failed.stop()
    finally:
        for node in nodes:
            node.close()


def test_a_node_with_certificates_of_another_ca_cannot_join(tmp_path: pathlib.Path,
                                                             certs: pathlib.Path) -> None:
    # Node 3's certificate names the right cluster and node, but another CA signed it: the
    # mutual TLS handshake refuses it both ways.
    stranger = fencekit.make_dev_certs(tmp_path / "stranger", CLUSTER, [3])
    configs = group(tmp_path, certs)
    configs[2]["tls"] = {"dir": stranger[3]}
    nodes = [fencekit.Node(config) for config in configs]
    try:
        bootstrap = nodes[2].status()["commit"]
        i, _ = wait_for_leader(nodes[:2])
        index = nodes[i].propose(b"members only")
        assert index > bootstrap
        time.sleep(0.5)
        # Node 3 never heard of the leader nor of anything it committed.
        outsider = nodes[2].status()
        assert outsider["leader"] is None and outsider["commit"] == bootstrap, outsider
        assert nodes[2].leadership() is None
    finally:
        for node in nodes:
            node.close()
