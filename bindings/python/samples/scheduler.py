"""scheduler: a cron-like leader runs each job exactly once.

Three nodes elect a leader. Whoever leads runs the jobs that are due and records each
completion in the job ledger through a fence, with its token. Leadership then moves. The old
leader, like a process that was paused in the middle of a job, wakes up and records that job's
completion with the token it started under. The fence rejects that write as stale, so every
job is recorded done exactly once.
"""

import sys
import tempfile
from typing import Dict, List, Optional, Tuple

import fencekit
import local_group


class Ledger:
    """The storage: job completions, each accepted only through the fence. The whole ledger is
    one fenced resource, so a new leader's first write fences every older token at once,
    whichever jobs it touches."""

    def __init__(self, fence: fencekit.Fence) -> None:
        self.fence = fence
        self.done: Dict[str, Tuple[int, int]] = {}
        self.rejected = 0

    def complete(self, job: str, token: fencekit.Token) -> bool:
        verdict = self.fence.check_key("ledger", token)
        if not verdict.accepted:
            self.rejected += 1
            print(f"  ledger: {job} by node {token.holder} (generation {token.generation}): "
                  f"REJECTED, {verdict.kind}")
            return False
        if job in self.done:
            raise SystemExit(f"{job} ran twice")
        self.done[job] = (token.generation, token.holder)
        print(f"  ledger: {job} done by node {token.holder} (generation {token.generation})")
        return True


def run_due_jobs(node: fencekit.Node, ledger: Ledger, jobs: List[str]) -> Optional[str]:
    """Runs the due jobs while this node leads; returns the job it was in the middle of when
    it lost its leadership, if any."""
    for job in jobs:
        if job in ledger.done:
            continue
        leadership = node.leadership()
        if leadership is None:
            return job
        ledger.complete(job, leadership.token)
    return None


def main() -> int:
    with tempfile.TemporaryDirectory() as root:
        nodes = local_group.start(root, 3, cluster=7)
        fence = fencekit.Fence(f"{root}/ledger")
        ledger = Ledger(fence)
        try:
            first, leadership = local_group.leader(nodes)
            print(f"node {first + 1} leads (generation {leadership.token.generation})")
            run_due_jobs(nodes[first], ledger, ["backup-00:00", "report-00:00"])
            # Node `first` starts the next job with its token, then is paused; meanwhile its
            # lease ends and another node takes over.
            paused_job, paused_token = "backup-01:00", leadership.token
            nodes[first].step_down()
            second, leadership = local_group.leader(nodes, exclude=first)
            print(f"node {second + 1} leads (generation {leadership.token.generation})")
            run_due_jobs(nodes[second], ledger, ["backup-01:00", "report-01:00"])
            print(f"node {first + 1} wakes up and records the job it started before the pause:")
            ledger.complete(paused_job, paused_token)
        finally:
            fence.close()
            for node in nodes:
                node.close()
        print(f"jobs done exactly once: {len(ledger.done)}; stale writes rejected: {ledger.rejected}")
        return 0 if ledger.rejected == 1 and len(ledger.done) == 4 else 1


if __name__ == "__main__":
    sys.exit(main())
