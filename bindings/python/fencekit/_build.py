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


# fkpy_log is the log callback (fencekit/logs.py), a Python function cffi makes callable from
# C. C glue compiled into the extension for the hot path: the token as two integers (cheaper to
# convert than a struct) and the verdict kept in a C thread-local, read back only when it is
# not a plain acceptance, so that Python needs no per-thread buffer of its own.
GLUE = """
static __thread fk_verdict fkpy_last;

static int64_t fkpy_check(const fk_fence *fence, uint32_t resource, uint64_t generation,
                          uint64_t holder) {
    fk_token token = {generation, holder};
    fk_status status = fk_fence_check(fence, resource, token, &fkpy_last);
    return status != FK_STATUS_OK ? -(int64_t)status : (int64_t)fkpy_last.kind;
}

static void fkpy_last_verdict(fk_verdict *out) { *out = fkpy_last; }
"""
GLUE_DECLARATIONS = """
int64_t fkpy_check(const fk_fence *fence, uint32_t resource, uint64_t generation, uint64_t holder);
void fkpy_last_verdict(fk_verdict *out);
extern "Python" void fkpy_log(void *context, fk_log_level level, const char *target, const char *message);
"""

ffibuilder = FFI()
ffibuilder.cdef(declarations(HEADER.read_text()) + GLUE_DECLARATIONS)
ffibuilder.set_source(
    "fencekit._native",
    '#include "fencekit.h"\n' + GLUE,
    include_dirs=[str(HEADER.parent)],
    extra_objects=[str(library_dir() / "libfencekit.a")],
    libraries=NATIVE_LIBS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
