#!/usr/bin/env bash
# Coordinators side by side, from one run: for a leader SIGSTOPped in the middle of a job,
# failover and double runs with etcd's election (concurrency.Election) at TTL 5 s and 60 s,
# ZooKeeper's (kazoo's Election) at session timeouts of 5 s and 60 s, and fencekit's own group
# (three `fencekit node`s with shell workers, elections after 1.5 s), each fenced and unfenced;
# and the per-write cost of each coordinator's documented fencing (etcd: a Txn comparing the
# election key's create revision, then a put; ZooKeeper: a multi checking the leader znode's
# version, then a setData) beside fencekit's check, from Go, Python and Rust.
#
#   benches/coordinators/measure.sh [--rounds N] [--short] [--no-rust-bench] [--out DIR]
#
#   --rounds N     SIGSTOP rounds per drill (default 3; the sidecar drill runs N times)
#   --short        leave out the 60 s settings (about 3 minutes instead of about 15)
#   --no-rust-bench  leave out `cargo bench -p fencekit-benches --bench fence --
#                  fence_check/by_id` (the first time, it compiles the bench crate: minutes)
#   --out DIR      keep every drill's JSON line and log in DIR (default: a temporary directory,
#                  kept and named at the end)
#
# It starts etcd and ZooKeeper on private loopback ports (tests/coordinators.sh, as the
# bindings' tests do; installed from Debian if missing, as root) and stops them however it
# ends. It builds libfencekit and the fencekit command with cargo (CARGO_TARGET_DIR is
# honoured; FENCEKIT=path/to/fencekit skips building the command), the Go programs with go,
# and installs the Python binding and kazoo into a virtual environment in the target
# directory. Not run by test.sh: it takes too long. benches/README.md, "Coordinators", has
# a run's results and what they mean.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rounds=3
long=1
rust_bench=1
out=
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=${2:?--rounds needs a number}; shift 2 ;;
        --short) long=; shift ;;
        --no-rust-bench) rust_bench=; shift ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        *) sed -n '2,17p' "$0" >&2; exit 2 ;;
    esac
done
case "$rounds" in '' | *[!0-9]* | 0) echo "measure.sh: --rounds takes a number, 1 or more" >&2; exit 2 ;; esac

