"""The cffi builder: compiles `fencekit._native` (cffi's API mode, which calls about twice as
fast as ABI mode or ctypes) and links libfencekit.a into it, so the installed package needs no
shared library at run time. The extension also carries `_fence_core.c`, the compiled
`Fence.check` (CPython's limited API of 3.10).

setup.py's build_ext calls `build_library()` before compiling the extension: it builds the
Rust library with `cargo build --release --locked -p fencekit-ffi` in the Rust workspace
(`workspace()`; CARGO_TARGET_DIR is honoured), or takes an already built libfencekit.a from
FENCEKIT_LIB_DIR. Nothing here runs cargo at import: setuptools executes this file for every
command (egg_info, sdist), and making a source distribution must not compile Rust.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

from cffi import FFI, recompiler
from setuptools.errors import BaseError

HERE = pathlib.Path(__file__).resolve().parent
PROJECT = HERE.parent
# The oldest cargo that builds the workspace (its rust-version; wasmtime 48 needs it).
CARGO_MIN = (1, 95)
DISTRIBUTION = "fencekit-kernel"
# What a Rust staticlib needs from the system (rustc --print native-static-libs on Linux).
NATIVE_LIBS = ["gcc_s", "util", "rt", "pthread", "m", "dl"]


def workspace() -> pathlib.Path:
    """The Rust workspace: `rust/` in an unpacked source distribution (setup.py's sdist puts
    the crates it needs there), else the repository two levels up."""
    packed = PROJECT / "rust"
    return packed if (packed / "Cargo.toml").is_file() else PROJECT.parents[1]


HEADER = workspace() / "ffi" / "include" / "fencekit.h"


class BuildError(BaseError):
    """A build that cannot go on. setuptools prints "error: <message>", without a traceback."""


def cargo_version(cargo: str) -> tuple:
    out = subprocess.run([cargo, "--version"], capture_output=True, text=True).stdout
    found = re.match(r"cargo (\d+)\.(\d+)", out)
    return (int(found[1]), int(found[2])) if found else ()


def build_library() -> pathlib.Path:
    """libfencekit.a, built now with cargo unless FENCEKIT_LIB_DIR names one."""
    given = os.environ.get("FENCEKIT_LIB_DIR")
    if given:
        library = pathlib.Path(given).resolve() / "libfencekit.a"
        if not library.is_file():
            raise BuildError(f"FENCEKIT_LIB_DIR={given}: there is no libfencekit.a in it")
        return library

    cargo = shutil.which("cargo")
    version = cargo_version(cargo) if cargo else ()
    if version < CARGO_MIN:
        found = f"found cargo {'.'.join(map(str, version)) or '?'} at {cargo}" if cargo else "no cargo on PATH"
        need = ".".join(map(str, CARGO_MIN))
        raise BuildError(
            f"{DISTRIBUTION}: building from source needs Rust's cargo {need} or later on PATH "
            f"({found}).\n"
            f"Install Rust (https://rustup.rs) and retry; or install a wheel (Linux x86_64, "
            f"CPython 3.10 or later), which needs no Rust, made where Rust is with `python -m "
            f"build` and `auditwheel repair` (the README's Install section; none is published "
            f"on PyPI yet):\n"
            f"    pip install ./wheelhouse/fencekit_kernel-*.whl\n"
            f"or set FENCEKIT_LIB_DIR to a directory holding a built libfencekit.a."
        )

    manifest = workspace() / "Cargo.toml"
    build = [cargo, "build", "--release", "--locked", "-p", "fencekit-ffi", "--manifest-path", str(manifest)]
    if subprocess.run(build).returncode != 0:
        raise BuildError(f"{' '.join(build)} failed (its output is above)")
    # Where cargo put it: CARGO_TARGET_DIR, a target-dir in a cargo config, or <workspace>/target.
    metadata = subprocess.run(
        [cargo, "metadata", "--format-version", "1", "--no-deps", "--manifest-path", str(manifest)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return pathlib.Path(json.loads(metadata)["target_directory"]) / "release" / "libfencekit.a"


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


# The base class of fencekit.Fence, whose check and check_from are CPython functions
# (METH_FASTCALL), compiled after the glue; fence.py installs it with fkpy_core_install.
FENCE_CORE = HERE / "_fence_core.c"

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

static int64_t fkpy_check_from(const fk_fence *fence, uint32_t resource, uint32_t source,
                               uint64_t generation, uint64_t holder) {
    fk_token token = {generation, holder};
    fk_status status = fk_fence_check_from(fence, resource, source, token, &fkpy_last);
    return status != FK_STATUS_OK ? -(int64_t)status : (int64_t)fkpy_last.kind;
}

static void fkpy_last_verdict(fk_verdict *out) { *out = fkpy_last; }
"""
GLUE_DECLARATIONS = """
int64_t fkpy_check(const fk_fence *fence, uint32_t resource, uint64_t generation, uint64_t holder);
int64_t fkpy_check_from(const fk_fence *fence, uint32_t resource, uint32_t source, uint64_t generation,
                        uint64_t holder);
void fkpy_last_verdict(fk_verdict *out);
int fkpy_core_install(const char *module_name);
extern "Python" void fkpy_log(void *context, fk_log_level level, const char *target, const char *message);
"""

# The limited API of CPython 3.10, the first with METH_FASTCALL: cffi would define
# Py_LIMITED_API without a version, which hides it. setup.py tags the wheel cp310-abi3. Where
# cffi uses no limited API (a debug build of CPython), neither do we.
LIMITED_API = (
    [("Py_LIMITED_API", "0x030A0000")] if recompiler.USE_LIMITED_API and not hasattr(sys, "gettotalrefcount") else []
)

ffibuilder = FFI()
ffibuilder.cdef(declarations(HEADER.read_text()) + GLUE_DECLARATIONS)
# libfencekit.a is added to extra_objects by setup.py's build_ext, once cargo has built it.
ffibuilder.set_source(
    "fencekit._native",
    '#include "fencekit.h"\n' + GLUE + FENCE_CORE.read_text(),
    include_dirs=[str(HEADER.parent)],
    define_macros=LIMITED_API,
    libraries=NATIVE_LIBS,
    # The extension exports PyInit__native only (--exclude-libs: not libfencekit's fk_*
    # symbols, which could bind to another copy of the library in the process), keeps only the
    # code reachable from it (--gc-sections: the Rust objects are built one section per
    # function) and carries no symbol table or debug info (--strip-all): 17 MB instead of 44.
    # Rust panics keep their message and location; only backtraces lose function names.
    extra_link_args=["-Wl,--exclude-libs,ALL", "-Wl,--gc-sections", "-Wl,--strip-all"],
)
