"""The clock of leases: `now_ns()`, on the clock of every `lease_deadline_ns`."""

from __future__ import annotations

from ._native import lib


def now_ns() -> int:
    """Now, in nanoseconds on the clock of `Leadership.lease_deadline_ns` and
    `Event.lease_deadline_ns`: on Linux CLOCK_BOOTTIME itself (what
    `time.clock_gettime_ns(time.CLOCK_BOOTTIME)` reads), which keeps counting while the
    machine is suspended, so a leader woken from a suspend finds its lease gone.

    `leadership.lease_deadline_ns - fencekit.now_ns()` is the time left on a lease; act on it
    only while that is positive. Never compare a deadline with `time.time()` or
    `time.monotonic()` (which stops during a suspend)."""
    return int(lib.fk_now_ns())
