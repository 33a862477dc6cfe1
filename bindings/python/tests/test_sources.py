"""Token sources from Python: a resource takes tokens from one coordinator and refuses every
other, an operator's rebase moves it (durably), and the coordinators' tokens map as the kernel
maps them."""

import pathlib
from typing import Any, List

import pytest

import fencekit
from fencekit import Token, VerdictKind

ZK = fencekit.zookeeper_source("prod-zk")
ZK_WIPED = fencekit.zookeeper_source("prod-zk-2")
ETCD = fencekit.etcd_source(0xA)


def test_a_token_of_another_source_is_refused_and_false(tmp_path: pathlib.Path) -> None:
    with fencekit.Fence(tmp_path) as fence:
        jobs = fence.register("scheduler")
        assert fence.bound_source(jobs) is None
        leader = fencekit.token_from_zookeeper(0x100000003, 0x17F00AB)
        first = fence.check_from(jobs, ZK, leader)
        assert first.kind is VerdictKind.ADVANCED and first and first.accepted
        assert fence.bound_source(jobs) == ZK
        # The same numbers from any other source: etcd's, another ensemble's, fencekit's own
        # (`check`, the unnamed source) and `check_key`'s are all refused, whatever they are.
        for verdict in (
            fence.check_from(jobs, ETCD, leader),
            fence.check_from(jobs, ZK_WIPED, (leader.generation + 1, leader.holder)),
            fence.check(jobs, leader),
            fence.check(jobs, (leader.generation + 1, 1)),
            fence.check_key("scheduler", leader),
        ):
            assert verdict.kind is VerdictKind.FOREIGN_SOURCE and verdict.kind == "foreign_source"
            assert not verdict and not verdict.accepted
            assert verdict.current is None and verdict.previous is None
        if fence.check(jobs, leader):  # the idiom must never read it as acceptance
            pytest.fail("a foreign token read as accepted")
        # A batch (fencekit's own tokens) is refused item by item, never accepted.
        batch = fence.check_batch([(jobs, leader)])
        assert batch[0].kind == "foreign_source" and not all(batch)
        # Its own source still works, by name or by id, and the mark did not move.
        assert fence.check_from(jobs, fence.source_id(ZK), leader).kind == "accepted"
        assert fence.mark(jobs) == leader


def test_a_resource_fenced_by_check_is_bound_to_the_unnamed_source(tmp_path: pathlib.Path) -> None:
    with fencekit.Fence(tmp_path) as fence:
        jobs = fence.register("jobs")
        assert fence.check(jobs, (3, 1))
        assert fence.bound_source(jobs) == fencekit.UNNAMED_SOURCE == "unnamed"
        assert fence.check_from(jobs, "unnamed", (3, 1)).kind == "accepted"
        assert fence.source_id("unnamed") == 0
        assert fence.check_from(jobs, ZK, (4, 1)).kind == "foreign_source"


def test_a_stale_holder_of_the_same_source_is_refused(tmp_path: pathlib.Path) -> None:
    # A leader that kept its token across a re-election: the successor's znode is younger (a
    # higher czxid), so once the successor presented its token the old one is stale.
    with fencekit.Fence(tmp_path) as fence:
        jobs = fence.register("jobs")
        old = fencekit.token_from_zookeeper(0x200000010, 0x100)
        new = fencekit.token_from_zookeeper(0x200000020, 0x200)
        assert fence.check_from(jobs, ZK, old)
        assert fence.check_from(jobs, ZK, new).kind == "advanced"
        stale = fence.check_from(jobs, ZK, old)
        assert stale.kind == "stale" and not stale and stale.current == new
        # The same znode (czxid) held by another session: a conflict, refused.
        assert fence.check_from(jobs, ZK, (new.generation, 0x300)).kind == "conflict"
        # A cached accepting verdict is never handed out without asking the library.
        assert fence.check_from(jobs, ZK, old).kind == "stale"


