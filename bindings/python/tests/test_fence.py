"""The fence from Python: verdicts, batches, reopening, and bad input as exceptions."""

import pathlib
import time

import pytest

import fencekit
from fencekit import Token


def test_verdicts_and_marks_survive_reopening(tmp_path: pathlib.Path) -> None:
    with fencekit.Fence(tmp_path) as fence:
        jobs = fence.register("jobs/nightly")
        assert fence.register(b"jobs/nightly") == jobs
        assert fence.mark(jobs) is None
        first = fence.check(jobs, (4, 1))
        assert first.kind == "advanced" and first.accepted and first.previous is None
        assert fence.check(jobs, Token(4, 1)).kind == "accepted"
        assert fence.check(jobs, (4, 2)).kind == "conflict"
        newer = fence.check(jobs, (5, 2))
        assert newer.kind == "advanced" and newer.previous == Token(4, 1)
        stale = fence.check(jobs, (4, 1))
        assert stale.kind == "stale" and not stale.accepted and stale.current == Token(5, 2)
        assert fence.counters(jobs) == fencekit.Counters(1, 2, 1, 1)
        assert len(fence) == 1
    with fencekit.Fence(tmp_path) as fence:
        assert fence.check_key("jobs/nightly", (4, 1)).kind == "stale"
        assert fence.mark(fence.lookup("jobs/nightly")) == Token(5, 2)


def test_a_prepared_batch_checks_in_one_call(tmp_path: pathlib.Path) -> None:
    with fencekit.Fence(tmp_path) as fence:
        ids = [fence.register(f"r{i}") for i in range(4)]
        items = [(ids[i % 4], (2, 1)) for i in range(256)]
        batch = fence.batch(items)
        batch.check()
        assert [batch.kind(i) for i in range(4)] == ["advanced"] * 4
        assert {v.kind for v in batch.verdicts()[4:]} == {"accepted"}
        batch.check()
        assert batch.kind(0) == "accepted"
        assert fence.check_batch([(ids[0], (1, 1))])[0].kind == "stale"
        with pytest.raises(fencekit.InvalidBatchError, match="item 1"):
            fence.check_batch([(ids[0], (2, 1)), (ids[1], (0, 1))])
        with pytest.raises(fencekit.InvalidBatchError):
            fence.batch([(ids[0], (2, 1))] * (fencekit.BATCH_MAX + 1))
        with pytest.raises(fencekit.UnknownResourceError):
            fence.check_batch([(999, (2, 1))])


def test_bad_input_raises_with_the_reason(tmp_path: pathlib.Path) -> None:
    fence = fencekit.Fence(tmp_path / "f")
    r = fence.register("r")
    for bad in [(0, 1), (1, 0), (-1, 1), (1, -5), (2**63, 1), (2**64, 1)]:
        with pytest.raises(fencekit.InvalidTokenError):
            fence.check(r, bad)
    with pytest.raises(TypeError, match="token"):
        fence.check(r, 7)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int"):
        fence.check(r, ("1", 2))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes or str"):
        fence.register(42)  # type: ignore[arg-type]
    with pytest.raises(fencekit.InvalidKeyError, match="256"):
        fence.register("k" * 257)
    with pytest.raises(fencekit.InvalidKeyError):
        fence.register("")
    with pytest.raises(fencekit.UnknownResourceError):
        fence.check(4242, (1, 1))
    with pytest.raises(fencekit.UnknownResourceError):
        fence.lookup("never")
    with pytest.raises(fencekit.LockedError):
        fencekit.Fence(tmp_path / "f")
    with pytest.raises(fencekit.InvalidArgumentError, match="max_resources"):
        fencekit.Fence(tmp_path / "g", max_resources=0)
    fence.close()
    fence.close()
    with pytest.raises(fencekit.ClosedError):
        fence.check(r, (1, 1))
    # The directory is free again once the fence is closed.
    fencekit.Fence(tmp_path / "f").close()


def test_errors_carry_the_status_code(tmp_path: pathlib.Path) -> None:
    with fencekit.Fence(tmp_path) as fence:
        with pytest.raises(fencekit.FencekitError) as caught:
            fence.check(fence.register("x"), (0, 1))
        assert caught.value.status_name == "FK_STATUS_INVALID_TOKEN"
        assert "generation 0" in str(caught.value)


def test_threads_get_their_own_verdicts(tmp_path: pathlib.Path) -> None:
    """The hot path keeps a verdict per thread: concurrent stale checks on different resources
    each see their own resource's mark."""
    import threading

    with fencekit.Fence(tmp_path) as fence:
        ids = [fence.register(f"r{i}") for i in range(4)]
        for i, r in enumerate(ids):
            fence.check(r, (10 + i, i + 1))
        errors = []

        def worker(i: int) -> None:
            for _ in range(2000):
                v = fence.check(ids[i], (1, 1))
                if v.kind != "stale" or v.current != Token(10 + i, i + 1):
                    errors.append((i, v))
                    return

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []


def test_closing_while_other_threads_check_is_safe(tmp_path: pathlib.Path) -> None:
    """A close never frees the fence under a running check: the checking threads get
    ClosedError, and the fence is freed (its directory unlocked) when the last call returns."""
    import threading

    fence = fencekit.Fence(tmp_path)
    r = fence.register("r")
    assert fence.check(r, (1, 1)).kind == "advanced"
    outcomes = []
    started = threading.Barrier(5)

    def worker() -> None:
        started.wait()
        try:
            while True:
                assert fence.check(r, (1, 1)).accepted
        except fencekit.ClosedError as e:
            outcomes.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.02)
    fence.close()
    for t in threads:
        t.join(10)
    assert len(outcomes) == 4
    with fencekit.Fence(tmp_path) as again:
        assert again.check_key("r", (1, 1)).kind == "accepted"


def test_the_token_cache_never_answers_for_another_token(tmp_path: pathlib.Path) -> None:
    """The hot path recognises the latest accepted token by identity; the verdict must still
    be the fence's answer to this token on this resource."""
    with fencekit.Fence(tmp_path) as fence:
        a, b = fence.register("a"), fence.register("b")
        old, new = Token(3, 1), Token(4, 2)
        assert fence.check(a, old).kind == "advanced"
        assert fence.check(a, old).kind == "accepted"
        assert fence.check(b, old).kind == "advanced"
        assert fence.check(a, new).kind == "advanced"
        # `old` is still the cached token: the fence's answer wins.
        stale = fence.check(a, old)
        assert stale.kind == "stale" and stale.current == new
        assert fence.check(b, old).kind == "accepted"
        # A mutable token is never recognised by identity.
        mutable = [5, 2]
        assert fence.check(b, mutable).kind == "advanced"
        assert fence.check(b, mutable).current == Token(5, 2)
        mutable[0] = 6
        assert fence.check(b, mutable).current == Token(6, 2)
        with pytest.raises(fencekit.InvalidTokenError):
            fence.check(b, (0, 2))
        with pytest.raises(TypeError):
            fence.check(b, "ab")  # type: ignore[arg-type]
