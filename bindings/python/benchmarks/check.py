"""The fence check from Python, beside its baselines and the former (pure Python over cffi)
check, all in the same run:

- baselines: `len(())` (the smallest call of a built-in function), a cffi call of the
  library's smallest function (`fk_abi_version`), and making a `Token(g, h)`;
- `Fence.check` (compiled, fencekit/_fence_core.c) and `OldCheck.check` (the check as it was
  before it was compiled, kept below), each with one token object (what a leader does), with a
  tuple built per call, and with a `Token` built per call;
- `Fence.check_from` with a source name, and a prepared batch of 256 per item.

    python bindings/python/benchmarks/check.py      (with the package installed)

The cases run interleaved, one after the other in each of 7 rounds, so that a load coming and
going on the machine hits them all alike. Prints the median of the rounds, in nanoseconds per
call.
"""

import statistics
import tempfile
import time
from typing import Callable, Dict, List, Tuple

import fencekit
from fencekit import Token, Verdict, VerdictKind
from fencekit._native import lib

ROUNDS = 7
CALLS = 200_000

_NO_TOKEN = object()
# As the former fence.py had them: module globals, not attributes of `lib` looked up per call.
_check = lib.fkpy_check
_ACCEPTED = lib.FK_VERDICT_ACCEPTED


class OldCheck:
    """`Fence.check` as it was before the compiled check (commit 54ac428), for comparison: a
    Python method that recognises the latest accepted token by identity, else unpacks and
    type-checks the token, calls the cffi glue `fkpy_check`, and looks the accepted verdict up
    in a dict. Its error handling is left out (the benchmark passes valid tokens only)."""

    def __init__(self, fence: fencekit.Fence) -> None:
        self._fence = fence._fence
        self._accepted: Dict[Tuple[int, int], Verdict] = {}
        self._last_accepted: Tuple[object, int, int, Verdict] = (
            _NO_TOKEN, 0, 0, Verdict(VerdictKind.NONE, None, None))

    def check(self, resource: int, token: Tuple[int, int]) -> Verdict:
        last = self._last_accepted
        if type(resource) is not int:
            raise TypeError("resource")
        if token is last[0]:
            answer = _check(self._fence, resource, last[1], last[2])
            if answer == _ACCEPTED:
                return last[3]
        else:
            generation, holder = token
            if (
                (type(token) is not Token and type(token) is not tuple)
                or type(generation) is not int
                or type(holder) is not int
            ):
                raise TypeError("token")
            answer = _check(self._fence, resource, generation, holder)
            if answer == _ACCEPTED:
                verdict = self._accepted.get((generation, holder))
                if verdict is not None:
                    return verdict
                verdict = Verdict(VerdictKind.ACCEPTED, Token(generation, holder), None)
                self._accepted[(generation, holder)] = verdict
                if type(token) is Token or type(token) is tuple:
                    self._last_accepted = (token, generation, holder, verdict)
                return verdict
        raise AssertionError(f"the benchmark's token was not accepted: {answer}")


def main() -> None:
    with tempfile.TemporaryDirectory() as directory, fencekit.Fence(directory) as fence:
        r = fence.register("tenant-7/jobs/42")
        token = Token(1, 1)
        assert fence.check(r, token)
        source = fencekit.zookeeper_source("bench")
        s = fence.register("tenant-7/jobs/43")
        assert fence.check_from(s, source, (1, 1))
        batch = fence.batch([(r, token)] * 256)
        old = OldCheck(fence)
        g, h = 1, 1

        def empty_builtin() -> None:
            empty = ()
            for _ in range(CALLS):
                len(empty)

        def empty_cffi() -> None:
            version = lib.fk_abi_version
            for _ in range(CALLS):
                version()

        def make_token() -> None:
            for _ in range(CALLS):
                Token(g, h)

        def same_token(check: Callable[..., Verdict]) -> Callable[[], None]:
            def loop() -> None:
                for _ in range(CALLS):
                    check(r, token)
            return loop

        def new_tuple(check: Callable[..., Verdict]) -> Callable[[], None]:
            def loop() -> None:
                for _ in range(CALLS):
                    check(r, (g, h))
            return loop

        def new_token(check: Callable[..., Verdict]) -> Callable[[], None]:
            def loop() -> None:
                for _ in range(CALLS):
                    check(r, Token(g, h))
            return loop

        def from_source() -> None:
            check_from = fence.check_from
            for _ in range(CALLS):
                check_from(s, source, (g, h))

        def batched() -> None:
            check = batch.check
            for _ in range(CALLS // 256):
                check()

        cases: List[Tuple[str, Callable[[], None], int]] = [
            ("len(()): a built-in call, the floor", empty_builtin, CALLS),
            ("cffi call of fk_abi_version", empty_cffi, CALLS),
            ("Token(g, h) alone", make_token, CALLS),
            ("old check, one token object", same_token(old.check), CALLS),
            ("old check, a tuple per call", new_tuple(old.check), CALLS),
            ("old check, a Token(g, h) per call", new_token(old.check), CALLS),
            ("Fence.check, one token object", same_token(fence.check), CALLS),
            ("Fence.check, a tuple per call", new_tuple(fence.check), CALLS),
            ("Fence.check, a Token(g, h) per call", new_token(fence.check), CALLS),
            ("Fence.check_from, a source name, a tuple", from_source, CALLS),
            ("Batch.check, 256 items, per item", batched, (CALLS // 256) * 256),
        ]
        times: Dict[str, List[float]] = {label: [] for label, _, _ in cases}
        for _ in range(ROUNDS):
            for label, loop, count in cases:
                start = time.perf_counter_ns()
                loop()
                times[label].append((time.perf_counter_ns() - start) / count)
        for label, _, _ in cases:
            print(f"{label:44} {statistics.median(times[label]):7.1f} ns")


if __name__ == "__main__":
    main()
