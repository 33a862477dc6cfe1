#!/bin/sh
# Builds a program with the commands of ffi/README.md ("Build and install") exactly as written
# there, against a scratch installation, and runs it with no LD_LIBRARY_PATH: so the README's
# recipes are the ones that are tested, and a change to either shows here.
#
#   readme_recipes.sh README PREFIX WORKDIR PROGRAM.c
#
# The commands are the README's lines, inside ```sh blocks, that start with "cc app.c": one
# linking fencekit (the shared library, found through its rpath) and one fencekit-static.
set -eu
readme=$1 prefix=$2 work=$3 program=$4

commands=$(sed -n '/^```sh$/,/^```$/p' "$readme" | grep '^cc app\.c ' || true)
shared=$(printf '%s\n' "$commands" | grep -v 'fencekit-static' || true)
static=$(printf '%s\n' "$commands" | grep 'fencekit-static' || true)
if [ "$(printf '%s\n' "$shared" | grep -c .)" -ne 1 ] || [ "$(printf '%s\n' "$static" | grep -c .)" -ne 1 ]; then
    echo "$readme: expected one 'cc app.c' command for fencekit and one for fencekit-static, found:" >&2
    printf '%s\n' "$commands" >&2
    exit 1
fi

rm -rf "$work"
mkdir -p "$work"
cp "$program" "$work/app.c"
prefix=$(cd "$prefix" && pwd)
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
unset LD_LIBRARY_PATH

build() { # build KIND COMMAND: runs COMMAND in the work directory, then the program it made
    echo "$1: $2"
    rm -f "$work/app"
    if ! (cd "$work" && sh -c "$2"); then
        echo "the $1 command of $readme does not build: $2" >&2
        exit 1
    fi
    if ! (cd "$work" && ./app >/dev/null); then
        echo "the program built by the $1 command of $readme does not run: $2" >&2
        exit 1
    fi
}

build shared "$shared"
if ! readelf -d "$work/app" | grep -q 'NEEDED.*libfencekit\.so'; then
    echo "the shared command of $readme does not link libfencekit.so" >&2
    exit 1
fi
build static "$static"
if readelf -d "$work/app" | grep -q 'libfencekit'; then
    echo "the static command of $readme links libfencekit.so" >&2
    exit 1
fi
echo "readme recipes: the shared (rpath) and static commands of $readme build and run"
