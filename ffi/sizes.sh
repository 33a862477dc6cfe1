#!/bin/sh
# Builds libfencekit with and without the WebAssembly plugin host (the ffi crate's `plugins`
# feature) and reports each library's size: as built, and stripped as `make install` strips
# it (the shared library of everything but its exported symbols, the static one of its debug
# information). The build without plugins is copied to MINIMAL_DIR; the full build is left in
# place in the target directory.
#
#   sizes.sh TARGET_DIR MINIMAL_DIR
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
target=$1 minimal=$2
build() {
    CARGO_TARGET_DIR="$target" cargo build --release --locked -q -p fencekit-ffi \
        --manifest-path "$root/Cargo.toml" "$@"
}

build --no-default-features
rm -rf "$minimal"
mkdir -p "$minimal"
cp "$target/release/libfencekit.a" "$target/release/libfencekit.so" "$minimal/"
build

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
size() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
printf '%-22s %-14s %-14s\n' "libfencekit" "as built" "stripped"
for variant in full minimal; do
    if [ "$variant" = full ]; then dir="$target/release"; else dir="$minimal"; fi
    strip --strip-unneeded "$dir/libfencekit.so" -o "$scratch/so"
    strip --strip-debug "$dir/libfencekit.a" -o "$scratch/a"
    printf '%-22s %-14s %-14s\n' "$variant .so" "$(mib "$(size "$dir/libfencekit.so")")" "$(mib "$(size "$scratch/so")")"
    printf '%-22s %-14s %-14s\n' "$variant .a" "$(mib "$(size "$dir/libfencekit.a")")" "$(mib "$(size "$scratch/a")")"
done
