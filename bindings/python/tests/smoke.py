"""Smoke test of an installed fencekit-kernel (test.sh runs it in a new virtual environment
with no cargo on PATH, after installing the wheel): the package and its extension are the
installed ones, not the source tree's, and a fence opens, advances and refuses a stale token.
Not a pytest module: it runs before pytest is installed."""

import importlib.metadata
import pathlib
import sys
import sysconfig
import tempfile

import fencekit
from fencekit import _native


def fail(message: str) -> None:
    sys.exit(f"smoke: {message}")


def main() -> None:
    site = pathlib.Path(sysconfig.get_paths()["platlib"]).resolve()
    for module in (fencekit, _native):
        if site not in pathlib.Path(module.__file__).resolve().parents:
            fail(f"{module.__name__} comes from {module.__file__}, not from {site}")
    if not _native.__file__.endswith(".abi3.so"):
        fail(f"the extension is not an abi3 module: {_native.__file__}")
    version = importlib.metadata.version("fencekit-kernel")

    with tempfile.TemporaryDirectory() as directory, fencekit.Fence(directory) as fence:
        jobs = fence.register("smoke/jobs")
        kinds = [fence.check(jobs, token).kind for token in [(2, 1), (2, 1), (1, 1)]]
        if kinds != ["advanced", "accepted", "stale"]:
            fail(f"verdicts {kinds}, expected advanced, accepted, stale")
        if fence.check(jobs, (1, 1)):
            fail("a stale token's verdict reads as true")
    print(f"smoke: fencekit-kernel {version} from {site}: advanced, accepted, stale")


if __name__ == "__main__":
    main()
