"""asyncio for the node: awaitable waits that never block the event loop and cancel promptly.

    async with await fencekit.aio.AsyncNode.start(config) as node:
        leadership = await node.wait_for_leadership(timeout=10)
        index = await node.propose(b"job 7 done")
        async for item in node.applied():
            ...

The library's waits (`fk_node_next_event`, `fk_node_next_applied`) block a thread, so each
await runs one in a worker thread of its own, in slices of `WAIT_SLICE` (50 ms): a cancelled
await (asyncio.wait_for, a TaskGroup, Ctrl-C under asyncio.run) raises CancelledError at once,
and its thread ends within one slice. An event or item the thread had taken by then is not
lost: the next wait gets it first. `leadership()` and `status()` answer at once and are plain
methods; `wait_for_leadership` polls `leadership()` on the loop.

A proposal is one call into the library (it cannot be taken back once made): a cancelled
`propose` returns at once, its thread ends when the proposal commits or its `timeout` passes
(or the node closes), and the proposal may still commit: it comes out of `applied()` like
any other.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, TypeVar, Union

from ._native import ffi, lib
from .config import NodeConfig
from .errors import FencekitTimeoutError, StoppedError
from .kinds import EventKind
from .node import WAIT_SLICE, Applied, Event, Leadership, Node, _Cancelled, _Queue, _seconds
from .policy import Policy

__all__ = ["AsyncNode", "WAIT_SLICE"]

T = TypeVar("T")
_POLL = 0.01
"""How often `wait_for_leadership` asks, in seconds."""


def _settle(future: "asyncio.Future[Any]", result: Any, error: Optional[BaseException]) -> None:
    """Completes `future` on its loop unless it was cancelled meanwhile."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _post(loop: asyncio.AbstractEventLoop, future: "asyncio.Future[Any]", result: Any,
          error: Optional[BaseException]) -> None:
    try:
        loop.call_soon_threadsafe(_settle, future, result, error)
    except RuntimeError:
        pass  # the loop closed: nobody awaits the answer any more


async def _in_thread(name: str, call: Callable[[], T]) -> T:
    """`call()` in a daemon thread of its own: never the loop's default executor, whose
    threads asyncio.run joins on exit (a thread in a long library call would hold up
    Ctrl-C), and never a thread that outlives its call."""
    loop = asyncio.get_running_loop()
    future: "asyncio.Future[T]" = loop.create_future()

    def run() -> None:
        try:
            result = call()
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting task
            _post(loop, future, None, error)
        else:
            _post(loop, future, result, None)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future


