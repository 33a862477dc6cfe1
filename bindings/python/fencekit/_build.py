"""The cffi builder: compiles `fencekit._native` (cffi's API mode, which calls about twice as
fast as ABI mode or ctypes) and links libfencekit.a into it, so the installed package needs no
shared library at run time.

It builds the Rust library first with `cargo build --release -p fencekit-ffi` in the
workspace two levels up (CARGO_TARGET_DIR is honoured). FENCEKIT_LIB_DIR points it at an
already built libfencekit.a instead.
"""

import os
import pathlib
import re
import subprocess

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]
HEADER = ROOT / "ffi" / "include" / "fencekit.h"
# What a Rust staticlib needs from the system (rustc --print native-static-libs on Linux).
NATIVE_LIBS = ["gcc_s", "util", "rt", "pthread", "m", "dl"]


def library_dir() -> pathlib.Path:
    given = os.environ.get("FENCEKIT_LIB_DIR")
    if given:
        return pathlib.Path(given)
    subprocess.run(
        ["cargo", "build", "--release", "--locked", "-p", "fencekit-ffi"],
        cwd=ROOT,
        check=True,
    )
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "release"


def declarations(header: str) -> str:
    """The header as cffi's cdef takes it: no preprocessor lines, no C++ guard."""
    out = []
    skipping = False
    for line in header.splitlines():
        if line.startswith("#ifdef __cplusplus"):
            skipping = True
            continue
        if skipping:
            skipping = not line.startswith("#endif")
            continue
        if line.startswith("#define FK_"):
            # cffi reads integer constants from `#define NAME value`.
            out.append(line)
            continue
        if line.startswith("#"):
            continue
        out.append(line)
    text = "\n".join(out)
    return re.sub(r"//[^\n]*", "", text)


ffibuilder = FFI()
ffibuilder.cdef(declarations(HEADER.read_text()))
ffibuilder.set_source(
    "fencekit._native",
    '#include "fencekit.h"',
    include_dirs=[str(HEADER.parent)],
    extra_objects=[str(library_dir() / "libfencekit.a")],
    libraries=NATIVE_LIBS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
