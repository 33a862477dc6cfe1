"""Builds fencekit's compiled extension, its wheel and its source distribution.

- build_ext builds libfencekit.a with cargo first (fencekit/_build.py), then compiles cffi's
  extension against it: an abi3 module (compiled against the limited API of CPython 3.10, the
  first with METH_FASTCALL, which Fence.check uses), so the wheel is tagged cp310-abi3 and one
  wheel serves CPython 3.10 and later.
- build works in a new temporary directory each time, never in ./build: setuptools reuses what
  it finds there by file times (an extension already linked, a module since deleted), so a
  build/ left by an earlier run could ship a library older than the one cargo just built.
- sdist packs the Rust workspace the extension is built from into rust/ (see `pack_workspace`),
  so that a machine with cargo builds the wheel from the sdist alone.
"""

import atexit
import importlib.util
import pathlib
import re
import shutil
import subprocess
import tempfile

from setuptools import setup
from setuptools.command.build import build
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = pathlib.Path(__file__).resolve().parent


def load_builder():
    # By path: importing the package `fencekit` would import the extension being built.
    spec = importlib.util.spec_from_file_location("fencekit_build", HERE / "fencekit" / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


builder = load_builder()

# What `cargo build -p fencekit-ffi` reads, by directory of the workspace: its manifest and
# lock, and the crates libfencekit is made of (fencekit-ffi and its path dependencies, the
# kernel and the plugin host). Tests, benches and the other members stay in the repository.
PACKED = {
    ".": ["Cargo.toml", "Cargo.lock", "LICENSE"],
    "core": ["Cargo.toml", "README.md", "LICENSE", "src", "examples"],
    "plugins": ["Cargo.toml", "README.md", "LICENSE", "src", "sdk"],
    "ffi": ["Cargo.toml", "README.md", "build.rs", "src", "include"],
}
PACKED_MEMBERS = sorted(crate for crate in PACKED if crate != ".")


def locked_packages(lock: pathlib.Path) -> set:
    return set(re.findall(r'(?m)^name = "([^"]+)"\nversion = "([^"]+)"', lock.read_text()))


def pack_workspace(source: pathlib.Path, dest: pathlib.Path) -> None:
    """Copies the PACKED files of the workspace at `source` to `dest`, as a workspace of the
    PACKED crates alone, with a Cargo.lock that `cargo build --locked` accepts there."""
    for crate, names in PACKED.items():
        for name in names:
            origin, copy = source / crate / name, dest / crate / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.copytree(origin, copy, ignore=shutil.ignore_patterns("target", "__pycache__"))
            else:
                shutil.copy2(origin, copy)

    manifest = dest / "Cargo.toml"
    members = ", ".join(f'"{crate}"' for crate in PACKED_MEMBERS)
    note = "# In the Python source distribution: only the crates libfencekit is made of.\n"
    text, found = re.subn(
        rf"(?m)^(?:{re.escape(note)})?members = \[[^\]]*\]$",
        f"{note}members = [{members}]",
        manifest.read_text(),
    )
    if found != 1:
        raise builder.BuildError(f"{source / 'Cargo.toml'}: no single `members = [...]` line to rewrite")
    manifest.write_text(text)

    # The repository's lock names the other members' dependencies too, and `--locked` refuses
    # a lock that cargo would change; cargo prunes it here (the versions stay as locked).
    cargo = shutil.which("cargo")
    if cargo is None:
        raise builder.BuildError("making the sdist needs cargo on PATH: it prunes Cargo.lock to the packed crates")
    subprocess.run(
        [cargo, "metadata", "--format-version", "1", "--manifest-path", str(manifest)],
        stdout=subprocess.DEVNULL,
        check=True,
    )
    changed = locked_packages(dest / "Cargo.lock") - locked_packages(source / "Cargo.lock")
    if changed:
        raise builder.BuildError(f"pruning Cargo.lock changed locked versions: {sorted(changed)}")


class Build(build):
    def finalize_options(self):
        if self.build_base == "build":  # the default, not a --build-base given on purpose
            self.build_base = tempfile.mkdtemp(prefix="fencekit-build-")
            atexit.register(shutil.rmtree, self.build_base, True)
        super().finalize_options()


class BuildPy(build_py):
    def find_package_modules(self, package, package_dir):
        # The builder stays out of the wheel: installed, it has no header to read. (The sdist
        # gets it from MANIFEST.in.)
        modules = super().find_package_modules(package, package_dir)
        return [entry for entry in modules if (entry[0], entry[1]) != ("fencekit", "_build")]


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        # Relink always (an in-place build's extension in the tree has the same trap as build/).
        self.force = True

    def build_extensions(self):
        # The interpreter's link command may carry its own build's rpath (pyenv's does:
        # -Wl,-rpath,<its prefix>/lib). The extension needs no search path (it links the libc
        # family only), and a wheel must not name a directory of the machine that built it.
        self.compiler.linker_so = [arg for arg in self.compiler.linker_so if not arg.startswith("-Wl,-rpath")]
        super().build_extensions()

    def run(self):
        library = str(builder.build_library())
        for extension in self.extensions:
            if extension.name == "fencekit._native" and library not in extension.extra_objects:
                extension.extra_objects.append(library)
        super().run()


class Sdist(sdist):
    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        pack_workspace(builder.workspace(), pathlib.Path(base_dir) / "rust")


setup(
    cffi_modules=["fencekit/_build.py:ffibuilder"],
    cmdclass={"build": Build, "build_py": BuildPy, "build_ext": BuildExt, "sdist": Sdist},
    # The extension uses the limited API of 3.10 only (_build.py): tag the wheel abi3, usable
    # by CPython 3.10 (requires-python) and every later version.
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
