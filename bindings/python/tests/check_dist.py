"""Checks what `python -m build` and `auditwheel repair` made (test.sh runs it):

    python tests/check_dist.py SDIST WHEEL

- the wheel is tagged cp310-abi3 (one wheel for CPython 3.10 and later: Fence.check is a
  METH_FASTCALL function, in the limited API from 3.10) and manylinux (installs
  on any Linux of that glibc or newer), its metadata says the same, and it carries no library
  but its extension (auditwheel grafted none: nothing but the system's libc family is needed)
  and not the builder (fencekit/_build.py);
- the extension is fencekit/_native.abi3.so, stripped (no symbol table, no debug sections),
  exports only its module init function (libfencekit's symbols stay inside it) and names no
  library search path (RPATH/RUNPATH) of the machine that built it;
- the sdist carries the Rust workspace the extension is built from (rust/) and no build output.

Exits non-zero naming every failed check; prints the sizes. Not a pytest module: it runs with
the packaging tools, before the package is installed.
"""

import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

DISTRIBUTION = "fencekit_kernel"
EXTENSION = "fencekit/_native.abi3.so"
# What the extension is built from: without one of these, building from the sdist fails.
SDIST_NEEDS = [
    "rust/Cargo.toml",
    "rust/Cargo.lock",
    "rust/ffi/include/fencekit.h",
    "rust/ffi/build.rs",
    "rust/ffi/src/lib.rs",
    "rust/core/src/lib.rs",
    "rust/plugins/src/lib.rs",
    "fencekit/_build.py",
    "fencekit/_fence_core.c",
    "setup.py",
    "pyproject.toml",
]

failures = []


def check(ok: bool, what: str) -> None:
    if not ok:
        failures.append(what)


def sections(library: Path) -> list:
    out = subprocess.run(["readelf", "-SW", str(library)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"^\s*\[\s*\d+\]\s+(\S+)", out, re.M)


def exported(library: Path) -> set:
    """The defined global and weak symbols of the dynamic symbol table."""
    out = subprocess.run(["readelf", "--dyn-syms", "-W", str(library)], capture_output=True, text=True, check=True).stdout
    names = set()
    for line in out.splitlines():
        fields = line.split()
        # Num: Value Size Type Bind Vis Ndx Name
        if len(fields) >= 8 and fields[0].endswith(":") and fields[4] in ("GLOBAL", "WEAK") and fields[6] != "UND":
            names.add(fields[7].split("@")[0])
    return names


def check_wheel(wheel: Path) -> None:
    parts = re.fullmatch(rf"{DISTRIBUTION}-([^-]+)-([^-]+)-([^-]+)-([^-]+)\.whl", wheel.name)
    if parts is None:
        check(False, f"{wheel.name}: not a wheel of {DISTRIBUTION}")
        return
    version, python, abi, platforms = parts.groups()
    check(python == "cp310", f"{wheel.name}: python tag {python}, expected cp310")
    check(abi == "abi3", f"{wheel.name}: ABI tag {abi}, expected abi3")
    for platform in platforms.split("."):
        check(
            re.fullmatch(r"manylinux(_\d+_\d+|2014|2010|1)_x86_64", platform) is not None,
            f"{wheel.name}: platform tag {platform} is not manylinux (was auditwheel repair run?)",
        )

    with zipfile.ZipFile(wheel) as archive, tempfile.TemporaryDirectory() as scratch:
        names = archive.namelist()
        meta = archive.read(f"{DISTRIBUTION}-{version}.dist-info/WHEEL").decode()
        tags = set(re.findall(r"^Tag: (\S+)$", meta, re.M))
        expected = {f"{python}-{abi}-{platform}" for platform in platforms.split(".")}
        check(tags == expected, f"WHEEL's tags {sorted(tags)} are not the file name's {sorted(expected)}")
        check("Root-Is-Purelib: false" in meta, "WHEEL does not say Root-Is-Purelib: false")

        check("fencekit/_build.py" not in names, "the wheel carries the builder, fencekit/_build.py")
        check("fencekit/_fence_core.c" not in names, "the wheel carries C source, fencekit/_fence_core.c")
        libraries = sorted(name for name in names if re.search(r"\.so(\.|$)", name))
        check(libraries == [EXTENSION], f"the wheel's libraries are {libraries}, expected only {EXTENSION}")
        if EXTENSION not in names:
            return
        library = Path(archive.extract(EXTENSION, scratch))
        found = sections(library)
        kept = [name for name in found if name == ".symtab" or name.startswith((".debug", ".zdebug"))]
        check(not kept, f"{EXTENSION} is not stripped: it has {kept}")
        dynamic = subprocess.run(["readelf", "-dW", str(library)], capture_output=True, text=True, check=True).stdout
        paths = re.findall(r"\((?:RPATH|RUNPATH)\)\s+Library \w+: \[(.*)\]", dynamic)
        check(not paths, f"{EXTENSION} names library search paths of the build machine: {paths}")
        symbols = exported(library)
        extra = sorted(symbols - {"PyInit__native"})
        check(
            symbols == {"PyInit__native"},
            f"{EXTENSION} exports {len(extra)} symbols besides PyInit__native (such as {extra[:3]})"
            if extra
            else f"{EXTENSION} does not export PyInit__native",
        )
        print(f"wheel: {wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB; {EXTENSION}: {library.stat().st_size / 1e6:.1f} MB")


def check_sdist(sdist: Path) -> None:
    parts = re.fullmatch(rf"({DISTRIBUTION}-[^-]+)\.tar\.gz", sdist.name)
    if parts is None:
        check(False, f"{sdist.name}: not a source distribution of {DISTRIBUTION}")
        return
    root = parts[1]
    with tarfile.open(sdist) as archive:
        names = {name[len(root) + 1 :] for name in archive.getnames() if name.startswith(root + "/")}
    for need in SDIST_NEEDS:
        check(need in names, f"{sdist.name} lacks {need}")
    stray = sorted(name for name in names if re.search(r"(^|/)(target|build)/|\.so$|\.a$", name))
    check(not stray, f"{sdist.name} carries build output: {stray[:5]}")
    print(f"sdist: {sdist.name}: {sdist.stat().st_size / 1e3:.0f} kB, {len(names)} entries")


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    check_sdist(Path(sys.argv[1]))
    check_wheel(Path(sys.argv[2]))
    if failures:
        sys.exit("check_dist: FAILED\n  " + "\n  ".join(failures))
    print("check_dist: the sdist and the wheel are as expected")


if __name__ == "__main__":
    main()
