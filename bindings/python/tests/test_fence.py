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


def test_counting_accepted_checks_off_keeps_verdicts_and_other_counts(
    tmp_path: pathlib.Path,
) -> None:
    with fencekit.Fence(tmp_path) as fence:
        jobs = fence.register("jobs")
        assert fence.check(jobs, (2, 1)).kind == "advanced"
        assert fence.check(jobs, (2, 1)).kind == "accepted"
        fence.set_count_accepted(False)
        # The compiled check and the batch both take the uncounted path.
        assert fence.check(jobs, (2, 1)).kind == "accepted"
        batch = fence.batch([(jobs, (2, 1))] * 3)
        batch.check()
        assert fence.check(jobs, (1, 1)).kind == "stale"
        assert fence.counters(jobs) == fencekit.Counters(1, 1, 1, 0)
        fence.set_count_accepted(True)
        assert fence.check(jobs, Token(2, 1))
        assert fence.counters(jobs).accepted == 2
        with pytest.raises(TypeError):
            fence.set_count_accepted(1)  # type: ignore[arg-type]
    with pytest.raises(fencekit.errors.ClosedError):
        fence.set_count_accepted(True)


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
        # An id the fence never gave out is a bad item too, named by its index.
        with pytest.raises(fencekit.InvalidBatchError, match="item 1: unknown resource id 999"):
            fence.check_batch([(ids[0], (2, 1)), (999, (2, 1))])


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
    # A key no fence can hold is a bad key for a lookup too, not an unregistered one.
    with pytest.raises(fencekit.InvalidKeyError, match="empty"):
        fence.lookup("")
    with pytest.raises(fencekit.InvalidKeyError, match="257 bytes"):
        fence.lookup("k" * 257)
    # A holder is a node id, 1 to 2**64 - 1 (only a generation stops at 2**63 - 1); the
    # message says which part is out of which range.
    for holder in (2**63, 2**64 - 1):
        assert fence.check(r, (1, holder)).kind in ("advanced", "conflict")
    with pytest.raises(fencekit.InvalidTokenError, match=r"holder 18446744073709551616 is not 1 to 2\*\*64 - 1"):
        fence.check(r, (1, 2**64))
    with pytest.raises(fencekit.InvalidTokenError, match=r"generation -1 is not 1 to 2\*\*63 - 1"):
        fence.check(r, (-1, 1))
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


def test_a_verdict_is_true_exactly_when_the_write_may_land(tmp_path: pathlib.Path) -> None:
    """I7: `if fence.check(r, token):` is the natural idiom, so a verdict must be false for
    every rejection (a NamedTuple verdict was true for all of them)."""
    with fencekit.Fence(tmp_path) as fence:
        r = fence.register("r")
        answers = [
            (fence.check(r, (4, 1)), True),       # advanced
            (fence.check(r, Token(4, 1)), True),  # accepted (the cached verdict)
            (fence.check(r, (4, 1)), True),       # accepted (a new token object)
            (fence.check(r, (3, 1)), False),      # stale
            (fence.check(r, (4, 2)), False),      # conflict
            (fence.check_key("r", (3, 1)), False),
            (fence.check_key("r", (4, 1)), True),
        ]
        for verdict, lands in answers:
            assert bool(verdict) is lands and verdict.accepted is lands, verdict
            assert (True if verdict else False) is lands
        kinds = [v.kind for v, _ in answers]
        assert kinds == ["advanced", "accepted", "accepted", "stale", "conflict", "stale", "accepted"]
        verdicts = fence.check_batch([(r, (4, 1)), (r, (3, 1))])
        assert [bool(v) for v in verdicts] == [True, False] and not all(verdicts)
        assert all(fence.check_batch([(r, (4, 1)), (r, (5, 1))]))
        assert not fencekit.Verdict("none", None, None)


