"""lease_and_fence: three nodes elect a leader; it writes through a fence with its token;
leadership moves; the old leader's cached token is rejected (as bindings/c/samples/lease_and_fence)."""

import sys
import tempfile

import fencekit
import local_group


def main() -> int:
    with tempfile.TemporaryDirectory() as root:
        nodes = local_group.start(root, 3, cluster=42)
        fence = fencekit.Fence(f"{root}/storage")
        ledger = fence.register("ledger/nightly-report")
        try:
            old, first = local_group.leader(nodes)
            print(f"node {old + 1} leads in generation {first.token.generation}")
            print(f"  job 1 done: {fence.check(ledger, first.token).kind}")
            successor = nodes[old].step_down()
            print(f"node {old + 1} hands leadership to node {successor} (its lease is revoked first)")
            new, second = local_group.leader(nodes, exclude=old)
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
