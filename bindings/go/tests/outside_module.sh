#!/bin/sh
# Builds a Go program outside the repository against the binding the way README.md's "Install"
# section says, with its commands run exactly as written there: so the documented steps are
# the tested ones, and a change to either shows here.
#
#   outside_module.sh WORKDIR [README]
#
# Without README it tests bindings/go/README.md, then shows that it catches a broken recipe:
# the same README without its PKG_CONFIG_PATH line must fail.
#
# The module is served, as it is in the working tree, from a file-based module proxy
# (GOPROXY=file://..., the layout proxy.golang.org serves), so `go get` fetches it as it would
# from a release: no replace directive, no CGO_* flags. The recipe runs with HOME set to a
# scratch directory (its $HOME/.local is the installation), CARGO_TARGET_DIR reused (the
# library is not rebuilt when it is up to date), and an empty module cache. The program, made
# static (the default) and shared (-tags fencekit_shared, found through its rpath with no
# LD_LIBRARY_PATH), opens a fence and checks that an old token is stale.
#
# The recipe is the first ```sh block after the line "<!-- recipe: outside_module.sh -->":
# the lines before "# In your module" run in the fencekit checkout, the rest in the program's
# module; a line with "fencekit_shared" builds the shared program. The version served is the
# library's with a "-test.N" suffix, N new each run; the recipe asks for @latest.
set -eu
work=$1
here=$(cd "$(dirname "$0")" && pwd)
module_dir=$(cd "$here/.." && pwd)
root=$(cd "$module_dir/../.." && pwd)
readme=${2:-$module_dir/README.md}
module=$(sed -n 's/^module //p' "$module_dir/go.mod")
# A version of its own per run: the go command caches what it read of a module version (in
# GOCACHE, which is kept), trusting that a version never changes; the working tree does.
version=v$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)-test.$(date +%s%N)