def test_rebase_moves_a_resource_to_a_new_source_durably(tmp_path: pathlib.Path) -> None:
    # The lockout: the ensemble's data was wiped, its zxids restarted, and the fence,
    # holding the old ensemble's high zxid, refuses the new leader as stale.
    high = fencekit.token_from_zookeeper(0x5000F4240, 0x11)
    low = fencekit.token_from_zookeeper(3, 0x22)
    with fencekit.Fence(tmp_path) as fence:
        jobs = fence.register("scheduler")
        assert fence.check_from(jobs, ZK, high)
        assert fence.check_from(jobs, ZK, low).kind == "stale"
        # The same name again is refused, and nothing changes.
        with pytest.raises(fencekit.RebaseRefusedError, match="new source"):
            fence.rebase("scheduler", ZK, "alice")
        assert fence.mark(jobs) == high and fence.bound_source(jobs) == ZK
        for by in ("", "a\nb", "x" * 257):
            with pytest.raises(fencekit.RebaseRefusedError) as refused:
                fence.rebase("scheduler", ZK_WIPED, by)
            assert refused.value.status == 1012 and refused.value.status_name == "FK_STATUS_REBASE_REFUSED"
        assert fence.mark(jobs) == high and fence.bound_source(jobs) == ZK
        cleared = fence.rebase("scheduler", ZK_WIPED, "alice CHG-7")
        assert cleared == high and type(cleared) is Token
        assert fence.bound_source(jobs) == ZK_WIPED and fence.mark(jobs) is None
        # The old ensemble's tokens are foreign now (its zombie too); the new one's first token
        # sets the mark whatever its generation.
        assert fence.check_from(jobs, ZK, high).kind == "foreign_source"
        first = fence.check_from(jobs, ZK_WIPED, low)
        assert first.kind == "advanced" and first.previous is None
        # A resource never seen before can be rebased too: it is registered, with no mark.
        assert fence.rebase(b"new/resource", ETCD, "bob") is None
        assert fence.bound_source(fence.lookup("new/resource")) == ETCD
    with fencekit.Fence(tmp_path) as fence:
        jobs = fence.lookup("scheduler")
        assert fence.bound_source(jobs) == ZK_WIPED
        assert fence.mark(jobs) == low
        assert fence.check_from(jobs, ZK, high).kind == "foreign_source"
        assert fence.check_from(jobs, ZK_WIPED, low).kind == "accepted"
        assert fence.check_from(jobs, ZK_WIPED, (2, 0x22)).kind == "stale"
        assert fence.bound_source(fence.lookup("new/resource")) == ETCD
        fence.compact()
    with fencekit.Fence(tmp_path) as fence:
        jobs = fence.lookup("scheduler")
        assert fence.bound_source(jobs) == ZK_WIPED and fence.mark(jobs) == low
        assert fence.check(jobs, low).kind == "foreign_source"


def test_source_ids_hold_while_the_fence_is_open(tmp_path: pathlib.Path) -> None:
    with fencekit.Fence(tmp_path) as fence:
        a, b = fence.source_id(ZK), fence.source_id(ETCD)
        assert a != b and 0 not in (a, b)
        assert fence.source_id(ZK) == a
        jobs = fence.register("jobs")
        assert fence.check_from(jobs, a, (1, 1))
        assert fence.check_from(jobs, b, (1, 1)).kind == "foreign_source"
    with fencekit.Fence(tmp_path) as fence:
        jobs = fence.lookup("jobs")
        assert fence.check_from(jobs, ZK, (1, 1)).kind == "accepted"


BAD_NAMES: List[Any] = [
    "",
    "etcd",
    ":x",
    "etcd:",
    "Etcd:x",
    "etcd: x",
    "etcd:x\n",
    "et_cd:x",
    "etcd:\u00e9",
    "etcd:\ud800",
    "named:" + "a" * fencekit.SOURCE_NAME_MAX,
]
GOOD_NAMES = [
    "etcd:00000000deadbeef",
    "zookeeper:prod-zk",
    "k8s-lease:default/scheduler/3f2a-11",
    "named:x",
    "my-coordinator2:a:b",
    "unnamed",
    "named:" + "a" * (fencekit.SOURCE_NAME_MAX - 6),
]


def test_source_names_are_checked_here_as_the_library_checks_them(tmp_path: pathlib.Path) -> None:
    with fencekit.Fence(tmp_path) as fence:
        for name in GOOD_NAMES:
            assert fencekit.check_source_name(name) == name
            fence.source_id(name)
        for name in BAD_NAMES:
            with pytest.raises(fencekit.InvalidSourceError):
                fencekit.check_source_name(name)
            # The library refuses it too (a lone surrogate as bytes that are not UTF-8).
            with pytest.raises(fencekit.InvalidArgumentError) as refused:
                fence.source_id(name)
            assert refused.value.status in (1010, 1002), name
            with pytest.raises(fencekit.InvalidArgumentError):
                fence.check_from(0 if len(fence) else fence.register("r"), name, (1, 1))
            with pytest.raises(fencekit.InvalidArgumentError):
                fence.rebase("r", name, "alice")
        assert fence.bound_source(fence.lookup("r")) is None