step() { printf '\n==> [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }
die() { echo "measure.sh: $*" >&2; exit 1; }

# --- tools: fail before starting anything, naming what is missing --------------------------
missing=()
for tool in cargo go python3 make pkg-config curl jq awk ss setsid; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
python3 -c 'import venv' 2>/dev/null || missing+=("python3's venv module (python3-venv)")
if ((${#missing[@]})); then
    die "missing: ${missing[*]} (cargo: Rust 1.95 with rustup; go: Go 1.25 or later; the others from Debian)"
fi
# shellcheck source=../../tests/coordinators.sh
. "$root/tests/coordinators.sh"
etcd_require || die "etcd is missing and could not be installed"
zookeeper_require || die "ZooKeeper (Debian's zookeeper, with a JRE) is missing and could not be installed"

target=${CARGO_TARGET_DIR:-$root/target}
out=${out:-$(mktemp -d "${TMPDIR:-/tmp}/fencekit-coordinators.XXXXXX")}
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/fencekit-coordinators-run.XXXXXX")
long_pids=()
cleanup() {
    for pid in "${long_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    etcd_stop
    zookeeper_stop
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- builds ----------------------------------------------------------------------------------
step "libfencekit (release), installed into $target/coordinators-prefix"
prefix=$target/coordinators-prefix
make -s -C "$root/ffi" install PREFIX="$prefix" >&2
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
if [ -z "${FENCEKIT:-}" ]; then
    step "the fencekit command (release)"
    cargo build --release --locked -q -p fencekit-cli --manifest-path "$root/Cargo.toml" >&2
    FENCEKIT=$target/release/fencekit
fi
[ -x "$FENCEKIT" ] || die "FENCEKIT=$FENCEKIT is not an executable"
export FENCEKIT

step "Go: the etcd_election drill and the etcd_fencing bench"
(cd "$root/bindings/go/samples/etcd_election" && go build -o "$work/etcd_election" .)
(cd "$here/etcd_fencing" && go build -o "$work/etcd_fencing" .)

step "Python: fencekit (from bindings/python, on the libfencekit above) and kazoo in $target/coordinators-venv"
venv=$target/coordinators-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q kazoo cffi >&2
FENCEKIT_LIB_DIR=$prefix/lib "$venv/bin/pip" install -q --force-reinstall --no-deps "$root/bindings/python" >&2 ||
    die "pip could not install bindings/python (it needs setuptools and cffi from PyPI)"
"$venv/bin/python" -c 'import fencekit, kazoo' || die "the virtual environment has no fencekit or kazoo"

# --- the coordinators --------------------------------------------------------------------------
step "starting etcd and ZooKeeper"
mkdir "$work/etcd" "$work/zk"
etcd_start "$work/etcd" >&2
zookeeper_start "$work/zk" >&2
export FENCEKIT_ETCD_ENDPOINTS=$ETCD_ENDPOINT FENCEKIT_ZK_HOSTS=$ZK_HOSTS

# --- per-write cost, first, on a machine with nothing else of ours running -----------------------
step "per-write cost: etcd's Txn beside fencekit's CheckFrom (Go)"
"$work/etcd_fencing" -endpoints "$ETCD_ENDPOINT" | tee "$out/etcd_fencing.json" >&2
step "per-write cost: ZooKeeper's multi beside fencekit's check_from (Python)"
"$venv/bin/python" "$here/zk_fencing.py" --zk "$ZK_HOSTS" | tee "$out/zk_fencing.json" >&2
step "fencekit's check from Go (bindings/go: BenchmarkCheck)"
(cd "$root/bindings/go" && go test -run '^$' -bench '^BenchmarkCheck$' -count 5 .) | tee "$out/go_check.txt" >&2
step "fencekit's check from Python (bindings/python/benchmarks/check.py)"
"$venv/bin/python" "$root/bindings/python/benchmarks/check.py" | tee "$out/python_check.txt" >&2
if [ -n "$rust_bench" ]; then
    step "fencekit's check from Rust (cargo bench ... fence_check/by_id)"
    (cd "$root" && cargo bench -q -p fencekit-benches --bench fence -- fence_check/by_id) 2>&1 |
        tee "$out/rust_check.txt" >&2
fi

# --- drills ---------------------------------------------------------------------------------------
# Each writes its JSON lines into $out/<name>.json and its log into $out/<name>.log; a drill
# that fails is reported in the table, not fatal.
etcd_drill() { # TTL MODE-FLAG NAME
    "$work/etcd_election" -json -ttl "$1" -rounds "$rounds" $2 >"$out/$3.json" 2>"$out/$3.log" ||
        echo "measure.sh: $3 exited $? (its log: $out/$3.log)" >&2
}
zk_drill() { # TIMEOUT NAME
    "$venv/bin/python" "$root/bindings/python/samples/zk_election.py" --zk "$ZK_HOSTS" --json \
        --session-timeout "$1" --rounds "$rounds" --mode both >"$out/$2.json" 2>"$out/$2.log" ||
        echo "measure.sh: $2 exited $? (its log: $out/$2.log)" >&2
}
sidecar_drill() { # MODE-FLAG NAME
    for i in $(seq "$rounds"); do
        bash "$root/bindings/shell/samples/sidecar_drill.sh" $1 </dev/null >>"$out/$2.log" 2>&1 ||
            echo "measure.sh: $2, run $i failed (its log: $out/$2.log)" >&2
    done
}

step "etcd, TTL 5 s, fenced and unfenced ($rounds rounds each)"
etcd_drill 5 "" etcd-5-fenced
etcd_drill 5 -unfenced etcd-5-unfenced
step "ZooKeeper, session timeout 5 s, fenced and unfenced ($rounds rounds each)"
zk_drill 5 zk-5
step "fencekit's group (sidecar drill: elections after 1.5 s), fenced and unfenced ($rounds runs each)"
sidecar_drill "" fencekit-fenced
sidecar_drill --unfenced fencekit-unfenced
if [ -n "$long" ]; then
    # Both coordinators at 60 s at once: a round is mostly waiting for the session to expire,
    # and etcd's and ZooKeeper's drills share nothing but the machine.
    step "etcd at TTL 60 s and ZooKeeper at 60 s, side by side (about $((rounds * 2 + 1)) minutes)"
    (etcd_drill 60 "" etcd-60-fenced; etcd_drill 60 -unfenced etcd-60-unfenced) &
    long_pids+=($!)
    zk_drill 60 zk-60 &
    long_pids+=($!)
    for pid in "${long_pids[@]}"; do wait "$pid" || true; done
    long_pids=()
fi

# --- the table ------------------------------------------------------------------------------------
step "results (JSON lines and logs in $out)"
{
    echo "| coordinator | setting | mode | failover per round (s) | recorded twice | job bodies that ran again | zombie writes refused |"
    echo "|---|---|---|---|---|---|---|"
    for ttl in 5 60; do
        for mode in fenced unfenced; do
            f=$out/etcd-$ttl-$mode.json
            [ -f "$f" ] || continue
            jq -r --arg ttl "$ttl" 'select(.drill) |
                "| etcd (concurrency.Election) | TTL \($ttl) s | \(.mode) | \(.failover_ms | map(. / 1000 * 10 | round / 10 | tostring) | join(", ")) | \(.recorded_twice) | \(.executed_twice) | \(.zombie_writes_refused_stale) of \(.rounds) |"' "$f" ||
                echo "| etcd | TTL $ttl s | $mode | (no result: $f) | | | |"
        done
    done
    for t in 5 60; do
        f=$out/zk-$t.json
        [ -f "$f" ] || continue
        jq -s -r --arg t "$t" 'map(select(.sample)) | sort_by(.mode) | .[] |
            "| ZooKeeper (kazoo Election) | session \($t) s | \(.mode) | \(.failover_s | map(. * 10 | round / 10 | tostring) | join(", ")) | \(.recorded_twice) | \(.job_bodies_ran_again) | \(.zombie_writes_refused) of \(.zombie_writes_refused + .zombie_writes_recorded) |"' "$f" ||
            echo "| ZooKeeper | session $t s | | (no result: $f) | | | |"
    done
    for mode in fenced unfenced; do
        f=$out/fencekit-$mode.log
        [ -f "$f" ] || continue
        awk -v mode="$mode" '
            /runs recorded .*; recorded twice/ {
                line = $0
                sub(/.*recorded twice /, "", line); split(line, a, ";"); twice += a[1]
                line = $0
                sub(/.*refused as stale /, "", line); split(line, a, ";"); stale += a[1]
                line = $0
                sub(/.*ran again /, "", line); split(line, a, ";"); again += a[1]
                line = $0
                sub(/.*failover /, "", line); sub(/ ms$/, "", line)
                fo = fo (runs ? ", " : "") (line == "none" ? "none" : sprintf("%.1f", line / 1000))
                runs++
            }
            END {
                printf "| fencekit (own group, sidecar) | election 1.5 s | %s | %s | %d | %d | %d of %d |\n", mode, fo, twice, again, stale, runs
            }' "$f"
    done
} | tee "$out/table.md"

echo
awk_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", a / b }'; }
{
    echo "| per-write fencing | p50 | p99 | vs. fencekit's check in the same process (p50) |"
    echo "|---|---|---|---|"
    e=$out/etcd_fencing.json
    jq -r '"| etcd: Txn (compare the election key'"'"'s create revision, put 64 B) | \(.etcd_txn_p50_ns / 1000 | . * 10 | round / 10) µs | \(.etcd_txn_p99_ns / 1000 | . * 10 | round / 10) µs | \(.ratio_p50 | round)× |",
           "| fencekit from Go: Fence.CheckFrom, an etcd token (mean of \(.checks_per_sample) checks) | \(.fencekit_check_from_p50_ns) ns | \(.fencekit_check_from_p99_ns) ns | 1× |"' "$e"
    z=$out/zk_fencing.json
    jq -r '"| ZooKeeper: multi (check the leader znode'"'"'s version, setData 64 B), kazoo | \(.zk_multi_p50_ns / 1000 | . * 10 | round / 10) µs | \(.zk_multi_p99_ns / 1000 | . * 10 | round / 10) µs | \(.ratio_p50 | round)× |",
           "| fencekit from Python: Fence.check_from, a ZooKeeper token (mean of \(.checks_per_sample) checks) | \(.fencekit_check_from_p50_ns) ns | \(.fencekit_check_from_p99_ns) ns | 1× |"' "$z"
    go_ns=$(awk '/^BenchmarkCheck/ { print $3 }' "$out/go_check.txt" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    if [ -n "$go_ns" ]; then
        echo "| fencekit from Go: Fence.Check (bindings/go BenchmarkCheck, median of 5) | $go_ns ns | | etcd Txn p50 is $(awk_ratio "$(jq .etcd_txn_p50_ns "$e")" "$go_ns")× |"
    fi
    py_ns=$(awk '/^Fence.check  / { print $2 }' "$out/python_check.txt")
    if [ -n "$py_ns" ]; then
        echo "| fencekit from Python: Fence.check (bindings/python/benchmarks/check.py, median of 7) | $py_ns ns | | ZooKeeper multi p50 is $(awk_ratio "$(jq .zk_multi_p50_ns "$z")" "$py_ns")× |"
    fi
    if [ -f "$out/rust_check.txt" ]; then
        # criterion's line: "fence_check/by_id  time:  [low ns ESTIMATE ns high ns]"
        rust_ns=$(awk '/fence_check\/by_id/ && /time:/ { print $5 }' "$out/rust_check.txt")
        if [ -n "$rust_ns" ]; then
            echo "| fencekit from Rust: Fence::check (benches: fence_check/by_id, criterion's estimate) | $rust_ns ns | | etcd Txn p50 is $(awk_ratio "$(jq .etcd_txn_p50_ns "$e")" "$rust_ns")×, ZooKeeper multi p50 $(awk_ratio "$(jq .zk_multi_p50_ns "$z")" "$rust_ns")× |"
        fi
    fi
} | tee "$out/cost.md"
echo
echo "measure.sh: done in $((SECONDS / 60))m$((SECONDS % 60))s; JSON lines, logs and both tables in $out" >&2