recipe=$(awk '/^<!-- recipe: outside_module.sh -->$/ {found = 1; next}
              found && /^```sh$/ {inside = 1; next}
              inside && /^```$/ {exit}
              inside {print}' "$readme")
in_checkout=$(printf '%s\n' "$recipe" | awk '/^# In your module/ {exit} {print}')
in_module=$(printf '%s\n' "$recipe" | awk 'found {print} /^# In your module/ {found = 1}')
static=$(printf '%s\n' "$in_module" | grep -v 'fencekit_shared' || true)
shared=$(printf '%s\n' "$in_module" | grep -E '^(export |go build .*fencekit_shared)' || true)
if [ -z "$in_checkout" ] || ! printf '%s\n' "$static" | grep -q '^go build' ||
    ! printf '%s\n' "$shared" | grep -q 'fencekit_shared'; then
    echo "$readme: no recipe (checkout part, then '# In your module', a go build and a fencekit_shared build) after <!-- recipe: outside_module.sh -->" >&2
    exit 1
fi

# The module cache Go makes is read-only: writable again, so that rm can remove it.
[ -d "$work" ] && chmod -R u+w "$work"
rm -rf "$work"
mkdir -p "$work/home" "$work/app" "$work/tmp"
work=$(cd "$work" && pwd)
trap 'chmod -R u+w "$work/home" 2>/dev/null || true' EXIT

# The module proxy: $module/@v/{list, VERSION.info, VERSION.mod, VERSION.zip}. The zip holds
# the module's files (tracked, or new and not ignored: the working tree is what is tested)
# under $module@$version/, as `go mod download` expects.
proxy=$work/proxy
at=$proxy/$module/@v
mkdir -p "$at"
echo "$version" >"$at/list"
printf '{"Version":"%s","Time":"2026-01-01T00:00:00Z"}\n' "$version" >"$at/$version.info"
cp "$module_dir/go.mod" "$at/$version.mod"
stage=$work/stage/$module@$version
mkdir -p "$stage"
# A directory with a go.mod of its own (etcdfence, samples/etcd_election) is another module:
# the zip of a release leaves it out, as the go command's zips do (and refuses one that has it).
nested=$(cd "$root" && git ls-files --cached --others --exclude-standard -- 'bindings/go/*/go.mod' |
    sed -e 's|^bindings/go/||' -e 's|/go.mod$|/|')
(cd "$root" && git ls-files --cached --others --exclude-standard -- bindings/go) |
    while read -r path; do
        [ -f "$root/$path" ] || continue # deleted in the working tree
        rel=${path#bindings/go/}
        for n in $nested; do
            case $rel in "$n"*) continue 2 ;; esac
        done
        mkdir -p "$stage/$(dirname "$rel")"
        cp "$root/$path" "$stage/$rel"
    done
(cd "$work/stage" && zip -q -r -X -D "$at/$version.zip" "$module@$version")

cat >"$work/app/go.mod" <<EOF
module example.com/app

go 1.24
EOF
cat >"$work/app/main.go" <<'EOF'
// A program outside the fencekit repository: a fence rejects an old token.
package main

import (
	"fmt"
	"os"

	fencekit "github.com/fencekit/fencekit/bindings/go"
)

func main() {
	dir, err := os.MkdirTemp("", "outside-module-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	if err := fencekit.CheckABI(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fence, err := fencekit.Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer fence.Close()
	jobs, err := fence.Register([]byte("jobs"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fence.Check(jobs, fencekit.Token{Generation: 5, Holder: 2})
	v, err := fence.Check(jobs, fencekit.Token{Generation: 4, Holder: 1})
	if err != nil || v.Kind != fencekit.VerdictStale {
		fmt.Fprintln(os.Stderr, "the old token:", v.Kind, err)
		os.Exit(1)
	}
	fmt.Println("fencekit", fencekit.Version(), "outside the repository: the old token is", v.Kind)
}
EOF

# What the recipe's user has: cargo and rustup where they were, a Go build cache (kept, for
# speed: it is keyed by content); what they do not: the repository's environment.
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
export GOCACHE="$(go env GOCACHE)"
export HOME="$work/home" GOPATH="$work/home/go" GOMODCACHE="$work/home/go/pkg/mod" TMPDIR="$work/tmp"
export GOPROXY="file://$proxy" GONOSUMDB="$module" GOFLAGS=-mod=mod GOTOOLCHAIN=local
unset PKG_CONFIG_PATH CGO_CFLAGS CGO_LDFLAGS LD_LIBRARY_PATH GOWORK

run() { # run KIND SCRIPT: the recipe's checkout lines, then SCRIPT in the program's module
    rm -f "$work/app/app"
    printf '%s: %s\n' "$1" "$(printf '%s\n' "$in_checkout" "$2" | grep -v '^#' | grep . | tr '\n' ';')"
    if ! sh -eu -c "cd '$root'
$in_checkout
cd '$work/app'
$2"; then
        echo "the recipe of $readme ($1) does not build: see above" >&2
        exit 1
    fi
    if ! (cd "$work/app" && ./app); then
        echo "the program built by the recipe of $readme ($1) does not run" >&2
        exit 1
    fi
}

planted=${2:+given}
status=0
run static "$static"
if grep -q '^replace' "$work/app/go.mod" || ! grep -q "$module $version" "$work/app/go.mod"; then
    echo "the program's go.mod does not require $module $version from the proxy:" >&2
    cat "$work/app/go.mod" >&2
    status=1
fi
if readelf -d "$work/app/app" | grep -q 'NEEDED.*libfencekit'; then
    echo "the static build of $readme links libfencekit.so" >&2
    status=1
fi
run shared "$shared"
if ! readelf -d "$work/app/app" | grep -q 'NEEDED.*libfencekit\.so'; then
    echo "the fencekit_shared build of $readme does not link libfencekit.so" >&2
    status=1
fi
# Static again, after the shared build: the go command's cache must not hand one the other's
# package (golang/go#73033; link_static.go says why the two are separate files).
run static-again "$static"
if readelf -d "$work/app/app" | grep -q 'NEEDED.*libfencekit'; then
    echo "the static build of $readme, after the shared one, links libfencekit.so" >&2
    status=1
fi
if [ "$status" -eq 0 ] && [ -z "$planted" ]; then
    grep -v '^export PKG_CONFIG_PATH' "$readme" >"$work/planted-README.md"
    if sh "$0" "$work/planted" "$work/planted-README.md" >"$work/planted.log" 2>&1; then
        echo "a recipe without PKG_CONFIG_PATH builds: the check cannot fail (see $work/planted.log)" >&2
        status=1
    fi
fi
[ "$status" -eq 0 ] && echo "outside module: $module $version, static and shared, built as $readme says"
exit "$status"