def test_bad_arguments_raise_and_check_nothing(tmp_path: pathlib.Path) -> None:
    with fencekit.Fence(tmp_path) as fence:
        jobs = fence.register("jobs")
        for source in (True, 1.0, b"zookeeper:x", None, Token(1, 1)):
            with pytest.raises(TypeError):
                fence.check_from(jobs, source, (1, 1))  # type: ignore[arg-type]
        for source_id in (999, -1, 1 << 32):
            with pytest.raises(fencekit.InvalidSourceError):
                fence.check_from(jobs, source_id, (1, 1))
        for token in ((True, 1), (1.0, 1), "ab", None, (1, 2, 3), {1: 2, 3: 4}):
            with pytest.raises(TypeError):
                fence.check_from(jobs, ZK, token)  # type: ignore[arg-type]
        for token in ((0, 1), (1, 0), (-1, 1), (1 << 63, 1), (1, 1 << 64)):
            with pytest.raises(fencekit.InvalidTokenError):
                fence.check_from(jobs, ZK, token)
        with pytest.raises(TypeError):
            fence.check_from(True, ZK, (1, 1))  # type: ignore[arg-type]
        with pytest.raises(fencekit.UnknownResourceError):
            fence.check_from(4242, ZK, (1, 1))
        with pytest.raises(fencekit.UnknownResourceError):
            fence.check_from(-1, ZK, (1, 1))
        with pytest.raises(fencekit.UnknownResourceError):
            fence.bound_source(4242)
        for args in ((1, ZK, "a"), ("jobs", ZK.encode(), "a"), ("jobs", ZK, b"alice")):
            with pytest.raises(TypeError):
                fence.rebase(*args)  # type: ignore[arg-type]
        with pytest.raises(fencekit.RebaseRefusedError):
            fence.rebase("jobs", ZK, "\ud800")
        with pytest.raises(TypeError):
            fence.source_id(b"zookeeper:x")  # type: ignore[arg-type]
        # Nothing of that bound the resource or moved a mark.
        assert fence.bound_source(jobs) is None and fence.mark(jobs) is None
    with pytest.raises(fencekit.ClosedError):
        fence.check_from(jobs, ZK, (1, 1))
    with pytest.raises(fencekit.ClosedError):
        fence.source_id(ZK)
    with pytest.raises(fencekit.ClosedError):
        fence.bound_source(jobs)
    with pytest.raises(fencekit.ClosedError):
        fence.rebase("jobs", ZK, "alice")


def test_a_fence_knows_at_most_1024_sources(tmp_path: pathlib.Path) -> None:
    with fencekit.Fence(tmp_path) as fence:
        ids = {fence.source_id(fencekit.named_source(f"s{i}")) for i in range(1023)}
        assert len(ids) == 1023 and 0 not in ids  # with "unnamed", 1024
        with pytest.raises(fencekit.TooManySourcesError):
            fence.source_id(fencekit.named_source("one-too-many"))
        assert fence.source_id(fencekit.named_source("s7")) in ids


