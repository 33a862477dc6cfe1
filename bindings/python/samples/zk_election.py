"""A scheduler elected with ZooKeeper (kazoo's Election), made safe by fencing its storage.

Several worker processes contend in a kazoo `Election`; the leader runs a cron-like loop
(job n is due at start + n x period; a leader catches up on jobs not done). The storage (a
process of its own here: this driver) checks the leader's token with fencekit's `Fence` on
the read ("is job n done?") and on the write ("job n done"), each under the storage's one
lock, as `check_from` with the ensemble's source. The token is the leader's znode's czxid and
session (`fencekit.zookeeper.election_token`), read once when it is elected.

The drill, `--rounds` times: the leader is SIGSTOPped in the middle of a job, left stopped
past its session timeout (ZooKeeper expires its session, deletes its znode, and another worker
is elected and runs the unfinished job again), then SIGCONTed. The zombie finishes its job body
(it cannot know it was deposed: a check of its session state before the write narrows the
window, and a pause between that check and the write reopens it) and writes "done".

- Unfenced (the control), the zombie's write lands: the job is recorded twice. The drill must
  show it at least once, or it could not fail.
- Fenced, the new leader presented its token before reading, so the zombie's token is stale
  and its write is refused: 0 recorded twice. The job *body* still ran again (the zombie's
  ran to its end): fencing protects what goes through the fenced storage; side effects
  elsewhere need idempotency keys.

Run it against a ZooKeeper (tests/zookeeper.sh starts one on a private port):

    python samples/zk_election.py --zk 127.0.0.1:2181 --session-timeout 2 --rounds 3

`--json` prints one JSON object per mode instead of the table (failover times, recorded twice,
job bodies run again, zombie writes refused); the exit status is 0 when fenced had 0 recorded
twice with every zombie write refused and the control showed a double run. ZooKeeper must allow
the session timeout: its minSessionTimeout defaults to 2 x tickTime (4 s with tickTime=2000).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, Dict, List, Optional, Tuple

RESOURCE = "scheduler/jobs"


# --- the storage ----------------------------------------------------------------------------


class Storage:
    """Job records, fenced (or not, for the control). Every request is handled under one lock:
    the token check and the read or write it admits happen together, so no other leader's
    check can come between them."""

    def __init__(self, fence: Any, source: str) -> None:
        self.fence = fence
        self.source = source
        self.resource = fence.register(RESOURCE) if fence is not None else None
        self.cond = threading.Condition()
        self.records: Dict[int, List[Tuple[int, Any]]] = {}  # job -> [(worker, token)]
        self.bodies: Dict[int, List[int]] = {}  # job -> workers whose body ran it (a side effect)
        # (time, op, worker, job, admitted): what the drill watches.
        self.events: List[Tuple[float, str, int, int, bool]] = []
        self.timeouts: Dict[int, int] = {}  # worker -> negotiated session timeout (ms)

    def _admit(self, token: Any) -> Tuple[bool, str]:
        if self.fence is None:
            return True, "unfenced"
        import fencekit

        verdict = self.fence.check_from(self.resource, self.source, fencekit.Token(*token))
        return bool(verdict), str(verdict.kind)

    def handle(self, request: Dict[str, Any]) -> Dict[str, Any]:
        op, worker, job = request["op"], int(request["worker"]), int(request.get("job", 0))
        with self.cond:
            now = time.monotonic()
            answer: Dict[str, Any] = {}
            if op == "hello":
                self.timeouts[worker] = int(request["timeout_ms"])
                admitted = True
            elif op == "body":
                # The job's body started: outside the storage, so nothing fences it.
                self.bodies.setdefault(job, []).append(worker)
                admitted = True
            else:
                try:
                    admitted, answer["verdict"] = self._admit(request["token"])
                except (TypeError, ValueError) as e:  # a bad token is refused, never admitted
                    admitted, answer["verdict"] = False, f"error: {e}"
                if admitted and op == "claim":
                    # Fence-before-read: the new leader's token is now the mark, so a deposed
                    # leader's later write is stale; then it reads what is done.
                    answer["last_done"] = max(self.records, default=0)
                elif admitted and op == "begin":
                    answer["done"] = job in self.records
                elif admitted and op == "commit":
                    self.records.setdefault(job, []).append((worker, request["token"]))
            answer["ok"] = admitted
            self.events.append((now, op, worker, job, admitted))
            self.cond.notify_all()
            return answer

    def wait_for(self, what: Any, timeout: float) -> Any:
        """The first event after the events seen so far (or any, with `what(events)`) for
        which `what` answers something; None after `timeout`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = what(self.events)
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)


