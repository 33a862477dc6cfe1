"""lease_and_fence: three nodes elect a leader; it writes through a fence with its token;
leadership moves; the old leader's cached token is rejected (as bindings/c/samples/lease_and_fence)."""

import socket
import sys
import tempfile
import time
from typing import List, Optional, Tuple

import fencekit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_leader(nodes: List[fencekit.Node], exclude: int = -1) -> Tuple[int, fencekit.Leadership]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for i, node in enumerate(nodes):
            leadership = node.leadership() if i != exclude else None
            if leadership is not None:
                return i, leadership
        time.sleep(0.01)
    raise SystemExit("no leader within 10 s")


def main() -> int:
    with tempfile.TemporaryDirectory() as root:
        ports = [free_port() for _ in range(3)]
        nodes = []
        for i in range(3):
            peers = [{"id": j + 1, "addr": f"127.0.0.1:{ports[j]}"} for j in range(3) if j != i]
            nodes.append(fencekit.Node({"id": i + 1, "cluster": 42, "data_dir": f"{root}/node-{i + 1}",
                                        "listen": f"127.0.0.1:{ports[i]}", "peers": peers}))
        fence = fencekit.Fence(f"{root}/storage")
        ledger = fence.register("ledger/nightly-report")
        try:
            old, first = wait_for_leader(nodes)
            print(f"node {old + 1} leads in generation {first.token.generation}")
            print(f"  job 1 done: {fence.check(ledger, first.token).kind}")
            successor = nodes[old].step_down()
            print(f"node {old + 1} hands leadership to node {successor} (its lease is revoked first)")
            new, second = wait_for_leader(nodes, exclude=old)
            print(f"node {new + 1} leads in generation {second.token.generation}")
            print(f"  job 2 done: {fence.check(ledger, second.token).kind}")
            print(f"node {old + 1} still leads? {nodes[old].leadership() is not None}")
            zombie = fence.check(ledger, first.token)
            print(f"node {old + 1} writes anyway with its cached token: {zombie.kind} "
                  f"(the mark is {zombie.current})")
        finally:
            fence.close()
            for node in nodes:
                node.close()
    return 0 if zombie.kind == "stale" else 1


if __name__ == "__main__":
    sys.exit(main())
