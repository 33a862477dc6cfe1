"""Starts a group of fencekit nodes on local ports, for the samples (as bindings/go's
samples/internal/localgroup)."""

import logging
import random
import socket
import time
from typing import List, Tuple

import fencekit


def free_port() -> int:
    """A free port below the kernel's ephemeral range (32768 and up), which a node's own
    outbound connections draw from: a port picked there can be taken before the node binds it."""
    for _ in range(1000):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000..32000")


def start(root: str, size: int, cluster: int) -> List[fencekit.Node]:
    """`size` nodes of one cluster on free local ports, their logs under `root`. The group is
    secure, as any should be: its peers authenticate with mutual TLS, with development
    certificates made for it in `root`/certs (a CA, and node n's files in certs/node-<n>)."""
    # While a group starts (and stops) its members cannot reach each other yet: each says so
    # once, a warning that is noise in a sample. Show only errors.
    fencekit.set_log_level(logging.ERROR)
    ids = list(range(1, size + 1))
    tls_dirs = fencekit.make_dev_certs(f"{root}/certs", cluster, ids)
    ports = [free_port() for _ in range(size)]
    nodes = []
    for i, node in enumerate(ids):
        peers = [{"id": j + 1, "addr": f"127.0.0.1:{ports[j]}"} for j in range(size) if j != i]
        nodes.append(fencekit.Node({"id": node, "cluster": cluster, "data_dir": f"{root}/node-{node}",
                                    "listen": f"127.0.0.1:{ports[i]}", "peers": peers,
                                    "tls": {"dir": tls_dirs[node]}}))
    return nodes


def leader(nodes: List[fencekit.Node], exclude: int = -1) -> Tuple[int, fencekit.Leadership]:
    """Waits up to 10 s for a node other than nodes[exclude] to hold usable leadership."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for i, node in enumerate(nodes):
            leadership = node.leadership() if i != exclude else None
            if leadership is not None:
                return i, leadership
        time.sleep(0.01)
    raise SystemExit("no leader within 10 s")
