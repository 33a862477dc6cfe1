"""The node's configuration, typed: what `Node(config)` takes (ffi/README.md, "The node").

A `NodeConfig` is a plain dict at run time; the types let a checker (mypy, pyright) catch a
misspelt or mistyped field before the library refuses it. The library checks every value
and names the field at fault (InvalidConfigError); paths may be `pathlib.Path`s.
"""

from __future__ import annotations

import os
from typing import List, TypedDict, Union

PathLike = Union[str, "os.PathLike[str]"]


class PeerConfig(TypedDict, total=False):
    """Another member: `id` and `addr` ("10.0.0.2:7001") are required; `descriptor`
    describes it to a tie-breaker policy ("zone=a")."""

    id: int
    addr: str
    descriptor: str


class TlsConfig(TypedDict, total=False):
    """Mutual TLS: either `dir` (holding node.crt, node.key and ca.crt, as `make_dev_certs`
    and `fencekit certs init` make it) or all three of `cert`, `key` and `ca`."""

    dir: PathLike
    cert: PathLike
    key: PathLike
    ca: PathLike


class TimingConfig(TypedDict, total=False):
    """Raft's and the lease's timing; every field optional, and every member must use the
    same. A timing whose lease could outlive a follower's vote-refusal window is refused."""

    tick_ms: int
    election_tick: int
    heartbeat_tick: int
    max_drift: float
    margin_ms: int


class _NodeConfigRequired(TypedDict):
    id: int
    cluster: int
    data_dir: PathLike
    listen: str


class NodeConfig(_NodeConfigRequired, total=False):
    """A node's configuration. Required: `id` (1 to 2**64 - 1), `cluster`, `data_dir`,
    `listen` ("127.0.0.1:7001"), and its security: `tls`, or `insecure: True` (anyone who
    reaches the port can join: experiments on one machine only), never both.

    Optional: `peers` (the other members), `voters` (default: this node and every peer),
    `join` (start with no voters, to be added to a running group), `segment_size` (bytes
    per log segment file, 64 KiB to 1 GiB), `timing`, `descriptor` (this node, to a
    tie-breaker policy), `test_hooks` (tests only: enables `Node._panic_for_testing`).
    Unknown fields are refused.
    """

    peers: List[PeerConfig]
    voters: List[int]
    join: bool
    segment_size: int
    timing: TimingConfig
    descriptor: str
    tls: TlsConfig
    insecure: bool
    test_hooks: bool
