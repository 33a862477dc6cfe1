"""basic: a storage fences the writes of its leaders (the same story as bindings/c/samples/basic)."""

import sys
import tempfile

import fencekit


def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        with fencekit.Fence(directory) as fence:
            jobs = fence.register("jobs/nightly-report")
            steps = [
                ("node 1 leads in generation 4", (4, 1)),
                ("node 1 writes again", (4, 1)),
                ("node 2 is elected in generation 5", (5, 2)),
                ("node 1 wakes from a pause and writes with its old token", (4, 1)),
            ]
            for what, token in steps:
                verdict = fence.check(jobs, token)
                print(f"{what}: {verdict.kind}")
            zombie = verdict
        with fencekit.Fence(directory) as fence:
            after_restart = fence.check_key("jobs/nightly-report", (4, 1))
            print(f"after a restart, node 1's old token: {after_restart.kind}")
            try:
                fence.check_key("jobs/nightly-report", (0, 1))
            except fencekit.InvalidTokenError as error:
                print(f"a token of generation 0: {error.status_name} ({error})")
    return 0 if zombie.kind == "stale" and after_restart.kind == "stale" else 1


if __name__ == "__main__":
    sys.exit(main())
