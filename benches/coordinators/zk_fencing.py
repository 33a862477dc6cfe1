"""The per-write cost of ZooKeeper's documented fencing beside fencekit's check, in one process
against one running ZooKeeper (benches/coordinators/measure.sh starts it).

ZooKeeper's fencing: the leader's write is a multi (kazoo's transaction) that checks the
version of its leader znode (the ephemeral sequential znode it won with: the multi fails once
the session expired and the znode is gone) and then sets the data; it protects only data kept in
ZooKeeper itself. fencekit's: the storage checks the term's token (the leader znode's czxid and
session, `fencekit.zookeeper.znode_token`) with `Fence.check_from` before its own write.

    python zk_fencing.py --zk 127.0.0.1:2181 --writes 2000

Prints one JSON line: each one's p50 and p99 in nanoseconds and their ratio.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

import fencekit
from fencekit.zookeeper import ensemble_source, znode_token
from kazoo.client import KazooClient


def pct(values, p):
    """The p-th percentile (nearest rank)."""
    s = sorted(values)
    return s[max((len(s) * p + 99) // 100 - 1, 0)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zk", default=os.environ.get("FENCEKIT_ZK_HOSTS"), help="host:port (default $FENCEKIT_ZK_HOSTS)")
    parser.add_argument("--writes", type=int, default=2000, help="fenced writes to time (after 200 not timed)")
    parser.add_argument("--checks", type=int, default=200_000, help="fencekit checks to time, in 200 samples")
    args = parser.parse_args()
    if not args.zk:
        parser.error("no --zk and no FENCEKIT_ZK_HOSTS")

    client = KazooClient(hosts=args.zk, timeout=10)
    client.start(timeout=10)
    try:
        base = f"/fencekit-bench/{uuid.uuid4().hex}"
        client.ensure_path(f"{base}/election")
        client.create(f"{base}/data", b"")
        # The leader's znode, as kazoo's Election makes it (the lowest contender leads).
        leader = client.create(f"{base}/election/contender-", b"bench", ephemeral=True, sequence=True)
        stat = client.exists(leader)
        value = b"x" * 64
        txn = []
        for i in range(args.writes + 200):
            start = time.perf_counter_ns()
            tx = client.transaction()
            tx.check(leader, stat.version)
            tx.set_data(f"{base}/data", value)
            results = tx.commit()
            took = time.perf_counter_ns() - start
            if any(isinstance(r, Exception) for r in results):
                raise SystemExit(f"zk_fencing: the fenced transaction failed: {results}")
            if i >= 200:
                txn.append(took)

        source = ensemble_source("bench-zk")
        token = znode_token(stat)
        with tempfile.TemporaryDirectory() as directory, fencekit.Fence(directory) as fence:
            r = fence.register("scheduler/jobs")
            src = fence.source_id(source)
            if not fence.check_from(r, src, token):
                raise SystemExit("zk_fencing: the first check was refused")
            samples, per = 200, max(args.checks // 200, 1)
            check_from = fence.check_from
            checks = []
            for _ in range(samples + 20):
                start = time.perf_counter_ns()
                for _ in range(per):
                    check_from(r, src, token)
                checks.append((time.perf_counter_ns() - start) / per)
            checks = checks[20:]
            if not check_from(r, src, token):
                raise SystemExit("zk_fencing: a check was refused")
        client.delete(base, recursive=True)
    finally:
        client.stop()
        client.close()
    out = {
        "bench": "zk_fencing",
        "zk_multi_writes": len(txn),
        "zk_multi_p50_ns": pct(txn, 50),
        "zk_multi_p99_ns": pct(txn, 99),
        "check_samples": len(checks),
        "checks_per_sample": per,
        "fencekit_check_from_p50_ns": round(pct(checks, 50), 1),
        "fencekit_check_from_p99_ns": round(pct(checks, 99), 1),
        "ratio_p50": round(pct(txn, 50) / pct(checks, 50), 1),
        "check_from_mean_ns": round(statistics.fmean(checks), 1),
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
