"""The clock of leases: `now_ns()`, on the clock of every `lease_deadline_ns`."""

from __future__ import annotations

import time

# CLOCK_BOOTTIME keeps counting while the machine is suspended (CLOCK_MONOTONIC stops): a
# leader woken from a suspend must see its lease gone. Where it does not exist the kernel
# uses the monotonic clock, and so does this.
_CLOCK = getattr(time, "CLOCK_BOOTTIME", None)


def now_ns() -> int:
    """Now, in nanoseconds on CLOCK_BOOTTIME (Linux; the monotonic clock elsewhere): the
    clock of `Leadership.lease_deadline_ns` and `Event.lease_deadline_ns`.

    `leadership.lease_deadline_ns - fencekit.now_ns()` is the time left on a lease; compare
    such deadlines with this clock only, never with `time.time()` or `time.monotonic()`."""
    if _CLOCK is None:
        return time.monotonic_ns()
    return time.clock_gettime_ns(_CLOCK)
