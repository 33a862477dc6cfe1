"""The kernel's log records reach Python's logging, on the "fencekit" logger tree."""

import logging
import multiprocessing
import pathlib
import threading
import time
from typing import Iterator, List

import pytest

import fencekit
from fencekit.logs import logger_name
from ports import free_port

FORK = multiprocessing.get_context("fork")


@pytest.fixture(autouse=True)
def restore_level() -> Iterator[None]:
    """Each test starts at the default (WARNING) and leaves it so."""
    logger = logging.getLogger("fencekit")
    logger.setLevel(logging.NOTSET)
    fencekit.set_log_level(None)
    yield
    logger.setLevel(logging.NOTSET)
    fencekit.set_log_level(None)


class Records(logging.Handler):
    """Keeps every record, and says when one matching `wanted` came."""

    def __init__(self, wanted: str = "") -> None:
        super().__init__(logging.NOTSET)
        self.records: List[logging.LogRecord] = []
        self.wanted = wanted
        self.came = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if self.wanted and self.wanted in record.getMessage():
            self.came.set()


def attached(handler: logging.Handler) -> "logging.Logger":
    logger = logging.getLogger("fencekit")
    logger.addHandler(handler)
    return logger


def config(tmp_path: pathlib.Path, **extra: object) -> fencekit.NodeConfig:
    base: fencekit.NodeConfig = {"id": 1, "cluster": 4, "data_dir": str(tmp_path / "node"),
                                 "listen": f"127.0.0.1:{free_port()}", "insecure": True}
    return {**base, **extra}  # type: ignore[typeddict-item]


def test_logger_names_follow_the_kernel_modules() -> None:
    assert logger_name("fencekit::transport::tcp") == "fencekit.transport.tcp"
    assert logger_name("fencekit") == "fencekit"
    assert logger_name("fencekit_plugins::host") == "fencekit.plugins.host"
    assert logger_name("rustls::conn") == "fencekit.rustls.conn"


def test_an_insecure_node_warns_through_logging(tmp_path: pathlib.Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """The kernel's warning (an insecure group) arrives with its level, on the logger of its
    module, under "fencekit"."""
    assert fencekit.get_log_level() == logging.WARNING, "the default"
    with caplog.at_level(logging.WARNING, logger="fencekit"):
        with fencekit.Node(config(tmp_path)):
            pass
    insecure = [r for r in caplog.records if "INSECURE" in r.getMessage()]
    assert insecure, [r.getMessage() for r in caplog.records]
    record = insecure[0]
    assert record.levelno == logging.WARNING and record.levelname == "WARNING"
    assert record.name == "fencekit.transport.tcp"
    assert record.fencekit_target == "fencekit::transport::tcp"  # type: ignore[attr-defined]


def test_a_typo_in_a_peer_address_is_a_warning_from_a_kernel_thread(tmp_path: pathlib.Path) -> None:
    """127.0.0.l (a letter l) does not resolve: the node starts, and says so."""
    handler = Records("127.0.0.l")
    logger = attached(handler)
    try:
        peers = [{"id": 2, "addr": "127.0.0.l:7002"}, {"id": 3, "addr": f"127.0.0.1:{free_port()}"}]
        with fencekit.Node(config(tmp_path, peers=peers)):
            assert handler.came.wait(10), [r.getMessage() for r in handler.records]
    finally:
        logger.removeHandler(handler)
    record = next(r for r in handler.records if "127.0.0.l" in r.getMessage())
    assert record.levelno == logging.WARNING and record.name == "fencekit.transport.tcp"
    assert record.thread != threading.get_ident(), "it came from the kernel's sender thread"


def test_the_level_decides_which_records_the_kernel_sends(tmp_path: pathlib.Path) -> None:
    handler = Records()
    logger = attached(handler)
    try:
        fencekit.set_log_level("ERROR")
        assert fencekit.get_log_level() == logging.ERROR
        with fencekit.Node(config(tmp_path / "a")):
            pass
        assert not [r for r in handler.records if r.levelno < logging.ERROR]
        # Lowered: debug records come too (the retries of an unreachable peer are debug).
        fencekit.set_log_level(logging.DEBUG)
        assert logger.level == logging.DEBUG and fencekit.get_log_level() == logging.DEBUG
        peers = [{"id": 2, "addr": f"127.0.0.1:{free_port()}"}]
        with fencekit.Node(config(tmp_path / "b", peers=peers)):
            deadline = time.monotonic() + 10
            while not any(r.levelno == logging.DEBUG for r in handler.records):
                assert time.monotonic() < deadline, [r.getMessage() for r in handler.records]
                time.sleep(0.05)
        # Off above ERROR: the kernel has nothing more severe.
        fencekit.set_log_level(logging.CRITICAL)
        assert fencekit.get_log_level() > logging.CRITICAL
        handler.records.clear()
        with fencekit.Node(config(tmp_path / "c")):
            pass
        assert handler.records == []
    finally:
        logger.removeHandler(handler)
    with pytest.raises(TypeError):
        fencekit.set_log_level(True)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fencekit.set_log_level("LOUD")


def test_a_handler_that_calls_set_log_level_is_refused_not_deadlocked(tmp_path: pathlib.Path) -> None:
    errors: List[BaseException] = []

    class Resets(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                fencekit.set_log_level(logging.WARNING)
            except BaseException as e:  # noqa: BLE001 - kept for the assertion
                errors.append(e)

    handler = Resets()
    logger = attached(handler)
    try:
        with fencekit.Node(config(tmp_path)):
            pass
    finally:
        logger.removeHandler(handler)
    assert errors and all(isinstance(e, fencekit.InvalidArgumentError) for e in errors), errors


def test_closing_a_node_while_a_kernel_thread_logs_into_a_slow_handler_does_not_deadlock(
        tmp_path: pathlib.Path) -> None:
    """The sender thread of an unreachable peer is inside the callback (holding the GIL by
    turns) when the node is closed, which waits for that thread: the close must not hold the
    GIL while it waits."""
    logging_started = threading.Event()

    class Slow(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "127.0.0.l" in record.getMessage():
                logging_started.set()
                time.sleep(0.3)

    handler = Slow()
    logger = attached(handler)
    try:
        node = fencekit.Node(config(tmp_path, peers=[{"id": 2, "addr": "127.0.0.l:7002"}]))
        assert logging_started.wait(10)
        closer = threading.Thread(target=node.close)
        closer.start()
        closer.join(10)
        assert not closer.is_alive(), "close() deadlocked with the logging kernel thread"
    finally:
        logger.removeHandler(handler)


def _child_logs(directory: str, port: int, outcomes: "multiprocessing.Queue") -> None:
    handler = Records("INSECURE")
    logging.getLogger("fencekit").addHandler(handler)
    with fencekit.Node({"id": 1, "cluster": 4, "data_dir": directory,
                        "listen": f"127.0.0.1:{port}", "insecure": True}):
        pass
    outcomes.put(handler.came.is_set())


def test_a_forked_child_logs_and_the_parent_goes_on(tmp_path: pathlib.Path) -> None:
    """The fork hooks lift the callback around the fork and restore it on both sides."""
    outcomes = FORK.Queue()
    child = FORK.Process(target=_child_logs, args=(str(tmp_path / "child"), free_port(), outcomes))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert outcomes.get(timeout=5) is True, "the child's kernel records reached its logging"
    handler = Records("INSECURE")
    logger = attached(handler)
    try:
        with fencekit.Node(config(tmp_path / "parent")):
            pass
    finally:
        logger.removeHandler(handler)
    assert handler.came.is_set(), "the parent's logging was restored after the fork"
