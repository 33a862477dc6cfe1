"""The fence check from Python: one check per call, and a prepared batch of 256, beside the
cost of the smallest call into the library (`fk_abi_version`) in the same run. The single
check runs twice: with one token object (what a leader does; the fence recognises it), and
with equal tokens that are other objects each call.

    python bindings/python/benchmarks/check.py      (with the package installed)

Prints the median of 7 rounds, in nanoseconds per check.
"""

import statistics
import tempfile
import time

import fencekit
from fencekit._native import lib

ROUNDS = 7
CALLS = 200_000


def per_call(loop, count: int) -> float:
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter_ns()
        loop()
        times.append((time.perf_counter_ns() - start) / count)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as directory, fencekit.Fence(directory) as fence:
        r = fence.register("tenant-7/jobs/42")
        token = fencekit.Token(1, 1)
        fence.check(r, token)
        batch = fence.batch([(r, token)] * 256)

        def empty_call() -> None:
            version = lib.fk_abi_version
            for _ in range(CALLS):
                version()

        def single() -> None:
            check = fence.check
            for _ in range(CALLS):
                check(r, token)

        # Two equal tokens, different objects, alternating: the identity cache always misses.
        twins = [fencekit.Token(1, 1), fencekit.Token(1, 1)] * (CALLS // 2)

        def single_other_objects() -> None:
            check = fence.check
            for t in twins:
                check(r, t)

        def batched() -> None:
            check = batch.check
            for _ in range(CALLS // 256):
                check()

        baseline = per_call(empty_call, CALLS)
        one = per_call(single, CALLS)
        other = per_call(single_other_objects, CALLS)
        many = per_call(batched, (CALLS // 256) * 256)
        print(f"cffi call of fk_abi_version      {baseline:7.1f} ns")
        print(f"Fence.check                      {one:7.1f} ns   (goal <= 300)")
        print(f"Fence.check, a new token object  {other:7.1f} ns")
        print(f"Batch.check, 256 items, per item {many:7.1f} ns   (goal <= 15)")


if __name__ == "__main__":
    main()
