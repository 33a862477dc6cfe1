"""The kernel's log records, into Python's `logging`.

The library logs a refused or unreachable peer, an insecure group, a failed node, ... Each
record goes to the logger "fencekit.<module>" (the kernel's `fencekit::transport::tcp`
becomes "fencekit.transport.tcp"), so `logging.getLogger("fencekit")` and its handlers see
them all. The record's `fencekit_target` attribute is the kernel's own target.

The library formats only records at or above a maximum level, set at import from the
"fencekit" logger's effective level (WARNING unless the application configured otherwise
before importing fencekit). `set_log_level` changes it later: give a level, or None to read
the logger's effective level again after configuring logging.

The records are handed over on the kernel's own threads (a node's thread among them), which
take the GIL for it: a handler that blocks (a network log shipper) delays the node. Put such
a handler behind a `logging.handlers.QueueHandler`. A handler must not call fencekit: the
record may come from the thread that call would wait for (a nested record is dropped).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Dict, Optional, Union

from ._native import ffi, lib
from .errors import check

TRACE = 5
"""The level of the kernel's trace records (below logging.DEBUG, which is 10)."""

if logging.getLevelName(TRACE) == f"Level {TRACE}":
    logging.addLevelName(TRACE, "TRACE")

_ROOT = "fencekit"
_FROM_KERNEL = {
    lib.FK_LOG_ERROR: logging.ERROR,
    lib.FK_LOG_WARN: logging.WARNING,
    lib.FK_LOG_INFO: logging.INFO,
    lib.FK_LOG_DEBUG: logging.DEBUG,
    lib.FK_LOG_TRACE: TRACE,
}
_loggers: Dict[str, logging.Logger] = {}
# Serialises the changes of the library's setting with the fork hooks that lift it.
_setting = threading.Lock()
_max_level = lib.FK_LOG_OFF


def logger_name(target: str) -> str:
    """The logger of a kernel target: "fencekit::transport::tcp" → "fencekit.transport.tcp",
    "fencekit_plugins::host" → "fencekit.plugins.host", anything else under "fencekit."."""
    parts = [part for part in target.split("::") if part]
    if parts and parts[0] == _ROOT:
        parts = parts[1:]
    elif parts and parts[0].startswith(_ROOT + "_"):
        parts[0] = parts[0][len(_ROOT) + 1 :]
    return ".".join([_ROOT, *parts])


def _kernel_level(level: int) -> int:
    """The library's maximum level that passes every record a logger of `level` keeps."""
    if level <= TRACE:
        return int(lib.FK_LOG_TRACE)
    if level <= logging.DEBUG:
        return int(lib.FK_LOG_DEBUG)
    if level <= logging.INFO:
        return int(lib.FK_LOG_INFO)
    if level <= logging.WARNING:
        return int(lib.FK_LOG_WARN)
    if level <= logging.ERROR:
        return int(lib.FK_LOG_ERROR)
    # The kernel has nothing above ERROR: a logger at CRITICAL keeps none of its records.
    return int(lib.FK_LOG_OFF)


@ffi.def_extern()
def fkpy_log(context: "ffi.CData", level: int, target: "ffi.CData", message: "ffi.CData") -> None:
    """The library's log callback (a kernel thread, holding the GIL while it runs)."""
    kernel_target = ffi.string(target).decode("utf-8", "replace")
    logger = _loggers.get(kernel_target)
    if logger is None:
        logger = _loggers[kernel_target] = logging.getLogger(logger_name(kernel_target))
    python_level = _FROM_KERNEL.get(level, logging.ERROR)
    if not logger.isEnabledFor(python_level):
        return
    text = ffi.string(message).decode("utf-8", "replace")
    # makeRecord, not logger.log: no Python caller to find on a kernel thread; the "file"
    # of the record is the kernel's module.
    record = logger.makeRecord(
        logger.name, python_level, kernel_target, 0, text, (), None, extra={"fencekit_target": kernel_target}
    )
    logger.handle(record)


def _install(max_level: int) -> None:
    global _max_level
    callback = lib.fkpy_log if max_level != lib.FK_LOG_OFF else ffi.NULL
    check(lib.fk_set_log_callback(callback, ffi.NULL, max_level))
    _max_level = max_level


def set_log_level(level: Union[int, str, None] = None) -> None:
    """Sets the level of the kernel's records that reach `logging.getLogger("fencekit")`.

    With a level (logging.DEBUG, "INFO", `fencekit.TRACE`, ...), it sets the "fencekit"
    logger's level and the library's maximum to match. With None, it reads the logger's
    effective level again: call it after configuring logging (`logging.basicConfig(...)`) if
    that happened after `import fencekit`. The library formats nothing below the maximum,
    so lowering a logger's level without calling this adds no kernel records.

    InvalidArgumentError if called from inside a logging handler that a kernel record is
    running (it would wait for that record).
    """
    logger = logging.getLogger(_ROOT)
    if level is not None:
        if isinstance(level, bool) or not isinstance(level, (int, str)):
            raise TypeError(f"a log level is an int, a level name or None, not {type(level).__name__}")
        logger.setLevel(level)  # ValueError for a name logging does not know
    with _setting:
        _install(_kernel_level(logger.getEffectiveLevel()))


def get_log_level() -> int:
    """The library's maximum level as a `logging` level (logging.WARNING, ...), or
    logging.CRITICAL + 1 when logging is off."""
    if _max_level == lib.FK_LOG_OFF:
        return logging.CRITICAL + 1
    return _FROM_KERNEL[_max_level]


def _before_fork() -> None:
    # No record may be half-delivered when the process forks: a kernel thread inside the
    # callback holds the library's lock on it, and the child's copy of that lock would then
    # never be released (its next fk_set_log_callback would wait forever). Turning it off
    # waits for every record in flight (the GIL is released during the call) and stops more.
    _setting.acquire()
    if _max_level != lib.FK_LOG_OFF:
        lib.fk_set_log_callback(ffi.NULL, ffi.NULL, lib.FK_LOG_OFF)


def _after_fork() -> None:
    # In the parent and the child alike: back to the level set before the fork.
    try:
        if _max_level != lib.FK_LOG_OFF:
            lib.fk_set_log_callback(lib.fkpy_log, ffi.NULL, _max_level)
    finally:
        _setting.release()


def _at_exit() -> None:
    # Kernel threads may outlive the interpreter's finalisation (a node never closed): none
    # may then call into Python. When this returns, no callback runs and none will.
    with _setting:
        _install(lib.FK_LOG_OFF)


set_log_level()
atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork)
