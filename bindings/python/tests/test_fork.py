"""A fence or node used after fork refuses, and the documented way (one per worker) works.

The trap (gunicorn --preload, Celery prefork, multiprocessing's "fork" start method): a fence
opened before the fork is copied into the child. Parent and child would then each advance
their own copy: the child's advance to generation 3 acknowledged, then the parent's to 2
over it, and after reopening the mark is 2 (a stale token accepted). fencekit refuses every
call of an inherited fence or node in the child, the hot path included.
"""

import multiprocessing
import os
import pathlib
import time

import pytest

import fencekit

FORK = multiprocessing.get_context("fork")


def _use_inherited_fence(fence: fencekit.Fence, resource: int, outcomes: "multiprocessing.Queue") -> None:
    for token in [(3, 1), (2, 1), (1, 1)]:
        try:
            verdict = fence.check(resource, token)
            outcomes.put(f"{token}: {verdict.kind}")
        except fencekit.ForkedError as e:
            outcomes.put(f"{token}: ForkedError {e}")
        except Exception as e:  # noqa: BLE001 - any other outcome is reported, not hidden
            outcomes.put(f"{token}: {type(e).__name__} {e}")


def test_an_inherited_fence_refuses_every_check_in_the_child(tmp_path: pathlib.Path) -> None:
    with fencekit.Fence(tmp_path / "shared") as fence:
        resource = fence.register("jobs")
        assert fence.check(resource, (2, 1))
        outcomes = FORK.Queue()
        child = FORK.Process(target=_use_inherited_fence, args=(fence, resource, outcomes))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        said = [outcomes.get(timeout=5) for _ in range(3)]
        # The newer token (an advance), the current one (the hot path) and an older one: each
        # refused, none acknowledged.
        assert all("ForkedError" in line for line in said), said
        assert "open a new fence in each process" in said[0], said
        # The parent goes on, and nothing the child tried landed.
        assert fence.check(resource, (2, 1)).kind == "accepted"
        assert fence.mark(resource) == fencekit.Token(2, 1)
        assert not fence.check(resource, (1, 1))
    with fencekit.Fence(tmp_path / "shared") as fence:
        assert fence.mark(fence.lookup("jobs")) == fencekit.Token(2, 1)


def _own_fence_per_worker(directory: str, outcomes: "multiprocessing.Queue") -> None:
    # The documented way: each worker opens its own fence after the fork (in gunicorn's
    # post_fork hook, Celery's worker_process_init), on a directory of its own.
    with fencekit.Fence(directory) as fence:
        resource = fence.register("jobs")
        outcomes.put((bool(fence.check(resource, (3, 1))), bool(fence.check(resource, (2, 1)))))


def test_a_fence_opened_in_each_worker_after_the_fork_works(tmp_path: pathlib.Path) -> None:
    outcomes = FORK.Queue()
    workers = [FORK.Process(target=_own_fence_per_worker, args=(str(tmp_path / f"worker-{i}"), outcomes))
               for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    assert [outcomes.get(timeout=5) for _ in workers] == [(True, False), (True, False)]


def test_one_directory_is_one_process_fence(tmp_path: pathlib.Path) -> None:
    # Two processes cannot share a fence's directory: the second open is refused while the
    # first holds it, so no two processes ever hold two copies of one set of marks.
    with fencekit.Fence(tmp_path / "one") as fence:
        fence.register("jobs")
        outcomes = FORK.Queue()
        child = FORK.Process(target=_own_fence_per_worker, args=(str(tmp_path / "one"), outcomes))
        child.start()
        child.join(30)
        assert child.exitcode != 0, "a second process opened a directory in use"


def _use_inherited_node(node: fencekit.Node, outcomes: "multiprocessing.Queue") -> None:
    outcomes.put(node.leadership() is None)
    try:
        # The queue holds the parent's news, its "elected" included: not the child's to read.
        node.next_event(timeout=0.1)
        outcomes.put("an event")
    except fencekit.ForkedError:
        outcomes.put("ForkedError")
    try:
        node.propose(b"from the child")
        outcomes.put("proposed")
    except fencekit.ForkedError:
        outcomes.put("ForkedError")
    except Exception as e:  # noqa: BLE001 - any other outcome is reported, not hidden
        outcomes.put(f"{type(e).__name__} {e}")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_an_inherited_node_reports_no_leadership_and_refuses_in_the_child(tmp_path: pathlib.Path) -> None:
    config = {"id": 1, "cluster": 9, "data_dir": str(tmp_path / "node"), "listen": "127.0.0.1:0",
              "insecure": True}
    with fencekit.Node(config) as node:
        deadline = time.monotonic() + 10
        while node.leadership() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert node.leadership() is not None
        outcomes = FORK.Queue()
        child = FORK.Process(target=_use_inherited_node, args=(node, outcomes))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        assert outcomes.get(timeout=5) is True, "the child saw the parent's leadership"
        assert outcomes.get(timeout=5) == "ForkedError", "next_event in the child"
        assert outcomes.get(timeout=5) == "ForkedError", "propose in the child"
        # The parent still leads.
        assert node.leadership() is not None
