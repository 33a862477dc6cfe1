"""A free local port for a node the tests start."""

import random
import socket


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