def test_source_names_are_the_kernels() -> None:
    assert fencekit.etcd_source(0xDEADBEEF) == "etcd:00000000deadbeef"
    assert fencekit.etcd_source(0) == "etcd:0000000000000000"
    assert fencekit.etcd_source((1 << 64) - 1) == "etcd:ffffffffffffffff"
    assert fencekit.zookeeper_source("zk") == "zookeeper:zk"
    assert fencekit.kubernetes_lease_source("ops", "sched", "u-1") == "k8s-lease:ops/sched/u-1"
    assert fencekit.fencekit_source(7) == "fencekit:7"
    with pytest.raises(TypeError):
        fencekit.fencekit_source("7")  # type: ignore[arg-type]
    assert fencekit.named_source("x") == "named:x"
    for bad in (-1, 1 << 64):
        with pytest.raises(fencekit.InvalidSourceError):
            fencekit.etcd_source(bad)
    for bad_type in (True, "a", 1.0):
        with pytest.raises(TypeError):
            fencekit.etcd_source(bad_type)  # type: ignore[arg-type]
    with pytest.raises(fencekit.InvalidSourceError):
        fencekit.named_source("has space")
    with pytest.raises(fencekit.InvalidSourceError):
        fencekit.zookeeper_source("")
    with pytest.raises(fencekit.InvalidSourceError):
        fencekit.kubernetes_lease_source("ns", "name", "ü")
    with pytest.raises(TypeError):
        fencekit.zookeeper_source(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fencekit.check_source_name(b"named:x")  # type: ignore[arg-type]


def test_coordinator_tokens_map_as_the_kernel_maps_them() -> None:
    assert fencekit.token_from_etcd(1_000_000, 0x694D8F0A2C11E703) == Token(1_000_000, 0x694D8F0A2C11E703)
    # A negative lease id (etcd's are int64) is the same 64 bits.
    assert fencekit.token_from_etcd(5, -1) == Token(5, (1 << 64) - 1)
    # A session id with its top bit set: kazoo gives it negative, zkCli prints it unsigned.
    assert fencekit.token_from_zookeeper(0x100000003, -0x7EFFFFFFFFFFFFFE) == Token(0x100000003, 0x8100000000000002)
    assert fencekit.token_from_zookeeper(0x100000003, 0x8100000000000002) == Token(0x100000003, 0x8100000000000002)
    assert fencekit.token_from_zookeeper(7, -(1 << 63)) == Token(7, 1 << 63)
    # FNV-1a 64 of the holder identity (the reference vectors, as Go's hash/fnv gives them).
    assert fencekit.token_from_kubernetes_lease(0, "foobar") == Token(1, 0x85944171F73967E8)
    assert fencekit.token_from_kubernetes_lease(4, "a") == Token(5, 0xAF63DC4C8601EC8C)
    assert fencekit.token_from_kubernetes_lease((1 << 31) - 1, "pod-a").generation == 1 << 31
    assert fencekit.token_from_kubernetes_lease(0, "pod-ü").holder != fencekit.token_from_kubernetes_lease(0, "pod-u").holder


@pytest.mark.parametrize(
    "call",
    [
        lambda: fencekit.token_from_etcd(0, 7),
        lambda: fencekit.token_from_etcd(-1, 7),
        lambda: fencekit.token_from_etcd(5, 0),
        lambda: fencekit.token_from_etcd(1 << 63, 7),
        lambda: fencekit.token_from_etcd(5, 1 << 63),
        lambda: fencekit.token_from_zookeeper(0, 3),
        lambda: fencekit.token_from_zookeeper(-5, 3),
        lambda: fencekit.token_from_zookeeper(3, 0),
        lambda: fencekit.token_from_zookeeper(3, 1 << 64),
        lambda: fencekit.token_from_zookeeper(3, -(1 << 63) - 1),
        lambda: fencekit.token_from_kubernetes_lease(-1, "pod-a"),
        lambda: fencekit.token_from_kubernetes_lease(1 << 31, "pod-a"),
        lambda: fencekit.token_from_kubernetes_lease(0, ""),
        lambda: fencekit.token_from_kubernetes_lease(0, "\ud800"),
    ],
)
def test_a_token_no_coordinator_hands_out_is_refused(call: Any) -> None:
    with pytest.raises(fencekit.InvalidTokenError):
        call()


@pytest.mark.parametrize(
    "call",
    [
        lambda: fencekit.token_from_etcd(True, 7),
        lambda: fencekit.token_from_etcd(5.0, 7),
        lambda: fencekit.token_from_etcd("5", 7),
        lambda: fencekit.token_from_zookeeper(3, None),
        lambda: fencekit.token_from_zookeeper(3, False),
        lambda: fencekit.token_from_kubernetes_lease(None, "pod-a"),
        lambda: fencekit.token_from_kubernetes_lease(0, b"pod-a"),
    ],
)
def test_a_coordinators_field_of_another_type_raises_type_error(call: Any) -> None:
    with pytest.raises(TypeError):
        call()


def test_a_token_accepted_before_is_checked_again_every_time(tmp_path: pathlib.Path) -> None:
    # The binding recognises the latest accepted token by identity (the hot path), but hands
    # out its verdict only when the library accepts it again: never after a rebase, from
    # another source, or for another resource.
    with fencekit.Fence(tmp_path) as fence:
        jobs, other = fence.register("jobs"), fence.register("other")
        token = Token(7, 9)
        assert fence.check_from(jobs, ZK, token).kind == "advanced"
        assert fence.check_from(jobs, ZK, token).kind == "accepted"
        assert fence.check_from(jobs, fence.source_id(ZK), token).kind == "accepted"
        assert fence.check_from(other, ETCD, Token(100, 1))
        assert fence.check_from(other, ZK, token).kind == "foreign_source"
        assert fence.check(jobs, token).kind == "foreign_source"
        fence.rebase("jobs", ZK_WIPED, "alice")
        for _ in range(2):
            refused = fence.check_from(jobs, ZK, token)
            assert refused.kind == "foreign_source" and not refused
        assert fence.check_from(jobs, ZK_WIPED, token).kind == "advanced"
        # And a newer holder makes the cached token stale at once.
        assert fence.check_from(jobs, ZK_WIPED, Token(8, 1)).kind == "advanced"
        assert fence.check_from(jobs, ZK_WIPED, token).kind == "stale"
