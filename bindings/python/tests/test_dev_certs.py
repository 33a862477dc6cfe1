"""Development certificates, and TLS files a node refuses to use."""

import os
import pathlib
import stat

import pytest

import fencekit
from ports import free_port


def config(tmp_path: pathlib.Path, node: int, tls_dir: str) -> dict:
    return {"id": node, "cluster": 9, "data_dir": str(tmp_path / f"data-{node}"),
            "listen": f"127.0.0.1:{free_port()}", "tls": {"dir": tls_dir}}


def mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_make_dev_certs_lays_out_a_ca_and_a_directory_per_node(tmp_path: pathlib.Path) -> None:
    directory = tmp_path / "certs"
    dirs = fencekit.make_dev_certs(directory, 9, [1, 2, 3])
    assert dirs == {n: str(directory / f"node-{n}") for n in (1, 2, 3)}
    assert fencekit.dev_cert_dir(directory, 2) == dirs[2]
    assert fencekit.dev_cert_dir(str(directory), 2) == dirs[2]
    assert {"ca.crt", "ca.key", "node-1", "node-2", "node-3"} <= set(os.listdir(directory))
    assert mode(directory / "ca.key") == 0o600
    for n in (1, 2, 3):
        node = pathlib.Path(dirs[n])
        assert sorted(os.listdir(node)) == ["ca.crt", "node.crt", "node.key"]
        assert mode(node / "node.key") == 0o600
        assert (node / "node.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert (directory / "node-1" / "ca.crt").read_bytes() == (directory / "ca.crt").read_bytes()
    # A node that joins later gets its certificate from the same CA.
    assert fencekit.add_dev_cert(directory, 4) == str(directory / "node-4")
    assert mode(directory / "node-4" / "node.key") == 0o600


def test_make_dev_certs_refuses_a_directory_that_holds_a_ca(tmp_path: pathlib.Path) -> None:
    fencekit.make_dev_certs(tmp_path, 9, [1])
    ca = (tmp_path / "ca.crt").read_bytes()
    with pytest.raises(fencekit.TlsError, match="already holds a CA") as refused:
        fencekit.make_dev_certs(tmp_path, 9, [1, 2])
    assert refused.value.status_name == "FK_STATUS_TLS"
    assert (tmp_path / "ca.crt").read_bytes() == ca and not (tmp_path / "node-2").exists()
    with pytest.raises(fencekit.TlsError, match="node 1 has certificates already"):
        fencekit.add_dev_cert(tmp_path, 1)


def test_bad_node_ids_and_types_are_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(fencekit.InvalidArgumentError, match="node id 0"):
        fencekit.make_dev_certs(tmp_path / "a", 9, [1, 0])
    for bad in (-1, 2**64):
        with pytest.raises(fencekit.InvalidArgumentError):
            fencekit.make_dev_certs(tmp_path / "b", 9, [bad])
        with pytest.raises(fencekit.InvalidArgumentError):
            fencekit.add_dev_cert(tmp_path / "b", bad)
    with pytest.raises(TypeError, match="int"):
        fencekit.make_dev_certs(tmp_path / "c", 9, ["1"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="int"):
        fencekit.make_dev_certs(tmp_path / "c", 9, [True])
    with pytest.raises(TypeError):
        fencekit.make_dev_certs(tmp_path / "c", 9, 3)  # type: ignore[arg-type]
    with pytest.raises(fencekit.InvalidArgumentError):
        fencekit.make_dev_certs(tmp_path / "c", 9, range(1, 1026))
    with pytest.raises(fencekit.InvalidArgumentError):
        fencekit.make_dev_certs("", 9, [1])
    # None of these made a CA.
    assert not any((tmp_path / d / "ca.key").exists() for d in "abc")
    # No CA to sign with: the error names the missing file.
    with pytest.raises(fencekit.FencekitError, match="ca"):
        fencekit.add_dev_cert(tmp_path / "nothing", 1)


def test_a_node_refuses_a_key_others_can_read(tmp_path: pathlib.Path) -> None:
    dirs = fencekit.make_dev_certs(tmp_path / "certs", 9, [1])
    key = pathlib.Path(dirs[1]) / "node.key"
    key.chmod(0o644)
    with pytest.raises(fencekit.TlsError, match="node.key") as refused:
        fencekit.Node(config(tmp_path, 1, dirs[1]))
    assert refused.value.status_name == "FK_STATUS_TLS"
    assert "readable by its group or others" in str(refused.value)
    key.chmod(0o600)
    with fencekit.Node(config(tmp_path, 1, dirs[1])):
        pass


def test_a_node_refuses_a_certificate_naming_another_node(tmp_path: pathlib.Path) -> None:
    dirs = fencekit.make_dev_certs(tmp_path / "certs", 9, [1, 2])
    with pytest.raises(fencekit.TlsError, match="node.crt.*node 2"):
        fencekit.Node(config(tmp_path, 1, dirs[2]))
    # ... and one of another cluster.
    other = fencekit.make_dev_certs(tmp_path / "other", 10, [1])
    with pytest.raises(fencekit.TlsError, match="node.crt.*cluster 10"):
        fencekit.Node(config(tmp_path, 1, other[1]))
