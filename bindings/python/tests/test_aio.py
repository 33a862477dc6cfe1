"""fencekit.aio: awaitable waits that never block the loop, cancel at once, lose nothing."""

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, Coroutine, List, Optional, TypeVar

import pytest

import fencekit
import fencekit.aio
from fencekit import EventKind
from fencekit.aio import AsyncNode
from fencekit.node import _Cancelled, _Queue
from ports import free_port

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def config(tmp_path: pathlib.Path) -> fencekit.NodeConfig:
    return {"id": 1, "cluster": 6, "data_dir": str(tmp_path / "node"),
            "listen": f"127.0.0.1:{free_port()}", "insecure": True}


def aio_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fencekit-aio")]


async def drain_events(node: AsyncNode) -> List[fencekit.Event]:
    events = []
    while (event := await node.next_event(0.3)) is not None:
        events.append(event)
    return events


def test_a_node_leads_proposes_and_iterates_asynchronously(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        async with await AsyncNode.start(config(tmp_path)) as node:
            leadership = await node.wait_for_leadership(timeout=10)
            assert leadership.token.holder == 1 and node.leadership() is not None
            elected = await node.wait_for_event(EventKind.ELECTED, timeout=5)
            assert elected.token == leadership.token
            indexes = [await node.propose(f"job {i}".encode()) for i in range(5)]
            assert indexes == sorted(indexes)
            seen: List[fencekit.Applied] = []
            async for item in node.applied():
                seen.append(item)
                if item.index == indexes[-1]:
                    break
            assert [i.data for i in seen if i.index in indexes] == [f"job {i}".encode() for i in range(5)]
            assert node.status()["role"] == "leader"
            await node.stop()
            # Once stopped, the iteration ends after the events that were queued.
            events = [event async for event in node.events()]
            assert events and events[-1].kind is EventKind.LOST
        with pytest.raises(fencekit.ClosedError):
            node.leadership()
        with pytest.raises(fencekit.FencekitTimeoutError):
            async with await AsyncNode.start(config(tmp_path / "other")) as other:
                await other.next_event(0)
                await other.wait_for_event(EventKind.LOST, timeout=0.2)  # a new leader loses nothing

    run(main())
    with pytest.raises(TypeError):
        AsyncNode("not a node")  # type: ignore[arg-type]


def test_cancelling_a_wait_returns_at_once_and_its_thread_ends(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        async with await AsyncNode.start(config(tmp_path)) as node:
            await node.wait_for_leadership(10)
            await drain_events(node)
            for wait in (node.next_event(None), node.next_applied(60.0)):
                # drain the applied items too, so that the wait really waits
                while await node.next_applied(0.05) is not None:
                    pass
                task = asyncio.ensure_future(wait)
                await asyncio.sleep(0.2)
                assert not task.done() and aio_threads(), "it waits, in a thread"
                started = time.monotonic()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert time.monotonic() - started < 0.2, "the cancelled await returned late"
                # The thread notices within one slice (50 ms; the bound leaves room for a busy
                # machine), not when the timeout would end.
                deadline = time.monotonic() + 0.5
                while aio_threads():
                    assert time.monotonic() < deadline, f"still waiting: {aio_threads()}"
                    await asyncio.sleep(0.01)
            # wait_for's timeout is a cancellation too.
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(node.next_event(None), 0.1)
            assert time.monotonic() - started < 0.3
            # A cancelled proposal returns at once (it may still commit).
            task = asyncio.ensure_future(node.propose(b"cancelled"))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(main())


def test_the_loop_keeps_running_while_a_wait_blocks(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        async with await AsyncNode.start(config(tmp_path)) as node:
            await node.wait_for_leadership(10)
            await drain_events(node)
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticking = asyncio.ensure_future(ticker())
            started = time.monotonic()
            assert await node.next_event(0.5) is None
            waited = time.monotonic() - started
            ticking.cancel()
            assert waited >= 0.45
            # A blocked loop would tick once or not at all; a free one about 50 times.
            assert ticks >= 20, ticks

    run(main())


def test_cancelled_waits_lose_no_item_and_keep_the_order(tmp_path: pathlib.Path) -> None:
    """Items taken by a wait that was cancelled go to the next one: whenever the
    cancellations land, every committed index comes out once, in order."""
    async def main() -> None:
        async with await AsyncNode.start(config(tmp_path)) as node:
            await node.wait_for_leadership(10)
            proposed = [node.node.propose(b"%d" % i) for i in range(60)]
            last = proposed[-1]
            got: List[int] = []
            for i in range(400):
                task = asyncio.ensure_future(node.next_applied(None))
                # Cancel at once, a little later, or never: some cancellations land before
                # the thread takes an item, some after.
                await asyncio.sleep((i % 5) * 0.0005)
                if i % 3:
                    task.cancel()
                try:
                    item = await task
                except asyncio.CancelledError:
                    continue
                assert item is not None
                got.append(item.index)
                if item.index == last:
                    break
            while got[-1] != last:
                item = await node.next_applied(2.0)
                assert item is not None
                got.append(item.index)
            # Each index once, in order (the log's own entries, such as the leader's empty
            # entry of its term, are not applied items), and every proposal among them.
            assert got == sorted(set(got)), got
            assert [i for i in got if i in proposed] == proposed, got

    run(main())


def test_the_queue_puts_back_an_item_its_waiter_gave_up() -> None:
    """The mechanism under the previous test, without a node: an item taken after the waiter
    was cancelled goes back to the front."""
    items = iter(range(1, 100))

    def read(node: object, timeout_ms: int) -> Optional[int]:
        return next(items)

    queue: _Queue[int] = _Queue(read)
    cancelled = threading.Event()
    assert queue.take(None, 1.0, cancelled, lambda item: True) == 1
    with pytest.raises(_Cancelled):
        queue.take(None, 1.0, cancelled, lambda item: False)  # gave up as the item came
    assert list(queue.returned) == [2]
    assert queue.take(None, 0) == 2 and queue.take(None, 0) == 3
    cancelled.set()
    with pytest.raises(_Cancelled):
        queue.take(None, 1.0, cancelled, lambda item: True)
    assert not queue.returned


def test_closing_ends_the_iterations(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        node = await AsyncNode.start(config(tmp_path))
        await node.wait_for_leadership(10)

        async def read_all() -> List[fencekit.Event]:
            return [event async for event in node.events()]

        reader = asyncio.ensure_future(read_all())
        await asyncio.sleep(0.2)
        await node.close()
        events = await asyncio.wait_for(reader, 2)
        assert events[-1].kind is EventKind.LOST
        assert events[-1].lost_reason is fencekit.LostReason.STOPPED

    run(main())


CTRL_C = """
import asyncio, signal, sys, time
import fencekit, fencekit.aio
# A test run started in the background inherits SIGINT ignored, and Python then leaves it so:
# take Ctrl-C as a terminal's program does.
signal.signal(signal.SIGINT, signal.default_int_handler)
config = {{"id": 1, "cluster": 6, "data_dir": sys.argv[1], "listen": "127.0.0.1:" + sys.argv[2],
          "insecure": True}}
{body}
"""

ASYNC_BODY = """
async def main():
    async with await fencekit.aio.AsyncNode.start(config) as node:
        await node.wait_for_leadership(10)
        while await node.next_event(0.2) is not None:
            pass
        print("waiting", flush=True)
        await node.next_event(None)
try:
    asyncio.run(main())
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""

SYNC_BODY = """
with fencekit.Node(config) as node:
    while node.leadership() is None:
        time.sleep(0.01)
    while node.next_event(0.2) is not None:
        pass
    print("waiting", flush=True)
    try:
        node.next_event(60)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


@pytest.mark.parametrize("body", [ASYNC_BODY, SYNC_BODY], ids=["asyncio", "blocking"])
def test_ctrl_c_interrupts_a_long_wait_at_once(tmp_path: pathlib.Path, body: str) -> None:
    script = tmp_path / "wait.py"
    script.write_text(CTRL_C.format(body=textwrap.dedent(body)))
    child = subprocess.Popen([sys.executable, str(script), str(tmp_path / "node"), str(free_port())],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "waiting"
        time.sleep(0.2)
        started = time.monotonic()
        os.kill(child.pid, signal.SIGINT)
        out, _ = child.communicate(timeout=10)
        # The waits' timeouts are 60 s and none; stopping the node takes a few ms.
        assert time.monotonic() - started < 2.0, "Ctrl-C waited for the timeout"
        assert "interrupted" in out
    finally:
        child.kill()
        child.wait()