def serve(storage: Storage, path: str) -> socketserver.ThreadingUnixStreamServer:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            try:
                for line in self.rfile:
                    answer = storage.handle(json.loads(line))
                    self.wfile.write(json.dumps(answer).encode() + b"\n")
            except (ConnectionResetError, BrokenPipeError):
                pass  # a worker ended

    server = socketserver.ThreadingUnixStreamServer(path, Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --- a worker: election, cron loop, job bodies ------------------------------------------------


def worker(args: argparse.Namespace) -> None:
    from kazoo.client import KazooClient, KazooState

    from fencekit.zookeeper import election_token

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    # kazoo tells of every dropped connection and expired session (the drill causes both).
    logging.basicConfig(level=logging.ERROR, format=f"worker {args.id}: %(name)s: %(message)s")
    conn = socket.socket(socket.AF_UNIX)
    conn.connect(args.socket)
    replies = conn.makefile("rb")

    def call(op: str, **fields: Any) -> Dict[str, Any]:
        conn.sendall(json.dumps({"op": op, "worker": args.id, **fields}).encode() + b"\n")
        answer: Dict[str, Any] = json.loads(replies.readline())
        return answer

    client = KazooClient(hosts=args.zk, timeout=args.session_timeout)
    client.start(timeout=30)
    call("hello", timeout_ms=getattr(client, "_session_timeout", 0) or 0)
    election = client.Election(args.path, f"worker-{args.id}")

    def lead() -> None:
        # Read the token once per leadership, from the znode that won; never reuse an
        # earlier leadership's.
        token = election_token(election)
        session = client.client_id
        if token is None or session is None:
            return
        token_fields = [token.generation, token.holder]
        claimed = call("claim", token=token_fields)
        if not claimed["ok"]:
            return
        job = claimed["last_done"] + 1
        while True:
            # Between jobs, stop leading once the session is in doubt. (This check cannot
            # protect the job under way: see the module's docstring.)
            if client.state != KazooState.CONNECTED or client.client_id != session:
                return
            due = args.start + job * args.period
            if due > time.time():
                time.sleep(min(due - time.time(), 0.05))
                continue
            begun = call("begin", job=job, token=token_fields)
            if not begun["ok"]:
                return  # deposed: the fence refused our token
            if not begun["done"]:
                call("body", job=job)
                for _ in range(args.job_steps):  # the job's body: work in small steps
                    time.sleep(args.job_seconds / args.job_steps)
                if not call("commit", job=job, token=token_fields)["ok"]:
                    return  # deposed while working: the write was refused
            job += 1

    while True:
        try:
            election.run(lead)
        except Exception as e:  # ZooKeeper unreachable, a session lost mid-call: contend again
            print(f"worker {args.id}: {type(e).__name__}: {e}", file=sys.stderr)
            time.sleep(0.2)


# --- the drill --------------------------------------------------------------------------------


def drill(args: argparse.Namespace, fenced: bool) -> Dict[str, Any]:
    import fencekit

    work = tempfile.mkdtemp(prefix="zk-election-")
    fence = fencekit.Fence(pathlib.Path(work) / "fence") if fenced else None
    source = fencekit.zookeeper_source(args.ensemble)
    storage = Storage(fence, source)
    sock = str(pathlib.Path(work) / "storage.sock")
    server = serve(storage, sock)
    path = f"/fencekit-samples/zk_election/{uuid.uuid4().hex}"
    start = time.time()
    procs: Dict[int, subprocess.Popen[bytes]] = {}
    for i in range(1, args.workers + 1):
        command = [
            sys.executable, os.path.abspath(__file__), "--worker", str(i), "--zk", args.zk,
            "--socket", sock, "--path", path, "--start", repr(start),
            "--session-timeout", str(args.session_timeout), "--period", str(args.period),
            "--job-seconds", str(args.job_seconds), "--job-steps", str(args.job_steps),
        ]  # fmt: skip
        procs[i] = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    failovers: List[float] = []
    zombies = {"refused": 0, "recorded": 0}
    problems: List[str] = []
    wait = args.session_timeout * 4 + 15
    try:
        round_, attempts = 0, 0
        while round_ < args.rounds and attempts < args.rounds * 3:
            attempts += 1
            # The leader, in the middle of a job's body: the latest to claim, once it starts one.
            seen = len(storage.events)

            def mid_job(events: List[Tuple[float, str, int, int, bool]]) -> Optional[Tuple[int, int]]:
                claims = [e for e in events if e[1] == "claim" and e[4]]
                if not claims:
                    return None
                leader = claims[-1][2]
                bodies = [e for e in events[seen:] if e[1] == "body" and e[2] == leader]
                return (leader, bodies[-1][3]) if bodies else None

            found = storage.wait_for(mid_job, wait)
            if found is None:
                problems.append(f"round {round_ + 1}: no leader started a job")
                break
            leader, job = found
            time.sleep(args.job_seconds * 0.3)
            with storage.cond:
                if any(e[1] == "commit" and e[2] == leader and e[3] == job for e in storage.events):
                    continue  # missed the middle of that job: try the next one
                round_ += 1
                procs[leader].send_signal(signal.SIGSTOP)
                stopped_at = time.monotonic()
                stop_index = len(storage.events)
            # Failover: another worker's token presented (its claim admitted).
            successor = storage.wait_for(
                lambda ev: next((e for e in ev[stop_index:] if e[1] == "claim" and e[4] and e[2] != leader), None),
                wait,
            )
            if successor is None:
                procs[leader].send_signal(signal.SIGCONT)
                problems.append(f"round {round_}: no successor within {wait:.0f} s")
                break
            failovers.append(successor[0] - stopped_at)
            # Let the successor read that the zombie's job is not done and start it again,
            # then wake the zombie.
            storage.wait_for(
                lambda ev: any(e[1] == "begin" and e[2] == successor[2] for e in ev[stop_index:]), wait
            )
            procs[leader].send_signal(signal.SIGCONT)
            # The zombie finishes its body and writes.
            write = storage.wait_for(
                lambda ev: next(
                    (e for e in ev[stop_index:] if e[1] == "commit" and e[2] == leader and e[3] == job), None
                ),
                wait,
            )
            if write is None:
                problems.append(f"round {round_}: the zombie (worker {leader}) never wrote job {job}")
                break
            zombies["recorded" if write[4] else "refused"] += 1
            # And the successor records the job it ran again.
            storage.wait_for(
                lambda ev: any(
                    e[1] == "commit" and e[4] and e[2] != leader and e[3] >= job for e in ev[stop_index:]
                ),
                wait,
            )
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        server.shutdown()
        server.server_close()
        if fence is not None:
            fence.close()
        shutil.rmtree(work, ignore_errors=True)
    if round_ < args.rounds and not problems:
        problems.append(f"{round_} of {args.rounds} rounds: the leader was never caught in the middle of a job")
    with storage.cond:
        twice = sorted(job for job, records in storage.records.items() if len(records) > 1)
        again = sum(len(workers) - 1 for workers in storage.bodies.values() if len(workers) > 1)
        result: Dict[str, Any] = {
            "sample": "zk_election",
            "mode": "fenced" if fenced else "unfenced",
            "session_timeout_s": args.session_timeout,
            "negotiated_timeout_ms": sorted(set(storage.timeouts.values())),
            "workers": args.workers,
            "rounds": args.rounds,
            "rounds_run": len(failovers),
            "failover_s": [round(f, 3) for f in failovers],
            "recorded_twice": len(twice),
            "jobs_recorded_twice": twice,
            "job_bodies_ran_again": again,
            "zombie_writes_refused": zombies["refused"],
            "zombie_writes_recorded": zombies["recorded"],
            "jobs_recorded": len(storage.records),
            "refused_checks": sum(1 for e in storage.events if e[1] in ("claim", "begin", "commit") and not e[4]),
            "problems": problems,
        }
    if fenced:
        result["ok"] = (
            not problems and len(twice) == 0 and zombies["refused"] == args.rounds and zombies["recorded"] == 0
        )
    else:
        # The control must show the hazard, or the drill could not tell fencing from luck.
        result["ok"] = not problems and len(twice) >= 1
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zk", default=os.environ.get("FENCEKIT_ZK_HOSTS", "127.0.0.1:2181"),
                        help="ZooKeeper's host:port (default $FENCEKIT_ZK_HOSTS or 127.0.0.1:2181)")
    parser.add_argument("--ensemble", default="sample-zk", help="the ensemble's name in the token source")
    parser.add_argument("--session-timeout", type=float, default=2.0, help="seconds (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="SIGSTOP drills per mode (default 2)")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--mode", choices=("both", "fenced", "unfenced"), default="both")
    parser.add_argument("--period", type=float, default=0.2, help="seconds between jobs' due times")
    parser.add_argument("--job-seconds", type=float, default=0.8, help="how long a job's body runs")
    parser.add_argument("--job-steps", type=int, default=16, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print one JSON object per mode, no table")
    parser.add_argument("--worker", type=int, dest="id", help=argparse.SUPPRESS)
    parser.add_argument("--socket", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.id is not None:
        worker(args)
        return 0
    if args.rounds < 1 or args.workers < 2 or args.session_timeout <= 0:
        parser.error("--rounds 1 or more, --workers 2 or more, --session-timeout above 0")

    modes = {"both": (False, True), "fenced": (True,), "unfenced": (False,)}[args.mode]
    results = [drill(args, fenced) for fenced in modes]
    if args.json:
        for result in results:
            print(json.dumps(result), flush=True)
    else:
        print(f"ZooKeeper election, {args.workers} workers, session timeout {args.session_timeout:g} s, "
              f"{args.rounds} SIGSTOP drills per mode")
        print(f"{'mode':9} {'failover (s)':22} {'recorded twice':>14} {'job body ran again':>19} "
              f"{'zombie writes refused':>22}")
        for r in results:
            failover = " ".join(f"{f:.2f}" for f in r["failover_s"]) or "-"
            refused = f"{r['zombie_writes_refused']} of {r['zombie_writes_refused'] + r['zombie_writes_recorded']}"
            print(f"{r['mode']:9} {failover:22} {r['recorded_twice']:>14} {r['job_bodies_ran_again']:>19} "
                  f"{refused:>22}")
            for problem in r["problems"]:
                print(f"  {r['mode']}: {problem}")
    failed = [r["mode"] for r in results if not r["ok"]]
    for mode in failed:
        what = ("a job recorded twice or a zombie's write accepted" if mode == "fenced"
                else "no double run: the drill could not have caught one")
        print(f"zk_election: {mode}: {what}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