def test_a_verdict_is_not_a_tuple(tmp_path: pathlib.Path) -> None:
    """A tuple's idioms read rejections as acceptance: its first field (a kind name) is true
    for every kind, and `verdict != "stale"` holds for every verdict. They raise instead."""
    with fencekit.Fence(tmp_path) as fence:
        r = fence.register("r")
        fence.check(r, (4, 1))
        stale = fence.check(r, (3, 1))
        with pytest.raises(TypeError):
            ok, current, previous = stale  # type: ignore[misc]
        with pytest.raises(TypeError):
            stale[0]  # type: ignore[index]
        with pytest.raises(TypeError, match="kind"):
            stale != "stale"  # noqa: B015
        with pytest.raises(TypeError):
            "accepted" == stale  # noqa: B015
        with pytest.raises(TypeError):
            stale in ("accepted", "advanced")  # noqa: B015
        with pytest.raises(TypeError):
            stale == ("stale", Token(4, 1), None)  # noqa: B015
        # Nor is it a bool or a number: `verdict != False` holds for a stale verdict, and
        # `verdict == True` for no accepted one. Test the verdict itself.
        for other in (False, True, 0, 1, 0.0):
            with pytest.raises(TypeError):
                stale != other  # noqa: B015
            with pytest.raises(TypeError):
                other == stale  # noqa: B015
        # Verdicts compare and hash by their fields, and stay what they are.
        again = fence.check(r, (3, 1))
        assert again == stale and again is not stale
        # Not hashable: a set or dict lookup would hash first and never compare, so
        # `stale not in {"stale", "conflict"}` would hold. It raises instead.
        with pytest.raises(TypeError):
            stale not in {"stale", "conflict"}  # noqa: B015
        with pytest.raises(TypeError):
            {"stale": 0}.get(stale)
        import fractions
        with pytest.raises(TypeError):
            stale != fractions.Fraction(0)  # noqa: B015
        assert stale != fence.check(r, (4, 1)) and stale != None  # noqa: E711
        assert stale.kind != "accepted" and stale.current == Token(4, 1) == (4, 1)
        accepted = fence.check(r, (4, 1))
        with pytest.raises(AttributeError):
            accepted.kind = "stale"  # type: ignore[misc]
        with pytest.raises(AttributeError):
            stale.kind = "accepted"  # type: ignore[misc]
        assert fence.check(r, (4, 1)).kind == "accepted" and fence.check(r, (3, 1)).kind == "stale"
        import copy
        import pickle

        assert pickle.loads(pickle.dumps(stale)) == stale and copy.copy(accepted) == accepted
        assert repr(stale) == "Verdict(kind='stale', current=Token(generation=4, holder=1), previous=None)"


def test_a_token_field_is_an_int_and_never_a_bool(tmp_path: pathlib.Path) -> None:
    """`(True, 1)` is no token: cffi would take True as generation 1 and the check would
    accept it. Every call that takes a token refuses bools and non-ints with TypeError, and
    changes nothing."""
    import enum

    class Term(enum.IntEnum):
        FOUR = 4

    with fencekit.Fence(tmp_path) as fence:
        r = fence.register("r")
        bad = [(True, 1), (1, True), (False, 1), Token(True, 1), (1.0, 1), (1, 1.0), ("1", 1),
               (None, 1), [True, 1]]
        for token in bad:
            with pytest.raises(TypeError, match="int"):
                fence.check(r, token)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="int"):
                fence.check_key("r", token)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="int"):
                fence.check_batch([(r, token)])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="token"):
            fence.check(r, None)  # type: ignore[arg-type]
        assert fence.mark(r) is None, "nothing was checked"
        # True right after the same pair of ints was accepted (the cache keys on the ints).
        assert fence.check(r, (1, 1)).kind == "advanced"
        assert fence.check(r, (1, 1)).kind == "accepted"
        with pytest.raises(TypeError):
            fence.check(r, (True, 1))
        with pytest.raises(TypeError):
            fence.check(r, (True, True))
        # An int subclass other than bool is an int.
        assert fence.check(r, (Term.FOUR, 1)).kind == "advanced"
        assert fence.check(r, (Term.FOUR, 1)).kind == "accepted"
        assert fence.mark(r) == Token(4, 1) and type(fence.mark(r).generation) is int


def test_a_batch_never_keeps_an_acceptance_past_a_failed_check(tmp_path: pathlib.Path) -> None:
    """I7: a Batch's answers are reused arrays. A check that raises leaves every answer
    "none", whether the library refused (a bad item) or the call never reached it (a closed
    fence); a batch never checked answers "none" too."""
    fence = fencekit.Fence(tmp_path)
    r = fence.register("r")
    batch = fence.batch([(r, (2, 1)), (r, (2, 1))])
    assert [batch.kind(i) for i in range(2)] == ["none", "none"]
    assert not batch.accepted(0) and not any(batch.verdicts())
    batch.check()
    assert batch.accepted(0) and batch.accepted(1) and all(batch.verdicts())
    assert [batch.kind(i) for i in range(2)] == ["advanced", "accepted"]

    bad = fence.batch([(r, (2, 1)), (4242, (2, 1))])
    bad._out[0].kind = bad._out[1].kind = 1  # what an earlier check of the array left
    with pytest.raises(fencekit.InvalidBatchError, match="item 1"):
        bad.check()
    assert [bad.kind(i) for i in range(2)] == ["none", "none"] and not any(bad.verdicts())

    fence.close()
    with pytest.raises(fencekit.ClosedError):
        batch.check()
    assert not batch.accepted(0) and not batch.accepted(1)
    assert [v.kind for v in batch.verdicts()] == ["none", "none"] and not any(batch.verdicts())
