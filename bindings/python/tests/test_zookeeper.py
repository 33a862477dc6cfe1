"""fencekit.zookeeper against a real ZooKeeper server: the token of kazoo's Election and Lock
holders, never a successor's, and the fence refusing a deposed holder's token.

Runs when FENCEKIT_ZK_HOSTS names a server (tests/zookeeper.sh starts one and sets it);
skipped otherwise. With FENCEKIT_ZK_HOSTS set, a missing kazoo fails the tests instead.
"""

import os
import pathlib
import socket
import threading
import uuid
from typing import Any, Callable, Iterator, List, Optional

import pytest

import fencekit
from fencekit import Token

HOSTS = os.environ.get("FENCEKIT_ZK_HOSTS")
pytestmark = pytest.mark.skipif(not HOSTS, reason="FENCEKIT_ZK_HOSTS is not set (tests/zookeeper.sh sets it)")

if HOSTS:
    from kazoo.client import KazooClient, KazooState
    from kazoo.exceptions import NoNodeError

    from fencekit.zookeeper import election_token, ensemble_source, holder_token, lock_token, znode_token

SESSION_TIMEOUT = 2.0
WAIT = 20.0


@pytest.fixture
def connect() -> Iterator[Callable[..., Any]]:
    clients: List[Any] = []

    def make(**kwargs: Any) -> Any:
        client = KazooClient(hosts=HOSTS, timeout=SESSION_TIMEOUT, **kwargs)
        client.start(timeout=WAIT)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.stop()
        client.close()


@pytest.fixture
def root() -> str:
    return f"/fencekit-test/{uuid.uuid4().hex}"


class Contender:
    """An Election contender in a thread: `elected` is set (and `token` read) once it leads;
    it leads until `resign` is set."""

    def __init__(self, client: Any, path: str, name: str) -> None:
        self.election = client.Election(path, name)
        self.elected = threading.Event()
        self.resign = threading.Event()
        self.token: Optional[Token] = None
        self.thread = threading.Thread(target=self.election.run, args=(self.lead,), daemon=True)
        self.thread.start()

    def lead(self) -> None:
        self.token = election_token(self.election)
        self.elected.set()
        self.resign.wait(WAIT)

    def finish(self) -> None:
        """Resigns (or stops contending) and waits until `run` returned."""
        self.resign.set()
        self.election.cancel()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()


def test_the_leaders_token_is_its_znodes_czxid_and_session(connect: Any, root: str) -> None:
    a, b = connect(), connect()
    first = Contender(a, root, "a")
    assert first.elected.wait(WAIT)
    second = Contender(b, root, "b")
    # The second contender's znode exists, but it does not lead: no token.
    wait_for(lambda: len(b.get_children(root)) == 2)
    assert election_token(second.election) is None
    assert first.token is not None
    # The token is the lowest znode's czxid and this client's session id (its 64 bits).
    children = sorted(a.get_children(root), key=lambda c: c[-10:])
    _, stat = a.get(f"{root}/{children[0]}")
    assert first.token == Token(stat.czxid, stat.ephemeralOwner & ((1 << 64) - 1))
    assert first.token == znode_token(stat)
    assert stat.ephemeralOwner == a.client_id[0]
    # Read again while leading: the same token.
    assert election_token(first.election) == first.token

    first.finish()
    assert second.elected.wait(WAIT)
    assert second.token is not None
    assert second.token.generation > first.token.generation
    assert second.token.holder != first.token.holder
    # Once the first has returned, it holds nothing (its lock was released).
    assert election_token(first.election) is None
    second.finish()


def test_a_deposed_leader_never_gets_its_successors_token(connect: Any, root: str, tmp_path: pathlib.Path) -> None:
    # The leader's session expires under it (as when it is paused past its session timeout);
    # another contender wins. The deposed leader, still inside its leadership function, asks
    # for its token again: None, not the successor's. The token it kept is refused.
    a, b = connect(), connect()
    lost = threading.Event()
    a.add_listener(lambda state: lost.set() if state == KazooState.LOST else None)
    first = Contender(a, root, "a")
    assert first.elected.wait(WAIT)
    second = Contender(b, root, "b")
    wait_for(lambda: len(b.get_children(root)) == 2)
    expire_session(a)
    assert second.elected.wait(WAIT)
    assert lost.wait(WAIT)
    wait_for(lambda: a.state == KazooState.CONNECTED)
    # a has a new session now; its old znode is gone, b's is the lowest.
    assert election_token(first.election) is None
    assert holder_token(a, root) is None
    assert holder_token(b, root) == second.token

    source = ensemble_source("test-zk")
    assert source == "zookeeper:test-zk"
    assert first.token is not None and second.token is not None
    with fencekit.Fence(tmp_path) as fence:
        jobs = fence.register("jobs")
        assert fence.check_from(jobs, source, first.token)
        assert fence.check_from(jobs, source, second.token).kind == "advanced"
        zombie = fence.check_from(jobs, source, first.token)
        assert zombie.kind == "stale" and not zombie
        # The right numbers from the wrong source are refused too.
        assert fence.check(jobs, second.token).kind == "foreign_source"
    first.finish()
    second.finish()