class AsyncNode:
    """A `Node` for asyncio: the same node, with awaitable waits.

    Make one with `await AsyncNode.start(config)` (the node's start opens its log, which
    takes a while, in a thread) or wrap a running `Node` with `AsyncNode(node)`. It closes
    the node on `await close()` or at the end of `async with`. The synchronous node stays
    usable as `.node`; both read the same queues (each event or item goes to one reader).
    """

    def __init__(self, node: Node) -> None:
        if not isinstance(node, Node):
            raise TypeError(f"AsyncNode wraps a fencekit.Node, not {type(node).__name__}")
        self._node = node

    @classmethod
    async def start(cls, config: Union[NodeConfig, str], *, tie_breaker: Optional[Policy] = None) -> "AsyncNode":
        """Starts a node (as `Node(config, tie_breaker=...)`) without blocking the loop."""
        node = await _in_thread("fencekit-aio-start", lambda: Node(config, tie_breaker=tie_breaker))
        return cls(node)

    @property
    def node(self) -> Node:
        """The synchronous node."""
        return self._node

    def leadership(self) -> Optional[Leadership]:
        """Usable leadership now, or None (as `Node.leadership`; it does not block)."""
        return self._node.leadership()

    def status(self) -> Dict[str, Any]:
        """The node's view (as `Node.status`; it does not block)."""
        return self._node.status()

    async def wait_for_leadership(self, timeout: Optional[float] = None) -> Leadership:
        """Waits until this node holds usable leadership and returns it; FencekitTimeoutError
        (a TimeoutError) after `timeout` seconds (None: no limit). NodeFailedError if the
        node fails meanwhile, ClosedError if it is closed."""
        seconds = None if timeout is None else _seconds(timeout)
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        while True:
            leadership = self._node.leadership()
            if leadership is not None:
                return leadership
            if deadline is not None and loop.time() >= deadline:
                raise FencekitTimeoutError(
                    lib.FK_STATUS_TIMEOUT, f"this node did not lead within {timeout} seconds"
                )
            await asyncio.sleep(_POLL)

    async def next_event(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event, waiting up to `timeout` seconds (None: until one comes); None if
        none came. StoppedError (NodeFailedError) once the node stopped (failed) and every
        event was read. Cancelling it returns at once and loses no event."""
        return await self._take(self._node._events, timeout, "fencekit-aio-event")

    async def next_applied(self, timeout: Optional[float] = None) -> Optional[Applied]:
        """The next committed item, waiting up to `timeout` seconds (None: until one comes);
        None if none came. Cancelling it returns at once and loses no item."""
        return await self._take(self._node._applied, timeout, "fencekit-aio-applied")

    async def events(self) -> AsyncIterator[Event]:
        """Every event, as it comes: `async for event in node.events():`. It ends when the
        node has stopped and every event was read; it raises NodeFailedError once a failed
        node's events were read. It holds on to the library's node, so that it delivers
        every event queued before a `close()` too; ClosedError if the node was closed before
        it started."""
        handle = self._node._handle()
        while True:
            try:
                event = await self._take(self._node._events, None, "fencekit-aio-event", handle)
            except StoppedError:
                return
            if event is not None:
                yield event

    async def applied(self) -> AsyncIterator[Applied]:
        """Every committed item, in index order: `async for item in node.applied():`. It
        ends when the node has stopped (or closed) and every item was read."""
        handle = self._node._handle()
        while True:
            try:
                item = await self._take(self._node._applied, None, "fencekit-aio-applied", handle)
            except StoppedError:
                return
            if item is not None:
                yield item

    async def wait_for_event(self, kind: EventKind, timeout: Optional[float] = None) -> Event:
        """Reads events until one of `kind` comes and returns it (the others read meanwhile
        are dropped: use `events()` to see them all); FencekitTimeoutError after `timeout`
        seconds."""
        wanted = EventKind(kind)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + _seconds(timeout)
        while True:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            event = await self.next_event(left)
            if event is not None and event.kind is wanted:
                return event
            if deadline is not None and loop.time() >= deadline:
                raise FencekitTimeoutError(lib.FK_STATUS_TIMEOUT, f"no {wanted} event within {timeout} seconds")

    async def propose(self, data: bytes, timeout: float = 5.0) -> int:
        """Replicates `data` and waits for it to commit; its log index (as `Node.propose`).
        Cancelling it returns at once, but the proposal may still commit."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data is bytes, not {type(data).__name__}")
        _seconds(timeout)
        raw = bytes(data)
        return await _in_thread("fencekit-aio-propose", lambda: self._node.propose(raw, timeout))

    async def transfer(self, to: int) -> None:
        """Revokes this leader's lease and hands leadership to node `to` (as
        `Node.transfer`)."""
        await _in_thread("fencekit-aio-transfer", lambda: self._node.transfer(to))

    async def step_down(self) -> int:
        """Revokes this leader's lease and hands over to the most up-to-date voter; its id."""
        return await _in_thread("fencekit-aio-step-down", self._node.step_down)

    async def stop(self) -> None:
        """Stops the node (as `Node.stop`)."""
        await _in_thread("fencekit-aio-stop", self._node.stop)

    async def close(self) -> None:
        """Stops and frees the node (as `Node.close`). Waits in other tasks end with
        StoppedError once what was queued is read."""
        await _in_thread("fencekit-aio-close", self._node.close)

    async def __aenter__(self) -> "AsyncNode":
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Shielded: even when this task is cancelled again (a second Ctrl-C), the thread goes
        # on to stop the node, which releases every wait still running in a thread.
        await asyncio.shield(self.close())

    def __repr__(self) -> str:
        return f"<fencekit.aio.AsyncNode {self._node!r}>"

    async def _take(self, queue: "_Queue[T]", timeout: Optional[float], name: str,
                    handle: Optional["ffi.CData"] = None) -> Optional[T]:
        seconds = None if timeout is None else _seconds(timeout)
        if handle is None:
            handle = self._node._handle()
        if queue.returned:
            try:
                # Taken earlier for a wait that was given up: older than anything the
                # library still holds, so it comes first, without a thread.
                return queue.returned.popleft()
            except IndexError:
                pass  # another reader took it meanwhile
        loop = asyncio.get_running_loop()
        future: "asyncio.Future[Optional[T]]" = loop.create_future()
        cancelled = threading.Event()
        # The item handed over, if any: decided under `decision`, so that an item is either
        # handed to this task or put back for the next reader, never lost between the two.
        decision = threading.Lock()
        handed: List[T] = []

        def handoff(item: T) -> bool:
            with decision:
                if cancelled.is_set():
                    return False
                handed.append(item)
            _post(loop, future, item, None)
            return True

        def run() -> None:
            try:
                item = queue.take(handle, seconds, cancelled, handoff)
            except _Cancelled:
                return
            except BaseException as error:  # noqa: BLE001 - handed to the awaiting task
                _post(loop, future, None, error)
                return
            if item is None:
                _post(loop, future, None, None)

        threading.Thread(target=run, name=name, daemon=True).start()
        try:
            return await future
        except asyncio.CancelledError:
            with decision:
                cancelled.set()
                taken = list(handed)
            # Handed over, but this task was cancelled before it could return it: the next
            # reader gets it first.
            for item in taken:
                queue.returned.appendleft(item)
            raise

