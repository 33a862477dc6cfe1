"""Development certificates: a CA and node certificates for a secure test group, the same
files `fencekit certs init` and `fencekit certs add` make. For tests, samples and trying
fencekit out; a production group uses its own PKI with the same identities
(fencekit://<cluster>/<node>).

    certs = fencekit.make_dev_certs("/tmp/group/certs", cluster=7, nodes=[1, 2, 3])
    config = {..., "tls": {"dir": certs[1]}}       # certs[n] == dev_cert_dir(directory, n)

The directory holds the CA (`ca.crt`, and `ca.key`, which can mint members: keep it private)
and, per node, `node-<n>/` with `node.crt`, `node.key` (mode 0600) and `ca.crt`: what a
node's `"tls": {"dir": ...}` reads.
"""

from __future__ import annotations

import os
from typing import Dict, Iterable, Union

from ._native import ffi, lib
from .errors import InvalidArgumentError, check

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF


def _integer(value: object, what: str) -> int:
    """`value` as a uint64_t for the library (which refuses node id 0 itself)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} is an int, not {type(value).__name__}")
    if not 0 <= value <= _U64_MAX:
        low = 0 if what == "the cluster" else 1
        raise InvalidArgumentError(
            lib.FK_STATUS_INVALID_ARGUMENT, f"{what} {value}: must be {low} to 2**64 - 1"
        )
    return value


def dev_cert_dir(directory: PathLike, node: int) -> str:
    """Where node `node`'s files are under `directory`: `directory/node-<node>`, the
    directory to give as its configuration's `"tls": {"dir": ...}`."""
    return os.path.join(os.fsdecode(directory), f"node-{_integer(node, 'a node id')}")


def make_dev_certs(directory: PathLike, cluster: int, nodes: Iterable[int]) -> Dict[int, str]:
    """Makes a development CA for `cluster` in `directory` (created if missing) and a
    certificate for each node id of `nodes`. Returns each node's TLS directory
    (`dev_cert_dir`), by node id.

    TlsError if the directory holds a CA already (use `add_dev_cert` for one more node, or
    an empty directory); InvalidArgumentError for a node id of 0 or more than 1024 ids;
    StorageError if a file cannot be written."""
    cluster = _integer(cluster, "the cluster")
    ids = [_integer(node, "a node id") for node in nodes]
    encoded = os.fsencode(directory)
    array = ffi.new("uint64_t[]", ids) if ids else ffi.NULL
    check(lib.fk_dev_certs_init(encoded, len(encoded), cluster, array, len(ids)))
    return {node: dev_cert_dir(directory, node) for node in ids}


def add_dev_cert(directory: PathLike, node: int) -> str:
    """Makes a certificate for node `node` with the development CA in `directory` (made by
    `make_dev_certs`), for a node that joins later; returns its TLS directory. TlsError if
    the node has certificates already or `directory` holds no development CA."""
    node = _integer(node, "a node id")
    encoded = os.fsencode(directory)
    check(lib.fk_dev_certs_add(encoded, len(encoded), node))
    return dev_cert_dir(directory, node)