def test_two_contenders_of_one_session_are_told_apart(connect: Any, root: str) -> None:
    # Both znodes have this session as their ephemeralOwner: only the lowest one's contender
    # leads, and only it gets a token.
    client = connect()
    first = Contender(client, root, "a")
    assert first.elected.wait(WAIT)
    second = Contender(client, root, "b")
    wait_for(lambda: len(client.get_children(root)) == 2)
    assert election_token(second.election) is None
    assert election_token(first.election) == first.token
    first.finish()
    assert second.elected.wait(WAIT)
    assert second.token is not None and first.token is not None
    assert second.token.generation > first.token.generation
    assert second.token.holder == first.token.holder
    second.finish()


def test_lock_tokens(connect: Any, root: str) -> None:
    a, b = connect(), connect()
    lock = a.Lock(root, "a")
    assert lock_token(lock) is None  # not acquired
    assert lock.acquire(timeout=WAIT)
    held = lock_token(lock)
    assert held is not None and held.holder == a.client_id[0] & ((1 << 64) - 1)
    other = b.Lock(root, "b")
    assert not other.acquire(blocking=False)
    assert lock_token(other) is None
    lock.release()
    assert lock_token(lock) is None
    assert other.acquire(timeout=WAIT)
    succ = lock_token(other)
    assert succ is not None and succ.generation > held.generation
    other.release()
    # A write lock is exclusive; read locks and semaphores have many holders: refused.
    write = a.WriteLock(root + "-rw", "w")
    assert write.acquire(timeout=WAIT)
    assert lock_token(write) is not None
    write.release()
    with pytest.raises(TypeError):
        lock_token(a.ReadLock(root + "-rw", "r"))
    with pytest.raises(TypeError):
        lock_token(a.Semaphore(root + "-sem", "s"))
    with pytest.raises(TypeError):
        election_token(object())


def test_no_session_no_token(connect: Any, root: str) -> None:
    client = connect()
    lock = client.Lock(root, "a")
    assert lock.acquire(timeout=WAIT)
    assert lock_token(lock) is not None
    assert holder_token(client, root + "/missing") is None
    # A persistent znode named like a contender is no holder's: no session owns it.
    client.create(root + "-p/x__lock__0000000000", makepath=True)
    assert holder_token(client, root + "-p") is None
    _, stat = client.get(root + "-p/x__lock__0000000000")
    with pytest.raises(fencekit.InvalidTokenError):
        znode_token(stat)
    # Stopped (ZooKeeper unreachable, or the host shutting down): no session, no token. The
    # lock object still says "acquired", which is why the znode is what decides.
    client.stop()
    assert lock.is_acquired
    assert lock_token(lock) is None


class Proxy:
    """A TCP relay to the ZooKeeper server, which `cut()` breaks: ZooKeeper unreachable for
    the clients connected through it, without stopping the server the other tests use."""

    def __init__(self) -> None:
        host, port = str(HOSTS).split(",")[0].rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.sockets: List[socket.socket] = [self.listener]
        self.down = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while not self.down:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.down = True
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def test_zookeeper_unreachable_no_token(connect: Any, root: str) -> None:
    # The holder loses ZooKeeper (its server down, or a partition): it cannot tell whether it
    # still holds the lock, so it gets no token, never the one it had.
    proxy = Proxy()
    client = KazooClient(hosts=proxy.address, timeout=SESSION_TIMEOUT)
    client.start(timeout=WAIT)
    try:
        lock = client.Lock(root, "a")
        assert lock.acquire(timeout=WAIT)
        assert lock_token(lock) is not None
        proxy.cut()
        wait_for(lambda: client.state != KazooState.CONNECTED)
        assert lock.is_acquired
        assert lock_token(lock) is None
    finally:
        client.stop()
        client.close()


def wait_for(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = threading.Event()
    timer = threading.Timer(timeout, deadline.set)
    timer.start()
    try:
        while not condition():
            if deadline.wait(0.05):
                raise AssertionError("timed out waiting")
    finally:
        timer.cancel()


def expire_session(client: Any) -> None:
    """Ends `client`'s session on the server, as an expiry does: a second client joins the
    session with its id and password and closes it (ZooKeeper's documented way to test
    expiry). `client` finds it expired at its next contact."""
    session_id, password = client.client_id
    twin = KazooClient(hosts=HOSTS, timeout=SESSION_TIMEOUT, client_id=(session_id, password))
    twin.start(timeout=WAIT)
    twin.stop()
    twin.close()
    try:
        client.get("/")  # the next contact learns of the expiry
    except Exception:
        pass


def test_the_module_needs_kazoo_only_when_imported() -> None:
    # `import fencekit` must not import kazoo (it is an optional extra).
    import subprocess
    import sys

    code = "import sys, fencekit; assert 'kazoo' not in sys.modules, 'kazoo imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(NoNodeError):
        raise NoNodeError()
